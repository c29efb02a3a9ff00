//! The no-op handler shared by the `bootstrap`, `baseline` and `start` binaries, so all run
//! the same code and a benchmark compares only what surrounds it.

use serde_json::{json, Value};

/// Ignores the event and returns `{"ok": true}`.
pub fn handle(_event: Value) -> Value {
    json!({ "ok": true })
}
