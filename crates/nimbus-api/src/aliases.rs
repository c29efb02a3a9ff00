//! Aliases: named pointers to a version, optionally splitting traffic with a second
//! version by weight.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use nimbus_model::alias::ValidAlias;
use nimbus_model::function::function_arn;
use nimbus_model::{validate_alias_name, Alias, AliasRequest, FunctionRecord, Qualifier, RoutingConfig};
use nimbus_store::{Account, AliasRecord};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, JsonBody};
use crate::functions::{find_alias, find_function};
use crate::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct AliasList {
    pub aliases: Vec<Alias>,
}

fn describe(state: &AppState, account: &Account, function: &FunctionRecord, record: &AliasRecord) -> Alias {
    Alias {
        name: record.name.clone(),
        alias_arn: function_arn(
            &state.region,
            &account.account_number,
            &function.name,
            Some(&record.name),
        ),
        function_version: record.function_version.clone(),
        description: record.description.clone(),
        routing_config: record.additional_version.map(|(version, weight)| RoutingConfig {
            additional_version_weights: [(version.to_string(), weight)].into_iter().collect(),
        }),
    }
}

async fn check_version_exists(state: &AppState, function: &FunctionRecord, number: u32, field: &str) -> ApiResult<()> {
    if state.store.get_version(function.function_id, number).await?.is_some() {
        return Ok(());
    }
    Err(ApiError::InvalidParameter(format!(
        "{field} {number} is not a published version of function '{}'; publish it first with POST /functions/{}/versions",
        function.name, function.name
    )))
}

/// Create or replace an alias.
#[utoipa::path(
    put, path = "/functions/{name}/aliases/{alias}", tag = "aliases",
    params(("name" = String, Path, description = "Function name"),
        ("alias" = String, Path, description = "Alias name: letters, digits, hyphens and underscores, not a number")),
    request_body = AliasRequest,
    responses(
        (status = 201, description = "Alias created", body = Alias),
        (status = 200, description = "Alias replaced", body = Alias),
        (status = 400, description = "Invalid alias name, version or weights", body = ErrorBody),
        (status = 404, description = "No such function", body = ErrorBody),
    )
)]
pub async fn put_alias(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath((name, alias)): ApiPath<(String, String)>,
    JsonBody(request): JsonBody<AliasRequest>,
) -> ApiResult<(StatusCode, Json<Alias>)> {
    let function = find_function(&state, &account, &name).await?;
    validate_alias_name(&alias)?;
    let ValidAlias {
        function_version,
        description,
        additional_version,
    } = request.validate()?;
    if let Qualifier::Version(number) = function_version {
        check_version_exists(&state, &function, number, "function_version").await?;
    }
    if let Some((number, _)) = additional_version {
        check_version_exists(&state, &function, number, "additional version").await?;
    }

    let record = AliasRecord {
        name: alias.clone(),
        function_version: function_version.to_string(),
        description,
        additional_version,
    };
    let created = state.store.put_alias(function.function_id, &record).await?;
    tracing::info!(function = %name, alias = %alias, version = %record.function_version, created, "alias written");
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(describe(&state, &account, &function, &record))))
}

/// Get an alias.
#[utoipa::path(
    get, path = "/functions/{name}/aliases/{alias}", tag = "aliases",
    params(("name" = String, Path, description = "Function name"), ("alias" = String, Path, description = "Alias name")),
    responses(
        (status = 200, description = "The alias", body = Alias),
        (status = 404, description = "No such function or alias", body = ErrorBody),
    )
)]
pub async fn get_alias(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath((name, alias)): ApiPath<(String, String)>,
) -> ApiResult<Json<Alias>> {
    let function = find_function(&state, &account, &name).await?;
    let record = find_alias(&state, &function, &alias).await?;
    Ok(Json(describe(&state, &account, &function, &record)))
}

/// List a function's aliases.
#[utoipa::path(
    get, path = "/functions/{name}/aliases", tag = "aliases",
    params(("name" = String, Path, description = "Function name")),
    responses(
        (status = 200, description = "All aliases in name order", body = AliasList),
        (status = 404, description = "No such function", body = ErrorBody),
    )
)]
pub async fn list_aliases(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<AliasList>> {
    let function = find_function(&state, &account, &name).await?;
    let records = state.store.list_aliases(function.function_id).await?;
    let aliases = records
        .iter()
        .map(|r| describe(&state, &account, &function, r))
        .collect();
    Ok(Json(AliasList { aliases }))
}

/// Delete an alias.
#[utoipa::path(
    delete, path = "/functions/{name}/aliases/{alias}", tag = "aliases",
    params(("name" = String, Path, description = "Function name"), ("alias" = String, Path, description = "Alias name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such function or alias", body = ErrorBody),
    )
)]
pub async fn delete_alias(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath((name, alias)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let function = find_function(&state, &account, &name).await?;
    validate_alias_name(&alias)?;
    if !state.store.delete_alias(function.function_id, &alias).await? {
        return Err(ApiError::NotFound(format!(
            "alias '{alias}' of function '{name}' was not found"
        )));
    }
    tracing::info!(function = %name, alias = %alias, "alias deleted");
    Ok(StatusCode::NO_CONTENT)
}
