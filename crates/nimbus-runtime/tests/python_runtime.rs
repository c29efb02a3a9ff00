//! The Python bootstrap, run by Debian's /usr/bin/python3 against a real `RuntimeApi`.

mod common;

use std::time::Duration;

use common::*;
use nimbus_runtime::{InvokeOutcome, RuntimeApiLimits};
use serde_json::json;

const APP: &str = r#"
import decimal
import json
import os
import sys
import time

counter = 0


def echo(event, context):
    return event


def fixed(event, context):
    return {"message": "h\u00e9llo", "items": [1, 2.5, None, True]}


def nothing(event, context):
    return None


def raw_bytes(event, context):
    return b"\x00\xffraw"


def decimals(event, context):
    return [decimal.Decimal("1.5"), decimal.Decimal("10"), decimal.Decimal("12345678901234567890")]


def count(event, context):
    global counter
    counter += 1
    return {"count": counter, "pid": os.getpid()}


def context_fields(event, context):
    client_context = context.client_context
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
        "client_context": None if client_context is None else {
            "custom": client_context.custom,
            "env": client_context.env,
            "installation_id": client_context.client.installation_id,
            "app_title": client_context.client.app_title,
        },
        "identity_id": context.identity.cognito_identity_id,
        "identity_pool_id": context.identity.cognito_identity_pool_id,
    }


def environment(event, context):
    import http.client
    import importlib.util
    import urllib.request
    return {
        "https_available": hasattr(http.client, "HTTPSConnection") and hasattr(urllib.request, "HTTPSHandler"),
        "sys_path_0": sys.path[0],
        "cwd": os.getcwd(),
        "pip_visible": importlib.util.find_spec("pip") is not None,
        "bytecode_disabled": sys.dont_write_bytecode,
    }


def fail(event, context):
    raise ValueError("boom")


class Ошибка(Exception):
    pass


def fail_non_ascii(event, context):
    raise Ошибка("сломалось")


def unserializable(event, context):
    return {1, 2}


def slow(event, context):
    started = time.time()
    time.sleep(0.3)
    return {"event": event, "started": started, "ended": time.time()}


def wrong_request_id(event, context):
    import http.client
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
    connection = http.client.HTTPConnection(host, int(port))
    connection.request("POST", "/2018-06-01/runtime/invocation/not-the-current-id/response", body=b'"forged"')
    response = connection.getresponse()
    return {"status": response.status, "body": json.loads(response.read())}


def large(event, context):
    return "x" * event["size"]
"#;

async fn python_slot(handler: &str) -> TestSlot {
    let slot = start(&python_offer(), &format!("app.{handler}"), &[("app.py", APP)]).await;
    slot.expect_ready().await;
    slot
}

#[tokio::test]
async fn response_is_json_dumps_output() {
    let slot = python_slot("fixed").await;
    let body = slot.invoke_ok("{}").await;
    // Python 3.11 escapes non-ASCII characters, as Lambda's python3.11 does.
    assert_eq!(
        text(&body),
        r#"{"message": "h\u00e9llo", "items": [1, 2.5, null, true]}"#
    );
}

