//! The execution slot state machine.
//!
//! A slot starts in `Initializing`. Allowed transitions:
//!
//! | from | to | when |
//! |---|---|---|
//! | Initializing | Warm | init completed |
//! | Initializing | Failed | init error |
//! | Warm | Busy | an invocation starts |
//! | Warm | Cooling | keep-alive expired, or the slot was retired or evicted |
//! | Busy | Warm | the invocation completed |
//! | Busy | Failed | fatal invocation error (timeout, runtime exit) |
//! | Busy | Cooling | graceful shutdown |
//! | Cooling | Terminated | cleanup completed |
//! | Failed | Terminated | cleanup completed |
//!
//! Every other pair, including a state to itself, is rejected. [`transition`] is the
//! one place that changes a slot's state, and it counts every attempt.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SlotState {
    /// The sandbox and runtime are starting.
    Initializing,
    /// Idle and ready for an invocation.
    Warm,
    /// Running an invocation.
    Busy,
    /// Shutting down; it accepts no invocations.
    Cooling,
    /// Init or an invocation failed fatally; the slot is cleaned up next.
    Failed,
    /// Gone; its memory and slot capacity are free again.
    Terminated,
}

const STATE_COUNT: usize = 6;

impl SlotState {
    pub const ALL: [SlotState; STATE_COUNT] = [
        SlotState::Initializing,
        SlotState::Warm,
        SlotState::Busy,
        SlotState::Cooling,
        SlotState::Failed,
        SlotState::Terminated,
    ];

    fn index(self) -> usize {
        self as usize
    }

    pub fn can_transition(self, to: SlotState) -> bool {
        use SlotState::*;
        matches!(
            (self, to),
            (Initializing, Warm)
                | (Initializing, Failed)
                | (Warm, Busy)
                | (Warm, Cooling)
                | (Busy, Warm)
                | (Busy, Failed)
                | (Busy, Cooling)
                | (Cooling, Terminated)
                | (Failed, Terminated)
        )
    }

    /// Returns the spelling of the data-plane schema, such as `INITIALIZING`.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Initializing => "INITIALIZING",
            SlotState::Warm => "WARM",
            SlotState::Busy => "BUSY",
            SlotState::Cooling => "COOLING",
            SlotState::Failed => "FAILED",
            SlotState::Terminated => "TERMINATED",
        }
    }
}

impl fmt::Display for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("execution slot cannot change from {from} to {to}")]
pub struct InvalidSlotTransition {
    pub from: SlotState,
    pub to: SlotState,
}

/// Accepted and rejected transition attempts per (from, to) pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransitionCounters {
    accepted: [[u64; STATE_COUNT]; STATE_COUNT],
    rejected: [[u64; STATE_COUNT]; STATE_COUNT],
}

impl TransitionCounters {
    pub fn accepted(&self, from: SlotState, to: SlotState) -> u64 {
        self.accepted[from.index()][to.index()]
    }

    pub fn rejected(&self, from: SlotState, to: SlotState) -> u64 {
        self.rejected[from.index()][to.index()]
    }

    pub fn total_accepted(&self) -> u64 {
        self.accepted.iter().flatten().sum()
    }

    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().flatten().sum()
    }

    /// Returns the pairs with at least one accepted transition, with their counts.
    pub fn accepted_pairs(&self) -> Vec<(SlotState, SlotState, u64)> {
        let mut pairs = Vec::new();
        for from in SlotState::ALL {
            for to in SlotState::ALL {
                let count = self.accepted(from, to);
                if count > 0 {
                    pairs.push((from, to, count));
                }
            }
        }
        pairs
    }
}

/// Moves a slot from `*state` to `to` when the state machine allows it, and counts the
/// attempt in `counters` either way. A rejected transition leaves `*state` unchanged.
pub fn transition(
    state: &mut SlotState,
    to: SlotState,
    counters: &mut TransitionCounters,
) -> Result<(), InvalidSlotTransition> {
    let from = *state;
    if from.can_transition(to) {
        counters.accepted[from.index()][to.index()] += 1;
        *state = to;
        Ok(())
    } else {
        counters.rejected[from.index()][to.index()] += 1;
        Err(InvalidSlotTransition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::SlotState::*;
    use super::*;

    const ALLOWED: [(SlotState, SlotState); 9] = [
        (Initializing, Warm),
        (Initializing, Failed),
        (Warm, Busy),
        (Warm, Cooling),
        (Busy, Warm),
        (Busy, Failed),
        (Busy, Cooling),
        (Cooling, Terminated),
        (Failed, Terminated),
    ];

    #[test]
    fn transition_accepts_allowed_pairs() {
        for (from, to) in ALLOWED {
            let mut state = from;
            let mut counters = TransitionCounters::default();
            assert_eq!(transition(&mut state, to, &mut counters), Ok(()), "{from} -> {to}");
            assert_eq!(state, to, "{from} -> {to} must change the state");
            assert_eq!(counters.accepted(from, to), 1, "{from} -> {to} accepted count");
            assert_eq!(counters.total_rejected(), 0, "{from} -> {to} rejected count");
        }
    }

    #[test]
    fn transition_rejects_other_pairs() {
        let mut rejected_pairs = 0;
        for from in SlotState::ALL {
            for to in SlotState::ALL {
                if ALLOWED.contains(&(from, to)) {
                    continue;
                }
                rejected_pairs += 1;
                let mut state = from;
                let mut counters = TransitionCounters::default();
                let result = transition(&mut state, to, &mut counters);
                assert_eq!(result, Err(InvalidSlotTransition { from, to }), "{from} -> {to}");
                assert_eq!(state, from, "{from} -> {to} must leave the state unchanged");
                assert_eq!(counters.rejected(from, to), 1, "{from} -> {to} rejected count");
                assert_eq!(counters.total_accepted(), 0, "{from} -> {to} accepted count");
            }
        }
        assert_eq!(rejected_pairs, 36 - ALLOWED.len());
    }

    #[test]
    fn terminated_is_final() {
        for to in SlotState::ALL {
            assert!(!Terminated.can_transition(to), "TERMINATED -> {to}");
        }
    }

    #[test]
    fn counters_track_full_lifecycle() {
        let mut counters = TransitionCounters::default();
        let mut state = Initializing;
        for to in [Warm, Busy, Warm, Busy, Warm, Cooling, Terminated] {
            transition(&mut state, to, &mut counters).unwrap();
        }
        assert_eq!(
            transition(&mut state, Warm, &mut counters),
            Err(InvalidSlotTransition {
                from: Terminated,
                to: Warm
            })
        );

        assert_eq!(counters.accepted(Warm, Busy), 2);
        assert_eq!(counters.accepted(Busy, Warm), 2);
        assert_eq!(counters.accepted(Warm, Cooling), 1);
        assert_eq!(counters.total_accepted(), 7);
        assert_eq!(counters.rejected(Terminated, Warm), 1);
        assert_eq!(counters.accepted_pairs().len(), 5);
    }

    #[test]
    fn error_names_both_states() {
        let error = InvalidSlotTransition {
            from: Cooling,
            to: Busy,
        };
        assert_eq!(error.to_string(), "execution slot cannot change from COOLING to BUSY");
    }
}
