//! Discrete-event replay of a trace through placement, the slot lifecycle and the warm
//! pool planner, on a simulated clock with a simulated sandbox.
//!
//! The simulated sandbox takes a fixed cold-start time to initialize a slot and then
//! runs each invocation for its traced duration. Invocations never fail. The model:
//!
//! - An arrival takes the most recently used warm slot of its function. Without one, it
//!   waits for a pre-warming slot of the function that no invocation has claimed yet,
//!   and otherwise starts a new slot. Both of those count as cold starts.
//! - A new slot needs a token from the function's burst limiter and a host from
//!   placement. When no host is feasible, warm slots of other functions are evicted,
//!   least recently used first, from the first host where they free enough room, as
//!   the worker evicts its least recently used idle slot. An arrival that gets no token
//!   or no host is throttled.
//! - Every warm-pool round, each function's pool is planned with `plan_warm_pool` and
//!   the actions are applied. Pre-warms also need burst tokens, and never evict.
//! - Idle memory-time counts the memory of warm, unused slots up to the last arrival of
//!   the trace, so a policy is not charged for slots kept after the trace ends.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use crate::clock::{Clock, ManualClock, Timestamp};
use crate::lifecycle::{transition, SlotState, TransitionCounters};
use crate::placement::{select_placement, HostId, HostState, HostView, PlacementRequest};
use crate::predictor::{DecisionBasis, Predictor, PredictorConfig, WarmDecision};
use crate::scaling::BurstLimiter;
use crate::sim::metrics::{FunctionCounts, PolicyReport};
use crate::sim::trace::{Trace, TraceInvocation};
use crate::warm_pool::{plan_warm_pool, Action, FunctionPoolState, SlotId, SlotView, WarmPoolConfig};

/// The one runtime that simulated hosts offer and simulated functions use.
const RUNTIME: &str = "python3.12";
const VERSION: &str = "$LATEST";

/// Cluster and policy parameters of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub cold_start: Duration,
    pub hosts: u32,
    /// Hosts are spread over this many availability zones, round robin.
    pub zones: u32,
    pub host_memory_mb: u64,
    pub host_slots: u32,
    /// Time between two warm-pool rounds.
    pub warm_pool_interval: Duration,
    pub burst_limit: u32,
    pub burst_interval: Duration,
    pub warm_pool: WarmPoolConfig,
    /// Predictor settings; `fixed_ttl` is also the TTL of the fixed-TTL policy.
    pub predictor: PredictorConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The hybrid-histogram predictor with its demand-based pre-warming.
    HybridHistogram,
    /// Each slot is kept warm for the fixed TTL after its last use, with no pre-warming.
    FixedTtl,
}

/// Replays `trace` under `policy`.
pub fn replay(trace: &Trace, policy: Policy, config: &SimConfig) -> PolicyReport {
    let started = Instant::now();
    let mut engine = Engine::new(trace, policy, config);
    engine.run();
    let mut report = engine.report;
    report.added_latency_ms.sort_unstable();
    let minutes = trace.span().as_secs().div_ceil(60).max(1);
    for counts in report.per_function.iter().filter(|f| f.invocations <= minutes) {
        report.infrequent_functions += 1;
        report.infrequent.invocations += counts.invocations;
        report.infrequent.served += counts.served;
        report.infrequent.cold_starts += counts.cold_starts;
        report.infrequent.idle_memory_mb_ms += counts.idle_memory_mb_ms;
    }
    report.transitions = engine.counters;
    report.replay_time = started.elapsed();
    report
}

struct Slot {
    function: usize,
    host: usize,
    state: SlotState,
    created_at: Timestamp,
    /// End of the last invocation, or when the slot became warm if never used. While
    /// the slot is warm, this is also the start of its idle period.
    last_used_at: Timestamp,
    /// The invocation waiting for this slot to finish init.
    waiting: Option<TraceInvocation>,
    /// Duration of the invocation running on the slot.
    running: Duration,
}

