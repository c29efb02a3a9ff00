//! The dynamic warm pool of functions without provisioned concurrency. Every
//! invocation feeds the scheduler's idle-time predictor, and each pass of the warm
//! pool manager (`--warm-pool-interval-ms`) applies `plan_warm_pool` to every
//! function that ran since the server started:
//!
//! - With a representative idle-time histogram, it pre-warms slots before the
//!   predicted next arrival: predicted demand × 1.2, at most 10 per pass. It keeps
//!   the idle slots warm through the predicted window, even past the idle TTL, and
//!   unloads idle slots outside the window.
//! - With a short or unrepresentative history, it falls back to the idle TTL
//!   (`--idle-ttl-seconds`): slots idle for longer expire.
//!
//! Pre-warmed slots are on-demand slots: an invocation that finds one is a warm start.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nimbus_scheduler::lifecycle::SlotState;
use nimbus_scheduler::predictor::{Predictor, PredictorConfig};
use nimbus_scheduler::warm_pool::{plan_warm_pool, Action, FunctionPoolState, SlotId, SlotView, WarmPoolConfig};
use nimbus_scheduler::Timestamp;
use nimbus_worker::{InvokeRequest, WorkerHost};
use uuid::Uuid;

use crate::AppState;

pub struct DynamicPool {
    /// Origin of the predictor's timestamps.
    epoch: Instant,
    predictor: Mutex<Predictor>,
    /// The last invocation of each function, without its payload: the code and
    /// configuration that pre-warmed slots get.
    templates: Mutex<HashMap<Uuid, InvokeRequest>>,
    config: WarmPoolConfig,
}

impl DynamicPool {
    /// Creates the pool; `idle_ttl` is the keep-alive when the history is too short.
    pub fn new(idle_ttl: Duration) -> DynamicPool {
        DynamicPool {
            epoch: Instant::now(),
            predictor: Mutex::new(Predictor::new(PredictorConfig {
                fixed_ttl: idle_ttl,
                ..PredictorConfig::default()
            })),
            templates: Mutex::new(HashMap::new()),
            config: WarmPoolConfig::default(),
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.epoch.elapsed())
    }

    /// Records the arrival of an invocation. Each arrival must be followed by one
    /// [`DynamicPool::record_completion`], also when the invocation was rejected.
    pub fn record_arrival(&self, request: &InvokeRequest) {
        let mut template = request.clone();
        template.payload = bytes::Bytes::new();
        template.client_context = None;
        self.templates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request.function_id, template);
        let now = self.now();
        self.predictor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_arrival(&request.function_id.to_string(), now);
    }

    /// Records the end of an invocation that ran for `duration`; zero for one that
    /// was rejected.
    pub fn record_completion(&self, function_id: Uuid, duration: Duration) {
        let now = self.now();
        self.predictor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_completion(&function_id.to_string(), now, duration);
    }

    /// Returns the code and configuration of a function's last invocation.
    pub fn template(&self, function_id: Uuid) -> Option<InvokeRequest> {
        self.templates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&function_id)
            .cloned()
    }

    /// Plans and applies one pass over the functions without provisioned
    /// concurrency. `provisioned` contains the functions that have it.
    pub async fn reconcile(&self, state: &AppState, provisioned: &HashSet<Uuid>) {
        let functions: Vec<Uuid> = self
            .templates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        for function_id in functions {
            if provisioned.contains(&function_id) {
                continue;
            }
            match state.store.get_function_by_id(function_id).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.templates
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&function_id);
                    continue;
                }
                Err(error) => {
                    tracing::error!(%function_id, %error, "reading a function for the warm pool failed; skipping it this pass");
                    continue;
                }
            }
            self.reconcile_function(state, function_id);
        }
    }

    fn reconcile_function(&self, state: &AppState, function_id: Uuid) {
        let Some(template) = self.template(function_id) else {
            return;
        };
        let key = function_id.to_string();
        let now = self.now();
        let (decision, demand) = {
            let predictor = self.predictor.lock().unwrap_or_else(PoisonError::into_inner);
            (predictor.predict(&key, now), predictor.estimate_demand(&key, now))
        };

        // Slot ids of the planner are indexes into `slots`.
        let mut slots: Vec<(&dyn WorkerHost, String)> = Vec::new();
        let mut views: Vec<SlotView> = Vec::new();
        for host in state.fleet.hosts() {
            for slot in host.on_demand_slots(function_id) {
                views.push(SlotView {
                    id: SlotId(views.len() as u64),
                    state: slot.state,
                    created_at: Timestamp::from_duration(now.since_epoch().saturating_sub(slot.age)),
                    last_used_at: Timestamp::from_duration(now.since_epoch().saturating_sub(slot.idle)),
                });
                slots.push((host.as_ref(), slot.id));
            }
        }
        let plan = plan_warm_pool(
            &FunctionPoolState {
                slots: &views,
                decision,
                predicted_demand: demand,
                provisioned_concurrency: 0,
            },
            &self.config,
            now,
        );

        let mut expired_ids = HashSet::new();
        for action in plan {
            match action {
                Action::Expire(ids) => {
                    for id in ids {
                        let (host, slot_id) = &slots[id.0 as usize];
                        let expired = host.expire_slots(std::slice::from_ref(slot_id));
                        state.metrics.count_warm_pool_action("expire", expired as u64);
                        expired_ids.insert(id);
                    }
                }
                Action::Prewarm(count) => {
                    tracing::info!(function_id = %function_id, count, basis = ?decision.basis, demand = format!("{demand:.2}"),
                        "pre-warming slots before the predicted arrival");
                    state.metrics.count_warm_pool_action("prewarm", u64::from(count));
                    let start = state.fleet.prewarm_on_demand(&template, count as usize);
                    tokio::spawn(async move {
                        if let Err(error) = start.await {
                            tracing::warn!(%function_id, %error, "pre-warming slots failed");
                        }
                    });
                }
                // The planner retires only provisioned slots, which are not planned here.
                Action::Retire(_) => {}
            }
        }

        // Inside the predicted window, the idle slots that stay are kept past the idle
        // TTL until the window ends. Outside it, earlier keeps end.
        let keep = match decision.prewarm_at {
            Some(prewarm_at) if now >= prewarm_at && now < decision.keep_alive_until => {
                decision.keep_alive_until.saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        };
        for (view, (host, slot_id)) in views.iter().zip(&slots) {
            if view.state == SlotState::Warm && !expired_ids.contains(&view.id) {
                host.keep_warm(std::slice::from_ref(slot_id), keep);
            }
        }
    }
}
