//! End-to-end tests of invocation: each test starts a real `nimbus server`, deploys
//! real Python, Node.js and custom-runtime functions, and invokes them over HTTP or
//! through the `nimbus` CLI as a user would.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{zip_dir, zip_of, Api, Server, API_KEY};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// Lambda's limit of a synchronous request or response payload.
const SIX_MB: usize = 6 * 1024 * 1024;
/// Lambda's limit of an asynchronous event.
const ONE_MB: usize = 1024 * 1024;

/// A Python function whose behavior the event picks with `action`. Module state
/// (`count`) lives as long as the execution slot.
const PYTHON_APP: &str = r#"import json
import os
import threading
import time

count = 0


class MyError(Exception):
    pass


def handler(event, context):
    global count
    count += 1
    print("event", json.dumps(event, sort_keys=True))
    client_context = context.client_context
    if client_context:
        print("custom", json.dumps(client_context.custom, sort_keys=True))

    action = event.get("action") if isinstance(event, dict) else None
    if action == "raise":
        raise MyError("boom {}".format(event.get("n")))
    if action == "sleep":
        print("sleeping", event["seconds"])
        time.sleep(event["seconds"])
    if action == "exit":
        os._exit(3)
    if action == "exit_later":
        threading.Timer(0.2, os._exit, [4]).start()
    if action == "big":
        return "x" * (7 * 1024 * 1024)
    if action == "text":
        return "héllo  wörld ✓\ttab"
    if action == "long_line":
        print("y" * (5 * 1024 * 1024))
        print("after the long line")
    if action == "chatty":
        for line in range(200):
            print("chatty line {:03d} {}".format(line, "." * 40))

    return {
        "count": count,
        "request_id": context.aws_request_id,
        "version": context.function_version,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "custom": client_context.custom if client_context else None,
        "env": client_context.env if client_context else None,
    }
"#;

/// A Node.js async handler in a CommonJS `index.js`.
const NODE_ASYNC_APP: &str = r#"let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  console.log('event', JSON.stringify(event));
  if (event.action === 'raise') {
    throw new TypeError(`bad input ${event.n}`);
  }
  if (event.action === 'text') {
    return 'héllo  wörld ✓\ttab "quoted"';
  }
  if (event.action === 'exit') {
    process.exit(5);
  }
  if (event.action === 'spin') {
    for (;;) {}
  }
  await new Promise((resolve) => setTimeout(resolve, 5));
  return { style: 'async', count, requestId: context.awsRequestId };
};
"#;

/// A Node.js callback-style handler in a CommonJS `.js` file.
const NODE_CALLBACK_APP: &str = r#"exports.handler = (event, context, callback) => {
  setTimeout(() => callback(null, { style: 'callback', doubled: event.value * 2, requestId: context.awsRequestId }), 5);
};
"#;

/// A Node.js ES module handler, placed in a nested folder.
const NODE_MODULE_APP: &str = r#"import path from 'node:path';
export const handler = async (event) => ({ style: 'module', file: path.basename(import.meta.url), echo: event.echo });
"#;

// ---------------------------------------------------------------------------------------
// Helpers

/// A server with an API client and the runtime ids it offers for Python and Node.js.
struct Lab {
    server: Server,
    api: Api,
    python: String,
    node: String,
    /// Removed when the lab is dropped; `None` when the caller owns the directory.
    _data_dir: Option<tempfile::TempDir>,
}

impl Lab {
    fn start() -> Lab {
        Lab::start_with(&[])
    }

    /// Starts a server on a new data directory with extra `nimbus server` arguments.
    fn start_with(args: &[&str]) -> Lab {
        let data_dir = tempfile::tempdir().expect("create a data directory");
        let mut all_args = vec!["--api-key", API_KEY];
        all_args.extend_from_slice(args);
        let server = Server::start_in(data_dir.path(), &all_args, &[]);
        let mut lab = Lab::around(server);
        lab._data_dir = Some(data_dir);
        lab
    }

    /// Wraps a running server, reading the runtimes it offers from its log.
    fn around(server: Server) -> Lab {
        let offered = server.offered_runtimes();
        let python = offered
            .iter()
            .find(|id| id.starts_with("python3."))
            .unwrap_or_else(|| panic!("the server offers no Python runtime ({offered:?}); install python3"))
            .clone();
        let node = offered
            .iter()
            .find(|id| id.starts_with("nodejs"))
            .unwrap_or_else(|| panic!("the server offers no Node.js runtime ({offered:?}); install nodejs"))
            .clone();
        let api = server.api();
        Lab {
            server,
            api,
            python,
            node,
            _data_dir: None,
        }
    }

    /// Creates a Python function from [`PYTHON_APP`] with extra configuration fields.
    async fn python_function(&self, name: &str, settings: Value) -> Value {
        let zip = zip_of(&[("app.py", PYTHON_APP.as_bytes())]);
        deploy(&self.api, name, &self.python, "app.handler", &zip, settings).await
    }

    /// Creates a Node.js function from [`NODE_ASYNC_APP`] with extra configuration fields.
    async fn node_function(&self, name: &str, settings: Value) -> Value {
        let zip = zip_of(&[("index.js", NODE_ASYNC_APP.as_bytes())]);
        deploy(&self.api, name, &self.node, "index.handler", &zip, settings).await
    }
}

