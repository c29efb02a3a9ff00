//! The `nimbus` binary: argument parsing and wiring only.

mod client;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nimbus_api::admin;
use nimbus_api::server::{self, ServerConfig};
use nimbus_store::ControlStore;

#[derive(Parser)]
#[command(
    name = "nimbus",
    version,
    about = "Nimbus: a self-hosted serverless function platform"
)]
struct Cli {
    #[command(flatten)]
    client: client::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the all-in-one server: API, control plane and embedded storage.
    Server(ServerArgs),
    /// Manage accounts and API keys directly in a data directory.
    Admin(AdminArgs),
    /// Compare warm-pool policies offline: replay an invocation trace, or generate one.
    Sim(nimbus_scheduler::sim::SimArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[derive(Args)]
struct ServerArgs {
    /// Address and port to serve the API on; port 0 picks a free port.
    #[arg(long, env = "NIMBUS_LISTEN", default_value = "127.0.0.1:9000")]
    listen: String,
    /// Directory of the embedded database, the code store and the generated key.
    #[arg(long, env = "NIMBUS_DATA_DIR", default_value = "./nimbus-data")]
    data_dir: PathBuf,
    /// API key of the default account (at least 16 characters). Without it, the first
    /// start generates a key and writes it to DATA_DIR/api-key.
    #[arg(long, env = "NIMBUS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Origin store for code packages: s3://BUCKET[/PREFIX] (credentials and endpoint
    /// from the AWS_* environment variables) or file:///DIR. Default: DATA_DIR/origin.
    #[arg(long, env = "NIMBUS_ORIGIN_URL")]
    origin_url: Option<String>,
    /// Region named in function ARNs and given to functions as AWS_REGION.
    #[arg(long, env = "NIMBUS_REGION", default_value = "us-east-1")]
    region: String,
    /// Sandbox for execution environments: namespace (namespaces and cgroups),
    /// process (plain processes, no isolation) or auto (namespace when the host allows it).
    #[arg(long, env = "NIMBUS_SANDBOX", default_value = "auto", value_parser = ["auto", "namespace", "process"])]
    sandbox: String,
    /// Seconds an idle execution environment is kept warm.
    #[arg(long, env = "NIMBUS_IDLE_TTL", default_value_t = 600)]
    idle_ttl_seconds: u64,
    /// Hours that function logs and invocation records are kept.
    #[arg(long, env = "NIMBUS_LOG_RETENTION", default_value_t = 24)]
    log_retention_hours: u64,
    /// Execution environments that each worker runs at once, idle and busy.
    #[arg(long, alias = "worker-slots", env = "NIMBUS_MAX_SLOTS", default_value_t = 64)]
    max_slots: usize,
    /// In-process worker hosts.
    #[arg(long, env = "NIMBUS_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    workers: u32,
    /// Memory in MB that each worker's execution environments may use together.
    /// Default: the host's memory.
    #[arg(long, env = "NIMBUS_WORKER_MEMORY_MB")]
    worker_memory_mb: Option<u64>,
    /// Availability zones, comma-separated, assigned to the workers round-robin.
    /// Default: REGION followed by "a".
    #[arg(long, env = "NIMBUS_AVAILABILITY_ZONES", value_delimiter = ',')]
    availability_zones: Vec<String>,
    /// Seconds before each retry of a failed asynchronous event, comma-separated;
    /// the number of values is the number of retries.
    #[arg(
        long,
        env = "NIMBUS_ASYNC_RETRY_DELAYS",
        default_value = "60,120",
        value_delimiter = ','
    )]
    async_retry_delays: Vec<u64>,
    /// New execution environments that one function may start per 10 seconds, cold
    /// starts and pre-warms together; cold starts beyond it get 429.
    #[arg(long, env = "NIMBUS_BURST_LIMIT", default_value_t = nimbus_scheduler::scaling::DEFAULT_BURST_LIMIT, value_parser = clap::value_parser!(u32).range(1..))]
    burst_limit: u32,
    /// Megabytes of unpacked code each worker keeps on disk (the L1 code cache);
    /// least recently used packages that no slot uses are removed first.
    #[arg(long, env = "NIMBUS_CODE_CACHE_MB", default_value_t = 2048)]
    code_cache_mb: u64,
    /// Megabytes of zipped code the server keeps in memory for all its workers (the L2
    /// code cache), in front of the origin store.
    #[arg(long, env = "NIMBUS_PACKAGE_CACHE_MB", default_value_t = 512)]
    package_cache_mb: u64,
    /// Milliseconds between the warm pool manager's passes, which initialize and
    /// retire provisioned concurrency and pre-warm and expire the dynamic warm pool.
    #[arg(long, env = "NIMBUS_WARM_POOL_INTERVAL_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    warm_pool_interval_ms: u64,
    /// Runtime ids that the workers offer, comma-separated, for example
    /// python3.11,nodejs20.x. Each must be detected on the host. Default: every runtime
    /// detected on the host.
    #[arg(long, env = "NIMBUS_RUNTIMES", value_delimiter = ',')]
    runtimes: Vec<String>,
}

#[derive(Args)]
struct AdminArgs {
    /// Data directory of the server to manage.
    #[arg(long, global = true, env = "NIMBUS_DATA_DIR", default_value = "./nimbus-data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// List worker hosts or change their state.
    #[command(subcommand)]
    Worker(WorkerCommand),
}

