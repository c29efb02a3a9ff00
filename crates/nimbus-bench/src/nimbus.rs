//! The Nimbus server under test and the few API calls the benchmarks make.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::load::Call;
use crate::service::{wait_for_line, Service};

const API_KEY: &str = "bench-key-0123456789abcdef0123456789";

pub struct Nimbus {
    pub service: Service,
    pub address: SocketAddr,
    url: String,
    log: PathBuf,
    http: reqwest::Client,
    _data: tempfile::TempDir,
}

/// A function's code and how to run it.
#[derive(Clone)]
pub struct Package {
    pub runtime: String,
    pub handler: String,
    pub zip: Vec<u8>,
}

impl Nimbus {
    /// Starts `nimbus server` on a free loopback port with a fresh data directory.
    pub fn start(binary: &Path, log: &Path, extra: &[&str]) -> Result<Nimbus> {
        let data = tempfile::Builder::new().prefix("nimbus-bench-").tempdir()?;
        let mut command = Command::new(binary);
        command
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data.path())
            .args(["--api-key", API_KEY])
            .args(extra)
            .env_remove("NIMBUS_API_KEY")
            .env_remove("NIMBUS_ENDPOINT");
        let _ = std::fs::remove_file(log);
        let mut service = Service::spawn("nimbus server", command, log)?;
        let line = wait_for_line(&mut service, log, "listening on http://", Duration::from_secs(60))?;
        let url = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .context("no address in the server's listening line")?
            .to_string();
        let address: SocketAddr = url.trim_start_matches("http://").parse()?;
        Ok(Nimbus {
            service,
            address,
            url,
            log: log.to_path_buf(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?,
            _data: data,
        })
    }

    /// Returns the ids of the Python and Node.js runtimes the server offers, from its
    /// "runtimes offered" log line.
    pub fn runtimes(&self) -> Result<(String, String)> {
        let log = std::fs::read_to_string(&self.log)?;
        let line = log
            .lines()
            .find(|line| line.contains("runtimes offered"))
            .context("the server logged no 'runtimes offered' line before it listened")?;
        let list = line.split_once("runtimes=").map_or("", |(_, list)| list);
        let ids: Vec<&str> = list
            .split(", ")
            .filter_map(|entry| entry.split_whitespace().next())
            .collect();
        let find = |prefix: &str| {
            ids.iter()
                .find(|id| id.starts_with(prefix))
                .map(|id| id.to_string())
                .with_context(|| format!("the server offers no {prefix}* runtime: {line}"))
        };
        Ok((find("python3.")?, find("nodejs")?))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(API_KEY)
    }

