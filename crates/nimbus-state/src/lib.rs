//! Data-plane state of Nimbus behind traits, so that one frontend can keep it in
//! process and several frontends can later share it through Redis.
//!
//! For now this crate contains concurrency control: a [`ConcurrencyLimiter`] admits an
//! invocation by handing out a [`Lease`], or rejects it with a [`Throttle`], following
//! Lambda's rules for reserved and unreserved concurrency. [`InMemoryLimiter`] is the
//! implementation for a single process.

mod memory;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use uuid::Uuid;

pub use memory::InMemoryLimiter;

/// Lease lifetime for implementations that expire leases: the longest function
/// timeout (900 s) plus the 10 s init limit, with a margin for recording.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(960);

/// The function that an invocation counts against, and its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcurrencyKey {
    pub account_id: Uuid,
    pub function_id: Uuid,
}

/// The limits that apply to one acquisition, read from the account and the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent executions allowed across all of the account's functions.
    pub account_limit: u32,
    /// The function's reserved concurrency, if it has a reservation. A function with a
    /// reservation runs at most this many at once and never uses the unreserved pool.
    pub reserved: Option<u32>,
    /// Concurrent executions shared by the account's functions without a reservation:
    /// the account limit minus the sum of all reservations.
    pub unreserved_pool: u32,
}

impl Limits {
    /// Builds the limits of a function from its account's limit, the function's own
    /// reservation and the sum of all reservations in the account.
    pub fn new(account_limit: u32, reserved: Option<u32>, reserved_total: u64) -> Limits {
        let unreserved_pool = (account_limit as u64).saturating_sub(reserved_total) as u32;
        Limits {
            account_limit,
            reserved,
            unreserved_pool,
        }
    }
}

/// Reason for a rejected acquisition. The names are Lambda's `Reason` values of a
/// `TooManyRequestsException`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleReason {
    /// The function runs as many invocations as its reservation allows, or it has a
    /// reservation of 0.
    ReservedFunctionConcurrentInvocationLimitExceeded,
    /// The unreserved pool or the whole account is in use.
    ConcurrentInvocationLimitExceeded,
}

impl ThrottleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded => {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            }
            ThrottleReason::ConcurrentInvocationLimitExceeded => "ConcurrentInvocationLimitExceeded",
        }
    }
}

impl fmt::Display for ThrottleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected acquisition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: all {limit} concurrent executions of the {pool} are in use")]
pub struct Throttle {
    pub reason: ThrottleReason,
    /// The limit that was reached: the reservation, the unreserved pool or the
    /// account limit.
    pub limit: u32,
    /// Kind of the limit in `limit`.
    pub pool: ThrottledPool,
}

/// The limit that rejected an acquisition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottledPool {
    /// The function's reservation.
    Reserved,
    /// The account's unreserved pool.
    Unreserved,
    /// The account limit.
    Account,
}

impl fmt::Display for ThrottledPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ThrottledPool::Reserved => "function's reservation",
            ThrottledPool::Unreserved => "account's unreserved pool",
            ThrottledPool::Account => "account limit",
        })
    }
}

/// The pool that a lease counts against, fixed when it is acquired, so a reservation
/// that changes while the invocation runs does not unbalance the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConcurrencyPool {
    Reserved,
    Unreserved,
}

/// Frees the concurrency that a [`Lease`] holds. Implemented by each limiter.
pub trait ReleaseLease: Send + Sync {
    /// Releases `lease`. It is called once per lease, from the lease's `Drop`, so it
    /// must not block or panic: a networked implementation sends its release from a
    /// spawned task.
    fn release(&self, lease: &Lease);
}

/// One admitted invocation's share of concurrency. Dropping the lease releases it.
/// So every way an invocation ends releases it too: a result, a function error, a
/// timeout, or a panic that unwinds through the owner. A caller that goes away
/// releases it as well, as long as the lease lives in the task that runs the
/// invocation.
pub struct Lease {
    id: Uuid,
    key: ConcurrencyKey,
    pool: ConcurrencyPool,
    expires_at: SystemTime,
    releaser: Option<Arc<dyn ReleaseLease>>,
}

impl Lease {
    /// Creates a lease that `releaser` frees when the lease is dropped.
    pub fn new(
        key: ConcurrencyKey,
        pool: ConcurrencyPool,
        expires_at: SystemTime,
        releaser: Arc<dyn ReleaseLease>,
    ) -> Lease {
        Lease {
            id: Uuid::new_v4(),
            key,
            pool,
            expires_at,
            releaser: Some(releaser),
        }
    }

    /// Unique id of this lease, the member name in a shared store.
    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn key(&self) -> &ConcurrencyKey {
        &self.key
    }

    pub fn pool(&self) -> ConcurrencyPool {
        self.pool
    }

    /// Wall-clock time after which a shared store may drop this lease on its own, so
    /// a frontend that crashes while holding leases does not leak concurrency.
    /// [`InMemoryLimiter`] ignores it, because its leases die with the process and
    /// `Drop` releases them.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("pool", &self.pool)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(releaser) = self.releaser.take() {
            releaser.release(self);
        }
    }
}

/// Admits invocations within Lambda's concurrency limits.
///
/// A function with a reservation runs at most `reserved` invocations at once (so a
/// reservation of 0 throttles every invocation) and never draws from the unreserved
/// pool. Functions without a reservation share the unreserved pool. In both cases the
/// account never runs more than its limit.
///
/// The methods are async so that an implementation backed by a network store fits.
// NOTE: a networked implementation can fail to reach its store, which `Throttle`
// cannot express yet; it will need an error variant or a fail-open policy.
#[async_trait]
pub trait ConcurrencyLimiter: Send + Sync {
    /// Takes one unit of concurrency for `key`, or returns why none is free.
    async fn try_acquire(&self, key: &ConcurrencyKey, limits: &Limits) -> Result<Lease, Throttle>;

    /// Returns the number of leases that an account holds now.
    async fn in_use(&self, account_id: Uuid) -> u32;

    /// Returns the number of leases that a function holds now.
    async fn in_use_function(&self, function_id: Uuid) -> u32;
}
