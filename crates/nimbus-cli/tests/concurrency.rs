//! End-to-end tests of concurrency control and metrics: each test starts a real
//! `nimbus server`, deploys real Python functions and invokes them over HTTP with
//! many requests at once.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{zip_of, Api, Server};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// A Python function that sleeps for `event["sleep"]` seconds when asked, raises when
/// `event["raise"]` is set, and returns its version.
const PYTHON_APP: &str = r#"import time


def handler(event, context):
    seconds = event.get("sleep", 0) if isinstance(event, dict) else 0
    if seconds:
        time.sleep(seconds)
    if isinstance(event, dict) and event.get("raise"):
        raise ValueError("asked to fail")
    return {"version": context.function_version}
"#;

const RESERVED_REASON: &str = "ReservedFunctionConcurrentInvocationLimitExceeded";
const ACCOUNT_REASON: &str = "ConcurrentInvocationLimitExceeded";

// ---------------------------------------------------------------------------------------
// Helpers

/// Creates a Python function from `source` and returns its configuration.
async fn deploy_source(server: &Server, api: &Api, name: &str, source: &str) -> Value {
    let zip = zip_of(&[("app.py", source.as_bytes())]);
    let body = json!({
        "runtime": server.python_runtime(),
        "handler": "app.handler",
        "timeout": 30,
        "code": {"zip_file": base64::engine::general_purpose::STANDARD.encode(zip)},
    });
    let reply = api.put(&format!("/functions/{name}"), &body).await;
    assert_eq!(reply.status, 201, "creating function {name} failed: {}", reply.body);
    reply.body
}

/// Creates a Python function from [`PYTHON_APP`].
async fn deploy(server: &Server, api: &Api, name: &str) -> Value {
    deploy_source(server, api, name, PYTHON_APP).await
}

/// Sets a function's reserved concurrency.
async fn reserve(api: &Api, name: &str, reserved: u32) {
    let reply = api
        .put(
            &format!("/functions/{name}/concurrency"),
            &json!({"reserved_concurrent_executions": reserved}),
        )
        .await;
    assert_eq!(reply.status, 200, "reserving {reserved} for {name}: {}", reply.body);
}

/// The raw response of one invoke request.
struct Invoked {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Invoked {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("header is text"))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "invoke returned {} with a body that is not JSON ({error}): {}",
                self.status,
                self.text()
            )
        })
    }

    fn is_success(&self) -> bool {
        self.status == 200 && self.header("x-function-error").is_none()
    }
}

