//! Runs asynchronous events from the durable queue. Events are claimed with a lease,
//! run through the same path as synchronous invocations, and retried on failure as
//! Lambda does: twice, after growing delays. Throttled or capacity-limited events
//! wait and are retried without using up an attempt, so none is dropped.

use std::sync::Arc;
use std::time::Duration;

use nimbus_store::AsyncEvent;
use nimbus_worker::{InvokeRequest, InvokeStatus, WorkerError};
use tokio::sync::Semaphore;

use crate::admission;
use crate::invoke::{now_ms, record_throttle, resolve_target, run_invocation};
use crate::AppState;

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Delay before each retry of a failed event; its length is the number of
    /// retries. Lambda retries twice, after about one and two minutes.
    pub retry_delays: Vec<Duration>,
    /// Events run at once.
    pub max_concurrent: usize,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            retry_delays: vec![Duration::from_secs(60), Duration::from_secs(120)],
            max_concurrent: 16,
        }
    }
}

/// A claim lasts longer than the longest function timeout (900 s), so a running
/// event is never claimed twice while its dispatcher lives.
const LEASE: Duration = Duration::from_secs(960);
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Wait before retrying an event that was throttled or found no capacity.
const THROTTLE_RETRY: Duration = Duration::from_secs(1);

pub fn start(state: AppState, config: DispatcherConfig) {
    tokio::spawn(async move {
        match state.store.release_event_leases().await {
            Ok(0) => {}
            Ok(released) => {
                tracing::info!(released, "resuming events claimed before the last shutdown")
            }
            Err(error) => tracing::error!(%error, "releasing event leases failed"),
        }
        let config = Arc::new(config);
        let slots = Arc::new(Semaphore::new(config.max_concurrent));
        loop {
            let free = slots.available_permits();
            if free > 0 {
                match state
                    .store
                    .claim_events(now_ms(), LEASE.as_millis() as i64, free as u32)
                    .await
                {
                    Ok(events) => {
                        for event in events {
                            let permit = slots.clone().acquire_owned().await.expect("semaphore is never closed");
                            let state = state.clone();
                            let config = config.clone();
                            tokio::spawn(async move {
                                run_event(&state, &config, event).await;
                                drop(permit);
                                // A free permit means another event can be claimed now,
                                // not at the next poll.
                                state.dispatcher_wakeup.notify_one();
                            });
                        }
                    }
                    Err(error) => tracing::error!(%error, "claiming queued events failed"),
                }
            }
            tokio::select! {
                _ = state.dispatcher_wakeup.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    });
}

async fn discard(state: &AppState, event: &AsyncEvent, reason: &str) {
    tracing::warn!(request_id = %event.event_id, function_id = %event.function_id, reason, "event discarded");
    if let Err(error) = state.store.delete_event(&event.event_id).await {
        tracing::error!(request_id = %event.event_id, %error, "deleting a discarded event failed");
    }
}

async fn retry_later(state: &AppState, event: &AsyncEvent, attempts: u32, delay: Duration) {
    let next = now_ms() + delay.as_millis() as i64;
    if let Err(error) = state.store.retry_event(&event.event_id, attempts, next).await {
        tracing::error!(request_id = %event.event_id, %error, "rescheduling an event failed");
    }
}

async fn run_event(state: &AppState, config: &DispatcherConfig, event: AsyncEvent) {
    let account = match state.store.get_account(event.account_id).await {
        Ok(Some(account)) => account,
        Ok(None) => return discard(state, &event, "its account no longer exists").await,
        Err(error) => {
            tracing::error!(request_id = %event.event_id, %error, "loading an event's account failed");
            return retry_later(state, &event, event.attempts, THROTTLE_RETRY).await;
        }
    };
    let function = match state.store.get_function_by_id(event.function_id).await {
        Ok(Some(function)) => function,
        Ok(None) => return discard(state, &event, "its function was deleted").await,
        Err(error) => {
            tracing::error!(request_id = %event.event_id, %error, "loading an event's function failed");
            return retry_later(state, &event, event.attempts, THROTTLE_RETRY).await;
        }
    };
    let target = match resolve_target(state, &account, &function, event.qualifier.as_deref()).await {
        Ok(target) => target,
        Err(error) => return discard(state, &event, &format!("its qualifier no longer resolves: {error}")).await,
    };
    let lease = match admission::acquire(state, &account, &function).await {
        Ok(Ok(lease)) => lease,
        Ok(Err(throttle)) => {
            state
                .metrics
                .count_throttle(&account.name, &function.name, throttle.reason.as_str());
            // The wait grows with the event's age, up to a minute. Only a throttle of
            // an event that was never rescheduled is recorded, so a long throttle
            // writes one record, not one per retry.
            if event.next_attempt_ms == event.created_ms {
                tracing::info!(request_id = %event.event_id, function = %function.name,
                    reason = throttle.reason.as_str(), "event throttled; it waits and is retried");
                record_throttle(
                    state,
                    &account,
                    function.function_id,
                    &target.version,
                    &event.event_id,
                    "Event",
                    &event.trace_id,
                );
            }
            let age = Duration::from_millis((now_ms() - event.created_ms).max(0) as u64);
            let delay = (age / 4).clamp(THROTTLE_RETRY, Duration::from_secs(60));
            return retry_later(state, &event, event.attempts, delay).await;
        }
        Err(error) => {
            tracing::error!(request_id = %event.event_id, %error, "reading an event's concurrency limits failed");
            return retry_later(state, &event, event.attempts, THROTTLE_RETRY).await;
        }
    };

    let request = InvokeRequest {
        request_id: event.event_id.clone(),
        function_id: function.function_id,
        function_name: function.name.clone(),
        version: target.version,
        invoked_function_arn: target.invoked_arn,
        settings: target.settings,
        code: target.code,
        payload: event.payload.clone().into(),
        client_context: event.client_context.clone(),
        trace_id: event.trace_id.clone(),
    };
    let attempts = event.attempts + 1;
    match run_invocation(state, &account, function.function_id, request, "Event", lease).await {
        Ok(result) if result.status == InvokeStatus::Success => {
            tracing::debug!(request_id = %event.event_id, function = %function.name, attempts, "event succeeded");
            if let Err(error) = state.store.delete_event(&event.event_id).await {
                tracing::error!(request_id = %event.event_id, %error, "deleting a finished event failed");
            }
        }
        Ok(result) => {
            let error_type = result.error_type.unwrap_or_default();
            match config.retry_delays.get(event.attempts as usize) {
                Some(delay) => {
                    tracing::info!(request_id = %event.event_id, function = %function.name, attempts, %error_type,
                        retry_in_s = delay.as_secs_f64(), "event failed; retrying");
                    retry_later(state, &event, attempts, *delay).await;
                }
                None => {
                    // TODO: deliver the event to the function's dead_letter_queue once
                    // Nimbus has queue integrations; it is only logged now.
                    discard(
                        state,
                        &event,
                        &format!("it failed {attempts} times, last with {error_type}"),
                    )
                    .await;
                }
            }
        }
        Err(
            WorkerError::NoCapacity { .. } | WorkerError::NoFeasibleHost(_) | WorkerError::BurstLimitExceeded { .. },
        ) => retry_later(state, &event, event.attempts, THROTTLE_RETRY).await,
        Err(error) => {
            tracing::error!(request_id = %event.event_id, function = %function.name, %error, "event could not run");
            retry_later(state, &event, event.attempts, THROTTLE_RETRY).await;
        }
    }
}
