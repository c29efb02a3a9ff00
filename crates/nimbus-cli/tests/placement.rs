//! End-to-end tests of placement over several in-process worker hosts: each test
//! starts a real `nimbus server --workers 2`, deploys a Python function that sleeps
//! for `event["sleep"]` seconds, and checks which host (`X-Worker`) runs each
//! invocation.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{zip_of, Api, Server};
use serde_json::{json, Value};

const SLEEP_APP: &str = r#"import time


def handler(event, context):
    seconds = event.get("sleep", 0) if isinstance(event, dict) else 0
    if seconds:
        time.sleep(seconds)
    return {"ok": True}
"#;

fn start_two_workers() -> Server {
    Server::start_with_args(&[
        "--workers",
        "2",
        "--availability-zones",
        "a,b",
        "--worker-memory-mb",
        "4096",
    ])
}

async fn deploy(server: &Server, api: &Api, name: &str) {
    let zip = zip_of(&[("app.py", SLEEP_APP.as_bytes())]);
    let body = json!({
        "runtime": server.python_runtime(),
        "handler": "app.handler",
        "timeout": 30,
        "code": {"zip_file": base64::engine::general_purpose::STANDARD.encode(zip)},
    });
    let reply = api.put(&format!("/functions/{name}"), &body).await;
    assert_eq!(reply.status, 201, "creating function {name} failed: {}", reply.body);
}

struct Invoked {
    status: u16,
    /// `X-Worker`, such as `host-1`; empty on an error response.
    host: String,
    cold: bool,
    body: Value,
}

async fn invoke(api: &Api, name: &str, sleep_seconds: f64) -> Invoked {
    let response = api
        .http
        .post(format!("{}/functions/{name}/invocations", api.url))
        .bearer_auth(&api.key)
        .json(&json!({"sleep": sleep_seconds}))
        .send()
        .await
        .unwrap_or_else(|error| panic!("invoking {name} failed to reach the server: {error}"));
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    };
    let host = header("x-worker").unwrap_or_default();
    let cold = header("x-cold-start").is_some();
    let bytes = response.bytes().await.expect("read the invoke response");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Invoked {
        status,
        host,
        cold,
        body,
    }
}

