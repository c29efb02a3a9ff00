//! The Node.js bootstrap, run by /usr/bin/node against a real `RuntimeApi`.

mod common;

use common::*;
use nimbus_runtime::InvokeOutcome;
use serde_json::json;

const INDEX_JS: &str = r#"
const dep = require('dep');
let counter = 0;

exports.asyncEcho = async (event) => event;
exports.fixed = async () => ({ message: 'h\u00e9llo', items: [1, 2.5, null, true] });
exports.callbackEcho = (event, context, callback) => callback(null, event);
exports.callbackLater = (event, context, callback) => {
  setTimeout(() => callback(null, { late: true }), 20);
};
// With callbackWaitsForEmptyEventLoop (the default), Lambda serializes the result only once
// the timer has run, and without it at once.
exports.callbackWaits = (event, context, callback) => {
  const state = { timerRan: false };
  setTimeout(() => { state.timerRan = true; }, 100);
  context.callbackWaitsForEmptyEventLoop = event.wait;
  callback(null, state);
};
exports.returnsUndefined = async () => undefined;
exports.syncReturn = () => 42;
exports.count = async () => ({ count: ++counter, pid: process.pid });
exports.dependency = async () => dep.value;
exports.contextFields = async (event, context) => ({
  awsRequestId: context.awsRequestId,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  memoryLimitInMB: context.memoryLimitInMB,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  remaining: context.getRemainingTimeInMillis(),
  clientContext: context.clientContext ?? null,
  identity: context.identity ?? null,
  callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
  traceId: process.env._X_AMZN_TRACE_ID,
  cwd: process.cwd(),
});
exports.fail = async () => { throw new TypeError('bad input'); };
exports.throwsSync = () => { throw new RangeError('sync throw'); };
exports.callbackError = (event, context, callback) => callback(new Error('callback failed'));
exports.callbackString = (event, context, callback) => callback('plain failure');
exports.failNonAscii = async () => {
  const error = new Error('сломалось');
  error.name = 'Ошибка';
  throw error;
};
exports.circular = async () => { const value = {}; value.self = value; return value; };
exports.neverSettles = async () => new Promise(() => {});
exports.uncaught = async () => {
  setTimeout(() => { throw new Error('async boom'); }, 10);
  return new Promise(() => {});
};
exports.logs = async () => {
  console.log('hello', { a: 1 });
  console.error('multi\nline');
  return null;
};
exports.notFunction = 42;
exports.nested = { obj: { method: async () => 'nested method' } };
"#;

const DEP_JS: &str = "module.exports = { value: 'from node_modules' };\n";

fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("index.js", INDEX_JS),
        ("node_modules/dep/index.js", DEP_JS),
        (
            "app.mjs",
            "export const handler = async (event) => ({ esm: 'mjs', event });\n",
        ),
        ("lib.cjs", "exports.handler = async () => 'cjs';\n"),
        ("esm/package.json", r#"{"type":"module"}"#),
        ("esm/index.js", "export const handler = async () => 'type module';\n"),
        (
            "tla.js",
            "const value = await Promise.resolve('top-level await');\nexport const handler = async () => value;\n",
        ),
        ("dir/index.js", "exports.obj = { method: async () => 'dir method' };\n"),
    ]
}

async fn node_slot(handler: &str) -> TestSlot {
    let slot = start(&node_offer(), handler, &files()).await;
    slot.expect_ready().await;
    slot
}

#[tokio::test]
async fn async_response_is_json_stringify_output() {
    let slot = node_slot("index.fixed").await;
    let body = slot.invoke_ok("{}").await;
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"message":"héllo","items":[1,2.5,null,true]}"#
    );
}

