//! `nimbus server`: opens the embedded stores, makes sure an account and key exist,
//! and serves the API until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nimbus_code::{OriginError, OriginStore, PackageLimits};
use nimbus_store::{
    CachedStore, ControlStore, SqliteStore, StoreError, DEFAULT_ACCOUNT_CONCURRENCY, DEFAULT_CACHE_TTL,
};

use crate::auth::{generate_key, hash_key, key_prefix, MIN_KEY_LEN};
use crate::AppState;

pub const DEFAULT_ACCOUNT: &str = "default";
pub const KEY_FILE: &str = "api-key";
pub const DATABASE_FILE: &str = "nimbus.db";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Key of the default account; without it the first start generates one.
    pub api_key: Option<String>,
    /// `s3://bucket/prefix` or `file:///dir`; the data directory's `origin` folder
    /// when absent.
    pub origin_url: Option<String>,
    pub region: String,
    pub sandbox: SandboxChoice,
    /// Idle slots are destroyed after this long.
    pub idle_ttl: Duration,
    /// Log lines and invocation records are deleted after this long.
    pub log_retention: Duration,
    /// Slots each in-process worker runs at once.
    pub max_slots: usize,
    /// In-process worker hosts, at least 1.
    pub workers: u32,
    /// Memory that each worker's slots may use together, in MB; the host's memory
    /// when absent.
    pub worker_memory_mb: Option<u64>,
    /// Availability zones, assigned to the workers round-robin.
    pub availability_zones: Vec<String>,
    /// Delays before the retries of a failed asynchronous event.
    pub async_retry_delays: Vec<Duration>,
    /// New execution environments per function per 10 seconds.
    pub burst_limit: u32,
    /// Bytes of unpacked code each worker keeps on disk (L1).
    pub code_cache_bytes: u64,
    /// Bytes of zipped code the server keeps in memory for all workers (L2).
    pub package_cache_bytes: u64,
    /// How often the warm pool manager reconciles provisioned concurrency and the
    /// dynamic warm pool.
    pub warm_pool_interval: Duration,
    /// Runtime ids that the workers offer, for example `python3.11`. Every id must be one
    /// that the host has. Empty means every runtime detected on the host.
    pub runtimes: Vec<String>,
}

