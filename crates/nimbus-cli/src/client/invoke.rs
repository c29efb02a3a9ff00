//! `nimbus invoke` and `nimbus logs`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use reqwest::Method;
use serde_json::Value;

use super::api::ApiClient;

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// Function name.
    pub name: String,
    /// Event as JSON text, or @FILE to read it from a file; default {}.
    #[arg(long)]
    pub payload: Option<String>,
    /// $LATEST (default), a version number or an alias.
    #[arg(long)]
    pub qualifier: Option<String>,
    /// Queue the event and return at once (invocation type Event).
    #[arg(long = "async", conflicts_with_all = ["dry_run", "log_tail"])]
    pub asynchronous: bool,
    /// Check that the invocation would be accepted, without running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the last 4 KB of the invocation's log to stderr.
    #[arg(long)]
    pub log_tail: bool,
    /// Client context passed to the function, as JSON text.
    #[arg(long)]
    pub client_context: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Function name.
    pub name: String,
    /// Only the lines of this invocation.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Only lines newer than this: a duration such as 30s, 10m, 2h or 1d.
    #[arg(long)]
    pub since: Option<String>,
    /// Keep printing new lines as they arrive, until interrupted.
    #[arg(long, short)]
    pub follow: bool,
}

fn read_payload(payload: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let text = match payload {
        None => return Ok(b"{}".to_vec()),
        Some(path) if path.starts_with('@') => std::fs::read_to_string(&path[1..])
            .with_context(|| format!("failed to read the payload file '{}'", &path[1..]))?,
        Some(text) => text.to_string(),
    };
    serde_json::from_str::<Value>(&text).with_context(|| {
        format!(
            "payload is not valid JSON: '{}'; pass a JSON document such as '{{\"name\": \"x\"}}'",
            text.trim()
        )
    })?;
    Ok(text.into_bytes())
}

pub async fn invoke(api: &ApiClient, json: bool, args: InvokeArgs) -> anyhow::Result<()> {
    let payload = read_payload(args.payload.as_deref())?;
    let mut headers = Vec::new();
    let invocation_type = if args.asynchronous {
        "Event"
    } else if args.dry_run {
        "DryRun"
    } else {
        "RequestResponse"
    };
    headers.push(("x-invocation-type", invocation_type.to_string()));
    if args.log_tail {
        headers.push(("x-log-type", "Tail".to_string()));
    }
    if let Some(context) = &args.client_context {
        serde_json::from_str::<Value>(context)
            .with_context(|| format!("client context is not valid JSON: '{context}'"))?;
        headers.push((
            "x-client-context",
            base64::engine::general_purpose::STANDARD.encode(context),
        ));
    }
    let query: Vec<(&str, String)> = args.qualifier.iter().map(|q| ("qualifier", q.clone())).collect();

    let (status, response_headers, body) = api
        .send_raw(
            Method::POST,
            &["functions", &args.name, "invocations"],
            &query,
            &headers,
            payload,
        )
        .await?;
    let header = |name: &str| {
        response_headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let request_id = header("x-request-id").unwrap_or_default();

    if status.as_u16() == 202 {
        if json {
            println!("{}", serde_json::json!({"request_id": request_id, "status": "queued"}));
        } else {
            println!("queued event {request_id}");
        }
        return Ok(());
    }
    if status.as_u16() == 204 {
        println!("dry run accepted ({request_id})");
        return Ok(());
    }
    if json {
        let payload = serde_json::from_slice::<Value>(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        let summary = serde_json::json!({
            "status_code": status.as_u16(),
            "request_id": request_id,
            "executed_version": header("x-executed-version"),
            "function_error": header("x-function-error"),
            "cold_start": header("x-cold-start"),
            "log_result": header("x-log-result"),
            "payload": payload,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        if header("x-function-error").is_some() {
            anyhow::bail!("function {} failed; request id {request_id}", args.name);
        }
        return Ok(());
    }
    if let Some(tail) = header("x-log-result") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(tail)
            .unwrap_or_default();
        eprint!("{}", String::from_utf8_lossy(&decoded));
    }
    let mut stdout = std::io::stdout();
    stdout.write_all(&body)?;
    if !body.ends_with(b"\n") {
        stdout.write_all(b"\n")?;
    }
    if let Some(kind) = header("x-function-error") {
        let version = header("x-executed-version").unwrap_or_default();
        anyhow::bail!(
            "function {} (version {version}) failed with an {kind} error; request id {request_id}",
            args.name
        );
    }
    Ok(())
}

fn parse_since(value: &str) -> anyhow::Result<Duration> {
    let invalid = || anyhow::anyhow!("--since '{value}' is invalid; use a number with s, m, h or d, such as 10m");
    let (number, unit) = value.split_at(value.len().checked_sub(1).ok_or_else(invalid)?);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86_400,
        _ => return Err(invalid()),
    };
    Ok(Duration::from_secs(seconds))
}

pub async fn logs(api: &ApiClient, json: bool, args: LogsArgs) -> anyhow::Result<()> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(request_id) = &args.request_id {
        query.push(("request_id", request_id.clone()));
    }
    if let Some(since) = &args.since {
        let start = std::time::SystemTime::now() - parse_since(since)?;
        let start_ms = start
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        query.push(("start_time", start_ms.to_string()));
    }
    let mut after: Option<i64> = None;
    loop {
        let mut page_query = query.clone();
        if let Some(after) = after {
            page_query.push(("after", after.to_string()));
        }
        let response = api.get(&["functions", &args.name, "logs"], &page_query).await?;
        let body = response.json_body()?;
        let events = body["events"].as_array().cloned().unwrap_or_default();
        for event in &events {
            if json {
                println!("{event}");
            } else {
                // Lambda's runtimes join the lines of a traceback with '\r', so one
                // message contains the whole traceback. A terminal needs newlines.
                let message = event["message"].as_str().unwrap_or("").replace('\r', "\n");
                println!("{} {message}", event["timestamp"].as_str().unwrap_or(""));
            }
        }
        after = body["next_sequence"].as_i64().or(after);
        if !events.is_empty() {
            continue;
        }
        if !args.follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_units() {
        assert_eq!(parse_since("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_since("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_since("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_since("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_since("10").is_err());
        assert!(parse_since("").is_err());
        assert!(parse_since("xm").is_err());
    }

    #[test]
    fn payload_must_be_json() {
        assert_eq!(read_payload(None).unwrap(), b"{}");
        assert_eq!(read_payload(Some("{\"a\":1}")).unwrap(), b"{\"a\":1}");
        let error = read_payload(Some("{nope")).unwrap_err().to_string();
        assert!(error.contains("not valid JSON"), "{error}");
    }
}