#[tokio::test]
async fn async_event_round_trips() {
    let slot = node_slot("index.asyncEcho").await;
    let body = slot.invoke_ok(r#"{"a": [1, 2, {"b": "c"}]}"#).await;
    assert_eq!(text(&body), r#"{"a":[1,2,{"b":"c"}]}"#);
}

#[tokio::test]
async fn callback_handlers_respond() {
    let slot = node_slot("index.callbackEcho").await;
    assert_eq!(text(&slot.invoke_ok("[1,2]").await), "[1,2]");

    let slot = node_slot("index.callbackLater").await;
    assert_eq!(text(&slot.invoke_ok("{}").await), r#"{"late":true}"#);
}

#[tokio::test]
async fn callback_waits_for_empty_event_loop() {
    let slot = node_slot("index.callbackWaits").await;
    assert_eq!(text(&slot.invoke_ok(r#"{"wait": true}"#).await), r#"{"timerRan":true}"#);
    assert_eq!(
        text(&slot.invoke_ok(r#"{"wait": false}"#).await),
        r#"{"timerRan":false}"#
    );
}

#[tokio::test]
async fn undefined_and_sync_results_are_null() {
    let slot = node_slot("index.returnsUndefined").await;
    assert_eq!(text(&slot.invoke_ok("{}").await), "null");

    // Lambda ignores what a non-async handler returns: only the callback sets the response.
    let slot = node_slot("index.syncReturn").await;
    assert_eq!(text(&slot.invoke_ok("{}").await), "null");
}

#[tokio::test]
async fn module_formats_load() {
    let cases = [
        ("app.handler", r#"{"esm":"mjs","event":{"n":1}}"#),
        ("lib.handler", r#""cjs""#),
        ("esm/index.handler", r#""type module""#),
        ("tla.handler", r#""top-level await""#),
        ("dir/index.obj.method", r#""dir method""#),
        ("index.nested.obj.method", r#""nested method""#),
        ("index.dependency", r#""from node_modules""#),
    ];
    for (handler, expected) in cases {
        let slot = node_slot(handler).await;
        let body = slot.invoke_ok(r#"{"n":1}"#).await;
        assert_eq!(String::from_utf8_lossy(&body), expected, "handler {handler}");
    }
}

#[tokio::test]
async fn context_carries_invocation_headers() {
    let slot = node_slot("index.contextFields").await;
    let mut invocation = invocation("{}");
    invocation.client_context = Some(r#"{"client":{"installation_id":"install-1"},"custom":{"k":"v"}}"#.to_string());
    invocation.cognito_identity = Some(r#"{"cognitoIdentityId":"id-1","cognitoIdentityPoolId":"pool-1"}"#.to_string());
    let request_id = invocation.request_id.clone();
    let trace_id = invocation.trace_id.clone();
    let InvokeOutcome::Response(body) = slot.invoke(invocation).await else {
        panic!("expected a response; output:\n{}", slot.output());
    };
    let fields = parse_json(&body);

    assert_eq!(fields["awsRequestId"], json!(request_id));
    assert_eq!(fields["functionName"], json!(FUNCTION_NAME));
    assert_eq!(fields["functionVersion"], json!(FUNCTION_VERSION));
    assert_eq!(fields["invokedFunctionArn"], json!(FUNCTION_ARN));
    assert_eq!(fields["memoryLimitInMB"], json!(MEMORY_SIZE));
    assert_eq!(fields["logGroupName"], json!(LOG_GROUP));
    assert_eq!(fields["logStreamName"], json!(LOG_STREAM));
    assert_eq!(fields["traceId"], json!(trace_id));
    assert_eq!(fields["callbackWaitsForEmptyEventLoop"], json!(true));
    assert_eq!(
        fields["clientContext"],
        json!({"client": {"installation_id": "install-1"}, "custom": {"k": "v"}})
    );
    assert_eq!(
        fields["identity"],
        json!({"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"})
    );
    assert_eq!(fields["cwd"], json!(slot.task_root().display().to_string()));
    let remaining = fields["remaining"].as_i64().expect("remaining time is a number");
    assert!((50_000..=60_000).contains(&remaining), "remaining time {remaining} ms");
}

#[tokio::test]
async fn absent_client_context_is_undefined() {
    let slot = node_slot("index.contextFields").await;
    let fields = parse_json(&slot.invoke_ok("{}").await);
    assert_eq!(fields["clientContext"], json!(null));
    assert_eq!(fields["identity"], json!(null));
}

#[tokio::test]
async fn module_state_persists_across_invokes() {
    let slot = node_slot("index.count").await;
    let mut pids = Vec::new();
    for expected in 1..=3 {
        let fields = parse_json(&slot.invoke_ok("{}").await);
        assert_eq!(fields["count"], json!(expected));
        pids.push(fields["pid"].clone());
    }
    assert!(pids.windows(2).all(|pair| pair[0] == pair[1]), "pids differ: {pids:?}");
}

#[tokio::test]
async fn rejected_promise_shaped_like_lambda() {
    let slot = node_slot("index.fail").await;
    let (error_type, error) = slot.invoke_error("{}").await;
    assert_eq!(error_type.as_deref(), Some("TypeError"));
    let keys: Vec<&str> = error
        .as_object()
        .expect("error is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["errorMessage", "errorType", "trace"]);
    assert_eq!(error["errorType"], json!("TypeError"));
    assert_eq!(error["errorMessage"], json!("bad input"));
    let trace = error["trace"].as_array().expect("trace is an array");
    assert_eq!(trace[0], json!("TypeError: bad input"));
    assert!(
        trace[1].as_str().is_some_and(|frame| frame.contains("index.js")),
        "{trace:?}"
    );

    let output = slot.output();
    assert!(
        output.contains("\tERROR\tInvoke Error \t{\"errorType\":\"TypeError\""),
        "{output}"
    );
}

#[tokio::test]
async fn thrown_and_callback_errors_posted() {
    let cases = [
        ("index.throwsSync", "RangeError", "sync throw"),
        ("index.callbackError", "Error", "callback failed"),
        ("index.callbackString", "string", "plain failure"),
        ("index.failNonAscii", "Ошибка", "сломалось"),
    ];
    for (handler, expected_type, expected_message) in cases {
        let slot = node_slot(handler).await;
        let (error_type, error) = slot.invoke_error("{}").await;
        assert_eq!(error_type.as_deref(), Some(expected_type), "handler {handler}");
        assert_eq!(error["errorType"], json!(expected_type), "handler {handler}");
        assert_eq!(error["errorMessage"], json!(expected_message), "handler {handler}");
    }
}

#[tokio::test]
async fn circular_result_is_stringify_error() {
    let slot = node_slot("index.circular").await;
    let (error_type, error) = slot.invoke_error("{}").await;
    assert_eq!(error_type.as_deref(), Some("Runtime.JSONStringifyError"));
    assert_eq!(error["errorMessage"], json!("Unable to stringify response body"));
    // The slot keeps serving after the error.
    slot.invoke_error("{}").await;
}

#[tokio::test]
async fn unsettled_promise_is_node_exit_error() {
    let slot = node_slot("index.neverSettles").await;
    let (error_type, error) = slot.invoke_error("{}").await;
    assert_eq!(error_type.as_deref(), Some("Runtime.NodeJsExit"));
    assert_eq!(error["errorType"], json!("Runtime.NodeJsExit"));
}

#[tokio::test]
async fn uncaught_exception_posts_error_and_exits() {
    let mut slot = node_slot("index.uncaught").await;
    let (error_type, error) = slot.invoke_error("{}").await;
    assert_eq!(error_type.as_deref(), Some("Error"));
    assert_eq!(error["errorMessage"], json!("async boom"));
    let status = slot.wait_exit().await;
    assert_eq!(status.code(), Some(129), "output:\n{}", slot.output());
}

#[tokio::test]
async fn invalid_event_json_is_syntax_error() {
    let slot = node_slot("index.asyncEcho").await;
    let (error_type, _error) = slot.invoke_error("{not json").await;
    assert_eq!(error_type.as_deref(), Some("SyntaxError"));
    assert_eq!(text(&slot.invoke_ok("[3]").await), "[3]");
}

#[tokio::test]
async fn console_uses_lambda_format() {
    let slot = node_slot("index.logs").await;
    let invocation = invocation("{}");
    let request_id = invocation.request_id.clone();
    slot.invoke(invocation).await;

    let output = slot.output();
    let info = format!("\t{request_id}\tINFO\thello {{ a: 1 }}\n");
    let error = format!("\t{request_id}\tERROR\tmulti\rline\n");
    assert!(output.contains(&info), "{output}");
    assert!(output.contains(&error), "{output}");
}

/// Starts the Node bootstrap with `handler` on `files` and returns the init error.
async fn init_error(handler: &str, files: &[(&str, &str)]) -> (Option<String>, serde_json::Value) {
    let mut slot = start(&node_offer(), handler, files).await;
    let (error_type, error) = slot.expect_init_error().await;
    let status = slot.wait_exit().await;
    assert_eq!(status.code(), Some(129), "exit status; output:\n{}", slot.output());
    assert!(error["trace"].is_array(), "{error}");
    let output = slot.output();
    assert!(
        output.contains("\tundefined\tERROR\tUncaught Exception \t{"),
        "{output}"
    );
    (error_type, error)
}

fn message(error: &serde_json::Value) -> &str {
    error["errorMessage"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn missing_module_is_import_module_error() {
    let (error_type, error) = init_error("missing.handler", &files()).await;
    assert_eq!(error_type.as_deref(), Some("Runtime.ImportModuleError"));
    assert!(
        message(&error).starts_with("Error: Cannot find module 'missing'"),
        "{error}"
    );
}

#[tokio::test]
async fn missing_dependency_is_import_module_error() {
    let (error_type, error) = init_error("app.handler", &[("app.js", "require('not-installed');\n")]).await;
    assert_eq!(error_type.as_deref(), Some("Runtime.ImportModuleError"));
    assert!(
        message(&error).starts_with("Error: Cannot find module 'not-installed'"),
        "{error}"
    );
}

#[tokio::test]
async fn syntax_error_is_user_code_syntax_error() {
    let files = [("app.js", "exports.handler = async (event => {\n")];
    let (error_type, error) = init_error("app.handler", &files).await;
    assert_eq!(error_type.as_deref(), Some("Runtime.UserCodeSyntaxError"));
    assert!(message(&error).starts_with("SyntaxError: "), "{error}");

    let files = [("app.mjs", "export const handler = async (event => {\n")];
    let (error_type, _error) = init_error("app.handler", &files).await;
    assert_eq!(error_type.as_deref(), Some("Runtime.UserCodeSyntaxError"));
}

#[tokio::test]
async fn missing_export_is_handler_not_found() {
    let (error_type, error) = init_error("index.nope", &files()).await;
    assert_eq!(error_type.as_deref(), Some("Runtime.HandlerNotFound"));
    assert_eq!(error["errorMessage"], json!("index.nope is undefined or not exported"));

    let (error_type, error) = init_error("index.notFunction", &files()).await;
    assert_eq!(error_type.as_deref(), Some("Runtime.HandlerNotFound"));
    assert_eq!(error["errorMessage"], json!("index.notFunction is not a function"));
}

#[tokio::test]
async fn malformed_handler_names_rejected() {
    let (error_type, error) = init_error("index", &files()).await;
    assert_eq!(error_type.as_deref(), Some("Runtime.MalformedHandlerName"));
    assert_eq!(error["errorMessage"], json!("Bad handler"));

    let (error_type, _error) = init_error("../index.handler", &files()).await;
    assert_eq!(error_type.as_deref(), Some("Runtime.MalformedHandlerName"));
}

#[tokio::test]
async fn load_time_exception_keeps_its_type() {
    let files = [("app.js", "throw new TypeError('load failed');\n")];
    let (error_type, error) = init_error("app.handler", &files).await;
    assert_eq!(error_type.as_deref(), Some("TypeError"));
    assert_eq!(error["errorMessage"], json!("load failed"));
}
