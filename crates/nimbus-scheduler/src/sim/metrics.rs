//! Measurements of a replay: [`PolicyReport`] and the figures derived from it.

use std::time::Duration;

use crate::lifecycle::TransitionCounters;
use crate::sim::engine::Policy;

/// Outcome of replaying one trace under one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyReport {
    pub policy: Policy,
    pub invocations: u64,
    pub served: u64,
    pub cold_starts: u64,
    /// Counts per function of the trace.
    pub per_function: Vec<FunctionCounts>,
    /// Totals over the infrequent functions: those invoked at most once per minute on
    /// average over the trace.
    pub infrequent: FunctionCounts,
    pub infrequent_functions: u64,
    pub throttled_by_burst_limit: u64,
    pub throttled_by_capacity: u64,
    /// Added latency of each served invocation in ms: 0 when warm, up to the cold-start
    /// time otherwise. Sorted ascending.
    pub added_latency_ms: Vec<u64>,
    /// Sum over warm, unused slots of memory × idle time, in MB·ms.
    pub idle_memory_mb_ms: u128,
    /// Largest memory held by slots in any state at once, in MB.
    pub peak_memory_mb: u64,
    pub slots_started: u64,
    pub prewarmed: u64,
    pub prewarms_without_host: u64,
    pub expired: u64,
    pub evicted: u64,
    /// Warm-pool rounds, per function, whose decision came from the histogram.
    pub histogram_decisions: u64,
    pub pool_decisions: u64,
    pub transitions: TransitionCounters,
    /// Wall-clock time of the replay itself.
    pub replay_time: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunctionCounts {
    pub invocations: u64,
    pub served: u64,
    pub cold_starts: u64,
    pub idle_memory_mb_ms: u128,
}

impl PolicyReport {
    /// Nearest-rank percentile (0–100) over functions with a served invocation of
    /// their cold-start ratio, the measure "Serverless in the Wild" reports per
    /// application.
    pub fn function_cold_start_percentile(&self, percentile: f64) -> f64 {
        let mut ratios: Vec<f64> = self
            .per_function
            .iter()
            .filter(|f| f.served > 0)
            .map(|f| f.cold_starts as f64 / f.served as f64)
            .collect();
        if ratios.is_empty() {
            return 0.0;
        }
        ratios.sort_by(f64::total_cmp);
        let rank = (percentile / 100.0 * ratios.len() as f64).ceil() as usize;
        ratios[rank.clamp(1, ratios.len()) - 1]
    }

    pub fn throttles(&self) -> u64 {
        self.throttled_by_burst_limit + self.throttled_by_capacity
    }

    /// Cold starts per served invocation.
    pub fn cold_start_ratio(&self) -> f64 {
        if self.served == 0 {
            return 0.0;
        }
        self.cold_starts as f64 / self.served as f64
    }

    /// Nearest-rank percentile (0–100) of the added latency in ms.
    pub fn added_latency_percentile(&self, percentile: f64) -> u64 {
        if self.added_latency_ms.is_empty() {
            return 0;
        }
        let rank = (percentile / 100.0 * self.added_latency_ms.len() as f64).ceil() as usize;
        self.added_latency_ms[rank.clamp(1, self.added_latency_ms.len()) - 1]
    }

    pub fn mean_added_latency_ms(&self) -> f64 {
        if self.added_latency_ms.is_empty() {
            return 0.0;
        }
        self.added_latency_ms.iter().sum::<u64>() as f64 / self.added_latency_ms.len() as f64
    }

    pub fn idle_memory_mb_seconds(&self) -> f64 {
        self.idle_memory_mb_ms as f64 / 1000.0
    }
}
