//! The benchmark scenarios. Each returns its tables and fills in the figures that
//! the targets table compares.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

use crate::load::{self, histogram, Bounds, Outcome};
use crate::nimbus::{Functions, Nimbus, Package};
use crate::peers::{self, Language, Target};
use crate::report::{cell, ratio, Table};
use crate::Args;

const CONCURRENCY: [usize; 3] = [1, 8, 64];

/// Figures that the targets table compares, one per target.
#[derive(Default)]
struct Summary {
    /// Nimbus minus baseline at concurrency 1, in ms, per language.
    overhead_p50: Vec<(Language, f64)>,
    overhead_p99: Vec<(Language, f64)>,
    /// Best throughput over the concurrency levels, per language.
    best_throughput: HashMap<&'static str, f64>,
    cold_platform_p50: Vec<(Language, f64)>,
    sandbox_per_second: Option<f64>,
    platform_kib_per_slot: Option<f64>,
}

pub async fn run_all(args: &Args) -> Result<Vec<Table>> {
    let mut summary = Summary::default();
    let mut tables = Vec::new();
    let wants = |name: &str| args.only.iter().any(|only| only == name);
    if wants("warm") {
        tables.extend(warm(args, &mut summary).await.context("warm invoke scenario")?);
    }
    if wants("cold") {
        tables.push(cold(args, &mut summary).await.context("cold start scenario")?);
    }
    if wants("sandbox") {
        tables.push(sandbox(args, &mut summary).context("sandbox scenario")?);
    }
    if wants("memory") {
        tables.push(memory(args, &mut summary).await.context("memory scenario")?);
    }
    if wants("control") {
        tables.push(control(args).await.context("control plane scenario")?);
    }
    if wants("async") {
        tables.push(asynchronous(args).await.context("async scenario")?);
    }
    tables.insert(0, targets(&summary));
    Ok(tables)
}

/// Starts a server for one scenario; its log is `OUT/nimbus-SCENARIO.log`.
fn start_nimbus(args: &Args, scenario: &str) -> Result<Nimbus> {
    Nimbus::start(
        &args.nimbus,
        &args.out.join(format!("nimbus-{scenario}.log")),
        &["--max-slots", "256", "--burst-limit", "100000"],
    )
}

fn functions(args: &Args, server: &Nimbus) -> Result<Functions> {
    let (python, node) = server.runtimes()?;
    Functions::load(&args.bench_dir, &python, &node)
}

fn package(functions: &Functions, language: Language) -> &Package {
    match language {
        Language::Python => &functions.python,
        Language::Node => &functions.node,
        Language::Rust => &functions.rust,
    }
}

fn languages(args: &Args) -> Result<Vec<Language>> {
    args.languages
        .iter()
        .map(|name| match name.as_str() {
            "python" => Ok(Language::Python),
            "node" => Ok(Language::Node),
            "rust" => Ok(Language::Rust),
            other => bail!("unknown language {other:?} in --languages; use python, node or rust"),
        })
        .collect()
}

fn bounds(args: &Args, concurrency: usize) -> Bounds {
    let warmup = match (args.smoke, concurrency) {
        (true, _) => 0.3,
        // 64 environments start on the first requests; let them all start first.
        (false, 64) => 4.0,
        (false, _) => 1.0,
    };
    Bounds {
        concurrency,
        warmup: Duration::from_secs_f64(warmup),
        duration: Duration::from_secs_f64(args.seconds),
        max_requests: 5_000_000,
    }
}