/// Sandbox backend that runs the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxChoice {
    /// Namespaces and cgroups when the host allows them, otherwise plain processes.
    Auto,
    Namespace,
    /// Plain child processes without isolation.
    Process,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    InvalidConfig(String),
    #[error("failed to use data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("failed to listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("control store: {0}")]
    Store(#[from] StoreError),
    #[error("origin store: {0}")]
    Origin(#[from] OriginError),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("worker: {0}")]
    Worker(#[from] nimbus_worker::WorkerError),
    #[error("sandbox: {0}")]
    Sandbox(String),
}

/// Opens the control store in a data directory, creating both if needed.
pub async fn open_store(data_dir: &Path) -> Result<SqliteStore, ServerError> {
    std::fs::create_dir_all(data_dir).map_err(|source| ServerError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    Ok(SqliteStore::open(&data_dir.join(DATABASE_FILE)).await?)
}

/// Writes a secret to a new file that only its owner can read.
pub fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{secret}")
}

/// Makes sure the default account exists and that a key reaches it: the configured
/// key, or on the first start a generated one written to the key file.
async fn ensure_default_account(
    store: &SqliteStore,
    data_dir: &Path,
    api_key: Option<&str>,
) -> Result<(), ServerError> {
    let account = match store.get_account_by_name(DEFAULT_ACCOUNT).await? {
        Some(account) => account,
        None => {
            let account = store
                .create_account(DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_CONCURRENCY)
                .await?;
            tracing::info!(account = DEFAULT_ACCOUNT, account_number = %account.account_number, "account created");
            account
        }
    };
    let key_file = data_dir.join(KEY_FILE);
    match api_key {
        Some(key) => {
            if key.len() < MIN_KEY_LEN || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ServerError::InvalidConfig(format!(
                    "--api-key must be at least {MIN_KEY_LEN} characters without spaces; generate one with `openssl rand -hex 32`"
                )));
            }
            store
                .add_api_key(account.account_id, &hash_key(key), &key_prefix(key))
                .await?;
            tracing::info!(account = DEFAULT_ACCOUNT, "using the API key given with --api-key");
        }
        None if key_file.exists() => {
            tracing::info!(account = DEFAULT_ACCOUNT, path = %key_file.display(), "API key of the default account is in this file");
        }
        None => {
            let key = generate_key();
            store
                .add_api_key(account.account_id, &hash_key(&key), &key_prefix(&key))
                .await?;
            write_secret_file(&key_file, &key).map_err(|source| ServerError::DataDir {
                path: key_file.clone(),
                source,
            })?;
            tracing::info!(account = DEFAULT_ACCOUNT, path = %key_file.display(), "created an API key for the default account and wrote it to this file");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler works on Unix");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}

/// Reads the host's total memory from /proc/meminfo, in MB.
fn host_memory_mb() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes / 1024)
}

/// Creates the in-process workers. Worker 0 keeps the `worker` directory of a
/// single-worker server, and worker N uses `worker-N`.
fn start_workers(
    config: &ServerConfig,
    backend: Arc<dyn nimbus_sandbox::SandboxBackend>,
    catalog: nimbus_runtime::RuntimeCatalog,
    origin: &Arc<OriginStore>,
) -> Result<Vec<Arc<nimbus_worker::Worker>>, ServerError> {
    if config.workers == 0 {
        return Err(ServerError::InvalidConfig("--workers must be at least 1".to_string()));
    }
    let zones = if config.availability_zones.is_empty() {
        vec![format!("{}a", config.region)]
    } else {
        config.availability_zones.clone()
    };
    let memory_mb = match config.worker_memory_mb {
        Some(memory_mb) => memory_mb,
        None => host_memory_mb().ok_or_else(|| {
            ServerError::InvalidConfig(
                "failed to read the host's memory from /proc/meminfo; set --worker-memory-mb".to_string(),
            )
        })?,
    };
    let packages = Arc::new(nimbus_worker::PackageCache::new(
        origin.clone(),
        config.package_cache_bytes,
    ));
    let mut workers = Vec::new();
    for index in 0..config.workers {
        let directory = match index {
            0 => "worker".to_string(),
            n => format!("worker-{n}"),
        };
        let zone = zones[index as usize % zones.len()].clone();
        tracing::info!(host = %nimbus_worker::HostId(index), zone, memory_mb, max_slots = config.max_slots, "worker host starting");
        workers.push(nimbus_worker::Worker::new(
            nimbus_worker::WorkerConfig {
                data_dir: config.data_dir.join(directory),
                region: config.region.clone(),
                idle_ttl: config.idle_ttl,
                init_timeout: nimbus_worker::DEFAULT_INIT_TIMEOUT,
                max_slots: config.max_slots,
                pids_max: nimbus_worker::DEFAULT_PIDS_MAX,
                host_id: index,
                availability_zone: zone,
                memory_mb,
                code_cache_bytes: config.code_cache_bytes,
            },
            backend.clone(),
            catalog.clone(),
            packages.clone(),
        )?);
    }
    Ok(workers)
}

/// Restricts `detected` to the runtime ids in `requested`, or keeps it whole when
/// `requested` is empty. An id that the host does not have is an error that lists what the
/// host offers.
pub fn select_runtimes(
    detected: nimbus_runtime::RuntimeCatalog,
    requested: &[String],
) -> Result<nimbus_runtime::RuntimeCatalog, ServerError> {
    if requested.is_empty() {
        return Ok(detected);
    }

    let missing: Vec<&str> = requested
        .iter()
        .map(String::as_str)
        .filter(|id| detected.get(id).is_none())
        .collect();
    if !missing.is_empty() {
        let offered: Vec<&str> = detected.offers().iter().map(|offer| offer.id.as_str()).collect();
        return Err(ServerError::InvalidConfig(format!(
            "--runtimes lists {}, which this host does not have. This host offers: {}. \
             Install the runtime or remove it from --runtimes (NIMBUS_RUNTIMES)",
            missing.join(", "),
            offered.join(", ")
        )));
    }

    let offers = detected
        .offers()
        .iter()
        .filter(|offer| requested.contains(&offer.id))
        .cloned()
        .collect();
    Ok(nimbus_runtime::RuntimeCatalog::with_offers(offers))
}

pub async fn run(mut config: ServerConfig) -> Result<(), ServerError> {
    // Checked first, so that an invalid --runtimes fails before anything is created.
    let catalog = select_runtimes(nimbus_runtime::RuntimeCatalog::detect(), &config.runtimes)?;
    let store = open_store(&config.data_dir).await?;
    // Slots see absolute paths only, whatever the server's working directory is.
    config.data_dir = config.data_dir.canonicalize().map_err(|source| ServerError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let origin = match &config.origin_url {
        Some(url) => OriginStore::from_url(url)?,
        None => OriginStore::local(&config.data_dir.join("origin"))?,
    };
    ensure_default_account(&store, &config.data_dir, config.api_key.as_deref()).await?;
    tracing::info!(data_dir = %config.data_dir.display(), origin = %origin.describe(), "stores opened");

    // Every part of the server reads and writes through the cache, so its own writes
    // invalidate it. `nimbus admin` writes to the database directly, and its changes
    // show within the TTL.
    let store: Arc<dyn ControlStore> = Arc::new(CachedStore::new(store, DEFAULT_CACHE_TTL));
    let origin = Arc::new(origin);
    let backend = crate::sandbox::backend(config.sandbox, &config.data_dir)?;
    let disabled = backend.protections().disabled();
    if disabled.is_empty() {
        tracing::info!(backend = backend.name(), "sandbox protections all on");
    } else {
        tracing::warn!(backend = backend.name(), off = %disabled.join(", "), "sandbox protections off");
    }
    let offered: Vec<String> = catalog
        .offers()
        .iter()
        .map(|o| match &o.version {
            Some(version) => format!("{} ({version})", o.id),
            None => o.id.clone(),
        })
        .collect();
    tracing::info!(runtimes = %offered.join(", "), "runtimes offered");
    let workers = start_workers(&config, backend, catalog, &origin)?;
    let hosts: Vec<Arc<dyn nimbus_worker::WorkerHost>> = workers
        .iter()
        .map(|w| w.clone() as Arc<dyn nimbus_worker::WorkerHost>)
        .collect();
    let fleet = Arc::new(crate::fleet::Fleet::new(hosts));
    fleet.start_heartbeats(store.clone());
    let recorder = crate::recorder::Recorder::start(store.clone(), config.log_retention);
    let state = AppState {
        store,
        origin,
        region: config.region.clone(),
        package_limits: PackageLimits::default(),
        fleet: fleet.clone(),
        recorder,
        dispatcher_wakeup: Arc::new(tokio::sync::Notify::new()),
        limiter: Arc::new(nimbus_state::InMemoryLimiter::default()),
        reservations: Arc::new(crate::admission::ReservationTotals::new(
            crate::admission::RESERVATION_CACHE_TTL,
        )),
        metrics: Arc::new(crate::metrics::Metrics::new(fleet.clone())),
        warm_pool: Arc::new(crate::warm_pool::DynamicPool::new(config.idle_ttl)),
        scaling: Arc::new(crate::scaling::Scaling::new(config.burst_limit)),
    };
    crate::dispatcher::start(
        state.clone(),
        crate::dispatcher::DispatcherConfig {
            retry_delays: config.async_retry_delays.clone(),
            ..Default::default()
        },
    );
    crate::provisioned::start(state.clone(), config.warm_pool_interval);
    state.scaling.start(state.clone());
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            address: config.listen.clone(),
            source,
        })?;
    let address: SocketAddr = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!("listening on http://{address}");
    let served = axum::serve(listener, crate::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(ServerError::Serve);
    for worker in &workers {
        worker.shutdown();
    }
    // Give slot teardown a moment to remove cgroups and scratch directories.
    tokio::time::sleep(Duration::from_millis(200)).await;
    served
}
