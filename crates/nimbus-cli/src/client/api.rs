//! HTTP access to the Nimbus API: endpoint and API key resolution, request URLs,
//! and the conversion of error responses into [`ApiError`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::ClientArgs;

/// Name of the file in the data directory where `nimbus server` stores its API key.
const API_KEY_FILE: &str = "api-key";
const DEFAULT_DATA_DIR: &str = "nimbus-data";
/// Maximum number of characters of a non-JSON response body quoted in a message.
const MAX_QUOTED_BODY_CHARS: usize = 300;

/// A client for one Nimbus endpoint, authenticated with one API key.
pub struct ApiClient {
    http: reqwest::Client,
    endpoint: Url,
    authorization: HeaderValue,
}

/// A successful response. `body` is `None` when the server sent no content, as for 204.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Option<Value>,
}

impl ApiResponse {
    /// Returns the JSON body, or an error if the server sent none.
    pub fn json_body(&self) -> anyhow::Result<&Value> {
        self.body.as_ref().with_context(|| {
            format!(
                "server returned HTTP {} without a body; expected a JSON object",
                self.status
            )
        })
    }
}

/// An error response (status 4xx or 5xx) from the API.
///
/// Nimbus sends `{"type": "...Exception", "message": "..."}`. A body of another shape,
/// for example from a proxy, is kept as text and quoted in the message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// The AWS-style exception name from the `type` field, if the body had one.
    pub error_type: Option<String>,
    pub message: String,
    /// The response body as received.
    pub body: String,
}

impl ApiError {
    fn from_response(status: StatusCode, body: &[u8]) -> ApiError {
        let text = String::from_utf8_lossy(body).into_owned();
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|value| value.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let message = field("message").unwrap_or_else(|| {
            let quoted = text.trim();
            if quoted.is_empty() {
                format!("server returned HTTP {status} without an error message")
            } else {
                format!(
                    "server returned HTTP {status}: {}",
                    truncate(quoted, MAX_QUOTED_BODY_CHARS)
                )
            }
        });
        ApiError {
            status,
            error_type: field("type"),
            message,
            body: text,
        }
    }

    /// Returns the body to print with `--json`: pretty-printed if it is JSON, else as received.
    pub fn body_for_output(&self) -> String {
        match serde_json::from_str::<Value>(&self.body) {
            Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| self.body.clone()),
            Err(_) => self.body.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.status.as_u16();
        match &self.error_type {
            Some(error_type) => write!(f, "{} ({error_type}, HTTP {code})", self.message),
            None => write!(f, "{} (HTTP {code})", self.message),
        }
    }
}

impl std::error::Error for ApiError {}

/// A request body.
pub enum RequestBody {
    Empty,
    Json(Value),
    /// Raw bytes of a zip file, sent as `application/zip`.
    Zip(Vec<u8>),
}

