//! Keep-alive and pre-warm prediction: the hybrid-histogram policy of "Serverless in the
//! Wild" (Shahrad et al., USENIX ATC 2020).
//!
//! For each function the predictor keeps a histogram of idle times with 1-minute bins
//! over a 4-hour range, plus a count of idle times beyond the range. When the histogram
//! is representative (enough samples, most of them in range, and a coefficient of
//! variation of the bin counts of at least 2), it predicts from the histogram:
//!
//! - pre-warm at the lower edge of the bin of the 5th percentile, minus a 10% margin,
//!   after the function became idle. Idle slots are unloaded until then.
//! - keep alive until the upper edge of the bin of the 99th percentile, plus a 10%
//!   margin, after the function became idle.
//!
//! Otherwise it falls back to a fixed keep-alive TTL (10 minutes by default) with no
//! pre-warming.
//!
//! An idle time is the gap between the moment the function last had no invocation in
//! flight and its next arrival. For a function that runs one invocation at a time this
//! is the inter-arrival gap minus the duration. Arrivals while another invocation runs
//! add no sample, so a burst of overlapping invocations counts as one busy period. Both
//! windows start when the function became idle.
//!
//! Differences from the paper: the paper predicts out-of-range idle times with an ARIMA
//! model and keeps a function with a non-representative histogram loaded for the whole
//! 4-hour range. This module uses the fixed TTL in both cases.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// Keep-alive of the fixed-TTL policy; AWS Lambda's documented behaviour is similar.
pub const DEFAULT_FIXED_TTL: Duration = Duration::from_secs(10 * 60);

/// Weight of the newest duration in the moving average of invocation durations.
const DURATION_SMOOTHING: f64 = 0.2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorConfig {
    /// Width of one histogram bin.
    pub bin_width: Duration,
    /// Idle times at or above this are counted as out of range.
    pub range: Duration,
    /// Percentile (0–1) of idle times at which to pre-warm.
    pub head_percentile: f64,
    /// Percentile (0–1) of idle times until which to keep alive.
    pub tail_percentile: f64,
    /// Fraction taken off the pre-warm time and added to the keep-alive time.
    pub margin: f64,
    /// Minimum coefficient of variation of the bin counts for a representative
    /// histogram. A flat histogram (low CV) does not predict the next idle time.
    pub cv_threshold: f64,
    /// Minimum number of idle times before the histogram is used.
    pub min_samples: u64,
    /// Fraction of out-of-range idle times at or above which the histogram is not used.
    pub out_of_range_threshold: f64,
    /// Keep-alive used whenever the histogram is not used.
    pub fixed_ttl: Duration,
    /// Window of recent arrivals over which demand is estimated.
    pub demand_window: Duration,
}

impl Default for PredictorConfig {
    fn default() -> PredictorConfig {
        PredictorConfig {
            bin_width: Duration::from_secs(60),
            range: Duration::from_secs(4 * 3600),
            head_percentile: 0.05,
            tail_percentile: 0.99,
            margin: 0.10,
            cv_threshold: 2.0,
            // NOTE: the paper does not state a minimum; 5 is this crate's choice so that a
            // one-hour simulation can learn periodic functions. Raise it for real traffic.
            min_samples: 5,
            out_of_range_threshold: 0.5,
            fixed_ttl: DEFAULT_FIXED_TTL,
            demand_window: Duration::from_secs(5 * 60),
        }
    }
}

/// Source of a [`WarmDecision`]: the histogram, or the reason for the fixed-TTL fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DecisionBasis {
    /// The histogram is representative and set both windows.
    Histogram,
    /// The function has no recorded arrival.
    NoHistory,
    /// Fewer idle times than `min_samples`.
    FewSamples,
    /// Too many idle times beyond the histogram range.
    OutOfRange,
    /// The bin counts vary too little (CV below the threshold).
    NotRepresentative,
    /// The fixed-TTL policy, which never consults the histogram.
    FixedTtl,
}

/// When to have a function's slots warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmDecision {
    /// Time from which the function should have a warm slot again; idle slots are
    /// unloaded before it. `None` means no pre-warming: slots only expire.
    pub prewarm_at: Option<Timestamp>,
    /// End of the window in which the next arrival is expected. With `prewarm_at`
    /// set, idle slots are unloaded from then on.
    pub keep_alive_until: Timestamp,
    /// Idle time after which a warm slot expires, counted from its last use (or from
    /// when it became warm, for a slot that was never used): the fixed TTL. Inside the
    /// histogram's window it applies only to slots beyond the demand target.
    pub idle_timeout: Duration,
    pub basis: DecisionBasis,
}

