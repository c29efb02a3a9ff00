//! Time source of the scheduling algorithms. The server reads a monotonic clock, and the
//! simulator reads a manual clock that it advances from event to event.

use std::fmt;
use std::ops::Add;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A point in time, as the duration since the epoch of the clock that produced it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(Duration);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(Duration::ZERO);

    pub const fn from_millis(millis: u64) -> Timestamp {
        Timestamp(Duration::from_millis(millis))
    }

    pub const fn from_duration(since_epoch: Duration) -> Timestamp {
        Timestamp(since_epoch)
    }

    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// Milliseconds since the epoch, saturated at `u64::MAX`.
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// Returns the time from `earlier` to `self`, or zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0 + rhs)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.0.as_secs_f64())
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The real clock: monotonic time since the clock was created.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    epoch: Instant,
}

impl MonotonicClock {
    pub fn new() -> MonotonicClock {
        MonotonicClock { epoch: Instant::now() }
    }
}

impl Default for MonotonicClock {
    fn default() -> MonotonicClock {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.epoch.elapsed())
    }
}

/// A simulated clock that moves only when its owner sets or advances it. It never moves
/// backwards: [`ManualClock::advance_to`] ignores a time earlier than the current one.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            nanos: AtomicU64::new(duration_nanos(start.0)),
        }
    }

    /// Moves the clock forward to `time`, or leaves it where it is when `time` is earlier.
    pub fn advance_to(&self, time: Timestamp) {
        self.nanos.fetch_max(duration_nanos(time.0), Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(duration_nanos(by), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(Duration::from_nanos(self.nanos.load(Ordering::SeqCst)))
    }
}

/// Nanoseconds of a duration, saturated at `u64::MAX` (about 584 years).
fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_advances() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000));
        clock.advance(Duration::from_millis(500));
        assert_eq!(clock.now(), Timestamp::from_millis(1_500));
        clock.advance_to(Timestamp::from_millis(4_000));
        assert_eq!(clock.now(), Timestamp::from_millis(4_000));
    }

    #[test]
    fn manual_clock_never_goes_back() {
        let clock = ManualClock::new(Timestamp::from_millis(4_000));
        clock.advance_to(Timestamp::from_millis(1_000));
        assert_eq!(clock.now(), Timestamp::from_millis(4_000));
    }

    #[test]
    fn monotonic_clock_does_not_decrease() {
        let clock = MonotonicClock::new();
        let first = clock.now();
        let second = clock.now();
        assert!(second >= first);
    }

    #[test]
    fn timestamp_arithmetic() {
        let start = Timestamp::from_millis(2_000);
        let later = start + Duration::from_millis(750);
        assert_eq!(later.as_millis(), 2_750);
        assert_eq!(later.saturating_duration_since(start), Duration::from_millis(750));
        assert_eq!(start.saturating_duration_since(later), Duration::ZERO);
    }
}