struct FunctionPool {
    request: PlacementRequest,
    memory_mb: u64,
    /// Slots that are not terminated.
    live: Vec<usize>,
    /// Warm slots; the last one is the most recently used.
    idle: Vec<usize>,
    /// Initializing slots that no invocation waits for.
    unclaimed: Vec<usize>,
    last_arrival: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    SlotReady(usize),
    InvocationDone(usize),
    WarmPoolRound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Event {
    at: Timestamp,
    seq: u64,
    kind: EventKind,
}

impl Ord for Event {
    // Reversed, so the max-heap pops the earliest event (first scheduled on ties).
    fn cmp(&self, other: &Event) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Event) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Engine<'a> {
    trace: &'a Trace,
    config: &'a SimConfig,
    policy: Policy,
    clock: ManualClock,
    hosts: Vec<HostView>,
    slots: Vec<Slot>,
    functions: Vec<FunctionPool>,
    /// Warm slots by (idle since, slot index), for least-recently-used eviction.
    idle_index: BTreeSet<(Timestamp, usize)>,
    events: BinaryHeap<Event>,
    next_seq: u64,
    /// Slot-ready and invocation-done events in `events`.
    pending_work: usize,
    predictor: Predictor,
    limiter: BurstLimiter,
    counters: TransitionCounters,
    /// Idle memory-time is counted up to here.
    horizon: Timestamp,
    /// Memory held by slots now, in MB.
    allocated_mb: u64,
    report: PolicyReport,
}

