//! Turning a request's code location into a validated package, and checking that
//! the package provides the handler.

use nimbus_code::{decode_base64_zip, validate_bucket_name, validate_object_key, validate_zip, ValidatedPackage};
use nimbus_model::config::CodeSource;
use nimbus_model::FunctionSettings;
use nimbus_store::Account;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Decodes or fetches the package and validates it. Zip work runs on the blocking
/// pool because a 50 MB package takes long enough to stall other requests.
pub async fn load_package(state: &AppState, account: &Account, source: CodeSource) -> ApiResult<ValidatedPackage> {
    let limits = state.package_limits;
    let bytes = match source {
        CodeSource::Inline(encoded) => tokio::task::spawn_blocking(move || decode_base64_zip(&encoded, &limits))
            .await
            .map_err(|e| ApiError::Service(format!("package decoding failed: {e}")))??,
        CodeSource::Object {
            bucket,
            key,
            version_id,
        } => {
            validate_bucket_name(&bucket)?;
            validate_object_key(&key)?;
            let namespace = account.account_id.to_string();
            let (_, bytes) = state
                .origin
                .get_object(&namespace, &bucket, &key, version_id.as_deref())
                .await?;
            bytes
        }
    };
    let package = tokio::task::spawn_blocking(move || validate_zip(bytes, &limits))
        .await
        .map_err(|e| ApiError::Service(format!("package validation failed: {e}")))??;
    Ok(package)
}

/// Checks that the package has a file that can provide the handler, so a function
/// never becomes Active with an entry point that cannot load.
pub fn check_handler(settings: &FunctionSettings, package: &ValidatedPackage) -> ApiResult<()> {
    let candidates = settings.runtime().handler_files(&settings.handler);
    if candidates.is_empty() || candidates.iter().any(|file| package.contains_file(file)) {
        return Ok(());
    }
    let mut listed: Vec<&str> = package.files.iter().map(String::as_str).take(10).collect();
    if package.files.len() > listed.len() {
        listed.push("…");
    }
    Err(ApiError::InvalidParameter(format!(
        "handler '{}' of runtime {} needs {} in the code package, but the package has no such file (it contains: {}); fix the handler or the package",
        settings.handler,
        settings.runtime,
        candidates.join(" or "),
        listed.join(", ")
    )))
}
