//! Versions: immutable snapshots of $LATEST's code and configuration.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use nimbus_model::{FunctionConfiguration, FunctionState};
use nimbus_store::{Account, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, OptionalJsonBody};
use crate::functions::{find_function, latest_configuration, PageQuery};
use crate::AppState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Description of the version; defaults to the function's description.
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    /// `$LATEST` first (on the first page), then versions in ascending order.
    pub versions: Vec<FunctionConfiguration>,
    pub next_marker: Option<String>,
}

/// Publish $LATEST as the next version number.
#[utoipa::path(
    post, path = "/functions/{name}/versions", tag = "versions",
    params(("name" = String, Path, description = "Function name")),
    request_body(content = PublishRequest, description = "Optional; an empty body is allowed"),
    responses(
        (status = 201, description = "A new version", body = FunctionConfiguration),
        (status = 200, description = "Nothing changed since the newest version, which is returned", body = FunctionConfiguration),
        (status = 404, description = "No such function", body = ErrorBody),
        (status = 409, description = "The function is not Active", body = ErrorBody),
    )
)]
pub async fn publish_version(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    OptionalJsonBody(request): OptionalJsonBody<PublishRequest>,
) -> ApiResult<(StatusCode, Json<FunctionConfiguration>)> {
    let function = find_function(&state, &account, &name).await?;
    if let Some(description) = &request.description {
        if description.chars().count() > nimbus_model::config::MAX_DESCRIPTION_LEN {
            return Err(ApiError::InvalidParameter(format!(
                "description is {} characters long; use at most {}",
                description.chars().count(),
                nimbus_model::config::MAX_DESCRIPTION_LEN
            )));
        }
    }
    let (version, created) = match state
        .store
        .publish_version(function.function_id, request.description.as_deref())
        .await
    {
        Ok(result) => result,
        Err(StoreError::StateConflict { actual, .. }) => {
            return Err(ApiError::Conflict(format!(
                "function '{name}' is {actual:?}; only an {:?} function can be published",
                FunctionState::Active
            )))
        }
        Err(error) => return Err(error.into()),
    };
    if created {
        tracing::info!(function = %name, version = version.number, "version published");
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let configuration = FunctionConfiguration::version(&function, &version, &state.region, &account.account_number);
    Ok((status, Json(configuration)))
}

/// List $LATEST and the published versions.
#[utoipa::path(
    get, path = "/functions/{name}/versions", tag = "versions",
    params(("name" = String, Path, description = "Function name"), PageQuery),
    responses(
        (status = 200, description = "One page of versions", body = VersionList),
        (status = 404, description = "No such function", body = ErrorBody),
    )
)]
pub async fn list_versions(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<VersionList>> {
    let function = find_function(&state, &account, &name).await?;
    let limit = query.limit()?;
    let after = match query.marker.as_deref() {
        None => None,
        Some(marker) => Some(marker.parse::<u32>().map_err(|_| {
            ApiError::InvalidParameter(format!(
                "marker '{marker}' is invalid; pass the next_marker of the previous page"
            ))
        })?),
    };

    let mut versions = Vec::new();
    if after.is_none() {
        versions.push(latest_configuration(&state, &account, &function));
    }
    let remaining = limit - versions.len() as u32;
    // Fetching one more than fits shows whether another page follows.
    let mut records = state
        .store
        .list_versions(function.function_id, after, remaining + 1)
        .await?;
    let more = records.len() > remaining as usize;
    records.truncate(remaining as usize);
    let next_marker = match (more, records.last()) {
        (false, _) => None,
        (true, Some(last)) => Some(last.number.to_string()),
        // The page held only $LATEST, so the versions start after number 0.
        (true, None) => Some("0".to_string()),
    };
    versions.extend(
        records
            .iter()
            .map(|v| FunctionConfiguration::version(&function, v, &state.region, &account.account_number)),
    );
    Ok(Json(VersionList { versions, next_marker }))
}
