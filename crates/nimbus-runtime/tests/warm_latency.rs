//! Warm invoke latency through real bootstraps, as a guard against per-request stalls
//! in the Runtime API path.
//!
//! NOTE: this does not prove that TCP_NODELAY is set. The server and both bootstraps
//! write each request and response in one piece, so Nagle's algorithm has nothing to
//! delay and the medians stay under a millisecond without TCP_NODELAY too.

mod common;

use std::time::{Duration, Instant};

use common::*;

const INVOKES: usize = 50;
/// Far above the sub-millisecond invokes measured on a 2-core machine, and below the
/// 40 ms a Nagle stall adds, so the check holds on a loaded machine.
const MAX_MEDIAN: Duration = Duration::from_millis(20);

async fn median_invoke_time(slot: &TestSlot) -> Duration {
    slot.invoke_ok("{}").await; // warm-up
    let mut times = Vec::with_capacity(INVOKES);
    for _ in 0..INVOKES {
        let started = Instant::now();
        slot.invoke_ok(r#"{"k": "v"}"#).await;
        times.push(started.elapsed());
    }
    times.sort();
    times[INVOKES / 2]
}

#[tokio::test]
async fn python_warm_invokes_fast() {
    let slot = start(
        &python_offer(),
        "app.handler",
        &[("app.py", "def handler(event, context):\n    return event\n")],
    )
    .await;
    slot.expect_ready().await;
    let median = median_invoke_time(&slot).await;
    println!("python warm invoke median: {median:?}");
    assert!(median < MAX_MEDIAN, "median warm invoke {median:?}");
}

#[tokio::test]
async fn node_warm_invokes_fast() {
    let slot = start(
        &node_offer(),
        "index.handler",
        &[("index.js", "exports.handler = async (event) => event;\n")],
    )
    .await;
    slot.expect_ready().await;
    let median = median_invoke_time(&slot).await;
    println!("node warm invoke median: {median:?}");
    assert!(median < MAX_MEDIAN, "median warm invoke {median:?}");
}
