//! Provisioned slots: pre-initialized for a function version before any event
//! arrives, kept until retired, and never expired by the idle TTL or evicted for
//! another function. An invocation that finds one idle is a warm start. When all of
//! them are busy, invocations spill over to on-demand slots, as in Lambda.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nimbus_scheduler::lifecycle::SlotState;
use nimbus_scheduler::predictor::{DecisionBasis, WarmDecision};
use nimbus_scheduler::warm_pool::{plan_warm_pool, Action, FunctionPoolState, SlotId, SlotView, WarmPoolConfig};
use nimbus_scheduler::Timestamp;
use uuid::Uuid;

use crate::{InvokeRequest, Pool, Slot, SlotKey, Worker, WorkerError};

/// The function version that provisioned slots serve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProvisionedTarget {
    pub function_id: Uuid,
    /// A published version number; versions are immutable, so the number fixes the
    /// code and configuration.
    pub version: String,
}

impl ProvisionedTarget {
    pub fn new(function_id: Uuid, version: &str) -> ProvisionedTarget {
        ProvisionedTarget {
            function_id,
            version: version.to_string(),
        }
    }

    fn of_request(request: &InvokeRequest) -> ProvisionedTarget {
        ProvisionedTarget::new(request.function_id, &request.version)
    }
}

/// Provisioned slots of one target by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProvisionedCounts {
    pub initializing: usize,
    /// Initialized and waiting for an event.
    pub idle: usize,
    pub busy: usize,
}

impl ProvisionedCounts {
    /// Initialized slots, idle or busy.
    pub fn allocated(&self) -> usize {
        self.idle + self.busy
    }
}

/// Busy and initializing provisioned slots of one target.
#[derive(Debug, Default)]
pub(crate) struct TargetState {
    initializing: usize,
    busy: usize,
    /// False once the target was retired: its busy slots become on-demand slots when
    /// they finish, and its slots still initializing join the pool as on-demand.
    configured: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PrewarmError {
    /// The function's init failed, so more attempts would fail the same way.
    #[error("{error_type}: {message}")]
    InitFailed { error_type: String, message: String },
    /// The platform could not start a slot, for example because every slot is busy.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

impl Pool {
    pub(crate) fn start_provisioned_busy(&mut self, target: &ProvisionedTarget) {
        self.provisioned.entry(target.clone()).or_default().busy += 1;
    }

    /// Counts a busy provisioned slot as finished. Returns whether the target is still
    /// configured, that is whether the slot stays provisioned.
    pub(crate) fn end_provisioned_busy(&mut self, target: &ProvisionedTarget) -> bool {
        let Some(state) = self.provisioned.get_mut(target) else {
            return false;
        };
        state.busy = state.busy.saturating_sub(1);
        let configured = state.configured;
        self.forget_target_if_unused(target);
        configured
    }

    fn forget_target_if_unused(&mut self, target: &ProvisionedTarget) {
        if let Some(state) = self.provisioned.get(target) {
            if !state.configured && state.busy == 0 && state.initializing == 0 {
                self.provisioned.remove(target);
            }
        }
    }

    /// Removes idle provisioned slots of `target`, oldest first, at most `limit`.
    fn take_provisioned_idle(&mut self, target: &ProvisionedTarget, limit: usize) -> Vec<Slot> {
        let mut candidates: Vec<(SlotKey, String, std::time::Instant)> = self
            .idle
            .iter()
            .flat_map(|(key, slots)| {
                slots
                    .iter()
                    .filter(|s| s.provisioned.as_ref() == Some(target))
                    .map(move |s| (key.clone(), s.id.clone(), s.created))
            })
            .collect();
        candidates.sort_by_key(|(_, id, created)| (*created, id.clone()));
        let mut taken = Vec::new();
        for (key, id, _) in candidates.into_iter().take(limit) {
            let slots = self.idle.get_mut(&key).expect("key was just listed");
            let index = slots.iter().position(|s| s.id == id).expect("slot was just listed");
            taken.push(slots.remove(index));
            if slots.is_empty() {
                self.idle.remove(&key);
            }
        }
        self.total -= taken.len();
        taken
    }

    fn idle_provisioned<'a>(&'a self, target: &'a ProvisionedTarget) -> impl Iterator<Item = &'a Slot> + 'a {
        self.idle
            .values()
            .flatten()
            .filter(move |s| s.provisioned.as_ref() == Some(target))
    }
}

impl Worker {
    /// Counts the provisioned slots of a target.
    pub fn provisioned_counts(&self, target: &ProvisionedTarget) -> ProvisionedCounts {
        let pool = self.pool.lock().expect("pool lock");
        let state = pool.provisioned.get(target);
        ProvisionedCounts {
            initializing: state.map_or(0, |s| s.initializing),
            idle: pool.idle_provisioned(target).count(),
            busy: state.map_or(0, |s| s.busy),
        }
    }