/// The exact JSON text that the Python runtime returns for the `text` action. Lambda's
/// Python runtimes before 3.12 escape non-ASCII characters; 3.12 and later do not.
fn python_text_body(runtime: &str) -> &'static str {
    let minor: u32 = runtime
        .strip_prefix("python3.")
        .and_then(|m| m.parse().ok())
        .expect("python3.N runtime id");
    if minor < 12 {
        r#""h\u00e9llo  w\u00f6rld \u2713\ttab""#
    } else {
        r#""héllo  wörld ✓\ttab""#
    }
}

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Creates a function and returns its configuration. `settings` is a JSON object of
/// extra create fields such as `timeout` or `memory_size`.
async fn deploy(api: &Api, name: &str, runtime: &str, handler: &str, zip: &[u8], settings: Value) -> Value {
    let mut body = json!({"runtime": runtime, "handler": handler, "code": {"zip_file": base64_of(zip)}});
    for (key, value) in settings.as_object().expect("settings is a JSON object") {
        body[key] = value.clone();
    }
    let reply = api.put(&format!("/functions/{name}"), &body).await;
    assert_eq!(reply.status, 201, "creating function {name} failed: {}", reply.body);
    reply.body
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

    fn request_id(&self) -> String {
        self.header("x-request-id")
            .expect("response has X-Request-Id")
            .to_string()
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

    /// Decodes `X-Log-Result`.
    fn log_tail(&self) -> String {
        let encoded = self.header("x-log-result").expect("response has X-Log-Result");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("X-Log-Result is base64");
        String::from_utf8(decoded).expect("the log tail is UTF-8")
    }
}

/// Sends `POST /functions/{name}/invocations{query}` with extra headers and a raw body.
async fn invoke_raw(api: &Api, name_and_query: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Invoked {
    let (name, query) = name_and_query
        .split_once('?')
        .map_or((name_and_query, ""), |(n, q)| (n, q));
    let mut url = format!("{}/functions/{name}/invocations", api.url);
    if !query.is_empty() {
        url = format!("{url}?{query}");
    }
    let mut request = api.http.post(&url).bearer_auth(&api.key).body(body);
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

/// Invokes synchronously with a JSON event and no extra headers.
async fn invoke(api: &Api, name_and_query: &str, event: &Value) -> Invoked {
    invoke_raw(
        api,
        name_and_query,
        &[],
        serde_json::to_vec(event).expect("serialize the event"),
    )
    .await
}

/// Asserts a successful synchronous invoke: 200 without `X-Function-Error`.
#[track_caller]
fn assert_success(invoked: &Invoked) {
    assert_eq!(invoked.status, 200, "invoke status; body: {}", invoked.text());
    assert_eq!(
        invoked.header("x-function-error"),
        None,
        "unexpected function error: {}",
        invoked.text()
    );
}

/// Asserts a function error: 200 with `X-Function-Error: Unhandled` and the error type.
/// Returns the error document.
#[track_caller]
fn assert_function_error(invoked: &Invoked, error_type: &str) -> Value {
    assert_eq!(invoked.status, 200, "invoke status; body: {}", invoked.text());
    assert_eq!(
        invoked.header("x-function-error"),
        Some("Unhandled"),
        "X-Function-Error; body: {}",
        invoked.text()
    );
    let error = invoked.json();
    assert_eq!(error["errorType"], error_type, "errorType; body: {error}");
    error
}

/// Asserts an API error response with its status, exception name and message words.
#[track_caller]
fn assert_api_error(invoked: &Invoked, status: u16, error_type: &str, words: &[&str]) {
    assert_eq!(invoked.status, status, "status; body: {}", invoked.text());
    let body = invoked.json();
    assert_eq!(body["type"], error_type, "error type; body: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    for word in words {
        assert!(
            message.contains(word),
            "error message should contain {word:?}: {message}"
        );
    }
}

/// Returns the function's invocation records, newest first.
async fn records(api: &Api, name: &str) -> Vec<Value> {
    let reply = api.get(&format!("/functions/{name}/invocations")).await;
    assert_eq!(reply.status, 200, "listing invocations of {name}: {}", reply.body);
    reply.body["invocations"]
        .as_array()
        .expect("invocations is an array")
        .clone()
}

/// Returns the records with this request id.
fn records_of<'a>(records: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|record| record["request_id"] == request_id)
        .collect()
}

/// Polls the invocation records until `done` accepts them. Records are written in the
/// background, so they appear shortly after the response.
async fn wait_for_records(api: &Api, name: &str, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = records(api, name).await;
        if done(&found) {
            return found;
        }
        if Instant::now() > deadline {
            panic!("invocation records of {name} did not reach the expected state within {timeout:?}: {found:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns the log lines of `GET /functions/{name}/logs?{query}`.
async fn logs(api: &Api, name: &str, query: &str) -> Vec<Value> {
    let reply = api.get(&format!("/functions/{name}/logs?{query}")).await;
    assert_eq!(reply.status, 200, "reading logs of {name}: {}", reply.body);
    reply.body["events"].as_array().expect("events is an array").clone()
}

fn messages(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Polls the logs of one invocation until a line contains `needle`, and returns them.
async fn wait_for_log(api: &Api, name: &str, request_id: &str, needle: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = messages(&logs(api, name, &format!("request_id={request_id}")).await);
        if lines.iter().any(|line| line.contains(needle)) {
            return lines;
        }
        if Instant::now() > deadline {
            panic!("no log line of {name} request {request_id} contains {needle:?} within {timeout:?}: {lines:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a `nimbus` client command against the server and returns its output.
fn run_cli(server: &Server, args: &[&str]) -> std::process::Output {
    server
        .cli()
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("run nimbus {args:?}: {error}"))
}

/// Returns the value of `field` in a REPORT line, such as "12.34 ms" for "Duration".
fn report_field<'a>(report: &'a str, field: &str) -> Option<&'a str> {
    report
        .split('\t')
        .find_map(|part| part.trim().strip_prefix(&format!("{field}: ")))
}

// ---------------------------------------------------------------------------------------
// Synchronous invocation

#[tokio::test]
async fn python_body_byte_for_byte() {
    let lab = Lab::start();
    lab.python_function("py", json!({})).await;

    let invoked = invoke(&lab.api, "py", &json!({"action": "text"})).await;

    assert_success(&invoked);
    assert_eq!(invoked.text(), python_text_body(&lab.python));
    assert_eq!(invoked.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn node_body_byte_for_byte() {
    let lab = Lab::start();
    lab.node_function("node", json!({})).await;

    let invoked = invoke(&lab.api, "node", &json!({"action": "text"})).await;

    assert_success(&invoked);
    assert_eq!(invoked.body, r#""héllo  wörld ✓\ttab \"quoted\"""#.as_bytes());
}

#[tokio::test]
async fn context_matches_request() {
    let lab = Lab::start();
    lab.python_function("ids", json!({"timeout": 3})).await;

    let first = invoke(&lab.api, "ids", &json!({})).await;
    let second = invoke(&lab.api, "ids", &json!({})).await;

    assert_success(&first);
    assert_eq!(first.json()["request_id"], first.request_id());
    assert_eq!(second.json()["request_id"], second.request_id());
    assert_ne!(first.request_id(), second.request_id());
    let remaining = first.json()["remaining_ms"]
        .as_i64()
        .expect("remaining_ms is an integer");
    assert!(remaining > 0, "{remaining}");
    assert!(remaining <= 3000, "{remaining}");
}

#[tokio::test]
async fn empty_body_is_empty_object() {
    let lab = Lab::start();
    lab.python_function("empty", json!({})).await;

    let invoked = invoke_raw(&lab.api, "empty", &[], Vec::new()).await;

    assert_success(&invoked);
    let lines = wait_for_log(
        &lab.api,
        "empty",
        &invoked.request_id(),
        "event",
        Duration::from_secs(5),
    )
    .await;
    assert!(lines.contains(&"event {}".to_string()), "{lines:#?}");
}

#[tokio::test]
async fn executed_version_header() {
    let lab = Lab::start();
    lab.python_function("versioned", json!({})).await;
    let published = lab.api.post("/functions/versioned/versions", &json!({})).await;
    assert_eq!(published.status, 201, "publish version 1: {}", published.body);
    let updated = lab
        .api
        .put("/functions/versioned/configuration", &json!({"memory_size": 256}))
        .await;
    assert_eq!(updated.status, 200, "update configuration: {}", updated.body);
    let published = lab.api.post("/functions/versioned/versions", &json!({})).await;
    assert_eq!(published.status, 201, "publish version 2: {}", published.body);
    let alias = lab
        .api
        .put("/functions/versioned/aliases/live", &json!({"function_version": "1"}))
        .await;
    assert_eq!(alias.status, 201, "create alias: {}", alias.body);

    let latest = invoke(&lab.api, "versioned", &json!({})).await;
    let version_two = invoke(&lab.api, "versioned?qualifier=2", &json!({})).await;
    let through_alias = invoke(&lab.api, "versioned?qualifier=live", &json!({})).await;

    assert_success(&latest);
    assert_eq!(latest.header("x-executed-version"), Some("$LATEST"));
    assert_eq!(latest.json()["version"], "$LATEST");
    assert_eq!(version_two.header("x-executed-version"), Some("2"));
    assert_eq!(version_two.json()["version"], "2");
    assert_eq!(version_two.json()["memory"], "256");
    assert_eq!(through_alias.header("x-executed-version"), Some("1"));
    assert_eq!(through_alias.json()["version"], "1");
    assert_eq!(through_alias.json()["memory"], "128");
}

#[tokio::test]
async fn log_tail_cold_then_warm() {
    let lab = Lab::start();
    lab.python_function("tail", json!({})).await;
    let tail = [("x-log-type", "Tail")];

    let cold = invoke_raw(&lab.api, "tail", &tail, br#"{"marker": "first"}"#.to_vec()).await;
    let warm = invoke_raw(&lab.api, "tail", &tail, br#"{"marker": "second"}"#.to_vec()).await;

    assert_success(&cold);
    let cold_log = cold.log_tail();
    let request_id = cold.request_id();
    assert!(
        cold_log.contains(&format!("START RequestId: {request_id} Version: $LATEST")),
        "{cold_log}"
    );
    assert!(cold_log.contains(r#"event {"marker": "first"}"#), "{cold_log}");
    assert!(cold_log.contains(&format!("END RequestId: {request_id}")), "{cold_log}");
    let report = cold_log
        .lines()
        .find(|line| line.starts_with("REPORT RequestId:"))
        .expect("a REPORT line");
    assert!(report.contains(&request_id), "{report}");
    assert!(
        report_field(report, "Duration").is_some_and(|v| v.ends_with(" ms")),
        "{report}"
    );
    assert!(
        report_field(report, "Billed Duration").is_some_and(|v| v.ends_with(" ms")),
        "{report}"
    );
    assert_eq!(report_field(report, "Memory Size"), Some("128 MB"), "{report}");
    assert!(
        report_field(report, "Max Memory Used").is_some_and(|v| v.ends_with(" MB")),
        "{report}"
    );
    assert!(
        report_field(report, "Init Duration").is_some_and(|v| v.ends_with(" ms")),
        "{report}"
    );
    let cold_start = cold.header("x-cold-start").expect("cold start has X-Cold-Start");
    assert!(
        cold_start.contains("runtime="),
        "the Python bootstrap reports runtime init: {cold_start}"
    );
    assert!(cold_start.contains(";init="), "{cold_start}");
    assert!(cold_start.contains(";total="), "{cold_start}");

    assert_success(&warm);
    let warm_log = warm.log_tail();
    assert!(warm_log.contains(r#"event {"marker": "second"}"#), "{warm_log}");
    assert!(
        !warm_log.contains("first"),
        "the warm log holds only its own invocation: {warm_log}"
    );
    let report = warm_log
        .lines()
        .find(|line| line.starts_with("REPORT RequestId:"))
        .expect("a REPORT line");
    assert!(report_field(report, "Duration").is_some(), "{report}");
    assert_eq!(report_field(report, "Init Duration"), None, "{report}");
    assert_eq!(warm.header("x-cold-start"), None);
}

#[tokio::test]
async fn log_tail_last_4kb() {
    let lab = Lab::start();
    lab.python_function("chatty", json!({})).await;

    let invoked = invoke_raw(
        &lab.api,
        "chatty",
        &[("x-log-type", "Tail")],
        br#"{"action": "chatty"}"#.to_vec(),
    )
    .await;

    assert_success(&invoked);
    let tail = invoked.log_tail();
    assert!(tail.len() <= 4096, "the tail is {} bytes", tail.len());
    assert!(tail.len() > 3000, "the tail is {} bytes", tail.len());
    assert!(tail.contains("chatty line 199"), "{tail}");
    assert!(!tail.contains("chatty line 000"), "the tail drops the start: {tail}");
    let last = tail.lines().last().unwrap_or_default();
    assert!(last.starts_with("REPORT RequestId:"), "{last}");
    let stored = wait_for_log(
        &lab.api,
        "chatty",
        &invoked.request_id(),
        "REPORT",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        stored.iter().any(|m| m.starts_with("chatty line 000")),
        "the stored log is complete: {stored:#?}"
    );
}

#[tokio::test]
async fn init_output_before_start() {
    let lab = Lab::start();
    let source = format!("print(\"loading the model\")\n{PYTHON_APP}");
    let zip = zip_of(&[("app.py", source.as_bytes())]);
    deploy(&lab.api, "preload", &lab.python, "app.handler", &zip, json!({})).await;
    let tail = [("x-log-type", "Tail")];

    let cold = invoke_raw(&lab.api, "preload", &tail, b"{}".to_vec()).await;
    let warm = invoke_raw(&lab.api, "preload", &tail, b"{}".to_vec()).await;

    let cold_log = cold.log_tail();
    let loading = cold_log
        .find("loading the model")
        .unwrap_or_else(|| panic!("no init output: {cold_log}"));
    let start = cold_log
        .find("START RequestId:")
        .unwrap_or_else(|| panic!("no START line: {cold_log}"));
    assert!(loading < start, "init output comes before START: {cold_log}");
    assert!(!warm.log_tail().contains("loading the model"), "{}", warm.log_tail());
}

#[tokio::test]
async fn node_log_lines_carry_request_id() {
    let lab = Lab::start();
    lab.node_function("nodelog", json!({})).await;

    let invoked = invoke_raw(
        &lab.api,
        "nodelog",
        &[("x-log-type", "Tail")],
        br#"{"marker": "n1"}"#.to_vec(),
    )
    .await;

    assert_success(&invoked);
    let tail = invoked.log_tail();
    let line = tail
        .lines()
        .find(|line| line.contains(r#"event {"marker":"n1"}"#))
        .unwrap_or_else(|| panic!("{tail}"));
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 4, "timestamp, request id, level and message: {line:?}");
    assert_eq!(fields[1], invoked.request_id());
    assert_eq!(fields[2], "INFO");
}

#[tokio::test]
async fn long_output_line_dropped_quickly() {
    let lab = Lab::start();
    lab.python_function("longline", json!({})).await;

    let invoked = invoke(&lab.api, "longline", &json!({"action": "long_line"})).await;

    assert_success(&invoked);
    let request_id = invoked.request_id();
    let lines = wait_for_log(&lab.api, "longline", &request_id, "REPORT", Duration::from_secs(5)).await;
    assert!(lines.iter().any(|line| line.contains("was dropped")), "{lines:#?}");
    assert!(lines.contains(&"after the long line".to_string()), "{lines:#?}");
    let found = wait_for_records(&lab.api, "longline", Duration::from_secs(5), |r| !r.is_empty()).await;
    // Splitting a 5 MB line into log lines must not slow the invocation down: it took
    // seconds when each read rescanned the whole unfinished line.
    let duration = found[0]["duration_ms"].as_f64().expect("duration_ms is a number");
    assert!(duration < 1000.0, "the invocation took {duration} ms");
}

#[tokio::test]
async fn log_tail_absent_without_header() {
    let lab = Lab::start();
    lab.python_function("quiet", json!({})).await;

    let invoked = invoke(&lab.api, "quiet", &json!({})).await;

    assert_success(&invoked);
    assert_eq!(invoked.header("x-log-result"), None);
}

#[tokio::test]
async fn client_context_reaches_handler() {
    let lab = Lab::start();
    lab.python_function("context", json!({})).await;
    let encoded = base64_of(br#"{"custom": {"tenant": "acme"}, "env": {"locale": "fr"}}"#);

    let with_context = invoke_raw(&lab.api, "context", &[("x-client-context", &encoded)], b"{}".to_vec()).await;
    let without_context = invoke(&lab.api, "context", &json!({})).await;

    assert_success(&with_context);
    assert_eq!(with_context.json()["custom"], json!({"tenant": "acme"}));
    assert_eq!(with_context.json()["env"], json!({"locale": "fr"}));
    assert_eq!(without_context.json()["custom"], Value::Null);
}

#[tokio::test]
async fn client_context_invalid() {
    let lab = Lab::start();
    lab.python_function("context", json!({})).await;
    let not_json = base64_of(b"not json");

    let bad_base64 = invoke_raw(&lab.api, "context", &[("x-client-context", "%%%")], b"{}".to_vec()).await;
    let bad_json = invoke_raw(&lab.api, "context", &[("x-client-context", &not_json)], b"{}".to_vec()).await;

    assert_api_error(
        &bad_base64,
        400,
        "InvalidRequestContentException",
        &["X-Client-Context", "base64"],
    );
    assert_api_error(
        &bad_json,
        400,
        "InvalidRequestContentException",
        &["X-Client-Context", "JSON"],
    );
    assert!(
        records(&lab.api, "context").await.is_empty(),
        "a rejected invoke runs nothing"
    );
}

// ---------------------------------------------------------------------------------------
// Warm slots

#[tokio::test]
async fn warm_slot_keeps_module_state() {
    let lab = Lab::start();
    lab.python_function("counter", json!({})).await;

    let first = invoke(&lab.api, "counter", &json!({})).await;
    let second = invoke(&lab.api, "counter", &json!({})).await;
    let third = invoke(&lab.api, "counter", &json!({})).await;

    assert_eq!(first.json()["count"], 1);
    assert_eq!(second.json()["count"], 2);
    assert_eq!(third.json()["count"], 3);
    assert!(first.header("x-cold-start").is_some());
    assert_eq!(second.header("x-cold-start"), None);
    assert_eq!(third.header("x-cold-start"), None);
    let found = wait_for_records(&lab.api, "counter", Duration::from_secs(5), |r| r.len() == 3).await;
    assert_eq!(found[0]["slot_id"], found[2]["slot_id"], "one slot served all three");
}

#[tokio::test]
async fn config_change_starts_new_slot() {
    let lab = Lab::start();
    lab.python_function("resized", json!({})).await;
    invoke(&lab.api, "resized", &json!({})).await;
    let before = invoke(&lab.api, "resized", &json!({})).await;
    let updated = lab
        .api
        .put("/functions/resized/configuration", &json!({"memory_size": 512}))
        .await;
    assert_eq!(updated.status, 200, "update configuration: {}", updated.body);

    let after = invoke(&lab.api, "resized", &json!({})).await;

    assert_eq!(before.json()["count"], 2);
    assert_eq!(after.json()["count"], 1, "a new configuration gets a new slot");
    assert_eq!(after.json()["memory"], "512");
    assert!(after.header("x-cold-start").is_some());
    let found = wait_for_records(&lab.api, "resized", Duration::from_secs(5), |r| r.len() == 3).await;
    assert_ne!(found[0]["slot_id"], found[1]["slot_id"]);
}

#[tokio::test]
async fn concurrent_invokes_use_two_slots() {
    let lab = Lab::start();
    lab.python_function("parallel", json!({})).await;
    let sleep = json!({"action": "sleep", "seconds": 1});

    let started = Instant::now();
    let (one, two) = tokio::join!(
        invoke(&lab.api, "parallel", &sleep),
        invoke(&lab.api, "parallel", &sleep)
    );
    let elapsed = started.elapsed();

    assert_success(&one);
    assert_success(&two);
    assert!(
        elapsed < Duration::from_millis(1900),
        "the two invokes ran one after the other: {elapsed:?}"
    );
    let found = wait_for_records(&lab.api, "parallel", Duration::from_secs(5), |r| r.len() == 2).await;
    assert_ne!(found[0]["slot_id"], found[1]["slot_id"]);
}

// ---------------------------------------------------------------------------------------
// Function errors

#[tokio::test]
async fn python_exception_then_recovers() {
    let lab = Lab::start();
    lab.python_function("raiser", json!({})).await;

    let failed = invoke(&lab.api, "raiser", &json!({"action": "raise", "n": 7})).await;
    let next = invoke(&lab.api, "raiser", &json!({})).await;

    let error = assert_function_error(&failed, "MyError");
    assert_eq!(error["errorMessage"], "boom 7");
    let trace = error["stackTrace"].as_array().expect("stackTrace is an array");
    assert!(
        trace
            .iter()
            .any(|frame| frame.as_str().unwrap_or_default().contains("raise MyError")),
        "{error}"
    );
    assert_success(&next);
    assert_eq!(next.json()["count"], 2, "the slot survives a function error");
    let found = wait_for_records(&lab.api, "raiser", Duration::from_secs(5), |r| r.len() == 2).await;
    let failed_record = records_of(&found, &failed.request_id())[0];
    assert_eq!(failed_record["status"], "ERROR");
    assert_eq!(failed_record["error_type"], "MyError");
}

#[tokio::test]
async fn node_exception_then_recovers() {
    let lab = Lab::start();
    lab.node_function("thrower", json!({})).await;

    let failed = invoke(&lab.api, "thrower", &json!({"action": "raise", "n": 3})).await;
    let next = invoke(&lab.api, "thrower", &json!({})).await;

    let error = assert_function_error(&failed, "TypeError");
    assert_eq!(error["errorMessage"], "bad input 3");
    let trace = error["trace"].as_array().expect("trace is an array");
    assert_eq!(
        trace.first().and_then(Value::as_str),
        Some("TypeError: bad input 3"),
        "{error}"
    );
    assert!(trace.len() > 1, "the trace has stack frames: {error}");
    assert_success(&next);
    assert_eq!(next.json()["count"], 2, "the slot survives a function error");
}

#[tokio::test]
async fn timeout_then_recovers() {
    let lab = Lab::start();
    lab.python_function("slow", json!({"timeout": 1})).await;

    let started = Instant::now();
    let timed_out = invoke(&lab.api, "slow", &json!({"action": "sleep", "seconds": 5})).await;
    let elapsed = started.elapsed();
    let next = invoke(&lab.api, "slow", &json!({})).await;

    let error = assert_function_error(&timed_out, "Sandbox.Timedout");
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("Task timed out after 1.00 seconds"), "{message}");
    assert!(
        elapsed < Duration::from_secs(4),
        "the timeout ended the invoke after {elapsed:?}"
    );
    assert_success(&next);
    assert_eq!(next.json()["count"], 1, "a timed-out slot is replaced");
    let request_id = timed_out.request_id();
    let found = wait_for_records(&lab.api, "slow", Duration::from_secs(5), |r| r.len() == 2).await;
    let record = records_of(&found, &request_id)[0];
    assert_eq!(record["status"], "TIMEOUT");
    assert_eq!(record["error_type"], "Sandbox.Timedout");
    let lines = wait_for_log(&lab.api, "slow", &request_id, "Task timed out", Duration::from_secs(5)).await;
    assert!(
        lines.contains(&"sleeping 5".to_string()),
        "output before the timeout is kept: {lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line.starts_with("REPORT RequestId:")),
        "{lines:#?}"
    );
}

/// Checks that a slot whose runtime exits after it responded is replaced, so the next
/// event does not get that exit as its error. The sandbox backends detect exits
/// differently, so this runs on each.
async fn check_idle_exit_replaced(args: &[&str]) {
    let lab = Lab::start_with(args);
    lab.python_function("crashy", json!({})).await;

    let answered = invoke(&lab.api, "crashy", &json!({"action": "exit_later"})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let next = invoke(&lab.api, "crashy", &json!({})).await;

    assert_success(&answered);
    assert_success(&next);
    assert_eq!(
        next.json()["count"],
        1,
        "a slot whose process exited while idle is replaced"
    );
    assert!(next.header("x-cold-start").is_some());
}

#[tokio::test]
async fn idle_exit_replaced() {
    check_idle_exit_replaced(&[]).await;
}

#[tokio::test]
async fn idle_exit_replaced_process_sandbox() {
    check_idle_exit_replaced(&["--sandbox", "process"]).await;
}

#[tokio::test]
async fn process_exit_then_recovers() {
    let lab = Lab::start();
    lab.python_function("quitter", json!({})).await;

    let exited = invoke(&lab.api, "quitter", &json!({"action": "exit"})).await;
    let next = invoke(&lab.api, "quitter", &json!({})).await;

    let error = assert_function_error(&exited, "Runtime.ExitError");
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("exit status 3"), "{message}");
    assert!(message.contains(&exited.request_id()), "{message}");
    assert_success(&next);
    assert_eq!(next.json()["count"], 1, "an exited slot is replaced");
}

#[tokio::test]
async fn node_timeout_busy_loop() {
    let lab = Lab::start();
    lab.node_function("spinner", json!({"timeout": 1})).await;

    let timed_out = invoke(&lab.api, "spinner", &json!({"action": "spin"})).await;
    let next = invoke(&lab.api, "spinner", &json!({})).await;

    let error = assert_function_error(&timed_out, "Sandbox.Timedout");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("Task timed out after 1.00 seconds"),
        "{error}"
    );
    assert_success(&next);
    assert_eq!(next.json()["count"], 1, "a timed-out slot is replaced");
}

#[tokio::test]
async fn node_process_exit() {
    let lab = Lab::start();
    lab.node_function("nodeexit", json!({})).await;

    let exited = invoke(&lab.api, "nodeexit", &json!({"action": "exit"})).await;
    let next = invoke(&lab.api, "nodeexit", &json!({})).await;

    let error = assert_function_error(&exited, "Runtime.ExitError");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("exit status 5"),
        "{error}"
    );
    assert_success(&next);
}

/// Deploys a Python package whose init fails, checks the error on two invokes, then
/// fixes the code and checks that the next invoke works.
async fn check_init_failure(
    lab: &Lab,
    name: &str,
    handler: &str,
    files: &[(&str, &[u8])],
    error_type: &str,
    words: &[&str],
) {
    deploy(&lab.api, name, &lab.python, handler, &zip_of(files), json!({})).await;

    let mut request_ids = Vec::new();
    for attempt in 1..=2 {
        let failed = invoke(&lab.api, name, &json!({})).await;
        let error = assert_function_error(&failed, error_type);
        let message = error["errorMessage"].as_str().unwrap_or_default();
        for word in words {
            assert!(
                message.contains(word),
                "{name} attempt {attempt}: message should contain {word:?}: {message}"
            );
        }
        request_ids.push(failed.request_id());
    }
    let lines = wait_for_log(&lab.api, name, &request_ids[0], "INIT_REPORT", Duration::from_secs(5)).await;
    let init_report = lines
        .iter()
        .find(|line| line.starts_with("INIT_REPORT"))
        .expect("an INIT_REPORT line");
    assert!(
        init_report.contains(&format!("Error Type: {error_type}")),
        "{init_report}"
    );
    assert!(
        lines.iter().any(|line| line.starts_with("REPORT RequestId:")),
        "{lines:#?}"
    );
    let found = wait_for_records(&lab.api, name, Duration::from_secs(5), |r| r.len() == 2).await;
    for record in &found {
        assert_eq!(record["status"], "ERROR", "{record}");
        assert_eq!(record["error_type"], error_type, "{record}");
        assert_eq!(record["cold_start"], true, "{record}");
    }

    let fixed = json!({"zip_file": base64_of(&zip_of(&[("app.py", PYTHON_APP.as_bytes())]))});
    let updated = lab.api.put(&format!("/functions/{name}/code"), &fixed).await;
    assert_eq!(updated.status, 200, "update code of {name}: {}", updated.body);
    let configured = lab
        .api
        .put(
            &format!("/functions/{name}/configuration"),
            &json!({"handler": "app.handler"}),
        )
        .await;
    assert_eq!(configured.status, 200, "update handler of {name}: {}", configured.body);
    let next = invoke(&lab.api, name, &json!({})).await;
    assert_success(&next);
    assert_eq!(next.json()["count"], 1, "{name} works once fixed");
}

#[tokio::test]
async fn import_error() {
    let lab = Lab::start();
    let files: &[(&str, &[u8])] = &[(
        "app.py",
        b"import no_such_module_here\n\ndef handler(event, context):\n    return 1\n",
    )];
    check_init_failure(
        &lab,
        "importer",
        "app.handler",
        files,
        "Runtime.ImportModuleError",
        &["no_such_module_here"],
    )
    .await;
}

#[tokio::test]
async fn init_exception() {
    let lab = Lab::start();
    let files: &[(&str, &[u8])] = &[("app.py", b"raise ValueError('init broke')\n")];
    // As in awslambdaric 4.2.2, an exception raised at import is reported with its
    // class name as the error type.
    check_init_failure(&lab, "initfail", "app.handler", files, "ValueError", &["init broke"]).await;
}

#[tokio::test]
async fn init_exits() {
    let lab = Lab::start();
    let files: &[(&str, &[u8])] = &[("app.py", b"import sys\nsys.exit(2)\n")];
    check_init_failure(
        &lab,
        "initexit",
        "app.handler",
        files,
        "Runtime.ExitError",
        &["exit status 2"],
    )
    .await;
}

#[tokio::test]
async fn handler_not_found() {
    let lab = Lab::start();
    let files: &[(&str, &[u8])] = &[("app.py", b"def other(event, context):\n    return 1\n")];
    check_init_failure(
        &lab,
        "nohandler",
        "app.missing",
        files,
        "Runtime.HandlerNotFound",
        &["missing"],
    )
    .await;
}

#[tokio::test]
async fn response_too_large() {
    let lab = Lab::start();
    lab.python_function("big", json!({})).await;

    let failed = invoke(&lab.api, "big", &json!({"action": "big"})).await;
    let next = invoke(&lab.api, "big", &json!({})).await;

    let error = assert_function_error(&failed, "Function.ResponseSizeTooLarge");
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains(&SIX_MB.to_string()), "{message}");
    assert!(failed.body.len() < 1024, "the oversized response is not returned");
    assert_success(&next);
}

// ---------------------------------------------------------------------------------------
// Rejected requests

#[tokio::test]
async fn body_not_json_runs_nothing() {
    let lab = Lab::start();
    lab.python_function("strict", json!({})).await;

    let rejected = invoke_raw(&lab.api, "strict", &[], b"{not json".to_vec()).await;
    let accepted = invoke(&lab.api, "strict", &json!({})).await;

    assert_api_error(&rejected, 400, "InvalidRequestContentException", &["json"]);
    assert_eq!(
        accepted.json()["count"],
        1,
        "the handler did not run for the rejected body"
    );
    // Records are written in order, so once the accepted one is there a record of the
    // rejected request would be too.
    let found = wait_for_records(&lab.api, "strict", Duration::from_secs(5), |r| !r.is_empty()).await;
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[tokio::test]
async fn payload_size_limits() {
    let lab = Lab::start();
    lab.python_function("sizes", json!({})).await;
    // A JSON string of `len` bytes in total.
    let json_of_len = |len: usize| format!("\"{}\"", "a".repeat(len - 2)).into_bytes();
    let event = [("x-invocation-type", "Event")];

    let sync_over = invoke_raw(&lab.api, "sizes", &[], json_of_len(SIX_MB + 1)).await;
    let sync_at_limit = invoke_raw(&lab.api, "sizes", &[], json_of_len(SIX_MB)).await;
    let event_over = invoke_raw(&lab.api, "sizes", &event, json_of_len(ONE_MB + 1)).await;
    let event_at_limit = invoke_raw(&lab.api, "sizes", &event, json_of_len(ONE_MB)).await;

    assert_api_error(&sync_over, 413, "RequestTooLargeException", &["6291456"]);
    assert_success(&sync_at_limit);
    assert_api_error(
        &event_over,
        413,
        "RequestTooLargeException",
        &["1048576", "asynchronous"],
    );
    assert_eq!(event_at_limit.status, 202, "{}", event_at_limit.text());
}

#[tokio::test]
async fn unknown_qualifier_or_function() {
    let lab = Lab::start();
    lab.python_function("known", json!({})).await;

    let no_version = invoke(&lab.api, "known?qualifier=99", &json!({})).await;
    let no_alias = invoke(&lab.api, "known?qualifier=nosuchalias", &json!({})).await;
    let no_function = invoke(&lab.api, "unknown", &json!({})).await;

    assert_api_error(&no_version, 404, "ResourceNotFoundException", &["version 99"]);
    assert_api_error(&no_alias, 404, "ResourceNotFoundException", &["nosuchalias"]);
    assert_api_error(&no_function, 404, "ResourceNotFoundException", &["unknown"]);
}

#[tokio::test]
async fn invalid_log_type() {
    let lab = Lab::start();
    lab.python_function("logtype", json!({})).await;

    let rejected = invoke_raw(&lab.api, "logtype", &[("x-log-type", "Everything")], b"{}".to_vec()).await;

    assert_api_error(
        &rejected,
        400,
        "InvalidParameterValueException",
        &["X-Log-Type", "Everything", "Tail"],
    );
}

#[tokio::test]
async fn unknown_invocation_type() {
    let lab = Lab::start();
    lab.python_function("typed", json!({})).await;

    let rejected = invoke_raw(&lab.api, "typed", &[("x-invocation-type", "Later")], b"{}".to_vec()).await;

    assert_api_error(
        &rejected,
        400,
        "InvalidParameterValueException",
        &["X-Invocation-Type", "Later", "Event"],
    );
}

#[tokio::test]
async fn runtime_not_offered() {
    let lab = Lab::start();
    let offered = lab.server.offered_runtimes();
    let missing = (8..=13)
        .map(|minor| format!("python3.{minor}"))
        .find(|id| !offered.contains(id))
        .expect("some Python runtime from 3.8 to 3.13 is not offered");
    let zip = zip_of(&[("app.py", PYTHON_APP.as_bytes())]);
    deploy(&lab.api, "oldpy", &missing, "app.handler", &zip, json!({})).await;

    let rejected = invoke(&lab.api, "oldpy", &json!({})).await;
    let queued = invoke_raw(&lab.api, "oldpy", &[("x-invocation-type", "Event")], b"{}".to_vec()).await;

    assert_api_error(&rejected, 502, "InvalidRuntimeException", &[&missing, &lab.python]);
    assert_api_error(&queued, 502, "InvalidRuntimeException", &[&missing]);
}

#[tokio::test]
async fn runtimes_flag_restricts_offers() {
    // A server with every detected runtime shows the Python and Node.js ids to use.
    let detected = Lab::start();
    let python = detected.python.clone();
    let node = detected.node.clone();
    drop(detected);

    let data_dir = tempfile::tempdir().expect("create a data directory");
    let server = Server::start_in(data_dir.path(), &["--api-key", API_KEY, "--runtimes", &python], &[]);
    assert_eq!(server.offered_runtimes(), vec![python.clone()]);
    let api = server.api();
    let zip = zip_of(&[("index.js", NODE_ASYNC_APP.as_bytes())]);
    deploy(&api, "node-off", &node, "index.handler", &zip, json!({})).await;
    let zip = zip_of(&[("app.py", PYTHON_APP.as_bytes())]);
    deploy(&api, "python-on", &python, "app.handler", &zip, json!({})).await;

    let rejected = invoke(&api, "node-off", &json!({})).await;
    let accepted = invoke(&api, "python-on", &json!({})).await;

    assert_api_error(&rejected, 502, "InvalidRuntimeException", &[&node, &python]);
    assert_success(&accepted);
}

#[test]
fn runtimes_flag_rejects_missing_runtime() {
    let data_dir = tempfile::tempdir().expect("create a data directory");
    let mut child = Command::new(common::nimbus_binary())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            API_KEY,
            "--runtimes",
            "python2.7",
            "--data-dir",
        ])
        .arg(data_dir.path())
        .env_remove("NIMBUS_RUNTIMES")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nimbus server");

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the server process") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started with --runtimes python2.7 instead of exiting");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped stderr"), &mut stderr)
        .expect("read the server's stderr");

    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(stderr.contains("python2.7"), "{stderr}");
    assert!(stderr.contains("host offers"), "{stderr}");
}

#[tokio::test]
async fn reserved_concurrency_zero_throttles() {
    let lab = Lab::start();
    lab.python_function("blocked", json!({})).await;
    let reserved = lab
        .api
        .put(
            "/functions/blocked/concurrency",
            &json!({"reserved_concurrent_executions": 0}),
        )
        .await;
    assert_eq!(reserved.status, 200, "reserve concurrency: {}", reserved.body);

    let throttled = invoke(&lab.api, "blocked", &json!({})).await;

    assert_api_error(&throttled, 429, "TooManyRequestsException", &["reserved concurrency 0"]);
    assert_eq!(
        throttled.json()["reason"],
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    );
    assert!(throttled.header("retry-after").is_some(), "429 has Retry-After");
    let found = wait_for_records(&lab.api, "blocked", Duration::from_secs(5), |r| !r.is_empty()).await;
    assert_eq!(found[0]["status"], "THROTTLED");
    assert_eq!(found[0]["error_type"], "TooManyRequestsException");
    assert!(
        found[0]["trace_id"].as_str().unwrap_or_default().starts_with("Root=1-"),
        "{}",
        found[0]
    );

    let removed = lab.api.delete("/functions/blocked/concurrency").await;
    assert_eq!(removed.status, 204, "remove the reservation: {}", removed.body);
    let next = invoke(&lab.api, "blocked", &json!({})).await;
    assert_success(&next);
}

// ---------------------------------------------------------------------------------------
// Asynchronous invocation

#[tokio::test]
async fn event_runs_later() {
    let lab = Lab::start();
    lab.python_function("later", json!({})).await;

    let context = base64_of(br#"{"custom": {"queued": true}}"#);
    let headers = [("x-invocation-type", "Event"), ("x-client-context", context.as_str())];

    let queued = invoke_raw(&lab.api, "later", &headers, br#"{"marker": "async-1"}"#.to_vec()).await;

    assert_eq!(queued.status, 202, "{}", queued.text());
    assert!(queued.body.is_empty(), "202 has no body: {}", queued.text());
    let request_id = queued.request_id();
    let lines = wait_for_log(
        &lab.api,
        "later",
        &request_id,
        r#"event {"marker": "async-1"}"#,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        lines.iter().any(|line| line.starts_with("START RequestId:")),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&r#"custom {"queued": true}"#.to_string()),
        "the client context reaches the function: {lines:#?}"
    );
    let found = wait_for_records(&lab.api, "later", Duration::from_secs(5), |r| !r.is_empty()).await;
    assert_eq!(found[0]["request_id"], request_id);
    assert_eq!(found[0]["invocation_type"], "Event");
    assert_eq!(found[0]["status"], "SUCCESS");
}

#[tokio::test]
async fn event_through_alias() {
    let lab = Lab::start();
    lab.python_function("aliased", json!({})).await;
    let published = lab.api.post("/functions/aliased/versions", &json!({})).await;
    assert_eq!(published.status, 201, "publish version 1: {}", published.body);
    let alias = lab
        .api
        .put("/functions/aliased/aliases/prod", &json!({"function_version": "1"}))
        .await;
    assert_eq!(alias.status, 201, "create alias: {}", alias.body);

    let queued = invoke_raw(
        &lab.api,
        "aliased?qualifier=prod",
        &[("x-invocation-type", "Event")],
        b"{}".to_vec(),
    )
    .await;

    assert_eq!(queued.status, 202, "{}", queued.text());
    let found = wait_for_records(&lab.api, "aliased", Duration::from_secs(10), |r| !r.is_empty()).await;
    assert_eq!(found[0]["request_id"], queued.request_id());
    assert_eq!(found[0]["version"], "1");
    assert_eq!(found[0]["status"], "SUCCESS");
}

#[tokio::test]
async fn failed_event_retried_twice() {
    let lab = Lab::start_with(&["--async-retry-delays", "1,1"]);
    lab.python_function("flaky", json!({})).await;

    let queued = invoke_raw(
        &lab.api,
        "flaky",
        &[("x-invocation-type", "Event")],
        br#"{"action": "raise", "n": 1}"#.to_vec(),
    )
    .await;

    assert_eq!(queued.status, 202, "{}", queued.text());
    let request_id = queued.request_id();
    let found = wait_for_records(&lab.api, "flaky", Duration::from_secs(15), |r| {
        records_of(r, &request_id).len() >= 3
    })
    .await;
    let attempts = records_of(&found, &request_id);
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    for attempt in &attempts {
        assert_eq!(attempt["status"], "ERROR");
        assert_eq!(attempt["error_type"], "MyError");
        assert_eq!(attempt["invocation_type"], "Event");
    }
    // Two retries, then the event is dropped: no fourth attempt follows.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(records_of(&records(&lab.api, "flaky").await, &request_id).len(), 3);
}

#[tokio::test]
async fn queued_event_survives_restart() {
    let data_dir = tempfile::tempdir().expect("create a data directory");
    let args = ["--api-key", API_KEY];
    let first = Lab::around(Server::start_in(data_dir.path(), &args, &[]));
    first.python_function("durable", json!({})).await;
    let reserved = first
        .api
        .put(
            "/functions/durable/concurrency",
            &json!({"reserved_concurrent_executions": 0}),
        )
        .await;
    assert_eq!(reserved.status, 200, "reserve concurrency: {}", reserved.body);

    let queued = invoke_raw(
        &first.api,
        "durable",
        &[("x-invocation-type", "Event")],
        br#"{"marker": "survivor"}"#.to_vec(),
    )
    .await;
    assert_eq!(queued.status, 202, "{}", queued.text());
    let request_id = queued.request_id();
    let found = wait_for_records(&first.api, "durable", Duration::from_secs(10), |r| {
        !records_of(r, &request_id).is_empty()
    })
    .await;
    assert_eq!(records_of(&found, &request_id)[0]["status"], "THROTTLED");
    first.server.stop_gracefully();

    let second = Lab::around(Server::start_in(data_dir.path(), &args, &[]));
    let removed = second.api.delete("/functions/durable/concurrency").await;
    assert_eq!(removed.status, 204, "remove the reservation: {}", removed.body);

    let lines = wait_for_log(
        &second.api,
        "durable",
        &request_id,
        r#"event {"marker": "survivor"}"#,
        Duration::from_secs(15),
    )
    .await;
    assert!(
        lines.iter().any(|line| line.starts_with("END RequestId:")),
        "{lines:#?}"
    );
    let found = wait_for_records(&second.api, "durable", Duration::from_secs(5), |r| {
        records_of(r, &request_id)
            .iter()
            .any(|record| record["status"] == "SUCCESS")
    })
    .await;
    let succeeded = records_of(&found, &request_id)
        .into_iter()
        .filter(|record| record["status"] == "SUCCESS")
        .count();
    assert_eq!(succeeded, 1, "the event ran once");
}

#[tokio::test]
async fn dry_run_runs_nothing() {
    let lab = Lab::start();
    lab.python_function("dry", json!({})).await;

    let dry = invoke_raw(&lab.api, "dry", &[("x-invocation-type", "DryRun")], b"{}".to_vec()).await;
    let real = invoke(&lab.api, "dry", &json!({})).await;

    assert_eq!(dry.status, 204, "{}", dry.text());
    assert!(dry.header("x-request-id").is_some());
    assert!(dry.body.is_empty());
    assert_eq!(real.json()["count"], 1, "the dry run did not run the handler");
    let found = wait_for_records(&lab.api, "dry", Duration::from_secs(5), |r| !r.is_empty()).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(logs(&lab.api, "dry", &format!("request_id={}", dry.request_id()))
        .await
        .is_empty());
}

// ---------------------------------------------------------------------------------------
// Invocation records and logs

#[tokio::test]
async fn invocation_record_fields() {
    let lab = Lab::start();
    lab.python_function("recorded", json!({})).await;

    let cold = invoke(&lab.api, "recorded", &json!({})).await;
    let warm = invoke(&lab.api, "recorded", &json!({})).await;
    let failed = invoke(&lab.api, "recorded", &json!({"action": "raise"})).await;

    let found = wait_for_records(&lab.api, "recorded", Duration::from_secs(5), |r| r.len() == 3).await;
    let cold_record = records_of(&found, &cold.request_id())[0];
    let warm_record = records_of(&found, &warm.request_id())[0];
    let failed_record = records_of(&found, &failed.request_id())[0];
    assert_eq!(found[0]["request_id"], failed.request_id(), "newest first");
    for record in [cold_record, warm_record, failed_record] {
        assert_eq!(record["version"], "$LATEST", "{record}");
        assert_eq!(record["invocation_type"], "RequestResponse", "{record}");
        let duration = record["duration_ms"].as_f64().expect("duration_ms is a number");
        let billed = record["billed_duration_ms"]
            .as_u64()
            .expect("billed_duration_ms is an integer");
        assert!(duration > 0.0, "{record}");
        assert!(billed as f64 >= duration, "{record}");
        assert!(record["memory_used_mb"].as_u64().is_some_and(|mb| mb > 0), "{record}");
        assert!(
            record["trace_id"].as_str().is_some_and(|id| id.starts_with("Root=1-")),
            "{record}"
        );
        assert_eq!(record["slot_id"], cold_record["slot_id"], "{record}");
    }
    assert_eq!(cold_record["status"], "SUCCESS");
    assert_eq!(cold_record["cold_start"], true);
    assert!(
        cold_record["init_duration_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{cold_record}"
    );
    assert!(
        cold_record["slot_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{cold_record}"
    );
    let init_ms = cold_record["init_duration_ms"].as_f64().unwrap_or_default();
    let runtime_init_ms = cold_record["runtime_init_ms"].as_f64();
    let user_init_ms = cold_record["user_init_ms"].as_f64();
    assert!(runtime_init_ms.is_some(), "{cold_record}");
    assert!(user_init_ms.is_some(), "{cold_record}");
    let phases_ms = runtime_init_ms.unwrap_or_default() + user_init_ms.unwrap_or_default();
    assert!(
        (phases_ms - init_ms).abs() < 0.01,
        "runtime and user init add up to init: {cold_record}"
    );
    assert!(cold_record["sandbox_ms"].as_f64().is_some(), "{cold_record}");
    assert!(cold_record["code_ms"].as_f64().is_some(), "{cold_record}");
    assert!(
        ["L1", "L2", "L3"].contains(&cold_record["code_tier"].as_str().unwrap_or_default()),
        "{cold_record}"
    );
    assert_eq!(warm_record["status"], "SUCCESS");
    assert_eq!(warm_record["cold_start"], false);
    assert_eq!(warm_record["init_duration_ms"], Value::Null);
    for phase in ["sandbox_ms", "code_ms", "code_tier", "runtime_init_ms", "user_init_ms"] {
        assert_eq!(
            warm_record[phase],
            Value::Null,
            "{phase} on a warm start: {warm_record}"
        );
    }
    assert_eq!(failed_record["status"], "ERROR");
    assert_eq!(failed_record["error_type"], "MyError");
    assert_ne!(cold_record["trace_id"], warm_record["trace_id"]);
}

#[tokio::test]
async fn logs_filtered_by_request_and_time() {
    let lab = Lab::start();
    lab.python_function("logged", json!({})).await;
    let first = invoke(&lab.api, "logged", &json!({"marker": "one"})).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = invoke(&lab.api, "logged", &json!({"marker": "two"})).await;
    wait_for_log(
        &lab.api,
        "logged",
        &second.request_id(),
        "END RequestId",
        Duration::from_secs(5),
    )
    .await;

    let of_first = logs(&lab.api, "logged", &format!("request_id={}", first.request_id())).await;
    let since = logs(&lab.api, "logged", &format!("start_time={between}")).await;
    let before = logs(&lab.api, "logged", &format!("end_time={between}")).await;
    // The second invocation's first line, as RFC 3339 instead of epoch milliseconds.
    let second_start = since
        .first()
        .and_then(|line| line["timestamp"].as_str())
        .unwrap_or_default()
        .to_string();
    let since_rfc3339 = logs(&lab.api, "logged", &format!("start_time={second_start}")).await;
    let all = logs(&lab.api, "logged", "").await;

    let first_messages = messages(&of_first);
    assert!(
        first_messages.iter().any(|m| m.contains(r#""marker": "one""#)),
        "{first_messages:#?}"
    );
    assert!(
        of_first.iter().all(|line| line["request_id"] == first.request_id()),
        "{of_first:#?}"
    );
    assert!(!since.is_empty());
    assert!(
        since.iter().all(|line| line["request_id"] == second.request_id()),
        "{since:#?}"
    );
    assert!(
        messages(&since).iter().any(|m| m.contains(r#""marker": "two""#)),
        "{since:#?}"
    );
    assert_eq!(messages(&since_rfc3339), messages(&since));
    assert_eq!(messages(&before), first_messages);
    assert_eq!(all.len(), of_first.len() + since.len(), "{all:#?}");
}

#[tokio::test]
async fn logs_invalid_start_time() {
    let lab = Lab::start();
    lab.python_function("logged", json!({})).await;

    let reply = lab.api.get("/functions/logged/logs?start_time=yesterday").await;

    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.text("type"), "InvalidParameterValueException");
    assert!(reply.text("message").contains("start_time"), "{}", reply.body);
}

// ---------------------------------------------------------------------------------------
// The CLI

#[tokio::test]
async fn cli_invoke_prints_body() {
    let lab = Lab::start();
    lab.python_function("cli", json!({})).await;

    let output = run_cli(
        &lab.server,
        &["invoke", "cli", "--payload", r#"{"action": "text"}"#, "--log-tail"],
    );

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "nimbus invoke failed: {stderr}");
    assert_eq!(stdout, format!("{}\n", python_text_body(&lab.python)));
    assert!(stderr.contains("START RequestId:"), "{stderr}");
    assert!(stderr.contains("REPORT RequestId:"), "{stderr}");
}

#[tokio::test]
async fn cli_invoke_function_error() {
    let lab = Lab::start();
    lab.python_function("clifail", json!({})).await;

    let output = run_cli(
        &lab.server,
        &["invoke", "clifail", "--payload", r#"{"action": "raise", "n": 2}"#],
    );

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a function error fails the command: {stdout}");
    assert!(stdout.contains(r#""errorType": "MyError""#), "{stdout}");
    assert!(stderr.contains("Unhandled"), "{stderr}");
    assert!(stderr.contains("clifail"), "{stderr}");
}

#[tokio::test]
async fn cli_invoke_async_and_context() {
    let lab = Lab::start();
    lab.python_function("cliasync", json!({})).await;

    let queued = run_cli(
        &lab.server,
        &[
            "invoke",
            "cliasync",
            "--async",
            "--payload",
            r#"{"marker": "cli-async"}"#,
        ],
    );
    let with_context = run_cli(
        &lab.server,
        &[
            "invoke",
            "cliasync",
            "--client-context",
            r#"{"custom": {"from": "cli"}}"#,
        ],
    );

    let queued_stdout = String::from_utf8_lossy(&queued.stdout);
    assert!(queued.status.success(), "{}", String::from_utf8_lossy(&queued.stderr));
    let request_id = queued_stdout
        .trim()
        .strip_prefix("queued event ")
        .expect("prints the queued request id")
        .to_string();
    wait_for_log(&lab.api, "cliasync", &request_id, "cli-async", Duration::from_secs(10)).await;
    assert!(
        with_context.status.success(),
        "{}",
        String::from_utf8_lossy(&with_context.stderr)
    );
    let body: Value = serde_json::from_slice(&with_context.stdout).expect("the CLI prints the JSON body");
    assert_eq!(body["custom"], json!({"from": "cli"}));
}

#[tokio::test]
async fn cli_logs_prints_lines() {
    let lab = Lab::start();
    lab.python_function("printed", json!({})).await;
    let invoked = invoke(&lab.api, "printed", &json!({"marker": "cli-logs"})).await;
    let request_id = invoked.request_id();
    wait_for_log(
        &lab.api,
        "printed",
        &request_id,
        "END RequestId",
        Duration::from_secs(5),
    )
    .await;

    let output = run_cli(&lab.server, &["logs", "printed"]);
    let filtered = run_cli(&lab.server, &["logs", "printed", "--request-id", "no-such-request"]);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("START RequestId: {request_id}")), "{stdout}");
    assert!(stdout.contains(r#"event {"marker": "cli-logs"}"#), "{stdout}");
    assert!(stdout.contains(&format!("REPORT RequestId: {request_id}")), "{stdout}");
    assert!(filtered.status.success());
    assert!(
        filtered.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&filtered.stdout)
    );
}

#[tokio::test]
async fn cli_logs_follow() {
    let lab = Lab::start();
    lab.python_function("followed", json!({})).await;
    invoke(&lab.api, "followed", &json!({"marker": "before-follow"})).await;
    wait_for_records(&lab.api, "followed", Duration::from_secs(5), |r| !r.is_empty()).await;

    let mut follower = lab
        .server
        .cli()
        .args(["logs", "followed", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nimbus logs --follow");
    let (sender, lines) = mpsc::channel::<String>();
    let stdout = follower.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for_line = |needle: &str| -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Err(format!(
            "nimbus logs --follow printed no line with {needle:?} within 10 s"
        ))
    };

    let started = wait_for_line("before-follow");
    let after = if started.is_ok() {
        invoke(&lab.api, "followed", &json!({"marker": "after-follow"})).await;
        wait_for_line("after-follow")
    } else {
        Err("not reached".to_string())
    };
    let _ = follower.kill();
    let _ = follower.wait();

    assert_eq!(started, Ok(()));
    assert_eq!(after, Ok(()));
}

// ---------------------------------------------------------------------------------------
// Slot lifetime

#[tokio::test]
async fn idle_slot_expires() {
    let lab = Lab::start_with(&["--idle-ttl-seconds", "1"]);
    lab.python_function("idle", json!({})).await;

    let cold = invoke(&lab.api, "idle", &json!({})).await;
    let warm = invoke(&lab.api, "idle", &json!({})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_idle = invoke(&lab.api, "idle", &json!({})).await;

    assert!(cold.header("x-cold-start").is_some());
    assert_eq!(warm.header("x-cold-start"), None);
    assert_eq!(warm.json()["count"], 2);
    assert!(
        after_idle.header("x-cold-start").is_some(),
        "an expired slot means a cold start"
    );
    assert_eq!(after_idle.json()["count"], 1);
    let found = wait_for_records(&lab.api, "idle", Duration::from_secs(5), |r| r.len() == 3).await;
    assert_eq!(found[0]["cold_start"], true);
    assert_ne!(found[0]["slot_id"], found[2]["slot_id"]);
}

#[tokio::test]
async fn max_slots_evicts_idle_slot() {
    let lab = Lab::start_with(&["--max-slots", "1"]);
    lab.python_function("first", json!({})).await;
    lab.python_function("second", json!({})).await;

    let first = invoke(&lab.api, "first", &json!({})).await;
    let second = invoke(&lab.api, "second", &json!({})).await;
    let first_again = invoke(&lab.api, "first", &json!({})).await;

    assert_success(&first);
    assert_success(&second);
    assert!(second.header("x-cold-start").is_some());
    assert_success(&first_again);
    assert_eq!(
        first_again.json()["count"],
        1,
        "the idle slot of 'first' made room for 'second'"
    );
}

#[tokio::test]
async fn max_slots_busy_throttles() {
    let lab = Lab::start_with(&["--max-slots", "1"]);
    lab.python_function("busy", json!({})).await;
    let sleep = json!({"action": "sleep", "seconds": 1});
    let empty = json!({});

    let (running, refused) = tokio::join!(invoke(&lab.api, "busy", &sleep), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        invoke(&lab.api, "busy", &empty).await
    });

    assert_success(&running);
    assert_api_error(&refused, 429, "TooManyRequestsException", &["1 execution slots"]);
    assert!(refused.header("retry-after").is_some());
    let next = invoke(&lab.api, "busy", &empty).await;
    assert_success(&next);
}

#[tokio::test]
async fn failed_slots_free_capacity() {
    let lab = Lab::start_with(&["--max-slots", "1"]);
    lab.python_function("fragile", json!({"timeout": 1})).await;
    let broken = zip_of(&[("app.py", b"import no_such_module_here\n".as_slice())]);
    deploy(&lab.api, "broken", &lab.python, "app.handler", &broken, json!({})).await;

    let timed_out = invoke(&lab.api, "fragile", &json!({"action": "sleep", "seconds": 3})).await;
    let exited = invoke(&lab.api, "fragile", &json!({"action": "exit"})).await;
    let init_failed = invoke(&lab.api, "broken", &json!({})).await;
    let next = invoke(&lab.api, "fragile", &json!({})).await;

    assert_function_error(&timed_out, "Sandbox.Timedout");
    assert_function_error(&exited, "Runtime.ExitError");
    assert_function_error(&init_failed, "Runtime.ImportModuleError");
    assert_success(&next);
}

#[tokio::test]
async fn client_disconnect_keeps_slot() {
    let lab = Lab::start();
    lab.python_function("patient", json!({"timeout": 10})).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("build a client");

    let abandoned = impatient
        .post(format!("{}/functions/patient/invocations", lab.api.url))
        .bearer_auth(&lab.api.key)
        .body(r#"{"action": "sleep", "seconds": 2}"#)
        .send()
        .await;
    let next = invoke(&lab.api, "patient", &json!({})).await;

    assert!(
        abandoned.as_ref().is_err_and(reqwest::Error::is_timeout),
        "{abandoned:?}"
    );
    assert_success(&next);
    let next_id = next.request_id();
    let found = wait_for_records(&lab.api, "patient", Duration::from_secs(10), |r| r.len() == 2).await;
    let first = found
        .iter()
        .find(|record| record["request_id"] != next_id.as_str())
        .expect("a record of the abandoned invoke");
    assert_eq!(first["status"], "SUCCESS", "{first}");
    assert!(first["duration_ms"].as_f64().is_some_and(|ms| ms >= 2000.0), "{first}");
    // The slot went back to the pool: with both slots idle, two invokes at once are warm.
    let empty = json!({});
    let (one, two) = tokio::join!(invoke(&lab.api, "patient", &empty), invoke(&lab.api, "patient", &empty));
    assert_eq!(one.header("x-cold-start"), None);
    assert_eq!(two.header("x-cold-start"), None);
}

// ---------------------------------------------------------------------------------------
// Node.js handler styles

#[tokio::test]
async fn node_async_handler() {
    let lab = Lab::start();
    lab.node_function("nodeasync", json!({})).await;

    let invoked = invoke(&lab.api, "nodeasync", &json!({})).await;

    assert_success(&invoked);
    let body = invoked.json();
    assert_eq!(body["style"], "async");
    assert_eq!(body["count"], 1);
    assert_eq!(body["requestId"], invoked.request_id());
}

#[tokio::test]
async fn node_callback_handler() {
    let lab = Lab::start();
    let zip = zip_of(&[("callback.js", NODE_CALLBACK_APP.as_bytes())]);
    deploy(&lab.api, "nodecallback", &lab.node, "callback.handler", &zip, json!({})).await;

    let invoked = invoke(&lab.api, "nodecallback", &json!({"value": 21})).await;

    assert_success(&invoked);
    let body = invoked.json();
    assert_eq!(body["style"], "callback");
    assert_eq!(body["doubled"], 42);
    assert_eq!(body["requestId"], invoked.request_id());
}

#[tokio::test]
async fn node_module_in_folder() {
    let lab = Lab::start();
    let zip = zip_of(&[("src/handlers/app.mjs", NODE_MODULE_APP.as_bytes())]);
    deploy(
        &lab.api,
        "nodemodule",
        &lab.node,
        "src/handlers/app.handler",
        &zip,
        json!({}),
    )
    .await;

    let invoked = invoke(&lab.api, "nodemodule", &json!({"echo": "ünïcode"})).await;

    assert_success(&invoked);
    let body = invoked.json();
    assert_eq!(body["style"], "module");
    assert_eq!(body["file"], "app.mjs");
    assert_eq!(body["echo"], "ünïcode");
}

// ---------------------------------------------------------------------------------------
// Unmodified runtime clients

/// Runs a setup command and panics with the command line and its output if it fails.
fn run_setup(program: &str, args: &[&str], directory: Option<&Path>) -> std::process::Output {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(directory) = directory {
        command.current_dir(directory);
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("`{program} {}` could not start: {error}", args.join(" ")));
    if !output.status.success() {
        panic!(
            "`{program} {}` failed with {}\nstdout: {}\nstderr: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Installs awslambdaric from PyPI into `target` for the host's /usr/bin/python3.
fn install_awslambdaric(target: &Path) {
    let target = target.to_str().expect("temp paths are UTF-8");
    let first = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        target,
        "awslambdaric",
    ];
    let installed = Command::new("/usr/bin/python3").args(first).output();
    if installed.as_ref().is_ok_and(|output| output.status.success()) {
        return;
    }
    let first_error = match installed {
        Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
        Err(error) => error.to_string(),
    };
    eprintln!(
        "`/usr/bin/python3 {}` failed, trying wheels for 3.11: {first_error}",
        first.join(" ")
    );
    let fallback = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--python-version",
        "3.11",
        "--only-binary=:all:",
        "--target",
        target,
        "awslambdaric",
    ];
    run_setup("python3", &fallback, None);
}

#[tokio::test]
async fn awslambdaric_python_runtime() {
    let lab = Lab::start();
    let package = tempfile::tempdir().expect("create a package directory");
    install_awslambdaric(package.path());
    let app = "def handler(event, context):\n    if event.get(\"fail\"):\n        raise KeyError(\"missing item\")\n    return {\"client\": \"awslambdaric\", \"sum\": sum(event[\"numbers\"]), \"request_id\": context.aws_request_id}\n";
    std::fs::write(package.path().join("app.py"), app).expect("write app.py");
    let bootstrap = package.path().join("bootstrap");
    std::fs::write(
        &bootstrap,
        "#!/bin/sh\nexec /usr/bin/python3 -m awslambdaric app.handler\n",
    )
    .expect("write bootstrap");
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).expect("make bootstrap executable");
    deploy(
        &lab.api,
        "ric",
        "provided.al2023",
        "app.handler",
        &zip_dir(package.path()),
        json!({}),
    )
    .await;

    let invoked = invoke(&lab.api, "ric", &json!({"numbers": [1, 2, 3]})).await;
    let failed = invoke(&lab.api, "ric", &json!({"fail": true})).await;
    let again = invoke(&lab.api, "ric", &json!({"numbers": [10]})).await;

    assert_success(&invoked);
    assert_eq!(invoked.json()["client"], "awslambdaric");
    assert_eq!(invoked.json()["sum"], 6);
    assert_eq!(invoked.json()["request_id"], invoked.request_id());
    let error = assert_function_error(&failed, "KeyError");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("missing item"),
        "{error}"
    );
    assert_success(&again);
    assert_eq!(again.json()["sum"], 10);
}

/// Installs aws-lambda-ric from npm into a scratch project and copies the parts a
/// function needs at run time (its entry point and the built native addon) to
/// `target/node_modules/aws-lambda-ric`. Building the addon needs cmake, autoconf,
/// automake, libtool and a C++ compiler.
fn install_aws_lambda_ric(target: &Path) {
    let project = tempfile::tempdir().expect("create an npm project");
    // npm 11 runs a dependency's install scripts only when allowScripts lists it.
    std::fs::write(
        project.path().join("package.json"),
        r#"{"name": "ric-build", "version": "1.0.0", "private": true, "allowScripts": {"aws-lambda-ric": true}}"#,
    )
    .expect("write package.json");
    run_setup(
        "npm",
        &["install", "--no-audit", "--no-fund", "aws-lambda-ric@3"],
        Some(project.path()),
    );
    let installed = project.path().join("node_modules/aws-lambda-ric");
    assert!(
        installed.join("dist/rapid-client.node").exists(),
        "npm installed aws-lambda-ric without building its native addon; install cmake, autoconf, automake, libtool and g++"
    );
    let destination = target.join("node_modules/aws-lambda-ric");
    std::fs::create_dir_all(&destination).expect("create node_modules");
    for part in ["bin", "dist", "package.json"] {
        run_setup(
            "cp",
            &[
                "-r",
                installed.join(part).to_str().unwrap(),
                destination.to_str().unwrap(),
            ],
            None,
        );
    }
}

#[tokio::test]
async fn aws_lambda_ric_node_runtime() {
    let lab = Lab::start();
    let package = tempfile::tempdir().expect("create a package directory");
    install_aws_lambda_ric(package.path());
    let handler = "exports.handler = async (event) => {\n  if (event.fail) throw new TypeError('bad input');\n  return { client: 'aws-lambda-ric', doubled: event.n * 2 };\n};\n";
    std::fs::write(package.path().join("index.js"), handler).expect("write index.js");
    let bootstrap = package.path().join("bootstrap");
    std::fs::write(
        &bootstrap,
        "#!/bin/sh\nexec /usr/bin/node /var/task/node_modules/aws-lambda-ric/bin/index.mjs index.handler\n",
    )
    .expect("write bootstrap");
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).expect("make bootstrap executable");
    deploy(
        &lab.api,
        "node-ric",
        "provided.al2023",
        "index.handler",
        &zip_dir(package.path()),
        json!({}),
    )
    .await;

    let invoked = invoke(&lab.api, "node-ric", &json!({"n": 21})).await;
    let failed = invoke(&lab.api, "node-ric", &json!({"fail": true})).await;
    let again = invoke(&lab.api, "node-ric", &json!({"n": 5})).await;

    assert_success(&invoked);
    assert_eq!(invoked.json()["client"], "aws-lambda-ric");
    assert_eq!(invoked.json()["doubled"], 42);
    let error = assert_function_error(&failed, "TypeError");
    assert!(
        error["errorMessage"].as_str().unwrap_or_default().contains("bad input"),
        "{error}"
    );
    assert_success(&again);
    assert_eq!(again.json()["doubled"], 10);
}

/// Builds examples/rust-hello with cargo and returns the path of its `bootstrap`.
fn build_rust_example() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let args = [
        "build",
        "--release",
        "--manifest-path",
        "examples/rust-hello/Cargo.toml",
        "--message-format=json-render-diagnostics",
    ];
    let output = run_setup(&cargo, &args, Some(&workspace));
    // Cargo prints one JSON message per line; the binary's artifact names its file,
    // wherever CARGO_TARGET_DIR puts it.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact" && message["target"]["name"] == "bootstrap")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("`{cargo} {}` reported no bootstrap executable", args.join(" ")))
}

#[tokio::test]
async fn rust_lambda_runtime() {
    let bootstrap = tokio::task::spawn_blocking(build_rust_example)
        .await
        .expect("the build task finished");
    let lab = Lab::start();
    let package = tempfile::tempdir().expect("create a package directory");
    std::fs::copy(&bootstrap, package.path().join("bootstrap")).expect("copy the bootstrap binary");
    deploy(
        &lab.api,
        "rusty",
        "provided.al2023",
        "bootstrap",
        &zip_dir(package.path()),
        json!({}),
    )
    .await;

    let summed = invoke(&lab.api, "rusty", &json!({"numbers": [1, 2, 3]})).await;
    let negative = invoke(&lab.api, "rusty", &json!({"numbers": [1, -2]})).await;
    let again = invoke(&lab.api, "rusty", &json!({"numbers": [4]})).await;

    assert_success(&summed);
    assert_eq!(summed.json()["sum"], 6);
    assert_eq!(summed.json()["count"], 3);
    assert_eq!(summed.json()["request_id"], summed.request_id());
    assert_eq!(negative.status, 200);
    assert_eq!(negative.header("x-function-error"), Some("Unhandled"));
    let error = negative.json();
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("negative numbers"),
        "{error}"
    );
    assert_success(&again);
    assert_eq!(again.json()["sum"], 4);
}
