//! Raw code uploads into the origin store, so packages over the inline limit can be
//! referenced with `s3_bucket` and `s3_key` as on S3. Buckets are per account.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::{Extension, Json};
use nimbus_code::{validate_bucket_name, validate_object_key, ObjectVersion};
use nimbus_store::Account;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, RawBody};
use crate::AppState;

const ACCEPTED_TYPES: [&str; 3] = [
    "application/zip",
    "application/octet-stream",
    "application/x-zip-compressed",
];

/// Upload a zip as a new version of an object.
#[utoipa::path(
    put, path = "/code-objects/{bucket}/{key}", tag = "code",
    params(("bucket" = String, Path, description = "Bucket name, as on S3: 3 to 63 lowercase letters, digits, dots and hyphens"),
        ("key" = String, Path, description = "Object key; may contain '/'")),
    request_body(content = Vec<u8>, content_type = "application/zip", description = "The zip file, at most 250 MB"),
    responses(
        (status = 201, description = "Stored as a new version", body = ObjectVersionBody),
        (status = 400, description = "Invalid bucket or key, or empty body", body = ErrorBody),
        (status = 413, description = "Over 250 MB", body = ErrorBody),
        (status = 415, description = "Content-Type is not a zip type", body = ErrorBody),
    )
)]
pub async fn put_code_object(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ApiPath((bucket, key)): ApiPath<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<ObjectVersion>)> {
    validate_bucket_name(&bucket)?;
    validate_object_key(&key)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !ACCEPTED_TYPES.contains(&media_type.as_str()) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type '{content_type}' is not supported for code objects; send the zip as application/zip"
        )));
    }
    if body.is_empty() {
        return Err(ApiError::InvalidParameter(format!(
            "code object '{bucket}/{key}' is empty; send the zip file as the request body"
        )));
    }
    let version = state
        .origin
        .put_object(&account.account_id.to_string(), &bucket, &key, body)
        .await?;
    tracing::info!(bucket = %bucket, key = %key, version_id = %version.version_id, size = version.size, "code object stored");
    Ok((StatusCode::CREATED, Json(version)))
}

/// Schema of [`ObjectVersion`] for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ObjectVersionBody {
    pub bucket: String,
    pub key: String,
    /// Pass as `s3_object_version` to pin this upload.
    pub version_id: String,
    pub size: u64,
    pub sha256: String,
}
