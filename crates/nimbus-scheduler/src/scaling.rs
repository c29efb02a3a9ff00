//! Scaling decisions for one function, and the burst limit on new execution
//! environments.
//!
//! [`decide_scaling`] scales up when the last metrics window had throttles (to 1.5 ×
//! the peak concurrency) or a cold-start ratio above the threshold (to the average
//! concurrency grown by its growth rate). Otherwise it scales down when the average
//! concurrency is below half of the warm plus busy slots, to the smallest pool at which
//! the average is half of the slots again. Scale-up is capped at the burst limit.
//!
//! [`BurstLimiter`] enforces the burst limit with a sliding window per function: at
//! most `burst` new environments (1,000 by default) in any `interval` (10 s by
//! default), as Lambda scales each function. A request beyond that is throttled.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, Timestamp};
use crate::warm_pool::SlotCounts;

/// New execution environments per function per burst interval.
pub const DEFAULT_BURST_LIMIT: u32 = 1000;
pub const DEFAULT_BURST_INTERVAL: Duration = Duration::from_secs(10);

/// One function's invocation metrics over a recent window (60 s in the scaling loop).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsWindow {
    pub window: Duration,
    pub invocations: u64,
    pub cold_starts: u64,
    pub throttles: u64,
    pub avg_concurrency: f64,
    pub peak_concurrency: u32,
    /// Average concurrency of the window before, for the growth rate.
    pub previous_avg_concurrency: f64,
}

impl MetricsWindow {
    /// Cold starts per invocation; 0 without invocations.
    pub fn cold_start_ratio(&self) -> f64 {
        if self.invocations == 0 {
            return 0.0;
        }
        self.cold_starts as f64 / self.invocations as f64
    }

