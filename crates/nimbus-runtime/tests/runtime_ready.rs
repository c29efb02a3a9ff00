//! Nimbus's own bootstraps post `/runtime/nimbus/runtime-ready` before they import the
//! function, so that the worker can split init into runtime start-up and function init.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nimbus_runtime::RuntimeOffer;

/// Time that each test module spends at import, so that a ready time taken after the
/// import would be at least this close to the end of init.
const IMPORT_DELAY: Duration = Duration::from_millis(300);

const PYTHON_APP: &str = r#"
import time

time.sleep(0.3)


def handler(event, context):
    return event
"#;

const NODE_APP: &str = r#"
const end = Date.now() + 300;
while (Date.now() < end) {}

exports.handler = async (event) => event;
"#;

/// Starts `offer` on a module that sleeps at import and checks that the runtime reported
/// ready at least `IMPORT_DELAY` before init ended.
async fn assert_ready_before_import(offer: &RuntimeOffer, module: (&str, &str)) {
    let slot = start(offer, "app.handler", &[module]).await;
    slot.expect_ready().await;
    let init_ended = Instant::now();

    let ready_at = slot.api.runtime_ready_at();
    assert!(
        ready_at.is_some(),
        "runtime never posted runtime-ready; output:\n{}",
        slot.output()
    );
    let function_init = init_ended.duration_since(ready_at.unwrap());
    assert!(
        function_init >= IMPORT_DELAY,
        "runtime-ready came {function_init:?} before init ended, less than the {IMPORT_DELAY:?} import, \
         so it was posted after the import"
    );

    assert_eq!(
        parse_json(&slot.invoke_ok(r#"{"a":1}"#).await),
        serde_json::json!({"a": 1})
    );
}

#[tokio::test]
async fn python_reports_ready_before_import() {
    assert_ready_before_import(&python_offer(), ("app.py", PYTHON_APP)).await;
}

#[tokio::test]
async fn node_reports_ready_before_import() {
    assert_ready_before_import(&node_offer(), ("app.js", NODE_APP)).await;
}
