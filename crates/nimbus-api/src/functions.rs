//! Functions: create, read, list, update code and configuration, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use nimbus_model::config::CodeSource;
use nimbus_model::{
    validate_alias_name, validate_function_name, CodeInfo, CreateFunctionRequest, FunctionConfiguration,
    FunctionRecord, FunctionSettings, FunctionState, Qualifier, UpdateCodeRequest, UpdateConfigRequest, VersionRecord,
};
use nimbus_store::{Account, AliasRecord, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, JsonBody};
use crate::packages::{check_handler, load_package};
use crate::AppState;

pub const DEFAULT_MAX_ITEMS: u32 = 50;
pub const MAX_ITEMS_LIMIT: u32 = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QualifierQuery {
    /// `$LATEST` (default), a version number or an alias.
    pub qualifier: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// The `next_marker` of the previous page.
    pub marker: Option<String>,
    /// Page size, 1 to 10000; default 50.
    pub max_items: Option<i64>,
}

impl PageQuery {
    pub fn limit(&self) -> ApiResult<u32> {
        match self.max_items {
            None => Ok(DEFAULT_MAX_ITEMS),
            Some(n) if (1..=MAX_ITEMS_LIMIT as i64).contains(&n) => Ok(n as u32),
            Some(n) => Err(ApiError::InvalidParameter(format!(
                "max_items {n} is out of range; use 1 to {MAX_ITEMS_LIMIT}"
            ))),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionList {
    pub functions: Vec<FunctionConfiguration>,
    /// Pass as `marker` to get the next page; null on the last page.
    pub next_marker: Option<String>,
}

/// Loads a function of the caller's account; another account's function is
/// reported as not found, never as forbidden.
pub async fn find_function(state: &AppState, account: &Account, name: &str) -> ApiResult<FunctionRecord> {
    validate_function_name(name)?;
    state
        .store
        .get_function(account.account_id, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("function '{name}' was not found")))
}

/// Loads an alias of a function, or reports it as not found.
pub async fn find_alias(state: &AppState, function: &FunctionRecord, alias: &str) -> ApiResult<AliasRecord> {
    validate_alias_name(alias)?;
    state
        .store
        .get_alias(function.function_id, alias)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("alias '{alias}' of function '{}' was not found", function.name)))
}