/// Sends `POST /functions/{name_and_query}/invocations` with a JSON event and extra
/// headers.
async fn invoke_with(api: &Api, name_and_query: &str, headers: &[(&str, &str)], event: &Value) -> Invoked {
    let (name, query) = name_and_query.split_once('?').unwrap_or((name_and_query, ""));
    let mut url = format!("{}/functions/{name}/invocations", api.url);
    if !query.is_empty() {
        url = format!("{url}?{query}");
    }
    let mut request = api
        .http
        .post(&url)
        .bearer_auth(&api.key)
        .body(serde_json::to_vec(event).expect("serialize the event"));
    for (header, value) in headers {
        request = request.header(*header, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("invoking {name_and_query} failed to reach the server: {error}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("read the invoke response").to_vec();
    Invoked { status, headers, body }
}

async fn invoke(api: &Api, name_and_query: &str, event: &Value) -> Invoked {
    invoke_with(api, name_and_query, &[], event).await
}

/// Sends `count` synchronous invokes of `name` at once and returns their responses.
async fn invoke_all_at_once(api: &Api, name: &str, event: Value, count: usize) -> Vec<Invoked> {
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let api = api.clone();
        let name = name.to_string();
        let event = event.clone();
        tasks.spawn(async move { invoke(&api, &name, &event).await });
    }
    let mut responses = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        responses.push(joined.expect("invoke task finished"));
    }
    responses
}

/// Asserts a 429 `TooManyRequestsException` with a `reason` and a `Retry-After`.
#[track_caller]
fn assert_throttled(invoked: &Invoked, reason: &str) {
    assert_eq!(invoked.status, 429, "status; body: {}", invoked.text());
    let body = invoked.json();
    assert_eq!(body["type"], "TooManyRequestsException", "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(invoked.header("retry-after").is_some(), "a 429 has Retry-After");
}

/// Returns a function's invocation records, newest first.
async fn records(api: &Api, name: &str) -> Vec<Value> {
    let reply = api.get(&format!("/functions/{name}/invocations?limit=1000")).await;
    assert_eq!(reply.status, 200, "list invocations of {name}: {}", reply.body);
    reply.body["invocations"]
        .as_array()
        .expect("invocations is an array")
        .clone()
}

/// Polls a function's records until `done` accepts them or `limit` passes.
async fn wait_for_records(api: &Api, name: &str, limit: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let found = records(api, name).await;
        if done(&found) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "records of {name} did not reach the expected state within {limit:?}: {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count_status(records: &[Value], request_id: &str, status: &str) -> usize {
    records
        .iter()
        .filter(|record| record["request_id"] == request_id && record["status"] == status)
        .count()
}

/// Polls `GET /account` until `done` accepts its body, and returns that body.
async fn wait_for_account(api: &Api, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let account = api.get("/account").await;
        assert_eq!(account.status, 200, "GET /account: {}", account.body);
        if done(&account.body) {
            return account.body;
        }
        assert!(
            Instant::now() < deadline,
            "GET /account did not reach the expected state within {limit:?}: {}",
            account.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns the account's `usage.concurrent_executions`.
async fn concurrency_in_use(api: &Api) -> u64 {
    let account = api.get("/account").await;
    assert_eq!(account.status, 200, "GET /account: {}", account.body);
    account.body["usage"]["concurrent_executions"]
        .as_u64()
        .unwrap_or_else(|| panic!("GET /account has no usage.concurrent_executions: {}", account.body))
}

/// Fetches `GET /metrics` without an API key and returns its text.
async fn scrape(api: &Api) -> String {
    let response = api
        .http
        .get(format!("{}/metrics", api.url))
        .send()
        .await
        .expect("GET /metrics reaches the server");
    assert_eq!(response.status().as_u16(), 200, "GET /metrics status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type of /metrics: {content_type}"
    );
    response.text().await.expect("read /metrics")
}

/// Returns the value of one series, such as `nimbus_busy_slots` or
/// `nimbus_throttles_total{account="default",function="f",reason="R"}`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("metric value is a number"))
}

// ---------------------------------------------------------------------------------------
// Synchronous throttling

#[tokio::test]
async fn reserved_concurrency_caps_invokes() {
    let server = Server::start();
    let api = server.api();
    deploy(&server, &api, "capped").await;
    reserve(&api, "capped", 2).await;

    let running = {
        let api = api.clone();
        tokio::spawn(async move { invoke_all_at_once(&api, "capped", json!({"sleep": 1}), 4).await })
    };
    let mut max_in_use = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running.is_finished() && Instant::now() < deadline {
        max_in_use = max_in_use.max(concurrency_in_use(&api).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let responses = running.await.expect("invokes finished");

    let succeeded: Vec<&Invoked> = responses.iter().filter(|r| r.is_success()).collect();
    let throttled: Vec<&Invoked> = responses.iter().filter(|r| r.status == 429).collect();
    assert_eq!(succeeded.len(), 2, "exactly the reservation of 2 runs");
    assert_eq!(throttled.len(), 2, "the other 2 are throttled");
    for response in &throttled {
        assert_throttled(response, RESERVED_REASON);
        let message = response.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("function 'capped'"), "{message}");
    }
    assert_eq!(max_in_use, 2, "GET /account counts the running invokes");
    assert_eq!(
        concurrency_in_use(&api).await,
        0,
        "finished invokes release their leases"
    );

    let found = wait_for_records(&api, "capped", Duration::from_secs(5), |r| r.len() >= 4).await;
    let throttled_records = found.iter().filter(|r| r["status"] == "THROTTLED").count();
    let successful_records = found.iter().filter(|r| r["status"] == "SUCCESS").count();
    assert_eq!(throttled_records, 2, "{found:#?}");
    assert_eq!(successful_records, 2, "{found:#?}");
}

#[tokio::test]
async fn account_limit_caps_invokes() {
    let server = Server::start();
    let api = server.api();
    deploy(&server, &api, "open").await;

    let zero = server.admin(&["account", "set-limit", "default", "0"]);
    let three = server.admin(&["account", "set-limit", "default", "3"]);

    assert!(!zero.status.success(), "a limit of 0 is rejected");
    assert!(
        String::from_utf8_lossy(&zero.stderr).contains("at least 1"),
        "{}",
        String::from_utf8_lossy(&zero.stderr)
    );
    assert!(
        three.status.success(),
        "set-limit 3: {}",
        String::from_utf8_lossy(&three.stderr)
    );
    // `nimbus admin` writes to the database directly, so the server reads the new
    // limit once its cached copy of the account expires, within 1 second.
    let account = wait_for_account(&api, Duration::from_secs(5), |account| {
        account["limits"]["concurrent_executions"] == json!(3)
    })
    .await;
    assert_eq!(account["limits"]["concurrent_executions"], json!(3));
    assert_eq!(account["limits"]["unreserved_concurrent_executions"], json!(3));
    let reserve_one = api
        .put(
            "/functions/open/concurrency",
            &json!({"reserved_concurrent_executions": 1}),
        )
        .await;
    assert_eq!(
        reserve_one.status, 400,
        "an account under 100 cannot reserve: {}",
        reserve_one.body
    );

    let responses = invoke_all_at_once(&api, "open", json!({"sleep": 1}), 4).await;

    let succeeded = responses.iter().filter(|r| r.is_success()).count();
    let throttled: Vec<&Invoked> = responses.iter().filter(|r| r.status == 429).collect();
    assert_eq!(succeeded, 3, "the account limit of 3 runs");
    assert_eq!(throttled.len(), 1, "the fourth is throttled");
    assert_throttled(throttled[0], ACCOUNT_REASON);
    let message = throttled[0].json()["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("account 'default'"), "{message}");
    let after = invoke(&api, "open", &json!({})).await;
    assert!(after.is_success(), "invoke after the burst: {}", after.text());
}

// ---------------------------------------------------------------------------------------
// Asynchronous throttling

#[tokio::test]
async fn throttled_event_runs_after_release() {
    let server = Server::start();
    let api = server.api();
    deploy(&server, &api, "paused").await;
    reserve(&api, "paused", 0).await;

    let queued = invoke_with(&api, "paused", &[("x-invocation-type", "Event")], &json!({})).await;
    assert_eq!(queued.status, 202, "{}", queued.text());
    let request_id = queued.header("x-request-id").expect("202 has X-Request-Id").to_string();
    wait_for_records(&api, "paused", Duration::from_secs(5), |r| {
        count_status(r, &request_id, "THROTTLED") == 1
    })
    .await;
    // Several retries happen while the reservation stays at 0.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        count_status(&records(&api, "paused").await, &request_id, "SUCCESS"),
        0,
        "the event waits while the reservation is 0"
    );

    let removed = api.delete("/functions/paused/concurrency").await;
    assert_eq!(removed.status, 204, "remove the reservation: {}", removed.body);

    let found = wait_for_records(&api, "paused", Duration::from_secs(15), |r| {
        count_status(r, &request_id, "SUCCESS") == 1
    })
    .await;
    assert_eq!(
        count_status(&found, &request_id, "THROTTLED"),
        1,
        "one throttle record, not one per retry"
    );
}

// ---------------------------------------------------------------------------------------
// Alias traffic split

#[tokio::test]
async fn alias_weights_split_traffic() {
    const INVOKES: usize = 10_000;
    const PARALLEL: usize = 16;
    let server = Server::start();
    let api = server.api();
    deploy(&server, &api, "split").await;
    let first = api.post("/functions/split/versions", &json!({})).await;
    assert_eq!(first.status, 201, "publish version 1: {}", first.body);
    let changed = format!("{PYTHON_APP}\n# version 2\n");
    let zip = zip_of(&[("app.py", changed.as_bytes())]);
    let code = json!({"zip_file": base64::engine::general_purpose::STANDARD.encode(zip)});
    let updated = api.put("/functions/split/code", &code).await;
    assert_eq!(updated.status, 200, "update code: {}", updated.body);
    let second = api.post("/functions/split/versions", &json!({})).await;
    assert_eq!(second.status, 201, "publish version 2: {}", second.body);
    let alias = api
        .put(
            "/functions/split/aliases/live",
            &json!({"function_version": "1", "routing_config": {"additional_version_weights": {"2": 0.25}}}),
        )
        .await;
    assert_eq!(alias.status, 201, "create alias: {}", alias.body);

    let mut tasks = JoinSet::new();
    for worker in 0..PARALLEL {
        let api = api.clone();
        tasks.spawn(async move {
            let mut versions: HashMap<String, usize> = HashMap::new();
            for _ in (worker..INVOKES).step_by(PARALLEL) {
                let invoked = invoke(&api, "split?qualifier=live", &json!({})).await;
                assert!(
                    invoked.is_success(),
                    "invoke through the alias: {} {}",
                    invoked.status,
                    invoked.text()
                );
                let version = invoked.header("x-executed-version").unwrap_or("none").to_string();
                *versions.entry(version).or_default() += 1;
            }
            versions
        });
    }
    let mut versions: HashMap<String, usize> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        for (version, count) in joined.expect("invoke task finished") {
            *versions.entry(version).or_default() += count;
        }
    }

    let total: usize = versions.values().sum();
    let second_share = versions.get("2").copied().unwrap_or(0) as f64 / total as f64;
    assert_eq!(total, INVOKES);
    assert_eq!(versions.len(), 2, "only versions 1 and 2 run: {versions:?}");
    assert!(
        (second_share - 0.25).abs() <= 0.03,
        "version 2 got {:.2}% of {total} invokes, expected 25% ± 3: {versions:?}",
        second_share * 100.0
    );
}

// ---------------------------------------------------------------------------------------
// Disconnects and metrics

#[tokio::test]
async fn disconnects_release_concurrency() {
    const INVOKES: usize = 2_000;
    const BATCH: usize = 100;
    let server = Server::start();
    let api = server.api();
    deploy(&server, &api, "abandoned").await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(20))
        .build()
        .expect("build an HTTP client");
    let url = format!("{}/functions/abandoned/invocations", api.url);

    let mut abandoned = 0;
    for _ in 0..INVOKES / BATCH {
        let mut batch = JoinSet::new();
        for _ in 0..BATCH {
            let request = impatient.post(&url).bearer_auth(&api.key).body(r#"{"sleep": 0.3}"#);
            batch.spawn(async move { request.send().await });
        }
        while let Some(joined) = batch.join_next().await {
            if joined.expect("request task finished").is_err() {
                abandoned += 1;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut in_use = concurrency_in_use(&api).await;
    while in_use > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        in_use = concurrency_in_use(&api).await;
    }

    assert!(
        abandoned > INVOKES / 2,
        "most clients left before the response: {abandoned}"
    );
    assert_eq!(in_use, 0, "every lease is released within 30 s");
    let text = scrape(&api).await;
    assert_eq!(
        metric(&text, r#"nimbus_concurrent_executions{account="default"}"#),
        Some(0.0)
    );
    let ran = metric(
        &text,
        r#"nimbus_invocations_total{account="default",function="abandoned",status="SUCCESS"}"#,
    )
    .unwrap_or(0.0);
    assert!(
        ran > 0.0,
        "some invocations ran to the end after their client left:\n{text}"
    );
    let normal = invoke(&api, "abandoned", &json!({})).await;
    assert!(
        normal.is_success(),
        "a normal invoke after the disconnects: {}",
        normal.text()
    );
}

#[tokio::test]
async fn metrics_count_invocations() {
    let server = Server::start();
    let api = server.api();
    deploy(&server, &api, "metered").await;
    for _ in 0..3 {
        assert!(invoke(&api, "metered", &json!({})).await.is_success());
    }
    let failed = invoke(&api, "metered", &json!({"raise": true})).await;
    assert_eq!(failed.header("x-function-error"), Some("Unhandled"));
    reserve(&api, "metered", 0).await;
    let throttled = invoke(&api, "metered", &json!({})).await;
    assert_throttled(&throttled, RESERVED_REASON);

    let text = scrape(&api).await;

    let labels = r#"account="default",function="metered""#;
    let series = |name: &str, extra: &str| format!("{name}{{{labels}{extra}}}");
    assert_eq!(
        metric(&text, &series("nimbus_invocations_total", r#",status="SUCCESS""#)),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &series("nimbus_invocations_total", r#",status="ERROR""#)),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, &series("nimbus_invocation_errors_total", r#",status="ERROR""#)),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            &series("nimbus_throttles_total", &format!(r#",reason="{RESERVED_REASON}""#))
        ),
        Some(1.0)
    );
    assert_eq!(metric(&text, &series("nimbus_cold_starts_total", "")), Some(1.0));
    for phase in ["sandbox", "code", "init", "runtime", "user_init"] {
        let count = format!(r#"nimbus_cold_start_phase_seconds_count{{phase="{phase}",tier="L3"}}"#);
        assert_eq!(
            metric(&text, &count),
            Some(1.0),
            "{phase} phase of the first cold start:\n{text}"
        );
    }
    assert_eq!(metric(&text, r#"nimbus_code_cache_misses_total{tier="L1"}"#), Some(1.0));
    assert_eq!(metric(&text, r#"nimbus_code_cache_hits_total{tier="L3"}"#), Some(1.0));
    assert_eq!(metric(&text, r#"nimbus_code_cache_hits_total{tier="L1"}"#), Some(0.0));
    assert_eq!(
        metric(&text, r#"nimbus_concurrent_executions{account="default"}"#),
        Some(0.0)
    );
    assert_eq!(metric(&text, "nimbus_warm_slots"), Some(1.0));
    assert_eq!(metric(&text, "nimbus_busy_slots"), Some(0.0));
    assert_eq!(metric(&text, "nimbus_async_queue_depth"), Some(0.0));
    assert!(!text.contains("request_id"), "no per-request labels");
}
