//! The worker: keeps execution slots for function versions, cold-starts new ones,
//! hands events to them through the Runtime API, enforces timeouts, frames each
//! invocation's logs and measures it.
//!
//! A slot serves one function version with one configuration. After a success or a
//! function error it goes back to the warm pool. After a timeout, an exit or a
//! failed init it is destroyed. Idle slots expire after the configured TTL, except
//! provisioned slots (see [`Worker::prewarm`]), which stay until they are retired,
//! and slots that the frontend's dynamic warm pool keeps (see [`Worker::keep_warm`]).
//! Every slot's lifecycle state changes in one place, `Pool::transition`, through
//! the scheduler's state machine.

mod cache;
mod dynamic;
mod env;
mod host;
pub mod logs;
mod provisioned;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use nimbus_model::{CodeInfo, FunctionSettings};
use nimbus_runtime::{InitOutcome, Invocation, InvokeOutcome, RuntimeApi, RuntimeApiLimits, RuntimeCatalog};
use nimbus_sandbox::{SandboxBackend, SlotControl, SlotExit, SlotSpec};
use time::OffsetDateTime;
use uuid::Uuid;

pub use cache::{CacheCounts, CacheTier, CodeCache, CodeLease, PackageCache, DEFAULT_L1_BYTES, DEFAULT_L2_BYTES};
pub use dynamic::OnDemandSlot;
pub use host::{WorkerHost, HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT};
pub use logs::LogLine;
pub use nimbus_scheduler::lifecycle::{SlotState, TransitionCounters};
pub use nimbus_scheduler::placement::{HostId, HostState, HostView};
pub use provisioned::{PrewarmError, ProvisionedCounts, ProvisionedTarget};

/// Lambda limits the init phase of on-demand environments to 10 seconds.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(600);
/// Lambda allows 1,024 processes and threads per execution environment.
pub const DEFAULT_PIDS_MAX: u32 = 1024;
/// Bytes of log text returned with `X-Log-Type: Tail`.
pub const LOG_TAIL_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Directory for the code cache, the runtime files and per-slot scratch space.
    pub data_dir: PathBuf,
    pub region: String,
    /// Idle slots older than this are destroyed.
    pub idle_ttl: Duration,
    pub init_timeout: Duration,
    /// Slots this worker runs at once, idle and busy.
    pub max_slots: usize,
    pub pids_max: u32,
    /// Id of this worker host among the server's hosts.
    pub host_id: u32,
    pub availability_zone: String,
    /// Memory that this worker's slots may use together, in MB.
    pub memory_mb: u64,
    /// Bytes of unpacked packages this worker keeps on disk (its L1 cache).
    pub code_cache_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("runtime {runtime} is not available on this server; it offers: {offered}")]
    RuntimeNotOffered { runtime: String, offered: String },
    #[error("all {max_slots} execution slots of this server are busy; retry later")]
    NoCapacity { max_slots: usize },
    /// Placement found no host that is active, offers the runtime and has a free
    /// slot and enough free memory.
    #[error("no worker host can start an execution environment now: {0}; retry later")]
    NoFeasibleHost(String),
    /// The frontend's burst limit on new execution environments of one function
    /// rejected a cold start.
    #[error("function {function} started its limit of {limit} new execution environments in the last {interval_s} seconds; retry later")]
    BurstLimitExceeded {
        function: String,
        limit: u32,
        interval_s: u64,
    },
    #[error("{0}")]
    Code(String),
    #[error("{0}")]
    Io(String),
    #[error("failed to start an execution environment: {0}")]
    Sandbox(String),
}

/// One invocation as the frontend resolved it.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    pub request_id: String,
    pub function_id: Uuid,
    pub function_name: String,
    /// `$LATEST` or a version number.
    pub version: String,
    /// The ARN the caller invoked, qualified when a qualifier was given.
    pub invoked_function_arn: String,
    pub settings: FunctionSettings,
    pub code: CodeInfo,
    pub payload: Bytes,
    pub client_context: Option<String>,
    pub trace_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeStatus {
    Success,
    Error,
    Timeout,
}

impl InvokeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvokeStatus::Success => "SUCCESS",
            InvokeStatus::Error => "ERROR",
            InvokeStatus::Timeout => "TIMEOUT",
        }
    }
}