    /// Relative growth of the average concurrency over the previous window, at least 0.
    pub fn growth_rate(&self) -> f64 {
        if self.previous_avg_concurrency <= 0.0 {
            return 0.0;
        }
        ((self.avg_concurrency - self.previous_avg_concurrency) / self.previous_avg_concurrency).max(0.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalingConfig {
    /// Cold-start ratio (0–1) above which the function scales up.
    pub cold_start_threshold: f64,
    /// Scale down when the average concurrency is below this fraction of the slots.
    pub scale_down_utilization: f64,
    /// Factor over the peak concurrency to scale up to after throttles.
    pub throttle_headroom: f64,
    /// Maximum new environments per function per `burst_interval`.
    pub burst_limit: u32,
    pub burst_interval: Duration,
}

impl Default for ScalingConfig {
    fn default() -> ScalingConfig {
        ScalingConfig {
            cold_start_threshold: 0.1,
            scale_down_utilization: 0.5,
            throttle_headroom: 1.5,
            burst_limit: DEFAULT_BURST_LIMIT,
            burst_interval: DEFAULT_BURST_INTERVAL,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScaleUpReason {
    Throttles,
    ColdStarts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScalingDecision {
    /// Start `add` new slots.
    ScaleUp {
        add: u32,
        reason: ScaleUpReason,
    },
    /// Shut down `remove` warm slots.
    ScaleDown {
        remove: u32,
    },
    Hold,
}

/// Decides whether one function needs more or fewer slots. `slots` are the function's
/// current slots; initializing ones count toward scale-up targets.
pub fn decide_scaling(metrics: &MetricsWindow, slots: &SlotCounts, config: &ScalingConfig) -> ScalingDecision {
    let total = slots.warm + slots.busy + slots.initializing;
    let scale_up = if metrics.throttles > 0 {
        let target = (f64::from(metrics.peak_concurrency) * config.throttle_headroom).ceil();
        Some((target, ScaleUpReason::Throttles))
    } else if metrics.cold_start_ratio() > config.cold_start_threshold {
        let target = (metrics.avg_concurrency * (1.0 + metrics.growth_rate())).ceil();
        Some((target, ScaleUpReason::ColdStarts))
    } else {
        None
    };
    if let Some((target, reason)) = scale_up {
        let add = saturating_u32(target).saturating_sub(total).min(config.burst_limit);
        if add > 0 {
            return ScalingDecision::ScaleUp { add, reason };
        }
    }

    let serving = slots.warm + slots.busy;
    if slots.warm > 0 && metrics.avg_concurrency < f64::from(serving) * config.scale_down_utilization {
        let needed = saturating_u32((metrics.avg_concurrency / config.scale_down_utilization).ceil());
        let keep = needed.max(slots.busy);
        let remove = serving.saturating_sub(keep).min(slots.warm);
        if remove > 0 {
            return ScalingDecision::ScaleDown { remove };
        }
    }
    ScalingDecision::Hold
}

fn saturating_u32(value: f64) -> u32 {
    // `as` saturates and maps NaN to 0.
    value as u32
}

/// The outcome of a request for new environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub granted: u32,
    pub throttled: u32,
}

/// Grants of one function inside the last interval, oldest first.
#[derive(Debug, Clone)]
struct GrantWindow {
    grants: VecDeque<(Timestamp, u32)>,
    in_window: u32,
}

impl GrantWindow {
    /// Grants up to `requested` so that the grants younger than `interval` stay
    /// within `limit`, and returns how many were granted.
    fn take(&mut self, requested: u32, limit: u32, interval: Duration, now: Timestamp) -> u32 {
        while let Some((at, count)) = self.grants.front().copied() {
            if now.saturating_duration_since(at) < interval {
                break;
            }
            self.grants.pop_front();
            self.in_window -= count;
        }
        let granted = requested.min(limit.saturating_sub(self.in_window));
        if granted > 0 {
            self.grants.push_back((now, granted));
            self.in_window += granted;
        }
        granted
    }
}

/// Per-function burst limit on new execution environments, on a [`Clock`].
#[derive(Debug, Clone)]
pub struct BurstLimiter {
    burst: u32,
    interval: Duration,
    windows: HashMap<String, GrantWindow>,
}

impl BurstLimiter {
    pub fn new(burst: u32, interval: Duration) -> BurstLimiter {
        BurstLimiter {
            burst,
            interval,
            windows: HashMap::new(),
        }
    }

    pub fn from_config(config: &ScalingConfig) -> BurstLimiter {
        BurstLimiter::new(config.burst_limit, config.burst_interval)
    }

    /// Admits up to `requested` new environments of `function` now; the rest are
    /// throttled.
    pub fn admit(&mut self, function: &str, requested: u32, clock: &dyn Clock) -> Admission {
        let now = clock.now();
        let window = self.windows.entry(function.to_string()).or_insert_with(|| GrantWindow {
            grants: VecDeque::new(),
            in_window: 0,
        });
        let granted = window.take(requested, self.burst, self.interval, now);
        Admission {
            granted,
            throttled: requested - granted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn metrics(invocations: u64, cold_starts: u64, throttles: u64, avg: f64, peak: u32) -> MetricsWindow {
        MetricsWindow {
            window: Duration::from_secs(60),
            invocations,
            cold_starts,
            throttles,
            avg_concurrency: avg,
            peak_concurrency: peak,
            previous_avg_concurrency: avg,
        }
    }

    fn slots(warm: u32, busy: u32, initializing: u32) -> SlotCounts {
        SlotCounts {
            initializing,
            warm,
            busy,
        }
    }

    #[test]
    fn throttles_scale_up_to_peak_headroom() {
        // Peak 10 * 1.5 = 15 slots wanted; 8 exist.
        let decision = decide_scaling(&metrics(100, 0, 3, 8.0, 10), &slots(0, 8, 0), &ScalingConfig::default());
        assert_eq!(
            decision,
            ScalingDecision::ScaleUp {
                add: 7,
                reason: ScaleUpReason::Throttles
            }
        );
    }

    #[test]
    fn throttle_scale_up_capped_by_burst_limit() {
        let config = ScalingConfig {
            burst_limit: 100,
            ..ScalingConfig::default()
        };
        let decision = decide_scaling(&metrics(10_000, 0, 500, 900.0, 1_000), &slots(0, 10, 0), &config);
        assert_eq!(
            decision,
            ScalingDecision::ScaleUp {
                add: 100,
                reason: ScaleUpReason::Throttles
            }
        );
    }

    #[test]
    fn cold_start_ratio_scales_up_with_growth() {
        // 20% cold starts; concurrency grew from 4 to 6 (50%), so 6 * 1.5 = 9 slots.
        let mut window = metrics(100, 20, 0, 6.0, 7);
        window.previous_avg_concurrency = 4.0;
        let decision = decide_scaling(&window, &slots(1, 5, 0), &ScalingConfig::default());
        assert_eq!(
            decision,
            ScalingDecision::ScaleUp {
                add: 3,
                reason: ScaleUpReason::ColdStarts
            }
        );
    }

    #[test]
    fn cold_start_ratio_at_threshold_holds() {
        let decision = decide_scaling(&metrics(100, 10, 0, 6.0, 7), &slots(1, 5, 0), &ScalingConfig::default());
        assert_eq!(decision, ScalingDecision::Hold);
    }

    #[test]
    fn initializing_slots_count_toward_scale_up() {
        let decision = decide_scaling(&metrics(100, 0, 3, 8.0, 10), &slots(0, 8, 7), &ScalingConfig::default());
        assert_eq!(decision, ScalingDecision::Hold);
    }

    #[test]
    fn low_concurrency_scales_down() {
        // Average 2 over 10 slots: keep 2 / 0.5 = 4 slots, so remove 6 warm ones.
        let decision = decide_scaling(&metrics(100, 0, 0, 2.0, 3), &slots(8, 2, 0), &ScalingConfig::default());
        assert_eq!(decision, ScalingDecision::ScaleDown { remove: 6 });
    }

    #[test]
    fn scale_down_keeps_busy_slots() {
        // Average 0.5 would keep 1 slot, but 3 are busy: only the 5 warm ones go.
        let decision = decide_scaling(&metrics(100, 0, 0, 0.5, 3), &slots(5, 3, 0), &ScalingConfig::default());
        assert_eq!(decision, ScalingDecision::ScaleDown { remove: 5 });
    }

    #[test]
    fn scale_down_needs_warm_slots() {
        let decision = decide_scaling(&metrics(100, 0, 0, 1.0, 3), &slots(0, 6, 0), &ScalingConfig::default());
        assert_eq!(decision, ScalingDecision::Hold);
    }

    #[test]
    fn half_utilization_holds() {
        let decision = decide_scaling(&metrics(100, 0, 0, 5.0, 6), &slots(6, 4, 0), &ScalingConfig::default());
        assert_eq!(decision, ScalingDecision::Hold);
    }

    #[test]
    fn idle_function_holds() {
        let decision = decide_scaling(
            &MetricsWindow::default(),
            &SlotCounts::default(),
            &ScalingConfig::default(),
        );
        assert_eq!(decision, ScalingDecision::Hold);
    }

    #[test]
    fn burst_limiter_throttles_excess() {
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let mut limiter = BurstLimiter::new(1000, Duration::from_secs(10));

        assert_eq!(
            limiter.admit("thumbnail", 600, &clock),
            Admission {
                granted: 600,
                throttled: 0
            }
        );
        assert_eq!(
            limiter.admit("thumbnail", 600, &clock),
            Admission {
                granted: 400,
                throttled: 200
            }
        );
        assert_eq!(
            limiter.admit("resize", 1000, &clock),
            Admission {
                granted: 1000,
                throttled: 0
            },
            "each function has its own bucket"
        );

        clock.advance(Duration::from_secs(10));
        assert_eq!(
            limiter.admit("thumbnail", 1500, &clock),
            Admission {
                granted: 1000,
                throttled: 500
            }
        );
    }

    #[test]
    fn burst_limiter_window_never_exceeds_limit() {
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let mut limiter = BurstLimiter::new(1000, Duration::from_secs(10));
        let mut grants: Vec<(u64, u32)> = Vec::new();
        // 30 s of demand for 600 new environments per second, in 100 ms steps.
        for step in 0..300u64 {
            grants.push((step * 100, limiter.admit("thumbnail", 60, &clock).granted));
            clock.advance(Duration::from_millis(100));
        }

        for (end, _) in &grants {
            let in_window: u32 = grants
                .iter()
                .filter(|(at, _)| at <= end && at + 10_000 > *end)
                .map(|(_, granted)| granted)
                .sum();
            assert!(in_window <= 1000, "{in_window} granted in the 10 s before {end} ms");
        }
        let total: u32 = grants.iter().map(|(_, granted)| granted).sum();
        assert_eq!(total, 3000, "1,000 per 10 s over 30 s");
    }
}
