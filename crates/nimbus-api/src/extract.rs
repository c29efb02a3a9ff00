//! Request extractors whose rejections are API errors with JSON bodies, so a bad
//! body, path or query gets the same error shape as every other failure.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body. The `Content-Type` must be `application/json`; an unknown
/// or mistyped field is rejected with its path, for example `memory_size`.
pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body yields `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(
            "request body is over the size limit of this endpoint; inline zip files can be at most 50 MB, so upload larger packages with PUT /code-objects/{bucket}/{key}"
                .to_string(),
        )
    } else {
        ApiError::InvalidRequestContent(format!("could not read the request body: {}", rejection.body_text()))
    }
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    match content_type {
        Some(value)
            if value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json") =>
        {
            Ok(())
        }
        Some(value) => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type '{value}' is not supported; send the body as application/json"
        ))),
        None => Err(ApiError::UnsupportedMediaType(
            "Content-Type is missing; send the body as application/json".to_string(),
        )),
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // A syntax error gets no field path, because serde_path_to_error reports "?"
        // for a position that is not yet inside a field.
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::InvalidRequestContent(format!(
                "request body is not valid JSON: {inner}; send a JSON object"
            ));
        }
        if path.is_empty() || path == "." {
            ApiError::InvalidRequestContent(format!("request body is not valid: {inner}"))
        } else {
            ApiError::InvalidRequestContent(format!("request body field '{path}' is not valid: {inner}"))
        }
    })
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_json_content_type(request.headers())?;
        let bytes = Bytes::from_request(request, state).await.map_err(body_rejection)?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let bytes = Bytes::from_request(request, state).await.map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        check_json_content_type(&headers)?;
        Ok(OptionalJsonBody(parse_json(&bytes)?))
    }
}

/// Raw body bytes with the API's error for a body over the route's limit.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(
                    "code object is over the 250 MB limit for code packages; make the package smaller".to_string(),
                )
            } else {
                body_rejection(rejection)
            }
        })?;
        Ok(RawBody(bytes))
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection: PathRejection| {
                ApiError::InvalidParameter(format!("invalid path: {}", rejection.body_text()))
            })
    }
}

/// Query-string parameters; unknown parameters are rejected by the target type.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError::InvalidParameter(format!("invalid query string: {detail}"))
            })
    }
}