/// Time spent in each phase of a cold start.
#[derive(Debug, Clone, Copy)]
pub struct ColdStart {
    pub code_ms: f64,
    pub code_tier: CacheTier,
    pub sandbox_ms: f64,
    /// From the process start to the runtime's first request for an event: runtime
    /// start-up and the function's own initialization code. Equals `runtime_ms` plus
    /// `user_init_ms` when both are set.
    pub init_ms: f64,
    /// From the process start to the runtime's `/runtime/nimbus/runtime-ready` post, just
    /// before it loads the function. `None` for runtimes that do not post it, which are
    /// all runtimes other than Nimbus's own bootstraps.
    pub runtime_ms: Option<f64>,
    /// From the runtime-ready post to the end of init: the function's own initialization
    /// code. `None` when `runtime_ms` is.
    pub user_init_ms: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct InvokeResult {
    pub status: InvokeStatus,
    /// The function's response, or the error JSON when `error_type` is set.
    pub body: Bytes,
    pub error_type: Option<String>,
    /// The invocation's log: init output on a cold start, then START, the output,
    /// END and REPORT.
    pub logs: Vec<LogLine>,
    pub started_at: OffsetDateTime,
    pub ended_at: OffsetDateTime,
    pub duration_ms: f64,
    pub billed_duration_ms: u64,
    pub memory_used_mb: u64,
    pub memory_size_mb: u32,
    pub cold_start: Option<ColdStart>,
    pub slot_id: String,
    /// The worker host that ran the invocation.
    pub host_id: HostId,
}

impl InvokeResult {
    pub fn log_tail(&self) -> String {
        logs::tail(&self.logs, LOG_TAIL_BYTES)
    }
}

/// Slots are reused only for the same code and configuration of the same version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SlotKey {
    function_id: Uuid,
    version: String,
    code_sha256: String,
    settings: String,
}

impl SlotKey {
    fn of(request: &InvokeRequest) -> SlotKey {
        SlotKey {
            function_id: request.function_id,
            version: request.version.clone(),
            code_sha256: request.code.sha256.clone(),
            settings: serde_json::to_string(&request.settings).expect("settings serialize to JSON"),
        }
    }
}

struct Slot {
    id: String,
    /// Memory limit of the slot, in MB.
    memory_mb: u64,
    control: Arc<dyn SlotControl>,
    api: RuntimeApi,
    logs: logs::LogCollector,
    created: Instant,
    last_used: Instant,
    invocations: u64,
    /// The target of a slot started by [`Worker::prewarm`]. Such a slot is exempt
    /// from the idle TTL and from eviction.
    provisioned: Option<ProvisionedTarget>,
    /// The dynamic warm pool keeps this idle slot past the idle TTL until then.
    keep_until: Option<Instant>,
    /// Keeps the slot's unpacked code from eviction while the slot lives.
    _code: CodeLease,
}

#[derive(Default)]
struct Pool {
    idle: HashMap<SlotKey, Vec<Slot>>,
    /// Idle plus busy slots.
    total: usize,
    /// Busy and initializing provisioned slots of each target. Idle ones are in `idle`.
    provisioned: HashMap<ProvisionedTarget, provisioned::TargetState>,
    /// Lifecycle state of every slot that is not terminated yet.
    states: HashMap<String, SlotRecord>,
    transitions: TransitionCounters,
}

/// One slot's lifecycle state, with what placement needs to know about it.
struct SlotRecord {
    state: SlotState,
    function_id: Uuid,
    memory_mb: u64,
}

impl Pool {
    /// Moves a slot to `to` with the scheduler's state machine; the one place that
    /// changes a slot's state. A terminated slot is forgotten.
    fn transition(&mut self, slot_id: &str, to: SlotState) {
        let Some(record) = self.states.get_mut(slot_id) else {
            tracing::warn!(slot_id, to = %to, "state change of an unknown slot ignored");
            return;
        };
        if let Err(error) = nimbus_scheduler::lifecycle::transition(&mut record.state, to, &mut self.transitions) {
            tracing::warn!(slot_id, %error, "slot state change rejected");
        }
        if record.state == SlotState::Terminated {
            self.states.remove(slot_id);
        }
    }

