//! Replays small hand-made traces and checks the simulator's counts against values
//! worked out by hand, then runs `nimbus sim` the way the CLI does.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use nimbus_scheduler::lifecycle::SlotState;
use nimbus_scheduler::predictor::PredictorConfig;
use nimbus_scheduler::sim::trace::parse_trace;
use nimbus_scheduler::sim::{
    generate_trace, replay, run_to, GenerateConfig, Policy, PolicyReport, SimArgs, SimConfig, SimError, Trace,
};
use nimbus_scheduler::warm_pool::WarmPoolConfig;

const MINUTE: u64 = 60_000;

fn config() -> SimConfig {
    SimConfig {
        cold_start: Duration::from_millis(250),
        hosts: 2,
        zones: 2,
        host_memory_mb: 4096,
        host_slots: 16,
        warm_pool_interval: Duration::from_secs(10),
        burst_limit: 1000,
        burst_interval: Duration::from_secs(10),
        warm_pool: WarmPoolConfig::default(),
        predictor: PredictorConfig::default(),
    }
}

/// Builds a trace from (function, arrival ms, duration ms, memory MB) rows.
fn trace(rows: &[(&str, u64, u64, u64)]) -> Trace {
    let mut csv = String::from("function,arrival_ms,duration_ms,memory_mb\n");
    for (function, arrival, duration, memory) in rows {
        csv.push_str(&format!("{function},{arrival},{duration},{memory}\n"));
    }
    parse_trace(csv.as_bytes(), Path::new("test.csv")).expect("test trace is valid")
}

fn periodic(function: &str, period_ms: u64, count: u64) -> Vec<(&str, u64, u64, u64)> {
    (0..count).map(|i| (function, i * period_ms, 1_000, 128)).collect()
}

fn assert_all_slots_terminated(report: &PolicyReport) {
    let counters = &report.transitions;
    assert_eq!(counters.total_rejected(), 0, "rejected transitions");
    assert_eq!(
        counters.accepted(SlotState::Cooling, SlotState::Terminated),
        report.slots_started,
        "every started slot must end terminated"
    );
}

#[test]
fn fixed_ttl_keeps_five_minute_timer_warm() {
    let trace = trace(&periodic("cron", 5 * MINUTE, 12));
    let report = replay(&trace, Policy::FixedTtl, &config());

    assert_eq!(report.served, 12);
    assert_eq!(report.cold_starts, 1, "only the first arrival is cold");
    assert_eq!(report.slots_started, 1);
    assert_eq!(report.added_latency_percentile(100.0), 250);
    assert_eq!(report.added_latency_percentile(50.0), 0);
    // The slot idles from each invocation's end (1.25 s, then 1 s after each arrival)
    // to the next arrival, and from the last end is not counted (trace horizon).
    let idle_ms = (5 * MINUTE - 1_250) + 10 * (5 * MINUTE - 1_000);
    assert_eq!(report.idle_memory_mb_ms, 128 * u128::from(idle_ms));
    assert_all_slots_terminated(&report);
}

#[test]
fn fixed_ttl_misses_twenty_minute_timer() {
    let trace = trace(&periodic("cron", 20 * MINUTE, 10));
    let report = replay(&trace, Policy::FixedTtl, &config());

    assert_eq!(report.cold_starts, 10, "the 10-minute TTL expires before every arrival");
    assert_eq!(report.expired, 9);
    assert_all_slots_terminated(&report);
}

#[test]
fn histogram_prewarms_twenty_minute_timer() {
    let trace = trace(&periodic("cron", 20 * MINUTE, 10));
    let report = replay(&trace, Policy::HybridHistogram, &config());

    // The first 6 arrivals are cold: the histogram needs 5 idle times, and the 6th
    // arrival brings the 5th. From then on the slot is pre-warmed 18 minutes after an
    // arrival and is ready before the next one.
    assert_eq!(report.cold_starts, 6);
    assert_eq!(report.prewarmed, 4);
    assert!(report.histogram_decisions > 0);
    assert_all_slots_terminated(&report);

    let fixed = replay(&trace, Policy::FixedTtl, &config());
    assert!(
        report.idle_memory_mb_ms < fixed.idle_memory_mb_ms,
        "histogram idle {} MB·ms vs fixed {} MB·ms",
        report.idle_memory_mb_ms,
        fixed.idle_memory_mb_ms
    );
}