impl WarmDecision {
    /// Keeps each slot warm for `ttl` after its last use, with no pre-warming.
    pub fn fixed_ttl(idle_since: Timestamp, ttl: Duration, basis: DecisionBasis) -> WarmDecision {
        WarmDecision {
            prewarm_at: None,
            keep_alive_until: idle_since + ttl,
            idle_timeout: ttl,
            basis,
        }
    }
}

/// Idle times in fixed-width bins from zero to the range, plus a count of those beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleTimeHistogram {
    bin_width: Duration,
    bins: Vec<u64>,
    in_range: u64,
    out_of_range: u64,
    /// Sum of the squared bin counts, kept for the coefficient of variation.
    sum_of_squares: u64,
}

impl IdleTimeHistogram {
    /// Creates an empty histogram of `range / bin_width` bins (rounded up, at least 2).
    pub fn new(bin_width: Duration, range: Duration) -> IdleTimeHistogram {
        assert!(!bin_width.is_zero(), "histogram bin width must be positive");
        let bins = range.as_nanos().div_ceil(bin_width.as_nanos()).max(2);
        IdleTimeHistogram {
            bin_width,
            bins: vec![0; usize::try_from(bins).expect("bin count fits in memory")],
            in_range: 0,
            out_of_range: 0,
            sum_of_squares: 0,
        }
    }

    pub fn record(&mut self, idle: Duration) {
        let bin = idle.as_nanos() / self.bin_width.as_nanos();
        match usize::try_from(bin).ok().filter(|&b| b < self.bins.len()) {
            Some(bin) => {
                let count = self.bins[bin];
                // (c + 1)^2 - c^2 = 2c + 1
                self.sum_of_squares += 2 * count + 1;
                self.bins[bin] = count + 1;
                self.in_range += 1;
            }
            None => self.out_of_range += 1,
        }
    }

    pub fn bin_width(&self) -> Duration {
        self.bin_width
    }

    pub fn bin_count(&self) -> usize {
        self.bins.len()
    }

    /// Idle times recorded, in range and out of range.
    pub fn samples(&self) -> u64 {
        self.in_range + self.out_of_range
    }

    pub fn out_of_range_ratio(&self) -> f64 {
        match self.samples() {
            0 => 0.0,
            samples => self.out_of_range as f64 / samples as f64,
        }
    }

    /// Coefficient of variation (sample standard deviation over mean) of the bin
    /// counts; 0 for an empty histogram. A single full bin gives sqrt(bin count).
    pub fn coefficient_of_variation(&self) -> f64 {
        if self.in_range == 0 {
            return 0.0;
        }
        let bins = self.bins.len() as f64;
        let total = self.in_range as f64;
        let mean = total / bins;
        let variance = (self.sum_of_squares as f64 - total * total / bins) / (bins - 1.0);
        variance.max(0.0).sqrt() / mean
    }

    /// Returns the index of the first bin at which the cumulative share of in-range
    /// idle times reaches `percentile` (0–1), or `None` when no idle time is in range.
    pub fn percentile_bin(&self, percentile: f64) -> Option<usize> {
        if self.in_range == 0 {
            return None;
        }
        let needed = percentile * self.in_range as f64;
        let mut cumulative = 0u64;
        for (index, count) in self.bins.iter().enumerate() {
            cumulative += count;
            if cumulative > 0 && cumulative as f64 >= needed {
                return Some(index);
            }
        }
        Some(self.bins.len() - 1)
    }
}

#[derive(Debug, Clone)]
struct FunctionHistory {
    histogram: IdleTimeHistogram,
    /// Recorded arrivals without a recorded completion.
    in_flight: u32,
    /// When `in_flight` last dropped to zero.
    idle_since: Option<Timestamp>,
    /// Arrivals within the demand window, oldest first.
    recent_arrivals: VecDeque<Timestamp>,
    /// In-flight counts at arrivals within the demand window, each larger than every
    /// later one, so the first entry in the window is the window's peak.
    recent_peaks: VecDeque<(Timestamp, u32)>,
    /// Moving average of invocation durations, in seconds.
    mean_duration_secs: Option<f64>,
}

/// Per-function idle-time histograms and the decisions drawn from them.
#[derive(Debug, Clone)]
pub struct Predictor {
    config: PredictorConfig,
    functions: HashMap<String, FunctionHistory>,
}

