//! Prometheus metrics of the invocation path, served without authentication at
//! `GET /metrics` in the Prometheus text format 0.0.4.
//!
//! Labels are bounded: account and function names, statuses, throttle reasons,
//! cold-start phases, cache tiers, worker host ids, slot states and warm pool and
//! scaling actions, never request ids. A deleted function's series
//! stay until the server restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use nimbus_store::Account;
use nimbus_worker::{HostId, InvokeResult, WorkerError};

use crate::fleet::Fleet;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

/// Status label of an invocation that failed in the platform, not in the function.
pub const SERVICE_ERROR_STATUS: &str = "SERVICE_ERROR";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    account: String,
    function: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThrottleLabels {
    account: String,
    function: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    account: String,
    function: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
    tier: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    account: String,
}

fn new_phase_histogram() -> Histogram {
    // Buckets from 0.5 ms to about 16 s, each twice the one before.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics registry and handles to its metrics.
pub struct Metrics {
    registry: Registry,
    invocations: Family<StatusLabels, Counter>,
    errors: Family<StatusLabels, Counter>,
    throttles: Family<ThrottleLabels, Counter>,
    cold_starts: Family<FunctionLabels, Counter>,
    cold_start_phases: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    concurrency: Family<AccountLabels, Gauge>,
    warm_slots: Gauge,
    busy_slots: Gauge,
    queue_depth: Gauge,
    placements: Family<HostLabels, Counter>,
    placement_failures: Counter,
    warm_pool_actions: Family<ActionLabels, Counter>,
    scaling_decisions: Family<DecisionLabels, Counter>,
    /// Names of the accounts that invoked since the start, for the concurrency gauge.
    accounts: Mutex<HashMap<Uuid, String>>,
    /// Serializes scrapes, which set gauges before encoding them.
    scrape: tokio::sync::Mutex<()>,
}

impl Metrics {
    /// Creates the registry. The code cache and slot transition counters are read
    /// from the hosts of `fleet` at each scrape.
    pub fn new(fleet: Arc<Fleet>) -> Metrics {
        let mut registry = Registry::default();
        let invocations = Family::<StatusLabels, Counter>::default();
        let errors = Family::<StatusLabels, Counter>::default();
        let throttles = Family::<ThrottleLabels, Counter>::default();
        let cold_starts = Family::<FunctionLabels, Counter>::default();
        let cold_start_phases =
            Family::<PhaseLabels, Histogram, fn() -> Histogram>::new_with_constructor(new_phase_histogram);
        let concurrency = Family::<AccountLabels, Gauge>::default();
        let warm_slots = Gauge::default();
        let busy_slots = Gauge::default();
        let queue_depth = Gauge::default();
        let placements = Family::<HostLabels, Counter>::default();
        let placement_failures = Counter::default();
        let warm_pool_actions = Family::<ActionLabels, Counter>::default();
        let scaling_decisions = Family::<DecisionLabels, Counter>::default();

        registry.register(
            "nimbus_invocations",
            "Invocations that ran on a slot, by final status: SUCCESS, ERROR, TIMEOUT, or SERVICE_ERROR when the platform failed",
            invocations.clone(),
        );
        registry.register(
            "nimbus_invocation_errors",
            "Invocations that ended in a function error, a timeout or a platform failure, by status",
            errors.clone(),
        );
        registry.register(
            "nimbus_throttles",
            "Invocation attempts rejected with 429, by reason; retries of a queued event count each time",
            throttles.clone(),
        );
        registry.register(
            "nimbus_cold_starts",
            "Invocations that started a new execution slot",
            cold_starts.clone(),
        );
        registry.register(
            "nimbus_cold_start_phase_seconds",
            "Duration of each cold-start phase (sandbox, code, init, and init split into runtime and user_init), by the cache tier that served the code",
            cold_start_phases.clone(),
        );
        registry.register(
            "nimbus_concurrent_executions",
            "Concurrency leases that each account holds now",
            concurrency.clone(),
        );
        registry.register(
            "nimbus_warm_slots",
            "Idle execution slots kept warm",
            warm_slots.clone(),
        );
        registry.register(
            "nimbus_busy_slots",
            "Execution slots running or starting an invocation",
            busy_slots.clone(),
        );
        registry.register(
            "nimbus_async_queue_depth",
            "Asynchronous events stored and not yet finished, including those waiting for a retry",
            queue_depth.clone(),
        );
        registry.register(
            "nimbus_placements",
            "Cold starts that placement sent to a worker host",
            placements.clone(),
        );
        registry.register(
            "nimbus_placement_failures",
            "Cold starts rejected with 429 NoCapacityAvailable because no worker host was feasible",
            placement_failures.clone(),
        );
        registry.register(
            "nimbus_warm_pool_actions",
            "Slots that the dynamic warm pool pre-warmed (prewarm) or expired (expire)",
            warm_pool_actions.clone(),
        );
        registry.register(
            "nimbus_scaling_decisions",
            "Scaling controller decisions that changed a function's slots, by decision: scale_up or scale_down",
            scaling_decisions.clone(),
        );
        registry.register_collector(Box::new(HostCollector { fleet }));

        Metrics {
            registry,
            invocations,
            errors,
            throttles,
            cold_starts,
            cold_start_phases,
            concurrency,
            warm_slots,
            busy_slots,
            queue_depth,
            placements,
            placement_failures,
            warm_pool_actions,
            scaling_decisions,
            accounts: Mutex::new(HashMap::new()),
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// Remembers an account's name so its concurrency gauge is exported.
    pub fn track_account(&self, account: &Account) {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        accounts
            .entry(account.account_id)
            .or_insert_with(|| account.name.clone());
    }

    /// Counts one cold start that placement sent to `host`.
    pub fn count_placement(&self, host: HostId) {
        self.placements
            .get_or_create(&HostLabels { host: host.to_string() })
            .inc();
    }

    pub fn count_placement_failure(&self) {
        self.placement_failures.inc();
    }

    /// Counts `slots` slots that one dynamic warm pool action started or expired.
    pub fn count_warm_pool_action(&self, action: &str, slots: u64) {
        if slots == 0 {
            return;
        }
        self.warm_pool_actions
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .inc_by(slots);
    }

    pub fn count_scaling_decision(&self, decision: &str) {
        self.scaling_decisions
            .get_or_create(&DecisionLabels {
                decision: decision.to_string(),
            })
            .inc();
    }

    /// Counts one invocation attempt that was rejected with 429.
    pub fn count_throttle(&self, account: &str, function: &str, reason: &str) {
        self.throttles
            .get_or_create(&ThrottleLabels {
                account: account.to_string(),
                function: function.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts what the worker returned for one admitted invocation.
    pub fn observe_invocation(&self, account: &str, function: &str, outcome: &Result<InvokeResult, WorkerError>) {
        let status = match outcome {
            Ok(result) => result.status.as_str(),
            Err(WorkerError::NoCapacity { .. } | WorkerError::NoFeasibleHost(_)) => {
                self.count_throttle(account, function, "NoCapacityAvailable");
                return;
            }
            Err(WorkerError::BurstLimitExceeded { .. }) => {
                self.count_throttle(account, function, crate::invoke::BURST_LIMIT_REASON);
                return;
            }
            Err(_) => SERVICE_ERROR_STATUS,
        };
        let labels = StatusLabels {
            account: account.to_string(),
            function: function.to_string(),
            status: status.to_string(),
        };
        self.invocations.get_or_create(&labels).inc();
        if status != "SUCCESS" {
            self.errors.get_or_create(&labels).inc();
        }

        let Some(cold) = outcome.as_ref().ok().and_then(|result| result.cold_start) else {
            return;
        };
        self.cold_starts
            .get_or_create(&FunctionLabels {
                account: account.to_string(),
                function: function.to_string(),
            })
            .inc();
        let tier = cold.code_tier.as_str();
        // `init` is the whole init phase. `runtime` and `user_init` split it and are only
        // observed when the runtime reported when it became ready.
        let phases = [
            ("sandbox", Some(cold.sandbox_ms)),
            ("code", Some(cold.code_ms)),
            ("init", Some(cold.init_ms)),
            ("runtime", cold.runtime_ms),
            ("user_init", cold.user_init_ms),
        ];
        for (phase, milliseconds) in phases {
            let Some(milliseconds) = milliseconds else {
                continue;
            };
            self.cold_start_phases
                .get_or_create(&PhaseLabels {
                    phase: phase.to_string(),
                    tier: tier.to_string(),
                })
                .observe(milliseconds / 1000.0);
        }
    }

    /// Reads the gauges from their sources and encodes every metric.
    pub async fn render(&self, state: &AppState) -> Result<String, std::fmt::Error> {
        let _scrape = self.scrape.lock().await;
        let accounts: Vec<(Uuid, String)> = self
            .accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, name)| (*id, name.clone()))
            .collect();
        for (account_id, name) in accounts {
            let in_use = state.limiter.in_use(account_id).await;
            self.concurrency
                .get_or_create(&AccountLabels { account: name })
                .set(in_use as i64);
        }

        let (idle, busy) = state.fleet.slot_counts();
        self.warm_slots.set(idle as i64);
        self.busy_slots.set(busy as i64);
        match state.store.count_events().await {
            Ok(depth) => {
                self.queue_depth.set(depth as i64);
            }
            Err(error) => {
                tracing::warn!(%error, "counting queued events for /metrics failed, so the gauge keeps its last value")
            }
        }

        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Exports the counters that the worker hosts keep themselves: code cache lookups
/// and slot state transitions, summed over the hosts.
struct HostCollector {
    fleet: Arc<Fleet>,
}

impl std::fmt::Debug for HostCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCollector").finish_non_exhaustive()
    }
}

impl HostCollector {
    fn encode_transitions(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut totals: HashMap<(&'static str, &'static str), u64> = HashMap::new();
        for host in self.fleet.hosts() {
            for (from, to, count) in host.transition_counters().accepted_pairs() {
                *totals.entry((from.as_str(), to.as_str())).or_default() += count;
            }
        }
        let mut pairs: Vec<_> = totals.into_iter().collect();
        pairs.sort();
        let mut metric = encoder.encode_descriptor(
            "nimbus_slot_transitions",
            "Execution slot state changes, by from and to state",
            None,
            MetricType::Counter,
        )?;
        for ((from, to), count) in pairs {
            let labels = [("from", from), ("to", to)];
            ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Collector for HostCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_transitions(&mut encoder)?;
        let mut counts = nimbus_worker::CacheCounts::default();
        for (index, host) in self.fleet.hosts().iter().enumerate() {
            let host_counts = host.cache_counts();
            counts.l1_hits += host_counts.l1_hits;
            counts.l1_misses += host_counts.l1_misses;
            // Every host reports the same shared L2 and L3 counts; take them once.
            if index == 0 {
                counts.l2_hits = host_counts.l2_hits;
                counts.l2_misses = host_counts.l2_misses;
                counts.origin_hits = host_counts.origin_hits;
                counts.origin_misses = host_counts.origin_misses;
            }
        }
        let series = [
            (
                "nimbus_code_cache_hits",
                "Code package lookups that a cache tier served: L1 is the workers' unpacked caches, L2 the server's memory, L3 the origin store",
                [("L1", counts.l1_hits), ("L2", counts.l2_hits), ("L3", counts.origin_hits)],
            ),
            (
                "nimbus_code_cache_misses",
                "Code package lookups that a cache tier could not serve; an L1 miss goes on to L2, an L2 miss to L3, and an L3 miss fails the cold start",
                [("L1", counts.l1_misses), ("L2", counts.l2_misses), ("L3", counts.origin_misses)],
            ),
        ];
        for (name, help, values) in series {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (tier, value) in values {
                let labels = [("tier", tier)];
                ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Serves `GET /metrics`.
pub async fn serve_metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.metrics.render(&state).await.map_err(|error| {
        tracing::error!(%error, "encoding metrics failed");
        ApiError::Service("encoding the metrics failed; see the server log".to_string())
    })?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(prometheus_text::CONTENT_TYPE));
    Ok(response)
}
