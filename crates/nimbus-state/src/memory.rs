//! Concurrency counts of one process, behind one mutex.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use uuid::Uuid;

use crate::{
    ConcurrencyKey, ConcurrencyLimiter, ConcurrencyPool, Lease, Limits, ReleaseLease, Throttle, ThrottleReason,
    ThrottledPool, DEFAULT_LEASE_TTL,
};

/// A [`ConcurrencyLimiter`] that keeps its counts in memory, for a single frontend.
///
/// Acquiring and releasing each take one short mutex-protected update, so the
/// limits hold exactly under any number of concurrent callers. Counts of accounts and
/// functions with no lease are removed, so memory grows only with what runs now.
#[derive(Clone)]
pub struct InMemoryLimiter {
    counts: Arc<Counts>,
    lease_ttl: Duration,
}

#[derive(Default)]
struct Counts {
    inner: Mutex<CountMaps>,
}

#[derive(Default)]
struct CountMaps {
    accounts: HashMap<Uuid, AccountCount>,
    functions: HashMap<Uuid, u32>,
}

#[derive(Debug, Default, Clone, Copy)]
struct AccountCount {
    /// Leases of all of the account's functions.
    total: u32,
    /// Leases of functions that had no reservation when they acquired.
    unreserved: u32,
}

impl Counts {
    /// Locks the counts. A panic while the lock is held cannot leave them half
    /// updated, because every update is a few integer operations, so a poisoned lock
    /// is used as it is, and releases keep working after a panic elsewhere.
    fn lock(&self) -> MutexGuard<'_, CountMaps> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ReleaseLease for Counts {
    fn release(&self, lease: &Lease) {
        let key = lease.key();
        let mut counts = self.lock();
        if let Some(function) = counts.functions.get_mut(&key.function_id) {
            *function = function.saturating_sub(1);
            if *function == 0 {
                counts.functions.remove(&key.function_id);
            }
        }
        if let Some(account) = counts.accounts.get_mut(&key.account_id) {
            account.total = account.total.saturating_sub(1);
            if lease.pool() == ConcurrencyPool::Unreserved {
                account.unreserved = account.unreserved.saturating_sub(1);
            }
            if account.total == 0 {
                counts.accounts.remove(&key.account_id);
            }
        }
    }
}

impl InMemoryLimiter {
    /// Creates a limiter whose leases carry an expiry `lease_ttl` after they are
    /// acquired. The expiry is informational here: leases end when they are dropped.
    pub fn new(lease_ttl: Duration) -> InMemoryLimiter {
        InMemoryLimiter {
            counts: Arc::new(Counts::default()),
            lease_ttl,
        }
    }

    fn acquire(&self, key: &ConcurrencyKey, limits: &Limits) -> Result<Lease, Throttle> {
        let mut counts = self.counts.lock();
        let account = counts.accounts.get(&key.account_id).copied().unwrap_or_default();
        let function = counts.functions.get(&key.function_id).copied().unwrap_or(0);

        let pool = match limits.reserved {
            Some(reserved) => {
                if function >= reserved {
                    return Err(Throttle {
                        reason: ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded,
                        limit: reserved,
                        pool: ThrottledPool::Reserved,
                    });
                }
                ConcurrencyPool::Reserved
            }
            None => {
                if account.unreserved >= limits.unreserved_pool {
                    return Err(Throttle {
                        reason: ThrottleReason::ConcurrentInvocationLimitExceeded,
                        limit: limits.unreserved_pool,
                        pool: ThrottledPool::Unreserved,
                    });
                }
                ConcurrencyPool::Unreserved
            }
        };
        // Reservations always fit inside the account limit, but a limit lowered while
        // invocations run can leave the account above it until they finish.
        if account.total >= limits.account_limit {
            return Err(Throttle {
                reason: ThrottleReason::ConcurrentInvocationLimitExceeded,
                limit: limits.account_limit,
                pool: ThrottledPool::Account,
            });
        }

        let account = counts.accounts.entry(key.account_id).or_default();
        account.total += 1;
        if pool == ConcurrencyPool::Unreserved {
            account.unreserved += 1;
        }
        *counts.functions.entry(key.function_id).or_default() += 1;
        drop(counts);

        let expires_at = SystemTime::now() + self.lease_ttl;
        Ok(Lease::new(*key, pool, expires_at, self.counts.clone()))
    }
}