    /// Sends a request and returns the JSON body of a 2xx response.
    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Value> {
        let response = builder.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!("Nimbus returned {status}: {}", String::from_utf8_lossy(&body));
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&body)?)
    }

    pub async fn create_function(&self, name: &str, package: &Package, publish: bool) -> Result<()> {
        let body = json!({
            "runtime": package.runtime,
            "handler": package.handler,
            "code": {"zip_file": base64::engine::general_purpose::STANDARD.encode(&package.zip)},
            "memory_size": 128,
            "timeout": 30,
            "publish": publish,
        });
        self.send(
            self.request(reqwest::Method::PUT, &format!("/functions/{name}"))
                .json(&body),
        )
        .await
        .with_context(|| format!("create function {name}"))?;
        Ok(())
    }

    /// Invokes a function synchronously and returns the response's time and headers.
    pub async fn invoke(&self, name: &str) -> Result<(Duration, reqwest::header::HeaderMap)> {
        let started = Instant::now();
        let response = self
            .request(reqwest::Method::POST, &format!("/functions/{name}/invocations"))
            .body("{}")
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        let elapsed = started.elapsed();
        if !status.is_success() || headers.contains_key("x-function-error") {
            bail!("invoke {name}: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok((elapsed, headers))
    }

    /// Queues an event and returns its request id.
    pub async fn invoke_event(&self, name: &str) -> Result<String> {
        let response = self
            .request(reqwest::Method::POST, &format!("/functions/{name}/invocations"))
            .header("x-invocation-type", "Event")
            .body("{}")
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::ACCEPTED {
            bail!("event for {name}: {} {}", response.status(), response.text().await?);
        }
        let id = response
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .context("a 202 without X-Request-Id")?;
        Ok(id.to_string())
    }

    pub async fn list_functions(&self, max_items: u32) -> Result<Value> {
        self.send(self.request(reqwest::Method::GET, &format!("/functions?max_items={max_items}")))
            .await
    }

    /// Returns up to `limit` invocation records of a function, newest first.
    pub async fn invocations(&self, name: &str, limit: u32) -> Result<Vec<Value>> {
        let body = self
            .send(self.request(
                reqwest::Method::GET,
                &format!("/functions/{name}/invocations?limit={limit}"),
            ))
            .await?;
        Ok(body["invocations"].as_array().cloned().unwrap_or_default())
    }

    /// Provisions `count` environments of version 1 and waits until they are ready.
    pub async fn provision(&self, name: &str, count: u32, timeout: Duration) -> Result<()> {
        let body = json!({"qualifier": "1", "provisioned_concurrent_executions": count});
        self.send(
            self.request(
                reqwest::Method::PUT,
                &format!("/functions/{name}/provisioned-concurrency"),
            )
            .json(&body),
        )
        .await?;
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .send(self.request(
                    reqwest::Method::GET,
                    &format!("/functions/{name}/provisioned-concurrency?qualifier=1"),
                ))
                .await?;
            match status["status"].as_str() {
                Some("READY") => return Ok(()),
                Some("FAILED") => bail!("provisioning {name} failed: {}", status["status_reason"]),
                _ if Instant::now() > deadline => {
                    bail!("{count} environments of {name} were not ready within {timeout:?}: {status}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The warm invoke that the load generator repeats.
    pub fn call(&self, name: &str) -> Call {
        Call {
            address: self.address,
            path: format!("/functions/{name}/invocations"),
            headers: vec![("authorization".into(), format!("Bearer {API_KEY}"))],
            body: Bytes::from_static(b"{}"),
            expect: "\"ok\"",
        }
    }
}

/// Builds a zip with the given files; `(name, bytes, executable)`.
pub fn zip(files: &[(&str, Vec<u8>, bool)]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, executable) in files {
        let mode = if *executable { 0o755 } else { 0o644 };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        writer.start_file(*name, options)?;
        writer.write_all(bytes)?;
    }
    Ok(writer.finish()?.into_inner())
}

/// The no-op functions of the three languages, from `bench/functions`.
pub struct Functions {
    pub python: Package,
    pub node: Package,
    pub rust: Package,
}

impl Functions {
    pub fn load(bench_dir: &Path, python_runtime: &str, node_runtime: &str) -> Result<Functions> {
        let read = |path: PathBuf| std::fs::read(&path).with_context(|| format!("read {}", path.display()));
        let functions = bench_dir.join("functions");
        let rust_dir = functions.join("noop-rust");
        let bootstrap = rust_dir.join("target/release/bootstrap");
        Ok(Functions {
            python: Package {
                runtime: python_runtime.to_string(),
                handler: "app.handler".into(),
                zip: zip(&[("app.py", read(functions.join("noop-python/app.py"))?, false)])?,
            },
            node: Package {
                runtime: node_runtime.to_string(),
                handler: "index.handler".into(),
                zip: zip(&[("index.mjs", read(functions.join("noop-node/index.mjs"))?, false)])?,
            },
            rust: Package {
                runtime: "provided.al2023".into(),
                handler: "bootstrap".into(),
                zip: zip(&[("bootstrap", read(bootstrap)?, true)])?,
            },
        })
    }
}
