//! Helpers for tests that run real runtimes against a real `RuntimeApi`.
#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use nimbus_runtime::{
    install_bootstraps, InitOutcome, Invocation, InvokeOutcome, RuntimeApi, RuntimeApiLimits, RuntimeKind, RuntimeOffer,
};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// Maximum time for a runtime to start, respond or exit before a test fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

pub const FUNCTION_NAME: &str = "test-function";
pub const FUNCTION_VERSION: &str = "$LATEST";
pub const MEMORY_SIZE: &str = "256";
pub const LOG_GROUP: &str = "/aws/lambda/test-function";
pub const LOG_STREAM: &str = "2024/01/01/[$LATEST]0123456789abcdef";
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:test-function";

pub fn python_offer() -> RuntimeOffer {
    RuntimeOffer {
        id: "python3.11".to_string(),
        kind: RuntimeKind::Python,
        interpreter: Some(PathBuf::from("/usr/bin/python3")),
        version: None,
    }
}

pub fn node_offer() -> RuntimeOffer {
    RuntimeOffer {
        id: "nodejs20.x".to_string(),
        kind: RuntimeKind::Node,
        interpreter: Some(PathBuf::from("/usr/bin/node")),
        version: None,
    }
}

/// A runtime process in a temporary task root, with the Runtime API it talks to.
pub struct TestSlot {
    pub api: RuntimeApi,
    pub child: Child,
    pub task_root: TempDir,
    pub runtime_root: TempDir,
    output: Arc<Mutex<String>>,
}

/// Writes `files` (path relative to the task root, content) into a new task root.
pub fn write_task_root(files: &[(&str, &str)]) -> TempDir {
    let task_root = tempfile::tempdir().expect("create task root");
    for (relative, content) in files {
        let path = task_root.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("file has a parent")).expect("create folders");
        std::fs::write(&path, content).expect("write task root file");
    }
    task_root
}

/// Starts the bootstrap of `offer` with handler `handler` on a task root made of `files`.
pub async fn start(offer: &RuntimeOffer, handler: &str, files: &[(&str, &str)]) -> TestSlot {
    start_with_limits(offer, handler, files, RuntimeApiLimits::default()).await
}

pub async fn start_with_limits(
    offer: &RuntimeOffer,
    handler: &str,
    files: &[(&str, &str)],
    limits: RuntimeApiLimits,
) -> TestSlot {
    start_with_address(offer, handler, files, limits, |api_address| api_address.to_string()).await
}

/// Starts the bootstrap like [`start_with_limits`], with `AWS_LAMBDA_RUNTIME_API` set to
/// `runtime_api_address(address of the slot's Runtime API)`, for example a proxy's address.
pub async fn start_with_address(
    offer: &RuntimeOffer,
    handler: &str,
    files: &[(&str, &str)],
    limits: RuntimeApiLimits,
    runtime_api_address: impl FnOnce(SocketAddr) -> String,
) -> TestSlot {
    let task_root = write_task_root(files);
    let runtime_root = tempfile::tempdir().expect("create runtime root");
    install_bootstraps(runtime_root.path()).expect("install bootstraps");
    let argv = offer.command(runtime_root.path(), task_root.path());
    let mut environment = offer.environment(runtime_root.path(), task_root.path());
    environment.push(("_HANDLER".to_string(), handler.to_string()));
    let api = serve_runtime_api(limits);
    let address = runtime_api_address(api.local_addr());
    spawn_runtime(api, address, argv, environment, task_root, runtime_root)
}

fn serve_runtime_api(limits: RuntimeApiLimits) -> RuntimeApi {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    RuntimeApi::serve(listener, limits).expect("serve Runtime API")
}

/// Starts `argv` with a clean environment made of the function's reserved variables,
/// `AWS_LAMBDA_RUNTIME_API` and `environment`, in `task_root`.
pub fn start_process(
    argv: Vec<String>,
    environment: Vec<(String, String)>,
    task_root: TempDir,
    runtime_root: TempDir,
    limits: RuntimeApiLimits,
) -> TestSlot {
    let api = serve_runtime_api(limits);
    let address = api.local_addr().to_string();
    spawn_runtime(api, address, argv, environment, task_root, runtime_root)
}