#[test]
fn histogram_unloads_five_minute_timer_between_calls() {
    let trace = trace(&periodic("cron", 5 * MINUTE, 24));
    let histogram = replay(&trace, Policy::HybridHistogram, &config());
    let fixed = replay(&trace, Policy::FixedTtl, &config());

    assert_eq!(fixed.cold_starts, 1);
    assert!(histogram.cold_starts <= 6, "cold starts: {}", histogram.cold_starts);
    assert!(
        histogram.idle_memory_mb_ms * 2 < fixed.idle_memory_mb_ms,
        "pre-warming 30 s before each arrival idles far less than keeping the slot: {} vs {} MB·ms",
        histogram.idle_memory_mb_ms,
        fixed.idle_memory_mb_ms
    );
    assert_all_slots_terminated(&histogram);
}

#[test]
fn burst_limit_throttles_excess() {
    let rows: Vec<(&str, u64, u64, u64)> = (0..1_500).map(|_| ("spike", 0, 60_000, 1)).collect();
    let mut config = config();
    config.host_slots = 2_000;
    let report = replay(&trace(&rows), Policy::FixedTtl, &config);

    assert_eq!(report.slots_started, 1_000);
    assert_eq!(report.throttled_by_burst_limit, 500);
    assert_eq!(report.throttled_by_capacity, 0);
    assert_eq!(report.served, 1_000);
}

#[test]
fn full_cluster_throttles() {
    let mut config = config();
    config.hosts = 1;
    config.zones = 1;
    config.host_slots = 2;
    let report = replay(&trace(&[("f", 0, 5_000, 128); 3]), Policy::FixedTtl, &config);

    assert_eq!(report.served, 2);
    assert_eq!(report.throttled_by_capacity, 1);
    assert_eq!(report.throttles(), 1);
}

#[test]
fn full_host_evicts_idle_slot() {
    let mut config = config();
    config.hosts = 1;
    config.zones = 1;
    config.host_slots = 1;
    let report = replay(
        &trace(&[("a", 0, 1_000, 128), ("b", 10_000, 1_000, 128)]),
        Policy::FixedTtl,
        &config,
    );

    assert_eq!(report.evicted, 1);
    assert_eq!(report.served, 2);
    assert_eq!(report.throttles(), 0);
    assert_all_slots_terminated(&report);
}

#[test]
fn memory_limits_placement() {
    let mut config = config();
    config.hosts = 1;
    config.zones = 1;
    config.host_memory_mb = 1024;
    // Two concurrent 512 MB invocations fit; the third does not, and no slot is idle.
    let report = replay(&trace(&[("f", 0, 5_000, 512); 3]), Policy::FixedTtl, &config);
    assert_eq!(report.served, 2);
    assert_eq!(report.throttled_by_capacity, 1);
}

#[test]
fn concurrent_arrivals_each_cold() {
    let report = replay(&trace(&[("f", 0, 1_000, 128); 4]), Policy::FixedTtl, &config());
    assert_eq!(report.cold_starts, 4);
    assert_eq!(report.slots_started, 4);
    assert_eq!(report.added_latency_ms, vec![250; 4]);
}

#[test]
fn generated_trace_replays_consistently() {
    let generated = generate_trace(&GenerateConfig {
        functions: 40,
        hours: 0.5,
        seed: 11,
    });
    for policy in [Policy::HybridHistogram, Policy::FixedTtl] {
        let report = replay(&generated.trace, policy, &config());
        assert_eq!(report.served + report.throttles(), report.invocations, "{policy:?}");
        assert_eq!(report.added_latency_ms.len() as u64, report.served, "{policy:?}");
        assert!(report.cold_starts <= report.served, "{policy:?}");
        assert_all_slots_terminated(&report);
    }
}

/// `nimbus sim` as the CLI declares it.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Sim(SimArgs),
}

fn run_cli(args: &[&str]) -> Result<String, SimError> {
    let Command::Sim(sim) = Cli::try_parse_from(std::iter::once("nimbus").chain(args.iter().copied()))
        .expect("arguments parse")
        .command;
    let mut out = Vec::new();
    run_to(sim, &mut out)?;
    Ok(String::from_utf8(out).expect("output is UTF-8"))
}

