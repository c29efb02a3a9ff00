//! Synthetic traces shaped like the Azure Functions 2019 trace as "Serverless in the
//! Wild" (Shahrad et al., USENIX ATC 2020) describes it. Each function stands for one
//! application. The targets:
//!
//! - Mean invocation rates span eight orders of magnitude. They are log-uniform from
//!   10^-3.6 to 10^4.4 per hour, so an expected 45% of functions have a mean rate of at
//!   most one invocation per hour.
//! - About half of the functions have a mean duration under 1 s. Mean durations are
//!   log-normal with a median of 1 s, and each invocation varies log-normally around its
//!   function's mean.
//! - Memory sizes are 128, 256, 512 or 1024 MB.
//! - Arrival patterns are mixed. Half of the functions with 1 to 60 invocations per hour
//!   are timers with a fixed period, a quarter of those above 60 per hour are bursty, and
//!   the rest are Poisson processes.
//!
//! The same seed gives the same trace with the same `rand` version (0.8 here).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::clock::Timestamp;
use crate::sim::trace::{Trace, TraceFunction, TraceInvocation};

const LOG10_RATE_MIN: f64 = -3.6;
const LOG10_RATE_MAX: f64 = 4.4;
const MEDIAN_DURATION_MS: f64 = 1_000.0;
/// Spread (sigma of the natural log) of mean durations across functions.
const DURATION_SIGMA_ACROSS: f64 = 1.5;
/// Spread of one function's invocation durations around its mean.
const DURATION_SIGMA_WITHIN: f64 = 0.5;
/// Lambda's maximum timeout, 15 minutes.
const MAX_DURATION_MS: f64 = 900_000.0;
/// Mean durations are capped so that a function's expected concurrency while active
/// (rate × mean duration, with the rate inside a burst for bursty functions) stays at
/// or below this. It keeps hot functions short, and the cluster of a 200-function
/// trace within a few hundred GB.
const MAX_EXPECTED_CONCURRENCY: f64 = 20.0;
const MEMORY_SIZES_MB: [(u64, f64); 4] = [(128, 0.35), (256, 0.30), (512, 0.20), (1024, 0.15)];
const TIMER_PERIODS_MIN: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0];
/// Time over which the invocations of one burst arrive.
const BURST_SPREAD_MS: f64 = 5_000.0;
/// Timers fire up to this late.
const TIMER_JITTER_MS: f64 = 500.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateConfig {
    pub functions: u32,
    pub hours: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalPattern {
    Poisson,
    /// Fires every period, with a random phase.
    Timer {
        period: Duration,
    },
    /// Bursts of invocations within 5 s, the bursts arriving as a Poisson process.
    Bursty {
        mean_burst_size: u32,
    },
}

/// The parameters drawn for one function.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub name: String,
    pub memory_mb: u64,
    pub rate_per_hour: f64,
    pub mean_duration_ms: f64,
    pub pattern: ArrivalPattern,
}

#[derive(Debug, Clone)]
pub struct GeneratedTrace {
    pub specs: Vec<FunctionSpec>,
    /// Only functions with at least one invocation appear here.
    pub trace: Trace,
}

/// Generates a trace; the caller validates that `functions` > 0 and `hours` > 0.
pub fn generate_trace(config: &GenerateConfig) -> GeneratedTrace {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let horizon_ms = config.hours * 3_600_000.0;
    let width = decimal_width(config.functions);
    let specs: Vec<FunctionSpec> = (0..config.functions)
        .map(|i| draw_spec(&mut rng, format!("fn-{i:0width$}")))
        .collect();

    let mut trace = Trace::default();
    for spec in &specs {
        let arrivals = draw_arrivals(&mut rng, spec, horizon_ms);
        if arrivals.is_empty() {
            continue;
        }
        let function = trace.functions.len();
        trace.functions.push(TraceFunction {
            name: spec.name.clone(),
            memory_mb: spec.memory_mb,
        });
        for arrival_ms in arrivals {
            let duration_ms = draw_duration(&mut rng, spec.mean_duration_ms);
            trace.invocations.push(TraceInvocation {
                function,
                arrival: Timestamp::from_millis(arrival_ms),
                duration: Duration::from_millis(duration_ms),
            });
        }
    }
    trace.invocations.sort_by_key(|i| (i.arrival, i.function));
    GeneratedTrace { specs, trace }
}

fn decimal_width(count: u32) -> usize {
    count.saturating_sub(1).max(1).to_string().len()
}

