//! End-to-end tests of provisioned concurrency: each test starts a real `nimbus
//! server` with a short warm pool interval, deploys Python functions whose import
//! takes 0.5 s, and checks the configuration API and which invocations cold-start.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{zip_of, Api, Server};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// A function whose import takes 0.5 s. It returns its version and the
/// initialization type of its environment, and sleeps for `event["sleep"]` seconds.
const SLOW_INIT_APP: &str = r#"import os
import time

time.sleep(0.5)


def handler(event, context):
    seconds = event.get("sleep", 0) if isinstance(event, dict) else 0
    if seconds:
        time.sleep(seconds)
    return {
        "version": context.function_version,
        "initialization_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
    }
"#;

/// A function whose import raises.
const FAILING_INIT_APP: &str = r#"raise RuntimeError("database is unreachable")


def handler(event, context):
    return "unreachable"
"#;

/// Time for provisioned slots to become ready: a pass of the manager plus a 0.5 s
/// init, with room for a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

fn start_server() -> Server {
    Server::start_with_args(&["--warm-pool-interval-ms", "300"])
}

async fn deploy(server: &Server, api: &Api, name: &str, source: &str) {
    let zip = zip_of(&[("app.py", source.as_bytes())]);
    let body = json!({
        "runtime": server.python_runtime(),
        "handler": "app.handler",
        "timeout": 30,
        "code": {"zip_file": base64::engine::general_purpose::STANDARD.encode(zip)},
    });
    let reply = api.put(&format!("/functions/{name}"), &body).await;
    assert_eq!(reply.status, 201, "creating function {name} failed: {}", reply.body);
}

/// Publishes $LATEST and returns the version number.
async fn publish(api: &Api, name: &str) -> String {
    let reply = api.post(&format!("/functions/{name}/versions"), &json!({})).await;
    assert_eq!(reply.status, 201, "publishing {name}: {}", reply.body);
    reply.text("version").to_string()
}

async fn put_alias(api: &Api, name: &str, alias: &str, version: &str) {
    let reply = api
        .put(
            &format!("/functions/{name}/aliases/{alias}"),
            &json!({"function_version": version}),
        )
        .await;
    assert!(
        reply.status == 200 || reply.status == 201,
        "pointing alias {alias} of {name} at {version}: {}",
        reply.body
    );
}

async fn put_provisioned(api: &Api, name: &str, qualifier: &str, count: i64) -> common::Reply {
    api.put(
        &format!("/functions/{name}/provisioned-concurrency"),
        &json!({"qualifier": qualifier, "provisioned_concurrent_executions": count}),
    )
    .await
}

async fn get_provisioned(api: &Api, name: &str, qualifier: &str) -> common::Reply {
    api.get(&format!(
        "/functions/{name}/provisioned-concurrency?qualifier={qualifier}"
    ))
    .await
}

