//! Provisioned concurrency: the `/functions/{name}/provisioned-concurrency` API and
//! the warm pool manager that keeps each configuration's slots initialized.
//!
//! A configuration names a published version or an alias. Every tick, the manager
//! resolves the qualifier to a version (so an alias change is picked up on the next
//! tick), tops the version's provisioned slots up to `requested`, retires excess
//! ones oldest first, and records the status. Slots of versions that no
//! configuration names any more are retired.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use nimbus_model::function::function_arn;
use nimbus_model::{format_timestamp, FunctionRecord, Qualifier, VersionRecord};
use nimbus_store::{Account, ProvisionedConcurrencyRecord, ProvisionedStatus};
use nimbus_worker::{InvokeRequest, PrewarmError, ProvisionedTarget};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, JsonBody};
use crate::functions::find_function;
use crate::AppState;

/// How often the manager checks every configuration, unless the server is started
/// with another `--warm-pool-interval-ms`.
pub const DEFAULT_WARM_POOL_INTERVAL: Duration = Duration::from_secs(10);

/// Serializes the manager's passes with the handlers that change configurations, so
/// that a pass never plans with a list of configurations that a request just changed.
/// The passes only read the store and start initialization in the background, so
/// they hold the lock briefly.
static MANAGER_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionedConcurrencyRequest {
    /// A published version number or an alias; `$LATEST` is rejected.
    pub qualifier: String,
    /// Execution environments to keep initialized, at least 1.
    pub provisioned_concurrent_executions: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProvisionedConcurrencyConfig {
    pub qualifier: String,
    /// Provisioned execution environments requested.
    pub requested: u32,
    /// Initialized environments idle now, ready for an invocation.
    pub available: u32,
    /// Initialized environments, idle or running an invocation.
    pub allocated: u32,
    /// `IN_PROGRESS`, `READY` or `FAILED`.
    pub status: String,
    /// The error behind a `FAILED` status, or the platform error behind a retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The version that the qualifier resolved to at the last check.
    pub function_version: String,
    pub last_modified: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProvisionedConcurrencyList {
    pub provisioned_concurrency_configs: Vec<ProvisionedConcurrencyConfig>,
}

/// One configuration when a qualifier is given, otherwise all of the function's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProvisionedConcurrencyResponse {
    One(ProvisionedConcurrencyConfig),
    List(ProvisionedConcurrencyList),
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProvisionedQuery {
    /// A version number or an alias.
    pub qualifier: Option<String>,
}

fn view(state: &AppState, config: &ProvisionedConcurrencyRecord) -> ProvisionedConcurrencyConfig {
    let target = ProvisionedTarget::new(config.function_id, &config.resolved_version);
    let counts = state.fleet.provisioned_counts(&target);
    ProvisionedConcurrencyConfig {
        qualifier: config.qualifier.clone(),
        requested: config.requested,
        available: counts.idle as u32,
        allocated: counts.allocated() as u32,
        status: config.status.as_str().to_string(),
        status_reason: config.status_reason.clone(),
        function_version: config.resolved_version.clone(),
        last_modified: format_timestamp(config.updated_at),
    }
}

/// Resolves a provisioned concurrency qualifier to the published version it names.
async fn resolve_version(state: &AppState, function: &FunctionRecord, qualifier: &str) -> ApiResult<VersionRecord> {
    let number = match Qualifier::parse(qualifier)? {
        Qualifier::Latest => {
            return Err(ApiError::InvalidParameter(format!(
                "provisioned concurrency cannot be configured on $LATEST of function '{}'; publish a version with POST /functions/{}/versions and use its number or an alias",
                function.name, function.name
            )))
        }
        Qualifier::Version(number) => number,
        Qualifier::Alias(alias) => {
            let record = state
                .store
                .get_alias(function.function_id, &alias)
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound(format!("alias '{alias}' of function '{}' was not found", function.name))
                })?;
            match Qualifier::parse(&record.function_version)? {
                Qualifier::Version(number) => number,
                _ => {
                    return Err(ApiError::InvalidParameter(format!(
                        "alias '{alias}' of function '{}' routes to $LATEST, which cannot have provisioned concurrency; point the alias at a published version",
                        function.name
                    )))
                }
            }
        }
    };
    state
        .store
        .get_version(function.function_id, number)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "version {number} of function '{}' was not found",
                function.name
            ))
        })
}