async fn measure(args: &Args, name: &str, call: &load::Call) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for concurrency in CONCURRENCY {
        let outcome = load::run(call, bounds(args, concurrency))
            .await
            .with_context(|| format!("load on {name} at concurrency {concurrency}"))?;
        if outcome.failures > 0 {
            bail!(
                "{} of {} calls to {name} at concurrency {concurrency} failed; the first: {}",
                outcome.failures,
                outcome.failures + outcome.requests,
                outcome.first_failure.unwrap_or_default()
            );
        }
        eprintln!(
            "  {name:<20} c={concurrency:<3} {:>9.0}/s  p50 {:.3} ms  p99 {:.3} ms  mean {:.3} ms  max {:.3} ms",
            outcome.per_second(),
            outcome.ms(0.5),
            outcome.ms(0.99),
            outcome.latency_us.mean() / 1000.0,
            outcome.latency_us.max() as f64 / 1000.0
        );
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

async fn warm(args: &Args, summary: &mut Summary) -> Result<Vec<Table>> {
    let server = start_nimbus(args, "warm")?;
    let functions = functions(args, &server)?;
    let mut tables = Vec::new();
    for language in languages(args)? {
        eprintln!("warm invokes, {}", language.label());
        let name = format!("warm-{}", language.label().replace('.', ""));
        server
            .create_function(&name, package(&functions, language), false)
            .await?;
        let nimbus = measure(args, "Nimbus", &server.call(&name)).await?;
        let peer = if args.no_peers {
            None
        } else {
            let log = args.out.join(format!("peer-{}.log", language.label()));
            match peers::start_peer(&args.bench_dir, language, &log)? {
                Some(target) => Some(measure_target(args, target).await?),
                None => None,
            }
        };
        let log = args.out.join(format!("baseline-{}.log", language.label()));
        let baseline = measure_target(args, peers::start_baseline(&args.bench_dir, language, &log)?).await?;
        tables.push(warm_table(language, &nimbus, peer.as_ref(), &baseline.1, summary));
    }
    server.service.stop(Duration::from_secs(10));
    Ok(tables)
}

async fn measure_target(args: &Args, target: Target) -> Result<(&'static str, Vec<Outcome>)> {
    let outcomes = measure(args, target.name, &target.call).await?;
    target.service.stop(Duration::from_secs(5));
    Ok((target.name, outcomes))
}

fn warm_table(
    language: Language,
    nimbus: &[Outcome],
    peer: Option<&(&'static str, Vec<Outcome>)>,
    baseline: &[Outcome],
    summary: &mut Summary,
) -> Table {
    let mut columns = vec!["metric", "Nimbus"];
    if let Some((name, _)) = peer {
        columns.push(name);
    }
    columns.push("baseline");
    let peer_ratio = peer.map(|(name, _)| format!("Nimbus ÷ {name}"));
    if let Some(header) = &peer_ratio {
        columns.push(header);
    }
    columns.push("Nimbus ÷ baseline");
    let mut table = Table::new(&format!("Warm invokes: no-op {} function", language.label()), &columns);
    let mut add = |metric: String, value: &dyn Fn(&[Outcome]) -> f64, decimals: usize| {
        let n = value(nimbus);
        let b = value(baseline);
        let mut row = vec![metric, cell(Some(n), decimals)];
        let p = peer.map(|(_, outcomes)| value(outcomes));
        if peer.is_some() {
            row.push(cell(p, decimals));
        }
        row.push(cell(Some(b), decimals));
        if peer.is_some() {
            row.push(ratio(Some(n), p));
        }
        row.push(ratio(Some(n), Some(b)));
        table.row(row);
    };
    for (i, concurrency) in CONCURRENCY.iter().enumerate() {
        add(
            format!("invokes/s, concurrency {concurrency}"),
            &|o| o[i].per_second(),
            0,
        );
    }
    let last = CONCURRENCY.len() - 1;
    for (i, label) in [(0, "concurrency 1"), (last, "saturation (concurrency 64)")] {
        add(format!("p50 ms, {label}"), &|o| o[i].ms(0.5), 3);
        add(format!("p99 ms, {label}"), &|o| o[i].ms(0.99), 3);
    }
    // The platform's share: what the platform adds to the language's own server.
    for (i, label) in [(0, "concurrency 1"), (last, "saturation")] {
        for (quantile, q) in [(0.5, "p50"), (0.99, "p99")] {
            let base = baseline[i].ms(quantile);
            let mut row = vec![
                format!("platform share of {q} ms, {label}"),
                cell(Some(nimbus[i].ms(quantile) - base), 3),
            ];
            if let Some((_, outcomes)) = peer {
                row.push(cell(Some(outcomes[i].ms(quantile) - base), 3));
            }
            row.push("0".into());
            if peer.is_some() {
                row.push("–".into());
            }
            row.push("–".into());
            table.row(row);
        }
    }
    summary
        .overhead_p50
        .push((language, nimbus[0].ms(0.5) - baseline[0].ms(0.5)));
    summary
        .overhead_p99
        .push((language, nimbus[0].ms(0.99) - baseline[0].ms(0.99)));
    let best = nimbus.iter().map(Outcome::per_second).fold(0.0, f64::max);
    summary.best_throughput.insert(language.label(), best);
    table
}

/// One cold start as Nimbus reported it in `X-Cold-Start`, in ms.
#[derive(Default)]
struct ColdStart {
    sandbox: f64,
    code: f64,
    tier: String,
    runtime: Option<f64>,
    init: f64,
}

fn parse_cold_start(header: &str) -> Result<ColdStart> {
    let mut cold = ColdStart::default();
    for part in header.split(';') {
        let (key, value) = part.split_once('=').context("a part without '='")?;
        let millis = |text: &str| -> Result<f64> {
            text.trim_end_matches("ms")
                .parse::<f64>()
                .with_context(|| format!("{key}={text} in X-Cold-Start {header:?}"))
        };
        match key {
            "sandbox" => cold.sandbox = millis(value)?,
            "code" => {
                let (tier, time) = value.split_once(',').context("code without a tier")?;
                cold.tier = tier.to_string();
                cold.code = millis(time)?;
            }
            "runtime" => cold.runtime = Some(millis(value)?),
            "init" => cold.init = millis(value)?,
            _ => {}
        }
    }
    Ok(cold)
}

fn quantile_ms(values: &[f64], quantile: f64) -> f64 {
    let mut histogram: Histogram<u64> = histogram();
    for value in values {
        let _ = histogram.record(((value * 1000.0).round() as u64).max(1));
    }
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

async fn cold(args: &Args, summary: &mut Summary) -> Result<Table> {
    let samples = if args.smoke { 3 } else { 40 };
    let server = start_nimbus(args, "cold")?;
    let functions = functions(args, &server)?;
    let mut table = Table::new(
        "Cold starts",
        &[
            "metric",
            "Nimbus",
            "baseline (language's own start)",
            "Nimbus − baseline",
        ],
    );
    for language in languages(args)? {
        eprintln!("cold starts, {}", language.label());
        let label = language.label();
        let mut totals = Vec::new();
        let mut phases = Vec::new();
        for i in 0..samples {
            let name = format!("cold-{}-{i}", label.replace('.', ""));
            server
                .create_function(&name, package(&functions, language), false)
                .await?;
            let (elapsed, headers) = server.invoke(&name).await?;
            let header = headers
                .get("x-cold-start")
                .and_then(|value| value.to_str().ok())
                .with_context(|| format!("the first invoke of {name} was not a cold start"))?;
            phases.push(parse_cold_start(header)?);
            totals.push(elapsed.as_secs_f64() * 1000.0);
        }
        let mut starts = Vec::new();
        for _ in 0..samples {
            starts.push(baseline_start(args, language)? * 1000.0);
        }
        for (quantile, q) in [(0.5, "p50"), (0.99, "p99")] {
            let n = quantile_ms(&totals, quantile);
            let b = quantile_ms(&starts, quantile);
            table.row(vec![
                format!("{label}: total {q} ms"),
                cell(Some(n), 2),
                cell(Some(b), 2),
                cell(Some(n - b), 2),
            ]);
            if quantile == 0.5 {
                summary.cold_platform_p50.push((language, n - b));
            }
        }
        let sandbox: Vec<f64> = phases.iter().map(|p| p.sandbox).collect();
        let code: Vec<f64> = phases.iter().map(|p| p.code).collect();
        let runtime: Vec<f64> = phases.iter().filter_map(|p| p.runtime).collect();
        let init: Vec<f64> = phases.iter().map(|p| p.init).collect();
        let tiers: Vec<&str> = phases.iter().map(|p| p.tier.as_str()).collect();
        let l1 = tiers.iter().filter(|tier| **tier == "L1").count();
        for (phase, values) in [
            ("sandbox", &sandbox),
            ("code", &code),
            ("runtime start", &runtime),
            ("function init", &init),
        ] {
            if values.is_empty() {
                continue;
            }
            table.row(vec![
                format!("{label}: {phase} p50 ms"),
                cell(Some(quantile_ms(values, 0.5)), 2),
                "–".into(),
                "–".into(),
            ]);
        }
        table.row(vec![
            format!("{label}: code served from L1"),
            format!("{l1} of {}", tiers.len()),
            "–".into(),
            "–".into(),
        ]);
    }
    table.note(format!(
        "Nimbus: {samples} new functions per language, each invoked once, timed by the client. \
         Baseline: the language started {samples} times to load the same handler, call it once and print \
         its result, timed from spawn to exit."
    ));
    server.service.stop(Duration::from_secs(10));
    Ok(table)
}

/// Runs the language's start command once and returns seconds from spawn to its
/// exit with the handler's output.
fn baseline_start(args: &Args, language: Language) -> Result<f64> {
    let mut command = peers::start_command(&args.bench_dir, language);
    let started = Instant::now();
    let output = command.output().with_context(|| format!("run {command:?}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !stdout.contains("\"ok\"") {
        bail!(
            "{command:?} ended {} with {stdout:?} and {:?}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(elapsed)
}

fn sandbox(args: &Args, summary: &mut Summary) -> Result<Table> {
    use nimbus_sandbox::{NamespaceBackend, NamespaceOptions, SandboxBackend, SlotSpec};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    eprintln!("sandbox creations");
    let temp = tempfile::Builder::new().prefix("nimbus-bench-sandbox-").tempdir()?;
    let code_dir = temp.path().join("code");
    let runtime_dir = temp.path().join("runtime");
    for dir in [&code_dir, &runtime_dir] {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755))?;
    let options = NamespaceOptions {
        cgroup_parent: "nimbus-bench".into(),
        ..NamespaceOptions::default()
    };
    let (init, prefix) = nimbus_sandbox::init_program(&args.nimbus);
    let backend = Arc::new(NamespaceBackend::new(init, prefix, temp.path().join("work"), options)?);
    let isolation = format!("{:?}", backend.isolation());
    let protections = backend.protections().disabled();
    let duration = Duration::from_secs_f64(args.seconds.max(0.5));
    let created = Arc::new(AtomicU64::new(0));
    let threads = 2;
    let started = Instant::now();
    let results: Vec<Result<SandboxLatency>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let backend = backend.clone();
                let created = created.clone();
                let code_dir = code_dir.clone();
                let runtime_dir = runtime_dir.clone();
                scope.spawn(move || -> Result<SandboxLatency> {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    // The backend starts the slot with tokio's process API.
                    let _context = runtime.enter();
                    let mut latency = SandboxLatency::default();
                    let mut n = 0u64;
                    while started.elapsed() < duration {
                        let spec = SlotSpec {
                            slot_id: format!("bench-{}-{thread}-{n}", std::process::id()),
                            code_dir: code_dir.clone(),
                            runtime_dir: runtime_dir.clone(),
                            memory_mb: 128,
                            tmp_mb: 16,
                            pids_max: 64,
                            argv: vec!["/bin/true".into()],
                            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
                        };
                        let one = Instant::now();
                        let slot = backend.spawn(&spec)?;
                        let _ = latency.spawn.record(one.elapsed().as_micros().max(1) as u64);
                        runtime.block_on(slot.control.wait());
                        let destroying = Instant::now();
                        runtime.block_on(slot.control.destroy());
                        let _ = latency.destroy.record(destroying.elapsed().as_micros().max(1) as u64);
                        let _ = latency.whole.record(one.elapsed().as_micros().max(1) as u64);
                        created.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                    }
                    Ok(latency)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a sandbox thread panicked"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut latency = SandboxLatency::default();
    for result in results {
        let result = result?;
        latency.spawn.add(result.spawn)?;
        latency.destroy.add(result.destroy)?;
        latency.whole.add(result.whole)?;
    }
    let count = created.load(Ordering::Relaxed);
    let per_second = count as f64 / elapsed;
    summary.sandbox_per_second = Some(per_second);
    let mut table = Table::new("Sandbox creations", &["metric", "Nimbus"]);
    table.row(vec![
        "sandboxes created and destroyed per second".into(),
        cell(Some(per_second), 0),
    ]);
    for (label, histogram) in [
        ("start (until the runtime runs)", &latency.spawn),
        ("destroy (kill, reap, remove cgroups)", &latency.destroy),
        ("whole cycle", &latency.whole),
    ] {
        for (quantile, q) in [(0.5, "p50"), (0.99, "p99")] {
            table.row(vec![
                format!("{label} {q} ms"),
                cell(Some(histogram.value_at_quantile(quantile) as f64 / 1000.0), 2),
            ]);
        }
    }
    table.note(format!(
        "{count} sandboxes on {threads} threads in {elapsed:.1} s, isolation {isolation}; protections off: {}.",
        if protections.is_empty() {
            "none".to_string()
        } else {
            protections.join(", ")
        }
    ));
    Ok(table)
}

/// Latencies of the sandbox cycles of one thread, in microseconds.
struct SandboxLatency {
    spawn: Histogram<u64>,
    destroy: Histogram<u64>,
    whole: Histogram<u64>,
}

impl Default for SandboxLatency {
    fn default() -> Self {
        SandboxLatency {
            spawn: histogram(),
            destroy: histogram(),
            whole: histogram(),
        }
    }
}

/// Proportional set size of a process in KiB, from `/proc/PID/smaps_rollup`.
fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Lists every process below `root`, with whether it is a slot's init process.
fn descendants(root: u32) -> Vec<(u32, bool)> {
    let mut parents: HashMap<u32, u32> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The parent pid is the second field after the parenthesized command.
            if let Some(ppid) = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse().ok())
            {
                parents.insert(pid, ppid);
            }
        }
    }
    let is_below = |mut pid: u32| {
        while let Some(&parent) = parents.get(&pid) {
            if parent == root {
                return true;
            }
            pid = parent;
        }
        false
    };
    parents
        .keys()
        .filter(|pid| is_below(**pid))
        .map(|&pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let init = String::from_utf8_lossy(&cmdline).contains("sandbox-init");
            (pid, init)
        })
        .collect()
}

/// Memory of the server and of its slots' processes, in KiB.
struct Footprint {
    server: u64,
    inits: u64,
    runtimes: u64,
    processes: usize,
}

fn footprint(server: &Nimbus) -> Footprint {
    let root = server.service.pid();
    let mut footprint = Footprint {
        server: pss_kib(root).unwrap_or(0),
        inits: 0,
        runtimes: 0,
        processes: 0,
    };
    for (pid, init) in descendants(root) {
        let kib = pss_kib(pid).unwrap_or(0);
        footprint.processes += 1;
        if init {
            footprint.inits += kib;
        } else {
            footprint.runtimes += kib;
        }
    }
    footprint
}

async fn memory(args: &Args, summary: &mut Summary) -> Result<Table> {
    let slots: u32 = if args.smoke { 3 } else { 50 };
    let server = start_nimbus(args, "memory")?;
    let functions = functions(args, &server)?;
    let mut table = Table::new(
        &format!("Memory per idle warm slot ({slots} provisioned slots per language)"),
        &["metric", "Python", "Node.js", "Rust"],
    );
    let mut platform = Vec::new();
    let mut total = Vec::new();
    let mut server_part = Vec::new();
    let mut init_part = Vec::new();
    for language in Language::ALL {
        eprintln!("memory per idle slot, {}", language.label());
        let name = format!("memory-{}", language.label().replace('.', ""));
        server
            .create_function(&name, package(&functions, language), true)
            .await?;
        server.invoke(&name).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = footprint(&server);
        server.provision(&name, slots, Duration::from_secs(300)).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = footprint(&server);
        let per_slot = |before: u64, after: u64| after.saturating_sub(before) as f64 / slots as f64;
        let server_kib = per_slot(before.server, after.server);
        let init_kib = per_slot(before.inits, after.inits);
        let runtime_kib = per_slot(before.runtimes, after.runtimes);
        server_part.push(server_kib);
        init_part.push(init_kib);
        platform.push(server_kib + init_kib);
        total.push(server_kib + init_kib + runtime_kib);
        if language == Language::Python {
            summary.platform_kib_per_slot = Some(server_kib + init_kib);
        }
        if after.processes <= before.processes {
            bail!("provisioning {slots} slots of {name} started no processes");
        }
    }
    let row = |label: &str, values: &[f64]| {
        let mut row = vec![label.to_string()];
        row.extend(values.iter().map(|v| cell(Some(*v), 0)));
        row
    };
    table.row(row("platform KiB per slot (server + slot init processes)", &platform));
    table.row(row("  of which the server process", &server_part));
    table.row(row("  of which the slot's two init processes", &init_part));
    table.row(row("total KiB per slot (platform + runtime)", &total));
    table.note(
        "Proportional set size (PSS) from /proc/PID/smaps_rollup, before and after provisioning the slots, \
         divided by their number. Kernel memory for namespaces and cgroups is not included.",
    );
    server.service.stop(Duration::from_secs(20));
    Ok(table)
}

async fn control(args: &Args) -> Result<Table> {
    eprintln!("control plane: creating {} functions", args.functions);
    let server = start_nimbus(args, "control")?;
    let functions = functions(args, &server)?;
    let package = functions.python.clone();
    let workers = 8u32;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let server = std::sync::Arc::new(server);
    for worker in 0..workers {
        let server = server.clone();
        let package = package.clone();
        let count = args.functions;
        tasks.spawn(async move {
            let mut latency = histogram();
            let mut i = worker;
            while i < count {
                let one = Instant::now();
                server.create_function(&format!("fn-{i:05}"), &package, false).await?;
                let _ = latency.record(one.elapsed().as_micros().max(1) as u64);
                i += workers;
            }
            anyhow::Ok(latency)
        });
    }
    let mut create_latency = histogram();
    while let Some(result) = tasks.join_next().await {
        create_latency.add(result??)?;
    }
    let create_seconds = started.elapsed().as_secs_f64();
    let creates_per_second = args.functions as f64 / create_seconds;

    let mut first_page = histogram();
    let mut everything = histogram();
    let rounds = if args.smoke { 5 } else { 100 };
    for round in 0..rounds {
        let one = Instant::now();
        let page = server.list_functions(50).await?;
        let _ = first_page.record(one.elapsed().as_micros().max(1) as u64);
        if page["functions"].as_array().map_or(0, Vec::len) != 50.min(args.functions as usize) {
            bail!("a first page of functions did not have 50 entries");
        }
        if round % 10 == 0 {
            let one = Instant::now();
            let all = server.list_functions(10_000).await?;
            let _ = everything.record(one.elapsed().as_micros().max(1) as u64);
            let listed = all["functions"].as_array().map_or(0, Vec::len);
            if listed != (args.functions as usize).min(10_000) {
                bail!("listing returned {listed} of {} functions", args.functions);
            }
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut table = Table::new(
        &format!("Control plane ({} functions, embedded SQLite)", args.functions),
        &["metric", "Nimbus"],
    );
    table.row(vec![
        format!("function creates per second ({workers} clients)"),
        cell(Some(creates_per_second), 0),
    ]);
    table.row(vec!["create p50 ms".into(), cell(Some(ms(&create_latency, 0.5)), 2)]);
    table.row(vec!["create p99 ms".into(), cell(Some(ms(&create_latency, 0.99)), 2)]);
    table.row(vec![
        "list first page (50) p50 ms".into(),
        cell(Some(ms(&first_page, 0.5)), 2),
    ]);
    table.row(vec![
        "list first page (50) p99 ms".into(),
        cell(Some(ms(&first_page, 0.99)), 2),
    ]);
    table.row(vec![
        format!("list all {} in one page p50 ms", args.functions.min(10_000)),
        cell(Some(ms(&everything, 0.5)), 2),
    ]);
    table
        .note("The peers have no control plane: cargo-lambda and serverless-offline serve functions from local files.");
    if let Ok(server) = std::sync::Arc::try_unwrap(server) {
        server.service.stop(Duration::from_secs(10));
    }
    Ok(table)
}

async fn asynchronous(args: &Args) -> Result<Table> {
    let events: u32 = if args.smoke { 100 } else { 5_000 };
    let paced: u32 = if args.smoke { 20 } else { 500 };
    let rate = 100.0;
    eprintln!("async: {events} events as fast as possible, then {paced} at {rate}/s");
    let server = std::sync::Arc::new(start_nimbus(args, "async")?);
    let functions = functions(args, &server)?;
    for name in ["async-burst", "async-paced"] {
        server.create_function(name, &functions.python, false).await?;
        server.invoke(name).await?;
    }

    // A burst: the clients queue events as fast as the server accepts them.
    let workers = 16u32;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let server = server.clone();
        tasks.spawn(async move {
            let mut accepted = Vec::new();
            let mut i = worker;
            while i < events {
                let id = server.invoke_event("async-burst").await?;
                accepted.push((id, SystemTime::now()));
                i += workers;
            }
            anyhow::Ok(accepted)
        });
    }
    let mut burst = HashMap::new();
    while let Some(result) = tasks.join_next().await {
        burst.extend(result??);
    }
    let accepts_per_second = events as f64 / started.elapsed().as_secs_f64();
    let burst_lag = wait_for_events(args, &server, "async-burst", &burst).await?;
    let drained_seconds = started.elapsed().as_secs_f64();

    // Paced: one event every 1/rate seconds, so none waits behind another.
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut paced_at = HashMap::new();
    for _ in 0..paced {
        interval.tick().await;
        let id = server.invoke_event("async-paced").await?;
        paced_at.insert(id, SystemTime::now());
    }
    let paced_lag = wait_for_events(args, &server, "async-paced", &paced_at).await?;

    let ms = |lag: &Histogram<u64>, q: f64| lag.value_at_quantile(q) as f64 / 1000.0;
    let mut table = Table::new("Async invokes", &["metric", "Nimbus"]);
    table.row(vec![
        format!("events accepted per second ({workers} clients, {events} events)"),
        cell(Some(accepts_per_second), 0),
    ]);
    table.row(vec![
        "events run per second, first accept to last record".into(),
        cell(Some(events as f64 / drained_seconds), 0),
    ]);
    table.row(vec![
        "lag from accept to start p50 ms, burst".into(),
        cell(Some(ms(&burst_lag, 0.5)), 1),
    ]);
    table.row(vec![
        "lag from accept to start p99 ms, burst".into(),
        cell(Some(ms(&burst_lag, 0.99)), 1),
    ]);
    table.row(vec![
        format!("lag from accept to start p50 ms, {rate:.0} events/s"),
        cell(Some(ms(&paced_lag, 0.5)), 1),
    ]);
    table.row(vec![
        format!("lag from accept to start p99 ms, {rate:.0} events/s"),
        cell(Some(ms(&paced_lag, 0.99)), 1),
    ]);
    table.note(
        "Lag is the record's start time (millisecond precision) minus the time the client read the 202. \
         In the burst, events wait behind earlier ones; paced, each event finds the queue empty.",
    );
    if let Ok(server) = std::sync::Arc::try_unwrap(server) {
        server.service.stop(Duration::from_secs(10));
    }
    Ok(table)
}

/// Waits until every event in `accepted_at` has a successful record and returns
/// the lags from accept to start in microseconds.
async fn wait_for_events(
    args: &Args,
    server: &Nimbus,
    name: &str,
    accepted_at: &HashMap<String, SystemTime>,
) -> Result<Histogram<u64>> {
    let deadline = Instant::now() + Duration::from_secs(if args.smoke { 60 } else { 300 });
    let records = loop {
        let records = server.invocations(name, 10_000).await?;
        let done = records
            .iter()
            .filter(|r| accepted_at.contains_key(r["request_id"].as_str().unwrap_or_default()))
            .count();
        if done >= accepted_at.len() {
            break records;
        }
        if Instant::now() > deadline {
            bail!(
                "only {done} of {} events of {name} ran within the deadline",
                accepted_at.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut lag = histogram();
    for record in &records {
        let Some(accepted) = record["request_id"].as_str().and_then(|id| accepted_at.get(id)) else {
            continue;
        };
        if record["status"] != "SUCCESS" {
            bail!("event {} ended {}", record["request_id"], record["status"]);
        }
        let start = time::OffsetDateTime::parse(
            record["start_time"].as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )?;
        let micros = (start - time::OffsetDateTime::from(*accepted))
            .whole_microseconds()
            .max(1) as u64;
        let _ = lag.record(micros);
    }
    Ok(lag)
}

fn targets(summary: &Summary) -> Table {
    let mut table = Table::new("Targets", &["target", "goal", "measured", "distance"]);
    let mut add = |target: String, goal: f64, measured: Option<f64>, higher_is_better: bool, unit: &str| {
        // Milliseconds with three decimals; rates and sizes in whole units.
        let decimals = if unit == "ms" { 3 } else { 0 };
        // A scenario left out of this run has no row.
        let Some(m) = measured else { return };
        let distance = if (higher_is_better && m >= goal) || (!higher_is_better && m <= goal) {
            "met".to_string()
        } else if higher_is_better {
            format!("{:.2}× of goal", m / goal)
        } else {
            format!("{} {unit} over", cell(Some(m - goal), decimals))
        };
        let comparison = if higher_is_better { "≥" } else { "≤" };
        table.row(vec![
            target,
            format!("{comparison} {} {unit}", cell(Some(goal), decimals)),
            format!("{} {unit}", cell(Some(m), decimals)),
            distance,
        ]);
    };
    for (language, value) in &summary.overhead_p50 {
        add(
            format!("warm overhead p50, {}", language.label()),
            0.1,
            Some(*value),
            false,
            "ms",
        );
    }
    for (language, value) in &summary.overhead_p99 {
        add(
            format!("warm overhead p99, {}", language.label()),
            0.5,
            Some(*value),
            false,
            "ms",
        );
    }
    add(
        "no-op Python invokes/s".into(),
        10_000.0,
        summary.best_throughput.get("Python").copied(),
        true,
        "/s",
    );
    add(
        "no-op Rust invokes/s".into(),
        40_000.0,
        summary.best_throughput.get("Rust").copied(),
        true,
        "/s",
    );
    for (language, value) in &summary.cold_platform_p50 {
        add(
            format!("platform-added cold start p50, {}", language.label()),
            1.0,
            Some(*value),
            false,
            "ms",
        );
    }
    add(
        "sandbox creations/s".into(),
        1_000.0,
        summary.sandbox_per_second,
        true,
        "/s",
    );
    add(
        "platform memory per idle slot".into(),
        256.0,
        summary.platform_kib_per_slot,
        false,
        "KiB",
    );
    table.note(
        "Warm overhead is Nimbus's p50 or p99 minus the language baseline's at concurrency 1. Throughput is \
         the best of concurrency 1, 8 and 64.",
    );
    table
}