/// Loads a published version of a function, or reports it as not found.
pub async fn find_version(state: &AppState, function: &FunctionRecord, number: u32) -> ApiResult<VersionRecord> {
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

pub fn latest_configuration(state: &AppState, account: &Account, function: &FunctionRecord) -> FunctionConfiguration {
    FunctionConfiguration::latest(function, &state.region, &account.account_number)
}

/// Returns the configuration that a qualifier names: $LATEST, a version, or the
/// main version of an alias.
pub async fn configuration_for(
    state: &AppState,
    account: &Account,
    function: &FunctionRecord,
    qualifier: &Qualifier,
) -> ApiResult<FunctionConfiguration> {
    let number = match qualifier {
        Qualifier::Latest => return Ok(latest_configuration(state, account, function)),
        Qualifier::Version(number) => *number,
        Qualifier::Alias(alias) => {
            let record = find_alias(state, function, alias).await?;
            match Qualifier::parse(&record.function_version)? {
                Qualifier::Version(number) => number,
                _ => return Ok(latest_configuration(state, account, function)),
            }
        }
    };
    let version = find_version(state, function, number).await?;
    Ok(FunctionConfiguration::version(
        function,
        &version,
        &state.region,
        &account.account_number,
    ))
}

/// Writes the function if its stored state is still `from`; otherwise returns a
/// conflict that names the state another update left it in.
async fn write_function(state: &AppState, function: &FunctionRecord, from: FunctionState) -> ApiResult<()> {
    match state.store.update_function(function, from).await {
        Ok(()) => Ok(()),
        Err(StoreError::StateConflict { function, actual, .. }) => Err(ApiError::Conflict(format!(
            "function '{function}' is {actual:?} because another update is in progress; retry when it is Active"
        ))),
        Err(error) => Err(error.into()),
    }
}

/// Stores the package in the origin store and moves the function from `from` to
/// Active, or to Failed with the storage error as `state_reason`.
async fn store_package_and_activate(
    state: &AppState,
    function: &mut FunctionRecord,
    package: &nimbus_code::ValidatedPackage,
    from: FunctionState,
) -> ApiResult<()> {
    match state.origin.put_package(package).await {
        Ok(location) => {
            function.code = CodeInfo {
                sha256: package.sha256.clone(),
                size: package.size,
                location,
            };
            function.state = from
                .transition(FunctionState::Active)
                .map_err(|e| ApiError::Service(e.to_string()))?;
            function.state_reason = None;
            function.last_modified = OffsetDateTime::now_utc();
            write_function(state, function, from).await
        }
        Err(error) => {
            tracing::error!(function = %function.name, %error, "storing a code package failed");
            function.state = from
                .transition(FunctionState::Failed)
                .map_err(|e| ApiError::Service(e.to_string()))?;
            function.state_reason = Some(format!("storing the code package failed: {error}"));
            write_function(state, function, from).await?;
            Err(ApiError::Service(format!(
                "storing the code package of function '{}' failed; the function is Failed, retry with PUT /functions/{}/code",
                function.name, function.name
            )))
        }
    }
}

async fn publish_and_describe(
    state: &AppState,
    account: &Account,
    function: &FunctionRecord,
) -> ApiResult<FunctionConfiguration> {
    let (version, _) = state.store.publish_version(function.function_id, None).await?;
    Ok(FunctionConfiguration::version(
        function,
        &version,
        &state.region,
        &account.account_number,
    ))
}

/// Create a function from a code package.
#[utoipa::path(
    put, path = "/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name: 1 to 64 letters, digits, hyphens and underscores")),
    request_body = CreateFunctionRequest,
    responses(
        (status = 201, description = "Function created", body = FunctionConfiguration),
        (status = 400, description = "Invalid configuration or code package", body = ErrorBody),
        (status = 409, description = "A function with this name exists", body = ErrorBody),
        (status = 413, description = "Code package too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    )
)]
pub async fn create_function(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    JsonBody(request): JsonBody<CreateFunctionRequest>,
) -> ApiResult<impl IntoResponse> {
    validate_function_name(&name)?;
    let settings = FunctionSettings::from_create(&request)?;
    let source: CodeSource = request.code.source("code")?;
    let package = load_package(&state, &account, source).await?;
    check_handler(&settings, &package)?;

    // The row is inserted before the package is stored, so a name that is taken
    // fails fast and nothing is written for it.
    let now = OffsetDateTime::now_utc();
    let mut function = FunctionRecord {
        function_id: Uuid::new_v4(),
        account_id: account.account_id,
        name: name.clone(),
        state: FunctionState::Pending,
        state_reason: None,
        settings,
        code: CodeInfo {
            sha256: package.sha256.clone(),
            size: package.size,
            location: String::new(),
        },
        reserved_concurrency: None,
        created_at: now,
        last_modified: now,
    };
    state.store.insert_function(&function).await?;
    store_package_and_activate(&state, &mut function, &package, FunctionState::Pending).await?;
    tracing::info!(function = %name, account = %account.name, code_sha256 = %package.sha256, "function created");

    let configuration = if request.publish {
        publish_and_describe(&state, &account, &function).await?
    } else {
        latest_configuration(&state, &account, &function)
    };
    Ok((StatusCode::CREATED, Json(configuration)))
}

/// Get a function's configuration.
#[utoipa::path(
    get, path = "/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name"), QualifierQuery),
    responses(
        (status = 200, description = "The configuration of $LATEST, a version or an alias", body = FunctionConfiguration),
        (status = 404, description = "No such function, version or alias", body = ErrorBody),
    )
)]
pub async fn get_function(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<QualifierQuery>,
) -> ApiResult<Json<FunctionConfiguration>> {
    let function = find_function(&state, &account, &name).await?;
    let qualifier = match &query.qualifier {
        Some(value) => Qualifier::parse(value)?,
        None => Qualifier::Latest,
    };
    Ok(Json(configuration_for(&state, &account, &function, &qualifier).await?))
}