/// Checks that `requested` plus the function's other configurations fit within its
/// reserved concurrency, or within the account's unreserved concurrency when the
/// function has no reservation.
async fn check_limits(
    state: &AppState,
    account: &Account,
    function: &FunctionRecord,
    qualifier: &str,
    requested: u32,
) -> ApiResult<()> {
    let others: u64 = state
        .store
        .list_provisioned_concurrency(function.function_id)
        .await?
        .iter()
        .filter(|c| c.qualifier != qualifier)
        .map(|c| c.requested as u64)
        .sum();
    let total = others + requested as u64;
    let name = &function.name;
    match function.reserved_concurrency {
        Some(reserved) if total > reserved as u64 => Err(ApiError::InvalidParameter(format!(
            "provisioned_concurrent_executions {requested} plus {others} provisioned for other qualifiers of function '{name}' is {total}, over its reserved concurrency of {reserved}; request at most {} or raise the reservation with PUT /functions/{name}/concurrency",
            (reserved as u64).saturating_sub(others)
        ))),
        Some(_) => Ok(()),
        None => {
            let reserved_total = state.reservations.get(state.store.as_ref(), account.account_id).await?;
            let unreserved = (account.concurrency_limit as u64).saturating_sub(reserved_total);
            if total > unreserved {
                return Err(ApiError::InvalidParameter(format!(
                    "provisioned_concurrent_executions {requested} plus {others} provisioned for other qualifiers of function '{name}' is {total}, over the account's unreserved concurrency of {unreserved} (limit {} minus {reserved_total} reserved); request at most {}",
                    account.concurrency_limit,
                    unreserved.saturating_sub(others)
                )));
            }
            Ok(())
        }
    }
}

/// Configure provisioned concurrency for a version or alias.
#[utoipa::path(
    put, path = "/functions/{name}/provisioned-concurrency", tag = "concurrency",
    params(("name" = String, Path, description = "Function name")),
    request_body = ProvisionedConcurrencyRequest,
    responses(
        (status = 202, description = "Stored; environments are initialized in the background, and GET shows the progress", body = ProvisionedConcurrencyConfig),
        (status = 400, description = "The qualifier is $LATEST or an alias of $LATEST, the count is under 1, or it does not fit the reserved or unreserved concurrency", body = ErrorBody),
        (status = 404, description = "No such function, version or alias", body = ErrorBody),
        (status = 409, description = "Another qualifier of the function already provisions the same version", body = ErrorBody),
    )
)]
pub async fn put_provisioned_concurrency(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    JsonBody(request): JsonBody<ProvisionedConcurrencyRequest>,
) -> ApiResult<(StatusCode, Json<ProvisionedConcurrencyConfig>)> {
    let function = find_function(&state, &account, &name).await?;
    let requested = request.provisioned_concurrent_executions;
    if requested < 1 || requested > u32::MAX as i64 {
        return Err(ApiError::InvalidParameter(format!(
            "provisioned_concurrent_executions {requested} is invalid; request at least 1, or remove the configuration with DELETE /functions/{name}/provisioned-concurrency?qualifier={}",
            request.qualifier
        )));
    }
    let requested = requested as u32;
    let version = resolve_version(&state, &function, &request.qualifier).await?;
    let version_number = version.number.to_string();

    let _guard = MANAGER_LOCK.lock().await;
    check_limits(&state, &account, &function, &request.qualifier, requested).await?;
    let existing = state.store.list_provisioned_concurrency(function.function_id).await?;
    if let Some(other) = existing
        .iter()
        .find(|c| c.qualifier != request.qualifier && c.resolved_version == version_number)
    {
        return Err(ApiError::Conflict(format!(
            "qualifier '{}' of function '{name}' already provisions version {version_number}, which '{}' resolves to; change that configuration instead",
            other.qualifier, request.qualifier
        )));
    }
    let now = OffsetDateTime::now_utc();
    let created_at = existing
        .iter()
        .find(|c| c.qualifier == request.qualifier)
        .map_or(now, |c| c.created_at);
    let config = ProvisionedConcurrencyRecord {
        function_id: function.function_id,
        qualifier: request.qualifier.clone(),
        resolved_version: version_number.clone(),
        requested,
        status: ProvisionedStatus::InProgress,
        status_reason: None,
        created_at,
        updated_at: now,
    };
    state.store.put_provisioned_concurrency(&config).await?;
    tracing::info!(function = %name, qualifier = %config.qualifier, version = %version_number, requested,
        "provisioned concurrency configured");
    reconcile_function(&state, &function, &account).await;
    Ok((StatusCode::ACCEPTED, Json(view(&state, &config))))
}