    /// Brings a target's provisioned slots toward `requested` with the scheduler's
    /// warm pool plan. Retires excess idle slots, oldest first, at once, and returns
    /// how many new slots to start with [`Worker::prewarm`]. Slots still initializing
    /// count toward `requested`, so calling this again before they are ready does
    /// not start more.
    pub fn plan_provisioned(&self, target: &ProvisionedTarget, requested: u32) -> usize {
        let (retired, prewarm) = {
            let mut pool = self.pool.lock().expect("pool lock");
            pool.provisioned.entry(target.clone()).or_default().configured = true;
            let idle: Vec<(String, Timestamp)> = pool
                .idle_provisioned(target)
                .map(|s| (s.id.clone(), self.timestamp(s.created)))
                .collect();
            let state = &pool.provisioned[target];
            let now = self.timestamp(std::time::Instant::now());
            let mut views: Vec<SlotView> = Vec::new();
            let mut add = |state: SlotState, created_at: Timestamp| {
                views.push(SlotView {
                    id: SlotId(views.len() as u64),
                    state,
                    created_at,
                    last_used_at: created_at,
                });
            };
            for (_, created) in &idle {
                add(SlotState::Warm, *created);
            }
            for _ in 0..state.busy {
                add(SlotState::Busy, now);
            }
            for _ in 0..state.initializing {
                add(SlotState::Initializing, now);
            }
            let plan = plan_warm_pool(
                &FunctionPoolState {
                    slots: &views,
                    // The planner ignores the keep-alive decision for provisioned pools.
                    decision: WarmDecision::fixed_ttl(now, Duration::ZERO, DecisionBasis::NoHistory),
                    predicted_demand: 0.0,
                    provisioned_concurrency: requested,
                },
                &WarmPoolConfig::default(),
                now,
            );
            let mut retire_count = 0;
            let mut prewarm = 0;
            for action in plan {
                match action {
                    // Idle slots come first in `views` and the planner retires the
                    // oldest, so the count is enough to pick the same slots.
                    Action::Retire(ids) => retire_count += ids.len(),
                    Action::Prewarm(count) => prewarm += count as usize,
                    Action::Expire(_) => {}
                }
            }
            (pool.take_provisioned_idle(target, retire_count), prewarm)
        };
        for slot in retired {
            tracing::info!(slot_id = %slot.id, function_id = %target.function_id, version = %target.version,
                "provisioned slot retired: more than requested");
            self.destroy(slot);
        }
        prewarm
    }

