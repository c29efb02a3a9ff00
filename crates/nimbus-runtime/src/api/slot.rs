//! Event hand-over between [`RuntimeApi::invoke`](super::RuntimeApi::invoke) and the
//! runtime's HTTP requests.
//!
//! An event moves from `queued` (handed in by `invoke`, not yet fetched) to `running`
//! (fetched by `/invocation/next`) to resolved (its reply channel consumed by
//! `/response` or `/error`). At most one event exists at a time, because `invoke` keeps
//! `invoke_turn` locked until its event is resolved or abandoned.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{oneshot, watch, Notify};

use super::{InitOutcome, Invocation, InvokeOutcome, RuntimeApiLimits};

pub(crate) struct Slot {
    pub(crate) limits: RuntimeApiLimits,
    state: Mutex<EventState>,
    /// Wakes a `/invocation/next` poll when an event is queued.
    event_queued: Notify,
    /// Locked by the `invoke` call whose event is in the slot. Waiters get it in call order.
    invoke_turn: tokio::sync::Mutex<()>,
    /// `None` until the runtime first calls `/invocation/next` or posts its init error.
    init: watch::Sender<Option<InitOutcome>>,
    shutdown: watch::Sender<bool>,
    /// When the runtime first posted `/runtime/nimbus/runtime-ready`.
    runtime_ready_at: OnceLock<Instant>,
}

#[derive(Default)]
struct EventState {
    queued: Option<QueuedEvent>,
    running: Option<RunningEvent>,
    /// Identifies each `invoke` call, so that an abandoned call removes only its own event.
    last_sequence: u64,
}

struct QueuedEvent {
    sequence: u64,
    invocation: Invocation,
    reply: oneshot::Sender<InvokeOutcome>,
}

struct RunningEvent {
    sequence: u64,
    request_id: String,
    reply: oneshot::Sender<InvokeOutcome>,
}

/// Reason that `/invocation/next` returns no event.
pub(crate) enum NextError {
    /// The runtime called `/invocation/next` again before posting a response or error for
    /// its running event.
    EventRunning,
    /// The runtime reported an init error earlier, so it gets no events.
    InitFailed,
    ShuttingDown,
}

/// The init outcome was already set when the runtime posted an init error.
pub(crate) struct InitAlreadyEnded;

