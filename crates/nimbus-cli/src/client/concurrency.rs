//! `nimbus concurrency`: a function's reserved concurrency, the number of concurrent
//! executions set aside for it.

use serde_json::{json, Value};

use super::api::{ApiClient, RequestBody};
use super::output;

#[derive(Debug, clap::Subcommand)]
pub enum ConcurrencyCommand {
    /// Reserve concurrent executions for a function.
    Set {
        /// Function name.
        function: String,
        /// Number of concurrent executions to reserve.
        executions: u32,
    },

    /// Show a function's reserved concurrency.
    Get {
        /// Function name.
        function: String,
    },

    /// Remove a function's reservation, so it uses the account's unreserved concurrency.
    Delete {
        /// Function name.
        function: String,
    },
}

pub async fn run(api: &ApiClient, json: bool, command: ConcurrencyCommand) -> anyhow::Result<()> {
    match command {
        ConcurrencyCommand::Set { function, executions } => {
            let body = json!({ "reserved_concurrent_executions": executions });
            let response = api
                .put(&["functions", &function, "concurrency"], RequestBody::Json(body))
                .await?;
            print_concurrency(json, response.json_body()?);
        }
        ConcurrencyCommand::Get { function } => {
            let response = api.get(&["functions", &function, "concurrency"], &[]).await?;
            print_concurrency(json, response.json_body()?);
        }
        ConcurrencyCommand::Delete { function } => {
            let response = api.delete(&["functions", &function, "concurrency"], &[]).await?;
            if json {
                if let Some(body) = &response.body {
                    output::print_json(body);
                }
            } else {
                println!("removed the reserved concurrency of function {function}");
            }
        }
    }
    Ok(())
}

fn print_concurrency(json: bool, body: &Value) {
    if json {
        output::print_json(body);
        return;
    }
    let value = match body.get("reserved_concurrent_executions") {
        Some(Value::Null) | None => "none (uses the account's unreserved concurrency)".to_string(),
        Some(value) => output::render_inline(value),
    };
    output::print_fields(&[("reserved_concurrent_executions".to_string(), value)]);
}
