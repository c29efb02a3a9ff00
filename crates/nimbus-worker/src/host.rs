//! The [`WorkerHost`] trait: what the frontend needs from a worker host, so that a
//! remote worker can implement it later beside the in-process [`Worker`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use nimbus_scheduler::lifecycle::TransitionCounters;
use nimbus_scheduler::placement::{FunctionOnHost, HostId, HostState, HostView};

use uuid::Uuid;

use crate::{
    CacheCounts, InvokeRequest, InvokeResult, OnDemandSlot, PrewarmError, ProvisionedCounts, ProvisionedTarget,
    SlotKey, Worker, WorkerError,
};

/// How often a host reports that it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A host whose last heartbeat is older than this gets no new slots.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// A worker host as the frontend uses it. It runs invocations and provisioned slots,
/// and reports its capacity and contents for placement.
pub trait WorkerHost: Send + Sync {
    fn id(&self) -> HostId;
    fn availability_zone(&self) -> &str;
    /// Capacity and contents now. Functions are keyed by function id.
    fn view(&self) -> HostView;
    /// Slots the host runs at once, idle and busy; [`HostView::free_slots`] is the
    /// part of them free now.
    fn total_slots(&self) -> u32;
    /// Idle slots that could serve `request` at once.
    fn warm_slots(&self, request: &InvokeRequest) -> usize;
    fn state(&self) -> HostState;
    /// Sets the state. A draining host finishes its running invocations but gets no
    /// new ones.
    fn set_state(&self, state: HostState);
    /// Records that the host is alive now.
    fn heartbeat(&self);
    fn last_heartbeat(&self) -> Instant;
    fn check_runtime(&self, runtime: &str) -> Result<(), WorkerError>;
    /// Runs one invocation on a warm slot of this host, or on a new one. The slot
    /// is taken or reserved before this returns, so [`WorkerHost::view`] counts it
    /// at once and concurrent placements see it.
    fn invoke(&self, request: InvokeRequest) -> BoxFuture<'static, Result<InvokeResult, WorkerError>>;
    /// Starts `count` provisioned slots; see [`Worker::prewarm`].
    fn prewarm(&self, request: &InvokeRequest, count: usize) -> BoxFuture<'static, Result<usize, PrewarmError>>;
    /// See [`Worker::plan_provisioned`].
    fn plan_provisioned(&self, target: &ProvisionedTarget, requested: u32) -> usize;
    fn provisioned_counts(&self, target: &ProvisionedTarget) -> ProvisionedCounts;
    fn retire_provisioned(&self, target: &ProvisionedTarget) -> usize;
    fn retain_provisioned(&self, configured: &HashSet<ProvisionedTarget>) -> usize;
    /// See [`Worker::on_demand_slots`].
    fn on_demand_slots(&self, function_id: Uuid) -> Vec<OnDemandSlot>;
    /// See [`Worker::expire_slots`].
    fn expire_slots(&self, ids: &[String]) -> usize;
    /// See [`Worker::keep_warm`].
    fn keep_warm(&self, ids: &[String], duration: Duration);
    /// See [`Worker::prewarm_on_demand`].
    fn prewarm_on_demand(
        &self,
        request: &InvokeRequest,
        count: usize,
    ) -> BoxFuture<'static, Result<usize, PrewarmError>>;
    /// Idle and busy slots.
    fn slot_counts(&self) -> (usize, usize);
    fn cache_counts(&self) -> CacheCounts;
    fn transition_counters(&self) -> TransitionCounters;
}

impl WorkerHost for Worker {
    fn id(&self) -> HostId {
        HostId(self.config.host_id)
    }

    fn availability_zone(&self) -> &str {
        &self.config.availability_zone
    }

