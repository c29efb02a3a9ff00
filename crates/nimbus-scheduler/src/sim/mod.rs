//! `nimbus sim`: replays an invocation trace under the hybrid-histogram policy and under
//! a fixed keep-alive TTL, side by side, and generates synthetic traces.

pub mod engine;
pub mod generate;
pub mod metrics;
pub mod report;
pub mod trace;

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::predictor::PredictorConfig;
use crate::scaling::{DEFAULT_BURST_INTERVAL, DEFAULT_BURST_LIMIT};
use crate::warm_pool::{WarmPoolConfig, DEFAULT_BUFFER_FACTOR, MAX_PREDICTIVE_WARM};

pub use engine::{replay, Policy, SimConfig};
pub use generate::{generate_trace, GenerateConfig, GeneratedTrace};
pub use metrics::{FunctionCounts, PolicyReport};
pub use trace::{read_trace, write_trace, Trace};

/// Maximum length of a generated trace: two weeks, the length of the Azure 2019 trace.
const MAX_GENERATE_HOURS: f64 = 14.0 * 24.0;
/// Availability zones are named az-a to az-z.
const MAX_ZONES: u32 = 26;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("trace file {} not found. Generate one with `nimbus sim generate --out FILE`.", path.display())]
    TraceNotFound { path: PathBuf },
    // The I/O errors are part of the message and not a `source`, because the CLI prints
    // the source chain too and would repeat them.
    #[error("failed to read trace {}: {error}", path.display())]
    ReadTrace { path: PathBuf, error: io::Error },
    #[error("failed to write trace {}: {error}", path.display())]
    WriteTrace { path: PathBuf, error: io::Error },
    #[error("{}:{line}: {message}", path.display())]
    InvalidRow {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "trace {} has no invocations. Add rows after the header `{}`.",
        path.display(),
        trace::TRACE_HEADER
    )]
    EmptyTrace { path: PathBuf },
    #[error("invalid {option} `{value}`: {expected}")]
    InvalidArgument {
        option: &'static str,
        value: String,
        expected: String,
    },
    #[error(
        "function `{function}` needs {memory_mb} MB, but each host has only {host_memory_mb} MB. \
         Set --host-memory-mb to {memory_mb} or more."
    )]
    FunctionTooLarge {
        function: String,
        memory_mb: u64,
        host_memory_mb: u64,
    },
    #[error("failed to write output: {0}")]
    Output(io::Error),
}

impl From<io::Error> for SimError {
    fn from(error: io::Error) -> SimError {
        SimError::Output(error)
    }
}

/// Arguments of `nimbus sim`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: Option<SimCommand>,
    #[command(flatten)]
    pub replay: ReplayArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Write a synthetic trace shaped like the Azure Functions 2019 trace.
    Generate(GenerateArgs),
}

/// Options of a replay: `nimbus sim --trace FILE`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// CSV trace to replay, with the header `function,arrival_ms,duration_ms,memory_mb`.
    #[arg(long, value_name = "FILE", required = true)]
    pub trace: Option<PathBuf>,
    /// Time in ms that a cold start adds to an invocation.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub cold_start_ms: u64,
    /// Number of worker hosts.
    #[arg(long, default_value_t = 16)]
    pub hosts: u32,
    /// Number of availability zones. Hosts are assigned to them round robin.
    #[arg(long, default_value_t = 2)]
    pub zones: u32,
    /// Memory of each host in MB.
    #[arg(long, value_name = "MB", default_value_t = 32_768)]
    pub host_memory_mb: u64,
    /// Execution slots of each host, idle and busy.
    #[arg(long, default_value_t = 256)]
    pub host_slots: u32,
    /// Keep-alive in minutes of the fixed-TTL policy, and of the hybrid-histogram
    /// policy when its histogram is not used.
    #[arg(long, value_name = "MINUTES", default_value_t = 10)]
    pub ttl_minutes: u64,
    /// Time in ms between two warm-pool rounds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub round_interval_ms: u64,
    /// New execution environments allowed per function per burst interval.
    #[arg(long, default_value_t = DEFAULT_BURST_LIMIT)]
    pub burst_limit: u32,
    /// Burst interval in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_BURST_INTERVAL.as_secs())]
    pub burst_interval_s: u64,
    /// Minimum idle times a function needs before its histogram is used.
    #[arg(long, default_value_t = PredictorConfig::default().min_samples)]
    pub min_samples: u64,
    /// Maximum slots pre-warmed for one function in one warm-pool round.
    #[arg(long, default_value_t = MAX_PREDICTIVE_WARM)]
    pub max_predictive_warm: u32,
    /// Factor over the predicted concurrency that the hybrid-histogram policy keeps warm.
    #[arg(long, default_value_t = DEFAULT_BUFFER_FACTOR)]
    pub buffer_factor: f64,
}

/// Options of `nimbus sim generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Number of functions.
    #[arg(long, default_value_t = 200)]
    pub functions: u32,
    /// Length of the trace in hours.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub hours: f64,
    /// Seed of the random generator. The same seed writes the same trace.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Path of the CSV file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Runs `nimbus sim` and writes its report to stdout.
