//! `nimbus-bench`: measures Nimbus side by side with its peers and with each
//! language's own HTTP server, and prints Markdown tables. `bench/run` installs the
//! peers, builds what this needs and runs it. Every run is bounded in time and count,
//! and all traffic stays on loopback.

mod load;
mod nimbus;
mod peers;
mod report;
mod scenarios;
mod service;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    version,
    about = "Benchmarks Nimbus side by side with its peers and per-language baselines"
)]
pub struct Args {
    /// The `nimbus` binary to measure.
    #[arg(long, default_value = "target/release/nimbus")]
    pub nimbus: PathBuf,
    /// The `bench` directory with the functions, baselines and installed peers.
    #[arg(long, default_value = "bench")]
    pub bench_dir: PathBuf,
    /// Directory for the tables (`results.md`) and the logs of every process.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// A run of under a minute that checks every scenario works; its numbers mean
    /// little.
    #[arg(long)]
    pub smoke: bool,
    /// Scenarios to run, comma-separated: warm, cold, sandbox, memory, control, async.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "warm,cold,sandbox,memory,control,async",
        value_parser = ["warm", "cold", "sandbox", "memory", "control", "async"]
    )]
    pub only: Vec<String>,
    /// Languages of the warm and cold scenarios, comma-separated: python, node, rust.
    #[arg(long, value_delimiter = ',', default_value = "python,node,rust", value_parser = ["python", "node", "rust"])]
    pub languages: Vec<String>,
    /// Leave out the peers (cargo-lambda and serverless-offline), for machines
    /// without them installed.
    #[arg(long)]
    pub no_peers: bool,
    /// Seconds of measured load per concurrency level.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Functions the control-plane scenario creates before measuring list latency.
    #[arg(long, default_value_t = 10_000)]
    pub functions: u32,
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        anyhow::bail!(
            "invalid --seconds {}: give a positive number of seconds, such as 5",
            args.seconds
        );
    }
    if args.smoke {
        args.seconds = args.seconds.min(0.5);
        args.functions = args.functions.min(200);
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    args.out = args.out.canonicalize()?;
    args.bench_dir = args.bench_dir.canonicalize().context("find the bench directory")?;
    args.nimbus = args
        .nimbus
        .canonicalize()
        .context("find the nimbus binary; build it first")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let tables = runtime.block_on(scenarios::run_all(&args))?;
    let mut markdown = String::new();
    for table in &tables {
        markdown.push_str(&table.markdown());
        markdown.push('\n');
    }
    print!("{markdown}");
    let path = args.out.join("results.md");
    std::fs::write(&path, &markdown)?;
    eprintln!("tables written to {}", path.display());
    Ok(())
}