impl Predictor {
    pub fn new(config: PredictorConfig) -> Predictor {
        Predictor {
            config,
            functions: HashMap::new(),
        }
    }

    pub fn config(&self) -> &PredictorConfig {
        &self.config
    }

    /// Records an arrival of `function`. Each arrival must be matched by one
    /// [`Predictor::record_completion`], also for an invocation that was throttled.
    /// An arrival while the function is idle adds the idle time to the histogram.
    pub fn record_arrival(&mut self, function: &str, at: Timestamp) {
        let window = self.config.demand_window;
        let history = match self.functions.get_mut(function) {
            Some(history) => history,
            None => self.functions.entry(function.to_string()).or_insert(FunctionHistory {
                histogram: IdleTimeHistogram::new(self.config.bin_width, self.config.range),
                in_flight: 0,
                idle_since: None,
                recent_arrivals: VecDeque::new(),
                recent_peaks: VecDeque::new(),
                mean_duration_secs: None,
            }),
        };
        if history.in_flight == 0 {
            if let Some(idle_since) = history.idle_since {
                history.histogram.record(at.saturating_duration_since(idle_since));
            }
        }
        history.in_flight += 1;

        let newest = history.recent_arrivals.back().copied().unwrap_or(at).max(at);
        history.recent_arrivals.push_back(newest);
        while history
            .recent_arrivals
            .front()
            .is_some_and(|&first| newest.saturating_duration_since(first) > window)
        {
            history.recent_arrivals.pop_front();
        }

        let in_flight = history.in_flight;
        while history.recent_peaks.back().is_some_and(|&(_, peak)| peak <= in_flight) {
            history.recent_peaks.pop_back();
        }
        history.recent_peaks.push_back((newest, in_flight));
        while history
            .recent_peaks
            .front()
            .is_some_and(|&(first, _)| newest.saturating_duration_since(first) > window)
        {
            history.recent_peaks.pop_front();
        }
    }

    /// Records the end, at `at`, of one invocation of `function` that ran for
    /// `duration`. A throttled invocation completes with a zero duration.
    pub fn record_completion(&mut self, function: &str, at: Timestamp, duration: Duration) {
        let Some(history) = self.functions.get_mut(function) else {
            return;
        };
        history.in_flight = history.in_flight.saturating_sub(1);
        if history.in_flight == 0 {
            history.idle_since = Some(history.idle_since.map_or(at, |since| since.max(at)));
        }
        let seconds = duration.as_secs_f64();
        history.mean_duration_secs = Some(match history.mean_duration_secs {
            Some(mean) => mean + DURATION_SMOOTHING * (seconds - mean),
            None => seconds,
        });
    }

    pub fn histogram(&self, function: &str) -> Option<&IdleTimeHistogram> {
        self.functions.get(function).map(|h| &h.histogram)
    }

    /// Decides when `function` should have warm slots, as of `now`.
    pub fn predict(&self, function: &str, now: Timestamp) -> WarmDecision {
        let config = &self.config;
        let Some(history) = self.functions.get(function) else {
            return WarmDecision::fixed_ttl(now, config.fixed_ttl, DecisionBasis::NoHistory);
        };
        let histogram = &history.histogram;
        // While an invocation runs, the idle period has not started yet, so the windows
        // start now and nothing is unloaded.
        let busy = history.in_flight > 0;
        let anchor = match history.idle_since {
            Some(idle_since) if !busy => idle_since,
            _ => now,
        };

        let fallback = if histogram.samples() < config.min_samples {
            Some(DecisionBasis::FewSamples)
        } else if histogram.out_of_range_ratio() >= config.out_of_range_threshold {
            Some(DecisionBasis::OutOfRange)
        } else if histogram.coefficient_of_variation() < config.cv_threshold {
            Some(DecisionBasis::NotRepresentative)
        } else {
            None
        };
        if let Some(basis) = fallback {
            return WarmDecision::fixed_ttl(anchor, config.fixed_ttl, basis);
        }

        // The out-of-range check above guarantees in-range samples, so both exist.
        let head_bin = histogram.percentile_bin(config.head_percentile).unwrap_or(0);
        let tail_bin = histogram.percentile_bin(config.tail_percentile).unwrap_or(0);
        let width = histogram.bin_width();
        let head = if busy {
            Duration::ZERO
        } else {
            width.mul_f64(head_bin as f64 * (1.0 - config.margin))
        };
        let tail = width.mul_f64((tail_bin + 1) as f64 * (1.0 + config.margin));
        WarmDecision {
            prewarm_at: Some(anchor + head),
            keep_alive_until: anchor + tail,
            idle_timeout: config.fixed_ttl,
            basis: DecisionBasis::Histogram,
        }
    }