/// Starts `argv` as [`start_process`] describes, telling it to reach the Runtime API at
/// `runtime_api_address`.
fn spawn_runtime(
    api: RuntimeApi,
    runtime_api_address: String,
    argv: Vec<String>,
    environment: Vec<(String, String)>,
    task_root: TempDir,
    runtime_root: TempDir,
) -> TestSlot {
    let (program, args) = argv.split_first().expect("argv is not empty");
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api_address)
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
        .env("AWS_LAMBDA_FUNCTION_VERSION", FUNCTION_VERSION)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_SIZE)
        .env("AWS_LAMBDA_LOG_GROUP_NAME", LOG_GROUP)
        .env("AWS_LAMBDA_LOG_STREAM_NAME", LOG_STREAM)
        .envs(environment)
        .current_dir(task_root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {argv:?}: {error}"));

    let output = Arc::new(Mutex::new(String::new()));
    collect_output(child.stdout.take().expect("piped stdout"), output.clone());
    collect_output(child.stderr.take().expect("piped stderr"), output.clone());

    TestSlot {
        api,
        child,
        task_root,
        runtime_root,
        output,
    }
}

fn collect_output(mut stream: impl AsyncRead + Unpin + Send + 'static, output: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => output
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..read])),
            }
        }
    });
}

impl TestSlot {
    /// Everything the runtime printed so far, stdout and stderr interleaved.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    pub fn task_root(&self) -> &Path {
        self.task_root.path()
    }

    pub async fn wait_ready(&self) -> InitOutcome {
        match tokio::time::timeout(STEP_TIMEOUT, self.api.wait_ready()).await {
            Ok(outcome) => outcome,
            Err(_) => panic!(
                "runtime did not finish init in {STEP_TIMEOUT:?}; output:\n{}",
                self.output()
            ),
        }
    }

    /// Waits for init and fails the test unless the runtime became ready.
    pub async fn expect_ready(&self) {
        let outcome = self.wait_ready().await;
        assert_eq!(outcome, InitOutcome::Ready, "init failed; output:\n{}", self.output());
    }

    pub async fn invoke(&self, invocation: Invocation) -> InvokeOutcome {
        match tokio::time::timeout(STEP_TIMEOUT, self.api.invoke(invocation)).await {
            Ok(outcome) => outcome,
            Err(_) => panic!("runtime did not answer in {STEP_TIMEOUT:?}; output:\n{}", self.output()),
        }
    }

    /// Invokes with `payload` and returns the response body, failing on any other outcome.
    pub async fn invoke_ok(&self, payload: &str) -> Bytes {
        match self.invoke(invocation(payload)).await {
            InvokeOutcome::Response(body) => body,
            other => panic!("expected a response, got {other:?}; output:\n{}", self.output()),
        }
    }

    /// Invokes with `payload` and returns the error type and parsed error document.
    pub async fn invoke_error(&self, payload: &str) -> (Option<String>, serde_json::Value) {
        match self.invoke(invocation(payload)).await {
            InvokeOutcome::FunctionError { error_type, body } => (error_type, parse_json(&body)),
            other => panic!("expected a function error, got {other:?}; output:\n{}", self.output()),
        }
    }

    /// Waits for init and returns the init error type and parsed error document.
    pub async fn expect_init_error(&self) -> (Option<String>, serde_json::Value) {
        match self.wait_ready().await {
            InitOutcome::Failed { error_type, body } => (error_type, parse_json(&body)),
            InitOutcome::Ready => panic!("expected an init error; output:\n{}", self.output()),
        }
    }

    pub async fn wait_exit(&mut self) -> ExitStatus {
        match tokio::time::timeout(STEP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait for runtime process"),
            Err(_) => panic!("runtime did not exit in {STEP_TIMEOUT:?}; output:\n{}", self.output()),
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Builds an invocation with a fresh request id and a deadline 60 s from now.
pub fn invocation(payload: &str) -> Invocation {
    Invocation {
        request_id: uuid::Uuid::new_v4().to_string(),
        payload: Bytes::from(payload.to_string()),
        deadline_ms: now_ms() + 60_000,
        invoked_function_arn: FUNCTION_ARN.to_string(),
        trace_id: "Root=1-5f84c7a1-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1".to_string(),
        client_context: None,
        cognito_identity: None,
    }
}

pub fn parse_json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", String::from_utf8_lossy(body)))
}

/// Returns a response body as text, so that failed comparisons print readably.
pub fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}