#[test]
fn cli_generates_then_replays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.csv");
    let path = path.to_str().unwrap();

    let generated = run_cli(&[
        "sim",
        "generate",
        "--functions",
        "30",
        "--hours",
        "0.25",
        "--seed",
        "5",
        "--out",
        path,
    ])
    .unwrap();
    assert!(generated.starts_with("wrote "), "{generated}");
    assert!(generated.contains("30 functions"), "{generated}");

    let output = run_cli(&["sim", "--trace", path, "--hosts", "4"]).unwrap();
    assert!(output.contains("hybrid-histogram"), "{output}");
    assert!(output.contains("fixed-ttl-10m"), "{output}");
    for row in [
        "cold-start ratio",
        "added latency p50 (ms)",
        "added latency p99 (ms)",
        "idle memory-time (MB·s)",
        "throttles",
    ] {
        assert!(output.contains(row), "missing row {row}: {output}");
    }
}

#[test]
fn cli_requires_trace() {
    let error = Cli::try_parse_from(["nimbus", "sim"])
        .err()
        .expect("missing --trace is rejected");
    assert!(error.to_string().contains("--trace <FILE>"), "{error}");
}

#[test]
fn cli_rejects_trace_with_generate() {
    assert!(Cli::try_parse_from(["nimbus", "sim", "--trace", "t.csv", "generate", "--out", "x.csv"]).is_err());
}

#[test]
fn cli_reports_missing_file() {
    let error = run_cli(&["sim", "--trace", "/nonexistent/trace.csv"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "trace file /nonexistent/trace.csv not found. Generate one with `nimbus sim generate --out FILE`."
    );
}

#[test]
fn cli_reports_bad_row_with_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "function,arrival_ms,duration_ms,memory_mb\nf,0,10,128\nf,x,10,128\n",
    )
    .unwrap();
    let error = run_cli(&["sim", "--trace", path.to_str().unwrap()]).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:3: invalid arrival_ms `x`: expected a whole number of milliseconds, 0 or more",
            path.display()
        )
    );
}

#[test]
fn cli_rejects_bad_options() {
    let error = run_cli(&["sim", "generate", "--hours", "0", "--out", "/tmp/unused.csv"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid --hours `0`: expected a number of hours greater than 0 and at most 336"
    );
    let error = run_cli(&["sim", "generate", "--functions", "0", "--out", "/tmp/unused.csv"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid --functions `0`: expected at least 1 function"
    );
    let error = run_cli(&["sim", "--trace", "t.csv", "--zones", "3", "--hosts", "2"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid --zones `3`: expected 1 to 2 zones (at most one per host)"
    );
}

#[test]
fn cli_rejects_function_larger_than_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    std::fs::write(&path, "function,arrival_ms,duration_ms,memory_mb\nbig,0,10,4096\n").unwrap();
    let error = run_cli(&["sim", "--trace", path.to_str().unwrap(), "--host-memory-mb", "2048"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "function `big` needs 4096 MB, but each host has only 2048 MB. Set --host-memory-mb to 4096 or more."
    );
}

#[test]
fn cli_reports_unwritable_output() {
    let error = run_cli(&[
        "sim",
        "generate",
        "--functions",
        "2",
        "--out",
        "/nonexistent/dir/trace.csv",
    ])
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("failed to write trace /nonexistent/dir/trace.csv: "),
        "{error}"
    );
}

/// Generates and replays the one-hour, 200-function trace and prints the timings.
/// Run it in release mode:
/// `cargo test -p nimbus-scheduler --release --test sim -- --ignored --nocapture`
#[test]
#[ignore = "timing run; use --release"]
fn one_hour_two_hundred_functions_timing() {
    for seed in [1, 2, 3] {
        let started = Instant::now();
        let generated = generate_trace(&GenerateConfig {
            functions: 200,
            hours: 1.0,
            seed,
        });
        let generate_time = started.elapsed();
        // The defaults of `nimbus sim`.
        let config = SimConfig {
            hosts: 16,
            host_memory_mb: 32_768,
            host_slots: 256,
            ..config()
        };
        for policy in [Policy::HybridHistogram, Policy::FixedTtl] {
            let report = replay(&generated.trace, policy, &config);
            println!(
                "seed {seed}: {} invocations, generated in {:.2} s; {policy:?} replayed in {:.2} s \
                 (cold starts {}, throttles {})",
                report.invocations,
                generate_time.as_secs_f64(),
                report.replay_time.as_secs_f64(),
                report.cold_starts,
                report.throttles()
            );
        }
    }
}