fn draw_spec(rng: &mut StdRng, name: String) -> FunctionSpec {
    let rate_per_hour = 10f64.powf(rng.gen_range(LOG10_RATE_MIN..LOG10_RATE_MAX));
    let memory_mb = draw_memory(rng);

    let drawn_duration_ms = MEDIAN_DURATION_MS * (DURATION_SIGMA_ACROSS * standard_normal(rng)).exp();

    let choice: f64 = rng.gen();
    let pattern = if rate_per_hour > 1.0 && rate_per_hour <= 60.0 && choice < 0.5 {
        ArrivalPattern::Timer {
            period: nearest_timer_period(rate_per_hour),
        }
    } else if rate_per_hour > 60.0 && choice < 0.25 {
        // About 12 bursts per hour for busy functions, each of 5 to 200 invocations.
        let size = (rate_per_hour / 12.0).clamp(5.0, 200.0);
        ArrivalPattern::Bursty {
            mean_burst_size: size.round() as u32,
        }
    } else {
        ArrivalPattern::Poisson
    };
    let rate_per_hour = match pattern {
        ArrivalPattern::Timer { period } => 3_600.0 / period.as_secs_f64(),
        _ => rate_per_hour,
    };
    let active_rate_per_ms = match pattern {
        ArrivalPattern::Bursty { mean_burst_size } => f64::from(mean_burst_size) / BURST_SPREAD_MS,
        _ => rate_per_hour / 3_600_000.0,
    };
    let concurrency_cap_ms = MAX_EXPECTED_CONCURRENCY / active_rate_per_ms;
    let mean_duration_ms = drawn_duration_ms.min(concurrency_cap_ms).clamp(1.0, MAX_DURATION_MS);
    FunctionSpec {
        name,
        memory_mb,
        rate_per_hour,
        mean_duration_ms,
        pattern,
    }
}

fn draw_memory(rng: &mut StdRng) -> u64 {
    let mut choice: f64 = rng.gen();
    for (memory, weight) in MEMORY_SIZES_MB {
        if choice < weight {
            return memory;
        }
        choice -= weight;
    }
    MEMORY_SIZES_MB[MEMORY_SIZES_MB.len() - 1].0
}

/// Returns the timer period closest, on a log scale, to the mean gap of the rate.
fn nearest_timer_period(rate_per_hour: f64) -> Duration {
    let gap_min = 60.0 / rate_per_hour;
    let period = TIMER_PERIODS_MIN
        .iter()
        .copied()
        .min_by(|a, b| (a.ln() - gap_min.ln()).abs().total_cmp(&(b.ln() - gap_min.ln()).abs()))
        .expect("period list is not empty");
    Duration::from_secs_f64(period * 60.0)
}

fn draw_arrivals(rng: &mut StdRng, spec: &FunctionSpec, horizon_ms: f64) -> Vec<u64> {
    let rate_per_ms = spec.rate_per_hour / 3_600_000.0;
    let mut arrivals = Vec::new();
    match spec.pattern {
        ArrivalPattern::Poisson => {
            let mut at = exponential(rng, rate_per_ms);
            while at < horizon_ms {
                arrivals.push(at as u64);
                at += exponential(rng, rate_per_ms);
            }
        }
        ArrivalPattern::Timer { period } => {
            let period_ms = period.as_secs_f64() * 1000.0;
            let mut at = rng.gen_range(0.0..period_ms);
            while at < horizon_ms {
                let fired = at + rng.gen_range(0.0..TIMER_JITTER_MS);
                if fired < horizon_ms {
                    arrivals.push(fired as u64);
                }
                at += period_ms;
            }
        }
        ArrivalPattern::Bursty { mean_burst_size } => {
            let mean = f64::from(mean_burst_size);
            let bursts_per_ms = rate_per_ms / mean;
            let mut start = exponential(rng, bursts_per_ms);
            while start < horizon_ms {
                let size = rng.gen_range(mean * 0.5..=mean * 1.5).round() as u64;
                for _ in 0..size {
                    let at = start + rng.gen_range(0.0..BURST_SPREAD_MS);
                    if at < horizon_ms {
                        arrivals.push(at as u64);
                    }
                }
                start += exponential(rng, bursts_per_ms);
            }
        }
    }
    arrivals.sort_unstable();
    arrivals
}

fn draw_duration(rng: &mut StdRng, mean_ms: f64) -> u64 {
    // A log-normal with this mu has mean `mean_ms`.
    let mu = mean_ms.ln() - DURATION_SIGMA_WITHIN * DURATION_SIGMA_WITHIN / 2.0;
    let duration = (mu + DURATION_SIGMA_WITHIN * standard_normal(rng)).exp();
    duration.clamp(1.0, MAX_DURATION_MS).round() as u64
}

/// Draws from the standard normal distribution (Box-Muller).
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // in (0, 1], so ln is finite
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Draws an exponential gap for a rate in events per ms.
fn exponential(rng: &mut StdRng, rate: f64) -> f64 {
    let u: f64 = 1.0 - rng.gen::<f64>();
    -u.ln() / rate
}