impl ApiClient {
    /// Builds a client from the global options, resolving the API key as
    /// [`ClientArgs::api_key`] describes.
    pub fn new(args: &ClientArgs) -> anyhow::Result<ApiClient> {
        let endpoint = parse_endpoint(&args.endpoint)?;
        let api_key = resolve_api_key(args.api_key.as_deref())?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {api_key}")).map_err(|_| {
            anyhow::anyhow!(
                "the API key contains characters that an HTTP header cannot carry; check --api-key or NIMBUS_API_KEY"
            )
        })?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(concat!("nimbus-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("failed to set up the HTTP client")?;
        Ok(ApiClient {
            http,
            endpoint,
            authorization,
        })
    }

    pub async fn get(&self, path: &[&str], query: &[(&str, String)]) -> anyhow::Result<ApiResponse> {
        self.send(Method::GET, path, query, RequestBody::Empty).await
    }

    pub async fn put(&self, path: &[&str], body: RequestBody) -> anyhow::Result<ApiResponse> {
        self.send(Method::PUT, path, &[], body).await
    }

    pub async fn post(&self, path: &[&str], body: RequestBody) -> anyhow::Result<ApiResponse> {
        self.send(Method::POST, path, &[], body).await
    }

    pub async fn delete(&self, path: &[&str], query: &[(&str, String)]) -> anyhow::Result<ApiResponse> {
        self.send(Method::DELETE, path, query, RequestBody::Empty).await
    }

    /// Sends a request to the endpoint's URL extended by the `path` segments.
    ///
    /// Each segment is percent-encoded on its own, so a '/' inside a segment does not
    /// start a new one. A 4xx or 5xx response becomes an [`ApiError`].
    pub async fn send(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: RequestBody,
    ) -> anyhow::Result<ApiResponse> {
        let url = build_url(&self.endpoint, path, query)?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone());
        request = match body {
            RequestBody::Empty => request,
            RequestBody::Json(value) => request.json(&value),
            RequestBody::Zip(bytes) => request.header(CONTENT_TYPE, "application/zip").body(bytes),
        };

        let response = request
            .send()
            .await
            .map_err(|error| self.describe_send_error(&method, &url, error))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("failed to read the response to {method} {url}"))?;

        if status.is_client_error() || status.is_server_error() {
            return Err(ApiError::from_response(status, &bytes).into());
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ApiResponse { status, body: None });
        }
        let body = serde_json::from_slice(&bytes).with_context(|| {
            let text = String::from_utf8_lossy(&bytes);
            format!(
                "server returned HTTP {status} for {method} {url} with a body that is not JSON: {}",
                truncate(text.trim(), MAX_QUOTED_BODY_CHARS)
            )
        })?;
        Ok(ApiResponse {
            status,
            body: Some(body),
        })
    }

    /// Sends a request with raw bytes and extra headers and returns the raw response,
    /// for endpoints whose body is not a JSON document of the API, such as invoke.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, reqwest::header::HeaderMap, bytes::Bytes)> {
        let url = build_url(&self.endpoint, path, query)?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.describe_send_error(&method, &url, error))?;
        let status = response.status();
        let response_headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("failed to read the response to {method} {url}"))?;
        if status.is_client_error() || status.is_server_error() {
            return Err(ApiError::from_response(status, &bytes).into());
        }
        Ok((status, response_headers, bytes))
    }

    fn describe_send_error(&self, method: &Method, url: &Url, error: reqwest::Error) -> anyhow::Error {
        let cause = root_cause(&error);
        if error.is_connect() {
            anyhow::anyhow!(
                "failed to connect to the Nimbus server at {} ({cause}); start it with `nimbus server`, \
                 or pass --endpoint or set NIMBUS_ENDPOINT to the URL of a running server",
                self.endpoint.as_str().trim_end_matches('/')
            )
        } else if error.is_timeout() {
            anyhow::anyhow!("{method} {url} timed out ({cause})")
        } else {
            anyhow::anyhow!("{method} {url} failed: {cause}")
        }
    }
}

