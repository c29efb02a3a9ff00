//! The no-op handler run by the `lambda_runtime` crate, as a `provided.al2023`
//! function whose package is this `bootstrap` binary.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    Ok(noop_rust::handle(event.payload))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