/// Get one provisioned concurrency configuration, or all of a function's.
#[utoipa::path(
    get, path = "/functions/{name}/provisioned-concurrency", tag = "concurrency",
    params(("name" = String, Path, description = "Function name"), ProvisionedQuery),
    responses(
        (status = 200, description = "With `qualifier`, that configuration; without it, `{\"provisioned_concurrency_configs\": [...]}`", body = ProvisionedConcurrencyResponse),
        (status = 404, description = "No such function, or no configuration for the qualifier", body = ErrorBody),
    )
)]
pub async fn get_provisioned_concurrency(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ProvisionedQuery>,
) -> ApiResult<Json<ProvisionedConcurrencyResponse>> {
    let function = find_function(&state, &account, &name).await?;
    let Some(qualifier) = query.qualifier else {
        let configs = state.store.list_provisioned_concurrency(function.function_id).await?;
        return Ok(Json(ProvisionedConcurrencyResponse::List(ProvisionedConcurrencyList {
            provisioned_concurrency_configs: configs.iter().map(|c| view(&state, c)).collect(),
        })));
    };
    let config = find_config(&state, &function, &qualifier).await?;
    Ok(Json(ProvisionedConcurrencyResponse::One(view(&state, &config))))
}

/// Remove a provisioned concurrency configuration and retire its environments.
#[utoipa::path(
    delete, path = "/functions/{name}/provisioned-concurrency", tag = "concurrency",
    params(("name" = String, Path, description = "Function name"), ProvisionedQuery),
    responses(
        (status = 204, description = "Removed; idle provisioned environments are shut down, busy ones finish their invocation first"),
        (status = 400, description = "The qualifier is missing", body = ErrorBody),
        (status = 404, description = "No such function, or no configuration for the qualifier", body = ErrorBody),
    )
)]
pub async fn delete_provisioned_concurrency(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ProvisionedQuery>,
) -> ApiResult<StatusCode> {
    let function = find_function(&state, &account, &name).await?;
    let Some(qualifier) = query.qualifier else {
        return Err(ApiError::InvalidParameter(format!(
            "qualifier is missing; use DELETE /functions/{name}/provisioned-concurrency?qualifier=VERSION_OR_ALIAS"
        )));
    };
    let _guard = MANAGER_LOCK.lock().await;
    let config = find_config(&state, &function, &qualifier).await?;
    state
        .store
        .delete_provisioned_concurrency(function.function_id, &qualifier)
        .await?;
    let target = ProvisionedTarget::new(function.function_id, &config.resolved_version);
    let retired = state.fleet.retire_provisioned(&target);
    tracing::info!(function = %name, %qualifier, version = %config.resolved_version, retired,
        "provisioned concurrency removed");
    Ok(StatusCode::NO_CONTENT)
}

async fn find_config(
    state: &AppState,
    function: &FunctionRecord,
    qualifier: &str,
) -> ApiResult<ProvisionedConcurrencyRecord> {
    Qualifier::parse(qualifier)?;
    state
        .store
        .get_provisioned_concurrency(function.function_id, qualifier)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "function '{}' has no provisioned concurrency for qualifier '{qualifier}'; configure it with PUT /functions/{}/provisioned-concurrency",
                function.name, function.name
            ))
        })
}

/// Starts the manager loop that reconciles every configuration each `interval`.
pub fn start(state: AppState, interval: Duration) {
    tracing::info!(interval_ms = interval.as_millis() as u64, "warm pool manager started");
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match reconcile_all(&state).await {
                Ok(provisioned) => state.warm_pool.reconcile(&state, &provisioned).await,
                Err(error) => tracing::error!(%error, "warm pool manager pass failed; retrying on the next tick"),
            }
        }
    });
}

