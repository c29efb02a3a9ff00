//! The scaling controller and the burst limit on new execution environments.
//!
//! Every second the controller samples each function's invocations, cold starts,
//! capacity throttles and time-averaged concurrency, and applies the scheduler's
//! `decide_scaling` to the last 60 seconds. It decides only for functions with
//! invocations running or arriving in the last second, so that past activity does
//! not bring back slots that the idle TTL expired:
//!
//! - Scale-up pre-warms on-demand slots, within the function's burst limit.
//! - Scale-down expires warm slots, longest idle first, but only slots idle for at
//!   least the 60-second window, so a burst's slots stay warm for the next burst.
//!   Slots that the dynamic warm pool keeps are skipped.
//!
//! The burst limit (`--burst-limit`, 1,000 by default) allows that many new
//! environments per function per 10 seconds, cold starts and pre-warms together. A
//! cold start beyond it is rejected with 429 and the reason
//! `FunctionInvocationRateLimitExceeded`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nimbus_scheduler::lifecycle::SlotState;
use nimbus_scheduler::scaling::{
    decide_scaling, BurstLimiter, MetricsWindow, ScalingConfig, ScalingDecision, DEFAULT_BURST_INTERVAL,
};
use nimbus_scheduler::warm_pool::SlotCounts;
use nimbus_scheduler::MonotonicClock;
use uuid::Uuid;

use crate::AppState;

/// How often the controller samples and decides.
pub const SCALING_INTERVAL: Duration = Duration::from_secs(1);
/// Length of the metrics window given to `decide_scaling`, in samples.
const WINDOW_SAMPLES: usize = 60;

/// One second of a function's activity.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    invocations: u64,
    cold_starts: u64,
    throttles: u64,
    /// Average concurrent invocations over the second.
    concurrency: f64,
    peak: u32,
}

#[derive(Debug)]
struct FunctionActivity {
    in_flight: u32,
    current: Sample,
    /// In-flight invocations integrated over time since the last sample, in seconds.
    busy_seconds: f64,
    last_change: Instant,
    /// The last two windows of samples, newest last.
    samples: VecDeque<Sample>,
}

impl FunctionActivity {
    fn new() -> FunctionActivity {
        FunctionActivity {
            in_flight: 0,
            current: Sample::default(),
            busy_seconds: 0.0,
            last_change: Instant::now(),
            samples: VecDeque::new(),
        }
    }

    fn integrate(&mut self, now: Instant) {
        self.busy_seconds += f64::from(self.in_flight) * now.saturating_duration_since(self.last_change).as_secs_f64();
        self.last_change = now;
    }

    /// Closes the current second and returns the metrics of the last window.
    fn sample(&mut self, elapsed: Duration) -> MetricsWindow {
        let now = Instant::now();
        self.integrate(now);
        let mut sample = std::mem::take(&mut self.current);
        sample.concurrency = self.busy_seconds / elapsed.as_secs_f64().max(0.001);
        sample.peak = sample.peak.max(self.in_flight);
        self.busy_seconds = 0.0;
        self.samples.push_back(sample);
        while self.samples.len() > 2 * WINDOW_SAMPLES {
            self.samples.pop_front();
        }
        let all: Vec<Sample> = self.samples.iter().copied().collect();
        let (previous, recent) = all.split_at(all.len().saturating_sub(WINDOW_SAMPLES));
        // Seconds without a sample, before the function's first invocation, count as
        // zero concurrency, so a young history does not look busier than it was.
        let mean = |samples: &[Sample]| samples.iter().map(|s| s.concurrency).sum::<f64>() / WINDOW_SAMPLES as f64;
        MetricsWindow {
            window: SCALING_INTERVAL * WINDOW_SAMPLES as u32,
            invocations: recent.iter().map(|s| s.invocations).sum(),
            cold_starts: recent.iter().map(|s| s.cold_starts).sum(),
            throttles: recent.iter().map(|s| s.throttles).sum(),
            avg_concurrency: mean(recent),
            peak_concurrency: recent.iter().map(|s| s.peak).max().unwrap_or(0),
            previous_avg_concurrency: mean(previous),
        }
    }

    /// Checks whether the function ran, started or was throttled in the last second.
    fn active(&self) -> bool {
        self.in_flight > 0
            || self
                .samples
                .back()
                .is_some_and(|s| s.invocations > 0 || s.throttles > 0)
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && self.samples.iter().all(|s| s.invocations == 0 && s.throttles == 0)
    }
}

pub struct Scaling {
    config: ScalingConfig,
    clock: MonotonicClock,
    burst: Mutex<BurstLimiter>,
    functions: Mutex<HashMap<Uuid, FunctionActivity>>,
}

