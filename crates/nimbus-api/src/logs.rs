//! Reading a function's logs and invocation records.

use axum::extract::State;
use axum::{Extension, Json};
use nimbus_store::{Account, LogQuery};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::functions::find_function;
use crate::AppState;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only lines of this invocation.
    pub request_id: Option<String>,
    /// Only lines at or after this time: RFC 3339 or Unix epoch milliseconds.
    pub start_time: Option<String>,
    /// Only lines before this time: RFC 3339 or Unix epoch milliseconds.
    pub end_time: Option<String>,
    /// Only lines stored after this sequence number; pass `next_sequence` to follow.
    pub after: Option<i64>,
    /// Lines per page, 1 to 10000; default 1000.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogLineBody {
    pub sequence: i64,
    /// RFC 3339 time the worker read the line.
    pub timestamp: String,
    pub request_id: Option<String>,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    pub events: Vec<LogLineBody>,
    /// Pass as `after` to read the lines stored since this page; equal to `after`
    /// when there were none.
    pub next_sequence: Option<i64>,
}

fn parse_time(field: &str, value: &str) -> ApiResult<i64> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    OffsetDateTime::parse(value, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            ApiError::InvalidParameter(format!(
                "{field} '{value}' is invalid; use RFC 3339 (2026-01-02T03:04:05Z) or Unix epoch milliseconds"
            ))
        })
}

fn check_limit(limit: Option<i64>, default: u32) -> ApiResult<u32> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(n as u32),
        Some(n) => Err(ApiError::InvalidParameter(format!(
            "limit {n} is out of range; use 1 to {MAX_LIMIT}"
        ))),
    }
}

/// Read a function's log lines.
#[utoipa::path(
    get, path = "/functions/{name}/logs", tag = "invocations",
    params(("name" = String, Path, description = "Function name"), LogsQuery),
    responses(
        (status = 200, description = "Log lines in the order they were stored", body = LogPage),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 404, description = "No such function", body = ErrorBody),
    )
)]
pub async fn get_logs(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> ApiResult<Json<LogPage>> {
    let function = find_function(&state, &account, &name).await?;
    let filter = LogQuery {
        request_id: query.request_id.clone(),
        start_ms: query
            .start_time
            .as_deref()
            .map(|v| parse_time("start_time", v))
            .transpose()?,
        end_ms: query
            .end_time
            .as_deref()
            .map(|v| parse_time("end_time", v))
            .transpose()?,
        after_sequence: query.after,
        limit: check_limit(query.limit, DEFAULT_LIMIT)?,
    };
    let events = state.store.query_logs(function.function_id, &filter).await?;
    let next_sequence = events.last().map(|e| e.sequence).or(query.after);
    let events = events
        .into_iter()
        .map(|event| LogLineBody {
            sequence: event.sequence,
            timestamp: OffsetDateTime::from_unix_timestamp_nanos(event.timestamp_ms as i128 * 1_000_000)
                .map(nimbus_model::format_timestamp)
                .unwrap_or_default(),
            request_id: event.request_id,
            message: event.message,
        })
        .collect();
    Ok(Json(LogPage { events, next_sequence }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvocationsQuery {
    /// Only invocations that started before this time (RFC 3339 or epoch milliseconds).
    pub before: Option<String>,
    /// Records per page, 1 to 10000; default 50.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvocationBody {
    pub request_id: String,
    pub version: String,
    pub trigger_type: String,
    pub invocation_type: String,
    pub start_time: String,
    pub end_time: String,
    pub duration_ms: f64,
    pub billed_duration_ms: u64,
    pub memory_used_mb: u64,
    /// From the process start to the runtime's first request for an event. Cold starts only.
    pub init_duration_ms: Option<f64>,
    /// Time to start the sandbox. Cold starts only.
    pub sandbox_ms: Option<f64>,
    /// Time to fetch the code. Cold starts only.
    pub code_ms: Option<f64>,
    /// Code cache tier that served the code: L1, L2 or L3. Cold starts only.
    pub code_tier: Option<String>,
    /// Runtime start-up part of init_duration_ms. Null unless the runtime reported when it
    /// became ready, which Nimbus's own Python and Node.js bootstraps do.
    pub runtime_init_ms: Option<f64>,
    /// The function's own part of init_duration_ms. Null when runtime_init_ms is.
    pub user_init_ms: Option<f64>,
    /// SUCCESS, ERROR, TIMEOUT or THROTTLED.
    pub status: String,
    pub error_type: Option<String>,
    pub cold_start: bool,
    pub slot_id: Option<String>,
    pub trace_id: String,
}

/// Rounds milliseconds to whole microseconds.
fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvocationPage {
    /// Newest first.
    pub invocations: Vec<InvocationBody>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_before: Option<String>,
}

/// List a function's invocation records, newest first.
#[utoipa::path(
    get, path = "/functions/{name}/invocations", tag = "invocations",
    params(("name" = String, Path, description = "Function name"), InvocationsQuery),
    responses(
        (status = 200, description = "One page of invocation records", body = InvocationPage),
        (status = 404, description = "No such function", body = ErrorBody),
    )
)]
pub async fn list_invocations(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<InvocationsQuery>,
) -> ApiResult<Json<InvocationPage>> {
    let function = find_function(&state, &account, &name).await?;
    let limit = check_limit(query.limit, 50)?;
    let before = match query.before.as_deref() {
        Some(value) => {
            let ms = parse_time("before", value)?;
            Some(
                OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
                    .map_err(|_| ApiError::InvalidParameter(format!("before '{value}' is out of range")))?,
            )
        }
        None => None,
    };
    let records = state
        .store
        .list_invocations(function.function_id, before, limit)
        .await?;
    let next_before = if records.len() == limit as usize {
        records.last().map(|r| nimbus_model::format_timestamp(r.start_time))
    } else {
        None
    };
    let invocations = records
        .into_iter()
        .map(|r| InvocationBody {
            request_id: r.request_id,
            version: r.version,
            trigger_type: r.trigger_type,
            invocation_type: r.invocation_type,
            start_time: nimbus_model::format_timestamp(r.start_time),
            end_time: nimbus_model::format_timestamp(r.end_time),
            duration_ms: (r.duration_ms * 1000.0).round() / 1000.0,
            billed_duration_ms: r.billed_duration_ms,
            memory_used_mb: r.memory_used_mb,
            init_duration_ms: r.init_duration_ms.map(round_ms),
            sandbox_ms: r.sandbox_ms.map(round_ms),
            code_ms: r.code_ms.map(round_ms),
            code_tier: r.code_tier,
            runtime_init_ms: r.runtime_init_ms.map(round_ms),
            user_init_ms: r.user_init_ms.map(round_ms),
            status: r.status,
            error_type: r.error_type,
            cold_start: r.cold_start,
            slot_id: r.slot_id,
            trace_id: r.trace_id,
        })
        .collect();
    Ok(Json(InvocationPage {
        invocations,
        next_before,
    }))
}