/// Reconciles every configuration, then retires the provisioned slots of versions
/// that no configuration names. Returns the functions that have a configuration.
async fn reconcile_all(state: &AppState) -> ApiResult<HashSet<Uuid>> {
    let _guard = MANAGER_LOCK.lock().await;
    let configs = state.store.list_all_provisioned_concurrency().await?;
    let mut by_function: HashMap<Uuid, Vec<ProvisionedConcurrencyRecord>> = HashMap::new();
    for config in configs {
        by_function.entry(config.function_id).or_default().push(config);
    }
    let mut configured = HashSet::new();
    let provisioned_functions: HashSet<Uuid> = by_function.keys().copied().collect();
    for (function_id, configs) in by_function {
        let Some(function) = state.store.get_function_by_id(function_id).await? else {
            continue;
        };
        let Some(account) = state.store.get_account(function.account_id).await? else {
            continue;
        };
        configured.extend(reconcile_configs(state, &function, &account, configs).await);
    }
    let retired = state.fleet.retain_provisioned(&configured);
    if retired > 0 {
        tracing::info!(retired, "retired provisioned slots of versions no configuration names");
    }
    Ok(provisioned_functions)
}

/// Reconciles the configurations of one function at once, so a new configuration
/// does not wait for the next tick. The caller must have locked [`MANAGER_LOCK`].
async fn reconcile_function(state: &AppState, function: &FunctionRecord, account: &Account) {
    match state.store.list_provisioned_concurrency(function.function_id).await {
        Ok(configs) => {
            reconcile_configs(state, function, account, configs).await;
        }
        Err(error) => {
            tracing::error!(function = %function.name, %error, "failed to read provisioned concurrency; the manager retries on its next tick");
        }
    }
}

/// Reconciles a function's configurations and returns the targets they keep.
async fn reconcile_configs(
    state: &AppState,
    function: &FunctionRecord,
    account: &Account,
    configs: Vec<ProvisionedConcurrencyRecord>,
) -> Vec<ProvisionedTarget> {
    let mut claimed: HashMap<String, String> = HashMap::new();
    let mut targets = Vec::new();
    for config in configs {
        if let Some(target) = reconcile(state, function, account, config, &mut claimed).await {
            targets.push(target);
        }
    }
    targets
}

/// Records a new status unless it is already stored.
async fn set_status(
    state: &AppState,
    config: &mut ProvisionedConcurrencyRecord,
    status: ProvisionedStatus,
    reason: Option<String>,
) {
    if config.status == status && config.status_reason == reason {
        return;
    }
    write_status(state, config, status, reason).await;
}

/// Records the status and resolved version of a configuration.
async fn write_status(
    state: &AppState,
    config: &mut ProvisionedConcurrencyRecord,
    status: ProvisionedStatus,
    reason: Option<String>,
) {
    match state
        .store
        .update_provisioned_status(
            config.function_id,
            &config.qualifier,
            config.requested,
            &config.resolved_version,
            status,
            reason.as_deref(),
        )
        .await
    {
        Ok(_) => {
            config.status = status;
            config.status_reason = reason;
        }
        Err(error) => {
            tracing::error!(function_id = %config.function_id, qualifier = %config.qualifier, %error,
                "failed to record the provisioned concurrency status");
        }
    }
}