impl Slot {
    pub(crate) fn new(limits: RuntimeApiLimits) -> Slot {
        Slot {
            limits,
            state: Mutex::new(EventState::default()),
            event_queued: Notify::new(),
            invoke_turn: tokio::sync::Mutex::new(()),
            init: watch::Sender::new(None),
            shutdown: watch::Sender::new(false),
            runtime_ready_at: OnceLock::new(),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, EventState> {
        // The critical sections below cannot panic halfway through a change, so the
        // state behind a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the current time as the runtime's ready time, unless one is already set or
    /// init has already ended.
    pub(crate) fn mark_runtime_ready(&self) {
        if self.init.borrow().is_none() {
            let _ = self.runtime_ready_at.set(Instant::now());
        }
    }

    pub(crate) fn runtime_ready_at(&self) -> Option<Instant> {
        self.runtime_ready_at.get().copied()
    }

    pub(crate) async fn wait_ready(&self) -> InitOutcome {
        let mut init = self.init.subscribe();
        // The sender lives as long as `self`, so `wait_for` cannot fail here.
        if let Ok(outcome) = init.wait_for(Option::is_some).await {
            if let Some(outcome) = outcome.as_ref() {
                return outcome.clone();
            }
        }
        std::future::pending().await
    }

    pub(crate) async fn invoke(&self, invocation: Invocation) -> InvokeOutcome {
        let _turn = self.invoke_turn.lock().await;

        let (reply, outcome) = oneshot::channel();
        let sequence = {
            let mut state = self.lock_state();
            state.last_sequence += 1;
            let sequence = state.last_sequence;
            state.queued = Some(QueuedEvent {
                sequence,
                invocation,
                reply,
            });
            sequence
        };
        let _abandon = AbandonOnDrop { slot: self, sequence };
        self.event_queued.notify_one();

        match outcome.await {
            Ok(outcome) => outcome,
            // The reply sender is only dropped unsent when the server shuts down.
            Err(_) => std::future::pending().await,
        }
    }

    /// Waits for the next event and marks it running. The first call also ends init.
    pub(crate) async fn next_event(&self) -> Result<Invocation, NextError> {
        self.mark_ready()?;
        let mut shutdown = self.shutdown.subscribe();
        loop {
            if *shutdown.borrow_and_update() {
                return Err(NextError::ShuttingDown);
            }
            if let Some(invocation) = self.take_queued()? {
                return Ok(invocation);
            }
            tokio::select! {
                _ = self.event_queued.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    fn mark_ready(&self) -> Result<(), NextError> {
        let mut failed = false;
        self.init.send_if_modified(|init| match init {
            None => {
                *init = Some(InitOutcome::Ready);
                true
            }
            Some(InitOutcome::Ready) => false,
            Some(InitOutcome::Failed { .. }) => {
                failed = true;
                false
            }
        });
        if failed {
            Err(NextError::InitFailed)
        } else {
            Ok(())
        }
    }

    fn take_queued(&self) -> Result<Option<Invocation>, NextError> {
        let mut state = self.lock_state();
        if state.running.is_some() {
            return Err(NextError::EventRunning);
        }
        let Some(queued) = state.queued.take() else {
            return Ok(None);
        };
        state.running = Some(RunningEvent {
            sequence: queued.sequence,
            request_id: queued.invocation.request_id.clone(),
            reply: queued.reply,
        });
        Ok(Some(queued.invocation))
    }

    /// Returns whether `request_id` is the event the runtime is working on.
    pub(crate) fn is_running(&self, request_id: &str) -> bool {
        let state = self.lock_state();
        state
            .running
            .as_ref()
            .is_some_and(|running| running.request_id == request_id)
    }

    /// Resolves the running event with `outcome` if its id is `request_id`. Returns false,
    /// so the post is rejected, when it is not. Each event is resolved at most once.
    pub(crate) fn resolve_running(&self, request_id: &str, outcome: InvokeOutcome) -> bool {
        let running = {
            let mut state = self.lock_state();
            match state.running.take() {
                Some(running) if running.request_id == request_id => running,
                other => {
                    state.running = other;
                    return false;
                }
            }
        };
        // A dropped receiver means the caller abandoned the event just now. The runtime
        // posted in time from its side, so it gets 202 all the same.
        let _ = running.reply.send(outcome);
        true
    }

    pub(crate) fn fail_init(&self, error_type: Option<String>, body: Bytes) -> Result<(), InitAlreadyEnded> {
        let mut outcome = Some(InitOutcome::Failed { error_type, body });
        let changed = self.init.send_if_modified(|init| {
            if init.is_some() {
                return false;
            }
            *init = outcome.take();
            true
        });
        if changed {
            Ok(())
        } else {
            Err(InitAlreadyEnded)
        }
    }

    pub(crate) fn shut_down(&self) {
        self.shutdown.send_replace(true);
        let mut state = self.lock_state();
        state.queued = None;
        state.running = None;
    }

    pub(crate) fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut shutdown = self.shutdown.subscribe();
        async move {
            // An error means the slot is gone, which also ends serving.
            let _ = shutdown.wait_for(|stopped| *stopped).await;
        }
    }
}

/// Removes an `invoke` call's event from the slot when the call ends, whether resolved
/// (then there is nothing left to remove) or dropped by its caller.
struct AbandonOnDrop<'a> {
    slot: &'a Slot,
    sequence: u64,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        let mut state = self.slot.lock_state();
        if state
            .queued
            .as_ref()
            .is_some_and(|queued| queued.sequence == self.sequence)
        {
            state.queued = None;
        }
        if state
            .running
            .as_ref()
            .is_some_and(|running| running.sequence == self.sequence)
        {
            state.running = None;
        }
    }
}
