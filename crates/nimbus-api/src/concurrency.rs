//! Reserved concurrency of functions and the account's limits and usage.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use nimbus_store::{min_unreserved_concurrency, Account};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, JsonBody};
use crate::functions::find_function;
use crate::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyRequest {
    /// Concurrent executions reserved for this function; 0 stops all invocations.
    pub reserved_concurrent_executions: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Concurrency {
    /// Null when the function has no reservation and draws on the unreserved pool.
    pub reserved_concurrent_executions: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountLimits {
    pub concurrent_executions: u32,
    /// Part of the account limit left after all reservations.
    pub unreserved_concurrent_executions: u32,
    /// Largest zip for an inline upload, in bytes.
    pub code_size_zipped: u64,
    /// Largest unzipped package, in bytes.
    pub code_size_unzipped: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountUsageBody {
    pub function_count: u64,
    /// Bytes of all stored packages, $LATEST and versions.
    pub total_code_size: u64,
    pub reserved_concurrent_executions: u64,
    /// Invocations of the account's functions running now.
    pub concurrent_executions: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSettings {
    pub account_id: String,
    pub name: String,
    pub account_number: String,
    pub limits: AccountLimits,
    pub usage: AccountUsageBody,
}

/// Reserve concurrency for a function.
#[utoipa::path(
    put, path = "/functions/{name}/concurrency", tag = "concurrency",
    params(("name" = String, Path, description = "Function name")),
    request_body = ConcurrencyRequest,
    responses(
        (status = 200, description = "The reservation", body = Concurrency),
        (status = 400, description = "Negative, or leaves less than 100 of the account limit unreserved (all of a limit under 100)", body = ErrorBody),
        (status = 404, description = "No such function", body = ErrorBody),
    )
)]
pub async fn put_concurrency(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    JsonBody(request): JsonBody<ConcurrencyRequest>,
) -> ApiResult<Json<Concurrency>> {
    let function = find_function(&state, &account, &name).await?;
    let requested = request.reserved_concurrent_executions;
    let unreserved_minimum = min_unreserved_concurrency(account.concurrency_limit);
    let max_reserved = account.concurrency_limit.saturating_sub(unreserved_minimum);
    if requested < 0 || requested > max_reserved as i64 {
        return Err(ApiError::InvalidParameter(format!(
            "reserved_concurrent_executions {requested} is out of range; use 0 to {max_reserved}, because {unreserved_minimum} of the account limit of {} stay unreserved",
            account.concurrency_limit
        )));
    }
    let requested = requested as u32;
    state
        .store
        .set_reserved_concurrency(account.account_id, function.function_id, Some(requested))
        .await?;
    state.reservations.invalidate(account.account_id);
    tracing::info!(function = %name, reserved = requested, "reserved concurrency set");
    Ok(Json(Concurrency {
        reserved_concurrent_executions: Some(requested),
    }))
}

/// Get a function's reserved concurrency.
#[utoipa::path(
    get, path = "/functions/{name}/concurrency", tag = "concurrency",
    params(("name" = String, Path, description = "Function name")),
    responses(
        (status = 200, description = "The reservation, or null", body = Concurrency),
        (status = 404, description = "No such function", body = ErrorBody),
    )
)]
pub async fn get_concurrency(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Concurrency>> {
    let function = find_function(&state, &account, &name).await?;
    Ok(Json(Concurrency {
        reserved_concurrent_executions: function.reserved_concurrency,
    }))
}

/// Remove a function's reservation.
#[utoipa::path(
    delete, path = "/functions/{name}/concurrency", tag = "concurrency",
    params(("name" = String, Path, description = "Function name")),
    responses(
        (status = 204, description = "Removed; the function uses the unreserved pool"),
        (status = 404, description = "No such function", body = ErrorBody),
    )
)]
pub async fn delete_concurrency(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let function = find_function(&state, &account, &name).await?;
    state
        .store
        .set_reserved_concurrency(account.account_id, function.function_id, None)
        .await?;
    state.reservations.invalidate(account.account_id);
    tracing::info!(function = %name, "reserved concurrency removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Show the account's limits and usage.
#[utoipa::path(
    get, path = "/account", tag = "account",
    responses((status = 200, description = "Limits and usage of the caller's account", body = AccountSettings))
)]
pub async fn get_account(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
) -> ApiResult<Json<AccountSettings>> {
    let usage = state.store.account_usage(account.account_id).await?;
    let in_use = state.limiter.in_use(account.account_id).await;
    let unreserved = (account.concurrency_limit as u64).saturating_sub(usage.reserved_concurrency) as u32;
    Ok(Json(AccountSettings {
        account_id: account.account_id.to_string(),
        name: account.name.clone(),
        account_number: account.account_number.clone(),
        limits: AccountLimits {
            concurrent_executions: account.concurrency_limit,
            unreserved_concurrent_executions: unreserved,
            code_size_zipped: state.package_limits.max_zipped_bytes,
            code_size_unzipped: state.package_limits.max_unzipped_bytes,
        },
        usage: AccountUsageBody {
            function_count: usage.function_count,
            total_code_size: usage.total_code_size,
            reserved_concurrent_executions: usage.reserved_concurrency,
            concurrent_executions: in_use,
        },
    }))
}
