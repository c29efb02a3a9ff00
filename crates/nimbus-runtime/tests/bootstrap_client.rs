//! The Runtime API clients of both bootstraps: pipelined requests, broken connections,
//! large and non-ASCII payloads, and responses they must reject.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use nimbus_runtime::{InvokeOutcome, RuntimeApiLimits, RuntimeOffer, DEFAULT_MAX_RESPONSE_BYTES};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PYTHON_APP: &str = r#"
import os
import sys
import time


def echo(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError(str(event["n"]))
    return event


def echo_client_context(event, context):
    return {"event": event, "custom": context.client_context.custom}


def wait_for_proceed(event, context):
    open("started", "w").close()
    deadline = time.time() + 20
    while not os.path.exists("proceed") and time.time() < deadline:
        time.sleep(0.01)
    os.remove("started")
    os.remove("proceed")
    return event


def loaded_modules(event, context):
    heavy = ["socket", "http.client", "email", "ssl", "selectors"]
    return [name for name in heavy if name in sys.modules]
"#;

const NODE_APP: &str = r#"
const fs = require('node:fs');

exports.echo = async (event) => {
  if (event && event.fail) {
    throw new Error(String(event.n));
  }
  return event;
};

exports.echoClientContext = async (event, context) => ({ event, custom: context.clientContext.custom });

exports.waitForProceed = async (event) => {
  fs.writeFileSync('started', '');
  const deadline = Date.now() + 20000;
  while (!fs.existsSync('proceed') && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  fs.rmSync('started');
  fs.rmSync('proceed');
  return event;
};
"#;

/// One bootstrap under test: its runtime, task root and handler names.
struct Bootstrap {
    offer: RuntimeOffer,
    files: [(&'static str, &'static str); 1],
    module: &'static str,
    echo: &'static str,
    echo_client_context: &'static str,
    wait_for_proceed: &'static str,
}

fn python() -> Bootstrap {
    Bootstrap {
        offer: python_offer(),
        files: [("app.py", PYTHON_APP)],
        module: "app",
        echo: "echo",
        echo_client_context: "echo_client_context",
        wait_for_proceed: "wait_for_proceed",
    }
}

fn node() -> Bootstrap {
    Bootstrap {
        offer: node_offer(),
        files: [("index.js", NODE_APP)],
        module: "index",
        echo: "echo",
        echo_client_context: "echoClientContext",
        wait_for_proceed: "waitForProceed",
    }
}

impl Bootstrap {
    async fn start(&self, function: &str) -> TestSlot {
        let handler = format!("{}.{function}", self.module);
        let slot = start(&self.offer, &handler, &self.files).await;
        slot.expect_ready().await;
        slot
    }

    async fn start_with_address(&self, function: &str, address: impl FnOnce(SocketAddr) -> String) -> TestSlot {
        let handler = format!("{}.{function}", self.module);
        start_with_address(&self.offer, &handler, &self.files, RuntimeApiLimits::default(), address).await
    }
}

// ---------------------------------------------------------------------------------------
// Pipelining: each result is posted together with the poll for the next event.

/// Runs 200 invokes on one slot, every seventh of them failing, and checks that each gets
/// its own outcome and that all share one connection.
async fn check_sequential_invokes(bootstrap: Bootstrap) {
    let (slot, proxy) = start_behind_proxy(&bootstrap, bootstrap.echo).await;
    for n in 0..200 {
        let fail = n % 7 == 3;
        let payload = json!({"n": n, "fail": fail}).to_string();
        match slot.invoke(invocation(&payload)).await {
            InvokeOutcome::Response(body) => {
                assert!(!fail, "invoke {n} should have failed; output:\n{}", slot.output());
                assert_eq!(parse_json(&body), json!({"n": n, "fail": false}), "invoke {n}");
            }
            InvokeOutcome::FunctionError { body, .. } => {
                assert!(fail, "invoke {n} failed: {}; output:\n{}", text(&body), slot.output());
                assert_eq!(parse_json(&body)["errorMessage"], json!(n.to_string()), "invoke {n}");
            }
            other => panic!("invoke {n}: unexpected outcome {other:?}"),
        }
    }
    assert_eq!(proxy.accepted(), 1, "connections");
}

#[tokio::test]
async fn python_sequential_invokes_get_own_outcomes() {
    check_sequential_invokes(python()).await;
}

#[tokio::test]
async fn node_sequential_invokes_get_own_outcomes() {
    check_sequential_invokes(node()).await;
}

// ---------------------------------------------------------------------------------------
// Broken connections

/// A TCP proxy in front of the Runtime API that counts connections and closes all open
/// ones on request, as a server that drops keep-alive connections does.
struct ClosingProxy {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Connections that have ended, on either side.
    ended: Arc<AtomicUsize>,
    close_all: watch::Sender<u64>,
}

impl ClosingProxy {
    /// Starts the proxy. Must be called inside a Tokio runtime.
    fn start(upstream: SocketAddr) -> ClosingProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener
            .set_nonblocking(true)
            .expect("make proxy listener non-blocking");
        let address = listener.local_addr().expect("proxy address");
        let listener = TcpListener::from_std(listener).expect("register proxy listener");
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (close_all, _) = watch::channel(0u64);
        let proxy = ClosingProxy {
            address,
            accepted: accepted.clone(),
            ended: ended.clone(),
            close_all: close_all.clone(),
        };
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let mut closed = close_all.subscribe();
                let ended = ended.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        // Without TCP_NODELAY, each relayed write could wait 40 ms for an ACK.
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = closed.changed() => {}
                        }
                    }
                    drop(client);
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        proxy
    }

    /// Closes every open connection, on both sides, and waits until they are closed. The
    /// runtime may open a new one meanwhile, which stays open.
    async fn close_connections(&self) {
        let accepted = self.accepted();
        self.close_all.send_modify(|generation| *generation += 1);
        tokio::time::timeout(STEP_TIMEOUT, async {
            while self.ended.load(Ordering::SeqCst) < accepted {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("proxy connections close in time");
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Starts `function` of `bootstrap` with its Runtime API behind a [`ClosingProxy`].
async fn start_behind_proxy(bootstrap: &Bootstrap, function: &str) -> (TestSlot, ClosingProxy) {
    let mut proxy = None;
    let slot = bootstrap
        .start_with_address(function, |api_address| {
            let started = ClosingProxy::start(api_address);
            let address = started.address.to_string();
            proxy = Some(started);
            address
        })
        .await;
    slot.expect_ready().await;
    (slot, proxy.expect("proxy started"))
}

async fn wait_for_file(path: &Path) {
    tokio::time::timeout(STEP_TIMEOUT, async {
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} not created in time", path.display()));
}

/// Closes the runtime's idle connection while the handler runs. The result must still
/// arrive, on a second connection, and the slot must go on serving.
async fn check_connection_closed_during_handler(bootstrap: Bootstrap) {
    let (slot, proxy) = start_behind_proxy(&bootstrap, bootstrap.wait_for_proceed).await;
    assert_eq!(proxy.accepted(), 1, "connections before the close");

    let invoke = tokio::spawn({
        let api = slot.api.clone();
        async move { api.invoke(invocation(r#"{"n": 1}"#)).await }
    });
    wait_for_file(&slot.task_root().join("started")).await;
    proxy.close_connections().await;
    std::fs::write(slot.task_root().join("proceed"), "").expect("create proceed file");

    let outcome = tokio::time::timeout(STEP_TIMEOUT, invoke)
        .await
        .unwrap_or_else(|_| panic!("invoke did not finish; output:\n{}", slot.output()))
        .expect("invoke task");
    let InvokeOutcome::Response(body) = outcome else {
        panic!("expected a response, got {outcome:?}; output:\n{}", slot.output());
    };
    assert_eq!(parse_json(&body), json!({"n": 1}));
    assert_eq!(proxy.accepted(), 2, "connections after the close");

    let second = tokio::spawn({
        let api = slot.api.clone();
        async move { api.invoke(invocation(r#"{"n": 2}"#)).await }
    });
    wait_for_file(&slot.task_root().join("started")).await;
    std::fs::write(slot.task_root().join("proceed"), "").expect("create proceed file");
    let outcome = tokio::time::timeout(STEP_TIMEOUT, second)
        .await
        .expect("second invoke finishes")
        .expect("second invoke task");
    let InvokeOutcome::Response(body) = outcome else {
        panic!("expected a response, got {outcome:?}; output:\n{}", slot.output());
    };
    assert_eq!(parse_json(&body), json!({"n": 2}));
    assert_eq!(proxy.accepted(), 2, "connections after the second invoke");
}

#[tokio::test]
async fn python_connection_closed_during_handler_reopened() {
    check_connection_closed_during_handler(python()).await;
}

#[tokio::test]
async fn node_connection_closed_during_handler_reopened() {
    check_connection_closed_during_handler(node()).await;
}

/// Closes the runtime's connection while it waits in /invocation/next. The runtime must
/// poll again on a second connection and get the next event.
async fn check_connection_closed_during_poll(bootstrap: Bootstrap) {
    let (slot, proxy) = start_behind_proxy(&bootstrap, bootstrap.echo).await;
    assert_eq!(parse_json(&slot.invoke_ok(r#"{"n": 1}"#).await), json!({"n": 1}));

    proxy.close_connections().await;
    assert_eq!(parse_json(&slot.invoke_ok(r#"{"n": 2}"#).await), json!({"n": 2}));
    assert_eq!(proxy.accepted(), 2, "connections after the close");
    assert_eq!(parse_json(&slot.invoke_ok(r#"{"n": 3}"#).await), json!({"n": 3}));
    assert_eq!(proxy.accepted(), 2, "connections after the third invoke");
}

#[tokio::test]
async fn python_connection_closed_during_poll_reopened() {
    check_connection_closed_during_poll(python()).await;
}

#[tokio::test]
async fn node_connection_closed_during_poll_reopened() {
    check_connection_closed_during_poll(node()).await;
}

// ---------------------------------------------------------------------------------------
// Payloads

/// Echoes events of 1 MB and 6 MB, far larger than one read from the socket, and 1 MB of
/// multi-byte characters, which reads split at arbitrary bytes.
async fn check_large_events(bootstrap: Bootstrap) {
    let slot = bootstrap.start(bootstrap.echo).await;
    for size in [1_000_000, 6_000_000] {
        assert!(
            size <= DEFAULT_MAX_RESPONSE_BYTES,
            "the echoed event fits the response limit"
        );
        let payload = format!("\"{}\"", "x".repeat(size - 2));
        let body = slot.invoke_ok(&payload).await;
        assert_eq!(body.len(), size, "echoed size");
        assert!(body == payload.as_bytes(), "echo of the {size}-byte event differs");
    }

    let multi_byte = "é東🎉".repeat(1_000_000 / 9);
    let body = slot.invoke_ok(&json!(multi_byte).to_string()).await;
    assert!(
        parse_json(&body) == json!(multi_byte),
        "echo of the multi-byte event differs"
    );
}

#[tokio::test]
async fn python_large_events_round_trip() {
    check_large_events(python()).await;
}

#[tokio::test]
async fn node_large_events_round_trip() {
    check_large_events(node()).await;
}

/// Sends non-ASCII text in the event body and in the client context header, which the
/// Runtime API writes as UTF-8.
async fn check_non_ascii_text(bootstrap: Bootstrap) {
    let slot = bootstrap.start(bootstrap.echo_client_context).await;
    let mut invocation = invocation(r#"{"text": "héllo 東京 🎉"}"#);
    invocation.client_context = Some(r#"{"custom": {"city": "東京", "name": "Zoë 🎉"}}"#.to_string());
    let InvokeOutcome::Response(body) = slot.invoke(invocation).await else {
        panic!("expected a response; output:\n{}", slot.output());
    };
    assert_eq!(
        parse_json(&body),
        json!({"event": {"text": "héllo 東京 🎉"}, "custom": {"city": "東京", "name": "Zoë 🎉"}})
    );
}

#[tokio::test]
async fn python_non_ascii_text_round_trips() {
    check_non_ascii_text(python()).await;
}

#[tokio::test]
async fn node_non_ascii_text_round_trips() {
    check_non_ascii_text(node()).await;
}

// ---------------------------------------------------------------------------------------
// Responses the clients reject

/// Serves a fake Runtime API that accepts every post and responds to /invocation/next
/// with a chunked body. Returns its address and the number of /invocation/next requests so far.
fn serve_chunked_next() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake Runtime API");
    listener.set_nonblocking(true).expect("make listener non-blocking");
    let address = listener.local_addr().expect("fake Runtime API address");
    let listener = TcpListener::from_std(listener).expect("register listener");
    let next_polls = Arc::new(AtomicUsize::new(0));
    let counter = next_polls.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut content_length = 0;
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                content_length = value.trim().parse().expect("numeric Content-Length");
                            }
                        }
                    }
                    let mut body = vec![0; content_length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }

                    let response: &[u8] = if request_line.starts_with("GET ") {
                        counter.fetch_add(1, Ordering::SeqCst);
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                          Lambda-Runtime-Aws-Request-Id: chunked-event\r\n\
                          Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n\
                          Content-Length: 15\r\n\r\n{\"status\":\"OK\"}"
                    };
                    if stream.get_mut().write_all(response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, next_polls)
}

/// Checks that a chunked /invocation/next response ends the runtime with a clear message
/// after one retry. The Nimbus Runtime API always sends Content-Length, so the clients
/// read no chunked bodies, and handing the handler a garbled event would be worse.
async fn check_chunked_next_rejected(bootstrap: Bootstrap) {
    let (fake_address, next_polls) = serve_chunked_next();
    let mut slot = bootstrap
        .start_with_address(bootstrap.echo, |_| fake_address.to_string())
        .await;
    let status = slot.wait_exit().await;
    assert_eq!(status.code(), Some(1), "exit status; output:\n{}", slot.output());
    let expected = "The Runtime API sent a response without a valid Content-Length";
    wait_for_output(&slot, expected).await;
    assert_eq!(next_polls.load(Ordering::SeqCst), 2, "/invocation/next requests");
}

/// Waits until the runtime's output contains `expected`. Output is collected in the
/// background, so it can lag behind the process's exit.
async fn wait_for_output(slot: &TestSlot, expected: &str) {
    let found = tokio::time::timeout(STEP_TIMEOUT, async {
        while !slot.output().contains(expected) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "output lacks {expected:?}:\n{}", slot.output());
}

#[tokio::test]
async fn python_chunked_next_rejected() {
    check_chunked_next_rejected(python()).await;
}

#[tokio::test]
async fn node_chunked_next_rejected() {
    check_chunked_next_rejected(node()).await;
}

// ---------------------------------------------------------------------------------------
// Start-up cost

/// The Python client uses the `_socket` built-in module alone. Importing `socket` adds
/// about 3 ms to every cold start, and http.client about 17 ms.
#[tokio::test]
async fn python_client_imports_no_http_modules() {
    let slot = python().start("loaded_modules").await;
    assert_eq!(parse_json(&slot.invoke_ok("{}").await), json!([]));
}