pub fn run(args: SimArgs) -> Result<(), SimError> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    run_to(args, &mut out)
}

/// Runs `nimbus sim` and writes its report to `out`.
pub fn run_to(args: SimArgs, out: &mut dyn Write) -> Result<(), SimError> {
    match args.command {
        Some(SimCommand::Generate(generate)) => run_generate(&generate, out),
        None => run_replay(&args.replay, out),
    }
}

fn run_generate(args: &GenerateArgs, out: &mut dyn Write) -> Result<(), SimError> {
    if args.functions == 0 {
        return Err(invalid("--functions", args.functions, "expected at least 1 function"));
    }
    if !(args.hours > 0.0 && args.hours <= MAX_GENERATE_HOURS) {
        return Err(invalid(
            "--hours",
            args.hours,
            format!("expected a number of hours greater than 0 and at most {MAX_GENERATE_HOURS}"),
        ));
    }
    let generated = generate_trace(&GenerateConfig {
        functions: args.functions,
        hours: args.hours,
        seed: args.seed,
    });
    write_trace(&args.out, &generated.trace)?;
    report::write_generated(out, &args.out, args.hours, &generated)?;
    Ok(())
}

fn run_replay(args: &ReplayArgs, out: &mut dyn Write) -> Result<(), SimError> {
    let path = args
        .trace
        .as_ref()
        .ok_or_else(|| invalid("--trace", "", "expected a CSV trace file"))?;
    let config = sim_config(args)?;

    let read_started = Instant::now();
    let trace = read_trace(path)?;
    let read_time = read_started.elapsed();
    if let Some(function) = trace.functions.iter().find(|f| f.memory_mb > config.host_memory_mb) {
        return Err(SimError::FunctionTooLarge {
            function: function.name.clone(),
            memory_mb: function.memory_mb,
            host_memory_mb: config.host_memory_mb,
        });
    }

    // The two replays are independent, so they run in parallel.
    let (hybrid, fixed) = std::thread::scope(|scope| {
        let hybrid = scope.spawn(|| replay(&trace, Policy::HybridHistogram, &config));
        let fixed = replay(&trace, Policy::FixedTtl, &config);
        (hybrid.join().expect("hybrid-histogram replay panicked"), fixed)
    });
    report::write_comparison(out, path, &trace, read_time, &config, &[hybrid, fixed])?;
    Ok(())
}

fn sim_config(args: &ReplayArgs) -> Result<SimConfig, SimError> {
    if args.hosts == 0 {
        return Err(invalid("--hosts", args.hosts, "expected at least 1 host"));
    }
    if args.zones == 0 || args.zones > args.hosts.min(MAX_ZONES) {
        return Err(invalid(
            "--zones",
            args.zones,
            format!(
                "expected 1 to {} zones (at most one per host)",
                args.hosts.min(MAX_ZONES)
            ),
        ));
    }
    if args.host_memory_mb == 0 {
        return Err(invalid(
            "--host-memory-mb",
            args.host_memory_mb,
            "expected at least 1 MB",
        ));
    }
    if args.host_slots == 0 {
        return Err(invalid("--host-slots", args.host_slots, "expected at least 1 slot"));
    }
    if args.ttl_minutes == 0 {
        return Err(invalid("--ttl-minutes", args.ttl_minutes, "expected at least 1 minute"));
    }
    if args.round_interval_ms == 0 {
        return Err(invalid(
            "--round-interval-ms",
            args.round_interval_ms,
            "expected at least 1 ms",
        ));
    }
    if args.burst_limit == 0 {
        return Err(invalid(
            "--burst-limit",
            args.burst_limit,
            "expected at least 1 environment",
        ));
    }
    if !(args.buffer_factor > 0.0 && args.buffer_factor <= 100.0) {
        return Err(invalid(
            "--buffer-factor",
            args.buffer_factor,
            "expected a factor greater than 0 and at most 100",
        ));
    }
    if args.burst_interval_s == 0 {
        return Err(invalid(
            "--burst-interval-s",
            args.burst_interval_s,
            "expected at least 1 second",
        ));
    }
    let predictor = PredictorConfig {
        fixed_ttl: Duration::from_secs(args.ttl_minutes * 60),
        min_samples: args.min_samples,
        ..PredictorConfig::default()
    };
    Ok(SimConfig {
        cold_start: Duration::from_millis(args.cold_start_ms),
        hosts: args.hosts,
        zones: args.zones,
        host_memory_mb: args.host_memory_mb,
        host_slots: args.host_slots,
        warm_pool_interval: Duration::from_millis(args.round_interval_ms),
        burst_limit: args.burst_limit,
        burst_interval: Duration::from_secs(args.burst_interval_s),
        warm_pool: WarmPoolConfig {
            buffer_factor: args.buffer_factor,
            max_predictive_warm: args.max_predictive_warm,
        },
        predictor,
    })
}

fn invalid(option: &'static str, value: impl ToString, expected: impl Into<String>) -> SimError {
    SimError::InvalidArgument {
        option,
        value: value.to_string(),
        expected: expected.into(),
    }
}