/// List the account's functions in name order.
#[utoipa::path(
    get, path = "/functions", tag = "functions",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of functions", body = FunctionList),
        (status = 400, description = "Invalid max_items or marker", body = ErrorBody),
    )
)]
pub async fn list_functions(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<FunctionList>> {
    let limit = query.limit()?;
    if let Some(marker) = &query.marker {
        validate_function_name(marker).map_err(|_| {
            ApiError::InvalidParameter(format!(
                "marker '{marker}' is invalid; pass the next_marker of the previous page"
            ))
        })?;
    }
    let mut records = state
        .store
        .list_functions(account.account_id, query.marker.as_deref(), limit + 1)
        .await?;
    let next_marker = if records.len() > limit as usize {
        records.truncate(limit as usize);
        records.last().map(|f| f.name.clone())
    } else {
        None
    };
    let functions = records
        .iter()
        .map(|f| latest_configuration(&state, &account, f))
        .collect();
    Ok(Json(FunctionList { functions, next_marker }))
}

/// Delete a function, or one version of it with `qualifier`.
#[utoipa::path(
    delete, path = "/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name"),
        ("qualifier" = Option<String>, Query, description = "A version number to delete only that version")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The qualifier is not a version number", body = ErrorBody),
        (status = 404, description = "No such function or version", body = ErrorBody),
        (status = 409, description = "An alias routes to the version", body = ErrorBody),
    )
)]
pub async fn delete_function(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<QualifierQuery>,
) -> ApiResult<StatusCode> {
    let function = find_function(&state, &account, &name).await?;
    match query.qualifier.as_deref().map(Qualifier::parse).transpose()? {
        None => {
            // TODO: packages stay in the origin store after their function is deleted,
            // because another function or version may share them.
            state.store.delete_function(function.function_id).await?;
            if function.reserved_concurrency.is_some() {
                state.reservations.invalidate(account.account_id);
            }
            tracing::info!(function = %name, account = %account.name, "function deleted");
        }
        Some(Qualifier::Version(number)) => {
            state.store.delete_version(function.function_id, &name, number).await?;
            tracing::info!(function = %name, version = number, "version deleted");
        }
        Some(Qualifier::Latest) => {
            return Err(ApiError::InvalidParameter(
                "qualifier $LATEST cannot be deleted on its own; omit the qualifier to delete the whole function"
                    .to_string(),
            ))
        }
        Some(Qualifier::Alias(alias)) => {
            return Err(ApiError::InvalidParameter(format!(
                "qualifier '{alias}' is an alias; delete aliases with DELETE /functions/{name}/aliases/{alias}"
            )))
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the code of $LATEST, optionally publishing a version.
#[utoipa::path(
    put, path = "/functions/{name}/code", tag = "functions",
    params(("name" = String, Path, description = "Function name")),
    request_body = UpdateCodeRequest,
    responses(
        (status = 200, description = "The configuration of $LATEST, or of the new version with publish", body = FunctionConfiguration),
        (status = 400, description = "Invalid code package", body = ErrorBody),
        (status = 404, description = "No such function", body = ErrorBody),
        (status = 409, description = "Another update is in progress", body = ErrorBody),
        (status = 413, description = "Code package too large", body = ErrorBody),
    )
)]
pub async fn update_code(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    JsonBody(request): JsonBody<UpdateCodeRequest>,
) -> ApiResult<Json<FunctionConfiguration>> {
    let mut function = find_function(&state, &account, &name).await?;
    let source = request.location().source("code")?;
    let package = load_package(&state, &account, source).await?;
    check_handler(&function.settings, &package)?;

    let previous = function.state;
    function.state = previous.transition(FunctionState::Updating).map_err(|_| {
        ApiError::Conflict(format!(
            "function '{name}' is {previous:?}, so its code cannot change now; retry when it is Active"
        ))
    })?;
    write_function(&state, &function, previous).await?;
    store_package_and_activate(&state, &mut function, &package, FunctionState::Updating).await?;
    tracing::info!(function = %name, code_sha256 = %package.sha256, "function code updated");

    let configuration = if request.publish {
        publish_and_describe(&state, &account, &function).await?
    } else {
        latest_configuration(&state, &account, &function)
    };
    Ok(Json(configuration))
}

/// Change the configuration of $LATEST; absent fields keep their values.
#[utoipa::path(
    put, path = "/functions/{name}/configuration", tag = "functions",
    params(("name" = String, Path, description = "Function name")),
    request_body = UpdateConfigRequest,
    responses(
        (status = 200, description = "The new configuration of $LATEST", body = FunctionConfiguration),
        (status = 400, description = "Invalid configuration", body = ErrorBody),
        (status = 404, description = "No such function", body = ErrorBody),
        (status = 409, description = "Another update is in progress", body = ErrorBody),
    )
)]
pub async fn update_configuration(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    JsonBody(request): JsonBody<UpdateConfigRequest>,
) -> ApiResult<Json<FunctionConfiguration>> {
    let mut function = find_function(&state, &account, &name).await?;
    if !function.state.can_transition(FunctionState::Updating) {
        return Err(ApiError::Conflict(format!(
            "function '{name}' is {:?}, so its configuration cannot change now; retry when it is Active",
            function.state
        )));
    }
    let mut settings = function.settings.clone();
    settings.apply(&request)?;

    let entry_point_changed =
        settings.runtime != function.settings.runtime || settings.handler != function.settings.handler;
    if entry_point_changed {
        let bytes = state.origin.get_package(&function.code.sha256).await?;
        let limits = state.package_limits;
        let package = tokio::task::spawn_blocking(move || nimbus_code::validate_zip(bytes, &limits))
            .await
            .map_err(|e| ApiError::Service(format!("package validation failed: {e}")))??;
        check_handler(&settings, &package)?;
    }

    let current = function.state;
    function.settings = settings;
    function.last_modified = OffsetDateTime::now_utc();
    write_function(&state, &function, current).await?;
    tracing::info!(function = %name, "function configuration updated");
    Ok(Json(latest_configuration(&state, &account, &function)))
}
