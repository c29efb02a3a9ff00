//! Invocation: `POST /functions/{name}/invocations`, synchronous and asynchronous,
//! and the resolution of a qualifier to the code and configuration that run.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use base64::Engine;
use nimbus_model::function::function_arn;
use nimbus_model::{CodeInfo, FunctionRecord, FunctionSettings, FunctionState, Qualifier};
use nimbus_state::Lease;
use nimbus_store::{Account, AsyncEvent, InvocationRecord, LogEvent};
use nimbus_worker::{InvokeRequest, InvokeResult, WorkerError};
use rand::Rng;
use uuid::Uuid;

use crate::admission;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::fleet::StartedInvocation;
use crate::functions::{find_alias, find_function, find_version, QualifierQuery};
use crate::AppState;

/// Throttle reason of a cold start beyond the function's burst limit.
pub const BURST_LIMIT_REASON: &str = "FunctionInvocationRateLimitExceeded";

/// Largest synchronous payload: 6 MB, as Lambda.
pub const MAX_SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Largest asynchronous payload: 1 MB.
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Largest `X-Client-Context`, as Lambda: 3,583 bytes of base64.
pub const MAX_CLIENT_CONTEXT_BYTES: usize = 3583;

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Generates an X-Ray style trace id: `Root=1-{epoch seconds hex}-{96 random bits hex}`.
pub fn new_trace_id() -> String {
    let mut random = rand::thread_rng();
    format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        time::OffsetDateTime::now_utc().unix_timestamp(),
        random.gen::<u128>() & ((1u128 << 96) - 1),
        random.gen::<u64>()
    )
}

/// The code and configuration an invocation runs.
pub struct Target {
    /// `$LATEST` or a version number.
    pub version: String,
    pub settings: FunctionSettings,
    pub code: CodeInfo,
    pub invoked_arn: String,
}

/// Resolves a qualifier to what runs. An alias with a traffic split picks its
/// additional version with the alias's weight.
pub async fn resolve_target(
    state: &AppState,
    account: &Account,
    function: &FunctionRecord,
    qualifier: Option<&str>,
) -> ApiResult<Target> {
    let parsed = qualifier
        .map(Qualifier::parse)
        .transpose()?
        .unwrap_or(Qualifier::Latest);
    let invoked_arn = function_arn(&state.region, &account.account_number, &function.name, qualifier);
    let number = match &parsed {
        Qualifier::Latest => None,
        Qualifier::Version(number) => Some(*number),
        Qualifier::Alias(alias) => {
            let record = find_alias(state, function, alias).await?;
            let main = match Qualifier::parse(&record.function_version)? {
                Qualifier::Version(number) => Some(number),
                _ => None,
            };
            match record.additional_version {
                Some((additional, weight)) if rand::thread_rng().gen::<f64>() < weight => Some(additional),
                _ => main,
            }
        }
    };
    let Some(number) = number else {
        if !matches!(function.state, FunctionState::Active | FunctionState::Updating) {
            return Err(ApiError::Conflict(format!(
                "function '{}' is {:?}{}; $LATEST can be invoked once it is Active",
                function.name,
                function.state,
                function
                    .state_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )));
        }
        return Ok(Target {
            version: "$LATEST".to_string(),
            settings: function.settings.clone(),
            code: function.code.clone(),
            invoked_arn,
        });
    };
    let version = find_version(state, function, number).await?;
    Ok(Target {
        version: number.to_string(),
        settings: version.settings,
        code: version.code,
        invoked_arn,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::InvalidParameter(format!("header {name} is not valid text"))),
    }
}

fn invocation_type(headers: &HeaderMap) -> ApiResult<InvocationType> {
    match header(headers, "x-invocation-type")? {
        None | Some("RequestResponse") => Ok(InvocationType::RequestResponse),
        Some("Event") => Ok(InvocationType::Event),
        Some("DryRun") => Ok(InvocationType::DryRun),
        Some(other) => Err(ApiError::InvalidParameter(format!(
            "X-Invocation-Type '{other}' is invalid; use RequestResponse, Event or DryRun"
        ))),
    }
}

