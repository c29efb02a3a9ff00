//! Warm pool planning for one function, run periodically (every 10 seconds in the
//! simulator by default).
//!
//! With provisioned concurrency, the plan keeps warm plus busy slots at the target:
//! it pre-warms the deficit and retires excess warm slots, oldest first. Provisioned
//! slots never expire.
//!
//! Without it, the pool is dynamic and follows a [`WarmDecision`]. A decision with
//! `prewarm_at` (from the histogram) governs the function as a whole:
//!
//! - Before `prewarm_at`, every idle slot is unloaded, because no arrival is expected.
//! - From `prewarm_at` until `keep_alive_until`, the plan keeps warm, busy and
//!   initializing slots at the target: predicted demand × buffer factor, rounded to the
//!   nearest integer and at least 1. So a demand of 1 keeps 1 slot and a demand of 10
//!   keeps 12.
//!   It adds at most `max_predictive_warm` slots per round, and the newest idle slots
//!   that make up the target do not expire. Idle slots beyond the target are excess
//!   concurrency and expire once idle for `idle_timeout`, as under the fixed TTL.
//! - From `keep_alive_until`, every idle slot is unloaded.
//!
//! A decision without `prewarm_at` (the fixed TTL) only expires slots idle for
//! `idle_timeout`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::lifecycle::SlotState;
use crate::predictor::WarmDecision;

/// Factor over the predicted demand that the dynamic pool keeps warm.
pub const DEFAULT_BUFFER_FACTOR: f64 = 1.2;
/// Maximum slots the dynamic pool pre-warms for one function in one round.
pub const MAX_PREDICTIVE_WARM: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SlotId(pub u64);

/// One slot of the function, as input to the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotView {
    pub id: SlotId,
    pub state: SlotState,
    pub created_at: Timestamp,
    /// End of the slot's last invocation, or the time it became warm if never used.
    pub last_used_at: Timestamp,
}

/// Slot counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotCounts {
    pub initializing: u32,
    pub warm: u32,
    pub busy: u32,
}

impl SlotCounts {
    pub fn of(slots: &[SlotView]) -> SlotCounts {
        let mut counts = SlotCounts::default();
        for slot in slots {
            match slot.state {
                SlotState::Initializing => counts.initializing += 1,
                SlotState::Warm => counts.warm += 1,
                SlotState::Busy => counts.busy += 1,
                SlotState::Cooling | SlotState::Failed | SlotState::Terminated => {}
            }
        }
        counts
    }
}

/// The state of one function's pool, as input to the planner.
#[derive(Debug, Clone, Copy)]
pub struct FunctionPoolState<'a> {
    /// The function's slots; slots in other states than Initializing, Warm and Busy are
    /// ignored.
    pub slots: &'a [SlotView],
    /// Keep-alive decision from the predictor or the fixed TTL.
    pub decision: WarmDecision,
    /// Expected concurrent executions, such as from `Predictor::estimate_demand`.
    pub predicted_demand: f64,
    /// Provisioned concurrency; 0 selects the dynamic pool.
    pub provisioned_concurrency: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmPoolConfig {
    pub buffer_factor: f64,
    pub max_predictive_warm: u32,
}