/// Returns the message of the innermost error, which names the actual failure
/// (for example "Connection refused (os error 111)") where reqwest's own message does not.
fn root_cause(error: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

fn parse_endpoint(endpoint: &str) -> anyhow::Result<Url> {
    let url = Url::parse(endpoint).with_context(|| {
        format!("endpoint '{endpoint}' is not a valid URL; use the form http://HOST:PORT, for example http://127.0.0.1:9000")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        bail!("endpoint '{endpoint}' is not an http or https URL; use the form http://HOST:PORT, for example http://127.0.0.1:9000");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("endpoint '{endpoint}' has a query or fragment; give only the scheme, host, port and an optional path prefix");
    }
    Ok(url)
}

/// Appends the `path` segments and the `query` pairs to `endpoint`, keeping any path
/// prefix that the endpoint has.
pub fn build_url(endpoint: &Url, path: &[&str], query: &[(&str, String)]) -> anyhow::Result<Url> {
    let mut url = endpoint.clone();
    {
        let mut segments = url.path_segments_mut().map_err(|_| {
            anyhow::anyhow!("endpoint '{endpoint}' cannot be a base URL; use the form http://HOST:PORT")
        })?;
        segments.pop_if_empty();
        for segment in path {
            // The URL standard resolves "." and ".." segments, even percent-encoded ones,
            // so such a segment would silently address a different resource.
            if matches!(*segment, "." | "..") {
                bail!("'{segment}' cannot be sent as a URL path segment; rename the function, alias, bucket or key");
            }
            segments.push(segment);
        }
    }
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in query {
            pairs.append_pair(name, value);
        }
    }
    Ok(url)
}

/// Returns the API key from `--api-key`/`NIMBUS_API_KEY`, or else from the key file
/// that the server writes into its data directory.
fn resolve_api_key(argument: Option<&str>) -> anyhow::Result<String> {
    if let Some(key) = argument.map(str::trim).filter(|key| !key.is_empty()) {
        return Ok(key.to_string());
    }
    let data_dir = std::env::var_os("NIMBUS_DATA_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let path = data_dir.join(API_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => {
            bail!(
                "API key file {} is empty; pass --api-key or set NIMBUS_API_KEY",
                path.display()
            )
        }
        Ok(text) => Ok(text.trim().to_string()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "no API key given and no key file at {}; pass --api-key or set NIMBUS_API_KEY, \
             or set NIMBUS_DATA_DIR to the server's data directory",
            path.display()
        ),
        Err(error) => Err(error).with_context(|| format!("failed to read the API key file {}", path.display())),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(endpoint: &str, path: &[&str], query: &[(&str, String)]) -> String {
        build_url(&parse_endpoint(endpoint).unwrap(), path, query)
            .unwrap()
            .to_string()
    }

    #[test]
    fn url_encodes_each_segment() {
        let key_segments: Vec<&str> = "dir one/app 100%.zip".split('/').collect();
        let mut path = vec!["code-objects", "my?bucket"];
        path.extend(key_segments);
        assert_eq!(
            url("http://127.0.0.1:9000", &path, &[]),
            "http://127.0.0.1:9000/code-objects/my%3Fbucket/dir%20one/app%20100%25.zip"
        );
    }

    #[test]
    fn url_encodes_slash_inside_segment() {
        assert_eq!(
            url("http://h:1", &["functions", "a/b"], &[]),
            "http://h:1/functions/a%2Fb"
        );
    }

    #[test]
    fn url_keeps_endpoint_prefix() {
        assert_eq!(
            url("http://h:1/nimbus/", &["functions"], &[]),
            "http://h:1/nimbus/functions"
        );
        assert_eq!(
            url("http://h:1/nimbus", &["functions"], &[]),
            "http://h:1/nimbus/functions"
        );
    }

    #[test]
    fn url_encodes_query() {
        let query = [("qualifier", "$LATEST".to_string()), ("marker", "a b&c".to_string())];
        assert_eq!(
            url("http://h:1", &["functions", "f"], &query),
            "http://h:1/functions/f?qualifier=%24LATEST&marker=a+b%26c"
        );
    }

    #[test]
    fn url_rejects_dot_segments() {
        let endpoint = parse_endpoint("http://h:1").unwrap();
        for segment in [".", ".."] {
            let error = build_url(&endpoint, &["code-objects", "b", segment], &[]).unwrap_err();
            assert!(
                error.to_string().contains(&format!("'{segment}' cannot be sent")),
                "{error}"
            );
        }
    }

    #[test]
    fn endpoint_must_be_http() {
        for endpoint in ["127.0.0.1:9000", "ftp://h", "http://h/?x=1", "not a url"] {
            let error = parse_endpoint(endpoint).unwrap_err();
            assert!(error.to_string().contains(endpoint), "{error}");
        }
    }

    #[test]
    fn api_error_from_json_body() {
        let body = br#"{"type":"ResourceNotFoundException","message":"function 'x' not found"}"#;
        let error = ApiError::from_response(StatusCode::NOT_FOUND, body);
        assert_eq!(
            error.to_string(),
            "function 'x' not found (ResourceNotFoundException, HTTP 404)"
        );
    }

    #[test]
    fn api_error_from_text_body() {
        let error = ApiError::from_response(StatusCode::PAYLOAD_TOO_LARGE, b"length limit exceeded");
        assert_eq!(
            error.to_string(),
            "server returned HTTP 413 Payload Too Large: length limit exceeded (HTTP 413)"
        );
        assert_eq!(error.body_for_output(), "length limit exceeded");
    }

    #[test]
    fn api_error_from_empty_body() {
        let error = ApiError::from_response(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(
            error.to_string(),
            "server returned HTTP 502 Bad Gateway without an error message (HTTP 502)"
        );
    }

    #[test]
    fn api_key_from_argument() {
        assert_eq!(resolve_api_key(Some(" key-1 \n")).unwrap(), "key-1");
    }
}