/// Reconciles one configuration: resolves its qualifier, starts missing slots and
/// retires excess ones. Returns the target whose slots it keeps, or None when its
/// qualifier no longer resolves to a version it can provision.
async fn reconcile(
    state: &AppState,
    function: &FunctionRecord,
    account: &Account,
    mut config: ProvisionedConcurrencyRecord,
    claimed: &mut HashMap<String, String>,
) -> Option<ProvisionedTarget> {
    let version = match resolve_version(state, function, &config.qualifier).await {
        Ok(version) => version,
        Err(ApiError::Service(message)) => {
            // The store failed; keep the slots and retry on the next tick.
            tracing::error!(function = %function.name, qualifier = %config.qualifier, %message,
                "failed to resolve a provisioned concurrency qualifier");
            return Some(ProvisionedTarget::new(function.function_id, &config.resolved_version));
        }
        Err(error) => {
            let reason = error.to_string();
            if config.status != ProvisionedStatus::Failed {
                tracing::warn!(function = %function.name, qualifier = %config.qualifier, %reason,
                    "provisioned concurrency failed");
            }
            set_status(state, &mut config, ProvisionedStatus::Failed, Some(reason)).await;
            return None;
        }
    };
    let version_number = version.number.to_string();
    if version_number != config.resolved_version {
        tracing::info!(function = %function.name, qualifier = %config.qualifier, from = %config.resolved_version,
            to = %version_number, "qualifier now resolves to another version; provisioning it");
        config.resolved_version = version_number.clone();
        write_status(state, &mut config, ProvisionedStatus::InProgress, None).await;
    }
    if let Some(other) = claimed.get(&version_number) {
        let reason = format!(
            "qualifier '{other}' already provisions version {version_number}, which '{}' also resolves to; delete one of the two configurations",
            config.qualifier
        );
        set_status(state, &mut config, ProvisionedStatus::Failed, Some(reason)).await;
        return None;
    }
    claimed.insert(version_number.clone(), config.qualifier.clone());
    let target = ProvisionedTarget::new(function.function_id, &version_number);
    if config.status == ProvisionedStatus::Failed {
        // A failed init is not retried until the configuration is PUT again.
        return Some(target);
    }

    let deficit = state.fleet.plan_provisioned(&target, config.requested);
    if deficit == 0 {
        let counts = state.fleet.provisioned_counts(&target);
        if counts.allocated() >= config.requested as usize {
            set_status(state, &mut config, ProvisionedStatus::Ready, None).await;
        } else {
            let reason = config.status_reason.clone();
            set_status(state, &mut config, ProvisionedStatus::InProgress, reason).await;
        }
        return Some(target);
    }
    let reason = config.status_reason.clone();
    set_status(state, &mut config, ProvisionedStatus::InProgress, reason).await;
    let request = prewarm_request(state, function, account, &config.qualifier, &version);
    let initialization = state.fleet.prewarm(&request, deficit);
    let state = state.clone();
    let function_name = function.name.clone();
    tokio::spawn(async move {
        let outcome = initialization.await;
        finish_prewarm(&state, &function_name, config, outcome).await;
    });
    Some(target)
}

/// Records the outcome of a prewarm: READY once enough slots are initialized, FAILED
/// when the function's init failed, or the platform error as the reason of a status
/// that stays IN_PROGRESS, to be retried on the next tick.
async fn finish_prewarm(
    state: &AppState,
    function_name: &str,
    mut config: ProvisionedConcurrencyRecord,
    outcome: Result<usize, PrewarmError>,
) {
    let target = ProvisionedTarget::new(config.function_id, &config.resolved_version);
    match outcome {
        Ok(ready) => {
            let counts = state.fleet.provisioned_counts(&target);
            tracing::info!(function = %function_name, qualifier = %config.qualifier, version = %config.resolved_version,
                ready, allocated = counts.allocated(), requested = config.requested, "provisioned slots initialized");
            if counts.allocated() >= config.requested as usize {
                set_status(state, &mut config, ProvisionedStatus::Ready, None).await;
            }
        }
        Err(PrewarmError::InitFailed { error_type, message }) => {
            let reason = format!(
                "init of version {} failed with {error_type}: {message}; fix the function, publish a version and PUT the configuration again",
                config.resolved_version
            );
            tracing::warn!(function = %function_name, qualifier = %config.qualifier, %reason, "provisioned concurrency failed");
            set_status(state, &mut config, ProvisionedStatus::Failed, Some(reason)).await;
        }
        Err(PrewarmError::Worker(error)) => {
            let reason = format!("failed to start an execution environment: {error}; retrying");
            tracing::warn!(function = %function_name, qualifier = %config.qualifier, %error,
                "provisioned slot could not start; retrying on the next tick");
            set_status(state, &mut config, ProvisionedStatus::InProgress, Some(reason)).await;
        }
    }
}

/// Builds the request that a slot is initialized for. Its payload is never run.
fn prewarm_request(
    state: &AppState,
    function: &FunctionRecord,
    account: &Account,
    qualifier: &str,
    version: &VersionRecord,
) -> InvokeRequest {
    InvokeRequest {
        request_id: Uuid::new_v4().to_string(),
        function_id: function.function_id,
        function_name: function.name.clone(),
        version: version.number.to_string(),
        invoked_function_arn: function_arn(&state.region, &account.account_number, &function.name, Some(qualifier)),
        settings: version.settings.clone(),
        code: version.code.clone(),
        payload: Bytes::new(),
        client_context: None,
        trace_id: crate::invoke::new_trace_id(),
    }
}
