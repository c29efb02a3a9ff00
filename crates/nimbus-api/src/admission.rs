//! Admission control: the concurrency check that every invocation passes before any
//! slot work. The limits come from the account (its limit), the function (its
//! reservation) and the sum of the account's reservations, which is cached briefly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nimbus_model::FunctionRecord;
use nimbus_state::{ConcurrencyKey, Lease, Limits, Throttle, ThrottledPool};
use nimbus_store::{Account, ControlStore};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// How long a cached sum of reservations is used. `PUT` and `DELETE
/// /functions/{name}/concurrency` invalidate it at once. Other changes, such as
/// deleting a function that had a reservation, show within this time.
pub const RESERVATION_CACHE_TTL: Duration = Duration::from_secs(2);

/// Cache of each account's sum of reserved concurrency, so that an invocation does
/// not aggregate over the account's functions in the store.
pub struct ReservationTotals {
    ttl: Duration,
    entries: Mutex<HashMap<Uuid, (u64, Instant)>>,
    /// Increases with every invalidation, so a read of the store that started before
    /// an invalidation does not cache its outdated sum afterwards.
    generation: AtomicU64,
}

impl ReservationTotals {
    pub fn new(ttl: Duration) -> ReservationTotals {
        ReservationTotals {
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Returns the sum of the account's reservations, from the cache while it is fresh.
    pub async fn get(&self, store: &dyn ControlStore, account_id: Uuid) -> ApiResult<u64> {
        if let Some((total, fetched)) = self.lock().get(&account_id) {
            if fetched.elapsed() < self.ttl {
                return Ok(*total);
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let total = store.account_usage(account_id).await?.reserved_concurrency;
        let mut entries = self.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            entries.insert(account_id, (total, Instant::now()));
        }
        Ok(total)
    }

    /// Forgets the account's sum after one of its reservations changed.
    pub fn invalidate(&self, account_id: Uuid) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.remove(&account_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (u64, Instant)>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Takes one unit of the function's concurrency. Returns an error when the limits
/// cannot be read, and `Ok(Err(throttle))` when the invocation is over a limit.
pub async fn acquire(
    state: &AppState,
    account: &Account,
    function: &FunctionRecord,
) -> ApiResult<Result<Lease, Throttle>> {
    let reserved_total = state.reservations.get(state.store.as_ref(), account.account_id).await?;
    let limits = Limits::new(account.concurrency_limit, function.reserved_concurrency, reserved_total);
    let key = ConcurrencyKey {
        account_id: account.account_id,
        function_id: function.function_id,
    };
    state.metrics.track_account(account);
    Ok(state.limiter.try_acquire(&key, &limits).await)
}

/// Builds the 429 of a throttled invocation, with a message that names the limit
/// and how to change it.
pub fn throttle_error(throttle: &Throttle, account: &Account, function: &str) -> ApiError {
    let limit = throttle.limit;
    let message = match throttle.pool {
        ThrottledPool::Reserved if limit == 0 => format!(
            "function '{function}' has reserved concurrency 0, so every invocation is throttled; raise it with PUT /functions/{function}/concurrency"
        ),
        ThrottledPool::Reserved => format!(
            "function '{function}' is running {limit} concurrent executions, all of its reserved concurrency; retry later or raise it with PUT /functions/{function}/concurrency"
        ),
        ThrottledPool::Unreserved => format!(
            "account '{}' is running {limit} concurrent executions of functions without a reservation, all of its unreserved concurrency (the account limit minus reservations); retry later",
            account.name
        ),
        ThrottledPool::Account => format!(
            "account '{}' is running {limit} concurrent executions, its whole concurrency limit; retry later, or raise the limit with `nimbus admin account set-limit`",
            account.name
        ),
    };
    ApiError::TooManyRequests {
        message,
        reason: throttle.reason.as_str(),
    }
}