impl<'a> Engine<'a> {
    fn new(trace: &'a Trace, policy: Policy, config: &'a SimConfig) -> Engine<'a> {
        let zones = config.zones.max(1);
        let hosts = (0..config.hosts)
            .map(|i| {
                let zone = format!("az-{}", (b'a' + (i % zones) as u8) as char);
                HostView::new(HostId(i), &zone, config.host_memory_mb, config.host_slots, &[RUNTIME])
            })
            .collect();
        let functions = trace
            .functions
            .iter()
            .map(|f| FunctionPool {
                request: PlacementRequest {
                    function: f.name.clone(),
                    version: VERSION.to_string(),
                    package: format!("sha256-of-{}", f.name),
                    runtime: RUNTIME.to_string(),
                    memory_mb: f.memory_mb,
                },
                memory_mb: f.memory_mb,
                live: Vec::new(),
                idle: Vec::new(),
                unclaimed: Vec::new(),
                last_arrival: None,
            })
            .collect();
        let start = trace.invocations.first().map_or(Timestamp::ZERO, |i| i.arrival);
        Engine {
            trace,
            config,
            policy,
            clock: ManualClock::new(start),
            hosts,
            slots: Vec::new(),
            functions,
            idle_index: BTreeSet::new(),
            events: BinaryHeap::new(),
            next_seq: 0,
            pending_work: 0,
            predictor: Predictor::new(config.predictor.clone()),
            limiter: BurstLimiter::new(config.burst_limit, config.burst_interval),
            counters: TransitionCounters::default(),
            horizon: trace.last_arrival(),
            allocated_mb: 0,
            report: PolicyReport {
                policy,
                invocations: trace.invocations.len() as u64,
                served: 0,
                cold_starts: 0,
                per_function: vec![FunctionCounts::default(); trace.functions.len()],
                infrequent: FunctionCounts::default(),
                infrequent_functions: 0,
                throttled_by_burst_limit: 0,
                throttled_by_capacity: 0,
                added_latency_ms: Vec::with_capacity(trace.invocations.len()),
                idle_memory_mb_ms: 0,
                peak_memory_mb: 0,
                slots_started: 0,
                prewarmed: 0,
                prewarms_without_host: 0,
                expired: 0,
                evicted: 0,
                histogram_decisions: 0,
                pool_decisions: 0,
                transitions: TransitionCounters::default(),
                replay_time: Duration::ZERO,
            },
        }
    }

    fn run(&mut self) {
        if let Some(first) = self.trace.invocations.first() {
            self.schedule(first.arrival, EventKind::WarmPoolRound);
        }
        let mut next_arrival = 0;
        loop {
            let arrival = self.trace.invocations.get(next_arrival);
            let event_first = match (self.events.peek(), arrival) {
                (Some(event), Some(arrival)) => event.at <= arrival.arrival,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if event_first {
                let event = self.events.pop().expect("peeked event exists");
                self.clock.advance_to(event.at);
                self.handle_event(event, next_arrival < self.trace.invocations.len());
            } else {
                let invocation = *arrival.expect("arrival exists");
                next_arrival += 1;
                self.clock.advance_to(invocation.arrival);
                self.handle_arrival(invocation);
            }
        }
        self.shut_down_all();
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn schedule(&mut self, at: Timestamp, kind: EventKind) {
        if kind != EventKind::WarmPoolRound {
            self.pending_work += 1;
        }
        self.events.push(Event {
            at,
            seq: self.next_seq,
            kind,
        });
        self.next_seq += 1;
    }

    fn handle_event(&mut self, event: Event, arrivals_left: bool) {
        match event.kind {
            EventKind::SlotReady(slot) => {
                self.pending_work -= 1;
                self.slot_ready(slot);
            }
            EventKind::InvocationDone(slot) => {
                self.pending_work -= 1;
                self.invocation_done(slot);
            }
            EventKind::WarmPoolRound => {
                self.warm_pool_round();
                if arrivals_left || self.pending_work > 0 {
                    let next = self.now() + self.config.warm_pool_interval;
                    self.schedule(next, EventKind::WarmPoolRound);
                }
            }
        }
    }

    fn handle_arrival(&mut self, invocation: TraceInvocation) {
        let now = self.now();
        let function = invocation.function;
        self.functions[function].last_arrival = Some(now);
        self.report.per_function[function].invocations += 1;
        if self.policy == Policy::HybridHistogram {
            self.predictor
                .record_arrival(&self.functions[function].request.function, now);
        }

        if let Some(slot) = self.functions[function].idle.pop() {
            self.leave_warm(slot);
            self.transition(slot, SlotState::Busy);
            self.start_invocation(slot, invocation);
            return;
        }

        if let Some(slot) = self.functions[function].unclaimed.pop() {
            self.count_cold_start(function);
            self.slots[slot].waiting = Some(invocation);
            return;
        }

        let name = &self.functions[function].request.function;
        if self.limiter.admit(name, 1, &self.clock).granted == 0 {
            self.report.throttled_by_burst_limit += 1;
            self.complete_throttled(function);
            return;
        }
        match self.place(function, true) {
            Some(host) => {
                self.count_cold_start(function);
                let slot = self.start_slot(function, host);
                self.slots[slot].waiting = Some(invocation);
            }
            None => {
                self.report.throttled_by_capacity += 1;
                self.complete_throttled(function);
            }
        }
    }

    fn count_cold_start(&mut self, function: usize) {
        self.report.cold_starts += 1;
        self.report.per_function[function].cold_starts += 1;
    }

    /// Tells the predictor that a throttled invocation ended at once.
    fn complete_throttled(&mut self, function: usize) {
        if self.policy == Policy::HybridHistogram {
            let now = self.now();
            let name = &self.functions[function].request.function;
            self.predictor.record_completion(name, now, Duration::ZERO);
        }
    }

    fn start_invocation(&mut self, slot: usize, invocation: TraceInvocation) {
        let now = self.now();
        self.report.served += 1;
        self.report.per_function[invocation.function].served += 1;
        self.report
            .added_latency_ms
            .push(now.saturating_duration_since(invocation.arrival).as_millis() as u64);
        self.slots[slot].running = invocation.duration;
        self.schedule(now + invocation.duration, EventKind::InvocationDone(slot));
    }

    fn slot_ready(&mut self, slot: usize) {
        let (function, host) = (self.slots[slot].function, self.slots[slot].host);
        let package = self.functions[function].request.package.clone();
        self.hosts[host].cached_packages.insert(package);
        self.transition(slot, SlotState::Warm);

        match self.slots[slot].waiting.take() {
            Some(invocation) => {
                self.transition(slot, SlotState::Busy);
                self.start_invocation(slot, invocation);
            }
            None => {
                self.functions[function].unclaimed.retain(|&s| s != slot);
                self.enter_warm(slot);
            }
        }
    }

    fn invocation_done(&mut self, slot: usize) {
        let function = self.slots[slot].function;
        if self.policy == Policy::HybridHistogram {
            let now = self.now();
            let name = &self.functions[function].request.function;
            self.predictor.record_completion(name, now, self.slots[slot].running);
        }
        self.transition(slot, SlotState::Warm);
        self.enter_warm(slot);
    }

    fn warm_pool_round(&mut self) {
        let now = self.now();
        for function in 0..self.functions.len() {
            let Some(last_arrival) = self.functions[function].last_arrival else {
                continue;
            };
            let name = &self.functions[function].request.function;
            let (decision, demand) = match self.policy {
                Policy::HybridHistogram => (
                    self.predictor.predict(name, now),
                    self.predictor.estimate_demand(name, now),
                ),
                Policy::FixedTtl => (
                    WarmDecision::fixed_ttl(last_arrival, self.config.predictor.fixed_ttl, DecisionBasis::FixedTtl),
                    0.0,
                ),
            };
            if self.functions[function].live.is_empty() && decision.prewarm_at.is_none() {
                continue;
            }
            self.report.pool_decisions += 1;
            if decision.basis == DecisionBasis::Histogram {
                self.report.histogram_decisions += 1;
            }

            let views: Vec<SlotView> = self.functions[function]
                .live
                .iter()
                .map(|&index| {
                    let slot = &self.slots[index];
                    SlotView {
                        id: SlotId(index as u64),
                        state: slot.state,
                        created_at: slot.created_at,
                        last_used_at: slot.last_used_at,
                    }
                })
                .collect();
            let state = FunctionPoolState {
                slots: &views,
                decision,
                predicted_demand: demand,
                provisioned_concurrency: 0,
            };
            for action in plan_warm_pool(&state, &self.config.warm_pool, now) {
                self.apply(function, action);
            }
        }
    }

    fn apply(&mut self, function: usize, action: Action) {
        match action {
            Action::Expire(ids) | Action::Retire(ids) => {
                for SlotId(id) in ids {
                    let slot = id as usize;
                    self.functions[function].idle.retain(|&s| s != slot);
                    self.leave_warm(slot);
                    self.shut_down(slot);
                    self.report.expired += 1;
                }
            }
            Action::Prewarm(count) => {
                let name = &self.functions[function].request.function;
                let granted = self.limiter.admit(name, count, &self.clock).granted;
                for _ in 0..granted {
                    let Some(host) = self.place(function, false) else {
                        self.report.prewarms_without_host += 1;
                        break;
                    };
                    let slot = self.start_slot(function, host);
                    self.functions[function].unclaimed.push(slot);
                    self.report.prewarmed += 1;
                }
            }
        }
    }

    /// Picks a host for a new slot of `function`. When no host is feasible and `evict`
    /// is set, evicts warm slots, least recently used first, from the first host on
    /// which they free enough memory.
    fn place(&mut self, function: usize, evict: bool) -> Option<usize> {
        let request = &self.functions[function].request;
        if let Some(HostId(host)) = select_placement(&self.hosts, request) {
            return Some(host as usize);
        }
        if !evict {
            return None;
        }

        // Evicting any one slot frees a slot on its host, so only memory can still be
        // short. Walk the warm slots from least recently used, collecting per host.
        let mut freed_mb = vec![0u64; self.hosts.len()];
        let mut victims: Vec<Vec<usize>> = vec![Vec::new(); self.hosts.len()];
        let mut chosen = None;
        for &(_, slot) in &self.idle_index {
            let host_index = self.slots[slot].host;
            let host = &self.hosts[host_index];
            if host.state != HostState::Active || !host.runtimes.iter().any(|r| *r == request.runtime) {
                continue;
            }
            freed_mb[host_index] += self.functions[self.slots[slot].function].memory_mb;
            victims[host_index].push(slot);
            if host.free_memory_mb + freed_mb[host_index] >= request.memory_mb {
                chosen = Some(host_index);
                break;
            }
        }

        let host = chosen?;
        for victim in std::mem::take(&mut victims[host]) {
            let victim_function = self.slots[victim].function;
            self.functions[victim_function].idle.retain(|&s| s != victim);
            self.leave_warm(victim);
            self.shut_down(victim);
            self.report.evicted += 1;
        }
        Some(host)
    }

    fn start_slot(&mut self, function: usize, host: usize) -> usize {
        let now = self.now();
        let slot = self.slots.len();
        self.slots.push(Slot {
            function,
            host,
            state: SlotState::Initializing,
            created_at: now,
            last_used_at: now,
            waiting: None,
            running: Duration::ZERO,
        });
        let pool = &mut self.functions[function];
        pool.live.push(slot);
        let view = &mut self.hosts[host];
        view.free_memory_mb -= pool.memory_mb;
        view.free_slots -= 1;
        match view.functions.get_mut(&pool.request.function) {
            Some(on_host) => on_host.slots += 1,
            None => view.functions.entry(pool.request.function.clone()).or_default().slots = 1,
        }
        self.allocated_mb += pool.memory_mb;
        self.report.peak_memory_mb = self.report.peak_memory_mb.max(self.allocated_mb);
        self.report.slots_started += 1;
        self.schedule(now + self.config.cold_start, EventKind::SlotReady(slot));
        slot
    }

    /// Adds a slot that just became warm to the idle sets.
    fn enter_warm(&mut self, slot: usize) {
        let now = self.now();
        let (function, host) = (self.slots[slot].function, self.slots[slot].host);
        self.slots[slot].last_used_at = now;
        self.idle_index.insert((now, slot));
        self.functions[function].idle.push(slot);
        let name = &self.functions[function].request.function;
        let on_host = self.hosts[host]
            .functions
            .get_mut(name)
            .expect("host counts the function's slots");
        match on_host.warm_by_version.get_mut(VERSION) {
            Some(warm) => *warm += 1,
            None => {
                on_host.warm_by_version.insert(VERSION.to_string(), 1);
            }
        }
    }

    /// Removes a warm slot from the host's warm count and the eviction index, and
    /// charges its idle time. The caller removes it from the function's idle list.
    fn leave_warm(&mut self, slot: usize) {
        let now = self.now();
        let (function, host, idle_since) = {
            let s = &self.slots[slot];
            (s.function, s.host, s.last_used_at)
        };
        self.idle_index.remove(&(idle_since, slot));
        let idle = now
            .min(self.horizon)
            .saturating_duration_since(idle_since.min(self.horizon));
        let idle_memory = u128::from(self.functions[function].memory_mb) * idle.as_millis();
        self.report.idle_memory_mb_ms += idle_memory;
        self.report.per_function[function].idle_memory_mb_ms += idle_memory;
        let name = &self.functions[function].request.function;
        if let Some(warm) = self.hosts[host]
            .functions
            .get_mut(name)
            .and_then(|f| f.warm_by_version.get_mut(VERSION))
        {
            *warm -= 1;
        }
    }

    /// Moves a warm slot through Cooling to Terminated and frees its capacity.
    fn shut_down(&mut self, slot: usize) {
        self.transition(slot, SlotState::Cooling);
        self.transition(slot, SlotState::Terminated);
        let (function, host) = (self.slots[slot].function, self.slots[slot].host);
        let pool = &mut self.functions[function];
        pool.live.retain(|&s| s != slot);
        self.allocated_mb -= pool.memory_mb;
        let view = &mut self.hosts[host];
        view.free_memory_mb += pool.memory_mb;
        view.free_slots += 1;
        if let Some(on_host) = view.functions.get_mut(&pool.request.function) {
            on_host.slots -= 1;
        }
    }

    /// Terminates every slot left at the end of the replay; all of them are warm then.
    fn shut_down_all(&mut self) {
        for function in 0..self.functions.len() {
            while let Some(slot) = self.functions[function].idle.pop() {
                self.leave_warm(slot);
                self.shut_down(slot);
            }
        }
    }

    fn transition(&mut self, slot: usize, to: SlotState) {
        if let Err(error) = transition(&mut self.slots[slot].state, to, &mut self.counters) {
            panic!("simulator bug on slot {slot}: {error}");
        }
    }
}
