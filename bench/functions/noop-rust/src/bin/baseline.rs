//! The no-op handler behind a minimal HTTP/1.1 server: the cost of Rust and an HTTP
//! stack alone, with no Lambda runtime. It responds to POST on any path with the
//! handler's JSON, reading the request body as the event (an empty body is `null`).
//!
//! Usage: `baseline PORT`, or `PORT=... baseline`. It binds 127.0.0.1 and prints
//! `listening on http://127.0.0.1:PORT` once it accepts connections.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

fn port_from_args_or_env() -> Result<u16, String> {
    let value = match std::env::args().nth(1).or_else(|| std::env::var("PORT").ok()) {
        Some(value) => value,
        None => return Err("missing port: pass it as the first argument or in the PORT environment variable".into()),
    };
    value
        .parse()
        .map_err(|_| format!("invalid port {value:?}: expected an integer from 0 to 65535"))
}

/// Logs why a request was rejected and builds the plain-text error response for it.
fn reject(status: StatusCode, method: &Method, uri: &Uri, reason: String) -> Response<Full<Bytes>> {
    eprintln!("baseline: rejected {method} {uri}: {reason}");
    let mut response = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *response.status_mut() = status;
    response
}

async fn serve(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        let reason = "only POST is supported".to_string();
        return Ok(reject(
            StatusCode::METHOD_NOT_ALLOWED,
            &parts.method,
            &parts.uri,
            reason,
        ));
    }

    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let reason = format!("failed to read the request body: {error}");
            return Ok(reject(StatusCode::BAD_REQUEST, &parts.method, &parts.uri, reason));
        }
    };
    let event = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(event) => event,
            Err(error) => {
                let reason = format!("invalid JSON in the request body: {error}");
                return Ok(reject(StatusCode::BAD_REQUEST, &parts.method, &parts.uri, reason));
            }
        }
    };

    let payload = serde_json::to_vec(&noop_rust::handle(event)).expect("a serde_json::Value always serializes");
    let mut response = Response::new(Full::new(Bytes::from(payload)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let port = match port_from_args_or_env() {
        Ok(port) => port,
        Err(message) => {
            eprintln!("baseline: {message}");
            return ExitCode::from(2);
        }
    };

    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("baseline: failed to bind {address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on http://{}", listener.local_addr().unwrap_or(address));

    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Errors such as EMFILE pass once connections close, so the server waits
                // briefly and keeps the listener.
                eprintln!("baseline: failed to accept a connection: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Nagle's algorithm would delay small responses on a keep-alive connection.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(serve))
                .await
            {
                eprintln!("baseline: connection from {peer} failed: {error}");
            }
        });
    }
}