    /// Moves a slot through the states that end it: a warm or busy slot cools down, a
    /// slot still initializing fails, and either is then terminated.
    fn terminate(&mut self, slot_id: &str) {
        match self.states.get(slot_id).map(|r| r.state) {
            Some(SlotState::Warm | SlotState::Busy) => self.transition(slot_id, SlotState::Cooling),
            Some(SlotState::Initializing) => self.transition(slot_id, SlotState::Failed),
            _ => {}
        }
        self.transition(slot_id, SlotState::Terminated);
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub cold_starts: AtomicU64,
    /// Slots initialized by [`Worker::prewarm`], which are not counted as cold starts.
    pub provisioned_inits: AtomicU64,
    pub warm_starts: AtomicU64,
    pub slots_destroyed: AtomicU64,
}

pub struct Worker {
    /// This worker itself, for the [`WorkerHost`] methods that start background work.
    this: std::sync::Weak<Worker>,
    config: WorkerConfig,
    host_state: Mutex<HostState>,
    last_heartbeat: Mutex<Instant>,
    backend: Arc<dyn SandboxBackend>,
    catalog: RuntimeCatalog,
    cache: CodeCache,
    runtime_dir: PathBuf,
    pool: Mutex<Pool>,
    /// Origin of the timestamps given to the warm pool planner.
    epoch: Instant,
    pub stats: WorkerStats,
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn error_body(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string())
}

fn init_error_type(header: Option<String>, body: &[u8]) -> String {
    header
        .or_else(|| error_type_in_body(body))
        .unwrap_or_else(|| "Runtime.InitError".to_string())
}

/// Reads `errorType` from an error JSON that a runtime posted.
fn error_type_in_body(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("errorType")?.as_str().map(str::to_string)
}

/// Reads `errorMessage` from an error JSON that a runtime posted.
fn error_message_in_body(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("errorMessage")?.as_str().map(str::to_string)
}

fn exit_description(exit: SlotExit) -> String {
    match exit {
        SlotExit::Code(code) => format!("exit status {code}"),
        SlotExit::Signal(9) => "signal: killed".to_string(),
        SlotExit::Signal(signal) => format!("signal: {signal}"),
    }
}

/// Builds the error type and JSON of a runtime that exited instead of responding.
fn exit_error(request_id: &str, exit: SlotExit, out_of_memory: bool) -> (String, Bytes) {
    let error_type = if out_of_memory {
        "Runtime.OutOfMemory"
    } else {
        "Runtime.ExitError"
    };
    let message = format!(
        "RequestId: {request_id} Error: Runtime exited with error: {}",
        exit_description(exit)
    );
    (error_type.to_string(), error_body(error_type, &message))
}

/// The slot an invocation runs on: an idle slot, or the id of a new slot registered
/// as initializing, with room reserved for it.
pub(crate) enum Claim {
    Warm(Slot),
    Cold(String),
}

/// Outcome of a slot's attempt at one event.
enum Attempt {
    Answered(InvokeOutcome),
    Exited(SlotExit),
    TimedOut,
}

impl Worker {
    pub fn new(
        config: WorkerConfig,
        backend: Arc<dyn SandboxBackend>,
        catalog: RuntimeCatalog,
        packages: Arc<PackageCache>,
    ) -> Result<Arc<Worker>, WorkerError> {
        let runtime_dir = config.data_dir.join("runtime");
        nimbus_runtime::install_bootstraps(&runtime_dir).map_err(|e| {
            WorkerError::Io(format!(
                "failed to install bootstraps in {}: {e}",
                runtime_dir.display()
            ))
        })?;
        let cache = CodeCache::new(&config.data_dir.join("cache"), packages, config.code_cache_bytes)?;
        let worker = Arc::new_cyclic(|this| Worker {
            this: this.clone(),
            config,
            host_state: Mutex::new(HostState::Active),
            last_heartbeat: Mutex::new(Instant::now()),
            backend,
            catalog,
            cache,
            runtime_dir,
            pool: Mutex::new(Pool::default()),
            epoch: Instant::now(),
            stats: WorkerStats::default(),
        });
        worker.clone().start_reaper();
        Ok(worker)
    }

    pub fn catalog(&self) -> &RuntimeCatalog {
        &self.catalog
    }

    pub fn cache(&self) -> &CodeCache {
        &self.cache
    }

    /// Number of idle and busy slots.
    pub fn slot_counts(&self) -> (usize, usize) {
        let pool = self.pool.lock().expect("pool lock");
        let idle: usize = pool.idle.values().map(Vec::len).sum();
        (idle, pool.total - idle)
    }