fn wants_log_tail(headers: &HeaderMap) -> ApiResult<bool> {
    match header(headers, "x-log-type")? {
        None | Some("None") => Ok(false),
        Some("Tail") => Ok(true),
        Some(other) => Err(ApiError::InvalidParameter(format!(
            "X-Log-Type '{other}' is invalid; use Tail or None"
        ))),
    }
}

/// Decodes `X-Client-Context`: base64 of a JSON object, passed to the runtime as JSON.
fn client_context(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(encoded) = header(headers, "x-client-context")? else {
        return Ok(None);
    };
    if encoded.len() > MAX_CLIENT_CONTEXT_BYTES {
        return Err(ApiError::InvalidParameter(format!(
            "X-Client-Context is {} bytes; the limit is {MAX_CLIENT_CONTEXT_BYTES} bytes of base64",
            encoded.len()
        )));
    }
    let invalid = || {
        ApiError::InvalidRequestContent(
            "X-Client-Context must be a base64-encoded JSON object, for example the base64 of {\"custom\": {}}"
                .to_string(),
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid())?;
    let value: serde_json::Value = serde_json::from_slice(&decoded).map_err(|_| invalid())?;
    if !value.is_object() {
        return Err(invalid());
    }
    Ok(Some(value.to_string()))
}

/// Checks that the payload is JSON; an empty body is the empty object, as Lambda.
fn check_payload(body: Bytes) -> ApiResult<Bytes> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"{}"));
    }
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return Err(ApiError::InvalidRequestContent(format!(
            "Could not parse request body into json: {error}; send a JSON document"
        )));
    }
    Ok(body)
}

fn worker_error(error: WorkerError, function: &str) -> ApiError {
    match error {
        WorkerError::RuntimeNotOffered { .. } => ApiError::InvalidRuntime(error.to_string()),
        WorkerError::BurstLimitExceeded { .. } => ApiError::TooManyRequests {
            message: error.to_string(),
            reason: BURST_LIMIT_REASON,
        },
        WorkerError::NoCapacity { .. } | WorkerError::NoFeasibleHost(_) => ApiError::TooManyRequests {
            message: error.to_string(),
            reason: "NoCapacityAvailable",
        },
        other => {
            tracing::error!(function, error = %other, "invocation failed in the platform");
            ApiError::Service(format!(
                "invoking function '{function}' failed in the platform: {other}"
            ))
        }
    }
}

/// Builds the record and log lines of a finished invocation.
pub fn record_of(
    result: &InvokeResult,
    account: &Account,
    function_id: Uuid,
    request: &InvokeRequest,
    invocation_type: &str,
) -> (InvocationRecord, Vec<LogEvent>) {
    let record = InvocationRecord {
        request_id: request.request_id.clone(),
        function_id,
        version: request.version.clone(),
        account_id: account.account_id,
        trigger_type: "HTTP".to_string(),
        invocation_type: invocation_type.to_string(),
        start_time: result.started_at,
        end_time: result.ended_at,
        duration_ms: result.duration_ms,
        billed_duration_ms: result.billed_duration_ms,
        memory_used_mb: result.memory_used_mb,
        init_duration_ms: result.cold_start.map(|c| c.init_ms),
        sandbox_ms: result.cold_start.map(|c| c.sandbox_ms),
        code_ms: result.cold_start.map(|c| c.code_ms),
        code_tier: result.cold_start.map(|c| c.code_tier.as_str().to_string()),
        runtime_init_ms: result.cold_start.and_then(|c| c.runtime_ms),
        user_init_ms: result.cold_start.and_then(|c| c.user_init_ms),
        status: result.status.as_str().to_string(),
        error_type: result.error_type.clone(),
        cold_start: result.cold_start.is_some(),
        slot_id: Some(result.slot_id.clone()).filter(|s| !s.is_empty()),
        trace_id: request.trace_id.clone(),
    };
    let logs = result
        .logs
        .iter()
        .map(|line| LogEvent {
            sequence: 0,
            function_id,
            request_id: Some(request.request_id.clone()),
            timestamp_ms: line.timestamp_ms,
            message: line.message.clone(),
        })
        .collect();
    (record, logs)
}

