//! On-demand slots under the frontend's dynamic warm pool and scaling controller:
//! listing a function's slots, pre-warming new ones before invocations arrive,
//! keeping idle ones past the idle TTL, and expiring them early.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nimbus_scheduler::lifecycle::SlotState;
use uuid::Uuid;

use crate::provisioned::count_started;
use crate::{InvokeRequest, PrewarmError, Slot, SlotKey, Worker};

/// One on-demand slot of a function, as input to warm pool planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDemandSlot {
    pub id: String,
    pub state: SlotState,
    /// Time since the slot was created.
    pub age: Duration,
    /// Time since the slot's last invocation ended, or since it became warm; zero
    /// for a slot that is not warm.
    pub idle: Duration,
}

impl Worker {
    /// Lists the on-demand slots of a function that are initializing, warm or busy.
    /// Provisioned slots are left out, because the provisioned concurrency manager
    /// plans them.
    pub fn on_demand_slots(&self, function_id: Uuid) -> Vec<OnDemandSlot> {
        let pool = self.pool.lock().expect("pool lock");
        let mut slots: Vec<OnDemandSlot> = pool
            .idle
            .iter()
            .filter(|(key, _)| key.function_id == function_id)
            .flat_map(|(_, slots)| slots.iter())
            .filter(|s| s.provisioned.is_none())
            .map(|s| OnDemandSlot {
                id: s.id.clone(),
                state: SlotState::Warm,
                age: s.created.elapsed(),
                idle: s.last_used.elapsed(),
            })
            .collect();
        // Busy and initializing slots are not in `idle`; their age is unknown here
        // and does not matter to the planner, which only expires warm slots.
        slots.extend(
            pool.states
                .iter()
                .filter(|(_, record)| record.function_id == function_id)
                .filter(|(_, record)| matches!(record.state, SlotState::Busy | SlotState::Initializing))
                .map(|(id, record)| OnDemandSlot {
                    id: id.clone(),
                    state: record.state,
                    age: Duration::ZERO,
                    idle: Duration::ZERO,
                }),
        );
        slots
    }

    /// Destroys the idle on-demand slots among `ids` that the warm pool does not keep.
    /// Busy slots, provisioned slots and unknown ids are skipped. Returns the number
    /// destroyed.
    pub fn expire_slots(&self, ids: &[String]) -> usize {
        let now = Instant::now();
        let expired: Vec<Slot> = {
            let mut pool = self.pool.lock().expect("pool lock");
            let mut expired = Vec::new();
            for slots in pool.idle.values_mut() {
                let (chosen, rest): (Vec<Slot>, Vec<Slot>) = slots.drain(..).partition(|s| {
                    s.provisioned.is_none() && ids.contains(&s.id) && s.keep_until.is_none_or(|until| until <= now)
                });
                *slots = rest;
                expired.extend(chosen);
            }
            pool.idle.retain(|_, slots| !slots.is_empty());
            pool.total -= expired.len();
            expired
        };
        let count = expired.len();
        for slot in expired {
            tracing::info!(slot_id = %slot.id, invocations = slot.invocations, "idle slot expired by the warm pool");
            self.destroy(slot);
        }
        count
    }

    /// Keeps the idle on-demand slots among `ids` past the idle TTL for `duration`
    /// from now; a zero duration ends an earlier keep.
    pub fn keep_warm(&self, ids: &[String], duration: Duration) {
        let until = Instant::now() + duration;
        let mut pool = self.pool.lock().expect("pool lock");
        for slot in pool.idle.values_mut().flatten() {
            if slot.provisioned.is_none() && ids.contains(&slot.id) {
                slot.keep_until = Some(until);
            }
        }
    }

    /// Starts `count` on-demand slots for the request's function version without
    /// running an event. Room for them is reserved and they count as initializing
    /// before this returns, and the future resolves once each has finished its init.
    /// Reserving room may evict another function's idle slot, as a cold start does.
    /// Returns the number that became ready, or the first failure.
    pub fn prewarm_on_demand(
        self: &Arc<Self>,
        request: &InvokeRequest,
        count: usize,
    ) -> impl Future<Output = Result<usize, PrewarmError>> + Send + 'static {
        let mut reserved = Vec::new();
        let mut reserve_error = None;
        for _ in 0..count {
            let reservation = self
                .check_runtime(&request.settings.runtime)
                .and_then(|()| self.reserve_slot());
            match reservation {
                Ok(()) => reserved.push(self.register_slot(request)),
                Err(error) => {
                    reserve_error = Some(PrewarmError::Worker(error));
                    break;
                }
            }
        }
        let worker = self.clone();
        let request = request.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for slot_id in reserved {
                let worker = worker.clone();
                let request = request.clone();
                tasks.spawn(async move { worker.start_on_demand_slot(&request, slot_id).await });
            }
            count_started(tasks, reserve_error).await
        }
    }

    async fn start_on_demand_slot(&self, request: &InvokeRequest, slot_id: String) -> Result<(), PrewarmError> {
        match self.cold_start(request, None, slot_id).await {
            Ok(Ok((mut slot, timing))) => {
                // The init output is not part of any invocation's log.
                let output = slot.logs.take().await;
                tracing::info!(slot_id = %slot.id, function = %request.function_name, version = %request.version,
                    init_ms = format!("{:.1}", timing.init_ms), output_lines = output.len(), "pre-warmed slot ready");
                slot.last_used = Instant::now();
                self.pool
                    .lock()
                    .expect("pool lock")
                    .idle
                    .entry(SlotKey::of(request))
                    .or_default()
                    .push(slot);
                Ok(())
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
}