    /// Checks that this worker can run a runtime, before anything is queued for it.
    pub fn check_runtime(&self, runtime: &str) -> Result<(), WorkerError> {
        if self.catalog.get(runtime).is_some() {
            return Ok(());
        }
        let offered: Vec<&str> = self.catalog.offers().iter().map(|o| o.id.as_str()).collect();
        Err(WorkerError::RuntimeNotOffered {
            runtime: runtime.to_string(),
            offered: offered.join(", "),
        })
    }

    fn start_reaper(self: Arc<Self>) {
        let period = (self.config.idle_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(15));
        let worker = Arc::downgrade(&self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(worker) = worker.upgrade() else {
                    break;
                };
                worker.expire_idle_slots();
            }
        });
    }

    /// Destroys idle on-demand slots unused for longer than the TTL.
    pub fn expire_idle_slots(&self) {
        let ttl = self.config.idle_ttl;
        let expired: Vec<Slot> = {
            let mut pool = self.pool.lock().expect("pool lock");
            let mut expired = Vec::new();
            for slots in pool.idle.values_mut() {
                let (old, fresh): (Vec<Slot>, Vec<Slot>) = slots.drain(..).partition(|s| {
                    s.provisioned.is_none()
                        && s.last_used.elapsed() > ttl
                        && s.keep_until.is_none_or(|until| until <= Instant::now())
                });
                *slots = fresh;
                expired.extend(old);
            }
            pool.idle.retain(|_, slots| !slots.is_empty());
            pool.total -= expired.len();
            expired
        };
        for slot in expired {
            tracing::info!(slot_id = %slot.id, invocations = slot.invocations, "idle slot expired");
            self.destroy(slot);
        }
    }

    fn destroy(&self, slot: Slot) {
        self.pool.lock().expect("pool lock").terminate(&slot.id);
        self.stats.slots_destroyed.fetch_add(1, Ordering::Relaxed);
        slot.api.shutdown();
        let control = slot.control.clone();
        tokio::spawn(async move { control.destroy().await });
    }

    /// Removes a busy slot from the count after it was destroyed.
    fn forget(&self, slot: Slot) {
        {
            let mut pool = self.pool.lock().expect("pool lock");
            pool.total -= 1;
            pool.transition(&slot.id, SlotState::Failed);
            if let Some(target) = &slot.provisioned {
                pool.end_provisioned_busy(target);
            }
        }
        self.destroy(slot);
    }

    /// Takes an idle slot, a provisioned one when there is one, as Lambda serves
    /// invocations from provisioned concurrency first.
    fn take_idle(&self, key: &SlotKey) -> Option<Slot> {
        let mut pool = self.pool.lock().expect("pool lock");
        let slots = pool.idle.get_mut(key)?;
        let slot = match slots.iter().rposition(|s| s.provisioned.is_some()) {
            Some(index) => Some(slots.remove(index)),
            None => slots.pop(),
        };
        if slots.is_empty() {
            pool.idle.remove(key);
        }
        if let Some(target) = slot.as_ref().and_then(|s| s.provisioned.clone()) {
            pool.start_provisioned_busy(&target);
        }
        if let Some(slot) = &slot {
            pool.transition(&slot.id, SlotState::Busy);
        }
        slot
    }

    fn release(&self, key: SlotKey, mut slot: Slot) {
        slot.last_used = Instant::now();
        let mut pool = self.pool.lock().expect("pool lock");
        if let Some(target) = slot.provisioned.clone() {
            // A target that lost its configuration while the slot was busy keeps
            // the slot as an on-demand one, subject to the idle TTL.
            if !pool.end_provisioned_busy(&target) {
                slot.provisioned = None;
            }
        }
        pool.transition(&slot.id, SlotState::Warm);
        pool.idle.entry(key).or_default().push(slot);
    }

    /// Reserves room for a new slot, evicting the least recently used idle on-demand
    /// slot when the worker is full. Provisioned slots are never evicted.
    fn reserve_slot(&self) -> Result<(), WorkerError> {
        let evicted = {
            let mut pool = self.pool.lock().expect("pool lock");
            if pool.total < self.config.max_slots {
                pool.total += 1;
                return Ok(());
            }
            let oldest = pool
                .idle
                .iter()
                .flat_map(|(key, slots)| {
                    slots
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.provisioned.is_none())
                        .map(move |(i, s)| (key.clone(), i, s.last_used))
                })
                .min_by_key(|(_, _, last_used)| *last_used);
            let Some((key, index, _)) = oldest else {
                return Err(WorkerError::NoCapacity {
                    max_slots: self.config.max_slots,
                });
            };
            let slots = pool.idle.get_mut(&key).expect("key was just found");
            let slot = slots.remove(index);
            if slots.is_empty() {
                pool.idle.remove(&key);
            }
            slot
        };
        tracing::info!(slot_id = %evicted.id, "idle slot evicted to make room");
        self.destroy(evicted);
        Ok(())
    }

    /// Runs one invocation: on a warm slot when one is idle, otherwise on a new one.
    /// Function failures are results, not errors; errors are platform failures.
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResult, WorkerError> {
        let claim = self.claim(&request)?;
        self.invoke_claimed(request, claim).await
    }

    /// Takes an idle slot for the request, or reserves room for a new one and
    /// registers it as initializing. It does not wait, so a slot is counted in the
    /// host's view as soon as this returns.
    pub(crate) fn claim(&self, request: &InvokeRequest) -> Result<Claim, WorkerError> {
        if let Some(slot) = self.take_idle(&SlotKey::of(request)) {
            return Ok(Claim::Warm(slot));
        }
        self.check_runtime(&request.settings.runtime)?;
        self.reserve_slot()?;
        Ok(Claim::Cold(self.register_slot(request)))
    }

    /// Registers a new slot id as initializing.
    fn register_slot(&self, request: &InvokeRequest) -> String {
        let slot_id = Uuid::new_v4().simple().to_string();
        self.pool.lock().expect("pool lock").states.insert(
            slot_id.clone(),
            SlotRecord {
                state: SlotState::Initializing,
                function_id: request.function_id,
                memory_mb: u64::from(request.settings.memory_size),
            },
        );
        slot_id
    }

    /// Runs an invocation on what [`Worker::claim`] returned. A warm slot whose
    /// runtime exited while idle (a background thread that ended the process, for
    /// example) is destroyed, and the invocation claims again, so it gets a new slot
    /// instead of that exit.
    pub(crate) async fn invoke_claimed(
        &self,
        request: InvokeRequest,
        claim: Claim,
    ) -> Result<InvokeResult, WorkerError> {
        let key = SlotKey::of(&request);
        let started_at = OffsetDateTime::now_utc();
        let mut claim = claim;
        let (slot, cold_start) = loop {
            match claim {
                Claim::Warm(slot) => {
                    // `wait` resolves at once when the runtime has already exited.
                    // Polled once, not under a zero timeout: tokio rounds a timer up to
                    // the next millisecond tick, which cost every warm invoke 1 ms.
                    match slot.control.wait().now_or_never() {
                        None => {
                            self.stats.warm_starts.fetch_add(1, Ordering::Relaxed);
                            break (slot, None);
                        }
                        Some(exit) => {
                            tracing::info!(slot_id = %slot.id, exit = %exit_description(exit), "idle slot's runtime exited; replacing the slot");
                            self.forget(slot);
                            claim = self.claim(&request)?;
                        }
                    }
                }
                Claim::Cold(slot_id) => {
                    self.stats.cold_starts.fetch_add(1, Ordering::Relaxed);
                    match self.cold_start(&request, None, slot_id).await {
                        Ok(Ok((slot, timing))) => {
                            self.pool
                                .lock()
                                .expect("pool lock")
                                .transition(&slot.id, SlotState::Busy);
                            break (slot, Some(timing));
                        }
                        Ok(Err(failed)) => {
                            self.pool.lock().expect("pool lock").total -= 1;
                            return Ok(failed.into_result(&request, started_at, HostId(self.config.host_id)));
                        }
                        Err(error) => {
                            self.pool.lock().expect("pool lock").total -= 1;
                            return Err(error);
                        }
                    }
                }
            }
        };
        Ok(self.run(key, slot, cold_start, request, started_at).await)
    }

    fn slot_spec(
        &self,
        request: &InvokeRequest,
        slot_id: &str,
        code_dir: PathBuf,
        initialization_type: &str,
    ) -> Result<SlotSpec, WorkerError> {
        let offer = self
            .catalog
            .get(&request.settings.runtime)
            .ok_or_else(|| WorkerError::RuntimeNotOffered {
                runtime: request.settings.runtime.clone(),
                offered: String::new(),
            })?;
        let mut spec = SlotSpec {
            slot_id: slot_id.to_string(),
            code_dir,
            runtime_dir: self.runtime_dir.clone(),
            memory_mb: request.settings.memory_size,
            tmp_mb: request.settings.ephemeral_storage,
            pids_max: self.config.pids_max,
            argv: Vec::new(),
            env: Vec::new(),
        };
        let layout = self.backend.layout(&spec);
        spec.argv = offer.command(&layout.runtime_root, &layout.task_root);
        spec.env = env::slot_environment(
            request,
            &self.config.region,
            slot_id,
            &layout,
            offer,
            initialization_type,
        );
        Ok(spec)
    }

    /// Starts a slot and waits for its runtime to ask for the first event. A failed
    /// init is returned as `Ok(Err(..))`, because it is the function's failure.
    async fn cold_start(
        &self,
        request: &InvokeRequest,
        provisioned: Option<ProvisionedTarget>,
        slot_id: String,
    ) -> Result<Result<(Slot, ColdStart), FailedInit>, WorkerError> {
        let started = self.start_slot(request, provisioned, slot_id.clone()).await;
        match &started {
            Ok(Ok(_)) => self
                .pool
                .lock()
                .expect("pool lock")
                .transition(&slot_id, SlotState::Warm),
            // A failed init was destroyed, which terminated its record.
            Ok(Err(_)) => {}
            Err(_) => self.pool.lock().expect("pool lock").terminate(&slot_id),
        }
        started
    }

    async fn start_slot(
        &self,
        request: &InvokeRequest,
        provisioned: Option<ProvisionedTarget>,
        slot_id: String,
    ) -> Result<Result<(Slot, ColdStart), FailedInit>, WorkerError> {
        let code_started = Instant::now();
        let (code, code_tier) = self.cache.ensure(&request.code.sha256).await?;
        let code_dir = code.path().to_path_buf();
        let code_ms = elapsed_ms(code_started);

        let sandbox_started = Instant::now();
        let initialization_type = match provisioned {
            Some(_) => "provisioned-concurrency",
            None => "on-demand",
        };
        let spec = self.slot_spec(request, &slot_id, code_dir, initialization_type)?;
        // Spawning blocks until the runtime has started, so it runs off the async threads.
        let backend = self.backend.clone();
        let process = tokio::task::spawn_blocking(move || backend.spawn(&spec))
            .await
            .map_err(|e| WorkerError::Sandbox(format!("spawn task failed: {e}")))?
            .map_err(|e| WorkerError::Sandbox(e.to_string()))?;
        let api = RuntimeApi::serve(process.runtime_api, RuntimeApiLimits::default())
            .map_err(|e| WorkerError::Sandbox(format!("failed to serve the Runtime API: {e}")))?;
        let logs = logs::LogCollector::start(process.stdout, process.stderr)
            .map_err(|e| WorkerError::Sandbox(format!("failed to read the slot's output: {e}")))?;
        let control: Arc<dyn SlotControl> = Arc::from(process.control);
        let sandbox_ms = elapsed_ms(sandbox_started);

        let init_started = Instant::now();
        let failure = {
            let init_deadline = tokio::time::sleep(self.config.init_timeout);
            tokio::pin!(init_deadline);
            let ready = api.wait_ready();
            tokio::pin!(ready);
            tokio::select! {
                biased;
                outcome = &mut ready => match outcome {
                    InitOutcome::Ready => None,
                    InitOutcome::Failed { error_type, body } => Some((init_error_type(error_type, &body), body)),
                },
                exit = control.wait() => {
                    // An init error posted just before the exit still wins.
                    match (&mut ready).now_or_never() {
                        Some(InitOutcome::Failed { error_type, body }) => Some((init_error_type(error_type, &body), body)),
                        _ => Some(exit_error(&request.request_id, exit, control.out_of_memory())),
                    }
                }
                _ = &mut init_deadline => {
                    let seconds = self.config.init_timeout.as_secs_f64();
                    let message = format!("RequestId: {} Error: Init phase timed out after {seconds:.2} seconds", request.request_id);
                    Some(("Sandbox.Timedout".to_string(), error_body("Sandbox.Timedout", &message)))
                }
            }
        };
        let init_ms = elapsed_ms(init_started);
        // The runtime may post runtime-ready before `init_started` (it can connect as soon
        // as the Runtime API listens), which counts as no runtime time.
        let runtime_ms = api
            .runtime_ready_at()
            .map(|ready_at| (ready_at.saturating_duration_since(init_started).as_secs_f64() * 1000.0).min(init_ms));
        let user_init_ms = runtime_ms.map(|runtime_ms| init_ms - runtime_ms);
        let slot = Slot {
            id: slot_id,
            memory_mb: u64::from(request.settings.memory_size),
            control,
            api,
            logs,
            created: Instant::now(),
            last_used: Instant::now(),
            invocations: 0,
            provisioned,
            keep_until: None,
            _code: code,
        };
        let timing = ColdStart {
            code_ms,
            code_tier,
            sandbox_ms,
            init_ms,
            runtime_ms,
            user_init_ms,
        };

        match failure {
            None => {
                tracing::info!(slot_id = %slot.id, function = %request.function_name, version = %request.version,
                    init_ms = format!("{init_ms:.1}"), "slot ready");
                Ok(Ok((slot, timing)))
            }
            Some((error_type, body)) => {
                tracing::info!(slot_id = %slot.id, function = %request.function_name, %error_type, "slot init failed");
                let output = slot.logs.take().await;
                let memory_peak = slot.control.memory_peak_bytes();
                self.destroy(slot);
                Ok(Err(FailedInit {
                    error_type,
                    body,
                    output,
                    timing,
                    memory_peak,
                }))
            }
        }
    }

    async fn run(
        &self,
        key: SlotKey,
        mut slot: Slot,
        cold_start: Option<ColdStart>,
        request: InvokeRequest,
        started_at: OffsetDateTime,
    ) -> InvokeResult {
        let mut log_lines = slot.logs.take().await;
        log_lines.push(LogLine {
            timestamp_ms: logs::now_ms(),
            message: logs::start_line(&request.request_id, &request.version),
        });

        let timeout = Duration::from_secs(request.settings.timeout as u64);
        let started = Instant::now();
        let deadline_ms =
            (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64 + timeout.as_millis() as u64;
        let invocation = Invocation {
            request_id: request.request_id.clone(),
            payload: request.payload.clone(),
            deadline_ms,
            invoked_function_arn: request.invoked_function_arn.clone(),
            trace_id: request.trace_id.clone(),
            client_context: request.client_context.clone(),
            cognito_identity: None,
        };
        let attempt = {
            let answer = slot.api.invoke(invocation);
            tokio::pin!(answer);
            tokio::select! {
                biased;
                outcome = &mut answer => Attempt::Answered(outcome),
                exit = slot.control.wait() => match (&mut answer).now_or_never() {
                    Some(outcome) => Attempt::Answered(outcome),
                    None => Attempt::Exited(exit),
                },
                _ = tokio::time::sleep(timeout) => Attempt::TimedOut,
            }
        };
        // A timed-out invocation ran for exactly its timeout, as Lambda reports it.
        let duration_ms = match attempt {
            Attempt::TimedOut => timeout.as_secs_f64() * 1000.0,
            _ => elapsed_ms(started),
        };
        slot.invocations += 1;

        let (status, body, error_type, keep) = match attempt {
            Attempt::Answered(InvokeOutcome::Response(body)) => (InvokeStatus::Success, body, None, true),
            Attempt::Answered(InvokeOutcome::FunctionError { error_type, body }) => {
                // Some runtime clients (awslambdaric 4.x) send the type only in the body.
                let error_type = error_type
                    .or_else(|| error_type_in_body(&body))
                    .unwrap_or_else(|| "Unhandled".to_string());
                (InvokeStatus::Error, body, Some(error_type), true)
            }
            Attempt::Answered(InvokeOutcome::ResponseTooLarge { limit }) => {
                let message = format!("Response payload size exceeded maximum allowed payload size ({limit} bytes).");
                (
                    InvokeStatus::Error,
                    error_body("Function.ResponseSizeTooLarge", &message),
                    Some("Function.ResponseSizeTooLarge".to_string()),
                    true,
                )
            }
            Attempt::Exited(exit) => {
                let (error_type, body) = exit_error(&request.request_id, exit, slot.control.out_of_memory());
                (InvokeStatus::Error, body, Some(error_type), false)
            }
            Attempt::TimedOut => {
                let seconds = timeout.as_secs_f64();
                let message = format!(
                    "RequestId: {} Error: Task timed out after {seconds:.2} seconds",
                    request.request_id
                );
                (
                    InvokeStatus::Timeout,
                    error_body("Sandbox.Timedout", &message),
                    Some("Sandbox.Timedout".to_string()),
                    false,
                )
            }
        };

        log_lines.extend(slot.logs.take().await);
        if status == InvokeStatus::Timeout {
            let stamp = nimbus_model::format_timestamp(OffsetDateTime::now_utc());
            log_lines.push(LogLine {
                timestamp_ms: logs::now_ms(),
                message: format!(
                    "{stamp} {} Task timed out after {:.2} seconds",
                    request.request_id,
                    timeout.as_secs_f64()
                ),
            });
        }
        let memory_used_mb = slot.control.memory_peak_bytes().map_or(0, |b| b.div_ceil(1024 * 1024));
        let billed_duration_ms = duration_ms.ceil() as u64;
        log_lines.push(LogLine {
            timestamp_ms: logs::now_ms(),
            message: logs::end_line(&request.request_id),
        });
        log_lines.push(LogLine {
            timestamp_ms: logs::now_ms(),
            message: logs::report_line(&logs::Report {
                request_id: &request.request_id,
                duration_ms,
                billed_duration_ms,
                memory_size_mb: request.settings.memory_size,
                max_memory_used_mb: memory_used_mb,
                init_duration_ms: cold_start.map(|c| c.init_ms),
            }),
        });

        let slot_id = slot.id.clone();
        if keep {
            self.release(key, slot);
        } else {
            tracing::info!(%slot_id, function = %request.function_name, status = status.as_str(), "slot destroyed after a failed invocation");
            self.forget(slot);
        }
        InvokeResult {
            status,
            body,
            error_type,
            logs: log_lines,
            started_at,
            ended_at: OffsetDateTime::now_utc(),
            duration_ms,
            billed_duration_ms,
            memory_used_mb,
            memory_size_mb: request.settings.memory_size,
            cold_start,
            slot_id,
            host_id: HostId(self.config.host_id),
        }
    }

    /// Destroys every slot; used at shutdown.
    pub fn shutdown(&self) {
        let slots: Vec<Slot> = {
            let mut pool = self.pool.lock().expect("pool lock");
            let slots: Vec<Slot> = pool.idle.drain().flat_map(|(_, slots)| slots).collect();
            pool.total -= slots.len();
            slots
        };
        for slot in slots {
            self.destroy(slot);
        }
    }
}