impl Default for InMemoryLimiter {
    fn default() -> Self {
        InMemoryLimiter::new(DEFAULT_LEASE_TTL)
    }
}

#[async_trait]
impl ConcurrencyLimiter for InMemoryLimiter {
    async fn try_acquire(&self, key: &ConcurrencyKey, limits: &Limits) -> Result<Lease, Throttle> {
        self.acquire(key, limits)
    }

    async fn in_use(&self, account_id: Uuid) -> u32 {
        self.counts.lock().accounts.get(&account_id).map_or(0, |a| a.total)
    }

    async fn in_use_function(&self, function_id: Uuid) -> u32 {
        self.counts.lock().functions.get(&function_id).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn key(account_id: Uuid) -> ConcurrencyKey {
        ConcurrencyKey {
            account_id,
            function_id: Uuid::new_v4(),
        }
    }

    fn unreserved(account_limit: u32, unreserved_pool: u32) -> Limits {
        Limits {
            account_limit,
            reserved: None,
            unreserved_pool,
        }
    }

    fn reserved(account_limit: u32, reserved: u32, unreserved_pool: u32) -> Limits {
        Limits {
            account_limit,
            reserved: Some(reserved),
            unreserved_pool,
        }
    }

    #[tokio::test]
    async fn reservation_caps_function() {
        let limiter = InMemoryLimiter::default();
        let function = key(Uuid::new_v4());
        let limits = reserved(1000, 2, 998);

        let first = limiter.try_acquire(&function, &limits).await.expect("first lease");
        let second = limiter.try_acquire(&function, &limits).await.expect("second lease");
        let third = limiter.try_acquire(&function, &limits).await;

        let throttle = third.expect_err("third acquisition is throttled");
        assert_eq!(
            throttle.reason,
            ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded
        );
        assert_eq!(throttle.limit, 2);
        assert_eq!(throttle.pool, ThrottledPool::Reserved);
        assert_eq!(first.pool(), ConcurrencyPool::Reserved);
        assert_eq!(limiter.in_use_function(function.function_id).await, 2);
        drop(second);
        assert!(limiter.try_acquire(&function, &limits).await.is_ok());
    }

    #[tokio::test]
    async fn reservation_zero_throttles_all() {
        let limiter = InMemoryLimiter::default();
        let function = key(Uuid::new_v4());

        let result = limiter.try_acquire(&function, &reserved(1000, 0, 1000)).await;

        let throttle = result.expect_err("reserved 0 throttles");
        assert_eq!(
            throttle.reason,
            ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded
        );
        assert_eq!(limiter.in_use(function.account_id).await, 0);
    }

    #[tokio::test]
    async fn unreserved_pool_is_shared() {
        let limiter = InMemoryLimiter::default();
        let account_id = Uuid::new_v4();
        let (first, second) = (key(account_id), key(account_id));
        let limits = unreserved(10, 3);

        let _leases = [
            limiter.try_acquire(&first, &limits).await.expect("lease 1"),
            limiter.try_acquire(&second, &limits).await.expect("lease 2"),
            limiter.try_acquire(&first, &limits).await.expect("lease 3"),
        ];
        let fourth = limiter.try_acquire(&second, &limits).await;

        let throttle = fourth.expect_err("the pool of 3 is full");
        assert_eq!(throttle.reason, ThrottleReason::ConcurrentInvocationLimitExceeded);
        assert_eq!(throttle.pool, ThrottledPool::Unreserved);
        assert_eq!(throttle.limit, 3);
        assert_eq!(limiter.in_use(account_id).await, 3);
        assert_eq!(limiter.in_use_function(first.function_id).await, 2);
        assert_eq!(limiter.in_use_function(second.function_id).await, 1);
    }

    #[tokio::test]
    async fn reserved_function_skips_unreserved_pool() {
        let limiter = InMemoryLimiter::default();
        let account_id = Uuid::new_v4();
        let (open, held) = (key(account_id), key(account_id));
        // Account limit 5 with 3 reserved by `held`: 2 unreserved.
        let open_limits = unreserved(5, 2);
        let held_limits = reserved(5, 3, 2);

        let _open_leases = [
            limiter.try_acquire(&open, &open_limits).await.expect("open 1"),
            limiter.try_acquire(&open, &open_limits).await.expect("open 2"),
        ];
        let open_full = limiter.try_acquire(&open, &open_limits).await;
        let _held_leases = [
            limiter.try_acquire(&held, &held_limits).await.expect("held 1"),
            limiter.try_acquire(&held, &held_limits).await.expect("held 2"),
            limiter.try_acquire(&held, &held_limits).await.expect("held 3"),
        ];
        let held_full = limiter.try_acquire(&held, &held_limits).await;

        assert_eq!(open_full.expect_err("pool full").pool, ThrottledPool::Unreserved);
        assert_eq!(held_full.expect_err("reservation full").pool, ThrottledPool::Reserved);
        assert_eq!(limiter.in_use(account_id).await, 5);
    }

    #[tokio::test]
    async fn account_limit_caps_total() {
        let limiter = InMemoryLimiter::default();
        let account_id = Uuid::new_v4();
        let (reserved_function, other) = (key(account_id), key(account_id));
        let _leases = [
            limiter.try_acquire(&other, &unreserved(4, 4)).await.expect("lease 1"),
            limiter.try_acquire(&other, &unreserved(4, 4)).await.expect("lease 2"),
        ];

        // The limit was lowered to 2 while two invocations ran.
        let result = limiter.try_acquire(&reserved_function, &reserved(2, 1, 1)).await;

        let throttle = result.expect_err("the account is at its limit");
        assert_eq!(throttle.reason, ThrottleReason::ConcurrentInvocationLimitExceeded);
        assert_eq!(throttle.pool, ThrottledPool::Account);
        assert_eq!(throttle.limit, 2);
    }

    #[tokio::test]
    async fn accounts_are_independent() {
        let limiter = InMemoryLimiter::default();
        let (first, second) = (key(Uuid::new_v4()), key(Uuid::new_v4()));

        let _lease = limiter
            .try_acquire(&first, &unreserved(1, 1))
            .await
            .expect("first account");
        let other = limiter.try_acquire(&second, &unreserved(1, 1)).await;

        assert!(other.is_ok(), "another account has its own limit");
    }

    #[tokio::test]
    async fn drop_releases_lease() {
        let limiter = InMemoryLimiter::default();
        let function = key(Uuid::new_v4());
        let lease = limiter
            .try_acquire(&function, &unreserved(10, 10))
            .await
            .expect("lease");
        assert_eq!(limiter.in_use(function.account_id).await, 1);

        drop(lease);

        assert_eq!(limiter.in_use(function.account_id).await, 0);
        assert_eq!(limiter.in_use_function(function.function_id).await, 0);
        let counts = limiter.counts.lock();
        assert!(counts.accounts.is_empty(), "empty accounts are removed");
        assert!(counts.functions.is_empty(), "empty functions are removed");
    }

    #[tokio::test]
    async fn release_uses_pool_of_acquire() {
        let limiter = InMemoryLimiter::default();
        let function = key(Uuid::new_v4());
        // The first lease is acquired without a reservation, then one is set while it runs.
        let unreserved_lease = limiter
            .try_acquire(&function, &unreserved(10, 1))
            .await
            .expect("unreserved lease");
        let reserved_lease = limiter
            .try_acquire(&function, &reserved(10, 5, 5))
            .await
            .expect("reserved lease");

        drop(unreserved_lease);
        let other = key(function.account_id);
        let reacquired = limiter.try_acquire(&other, &unreserved(10, 1)).await;

        assert!(reacquired.is_ok(), "the unreserved unit came back to the pool");
        assert_eq!(limiter.in_use(function.account_id).await, 2);
        drop(reserved_lease);
        drop(reacquired);
        assert_eq!(limiter.in_use(function.account_id).await, 0);
    }

    #[tokio::test]
    async fn lease_expiry_follows_ttl() {
        let limiter = InMemoryLimiter::new(Duration::from_secs(30));
        let before = SystemTime::now();

        let lease = limiter
            .try_acquire(&key(Uuid::new_v4()), &unreserved(1, 1))
            .await
            .expect("lease");

        assert!(lease.expires_at() >= before + Duration::from_secs(30));
        assert!(lease.expires_at() <= SystemTime::now() + Duration::from_secs(30));
    }

    #[tokio::test]
    async fn panicking_task_releases_lease() {
        let limiter = InMemoryLimiter::default();
        let function = key(Uuid::new_v4());
        let lease = limiter.try_acquire(&function, &unreserved(1, 1)).await.expect("lease");

        let task = tokio::spawn(async move {
            let _lease = lease;
            panic!("the invocation panicked");
        });

        assert!(task.await.is_err(), "the task panicked");
        assert_eq!(limiter.in_use(function.account_id).await, 0);
    }

    #[tokio::test]
    async fn aborted_task_releases_lease() {
        let limiter = InMemoryLimiter::default();
        let function = key(Uuid::new_v4());
        let lease = limiter.try_acquire(&function, &unreserved(1, 1)).await.expect("lease");
        let task = tokio::spawn(async move {
            let _lease = lease;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });

        task.abort();

        assert!(task.await.expect_err("aborted").is_cancelled());
        assert_eq!(limiter.in_use(function.account_id).await, 0);
    }

    /// Runs many tasks on several threads that each acquire, hold and drop leases of
    /// a few functions, and checks that no limit is ever exceeded and that every
    /// lease is released.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_stress_respects_limits() {
        const TASKS: usize = 64;
        const ROUNDS: usize = 200;
        const ACCOUNT_LIMIT: u32 = 12;
        const RESERVED: u32 = 4;
        let limiter = InMemoryLimiter::default();
        let account_id = Uuid::new_v4();
        let reserved_function = key(account_id);
        let open_functions = [key(account_id), key(account_id)];
        let reserved_limits = reserved(ACCOUNT_LIMIT, RESERVED, ACCOUNT_LIMIT - RESERVED);
        let open_limits = unreserved(ACCOUNT_LIMIT, ACCOUNT_LIMIT - RESERVED);

        let running_reserved = Arc::new(AtomicU32::new(0));
        let running_open = Arc::new(AtomicU32::new(0));
        let max_reserved = Arc::new(AtomicU32::new(0));
        let max_open = Arc::new(AtomicU32::new(0));
        let admitted = Arc::new(AtomicU32::new(0));
        let throttled = Arc::new(AtomicU32::new(0));

        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let limiter = limiter.clone();
            let (running, max) = if task % 3 == 0 {
                (running_reserved.clone(), max_reserved.clone())
            } else {
                (running_open.clone(), max_open.clone())
            };
            let (function, limits) = if task % 3 == 0 {
                (reserved_function, reserved_limits)
            } else {
                (open_functions[task % 2], open_limits)
            };
            let admitted = admitted.clone();
            let throttled = throttled.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    match limiter.try_acquire(&function, &limits).await {
                        Ok(lease) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            max.fetch_max(now, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            running.fetch_sub(1, Ordering::SeqCst);
                            drop(lease);
                        }
                        Err(_) => {
                            throttled.fetch_add(1, Ordering::Relaxed);
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("stress task finished");
        }

        let total = admitted.load(Ordering::Relaxed) + throttled.load(Ordering::Relaxed);
        assert_eq!(total as usize, TASKS * ROUNDS);
        assert!(admitted.load(Ordering::Relaxed) > 0, "some acquisitions succeeded");
        assert!(max_reserved.load(Ordering::SeqCst) <= RESERVED);
        assert!(max_open.load(Ordering::SeqCst) <= ACCOUNT_LIMIT - RESERVED);
        assert_eq!(limiter.in_use(account_id).await, 0);
        assert_eq!(limiter.in_use_function(reserved_function.function_id).await, 0);
        assert!(limiter.counts.lock().accounts.is_empty());
    }
}
