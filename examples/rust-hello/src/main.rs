//! A Rust function built with the `lambda_runtime` crate, unmodified, and run by
//! Nimbus as a `provided.al2023` function: the package is the `bootstrap` binary.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    numbers: Vec<i64>,
}

#[derive(Serialize)]
struct Response {
    sum: i64,
    count: usize,
    request_id: String,
}

async fn handler(event: LambdaEvent<Request>) -> Result<Response, Error> {
    let numbers = event.payload.numbers;
    if numbers.iter().any(|n| *n < 0) {
        return Err("negative numbers are not allowed".into());
    }
    Ok(Response { sum: numbers.iter().sum(), count: numbers.len(), request_id: event.context.request_id })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