/// A cold start whose init failed: the function's error, with the init output.
struct FailedInit {
    error_type: String,
    body: Bytes,
    output: Vec<LogLine>,
    timing: ColdStart,
    memory_peak: Option<u64>,
}

impl FailedInit {
    fn into_result(self, request: &InvokeRequest, started_at: OffsetDateTime, host_id: HostId) -> InvokeResult {
        let mut lines = self.output;
        let now = logs::now_ms();
        lines.push(LogLine {
            timestamp_ms: now,
            message: format!(
                "INIT_REPORT Init Duration: {:.2} ms\tPhase: init\tStatus: error\tError Type: {}",
                self.timing.init_ms, self.error_type
            ),
        });
        lines.push(LogLine {
            timestamp_ms: now,
            message: logs::start_line(&request.request_id, &request.version),
        });
        lines.push(LogLine {
            timestamp_ms: now,
            message: logs::end_line(&request.request_id),
        });
        let memory_used_mb = self.memory_peak.map_or(0, |b| b.div_ceil(1024 * 1024));
        lines.push(LogLine {
            timestamp_ms: now,
            message: logs::report_line(&logs::Report {
                request_id: &request.request_id,
                duration_ms: 0.0,
                billed_duration_ms: 0,
                memory_size_mb: request.settings.memory_size,
                max_memory_used_mb: memory_used_mb,
                init_duration_ms: Some(self.timing.init_ms),
            }),
        });
        InvokeResult {
            status: InvokeStatus::Error,
            body: self.body,
            error_type: Some(self.error_type),
            logs: lines,
            started_at,
            ended_at: OffsetDateTime::now_utc(),
            duration_ms: 0.0,
            billed_duration_ms: 0,
            memory_used_mb,
            memory_size_mb: request.settings.memory_size,
            cold_start: Some(self.timing),
            slot_id: String::new(),
            host_id,
        }
    }
}