/// Waits until `nimbus admin worker list` shows both hosts, so the server has
/// written its first heartbeats.
fn wait_for_hosts(server: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = server.admin(&["worker", "list"]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.contains("host-0") && text.contains("host-1") {
            return text;
        }
        assert!(Instant::now() < deadline, "worker list never showed both hosts: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_state(server: &Server, host: &str, state: &str) {
    let output = server.admin(&["worker", "set-state", host, state]);
    assert!(
        output.status.success(),
        "set-state {host} {state} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits past one heartbeat, after which the server has read the new state.
async fn wait_for_heartbeat() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn concurrent_invocations_use_both_hosts() {
    let server = start_two_workers();
    let api = server.api();
    deploy(&server, &api, "spread").await;
    let listing = wait_for_hosts(&server);
    assert!(listing.contains(" a "), "host-0 is in zone a: {listing}");
    assert!(listing.contains(" b "), "host-1 is in zone b: {listing}");

    let calls: Vec<_> = (0..4)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { invoke(&api, "spread", 1.0).await })
        })
        .collect();
    let mut hosts: Vec<String> = Vec::new();
    for call in calls {
        let result = call.await.expect("invocation task");
        let result = &result;
        assert_eq!(result.status, 200, "invoke failed: {}", result.body);
        assert!(result.cold, "four concurrent invocations each need a new slot");
        hosts.push(result.host.clone());
    }
    hosts.sort();
    assert_eq!(
        hosts,
        ["host-0", "host-0", "host-1", "host-1"],
        "slots spread over both hosts"
    );

    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("read /metrics");
    assert!(
        metrics.contains(r#"nimbus_placements_total{host="host-0"} 2"#),
        "placements of host-0 in /metrics:\n{metrics}"
    );
    assert!(
        metrics.contains(r#"nimbus_placements_total{host="host-1"} 2"#),
        "placements of host-1 in /metrics:\n{metrics}"
    );
    for (from, to) in [("INITIALIZING", "WARM"), ("WARM", "BUSY"), ("BUSY", "WARM")] {
        let series = format!(r#"nimbus_slot_transitions_total{{from="{from}",to="{to}"}} 4"#);
        assert!(metrics.contains(&series), "{series} in /metrics:\n{metrics}");
    }
}

#[tokio::test]
async fn draining_host_gets_no_new_slots() {
    let server = start_two_workers();
    let api = server.api();
    deploy(&server, &api, "drain").await;
    wait_for_hosts(&server);

    // The first cold start goes to host-0: equal hosts tie, and the lower id wins.
    let first = invoke(&api, "drain", 0.0).await;
    assert_eq!(first.status, 200, "first invoke failed: {}", first.body);
    assert_eq!(first.host, "host-0");

    // A long invocation runs on host-0's warm slot while host-0 drains.
    let long = tokio::spawn({
        let api = api.clone();
        async move { invoke(&api, "drain", 3.0).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    set_state(&server, "host-0", "draining");
    wait_for_heartbeat().await;
    let listing = wait_for_hosts(&server);
    assert!(listing.contains("DRAINING"), "worker list shows the drain: {listing}");

    for _ in 0..2 {
        let next = invoke(&api, "drain", 0.0).await;
        assert_eq!(next.status, 200, "invoke during the drain failed: {}", next.body);
        assert_eq!(next.host, "host-1", "a draining host gets no new invocations");
    }
    let long = long.await.expect("long invocation task");
    assert_eq!(long.status, 200, "the running invocation finishes: {}", long.body);
    assert_eq!(long.host, "host-0");
    assert!(!long.cold, "the running invocation used host-0's warm slot");
}

#[tokio::test]
async fn all_hosts_draining_returns_429() {
    let server = start_two_workers();
    let api = server.api();
    deploy(&server, &api, "nowhere").await;
    wait_for_hosts(&server);
    set_state(&server, "host-0", "draining");
    set_state(&server, "1", "maintenance");
    wait_for_heartbeat().await;

    let started = Instant::now();
    let rejected = invoke(&api, "nowhere", 0.0).await;
    assert_eq!(rejected.status, 429, "no feasible host: {}", rejected.body);
    assert_eq!(rejected.body["type"], "TooManyRequestsException");
    assert_eq!(rejected.body["reason"], "NoCapacityAvailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "rejected at once, not after a wait"
    );

    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("read /metrics");
    assert!(
        metrics.contains("nimbus_placement_failures_total 1"),
        "placement failure in /metrics:\n{metrics}"
    );

    set_state(&server, "host-1", "active");
    wait_for_heartbeat().await;
    let accepted = invoke(&api, "nowhere", 0.0).await;
    assert_eq!(accepted.status, 200, "invoke after reactivation: {}", accepted.body);
    assert_eq!(accepted.host, "host-1");
}

#[test]
fn set_state_of_unknown_host_fails() {
    let server = start_two_workers();
    wait_for_hosts(&server);
    let output = server.admin(&["worker", "set-state", "host-7", "draining"]);
    assert!(!output.status.success(), "an unknown host is an error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("host-7 was not found"),
        "error names the host: {stderr}"
    );
}

#[tokio::test]
async fn burst_limit_rejects_extra_cold_starts() {
    let server = Server::start_with_args(&["--burst-limit", "1"]);
    let api = server.api();
    deploy(&server, &api, "burst").await;

    // The first cold start takes the only token; a concurrent one needs a second
    // environment and is rejected at once.
    let first = tokio::spawn({
        let api = api.clone();
        async move { invoke(&api, "burst", 1.0).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = invoke(&api, "burst", 0.0).await;
    assert_eq!(
        second.status, 429,
        "a second new environment exceeds the burst: {}",
        second.body
    );
    assert_eq!(second.body["reason"], "FunctionInvocationRateLimitExceeded");

    let first = first.await.expect("first invocation task");
    assert_eq!(first.status, 200, "the admitted invocation runs: {}", first.body);
    // A warm slot needs no new environment, so the burst limit does not apply.
    let warm = invoke(&api, "burst", 0.0).await;
    assert_eq!(warm.status, 200, "a warm start is not limited: {}", warm.body);
    assert!(!warm.cold, "the invocation reused the warm slot");
}

/// Returns the `X-Worker` and `X-Cold-Start` headers of one invocation.
async fn invoke_for_headers(api: &Api, name: &str, sleep_seconds: f64) -> (String, String) {
    let response = api
        .http
        .post(format!("{}/functions/{name}/invocations", api.url))
        .bearer_auth(&api.key)
        .json(&json!({"sleep": sleep_seconds}))
        .send()
        .await
        .expect("invoke reaches the server");
    assert_eq!(response.status().as_u16(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    (header("x-worker"), header("x-cold-start"))
}

#[tokio::test]
async fn code_cache_tiers() {
    let server = start_two_workers();
    let api = server.api();
    deploy(&server, &api, "tiers").await;
    wait_for_hosts(&server);

    let (first_host, first) = invoke_for_headers(&api, "tiers", 0.0).await;
    assert!(
        first.contains("code=L3"),
        "the first cold start fetches from the origin store: {first}"
    );

    // A second slot while the first is busy: the host that has the package unpacked
    // scores higher, so the code comes from its L1 cache.
    let busy = {
        let api = api.clone();
        tokio::spawn(async move { invoke_for_headers(&api, "tiers", 1.5).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (second_host, second) = invoke_for_headers(&api, "tiers", 0.0).await;
    busy.await.expect("busy invocation");
    assert_eq!(
        second_host, first_host,
        "the second slot goes where the package is cached"
    );
    assert!(
        second.contains("code=L1"),
        "the second cold start reuses the unpacked package: {second}"
    );

    // With that host draining, the other host cold-starts from the shared L2 cache.
    set_state(&server, &first_host, "draining");
    wait_for_heartbeat().await;
    let (third_host, third) = invoke_for_headers(&api, "tiers", 0.0).await;
    assert_ne!(third_host, first_host);
    assert!(
        third.contains("code=L2"),
        "the other host gets the zip from the server's memory: {third}"
    );

    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("read /metrics");
    for series in [
        r#"nimbus_code_cache_hits_total{tier="L1"} 1"#,
        r#"nimbus_code_cache_hits_total{tier="L2"} 1"#,
        r#"nimbus_code_cache_hits_total{tier="L3"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in /metrics:\n{metrics}");
    }
}