    /// Initializes `count` provisioned slots for the request's function version
    /// without running an event; the request's payload is ignored. The slots are
    /// counted as initializing before this returns, and the future resolves once
    /// each has finished its init. Returns the number of slots that became ready, or
    /// the first failure. Slots that did become ready stay in the pool either way.
    pub fn prewarm(
        self: &Arc<Self>,
        request: &InvokeRequest,
        count: usize,
    ) -> impl Future<Output = Result<usize, PrewarmError>> + Send + 'static {
        let target = ProvisionedTarget::of_request(request);
        {
            let mut pool = self.pool.lock().expect("pool lock");
            let state = pool.provisioned.entry(target.clone()).or_default();
            state.configured = true;
            state.initializing += count;
        }
        let worker = self.clone();
        let request = request.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..count {
                let worker = worker.clone();
                let request = request.clone();
                let target = target.clone();
                tasks.spawn(async move { worker.start_provisioned_slot(&request, target).await });
            }
            count_started(tasks, None).await
        }
    }

    /// Starts one slot counted as initializing for `target` and adds it to the pool.
    async fn start_provisioned_slot(
        &self,
        request: &InvokeRequest,
        target: ProvisionedTarget,
    ) -> Result<(), PrewarmError> {
        let started = self.try_start_provisioned_slot(request, &target).await;
        let mut pool = self.pool.lock().expect("pool lock");
        let state = pool.provisioned.entry(target.clone()).or_default();
        state.initializing = state.initializing.saturating_sub(1);
        let configured = state.configured;
        let result = match started {
            Ok(mut slot) => {
                if !configured {
                    slot.provisioned = None;
                }
                pool.idle.entry(SlotKey::of(request)).or_default().push(slot);
                Ok(())
            }
            Err(error) => Err(error),
        };
        pool.forget_target_if_unused(&target);
        result
    }

    async fn try_start_provisioned_slot(
        &self,
        request: &InvokeRequest,
        target: &ProvisionedTarget,
    ) -> Result<Slot, PrewarmError> {
        self.check_runtime(&request.settings.runtime)?;
        self.reserve_slot()?;
        let slot_id = self.register_slot(request);
        let started = self.cold_start(request, Some(target.clone()), slot_id).await;
        match started {
            Ok(Ok((mut slot, timing))) => {
                self.stats.provisioned_inits.fetch_add(1, Ordering::Relaxed);
                // The init output is not part of any invocation's log.
                let output = slot.logs.take().await;
                tracing::info!(slot_id = %slot.id, function = %request.function_name, version = %request.version,
                    init_ms = format!("{:.1}", timing.init_ms), output_lines = output.len(), "provisioned slot ready");
                slot.last_used = std::time::Instant::now();
                Ok(slot)
            }
            Ok(Err(failed)) => {
                self.pool.lock().expect("pool lock").total -= 1;
                let message = crate::error_message_in_body(&failed.body)
                    .unwrap_or_else(|| String::from_utf8_lossy(&failed.body).into_owned());
                Err(PrewarmError::InitFailed {
                    error_type: failed.error_type,
                    message,
                })
            }
            Err(error) => {
                self.pool.lock().expect("pool lock").total -= 1;
                Err(error.into())
            }
        }
    }

    /// Retires provisioned slots of targets not in `configured`: idle ones at once,
    /// busy ones become on-demand slots when their invocation ends. Returns the number
    /// of idle slots retired.
    pub fn retain_provisioned(&self, configured: &HashSet<ProvisionedTarget>) -> usize {
        let unconfigured: HashSet<ProvisionedTarget> = {
            let pool = self.pool.lock().expect("pool lock");
            pool.provisioned
                .keys()
                .cloned()
                .chain(pool.idle.values().flatten().filter_map(|s| s.provisioned.clone()))
                .filter(|target| !configured.contains(target))
                .collect()
        };
        unconfigured.iter().map(|target| self.retire_provisioned(target)).sum()
    }

    /// Retires every provisioned slot of a target: idle ones at once, busy ones
    /// become on-demand slots when their invocation ends. Returns the number of idle
    /// slots retired.
    pub fn retire_provisioned(&self, target: &ProvisionedTarget) -> usize {
        let retired = {
            let mut pool = self.pool.lock().expect("pool lock");
            if let Some(state) = pool.provisioned.get_mut(target) {
                state.configured = false;
            }
            let retired = pool.take_provisioned_idle(target, usize::MAX);
            pool.forget_target_if_unused(target);
            retired
        };
        let count = retired.len();
        for slot in retired {
            tracing::info!(slot_id = %slot.id, function_id = %target.function_id, version = %target.version,
                "provisioned slot retired: its configuration was removed");
            self.destroy(slot);
        }
        count
    }

    /// Lists the targets that have provisioned slots, with their counts.
    pub fn provisioned_targets(&self) -> HashMap<ProvisionedTarget, ProvisionedCounts> {
        let targets: Vec<ProvisionedTarget> = {
            let pool = self.pool.lock().expect("pool lock");
            pool.provisioned
                .keys()
                .cloned()
                .chain(pool.idle.values().flatten().filter_map(|s| s.provisioned.clone()))
                .collect()
        };
        targets
            .into_iter()
            .map(|target| {
                let counts = self.provisioned_counts(&target);
                (target, counts)
            })
            .collect()
    }

    fn timestamp(&self, at: std::time::Instant) -> Timestamp {
        Timestamp::from_duration(at.saturating_duration_since(self.epoch))
    }
}

/// Waits for slot start-up tasks and returns how many slots started, or the first
/// error, preferring `first_error` when the caller already had one.
pub(crate) async fn count_started(
    mut tasks: tokio::task::JoinSet<Result<(), PrewarmError>>,
    mut first_error: Option<PrewarmError>,
) -> Result<usize, PrewarmError> {
    let mut ready = 0;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.unwrap_or_else(|e| Err(WorkerError::Io(format!("prewarm task failed: {e}")).into()));
        match outcome {
            Ok(()) => ready += 1,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(ready),
    }
}