#[derive(Subcommand)]
enum WorkerCommand {
    /// List the worker hosts that the server reported, with their state and heartbeat.
    List,
    /// Set a host's state: draining (running invocations finish, no new ones),
    /// active, or maintenance. The running server applies it within a second.
    SetState {
        /// Host id, as `nimbus admin worker list` shows it (`1` or `host-1`).
        id: String,
        #[arg(value_parser = ["active", "draining", "maintenance"])]
        state: String,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account and print its first API key.
    Create {
        name: String,
        /// Concurrent executions allowed across the account's functions.
        #[arg(long, default_value_t = nimbus_store::DEFAULT_ACCOUNT_CONCURRENCY)]
        concurrency_limit: u32,
    },
    /// List accounts.
    List,
    /// Change an account's concurrency limit.
    SetLimit { name: String, concurrency_limit: u32 },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create another API key for an account and print it.
    Create {
        #[arg(long)]
        account: String,
    },
}

/// Lets a client command end quietly when its output pipe closes (`nimbus … | head`),
/// as other Unix tools do, instead of panicking on a failed print. Rust ignores
/// SIGPIPE by default; only client commands restore it, because the server must
/// survive a closed pipe.
fn restore_default_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler code, and
    // no other thread is changing signal dispositions at this point.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run_admin(args: AdminArgs) -> anyhow::Result<()> {
    let store = server::open_store(&args.data_dir).await?;
    match args.command {
        AdminCommand::Account(AccountCommand::Create {
            name,
            concurrency_limit,
        }) => {
            let (account, key) = admin::create_account(&store, &name, concurrency_limit).await?;
            println!("account:           {}", account.name);
            println!("account_id:        {}", account.account_id);
            println!("account_number:    {}", account.account_number);
            println!("concurrency_limit: {}", account.concurrency_limit);
            println!("api_key:           {key}");
            eprintln!("The API key is shown only once; store it now.");
        }
        AdminCommand::Account(AccountCommand::List) => {
            println!("{:<24} {:<14} {:>11}  ACCOUNT_ID", "NAME", "NUMBER", "CONCURRENCY");
            for account in admin::list_accounts(&store).await? {
                println!(
                    "{:<24} {:<14} {:>11}  {}",
                    account.name, account.account_number, account.concurrency_limit, account.account_id
                );
            }
        }
        AdminCommand::Account(AccountCommand::SetLimit {
            name,
            concurrency_limit,
        }) => {
            admin::set_concurrency_limit(&store, &name, concurrency_limit).await?;
            println!("account '{name}' may now run {concurrency_limit} concurrent executions");
        }
        AdminCommand::Worker(WorkerCommand::List) => {
            let now_ms = nimbus_api::invoke::now_ms();
            println!("{:<8} {:<16} {:<12} {:>14}", "ID", "ZONE", "STATE", "HEARTBEAT_AGE");
            for host in store.list_worker_hosts().await? {
                let age_s = (now_ms - host.last_heartbeat_ms).max(0) as f64 / 1000.0;
                println!(
                    "{:<8} {:<16} {:<12} {:>13.1}s",
                    format!("host-{}", host.host_id),
                    host.availability_zone,
                    host.desired_state,
                    age_s
                );
            }
        }
        AdminCommand::Worker(WorkerCommand::SetState { id, state }) => {
            let number = id.strip_prefix("host-").unwrap_or(&id);
            let host_id: u32 = number
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid host id '{id}'; use a number such as 1 or host-1"))?;
            let state = state.to_ascii_uppercase();
            if !store.set_worker_host_state(host_id, &state).await? {
                anyhow::bail!("worker host {id} was not found; `nimbus admin worker list` shows the hosts");
            }
            println!("host-{host_id} is now {state}");
        }
        AdminCommand::Key(KeyCommand::Create { account }) => {
            let key = admin::create_key(&store, &account).await?;
            println!("{key}");
            eprintln!("The API key is shown only once; store it now.");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // A slot's init process must start before any thread exists, because it forks
    // into new namespaces; so it is dispatched ahead of clap and tokio.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(nimbus_api::SANDBOX_INIT_COMMAND) {
        nimbus_sandbox::init_main(args[2..].to_vec());
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main())
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => {
            init_logging();
            let config = ServerConfig {
                listen: args.listen,
                data_dir: args.data_dir,
                api_key: args.api_key,
                origin_url: args.origin_url,
                region: args.region,
                sandbox: match args.sandbox.as_str() {
                    "namespace" => server::SandboxChoice::Namespace,
                    "process" => server::SandboxChoice::Process,
                    _ => server::SandboxChoice::Auto,
                },
                idle_ttl: Duration::from_secs(args.idle_ttl_seconds),
                log_retention: Duration::from_secs(args.log_retention_hours * 3600),
                max_slots: args.max_slots,
                workers: args.workers,
                worker_memory_mb: args.worker_memory_mb,
                availability_zones: args.availability_zones,
                async_retry_delays: args
                    .async_retry_delays
                    .iter()
                    .map(|s| Duration::from_secs(*s))
                    .collect(),
                burst_limit: args.burst_limit,
                code_cache_bytes: args.code_cache_mb * 1024 * 1024,
                package_cache_bytes: args.package_cache_mb * 1024 * 1024,
                warm_pool_interval: Duration::from_millis(args.warm_pool_interval_ms),
                runtimes: args
                    .runtimes
                    .iter()
                    .map(|id| id.trim().to_string())
                    .filter(|id| !id.is_empty())
                    .collect(),
            };
            server::run(config)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
        }
        Command::Admin(args) => run_admin(args).await.map(|()| ExitCode::SUCCESS),
        Command::Sim(args) => nimbus_scheduler::sim::run(args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        Command::Client(command) => {
            restore_default_sigpipe();
            client::run(&cli.client, command).await
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