impl Default for WarmPoolConfig {
    fn default() -> WarmPoolConfig {
        WarmPoolConfig {
            buffer_factor: DEFAULT_BUFFER_FACTOR,
            max_predictive_warm: MAX_PREDICTIVE_WARM,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Start this many new slots.
    Prewarm(u32),
    /// Shut down these excess provisioned warm slots, oldest first.
    Retire(Vec<SlotId>),
    /// Shut down these idle slots whose keep-alive ended, longest idle first.
    Expire(Vec<SlotId>),
}

/// Plans the actions that bring one function's pool in line with its target. Shutdown
/// actions come before `Prewarm`, so their capacity is free when the new slots are placed.
pub fn plan_warm_pool(state: &FunctionPoolState<'_>, config: &WarmPoolConfig, now: Timestamp) -> Vec<Action> {
    if state.provisioned_concurrency > 0 {
        plan_provisioned(state.slots, state.provisioned_concurrency)
    } else {
        plan_dynamic(state, config, now)
    }
}

fn plan_provisioned(slots: &[SlotView], target: u32) -> Vec<Action> {
    let counts = SlotCounts::of(slots);
    if counts.warm + counts.busy < target {
        // Initializing slots will become warm, so they already count toward the target.
        let deficit = target.saturating_sub(counts.warm + counts.busy + counts.initializing);
        return if deficit > 0 {
            vec![Action::Prewarm(deficit)]
        } else {
            Vec::new()
        };
    }
    let warm_needed = target.saturating_sub(counts.busy);
    if counts.warm <= warm_needed {
        return Vec::new();
    }
    let mut warm: Vec<&SlotView> = slots.iter().filter(|s| s.state == SlotState::Warm).collect();
    warm.sort_by_key(|s| (s.created_at, s.id));
    let excess = (counts.warm - warm_needed) as usize;
    vec![Action::Retire(warm[..excess].iter().map(|s| s.id).collect())]
}

fn plan_dynamic(state: &FunctionPoolState<'_>, config: &WarmPoolConfig, now: Timestamp) -> Vec<Action> {
    let decision = &state.decision;
    let counts = SlotCounts::of(state.slots);
    let mut idle: Vec<&SlotView> = state.slots.iter().filter(|s| s.state == SlotState::Warm).collect();
    // Newest first, so the slots protected for the target are the most recently used.
    idle.sort_by_key(|s| (std::cmp::Reverse(s.last_used_at), s.id));

    let mut prewarm = 0;
    let mut protected = 0;
    if let Some(prewarm_at) = decision.prewarm_at {
        if now < prewarm_at || now >= decision.keep_alive_until {
            return expire_longest_idle_first(idle);
        }
        let target = demand_target(state.predicted_demand, config.buffer_factor);
        let pending = counts.warm + counts.busy + counts.initializing;
        prewarm = target.saturating_sub(pending).min(config.max_predictive_warm);
        protected = target.saturating_sub(counts.busy) as usize;
    }

    let timed_out: Vec<&SlotView> = idle
        .into_iter()
        .skip(protected)
        .filter(|s| idle_for(s, now) >= decision.idle_timeout)
        .collect();
    let mut actions = expire_longest_idle_first(timed_out);
    if prewarm > 0 {
        actions.push(Action::Prewarm(prewarm));
    }
    actions
}

/// Returns demand × buffer factor rounded to the nearest integer, at least 1.
fn demand_target(predicted_demand: f64, buffer_factor: f64) -> u32 {
    let target = (predicted_demand.max(0.0) * buffer_factor).round();
    // The cast saturates for huge values; the per-round cap bounds the work anyway.
    (target as u32).max(1)
}

fn idle_for(slot: &SlotView, now: Timestamp) -> Duration {
    now.saturating_duration_since(slot.last_used_at)
}

fn expire_longest_idle_first(mut slots: Vec<&SlotView>) -> Vec<Action> {
    if slots.is_empty() {
        return Vec::new();
    }
    slots.sort_by_key(|s| (s.last_used_at, s.id));
    vec![Action::Expire(slots.iter().map(|s| s.id).collect())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::{DecisionBasis, DEFAULT_FIXED_TTL};

    fn at(seconds: u64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    fn slot(id: u64, state: SlotState, created_s: u64, last_used_s: u64) -> SlotView {
        SlotView {
            id: SlotId(id),
            state,
            created_at: at(created_s),
            last_used_at: at(last_used_s),
        }
    }

    fn fixed_ttl(last_arrival_s: u64) -> WarmDecision {
        WarmDecision::fixed_ttl(at(last_arrival_s), DEFAULT_FIXED_TTL, DecisionBasis::FixedTtl)
    }

    /// A histogram decision: pre-warm 270 s and keep alive 396 s after the function
    /// became idle at `idle_since_s`.
    fn predicted(idle_since_s: u64) -> WarmDecision {
        WarmDecision {
            prewarm_at: Some(at(idle_since_s + 270)),
            keep_alive_until: at(idle_since_s + 396),
            idle_timeout: DEFAULT_FIXED_TTL,
            basis: DecisionBasis::Histogram,
        }
    }

    fn plan(slots: &[SlotView], decision: WarmDecision, demand: f64, provisioned: u32, now_s: u64) -> Vec<Action> {
        let state = FunctionPoolState {
            slots,
            decision,
            predicted_demand: demand,
            provisioned_concurrency: provisioned,
        };
        plan_warm_pool(&state, &WarmPoolConfig::default(), at(now_s))
    }

    #[test]
    fn provisioned_prewarms_deficit() {
        let slots = [slot(1, SlotState::Warm, 0, 0), slot(2, SlotState::Busy, 0, 0)];
        assert_eq!(plan(&slots, fixed_ttl(0), 0.0, 5, 10), vec![Action::Prewarm(3)]);
    }

    #[test]
    fn provisioned_counts_initializing_slots() {
        let slots = [
            slot(1, SlotState::Warm, 0, 0),
            slot(2, SlotState::Initializing, 9, 9),
            slot(3, SlotState::Initializing, 9, 9),
        ];
        assert_eq!(plan(&slots, fixed_ttl(0), 0.0, 4, 10), vec![Action::Prewarm(1)]);
        assert_eq!(plan(&slots, fixed_ttl(0), 0.0, 3, 10), vec![]);
    }

    #[test]
    fn provisioned_retires_oldest_excess() {
        let slots = [
            slot(1, SlotState::Warm, 30, 100),
            slot(2, SlotState::Warm, 10, 50),
            slot(3, SlotState::Busy, 5, 100),
            slot(4, SlotState::Warm, 20, 120),
        ];
        // Target 2 with 1 busy: 1 warm slot is needed, so the 2 oldest warm ones go.
        assert_eq!(
            plan(&slots, fixed_ttl(0), 0.0, 2, 200),
            vec![Action::Retire(vec![SlotId(2), SlotId(4)])]
        );
    }

    #[test]
    fn provisioned_at_target_does_nothing() {
        let slots = [slot(1, SlotState::Warm, 0, 0), slot(2, SlotState::Busy, 0, 0)];
        assert_eq!(plan(&slots, fixed_ttl(0), 0.0, 2, 10_000), vec![]);
    }

    #[test]
    fn provisioned_slots_never_expire() {
        let slots = [slot(1, SlotState::Warm, 0, 0)];
        assert_eq!(plan(&slots, fixed_ttl(0), 0.0, 1, 100_000), vec![]);
    }

    #[test]
    fn fixed_ttl_expires_idle_slots() {
        let slots = [
            slot(1, SlotState::Warm, 0, 100),
            slot(2, SlotState::Warm, 0, 300),
            slot(3, SlotState::Busy, 0, 0),
            slot(4, SlotState::Warm, 0, 50),
        ];
        // At 700 s, slots idle since 50 s and 100 s passed 600 s; the one from 300 s did not.
        assert_eq!(
            plan(&slots, fixed_ttl(300), 0.0, 0, 700),
            vec![Action::Expire(vec![SlotId(4), SlotId(1)])]
        );
    }

    #[test]
    fn fixed_ttl_never_prewarms() {
        assert_eq!(plan(&[], fixed_ttl(0), 50.0, 0, 10), vec![]);
    }

    #[test]
    fn idle_exactly_at_ttl_expires() {
        let slots = [slot(1, SlotState::Warm, 0, 0)];
        assert_eq!(plan(&slots, fixed_ttl(0), 0.0, 0, 599), vec![]);
        assert_eq!(
            plan(&slots, fixed_ttl(0), 0.0, 0, 600),
            vec![Action::Expire(vec![SlotId(1)])]
        );
    }

    #[test]
    fn predicted_unloads_before_prewarm() {
        let slots = [slot(1, SlotState::Warm, 0, 2), slot(2, SlotState::Busy, 0, 0)];
        assert_eq!(
            plan(&slots, predicted(0), 1.0, 0, 10),
            vec![Action::Expire(vec![SlotId(1)])]
        );
    }

    #[test]
    fn predicted_prewarms_in_window() {
        assert_eq!(plan(&[], predicted(0), 0.1, 0, 275), vec![Action::Prewarm(1)]);
    }

    #[test]
    fn predicted_prewarm_follows_demand() {
        // Demand 4 * 1.2 = 4.8 rounds to 5 slots; one is already busy.
        let slots = [slot(1, SlotState::Busy, 0, 0)];
        assert_eq!(plan(&slots, predicted(0), 4.0, 0, 280), vec![Action::Prewarm(4)]);
    }

    #[test]
    fn predicted_single_demand_keeps_one_slot() {
        // 1 * 1.2 = 1.2 rounds to 1, so one warm slot is enough.
        let slots = [slot(1, SlotState::Warm, 275, 275)];
        assert_eq!(plan(&slots, predicted(0), 1.0, 0, 280), vec![]);
        assert_eq!(plan(&[], predicted(0), 2.5, 0, 280), vec![Action::Prewarm(3)]);
    }

    #[test]
    fn predicted_prewarm_capped_per_round() {
        assert_eq!(
            plan(&[], predicted(0), 100.0, 0, 280),
            vec![Action::Prewarm(MAX_PREDICTIVE_WARM)]
        );
    }

    #[test]
    fn predicted_prewarm_counts_initializing() {
        let slots = [slot(1, SlotState::Initializing, 275, 275)];
        assert_eq!(plan(&slots, predicted(0), 0.5, 0, 280), vec![]);
    }

    #[test]
    fn predicted_protects_target_slots() {
        // In a long window, the newest idle slot stays even though it is idle past the
        // TTL; the older one is excess beyond the target of 1 and expires.
        let slots = [slot(1, SlotState::Warm, 0, 10), slot(2, SlotState::Warm, 0, 20)];
        let decision = WarmDecision {
            prewarm_at: Some(at(0)),
            keep_alive_until: at(2_000),
            idle_timeout: DEFAULT_FIXED_TTL,
            basis: DecisionBasis::Histogram,
        };
        assert_eq!(
            plan(&slots, decision, 0.5, 0, 650),
            vec![Action::Expire(vec![SlotId(1)])]
        );
    }

    #[test]
    fn predicted_excess_slots_keep_ttl() {
        // Both slots are within the TTL, so the excess one stays too.
        let slots = [slot(1, SlotState::Warm, 0, 10), slot(2, SlotState::Warm, 0, 20)];
        assert_eq!(plan(&slots, predicted(0), 0.5, 0, 300), vec![]);
    }

    #[test]
    fn predicted_unloads_after_window() {
        // Pre-warmed at 272 s and never used: kept until the window ends at 396 s.
        let slots = [slot(1, SlotState::Warm, 272, 272), slot(2, SlotState::Busy, 0, 0)];
        assert_eq!(plan(&slots, predicted(0), 0.5, 0, 395), vec![]);
        assert_eq!(
            plan(&slots, predicted(0), 0.5, 0, 396),
            vec![Action::Expire(vec![SlotId(1)])]
        );
    }

    #[test]
    fn busy_and_initializing_never_expire() {
        let slots = [slot(1, SlotState::Busy, 0, 0), slot(2, SlotState::Initializing, 0, 0)];
        assert_eq!(plan(&slots, fixed_ttl(0), 0.0, 0, 100_000), vec![]);
        assert_eq!(plan(&slots, predicted(0), 0.0, 0, 10), vec![]);
    }

    #[test]
    fn slot_counts_by_state() {
        let slots = [
            slot(1, SlotState::Warm, 0, 0),
            slot(2, SlotState::Busy, 0, 0),
            slot(3, SlotState::Initializing, 0, 0),
            slot(4, SlotState::Cooling, 0, 0),
            slot(5, SlotState::Warm, 0, 0),
        ];
        assert_eq!(
            SlotCounts::of(&slots),
            SlotCounts {
                initializing: 1,
                warm: 2,
                busy: 1
            }
        );
    }
}