/// Shape statistics of generated functions, for checking a trace against its targets.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeSummary {
    pub functions: usize,
    pub min_rate_per_hour: f64,
    pub max_rate_per_hour: f64,
    /// Share of functions with a mean rate of at most one per hour.
    pub at_most_hourly: f64,
    /// Share of functions with a mean duration under 1 s.
    pub sub_second: f64,
    pub timers: usize,
    pub bursty: usize,
    pub poisson: usize,
}

impl ShapeSummary {
    pub fn of(specs: &[FunctionSpec]) -> ShapeSummary {
        let count = specs.len().max(1) as f64;
        let share =
            |predicate: &dyn Fn(&FunctionSpec) -> bool| specs.iter().filter(|s| predicate(s)).count() as f64 / count;
        let pattern_count =
            |predicate: &dyn Fn(&ArrivalPattern) -> bool| specs.iter().filter(|s| predicate(&s.pattern)).count();
        ShapeSummary {
            functions: specs.len(),
            min_rate_per_hour: specs.iter().map(|s| s.rate_per_hour).fold(f64::INFINITY, f64::min),
            max_rate_per_hour: specs.iter().map(|s| s.rate_per_hour).fold(0.0, f64::max),
            at_most_hourly: share(&|s| s.rate_per_hour <= 1.0),
            sub_second: share(&|s| s.mean_duration_ms < 1_000.0),
            timers: pattern_count(&|p| matches!(p, ArrivalPattern::Timer { .. })),
            bursty: pattern_count(&|p| matches!(p, ArrivalPattern::Bursty { .. })),
            poisson: pattern_count(&|p| matches!(p, ArrivalPattern::Poisson)),
        }
    }

    /// Orders of magnitude between the lowest and highest mean rate.
    pub fn rate_decades(&self) -> f64 {
        (self.max_rate_per_hour / self.min_rate_per_hour).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(functions: u32, seed: u64) -> GeneratedTrace {
        generate_trace(&GenerateConfig {
            functions,
            hours: 1.0,
            seed,
        })
    }

    #[test]
    fn same_seed_same_trace() {
        assert_eq!(generate(50, 7).trace, generate(50, 7).trace);
        assert_ne!(generate(50, 7).trace, generate(50, 8).trace);
    }

    #[test]
    fn shape_matches_targets() {
        let generated = generate(2_000, 1);
        let shape = ShapeSummary::of(&generated.specs);
        assert!(
            (0.40..=0.50).contains(&shape.at_most_hourly),
            "at most hourly: {}",
            shape.at_most_hourly
        );
        assert!(
            (0.40..=0.65).contains(&shape.sub_second),
            "under 1 s: {}",
            shape.sub_second
        );
        assert!(
            shape.rate_decades() > 7.5,
            "rate span: {} decades",
            shape.rate_decades()
        );
        assert!(shape.timers > 0, "timers");
        assert!(shape.bursty > 0, "bursty");
        assert_eq!(shape.timers + shape.bursty + shape.poisson, 2_000);
    }

    #[test]
    fn invocations_stay_in_horizon() {
        let generated = generate(200, 3);
        let horizon = Timestamp::from_millis(3_600_000);
        assert!(generated.trace.invocations.iter().all(|i| i.arrival < horizon));
        assert!(generated
            .trace
            .invocations
            .windows(2)
            .all(|w| w[0].arrival <= w[1].arrival));
        for function in &generated.trace.functions {
            assert!(
                [128, 256, 512, 1024].contains(&function.memory_mb),
                "{}",
                function.memory_mb
            );
        }
    }

    #[test]
    fn timer_fires_every_period() {
        let spec = FunctionSpec {
            name: "cron".to_string(),
            memory_mb: 128,
            rate_per_hour: 12.0,
            mean_duration_ms: 100.0,
            pattern: ArrivalPattern::Timer {
                period: Duration::from_secs(300),
            },
        };
        let mut rng = StdRng::seed_from_u64(1);
        let arrivals = draw_arrivals(&mut rng, &spec, 3_600_000.0);
        assert_eq!(arrivals.len(), 12);
        for gap in arrivals.windows(2).map(|w| w[1] - w[0]) {
            assert!((299_500..=300_500).contains(&gap), "gap {gap} ms");
        }
    }

    #[test]
    fn nearest_period_on_log_scale() {
        assert_eq!(nearest_timer_period(12.0), Duration::from_secs(300));
        assert_eq!(nearest_timer_period(1.5), Duration::from_secs(1_800));
        assert_eq!(nearest_timer_period(59.0), Duration::from_secs(60));
    }
}