    fn view(&self) -> HostView {
        let pool = self.pool.lock().expect("pool lock");
        // Idle on-demand slots are evicted when a new slot needs room, so their slot
        // and memory count as free.
        let evictable: Vec<&crate::Slot> = pool
            .idle
            .values()
            .flatten()
            .filter(|s| s.provisioned.is_none())
            .collect();
        let evictable_memory: u64 = evictable.iter().map(|s| s.memory_mb).sum();
        let used_memory: u64 = pool
            .states
            .values()
            .map(|r| r.memory_mb)
            .sum::<u64>()
            .saturating_sub(evictable_memory);
        let mut functions: HashMap<String, FunctionOnHost> = HashMap::new();
        for record in pool.states.values() {
            functions.entry(record.function_id.to_string()).or_default().slots += 1;
        }
        for (key, slots) in &pool.idle {
            let entry = functions.entry(key.function_id.to_string()).or_default();
            *entry.warm_by_version.entry(key.version.clone()).or_default() += slots.len() as u32;
        }
        let free_slots = self.config.max_slots.saturating_sub(pool.total) + evictable.len();
        HostView {
            id: self.id(),
            availability_zone: self.config.availability_zone.clone(),
            state: self.state(),
            total_memory_mb: self.config.memory_mb,
            free_memory_mb: self.config.memory_mb.saturating_sub(used_memory),
            free_slots: free_slots as u32,
            runtimes: self.catalog.offers().iter().map(|o| o.id.clone()).collect(),
            cached_packages: self.cache.cached_packages(),
            functions,
        }
    }

    fn total_slots(&self) -> u32 {
        self.config.max_slots as u32
    }

    fn warm_slots(&self, request: &InvokeRequest) -> usize {
        let pool = self.pool.lock().expect("pool lock");
        pool.idle.get(&SlotKey::of(request)).map_or(0, Vec::len)
    }

    fn state(&self) -> HostState {
        *self.host_state.lock().expect("host state lock")
    }

    fn set_state(&self, state: HostState) {
        let mut current = self.host_state.lock().expect("host state lock");
        if *current != state {
            tracing::info!(host = %self.id(), from = ?*current, to = ?state, "worker host state changed");
            *current = state;
        }
    }

    fn heartbeat(&self) {
        *self.last_heartbeat.lock().expect("heartbeat lock") = Instant::now();
    }

    fn last_heartbeat(&self) -> Instant {
        *self.last_heartbeat.lock().expect("heartbeat lock")
    }

    fn check_runtime(&self, runtime: &str) -> Result<(), WorkerError> {
        Worker::check_runtime(self, runtime)
    }

    fn invoke(&self, request: InvokeRequest) -> BoxFuture<'static, Result<InvokeResult, WorkerError>> {
        let worker: Arc<Worker> = self.this.upgrade().expect("a worker in use is held by an Arc");
        let claim = worker.claim(&request);
        Box::pin(async move { worker.invoke_claimed(request, claim?).await })
    }

    fn prewarm(&self, request: &InvokeRequest, count: usize) -> BoxFuture<'static, Result<usize, PrewarmError>> {
        let worker: Arc<Worker> = self.this.upgrade().expect("a worker in use is held by an Arc");
        Box::pin(Worker::prewarm(&worker, request, count))
    }

    fn plan_provisioned(&self, target: &ProvisionedTarget, requested: u32) -> usize {
        Worker::plan_provisioned(self, target, requested)
    }

    fn provisioned_counts(&self, target: &ProvisionedTarget) -> ProvisionedCounts {
        Worker::provisioned_counts(self, target)
    }

    fn retire_provisioned(&self, target: &ProvisionedTarget) -> usize {
        Worker::retire_provisioned(self, target)
    }

    fn retain_provisioned(&self, configured: &HashSet<ProvisionedTarget>) -> usize {
        Worker::retain_provisioned(self, configured)
    }

    fn on_demand_slots(&self, function_id: Uuid) -> Vec<OnDemandSlot> {
        Worker::on_demand_slots(self, function_id)
    }

    fn expire_slots(&self, ids: &[String]) -> usize {
        Worker::expire_slots(self, ids)
    }

    fn keep_warm(&self, ids: &[String], duration: Duration) {
        Worker::keep_warm(self, ids, duration)
    }

    fn prewarm_on_demand(
        &self,
        request: &InvokeRequest,
        count: usize,
    ) -> BoxFuture<'static, Result<usize, PrewarmError>> {
        let worker: Arc<Worker> = self.this.upgrade().expect("a worker in use is held by an Arc");
        Box::pin(Worker::prewarm_on_demand(&worker, request, count))
    }

    fn slot_counts(&self) -> (usize, usize) {
        Worker::slot_counts(self)
    }

    fn cache_counts(&self) -> CacheCounts {
        self.cache.counts()
    }

    fn transition_counters(&self) -> TransitionCounters {
        self.pool.lock().expect("pool lock").transitions.clone()
    }
}