    /// Estimates the concurrent executions `function` will need over the next demand
    /// window: the larger of the average over the last window by Little's law (arrival
    /// rate times mean duration) and the peak concurrency in the last window. The peak
    /// matters for bursty functions, whose average hides the size of each burst.
    /// Without a recorded duration, the average counts as 1 when anything arrived.
    pub fn estimate_demand(&self, function: &str, now: Timestamp) -> f64 {
        let Some(history) = self.functions.get(function) else {
            return 0.0;
        };
        let window = self.config.demand_window;
        let in_window = |at: Timestamp| at <= now && now.saturating_duration_since(at) <= window;
        let recent = history.recent_arrivals.iter().filter(|&&at| in_window(at)).count();
        if recent == 0 {
            return 0.0;
        }
        let average = match history.mean_duration_secs {
            Some(duration) => recent as f64 / window.as_secs_f64() * duration,
            None => 1.0,
        };
        let peak = history
            .recent_peaks
            .iter()
            .find(|&&(at, _)| in_window(at))
            .map_or(0, |&(_, peak)| peak);
        average.max(f64::from(peak))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    /// Records arrivals separated by `gaps_ms`, each with a zero-duration invocation, so
    /// the idle times equal the gaps. Returns the time of the last arrival.
    fn predictor_with_gaps(gaps_ms: &[u64]) -> (Predictor, Timestamp) {
        let mut predictor = Predictor::new(PredictorConfig::default());
        let mut at = Timestamp::from_millis(1_000);
        predictor.record_arrival("report", at);
        predictor.record_completion("report", at, Duration::ZERO);
        for gap in gaps_ms {
            at = at + Duration::from_millis(*gap);
            predictor.record_arrival("report", at);
            predictor.record_completion("report", at, Duration::ZERO);
        }
        (predictor, at)
    }

    #[test]
    fn periodic_arrivals_prewarm_before_period() {
        let (predictor, last) = predictor_with_gaps(&[5 * MINUTE; 10]);
        let decision = predictor.predict("report", last);

        assert_eq!(decision.basis, DecisionBasis::Histogram);
        let prewarm_at = decision.prewarm_at.expect("a representative histogram pre-warms");
        // Gaps of exactly 5 minutes fall in bin [5, 6) minutes.
        assert_eq!(prewarm_at, last + Duration::from_secs(270), "5 minutes minus 10%");
        assert_eq!(
            decision.keep_alive_until,
            last + Duration::from_secs(396),
            "6 minutes plus 10%"
        );
        assert!(
            prewarm_at < last + Duration::from_secs(300),
            "pre-warm precedes the next arrival"
        );
        assert!(
            decision.keep_alive_until > last + Duration::from_secs(300),
            "keep-alive covers it"
        );
    }

    #[test]
    fn jittered_period_still_brackets_arrival() {
        let gaps: Vec<u64> = (0..20).map(|i| 5 * MINUTE - 2_000 + (i % 5) * 1_000).collect();
        let (predictor, last) = predictor_with_gaps(&gaps);
        let decision = predictor.predict("report", last);

        assert_eq!(decision.basis, DecisionBasis::Histogram);
        let prewarm_at = decision.prewarm_at.unwrap();
        assert!(prewarm_at <= last + Duration::from_millis(5 * MINUTE - 2_000));
        assert!(decision.keep_alive_until >= last + Duration::from_millis(5 * MINUTE + 2_000));
    }

    #[test]
    fn too_few_samples_use_fixed_ttl() {
        let (predictor, last) = predictor_with_gaps(&[5 * MINUTE; 3]);
        let decision = predictor.predict("report", last);

        assert_eq!(decision.basis, DecisionBasis::FewSamples);
        assert_eq!(decision.prewarm_at, None);
        assert_eq!(decision.keep_alive_until, last + DEFAULT_FIXED_TTL);
        assert_eq!(decision.idle_timeout, DEFAULT_FIXED_TTL);
    }

    #[test]
    fn out_of_range_idle_times_use_fixed_ttl() {
        let (predictor, last) = predictor_with_gaps(&[5 * 60 * MINUTE; 8]);
        let decision = predictor.predict("report", last);

        assert_eq!(decision.basis, DecisionBasis::OutOfRange);
        assert_eq!(decision.prewarm_at, None);
        assert_eq!(decision.keep_alive_until, last + DEFAULT_FIXED_TTL);
    }

    #[test]
    fn mostly_out_of_range_uses_fixed_ttl() {
        let mut gaps = vec![5 * 60 * MINUTE; 6];
        gaps.extend([5 * MINUTE; 4]);
        let (predictor, last) = predictor_with_gaps(&gaps);
        let histogram = predictor.histogram("report").unwrap();
        assert_eq!(histogram.out_of_range_ratio(), 0.6);
        assert_eq!(predictor.predict("report", last).basis, DecisionBasis::OutOfRange);
    }

    #[test]
    fn flat_histogram_uses_fixed_ttl() {
        let gaps: Vec<u64> = (1..=200).map(|minutes| minutes * MINUTE).collect();
        let (predictor, last) = predictor_with_gaps(&gaps);
        let histogram = predictor.histogram("report").unwrap();
        assert!(histogram.coefficient_of_variation() < 2.0);

        let decision = predictor.predict("report", last);
        assert_eq!(decision.basis, DecisionBasis::NotRepresentative);
        assert_eq!(decision.prewarm_at, None);
    }

    #[test]
    fn unknown_function_uses_fixed_ttl() {
        let predictor = Predictor::new(PredictorConfig::default());
        let now = Timestamp::from_millis(42_000);
        let decision = predictor.predict("never-invoked", now);
        assert_eq!(decision.basis, DecisionBasis::NoHistory);
        assert_eq!(decision.keep_alive_until, now + DEFAULT_FIXED_TTL);
    }

    #[test]
    fn frequent_arrivals_keep_slots_loaded() {
        let (predictor, last) = predictor_with_gaps(&[5_000; 50]);
        let decision = predictor.predict("report", last);

        assert_eq!(decision.basis, DecisionBasis::Histogram);
        assert_eq!(decision.prewarm_at, Some(last), "head bin 0 means no unloading");
        assert_eq!(decision.keep_alive_until, last + Duration::from_secs(66));
    }

    #[test]
    fn histogram_single_bin_cv() {
        let mut histogram = IdleTimeHistogram::new(Duration::from_secs(60), Duration::from_secs(4 * 3600));
        for _ in 0..7 {
            histogram.record(Duration::from_secs(90));
        }
        assert_eq!(histogram.bin_count(), 240);
        assert!((histogram.coefficient_of_variation() - 240f64.sqrt()).abs() < 1e-9);
        assert_eq!(histogram.percentile_bin(0.05), Some(1));
        assert_eq!(histogram.percentile_bin(0.99), Some(1));
    }

    #[test]
    fn histogram_percentiles_and_range() {
        let mut histogram = IdleTimeHistogram::new(Duration::from_secs(60), Duration::from_secs(4 * 3600));
        for minutes in [0u64, 1, 1, 2, 3, 3, 3, 9, 9, 239] {
            histogram.record(Duration::from_secs(minutes * 60 + 30));
        }
        histogram.record(Duration::from_secs(4 * 3600));
        assert_eq!(histogram.samples(), 11);
        assert!((histogram.out_of_range_ratio() - 1.0 / 11.0).abs() < 1e-12);
        assert_eq!(histogram.percentile_bin(0.05), Some(0));
        assert_eq!(histogram.percentile_bin(0.5), Some(3));
        assert_eq!(histogram.percentile_bin(0.99), Some(239));
    }

    #[test]
    fn idle_time_starts_at_completion() {
        // Every 5 minutes a 1-second invocation: idle times are 299 s, in bin [4, 5) min.
        let mut predictor = Predictor::new(PredictorConfig::default());
        let mut idle_since = Timestamp::ZERO;
        for i in 0..10 {
            let arrival = Timestamp::from_millis(i * 5 * MINUTE);
            idle_since = arrival + Duration::from_secs(1);
            predictor.record_arrival("report", arrival);
            predictor.record_completion("report", idle_since, Duration::from_secs(1));
        }
        let decision = predictor.predict("report", idle_since);

        assert_eq!(decision.basis, DecisionBasis::Histogram);
        assert_eq!(
            decision.prewarm_at,
            Some(idle_since + Duration::from_secs(216)),
            "4 minutes minus 10%"
        );
        assert_eq!(
            decision.keep_alive_until,
            idle_since + Duration::from_secs(330),
            "5 minutes plus 10%"
        );
        assert!(decision.prewarm_at.unwrap() < idle_since + Duration::from_secs(299));
        assert!(decision.keep_alive_until > idle_since + Duration::from_secs(299));
    }

    #[test]
    fn overlapping_arrivals_add_no_sample() {
        let mut predictor = Predictor::new(PredictorConfig::default());
        let start = Timestamp::from_millis(0);
        // A burst of 50 arrivals 10 ms apart, each running 1 s: one busy period.
        for i in 0..50 {
            predictor.record_arrival("burst", start + Duration::from_millis(i * 10));
        }
        for i in 0..50 {
            let end = start + Duration::from_millis(i * 10 + 1_000);
            predictor.record_completion("burst", end, Duration::from_secs(1));
        }
        assert_eq!(predictor.histogram("burst").unwrap().samples(), 0);

        // The next burst, 5 minutes after the last completion, adds one idle time.
        let next = start + Duration::from_millis(1_490 + 5 * MINUTE);
        predictor.record_arrival("burst", next);
        assert_eq!(predictor.histogram("burst").unwrap().samples(), 1);
        assert_eq!(predictor.histogram("burst").unwrap().percentile_bin(0.5), Some(5));
    }

    #[test]
    fn busy_function_is_not_unloaded() {
        let (mut predictor, last) = predictor_with_gaps(&[5 * MINUTE; 10]);
        let arrival = last + Duration::from_millis(5 * MINUTE);
        predictor.record_arrival("report", arrival);
        let now = arrival + Duration::from_secs(30);
        let decision = predictor.predict("report", now);

        assert_eq!(decision.basis, DecisionBasis::Histogram);
        assert_eq!(decision.prewarm_at, Some(now), "no unloading while an invocation runs");
        assert_eq!(decision.keep_alive_until, now + Duration::from_secs(396));
    }

    #[test]
    fn demand_follows_littles_law() {
        let mut predictor = Predictor::new(PredictorConfig::default());
        let start = Timestamp::from_millis(0);
        for i in 0..60 {
            let arrival = start + Duration::from_secs(i * 5);
            predictor.record_arrival("api", arrival);
            predictor.record_completion("api", arrival + Duration::from_secs(2), Duration::from_secs(2));
        }
        let now = start + Duration::from_secs(299);
        // 60 arrivals in 300 s, 2 s each: 0.2 per second * 2 s = 0.4 executions on
        // average, but each arrival found 1 in flight (itself), so the peak is 1.
        assert_eq!(predictor.estimate_demand("api", now), 1.0);
        assert_eq!(predictor.estimate_demand("api", now + Duration::from_secs(3600)), 0.0);
        assert_eq!(predictor.estimate_demand("unknown", now), 0.0);
    }

    #[test]
    fn demand_average_above_peak() {
        // Each completion is recorded at its arrival, so the peak in flight is 1, but
        // the recorded durations of 3 s make the average higher.
        let mut predictor = Predictor::new(PredictorConfig::default());
        let start = Timestamp::from_millis(0);
        for i in 0..600 {
            let arrival = start + Duration::from_millis(i * 500);
            predictor.record_arrival("api", arrival);
            predictor.record_completion("api", arrival, Duration::from_secs(3));
        }
        // 600 arrivals in the 300-s window, 3 s each: 2 per second * 3 s = 6.
        let demand = predictor.estimate_demand("api", start + Duration::from_millis(299_500));
        assert!((demand - 6.0).abs() < 1e-9, "demand {demand}");
    }

    #[test]
    fn demand_follows_burst_peak() {
        let mut predictor = Predictor::new(PredictorConfig::default());
        let start = Timestamp::from_millis(0);
        // A burst of 40 overlapping invocations, then quiet.
        for i in 0..40 {
            predictor.record_arrival("burst", start + Duration::from_millis(i * 10));
        }
        for i in 0..40 {
            let end = start + Duration::from_millis(i * 10 + 500);
            predictor.record_completion("burst", end, Duration::from_millis(500));
        }
        assert_eq!(
            predictor.estimate_demand("burst", start + Duration::from_secs(120)),
            40.0
        );
        assert_eq!(
            predictor.estimate_demand("burst", start + Duration::from_secs(301)),
            0.0
        );
    }

    #[test]
    fn demand_without_durations_is_one() {
        let mut predictor = Predictor::new(PredictorConfig::default());
        predictor.record_arrival("api", Timestamp::from_millis(1_000));
        assert_eq!(predictor.estimate_demand("api", Timestamp::from_millis(2_000)), 1.0);
    }
}