/// Polls the configuration until `done` accepts it, and returns it.
async fn wait_for_config(api: &Api, name: &str, qualifier: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let reply = get_provisioned(api, name, qualifier).await;
        assert_eq!(
            reply.status, 200,
            "GET provisioned concurrency of {name}:{qualifier}: {}",
            reply.body
        );
        if done(&reply.body) {
            return reply.body;
        }
        assert!(
            Instant::now() < deadline,
            "provisioned concurrency of {name}:{qualifier} did not reach the expected state within {READY_TIMEOUT:?}; last: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_until_ready(api: &Api, name: &str, qualifier: &str) -> Value {
    wait_for_config(api, name, qualifier, |config| config["status"] == "READY").await
}

struct Invoked {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Invoked {
    fn cold(&self) -> bool {
        self.headers.contains_key("x-cold-start")
    }

    fn request_id(&self) -> String {
        self.headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .expect("response has X-Request-Id")
            .to_string()
    }
}

async fn invoke(api: &Api, name: &str, qualifier: Option<&str>, event: &Value) -> Invoked {
    let mut url = format!("{}/functions/{name}/invocations", api.url);
    if let Some(qualifier) = qualifier {
        url = format!("{url}?qualifier={qualifier}");
    }
    let response = api
        .http
        .post(&url)
        .bearer_auth(&api.key)
        .json(event)
        .send()
        .await
        .unwrap_or_else(|error| panic!("invoking {name} failed to reach the server: {error}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("read the invoke response");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|error| panic!("invoke of {name} returned {status} with a body that is not JSON ({error})"));
    assert_eq!(status, 200, "invoking {name} {qualifier:?}: {body}");
    assert!(
        !headers.contains_key("x-function-error"),
        "invoking {name} {qualifier:?} failed: {body}"
    );
    Invoked { status, headers, body }
}

/// Waits for the invocation record of `request_id` and returns it.
async fn record_of(api: &Api, name: &str, request_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = api.get(&format!("/functions/{name}/invocations")).await;
        assert_eq!(reply.status, 200, "listing invocations of {name}: {}", reply.body);
        let found = reply.body["invocations"]
            .as_array()
            .expect("invocations is an array")
            .iter()
            .find(|record| record["request_id"] == request_id)
            .cloned();
        if let Some(record) = found {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "no invocation record of {request_id} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_error(reply: &common::Reply, status: u16, error_type: &str, message_part: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.text("type"), error_type, "{}", reply.body);
    assert!(
        reply.text("message").contains(message_part),
        "message should mention {message_part:?}: {}",
        reply.body
    );
}

#[tokio::test]
async fn alias_provisioned_serves_warm() {
    let server = start_server();
    let api = server.api();
    deploy(&server, &api, "slow", SLOW_INIT_APP).await;
    let version = publish(&api, "slow").await;
    assert_eq!(version, "1");
    put_alias(&api, "slow", "prod", "1").await;

    let accepted = put_provisioned(&api, "slow", "prod", 2).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.body["qualifier"], "prod");
    assert_eq!(accepted.body["requested"], 2);
    assert_eq!(accepted.body["status"], "IN_PROGRESS");

    let ready = wait_until_ready(&api, "slow", "prod").await;
    assert_eq!(ready["available"], 2, "{ready}");
    assert_eq!(ready["allocated"], 2, "{ready}");
    assert_eq!(ready["function_version"], "1", "{ready}");
    assert!(ready.get("status_reason").is_none(), "{ready}");

    let listed = api.get("/functions/slow/provisioned-concurrency").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let configs = listed.body["provisioned_concurrency_configs"]
        .as_array()
        .expect("provisioned_concurrency_configs is an array");
    assert_eq!(configs.len(), 1, "{}", listed.body);
    assert_eq!(configs[0]["qualifier"], "prod");

    // Sequential invocations through the alias reuse the provisioned slots.
    for _ in 0..3 {
        let warm = invoke(&api, "slow", Some("prod"), &json!({})).await;
        assert!(!warm.cold(), "invocation through prod cold-started: {:?}", warm.headers);
        assert_eq!(warm.body["version"], "1");
        assert_eq!(warm.body["initialization_type"], "provisioned-concurrency");
        let record = record_of(&api, "slow", &warm.request_id()).await;
        assert_eq!(record["cold_start"], false, "{record}");
        assert_eq!(record["init_duration_ms"], Value::Null, "{record}");
    }

    // $LATEST is not provisioned, so it cold-starts.
    let latest = invoke(&api, "slow", None, &json!({})).await;
    assert!(latest.cold(), "the first $LATEST invocation should cold-start");
    assert_eq!(latest.body["initialization_type"], "on-demand");
    let record = record_of(&api, "slow", &latest.request_id()).await;
    assert_eq!(record["cold_start"], true, "{record}");
}

#[tokio::test]
async fn busy_provisioned_spills_over() {
    let server = start_server();
    let api = server.api();
    deploy(&server, &api, "spill", SLOW_INIT_APP).await;
    publish(&api, "spill").await;
    let accepted = put_provisioned(&api, "spill", "1", 2).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    wait_until_ready(&api, "spill", "1").await;

    // Three at once: two run on the provisioned slots, the third on a new on-demand one.
    let event = json!({"sleep": 1.5});
    let (a, b, c) = tokio::join!(
        invoke(&api, "spill", Some("1"), &event),
        invoke(&api, "spill", Some("1"), &event),
        invoke(&api, "spill", Some("1"), &event),
    );
    let results = [&a, &b, &c];
    assert!(results.iter().all(|r| r.status == 200));
    let cold = results.iter().filter(|r| r.cold()).count();
    assert_eq!(cold, 1, "exactly one of three concurrent invocations should spill over");
    let on_demand = results
        .iter()
        .filter(|r| r.body["initialization_type"] == "on-demand")
        .count();
    assert_eq!(on_demand, 1);
}

#[tokio::test]
async fn alias_change_and_delete() {
    let server = start_server();
    let api = server.api();
    deploy(&server, &api, "moving", SLOW_INIT_APP).await;
    publish(&api, "moving").await;
    put_alias(&api, "moving", "prod", "1").await;
    let accepted = put_provisioned(&api, "moving", "prod", 1).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    wait_until_ready(&api, "moving", "prod").await;

    // A configuration change makes the next publish a new version.
    let updated = api
        .put(
            "/functions/moving/configuration",
            &json!({"environment": {"variables": {"RELEASE": "2"}}}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(publish(&api, "moving").await, "2");
    put_alias(&api, "moving", "prod", "2").await;

    let moved = wait_for_config(&api, "moving", "prod", |config| {
        config["function_version"] == "2" && config["status"] == "READY"
    })
    .await;
    assert_eq!(moved["available"], 1, "{moved}");
    let warm = invoke(&api, "moving", Some("prod"), &json!({})).await;
    assert!(
        !warm.cold(),
        "prod should be provisioned on version 2 after the alias moved"
    );
    assert_eq!(warm.body["version"], "2");

    let deleted = api
        .delete("/functions/moving/provisioned-concurrency?qualifier=prod")
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let gone = get_provisioned(&api, "moving", "prod").await;
    assert_error(&gone, 404, "ResourceNotFoundException", "prod");

    // The retired slot is gone, so the next invocation through prod cold-starts.
    let after = invoke(&api, "moving", Some("prod"), &json!({})).await;
    assert!(
        after.cold(),
        "prod should cold-start after its provisioned slots were retired"
    );
    let record = record_of(&api, "moving", &after.request_id()).await;
    assert_eq!(record["cold_start"], true, "{record}");
}

#[tokio::test]
async fn provisioned_validation_errors() {
    let server = start_server();
    let api = server.api();
    deploy(&server, &api, "checked", SLOW_INIT_APP).await;
    publish(&api, "checked").await;
    put_alias(&api, "checked", "latest-alias", "$LATEST").await;

    let latest = put_provisioned(&api, "checked", "$LATEST", 1).await;
    assert_error(&latest, 400, "InvalidParameterValueException", "$LATEST");

    let alias_of_latest = put_provisioned(&api, "checked", "latest-alias", 1).await;
    assert_error(&alias_of_latest, 400, "InvalidParameterValueException", "latest-alias");

    let zero = put_provisioned(&api, "checked", "1", 0).await;
    assert_error(
        &zero,
        400,
        "InvalidParameterValueException",
        "provisioned_concurrent_executions 0",
    );

    let unknown_alias = put_provisioned(&api, "checked", "staging", 1).await;
    assert_error(&unknown_alias, 404, "ResourceNotFoundException", "staging");

    let unknown_version = put_provisioned(&api, "checked", "7", 1).await;
    assert_error(&unknown_version, 404, "ResourceNotFoundException", "version 7");

    let reserved = api
        .put(
            "/functions/checked/concurrency",
            &json!({"reserved_concurrent_executions": 2}),
        )
        .await;
    assert_eq!(reserved.status, 200, "{}", reserved.body);
    let over = put_provisioned(&api, "checked", "1", 3).await;
    assert_error(
        &over,
        400,
        "InvalidParameterValueException",
        "reserved concurrency of 2",
    );
    assert!(over.text("message").contains("is 3"), "{}", over.body);

    let unknown_config = get_provisioned(&api, "checked", "1").await;
    assert_error(&unknown_config, 404, "ResourceNotFoundException", "qualifier '1'");

    let no_qualifier = api.delete("/functions/checked/provisioned-concurrency").await;
    assert_error(&no_qualifier, 400, "InvalidParameterValueException", "qualifier");

    let empty = api.get("/functions/checked/provisioned-concurrency").await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body, json!({"provisioned_concurrency_configs": []}));
}

#[tokio::test]
async fn failing_init_reports_failed() {
    let server = start_server();
    let api = server.api();
    deploy(&server, &api, "broken", FAILING_INIT_APP).await;
    publish(&api, "broken").await;

    let accepted = put_provisioned(&api, "broken", "1", 1).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let failed = wait_for_config(&api, "broken", "1", |config| config["status"] != "IN_PROGRESS").await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["allocated"], 0, "{failed}");
    let reason = failed["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("database is unreachable"), "{failed}");
    assert!(reason.contains("version 1"), "{failed}");
}