impl Scaling {
    /// Creates the controller with a burst limit of `burst_limit` new environments
    /// per function per 10 seconds.
    pub fn new(burst_limit: u32) -> Scaling {
        let config = ScalingConfig {
            burst_limit,
            burst_interval: DEFAULT_BURST_INTERVAL,
            ..ScalingConfig::default()
        };
        Scaling {
            config,
            clock: MonotonicClock::new(),
            burst: Mutex::new(BurstLimiter::from_config(&config)),
            functions: Mutex::new(HashMap::new()),
        }
    }

    pub fn burst_limit(&self) -> u32 {
        self.config.burst_limit
    }

    pub fn burst_interval(&self) -> Duration {
        self.config.burst_interval
    }

    /// Takes up to `requested` new environments of a function from its burst limit
    /// and returns how many were granted.
    pub fn admit_new_environments(&self, function_id: Uuid, requested: u32) -> u32 {
        self.burst
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(&function_id.to_string(), requested, &self.clock)
            .granted
    }

    fn with_activity(&self, function_id: Uuid, change: impl FnOnce(&mut FunctionActivity)) {
        let mut functions = self.functions.lock().unwrap_or_else(PoisonError::into_inner);
        let activity = functions.entry(function_id).or_insert_with(FunctionActivity::new);
        change(activity);
    }

    /// Records the start of an invocation on a slot.
    pub fn record_start(&self, function_id: Uuid, cold: bool) {
        self.with_activity(function_id, |activity| {
            activity.integrate(Instant::now());
            activity.in_flight += 1;
            activity.current.invocations += 1;
            activity.current.cold_starts += u64::from(cold);
            activity.current.peak = activity.current.peak.max(activity.in_flight);
        });
    }

    /// Records the end of an invocation that [`Scaling::record_start`] recorded.
    pub fn record_end(&self, function_id: Uuid) {
        self.with_activity(function_id, |activity| {
            activity.integrate(Instant::now());
            activity.in_flight = activity.in_flight.saturating_sub(1);
        });
    }

    /// Records an invocation rejected because no capacity was available.
    pub fn record_throttle(&self, function_id: Uuid) {
        self.with_activity(function_id, |activity| activity.current.throttles += 1);
    }

    /// Starts the controller loop.
    pub fn start(self: &Arc<Self>, state: AppState) {
        let scaling = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(SCALING_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_tick = Instant::now();
            loop {
                ticker.tick().await;
                let elapsed = last_tick.elapsed();
                last_tick = Instant::now();
                scaling.tick(&state, elapsed);
            }
        });
    }

    fn tick(&self, state: &AppState, elapsed: Duration) {
        let windows: Vec<(Uuid, MetricsWindow, bool)> = {
            let mut functions = self.functions.lock().unwrap_or_else(PoisonError::into_inner);
            functions.retain(|_, activity| !activity.idle() || activity.samples.len() < 2 * WINDOW_SAMPLES);
            functions
                .iter_mut()
                .map(|(function_id, activity)| {
                    let window = activity.sample(elapsed);
                    (*function_id, window, activity.active())
                })
                .collect()
        };
        for (function_id, window, active) in windows {
            if !active {
                continue;
            }
            self.scale_function(state, function_id, &window);
        }
    }

    fn scale_function(&self, state: &AppState, function_id: Uuid, window: &MetricsWindow) {
        let mut counts = SlotCounts::default();
        let mut warm = Vec::new();
        for host in state.fleet.hosts() {
            for slot in host.on_demand_slots(function_id) {
                match slot.state {
                    SlotState::Initializing => counts.initializing += 1,
                    SlotState::Busy => counts.busy += 1,
                    SlotState::Warm => {
                        counts.warm += 1;
                        warm.push((host.clone(), slot));
                    }
                    _ => {}
                }
            }
        }
        match decide_scaling(window, &counts, &self.config) {
            ScalingDecision::Hold => {}
            ScalingDecision::ScaleUp { add, reason } => {
                let Some(template) = state.warm_pool.template(function_id) else {
                    return;
                };
                let granted = self.admit_new_environments(function_id, add);
                state.metrics.count_scaling_decision("scale_up");
                if granted == 0 {
                    return;
                }
                tracing::info!(%function_id, add = granted, ?reason, "scaling up");
                let start = state.fleet.prewarm_on_demand(&template, granted as usize);
                tokio::spawn(async move {
                    if let Err(error) = start.await {
                        tracing::warn!(%function_id, %error, "scaling up failed");
                    }
                });
            }
            ScalingDecision::ScaleDown { remove } => {
                // Only slots idle for a whole window go, longest idle first.
                warm.retain(|(_, slot)| slot.idle >= window.window);
                warm.sort_by_key(|(_, slot)| std::cmp::Reverse(slot.idle));
                let mut removed = 0;
                for (host, slot) in warm.into_iter().take(remove as usize) {
                    removed += host.expire_slots(std::slice::from_ref(&slot.id));
                }
                if removed > 0 {
                    state.metrics.count_scaling_decision("scale_down");
                    tracing::info!(%function_id, removed, "scaled down");
                }
            }
        }
    }
}