/// Records a throttled invocation, which never reached a slot.
pub fn record_throttle(
    state: &AppState,
    account: &Account,
    function_id: Uuid,
    version: &str,
    request_id: &str,
    invocation_type: &str,
    trace_id: &str,
) {
    let now = time::OffsetDateTime::now_utc();
    let record = InvocationRecord {
        request_id: request_id.to_string(),
        function_id,
        version: version.to_string(),
        account_id: account.account_id,
        trigger_type: "HTTP".to_string(),
        invocation_type: invocation_type.to_string(),
        start_time: now,
        end_time: now,
        duration_ms: 0.0,
        billed_duration_ms: 0,
        memory_used_mb: 0,
        init_duration_ms: None,
        sandbox_ms: None,
        code_ms: None,
        code_tier: None,
        runtime_init_ms: None,
        user_init_ms: None,
        status: "THROTTLED".to_string(),
        error_type: Some("TooManyRequestsException".to_string()),
        cold_start: false,
        slot_id: None,
        trace_id: trace_id.to_string(),
    };
    state.recorder.record(record, Vec::new());
}

/// Places an invocation on a worker host and claims its slot there, within the
/// function's burst limit for cold starts. Feeds the warm pool's predictor and the
/// placement and scaling counters.
fn start_on_host(state: &AppState, request: &InvokeRequest) -> Result<StartedInvocation, WorkerError> {
    let function_id = request.function_id;
    state.warm_pool.record_arrival(request);
    let scaling = &state.scaling;
    let started = state.fleet.start_invoke(request.clone(), || {
        if scaling.admit_new_environments(function_id, 1) == 1 {
            return Ok(());
        }
        Err(WorkerError::BurstLimitExceeded {
            function: request.function_name.clone(),
            limit: scaling.burst_limit(),
            interval_s: scaling.burst_interval().as_secs(),
        })
    });
    match &started {
        Ok(started) if !started.warm => state.metrics.count_placement(started.host),
        Ok(_) => {}
        Err(error) => {
            if matches!(error, WorkerError::NoFeasibleHost(_)) {
                state.metrics.count_placement_failure();
            }
            // A rejected arrival completes at once, as the predictor expects.
            state
                .warm_pool
                .record_completion(function_id, std::time::Duration::ZERO);
            state.scaling.record_throttle(function_id);
        }
    }
    started
}

/// Runs one invocation on the worker in its own task, so a caller that disconnects
/// does not abandon a slot mid-event, and records it. The task owns the concurrency
/// lease, so the lease is released when the invocation ends, however it ends, and
/// not when the caller goes away.
pub async fn run_invocation(
    state: &AppState,
    account: &Account,
    function_id: Uuid,
    request: InvokeRequest,
    invocation_type: &'static str,
    lease: Lease,
) -> Result<InvokeResult, WorkerError> {
    let function_key = request.function_id;
    let started = match start_on_host(state, &request) {
        Ok(started) => started,
        Err(error) => {
            let outcome = Err(error);
            state
                .metrics
                .observe_invocation(&account.name, &request.function_name, &outcome);
            return outcome;
        }
    };
    let (run, cold) = (started.run, !started.warm);
    state.scaling.record_start(function_key, cold);
    let scaling = state.scaling.clone();
    let warm_pool = state.warm_pool.clone();
    let recorder = state.recorder.clone();
    let metrics = state.metrics.clone();
    let account = account.clone();
    let task = tokio::spawn(async move {
        let _lease = lease;
        let invoke_started = std::time::Instant::now();
        let outcome = run.await;
        warm_pool.record_completion(function_key, invoke_started.elapsed());
        scaling.record_end(function_key);
        metrics.observe_invocation(&account.name, &request.function_name, &outcome);
        let result = outcome?;
        let (record, logs) = record_of(&result, &account, function_id, &request, invocation_type);
        recorder.record(record, logs);
        Ok(result)
    });
    match task.await {
        Ok(result) => result,
        Err(join_error) => Err(WorkerError::Io(format!("invocation task failed: {join_error}"))),
    }
}

