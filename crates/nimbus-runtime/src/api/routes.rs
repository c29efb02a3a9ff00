//! HTTP endpoints of the Runtime API, with the paths, headers and status codes of AWS
//! Lambda's Runtime API (version 2018-06-01).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{HeaderName, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;

use super::body::{discard, read_limited, BodyRead};
use super::slot::{NextError, Slot};
use super::{Invocation, InvokeOutcome};

const REQUEST_ID: HeaderName = HeaderName::from_static("lambda-runtime-aws-request-id");
const DEADLINE_MS: HeaderName = HeaderName::from_static("lambda-runtime-deadline-ms");
const INVOKED_FUNCTION_ARN: HeaderName = HeaderName::from_static("lambda-runtime-invoked-function-arn");
const TRACE_ID: HeaderName = HeaderName::from_static("lambda-runtime-trace-id");
const CLIENT_CONTEXT: HeaderName = HeaderName::from_static("lambda-runtime-client-context");
const COGNITO_IDENTITY: HeaderName = HeaderName::from_static("lambda-runtime-cognito-identity");
const FUNCTION_ERROR_TYPE: HeaderName = HeaderName::from_static("lambda-runtime-function-error-type");

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

pub(crate) fn router(slot: Arc<Slot>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(post_response),
        )
        .route("/2018-06-01/runtime/invocation/{request_id}/error", post(post_error))
        .route("/2018-06-01/runtime/init/error", post(post_init_error))
        .route("/2018-06-01/runtime/nimbus/runtime-ready", post(post_runtime_ready))
        .with_state(slot)
}

async fn next_invocation(State(slot): State<Arc<Slot>>) -> Response {
    match slot.next_event().await {
        Ok(invocation) => event_response(invocation),
        Err(NextError::EventRunning) => invalid_state_transition(
            "The runtime called /invocation/next before posting a response or error for its current invocation.",
        ),
        Err(NextError::InitFailed) => {
            invalid_state_transition("The runtime reported an init error, so it gets no invocations.")
        }
        Err(NextError::ShuttingDown) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"errorMessage":"The Runtime API is shutting down.","errorType":"ServiceUnavailable"}"#,
        ),
    }
}

fn event_response(invocation: Invocation) -> Response {
    let Invocation {
        request_id,
        payload,
        deadline_ms,
        invoked_function_arn,
        trace_id,
        client_context,
        cognito_identity,
    } = invocation;

    let mut response = Response::new(Body::from(payload));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, APPLICATION_JSON);
    headers.insert(REQUEST_ID, header_value(request_id));
    headers.insert(DEADLINE_MS, HeaderValue::from(deadline_ms));
    headers.insert(INVOKED_FUNCTION_ARN, header_value(invoked_function_arn));
    headers.insert(TRACE_ID, header_value(trace_id));
    if let Some(client_context) = client_context {
        headers.insert(CLIENT_CONTEXT, header_value(client_context));
    }
    if let Some(cognito_identity) = cognito_identity {
        headers.insert(COGNITO_IDENTITY, header_value(cognito_identity));
    }
    response
}

/// Converts `value` into a header value, without copying unless it needs cleaning.
/// A header cannot carry control characters, so they become spaces. In the JSON values
/// sent as headers they can only be whitespace between tokens, because JSON strings must
/// escape them.
fn header_value(value: String) -> HeaderValue {
    let is_valid = value
        .bytes()
        .all(|byte| byte == b'\t' || (byte >= 0x20 && byte != 0x7f));
    let value = if is_valid {
        value
    } else {
        value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
    };
    // Only the bytes checked above make `from_maybe_shared` fail, so the fallback is unused.
    HeaderValue::from_maybe_shared(Bytes::from(value)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn post_response(State(slot): State<Arc<Slot>>, Path(request_id): Path<String>, request: Request) -> Response {
    receive_result(&slot, &request_id, request, |body, _| InvokeOutcome::Response(body)).await
}

async fn post_error(State(slot): State<Arc<Slot>>, Path(request_id): Path<String>, request: Request) -> Response {
    receive_result(&slot, &request_id, request, |body, error_type| {
        InvokeOutcome::FunctionError { error_type, body }
    })
    .await
}

/// Reads a `/response` or `/error` post and, if it is for the running event, resolves that
/// event with `outcome(body, error_type_header)`.
async fn receive_result(
    slot: &Slot,
    request_id: &str,
    request: Request,
    outcome: impl FnOnce(Bytes, Option<String>) -> InvokeOutcome,
) -> Response {
    let limit = slot.limits.max_response_bytes;
    let (parts, body) = request.into_parts();
    if !slot.is_running(request_id) {
        discard(body, limit).await;
        return invalid_request_id();
    }

    match read_limited(&parts.headers, body, limit).await {
        BodyRead::Complete(body) => {
            let error_type = error_type_header(&parts.headers);
            if slot.resolve_running(request_id, outcome(body, error_type)) {
                accepted()
            } else {
                invalid_request_id()
            }
        }
        BodyRead::TooLarge(rest) => {
            // Resolve the invocation first: the caller need not wait for the runtime to
            // finish sending a body that is discarded anyway.
            let resolved = slot.resolve_running(request_id, InvokeOutcome::ResponseTooLarge { limit });
            discard(rest, limit).await;
            if resolved {
                payload_too_large(limit)
            } else {
                invalid_request_id()
            }
        }
        BodyRead::Failed(error) => {
            // The runtime's connection broke mid-body, so no reply reaches it. The event
            // stays running: the runtime may post again.
            tracing::debug!(request_id, %error, "runtime connection failed while posting a response or error");
            StatusCode::BAD_REQUEST.into_response()
        }
    }
}

async fn post_init_error(State(slot): State<Arc<Slot>>, request: Request) -> Response {
    let limit = slot.limits.max_response_bytes;
    let (parts, body) = request.into_parts();
    let body = match read_limited(&parts.headers, body, limit).await {
        BodyRead::Complete(body) => body,
        BodyRead::TooLarge(rest) => {
            discard(rest, limit).await;
            return payload_too_large(limit);
        }
        BodyRead::Failed(error) => {
            tracing::debug!(%error, "runtime connection failed while posting its init error");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };

    match slot.fail_init(error_type_header(&parts.headers), body) {
        Ok(()) => accepted(),
        Err(_) => invalid_state_transition("Init has already ended, so an init error is no longer accepted."),
    }
}

/// Records when the runtime itself finished starting, before it loads the function.
/// Nimbus's own bootstraps call this; other runtime clients never do. Only the first call
/// counts, and a call after init ended is still accepted but changes nothing.
async fn post_runtime_ready(State(slot): State<Arc<Slot>>, request: Request) -> Response {
    slot.mark_runtime_ready();
    discard(request.into_body(), slot.limits.max_response_bytes).await;
    accepted()
}

fn error_type_header(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(FUNCTION_ERROR_TYPE)?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

fn accepted() -> Response {
    json_response(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

fn invalid_request_id() -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#,
    )
}

fn payload_too_large(limit: usize) -> Response {
    let body = format!(
        r#"{{"errorMessage":"Exceeded maximum allowed payload size ({limit} bytes).","errorType":"RequestEntityTooLarge"}}"#
    );
    json_response(StatusCode::PAYLOAD_TOO_LARGE, body)
}

fn invalid_state_transition(message: &'static str) -> Response {
    let body = format!(r#"{{"errorMessage":"{message}","errorType":"InvalidStateTransition"}}"#);
    json_response(StatusCode::FORBIDDEN, body)
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}
