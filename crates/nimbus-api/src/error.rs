//! API errors and the one place that maps every library error to an HTTP status and
//! an AWS exception name.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nimbus_code::origin::OriginError;
use nimbus_code::package::PackageError;
use nimbus_model::ValidationError;
use nimbus_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// AWS exception name, for example `ResourceNotFoundException`.
    #[serde(rename = "type")]
    pub error_type: String,
    pub message: String,
    /// Reason a request was throttled, present only on 429 responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidRequestContent(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    TooManyRequests { message: String, reason: &'static str },
    /// The function's runtime is not available on this server.
    #[error("{0}")]
    InvalidRuntime(String),
    /// A fault of the server or its storage; the message is safe to show a caller.
    #[error("{0}")]
    Service(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidParameter(_) => (StatusCode::BAD_REQUEST, "InvalidParameterValueException"),
            ApiError::InvalidRequestContent(_) => (StatusCode::BAD_REQUEST, "InvalidRequestContentException"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UnrecognizedClientException"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowedException"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "ResourceConflictException"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLargeException"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaTypeException"),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException"),
            ApiError::InvalidRuntime(_) => (StatusCode::BAD_GATEWAY, "InvalidRuntimeException"),
            ApiError::Service(_) => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceException"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_type) = self.status_and_type();
        let reason = match &self {
            ApiError::TooManyRequests { reason, .. } => Some(reason.to_string()),
            _ => None,
        };
        let body = ErrorBody {
            error_type: error_type.to_string(),
            message: self.to_string(),
            reason,
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        ApiError::InvalidParameter(error.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AlreadyExists { .. } | StoreError::StateConflict { .. } | StoreError::VersionInUse { .. } => {
                ApiError::Conflict(error.to_string())
            }
            StoreError::NotFound { .. } => ApiError::NotFound(error.to_string()),
            StoreError::ReservedConcurrencyExceeded { .. } => ApiError::InvalidParameter(error.to_string()),
            StoreError::Corrupt(_) | StoreError::Database(_) | StoreError::Migration(_) => {
                tracing::error!(%error, "control store failed");
                ApiError::Service("the control store failed; see the server log".to_string())
            }
        }
    }
}

impl From<PackageError> for ApiError {
    fn from(error: PackageError) -> Self {
        if error.is_too_large() {
            ApiError::TooLarge(error.to_string())
        } else {
            ApiError::InvalidParameter(error.to_string())
        }
    }
}

impl From<OriginError> for ApiError {
    fn from(error: OriginError) -> Self {
        if error.is_not_found() || error.is_invalid_input() {
            ApiError::InvalidParameter(error.to_string())
        } else {
            tracing::error!(%error, "origin store failed");
            ApiError::Service("the code store failed; see the server log".to_string())
        }
    }
}
