//! AWS's own Python runtime client, awslambdaric from PyPI (unmodified), against
//! `RuntimeApi`: the HTTP Runtime API must be compatible with third-party runtimes.
//!
//! The package is installed with pip into the target directory once per test run, so
//! these tests need the Python package registry to be reachable.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use nimbus_runtime::{InvokeOutcome, RuntimeApiLimits};
use serde_json::json;

const APP: &str = r#"
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("requested failure")
    return {
        "echo": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "remaining_positive": context.get_remaining_time_in_millis() > 0,
    }
"#;

/// Returns the directory holding awslambdaric and its dependencies, installing them on
/// first use. The wheel must match Debian's Python 3.11, which runs it.
fn awslambdaric_packages() -> &'static Path {
    static PACKAGES: OnceLock<PathBuf> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("awslambdaric-packages");
        let _ = std::fs::remove_dir_all(&target);
        let target_arg = target.display().to_string();

        let debian_pip_works = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|output| output.status.success());
        let (program, mut args): (&str, Vec<&str>) = if debian_pip_works {
            ("/usr/bin/python3", vec!["-m", "pip", "install"])
        } else {
            // Another Python's pip can fetch the wheel for Debian's Python.
            (
                "python3",
                vec![
                    "-m",
                    "pip",
                    "install",
                    "--python-version",
                    "3.11",
                    "--only-binary=:all:",
                ],
            )
        };
        args.extend([
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
            &target_arg,
            "awslambdaric",
        ]);

        let command_line = format!("{program} {}", args.join(" "));
        let output = std::process::Command::new(program)
            .args(&args)
            .output()
            .unwrap_or_else(|error| panic!("failed to run `{command_line}`: {error}"));
        assert!(
            output.status.success(),
            "`{command_line}` failed with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        target
    })
}

async fn start_awslambdaric(handler: &str, files: &[(&str, &str)]) -> TestSlot {
    let packages = awslambdaric_packages();
    let task_root = write_task_root(files);
    let runtime_root = tempfile::tempdir().expect("create runtime root");
    let argv = ["/usr/bin/python3", "-m", "awslambdaric", handler]
        .map(String::from)
        .to_vec();
    let environment = vec![
        (
            "PYTHONPATH".to_string(),
            format!("{}:{}", packages.display(), task_root.path().display()),
        ),
        ("LAMBDA_TASK_ROOT".to_string(), task_root.path().display().to_string()),
        ("_HANDLER".to_string(), handler.to_string()),
    ];
    start_process(argv, environment, task_root, runtime_root, RuntimeApiLimits::default())
}

#[tokio::test]
async fn awslambdaric_response_round_trips() {
    let slot = start_awslambdaric("app.handler", &[("app.py", APP)]).await;
    slot.expect_ready().await;

    let invocation = invocation(r#"{"greeting": "hello", "n": [1, 2]}"#);
    let request_id = invocation.request_id.clone();
    let InvokeOutcome::Response(body) = slot.invoke(invocation).await else {
        panic!("expected a response; output:\n{}", slot.output());
    };
    assert_eq!(
        parse_json(&body),
        json!({
            "echo": {"greeting": "hello", "n": [1, 2]},
            "request_id": request_id,
            "function_name": FUNCTION_NAME,
            "remaining_positive": true,
        })
    );

    // A second event on the same process, over the same Runtime API.
    let fields = parse_json(&slot.invoke_ok(r#"{"second": true}"#).await);
    assert_eq!(fields["echo"], json!({"second": true}));
}

#[tokio::test]
async fn awslambdaric_error_round_trips() {
    let slot = start_awslambdaric("app.handler", &[("app.py", APP)]).await;
    slot.expect_ready().await;

    let invocation = invocation(r#"{"fail": true}"#);
    let request_id = invocation.request_id.clone();
    let InvokeOutcome::FunctionError { error_type, body } = slot.invoke(invocation).await else {
        panic!("expected a function error; output:\n{}", slot.output());
    };
    let error = parse_json(&body);
    // awslambdaric 4.2.2 sends no Lambda-Runtime-Function-Error-Type header with an
    // invocation error (only with an init error); the type is in the document.
    assert!(
        matches!(error_type.as_deref(), None | Some("RuntimeError")),
        "{error_type:?}"
    );
    assert_eq!(error["errorType"], json!("RuntimeError"));
    assert_eq!(error["errorMessage"], json!("requested failure"));
    assert_eq!(error["requestId"], json!(request_id));
    assert!(
        error["stackTrace"].as_array().is_some_and(|trace| !trace.is_empty()),
        "{error}"
    );

    // The runtime keeps serving after an error.
    let fields = parse_json(&slot.invoke_ok(r#"{"fail": false}"#).await);
    assert_eq!(fields["echo"], json!({"fail": false}));
}

#[tokio::test]
async fn awslambdaric_init_error_reported() {
    let mut slot = start_awslambdaric("app.handler", &[("app.py", "import not_a_module\n")]).await;
    let (error_type, error) = slot.expect_init_error().await;
    assert_eq!(error_type.as_deref(), Some("Runtime.ImportModuleError"));
    assert_eq!(
        error["errorMessage"],
        json!("Unable to import module 'app': No module named 'not_a_module'")
    );
    let status = slot.wait_exit().await;
    assert_eq!(status.code(), Some(1), "output:\n{}", slot.output());
}
