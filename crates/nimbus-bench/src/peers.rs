//! The peers and baselines that serve the same no-op handler as Nimbus.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;

use crate::load::Call;
use crate::service::{free_address, Service};

pub const PYTHON: &str = "/usr/bin/python3";
pub const NODE: &str = "/usr/bin/node";

/// Function name of the no-op handler in the serverless-offline project.
const SERVERLESS_FUNCTION: &str = "nimbus-bench-dev-noop";

/// A process serving the no-op handler and the request that invokes it.
pub struct Target {
    pub name: &'static str,
    pub call: Call,
    pub service: Service,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    Node,
    Rust,
}

impl Language {
    pub const ALL: [Language; 3] = [Language::Python, Language::Node, Language::Rust];

    pub fn label(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::Node => "Node.js",
            Language::Rust => "Rust",
        }
    }
}

/// The command of the language's minimal HTTP server around the same handler.
pub fn baseline_command(bench_dir: &Path, language: Language, address: SocketAddr) -> Command {
    let port = address.port().to_string();
    let mut command = match language {
        Language::Python => {
            let mut command = Command::new(PYTHON);
            command.arg("-S").arg(bench_dir.join("baseline/server.py")).arg(&port);
            command
        }
        Language::Node => {
            let mut command = Command::new(NODE);
            command.arg(bench_dir.join("baseline/server.mjs")).arg(&port);
            command
        }
        Language::Rust => {
            let mut command = Command::new(bench_dir.join("functions/noop-rust/target/release/baseline"));
            command.arg(&port);
            command
        }
    };
    command.env_clear().env("PATH", "/usr/bin:/bin").env("LANG", "C.UTF-8");
    command
}

/// The command that starts the language, loads the same handler, calls it once,
/// prints its JSON and exits: the language's own cold start.
pub fn start_command(bench_dir: &Path, language: Language) -> Command {
    let mut command = match language {
        Language::Python => {
            let mut command = Command::new(PYTHON);
            command.arg("-S").arg(bench_dir.join("baseline/start.py"));
            command
        }
        Language::Node => {
            let mut command = Command::new(NODE);
            command.arg(bench_dir.join("baseline/start.mjs"));
            command
        }
        Language::Rust => Command::new(bench_dir.join("functions/noop-rust/target/release/start")),
    };
    command.env_clear().env("PATH", "/usr/bin:/bin").env("LANG", "C.UTF-8");
    command
}

fn plain_call(address: SocketAddr, path: &str) -> Call {
    Call {
        address,
        path: path.to_string(),
        headers: Vec::new(),
        body: Bytes::from_static(b"{}"),
        expect: "\"ok\"",
    }
}

pub fn start_baseline(bench_dir: &Path, language: Language, log: &Path) -> Result<Target> {
    let address = free_address()?;
    let mut service = Service::spawn("baseline", baseline_command(bench_dir, language, address), log)?;
    service.wait_for_port(address, Duration::from_secs(30))?;
    Ok(Target {
        name: "baseline",
        call: plain_call(address, "/"),
        service,
    })
}

/// The peer that serves the same handler, if the language has one.
pub fn start_peer(bench_dir: &Path, language: Language, log: &Path) -> Result<Option<Target>> {
    match language {
        Language::Python => Ok(None),
        Language::Node => start_serverless_offline(bench_dir, log).map(Some),
        Language::Rust => start_cargo_lambda(bench_dir, log).map(Some),
    }
}

fn start_serverless_offline(bench_dir: &Path, log: &Path) -> Result<Target> {
    let project = bench_dir.join("peers/serverless");
    let lambda = free_address()?;
    let http = free_address()?;
    // node runs the framework directly: through npx, stopping npx would leave the
    // server running.
    let mut command = Command::new(NODE);
    command
        .current_dir(&project)
        .arg("node_modules/serverless/bin/serverless.js")
        .args(["offline", "start", "--host", "127.0.0.1"])
        .args(["--lambdaPort", &lambda.port().to_string()])
        .args(["--httpPort", &http.port().to_string()])
        .envs(serverless_environment());
    let mut service = Service::spawn("serverless-offline", command, log)?;
    service.wait_for_port(lambda, Duration::from_secs(120))?;
    Ok(Target {
        name: "serverless-offline",
        call: plain_call(
            lambda,
            &format!("/2015-03-31/functions/{SERVERLESS_FUNCTION}/invocations"),
        ),
        service,
    })
}

/// Keeps the serverless framework from reaching the network.
fn serverless_environment() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SLS_TELEMETRY_DISABLED", "1"),
        ("SLS_NOTIFICATIONS_MODE", "off"),
        ("SLS_DEPRECATION_DISABLE", "*"),
    ]
}

fn start_cargo_lambda(bench_dir: &Path, log: &Path) -> Result<Target> {
    let project: PathBuf = bench_dir.join("functions/noop-rust");
    let address = free_address()?;
    let mut command = Command::new("cargo");
    command
        .current_dir(&project)
        .args(["lambda", "watch", "--release", "--bin", "bootstrap"])
        .args(["--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &address.port().to_string()]);
    let mut service = Service::spawn("cargo-lambda", command, log)?;
    service.wait_for_port(address, Duration::from_secs(300))?;
    Ok(Target {
        name: "cargo-lambda",
        // `_` is the crate's only binary; naming `bootstrap` would start a second copy.
        call: plain_call(address, "/2015-03-31/functions/_/invocations"),
        service,
    })
}
