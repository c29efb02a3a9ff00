//! The Runtime API protocol, driven by a hand-written HTTP/1.1 client playing the runtime.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{invocation, STEP_TIMEOUT};
use nimbus_runtime::{InitOutcome, InvokeOutcome, RuntimeApi, RuntimeApiLimits};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";
const ACCEPTED_BODY: &str = r#"{"status":"OK"}"#;
const INVALID_REQUEST_ID_BODY: &str = r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#;

fn response_path(request_id: &str) -> String {
    format!("/2018-06-01/runtime/invocation/{request_id}/response")
}

fn error_path(request_id: &str) -> String {
    format!("/2018-06-01/runtime/invocation/{request_id}/error")
}

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive HTTP/1.1 connection to the Runtime API, as a runtime keeps it open.
struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    async fn open(api: &RuntimeApi) -> Connection {
        let stream = TcpStream::connect(api.local_addr())
            .await
            .expect("connect to Runtime API");
        Connection {
            stream: BufReader::new(stream),
        }
    }

    async fn get(&mut self, path: &str) -> HttpResponse {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: runtime\r\n\r\n"), b"")
            .await
    }

    async fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: runtime\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.send(&head, body).await
    }

    /// Posts `body` with chunked transfer encoding, so the server cannot know its length
    /// in advance.
    async fn post_chunked(&mut self, path: &str, body: &[u8], chunk_size: usize) -> HttpResponse {
        let head = format!("POST {path} HTTP/1.1\r\nHost: runtime\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut encoded = Vec::new();
        for chunk in body.chunks(chunk_size) {
            encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            encoded.extend_from_slice(chunk);
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"0\r\n\r\n");
        self.send(&head, &encoded).await
    }

    async fn send(&mut self, head: &str, body: &[u8]) -> HttpResponse {
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes()).await.expect("write request head");
        stream.write_all(body).await.expect("write request body");
        match tokio::time::timeout(STEP_TIMEOUT, self.read_response()).await {
            Ok(response) => response,
            Err(_) => panic!("no response to {head:?} in {STEP_TIMEOUT:?}"),
        }
    }

    /// Writes `requests` as they are, in one write, without reading a response.
    async fn write_raw(&mut self, requests: &[u8]) {
        let stream = self.stream.get_mut();
        stream.write_all(requests).await.expect("write requests");
    }

    /// Reads the next response, failing the test if none arrives in time.
    async fn expect_response(&mut self) -> HttpResponse {
        match tokio::time::timeout(STEP_TIMEOUT, self.read_response()).await {
            Ok(response) => response,
            Err(_) => panic!("no response in {STEP_TIMEOUT:?}"),
        }
    }

    async fn read_response(&mut self) -> HttpResponse {
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).await.expect("read status line");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));

        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).await.expect("read header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }

        let length: usize = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .map(|(_, value)| value.parse().expect("numeric content-length"))
            .unwrap_or_else(|| panic!("response without content-length: {headers:?}"));
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.expect("read response body");
        HttpResponse { status, headers, body }
    }
}

fn serve(limits: RuntimeApiLimits) -> RuntimeApi {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    RuntimeApi::serve(listener, limits).expect("serve Runtime API")
}

/// Runs `invoke` in the background, so the test can play the runtime meanwhile.
fn invoke_in_background(
    api: &RuntimeApi,
    invocation: nimbus_runtime::Invocation,
) -> tokio::task::JoinHandle<InvokeOutcome> {
    let api = api.clone();
    tokio::spawn(async move { api.invoke(invocation).await })
}

async fn finish(task: tokio::task::JoinHandle<InvokeOutcome>) -> InvokeOutcome {
    tokio::time::timeout(STEP_TIMEOUT, task)
        .await
        .expect("invoke resolves in time")
        .expect("invoke task")
}