/// Formats the `X-Cold-Start` header, for example
/// `sandbox=0.6ms;code=L1,0.1ms;runtime=9.8ms;init=3.0ms;total=13.5ms`. `runtime` is the
/// runtime's start-up and `init` the function's own init. When the runtime did not report
/// when it became ready, `runtime` is left out and `init` covers both.
fn cold_start_header(result: &InvokeResult) -> Option<String> {
    let cold = result.cold_start?;
    let init = match (cold.runtime_ms, cold.user_init_ms) {
        (Some(runtime_ms), Some(user_init_ms)) => format!("runtime={runtime_ms:.1}ms;init={user_init_ms:.1}ms"),
        _ => format!("init={:.1}ms", cold.init_ms),
    };
    let total_ms = cold.sandbox_ms + cold.code_ms + cold.init_ms;
    Some(format!(
        "sandbox={:.1}ms;code={},{:.1}ms;{init};total={total_ms:.1}ms",
        cold.sandbox_ms,
        cold.code_tier.as_str(),
        cold.code_ms,
    ))
}

/// Invoke a function.
#[utoipa::path(
    post, path = "/functions/{name}/invocations", tag = "invocations",
    params(
        ("name" = String, Path, description = "Function name"),
        QualifierQuery,
        ("X-Invocation-Type" = Option<String>, Header, description = "RequestResponse (default), Event or DryRun"),
        ("X-Log-Type" = Option<String>, Header, description = "Tail returns the last 4 KB of the log in X-Log-Result"),
        ("X-Client-Context" = Option<String>, Header, description = "Base64 of a JSON object passed to the function"),
    ),
    request_body(content = serde_json::Value, description = "The event: any JSON document, at most 6 MB (1 MB for Event)"),
    responses(
        (status = 200, description = "The function's output byte for byte; with X-Function-Error: Unhandled it is the error JSON"),
        (status = 202, description = "Event accepted and stored; it runs later"),
        (status = 204, description = "DryRun: the invocation would be accepted"),
        (status = 400, description = "Body is not JSON, or a header is invalid", body = ErrorBody),
        (status = 404, description = "No such function, version or alias", body = ErrorBody),
        (status = 409, description = "The function is not Active", body = ErrorBody),
        (status = 413, description = "Payload too large", body = ErrorBody),
        (status = 429, description = "Throttled: the reserved or account concurrency is in use, no worker host can start an execution environment, or the function's burst limit of new environments is used up; `reason` names the limit", body = ErrorBody),
        (status = 502, description = "The runtime is not available on this server", body = ErrorBody),
    )
)]
pub async fn invoke(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<QualifierQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let invocation_type = invocation_type(&headers)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "request payload is over the {MAX_SYNC_PAYLOAD_BYTES}-byte limit of synchronous invocations"
            ))
        } else {
            ApiError::InvalidRequestContent(format!("could not read the request body: {}", rejection.body_text()))
        }
    })?;
    if body.len() > MAX_SYNC_PAYLOAD_BYTES {
        return Err(ApiError::TooLarge(format!(
            "request payload is {} bytes, over the {MAX_SYNC_PAYLOAD_BYTES}-byte limit of synchronous invocations",
            body.len()
        )));
    }
    if invocation_type == InvocationType::Event && body.len() > MAX_ASYNC_PAYLOAD_BYTES {
        return Err(ApiError::TooLarge(format!(
            "request payload is {} bytes, over the {MAX_ASYNC_PAYLOAD_BYTES}-byte limit of asynchronous invocations",
            body.len()
        )));
    }
    let log_tail = wants_log_tail(&headers)?;
    let client_context = client_context(&headers)?;
    let payload = check_payload(body)?;

    let function = find_function(&state, &account, &name).await?;
    let target = resolve_target(&state, &account, &function, query.qualifier.as_deref()).await?;
    state
        .fleet
        .check_runtime(&target.settings.runtime)
        .map_err(|e| worker_error(e, &name))?;
    let request_id = Uuid::new_v4().to_string();
    let trace_id = new_trace_id();

    match invocation_type {
        InvocationType::DryRun => {
            // The lease is dropped at once: a dry run only checks that the invocation
            // would be admitted now. Nothing ran, so a throttle is not recorded.
            if let Err(throttle) = admission::acquire(&state, &account, &function).await? {
                return Err(admission::throttle_error(&throttle, &account, &name));
            }
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response.headers_mut().insert(
                "x-request-id",
                HeaderValue::from_str(&request_id).expect("uuid is a valid header"),
            );
            Ok(response)
        }
        InvocationType::Event => {
            // Events are queued without a concurrency check. The dispatcher checks when
            // it runs them, and a throttled event waits in the queue.
            let now = now_ms();
            let event = AsyncEvent {
                event_id: request_id.clone(),
                account_id: account.account_id,
                function_id: function.function_id,
                qualifier: query.qualifier.clone(),
                payload: payload.to_vec(),
                client_context,
                trace_id,
                attempts: 0,
                next_attempt_ms: now,
                created_ms: now,
            };
            state.store.enqueue_event(&event).await?;
            state.dispatcher_wakeup.notify_one();
            tracing::debug!(function = %name, request_id = %request_id, "event queued");
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::ACCEPTED;
            response.headers_mut().insert(
                "x-request-id",
                HeaderValue::from_str(&request_id).expect("uuid is a valid header"),
            );
            Ok(response)
        }
        InvocationType::RequestResponse => {
            let lease = match admission::acquire(&state, &account, &function).await? {
                Ok(lease) => lease,
                Err(throttle) => {
                    state
                        .metrics
                        .count_throttle(&account.name, &name, throttle.reason.as_str());
                    record_throttle(
                        &state,
                        &account,
                        function.function_id,
                        &target.version,
                        &request_id,
                        "RequestResponse",
                        &trace_id,
                    );
                    return Err(admission::throttle_error(&throttle, &account, &name));
                }
            };
            let request = InvokeRequest {
                request_id: request_id.clone(),
                function_id: function.function_id,
                function_name: function.name.clone(),
                version: target.version.clone(),
                invoked_function_arn: target.invoked_arn,
                settings: target.settings,
                code: target.code,
                payload,
                client_context,
                trace_id,
            };
            let result = run_invocation(
                &state,
                &account,
                function.function_id,
                request,
                "RequestResponse",
                lease,
            )
            .await
            .map_err(|e| worker_error(e, &name))?;
            tracing::debug!(function = %name, request_id = %request_id, version = %target.version,
                status = result.status.as_str(), duration_ms = format!("{:.2}", result.duration_ms),
                cold = result.cold_start.is_some(), "invoked");

            let mut response = Response::new(Body::from(result.body.clone()));
            let headers = response.headers_mut();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert(
                "x-request-id",
                HeaderValue::from_str(&request_id).expect("uuid is a valid header"),
            );
            if let Ok(version) = HeaderValue::from_str(&target.version) {
                headers.insert("x-executed-version", version);
            }
            if result.error_type.is_some() {
                headers.insert("x-function-error", HeaderValue::from_static("Unhandled"));
            }
            if log_tail {
                let tail = base64::engine::general_purpose::STANDARD.encode(result.log_tail());
                headers.insert(
                    "x-log-result",
                    HeaderValue::from_str(&tail).expect("base64 is a valid header"),
                );
            }
            if let Ok(host) = HeaderValue::from_str(&result.host_id.to_string()) {
                headers.insert("x-worker", host);
            }
            if let Some(cold) = cold_start_header(&result).and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert("x-cold-start", cold);
            }
            Ok(response)
        }
    }
}