#[tokio::test]
async fn event_round_trips() {
    let slot = python_slot("echo").await;
    let body = slot.invoke_ok(r#"{"a":[1,2,{"b":"c"}],"n":null}"#).await;
    assert_eq!(text(&body), r#"{"a": [1, 2, {"b": "c"}], "n": null}"#);
}

#[tokio::test]
async fn none_becomes_null() {
    let slot = python_slot("nothing").await;
    assert_eq!(text(&slot.invoke_ok("{}").await), "null");
}

#[tokio::test]
async fn bytes_result_posted_raw() {
    let slot = python_slot("raw_bytes").await;
    assert_eq!(&slot.invoke_ok("{}").await[..], b"\x00\xffraw");
}

#[tokio::test]
async fn decimals_serialized_as_numbers() {
    let slot = python_slot("decimals").await;
    assert_eq!(text(&slot.invoke_ok("{}").await), "[1.5, 10, 12345678901234567890]");
}

#[tokio::test]
async fn context_carries_invocation_headers() {
    let slot = python_slot("context_fields").await;
    let invocation = invocation("{}");
    let request_id = invocation.request_id.clone();
    let trace_id = invocation.trace_id.clone();
    let InvokeOutcome::Response(body) = slot.invoke(invocation).await else {
        panic!("expected a response; output:\n{}", slot.output());
    };
    let fields = parse_json(&body);

    assert_eq!(fields["aws_request_id"], json!(request_id));
    assert_eq!(fields["function_name"], json!(FUNCTION_NAME));
    assert_eq!(fields["function_version"], json!(FUNCTION_VERSION));
    assert_eq!(fields["invoked_function_arn"], json!(FUNCTION_ARN));
    assert_eq!(fields["memory_limit_in_mb"], json!(MEMORY_SIZE));
    assert_eq!(fields["log_group_name"], json!(LOG_GROUP));
    assert_eq!(fields["log_stream_name"], json!(LOG_STREAM));
    assert_eq!(fields["trace_id"], json!(trace_id));
    assert_eq!(fields["client_context"], json!(null));
    assert_eq!(fields["identity_id"], json!(null));
    let remaining = fields["remaining"].as_u64().expect("remaining time is a number");
    assert!((50_000..=60_000).contains(&remaining), "remaining time {remaining} ms");
}

#[tokio::test]
async fn client_context_and_identity_reach_handler() {
    let slot = python_slot("context_fields").await;
    let mut invocation = invocation("{}");
    invocation.client_context = Some(
        r#"{"client":{"installation_id":"install-1","app_title":"Demo"},"custom":{"k":"v"},"env":{"platform":"linux"}}"#
            .to_string(),
    );
    invocation.cognito_identity = Some(r#"{"cognitoIdentityId":"id-1","cognitoIdentityPoolId":"pool-1"}"#.to_string());
    let InvokeOutcome::Response(body) = slot.invoke(invocation).await else {
        panic!("expected a response; output:\n{}", slot.output());
    };
    let fields = parse_json(&body);

    assert_eq!(
        fields["client_context"],
        json!({"custom": {"k": "v"}, "env": {"platform": "linux"}, "installation_id": "install-1", "app_title": "Demo"})
    );
    assert_eq!(fields["identity_id"], json!("id-1"));
    assert_eq!(fields["identity_pool_id"], json!("pool-1"));
}

#[tokio::test]
async fn task_root_first_and_host_packages_hidden() {
    let slot = python_slot("environment").await;
    let fields = parse_json(&slot.invoke_ok("{}").await);
    let task_root = slot.task_root().display().to_string();
    assert_eq!(fields["sys_path_0"], json!(task_root));
    assert_eq!(fields["cwd"], json!(task_root));
    // Debian ships pip in /usr/lib/python3/dist-packages, which -S keeps off sys.path.
    assert_eq!(fields["pip_visible"], json!(false));
    assert_eq!(fields["bytecode_disabled"], json!(true));
    // The bootstrap's own client imports neither http.client nor ssl, and functions get
    // the complete modules.
    assert_eq!(fields["https_available"], json!(true));
}

#[tokio::test]
async fn nested_handler_paths_load() {
    let files = [
        ("src/app.py", "def handler(event, context):\n    return 'src/app'\n"),
        (
            "pkg/sub/mod.py",
            "def handler(event, context):\n    return 'pkg/sub/mod'\n",
        ),
        ("vendored/__init__.py", "VALUE = 'vendored'\n"),
        (
            "uses_vendored.py",
            "import vendored\n\ndef handler(event, context):\n    return vendored.VALUE\n",
        ),
    ];
    let cases = [
        ("src/app.handler", "\"src/app\""),
        ("src.app.handler", "\"src/app\""),
        ("pkg/sub/mod.handler", "\"pkg/sub/mod\""),
        ("uses_vendored.handler", "\"vendored\""),
    ];
    for (handler, expected) in cases {
        let slot = start(&python_offer(), handler, &files).await;
        slot.expect_ready().await;
        let body = slot.invoke_ok("{}").await;
        assert_eq!(String::from_utf8_lossy(&body), expected, "handler {handler}");
    }
}

#[tokio::test]
async fn module_state_persists_across_invokes() {
    let slot = python_slot("count").await;
    let mut pids = Vec::new();
    for expected in 1..=3 {
        let fields = parse_json(&slot.invoke_ok("{}").await);
        assert_eq!(fields["count"], json!(expected));
        pids.push(fields["pid"].clone());
    }
    assert!(pids.windows(2).all(|pair| pair[0] == pair[1]), "pids differ: {pids:?}");
}

#[tokio::test]
async fn handler_exception_shaped_like_lambda() {
    let slot = python_slot("fail").await;
    let invocation = invocation("{}");
    let request_id = invocation.request_id.clone();
    let InvokeOutcome::FunctionError { error_type, body } = slot.invoke(invocation).await else {
        panic!("expected a function error; output:\n{}", slot.output());
    };
    let error = parse_json(&body);

    assert_eq!(error_type.as_deref(), Some("ValueError"));
    assert_eq!(error["errorType"], json!("ValueError"));
    assert_eq!(error["errorMessage"], json!("boom"));
    assert_eq!(error["requestId"], json!(request_id));
    let trace = error["stackTrace"].as_array().expect("stackTrace is an array");
    assert_eq!(trace.len(), 1, "only the user's frame: {trace:?}");
    let frame = trace[0].as_str().expect("trace entries are strings");
    assert!(frame.contains("app.py"), "{frame}");
    assert!(frame.contains("in fail"), "{frame}");

    let output = slot.output();
    assert!(
        output.contains("[ERROR] ValueError: boom\rTraceback (most recent call last):\r"),
        "{output}"
    );
}

#[tokio::test]
async fn non_ascii_error_type_reaches_header() {
    let slot = python_slot("fail_non_ascii").await;
    let (error_type, error) = slot.invoke_error("{}").await;
    assert_eq!(error_type.as_deref(), Some("Ошибка"));
    assert_eq!(error["errorMessage"], json!("сломалось"));
}

#[tokio::test]
async fn unserializable_result_is_marshal_error() {
    let slot = python_slot("unserializable").await;
    let (error_type, error) = slot.invoke_error("{}").await;
    assert_eq!(error_type.as_deref(), Some("Runtime.MarshalError"));
    assert_eq!(error["errorType"], json!("Runtime.MarshalError"));
    assert_eq!(
        error["errorMessage"],
        json!("Unable to marshal response: Object of type set is not JSON serializable")
    );
    assert_eq!(error["stackTrace"], json!([]));
}

#[tokio::test]
async fn invalid_event_is_unmarshal_error() {
    let slot = python_slot("echo").await;
    let (error_type, error) = slot.invoke_error("{not json").await;
    assert_eq!(error_type.as_deref(), Some("Runtime.UnmarshalError"));
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Unable to unmarshal input: Expecting property name"),
        "{message}"
    );
}

#[tokio::test]
async fn invoke_continues_after_error() {
    let slot = python_slot("echo").await;
    slot.invoke_error("{not json").await;
    assert_eq!(text(&slot.invoke_ok("[1]").await), "[1]");
}

/// Starts `app.py` with `source` and handler `handler`, and returns the init error.
async fn init_error(source: &str, handler: &str) -> (Option<String>, serde_json::Value, TestSlot) {
    let mut slot = start(&python_offer(), handler, &[("app.py", source)]).await;
    let (error_type, error) = slot.expect_init_error().await;
    let status = slot.wait_exit().await;
    assert_eq!(status.code(), Some(1), "exit status; output:\n{}", slot.output());
    assert_eq!(error["requestId"], json!(""));
    assert!(error["stackTrace"].is_array(), "{error}");
    (error_type, error, slot)
}

#[tokio::test]
async fn missing_import_is_import_module_error() {
    let (error_type, error, slot) = init_error("import not_a_module\n", "app.handler").await;
    assert_eq!(error_type.as_deref(), Some("Runtime.ImportModuleError"));
    assert_eq!(error["errorType"], json!("Runtime.ImportModuleError"));
    assert_eq!(
        error["errorMessage"],
        json!("Unable to import module 'app': No module named 'not_a_module'")
    );
    let output = slot.output();
    assert!(
        output.contains("[ERROR] Runtime.ImportModuleError: Unable to import module 'app'"),
        "{output}"
    );
}

#[tokio::test]
async fn missing_module_is_import_module_error() {
    let (error_type, error, _slot) = init_error("", "missing.handler").await;
    assert_eq!(error_type.as_deref(), Some("Runtime.ImportModuleError"));
    assert_eq!(
        error["errorMessage"],
        json!("Unable to import module 'missing': No module named 'missing'")
    );
}

#[tokio::test]
async fn syntax_error_is_user_code_syntax_error() {
    let (error_type, error, _slot) = init_error("def handler(:\n    pass\n", "app.handler").await;
    assert_eq!(error_type.as_deref(), Some("Runtime.UserCodeSyntaxError"));
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(message.starts_with("Syntax error in module 'app': "), "{message}");
    let trace = error["stackTrace"][0].as_str().unwrap_or_default();
    assert!(trace.contains("app.py\" Line 1"), "{trace}");
}

#[tokio::test]
async fn missing_function_is_handler_not_found() {
    let (error_type, error, _slot) = init_error("def handler(event, context):\n    pass\n", "app.nope").await;
    assert_eq!(error_type.as_deref(), Some("Runtime.HandlerNotFound"));
    assert_eq!(error["errorMessage"], json!("Handler 'nope' missing on module 'app'"));
}

#[tokio::test]
async fn handler_without_dot_is_malformed() {
    let (error_type, error, _slot) = init_error("", "app").await;
    assert_eq!(error_type.as_deref(), Some("Runtime.MalformedHandlerName"));
    assert_eq!(
        error["errorMessage"],
        json!("Bad handler 'app': not enough values to unpack (expected 2, got 1)")
    );
}

#[tokio::test]
async fn builtin_module_handler_is_conflict() {
    let (error_type, error, _slot) = init_error("", "sys.handler").await;
    assert_eq!(error_type.as_deref(), Some("Runtime.BuiltInModuleConflict"));
    assert_eq!(
        error["errorMessage"],
        json!("Cannot use built-in module sys as a handler module")
    );
}

#[tokio::test]
async fn import_time_exception_keeps_its_type() {
    let (error_type, error, _slot) = init_error("raise KeyError('setting')\n", "app.handler").await;
    assert_eq!(error_type.as_deref(), Some("KeyError"));
    assert_eq!(error["errorType"], json!("KeyError"));
    assert_eq!(error["errorMessage"], json!("'setting'"));
    let trace = error["stackTrace"].as_array().expect("stackTrace is an array");
    assert!(
        trace
            .iter()
            .any(|frame| frame.as_str().is_some_and(|frame| frame.contains("app.py"))),
        "{trace:?}"
    );
}

#[tokio::test]
async fn logging_uses_lambda_format() {
    let source = r#"
import logging
logger = logging.getLogger()
logger.setLevel(logging.INFO)

def handler(event, context):
    logger.info("hello %s", "logs")
    print("printed")
    return None
"#;
    let slot = start(&python_offer(), "app.handler", &[("app.py", source)]).await;
    slot.expect_ready().await;
    let invocation = invocation("{}");
    let request_id = invocation.request_id.clone();
    slot.invoke(invocation).await;

    let output = slot.output();
    let log_line = output
        .lines()
        .find(|line| line.starts_with("[INFO]\t"))
        .unwrap_or_else(|| panic!("{output}"));
    assert!(
        log_line.ends_with(&format!("Z\t{request_id}\thello logs")),
        "{log_line}"
    );
    assert!(output.contains("printed\n"), "{output}");
}

#[tokio::test]
async fn forged_request_id_rejected() {
    let slot = python_slot("wrong_request_id").await;
    let fields = parse_json(&slot.invoke_ok("{}").await);
    assert_eq!(fields["status"], json!(400));
    assert_eq!(
        fields["body"],
        json!({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"})
    );
}

#[tokio::test]
async fn oversized_response_reported_and_slot_continues() {
    let limits = RuntimeApiLimits {
        max_response_bytes: 1024 * 1024,
    };
    let slot = start_with_limits(&python_offer(), "app.large", &[("app.py", APP)], limits).await;
    slot.expect_ready().await;

    let outcome = slot.invoke(invocation(r#"{"size": 3000000}"#)).await;
    assert_eq!(outcome, InvokeOutcome::ResponseTooLarge { limit: 1024 * 1024 });

    let body = slot.invoke_ok(r#"{"size": 3}"#).await;
    assert_eq!(text(&body), r#""xxx""#);
}

#[tokio::test]
async fn concurrent_invokes_run_one_at_a_time() {
    let slot = python_slot("slow").await;
    let first = tokio::spawn({
        let api = slot.api.clone();
        async move { api.invoke(invocation(r#""first""#)).await }
    });
    let second = tokio::spawn({
        let api = slot.api.clone();
        async move { api.invoke(invocation(r#""second""#)).await }
    });
    let (first, second) = tokio::time::timeout(Duration::from_secs(20), async { (first.await, second.await) })
        .await
        .unwrap_or_else(|_| panic!("invokes did not finish; output:\n{}", slot.output()));

    let mut runs = Vec::new();
    for outcome in [first.expect("first task"), second.expect("second task")] {
        let InvokeOutcome::Response(body) = outcome else {
            panic!("expected a response, got {outcome:?}")
        };
        let fields = parse_json(&body);
        runs.push((
            fields["started"].as_f64().unwrap(),
            fields["ended"].as_f64().unwrap(),
            fields["event"].clone(),
        ));
    }
    let events: Vec<_> = runs.iter().map(|run| run.2.clone()).collect();
    assert!(events.contains(&json!("first")), "{events:?}");
    assert!(events.contains(&json!("second")), "{events:?}");
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(runs[0].1 <= runs[1].0, "invocations overlapped: {runs:?}");
}