/// Returns whether `task` is still running after a short wait.
async fn still_pending(task: &tokio::task::JoinHandle<InvokeOutcome>) -> bool {
    tokio::time::sleep(Duration::from_millis(150)).await;
    !task.is_finished()
}

#[tokio::test]
async fn next_delivers_event_with_headers() {
    let api = serve(RuntimeApiLimits::default());
    let mut event = invocation(r#"{"key":"value"}"#);
    event.client_context = Some(r#"{"custom":{"a":"b"}}"#.to_string());
    event.cognito_identity = Some(r#"{"cognitoIdentityId":"id-1"}"#.to_string());
    let expected = event.clone();
    let task = invoke_in_background(&api, event);

    let mut runtime = Connection::open(&api).await;
    let next = runtime.get(NEXT).await;
    assert_eq!(next.status, 200);
    assert_eq!(next.text(), r#"{"key":"value"}"#);
    assert_eq!(next.header("content-type"), Some("application/json"));
    assert_eq!(
        next.header("lambda-runtime-aws-request-id"),
        Some(expected.request_id.as_str())
    );
    assert_eq!(
        next.header("lambda-runtime-deadline-ms"),
        Some(expected.deadline_ms.to_string().as_str())
    );
    assert_eq!(
        next.header("lambda-runtime-invoked-function-arn"),
        Some(expected.invoked_function_arn.as_str())
    );
    assert_eq!(next.header("lambda-runtime-trace-id"), Some(expected.trace_id.as_str()));
    assert_eq!(
        next.header("lambda-runtime-client-context"),
        expected.client_context.as_deref()
    );
    assert_eq!(
        next.header("lambda-runtime-cognito-identity"),
        expected.cognito_identity.as_deref()
    );

    let posted = runtime
        .post(&response_path(&expected.request_id), &[], b"\x00binary\xff")
        .await;
    assert_eq!(posted.status, 202);
    assert_eq!(posted.text(), ACCEPTED_BODY);
    assert_eq!(
        finish(task).await,
        InvokeOutcome::Response(Bytes::from_static(b"\x00binary\xff"))
    );
}

#[tokio::test]
async fn pipelined_requests_served_in_order() {
    let api = serve(RuntimeApiLimits::default());
    let mut runtime = Connection::open(&api).await;
    let first = invocation(r#""first""#);
    let first_id = first.request_id.clone();
    let first_task = invoke_in_background(&api, first);
    assert_eq!(runtime.get(NEXT).await.text(), r#""first""#);

    // The response to the first event and the poll for the next, in one write, as the
    // bootstraps send them.
    let response_then_next = format!(
        "POST {} HTTP/1.1\r\nHost: runtime\r\nContent-Length: 3\r\n\r\noneGET {NEXT} HTTP/1.1\r\nHost: runtime\r\n\r\n",
        response_path(&first_id)
    );
    runtime.write_raw(response_then_next.as_bytes()).await;
    // The 202 arrives while the poll still waits, so the server does not hold it back
    // until the next event.
    let posted = runtime.expect_response().await;
    assert_eq!(posted.status, 202);
    assert_eq!(posted.text(), ACCEPTED_BODY);
    assert_eq!(
        finish(first_task).await,
        InvokeOutcome::Response(Bytes::from_static(b"one"))
    );

    let second = invocation(r#""second""#);
    let second_id = second.request_id.clone();
    let second_task = invoke_in_background(&api, second);
    let next = runtime.expect_response().await;
    assert_eq!(next.status, 200);
    assert_eq!(next.header("lambda-runtime-aws-request-id"), Some(second_id.as_str()));
    assert_eq!(next.text(), r#""second""#);

    // An error post pipelined with the next poll, with a third event already queued.
    let third = invocation(r#""third""#);
    let third_id = third.request_id.clone();
    let third_task = invoke_in_background(&api, third);
    let error_then_next = format!(
        "POST {} HTTP/1.1\r\nHost: runtime\r\nLambda-Runtime-Function-Error-Type: Failed\r\nContent-Length: 2\r\n\r\n{{}}GET {NEXT} HTTP/1.1\r\nHost: runtime\r\n\r\n",
        error_path(&second_id)
    );
    runtime.write_raw(error_then_next.as_bytes()).await;
    assert_eq!(runtime.expect_response().await.status, 202);
    assert_eq!(
        finish(second_task).await,
        InvokeOutcome::FunctionError {
            error_type: Some("Failed".to_string()),
            body: Bytes::from_static(b"{}"),
        }
    );
    let next = runtime.expect_response().await;
    assert_eq!(next.header("lambda-runtime-aws-request-id"), Some(third_id.as_str()));
    assert_eq!(next.text(), r#""third""#);

    runtime.post(&response_path(&third_id), &[], b"three").await;
    assert_eq!(
        finish(third_task).await,
        InvokeOutcome::Response(Bytes::from_static(b"three"))
    );
}

#[tokio::test]
async fn optional_headers_omitted_when_absent() {
    let api = serve(RuntimeApiLimits::default());
    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);

    let mut runtime = Connection::open(&api).await;
    let next = runtime.get(NEXT).await;
    assert_eq!(next.header("lambda-runtime-client-context"), None);
    assert_eq!(next.header("lambda-runtime-cognito-identity"), None);
    runtime.post(&response_path(&request_id), &[], b"null").await;
    finish(task).await;
}

#[tokio::test]
async fn control_characters_in_headers_become_spaces() {
    let api = serve(RuntimeApiLimits::default());
    let mut event = invocation("{}");
    event.client_context = Some("{\n\t\"custom\": {}\r\n}".to_string());
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);

    let mut runtime = Connection::open(&api).await;
    let next = runtime.get(NEXT).await;
    assert_eq!(
        next.header("lambda-runtime-client-context"),
        Some(r#"{  "custom": {}  }"#)
    );
    runtime.post(&response_path(&request_id), &[], b"null").await;
    finish(task).await;
}

#[tokio::test]
async fn first_next_ends_init() {
    let api = serve(RuntimeApiLimits::default());
    let waiter = tokio::spawn({
        let api = api.clone();
        async move { api.wait_ready().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "ready before the runtime called /next");

    let poll = tokio::spawn({
        let api = api.clone();
        async move { Connection::open(&api).await.get(NEXT).await }
    });
    let outcome = tokio::time::timeout(STEP_TIMEOUT, waiter)
        .await
        .expect("ready in time")
        .expect("waiter task");
    assert_eq!(outcome, InitOutcome::Ready);
    // Asked again after init, it returns at once.
    assert_eq!(api.wait_ready().await, InitOutcome::Ready);
    poll.abort();
}

#[tokio::test]
async fn init_error_fails_init() {
    let api = serve(RuntimeApiLimits::default());
    let mut runtime = Connection::open(&api).await;
    let body = br#"{"errorMessage":"Unable to import module 'app'","errorType":"Runtime.ImportModuleError"}"#;
    let posted = runtime
        .post(
            INIT_ERROR,
            &[("Lambda-Runtime-Function-Error-Type", "Runtime.ImportModuleError")],
            body,
        )
        .await;
    assert_eq!(posted.status, 202);
    assert_eq!(posted.text(), ACCEPTED_BODY);

    let expected = InitOutcome::Failed {
        error_type: Some("Runtime.ImportModuleError".to_string()),
        body: Bytes::from_static(body),
    };
    assert_eq!(api.wait_ready().await, expected);

    // After an init error the runtime gets no events, and a second init error is refused.
    let next = runtime.get(NEXT).await;
    assert_eq!(next.status, 403);
    assert!(
        next.text().contains(r#""errorType":"InvalidStateTransition""#),
        "{}",
        next.text()
    );
    let again = runtime.post(INIT_ERROR, &[], b"{}").await;
    assert_eq!(again.status, 403);
    assert_eq!(api.wait_ready().await, expected);
}

#[tokio::test]
async fn init_error_after_ready_rejected() {
    let api = serve(RuntimeApiLimits::default());
    let poll = tokio::spawn({
        let api = api.clone();
        async move { Connection::open(&api).await.get(NEXT).await }
    });
    assert_eq!(
        tokio::time::timeout(STEP_TIMEOUT, api.wait_ready())
            .await
            .expect("ready in time"),
        InitOutcome::Ready
    );

    let mut runtime = Connection::open(&api).await;
    let posted = runtime
        .post(INIT_ERROR, &[("Lambda-Runtime-Function-Error-Type", "Late")], b"{}")
        .await;
    assert_eq!(posted.status, 403);
    assert_eq!(api.wait_ready().await, InitOutcome::Ready);
    poll.abort();
}

#[tokio::test]
async fn error_post_resolves_function_error() {
    let api = serve(RuntimeApiLimits::default());
    let mut runtime = Connection::open(&api).await;
    let body = br#"{"errorMessage":"boom","errorType":"ValueError","requestId":"","stackTrace":[]}"#;

    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    runtime.get(NEXT).await;
    let posted = runtime
        .post(
            &error_path(&request_id),
            &[("Lambda-Runtime-Function-Error-Type", "ValueError")],
            body,
        )
        .await;
    assert_eq!(posted.status, 202);
    assert_eq!(
        finish(task).await,
        InvokeOutcome::FunctionError {
            error_type: Some("ValueError".to_string()),
            body: Bytes::from_static(body)
        }
    );

    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    runtime.get(NEXT).await;
    runtime.post(&error_path(&request_id), &[], b"{}").await;
    assert_eq!(
        finish(task).await,
        InvokeOutcome::FunctionError {
            error_type: None,
            body: Bytes::from_static(b"{}")
        }
    );
}

#[tokio::test]
async fn wrong_request_id_rejected_and_ignored() {
    let api = serve(RuntimeApiLimits::default());
    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);

    let mut runtime = Connection::open(&api).await;
    runtime.get(NEXT).await;
    for path in [response_path("not-the-current-id"), error_path("not-the-current-id")] {
        let posted = runtime.post(&path, &[], b"\"forged\"").await;
        assert_eq!(posted.status, 400, "{path}");
        assert_eq!(posted.text(), INVALID_REQUEST_ID_BODY, "{path}");
        assert_eq!(posted.header("content-type"), Some("application/json"));
    }
    assert!(
        still_pending(&task).await,
        "a post with a wrong request id resolved the invocation"
    );

    let posted = runtime.post(&response_path(&request_id), &[], b"\"real\"").await;
    assert_eq!(posted.status, 202);
    assert_eq!(
        finish(task).await,
        InvokeOutcome::Response(Bytes::from_static(b"\"real\""))
    );
}

#[tokio::test]
async fn second_answer_for_same_id_rejected() {
    let api = serve(RuntimeApiLimits::default());
    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);

    let mut runtime = Connection::open(&api).await;
    runtime.get(NEXT).await;
    assert_eq!(runtime.post(&response_path(&request_id), &[], b"1").await.status, 202);
    assert_eq!(finish(task).await, InvokeOutcome::Response(Bytes::from_static(b"1")));

    let again = runtime.post(&response_path(&request_id), &[], b"2").await;
    assert_eq!(again.status, 400);
    assert_eq!(again.text(), INVALID_REQUEST_ID_BODY);
    let error = runtime.post(&error_path(&request_id), &[], b"{}").await;
    assert_eq!(error.status, 400);
}

#[tokio::test]
async fn answer_before_next_rejected() {
    let api = serve(RuntimeApiLimits::default());
    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut runtime = Connection::open(&api).await;
    assert_eq!(runtime.post(&response_path(&request_id), &[], b"1").await.status, 400);
    assert!(still_pending(&task).await);
    runtime.get(NEXT).await;
    assert_eq!(runtime.post(&response_path(&request_id), &[], b"2").await.status, 202);
    assert_eq!(finish(task).await, InvokeOutcome::Response(Bytes::from_static(b"2")));
}

#[tokio::test]
async fn response_over_limit_is_too_large() {
    let limit = 1024;
    let api = serve(RuntimeApiLimits {
        max_response_bytes: limit,
    });
    let mut runtime = Connection::open(&api).await;

    // Declared length over the limit.
    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    runtime.get(NEXT).await;
    let posted = runtime
        .post(&response_path(&request_id), &[], &vec![b'x'; limit + 1])
        .await;
    assert_eq!(posted.status, 413);
    assert_eq!(
        posted.text(),
        r#"{"errorMessage":"Exceeded maximum allowed payload size (1024 bytes).","errorType":"RequestEntityTooLarge"}"#
    );
    assert_eq!(finish(task).await, InvokeOutcome::ResponseTooLarge { limit });

    // Chunked, so the limit is found while reading. The server reads and discards up to
    // another `limit` bytes, so the connection stays usable.
    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    runtime.get(NEXT).await;
    let posted = runtime
        .post_chunked(&response_path(&request_id), &vec![b'y'; limit + limit / 2], 100)
        .await;
    assert_eq!(posted.status, 413);
    assert_eq!(finish(task).await, InvokeOutcome::ResponseTooLarge { limit });

    // An error document over the limit too.
    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    runtime.get(NEXT).await;
    let posted = runtime
        .post(&error_path(&request_id), &[], &vec![b'z'; limit + 1])
        .await;
    assert_eq!(posted.status, 413);
    assert_eq!(finish(task).await, InvokeOutcome::ResponseTooLarge { limit });

    // Far over the limit: the rest is left unread and the server closes the connection
    // after its reply, so the runtime continues on a new one.
    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    runtime.get(NEXT).await;
    let posted = runtime
        .post_chunked(&response_path(&request_id), &vec![b'w'; 5 * limit], 100)
        .await;
    assert_eq!(posted.status, 413);
    assert_eq!(finish(task).await, InvokeOutcome::ResponseTooLarge { limit });

    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    let mut runtime = Connection::open(&api).await;
    runtime.get(NEXT).await;
    assert_eq!(
        runtime.post(&response_path(&request_id), &[], b"small").await.status,
        202
    );
    assert_eq!(
        finish(task).await,
        InvokeOutcome::Response(Bytes::from_static(b"small"))
    );
}

#[tokio::test]
async fn response_at_limit_accepted() {
    let limit = 1024;
    let api = serve(RuntimeApiLimits {
        max_response_bytes: limit,
    });
    let mut runtime = Connection::open(&api).await;
    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    runtime.get(NEXT).await;

    let body = vec![b'a'; limit];
    let posted = runtime.post_chunked(&response_path(&request_id), &body, 300).await;
    assert_eq!(posted.status, 202);
    assert_eq!(finish(task).await, InvokeOutcome::Response(Bytes::from(body)));
}

#[tokio::test]
async fn one_event_at_a_time() {
    let api = serve(RuntimeApiLimits::default());
    let mut runtime = Connection::open(&api).await;

    let first = invocation(r#""first""#);
    let first_id = first.request_id.clone();
    let first_task = invoke_in_background(&api, first);
    let next = runtime.get(NEXT).await;
    assert_eq!(next.header("lambda-runtime-aws-request-id"), Some(first_id.as_str()));

    let second = invocation(r#""second""#);
    let second_id = second.request_id.clone();
    let second_task = invoke_in_background(&api, second);
    assert!(still_pending(&second_task).await);

    // A /next before the running event's response or error is rejected with 403, and the
    // event stays running.
    let mut other = Connection::open(&api).await;
    let rejected = other.get(NEXT).await;
    assert_eq!(rejected.status, 403);
    assert!(
        rejected.text().contains("InvalidStateTransition"),
        "{}",
        rejected.text()
    );

    runtime.post(&response_path(&first_id), &[], b"1").await;
    assert_eq!(
        finish(first_task).await,
        InvokeOutcome::Response(Bytes::from_static(b"1"))
    );

    let next = runtime.get(NEXT).await;
    assert_eq!(next.header("lambda-runtime-aws-request-id"), Some(second_id.as_str()));
    assert_eq!(next.text(), r#""second""#);
    runtime.post(&response_path(&second_id), &[], b"2").await;
    assert_eq!(
        finish(second_task).await,
        InvokeOutcome::Response(Bytes::from_static(b"2"))
    );
}

#[tokio::test]
async fn dropped_invoke_abandons_event() {
    let api = serve(RuntimeApiLimits::default());

    // Abandoned before the runtime fetched it: the runtime never gets it.
    let abandoned = invocation(r#""abandoned""#);
    let abandoned_id = abandoned.request_id.clone();
    let timed_out = tokio::time::timeout(Duration::from_millis(100), api.invoke(abandoned)).await;
    assert!(timed_out.is_err());

    let event = invocation(r#""kept""#);
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    let mut runtime = Connection::open(&api).await;
    let next = runtime.get(NEXT).await;
    assert_eq!(next.header("lambda-runtime-aws-request-id"), Some(request_id.as_str()));
    assert_eq!(runtime.post(&response_path(&abandoned_id), &[], b"1").await.status, 400);
    runtime.post(&response_path(&request_id), &[], b"2").await;
    assert_eq!(finish(task).await, InvokeOutcome::Response(Bytes::from_static(b"2")));

    // Abandoned after the runtime fetched it: its late response is rejected.
    let event = invocation("{}");
    let request_id = event.request_id.clone();
    let task = invoke_in_background(&api, event);
    runtime.get(NEXT).await;
    task.abort();
    let _ = task.await;
    assert_eq!(
        runtime.post(&response_path(&request_id), &[], b"late").await.status,
        400
    );
}

#[tokio::test]
async fn unknown_paths_not_found() {
    let api = serve(RuntimeApiLimits::default());
    let mut runtime = Connection::open(&api).await;
    for path in [
        "/",
        "/2018-06-01/runtime/invocation",
        "/2018-06-01/runtime/restore/next",
        "/2020-01-01/extension/register",
    ] {
        assert_eq!(runtime.get(path).await.status, 404, "{path}");
    }
}

#[tokio::test]
async fn shutdown_ends_polls_and_listening() {
    let api = serve(RuntimeApiLimits::default());
    let poll = tokio::spawn({
        let api = api.clone();
        async move { Connection::open(&api).await.get(NEXT).await }
    });
    tokio::time::timeout(STEP_TIMEOUT, api.wait_ready())
        .await
        .expect("ready in time");

    api.shutdown();
    let response = tokio::time::timeout(STEP_TIMEOUT, poll)
        .await
        .expect("poll ends")
        .expect("poll task");
    assert_eq!(response.status, 503);

    let refused = tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            if TcpStream::connect(api.local_addr()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "Runtime API still accepts connections after shutdown");
}

#[tokio::test]
async fn dropping_last_handle_stops_server() {
    let api = serve(RuntimeApiLimits::default());
    let address = api.local_addr();
    drop(api);
    let refused = tokio::time::timeout(STEP_TIMEOUT, async {
        while TcpStream::connect(address).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "Runtime API still accepts connections after the last handle was dropped"
    );
}

#[test]
fn serve_outside_tokio_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let error = RuntimeApi::serve(listener, RuntimeApiLimits::default()).expect_err("no Tokio runtime");
    assert!(error.to_string().contains("inside a Tokio runtime"), "{error}");
}

#[test]
fn default_limit_is_six_mebibytes() {
    assert_eq!(RuntimeApiLimits::default().max_response_bytes, 6 * 1024 * 1024);
}
