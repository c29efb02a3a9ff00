//! A read cache in front of a [`ControlStore`], for the lookups that every invocation
//! makes: the account of an API key, the function, and the version or alias that a
//! qualifier names. Without it each invocation waits on several database queries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nimbus_model::{FunctionRecord, FunctionState, VersionRecord};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    Account, AccountUsage, AliasRecord, AsyncEvent, ControlStore, InvocationRecord, LogEvent, LogQuery,
    ProvisionedConcurrencyRecord, ProvisionedStatus, Result, WorkerHostRecord,
};

/// How long a cached lookup result is used. A change that another process, such as
/// `nimbus admin`, writes to the same database reaches the server within this time.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);

/// Entries kept before the cache is cleared, so a client that looks up many names
/// that do not exist cannot grow it without bound. A cached function contains up to
/// 4 KB of environment variables, so the cache stays under about 50 MB (an estimate).
pub const DEFAULT_MAX_CACHE_ENTRIES: usize = 10_000;

/// A [`ControlStore`] that caches, for a TTL, the results of `account_for_key`,
/// `get_account`, `get_function`, `get_function_by_id`, `get_version` and
/// `get_alias`, including "not found". Every other method goes straight to the
/// inner store.
///
/// A write through this store that can change a cached result clears the whole
/// cache once the write returns, so the next read returns the new state. A change
/// written by another process shows once the entries read before it expire, within
/// the TTL.
pub struct CachedStore<S> {
    inner: S,
    ttl: Duration,
    max_entries: usize,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    /// Increases with every invalidation, so a read of the inner store that started
    /// before a write does not cache its outdated result afterwards.
    generation: u64,
    entries: HashMap<CacheKey, Entry>,
}

struct Entry {
    value: CachedValue,
    /// When the read of the inner store started, so the entry never outlives the TTL
    /// counted from the state it reflects.
    read_at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    AccountForKey(String),
    Account(Uuid),
    Function { account_id: Uuid, name: String },
    FunctionById(Uuid),
    Version { function_id: Uuid, number: u32 },
    Alias { function_id: Uuid, name: String },
}

#[derive(Clone)]
enum CachedValue {
    Account(Option<Account>),
    Function(Option<FunctionRecord>),
    Version(Option<VersionRecord>),
    Alias(Option<AliasRecord>),
}

/// A lookup result that the cache can hold: the conversions to and from
/// [`CachedValue`].
trait Cacheable: Sized {
    fn into_value(self) -> CachedValue;
    /// Returns the result, or `None` when `value` contains another type.
    fn from_value(value: CachedValue) -> Option<Self>;
}

impl Cacheable for Option<Account> {
    fn into_value(self) -> CachedValue {
        CachedValue::Account(self)
    }

    fn from_value(value: CachedValue) -> Option<Self> {
        match value {
            CachedValue::Account(account) => Some(account),
            _ => None,
        }
    }
}

impl Cacheable for Option<FunctionRecord> {
    fn into_value(self) -> CachedValue {
        CachedValue::Function(self)
    }

    fn from_value(value: CachedValue) -> Option<Self> {
        match value {
            CachedValue::Function(function) => Some(function),
            _ => None,
        }
    }
}

impl Cacheable for Option<VersionRecord> {
    fn into_value(self) -> CachedValue {
        CachedValue::Version(self)
    }

    fn from_value(value: CachedValue) -> Option<Self> {
        match value {
            CachedValue::Version(version) => Some(version),
            _ => None,
        }
    }
}

impl Cacheable for Option<AliasRecord> {
    fn into_value(self) -> CachedValue {
        CachedValue::Alias(self)
    }

    fn from_value(value: CachedValue) -> Option<Self> {
        match value {
            CachedValue::Alias(alias) => Some(alias),
            _ => None,
        }
    }
}

impl<S: ControlStore> CachedStore<S> {
    /// Wraps `inner`, keeping each result for `ttl` and at most
    /// [`DEFAULT_MAX_CACHE_ENTRIES`] entries.
    pub fn new(inner: S, ttl: Duration) -> CachedStore<S> {
        CachedStore {
            inner,
            ttl,
            max_entries: DEFAULT_MAX_CACHE_ENTRIES,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Sets how many entries the cache keeps before it is cleared; at least 1.
    pub fn with_max_entries(mut self, max_entries: usize) -> CachedStore<S> {
        self.max_entries = max_entries.max(1);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the cached result for `key` while it is within the TTL, or on a miss
    /// the cache generation to pass to [`CachedStore::insert`].
    fn lookup(&self, key: &CacheKey) -> std::result::Result<CachedValue, u64> {
        let cache = self.lock();
        match cache.entries.get(key) {
            Some(entry) if entry.read_at.elapsed() < self.ttl => Ok(entry.value.clone()),
            _ => Err(cache.generation),
        }
    }

    /// Caches a result unless the cache was invalidated since `generation` was read.
    fn insert(&self, key: CacheKey, value: CachedValue, read_at: Instant, generation: u64) {
        let mut cache = self.lock();
        if cache.generation != generation {
            return;
        }
        if cache.entries.len() >= self.max_entries && !cache.entries.contains_key(&key) {
            cache.entries.clear();
        }
        cache.entries.insert(key, Entry { value, read_at });
    }

    /// Forgets every cached result after a write.
    fn invalidate(&self) {
        let mut cache = self.lock();
        cache.generation += 1;
        cache.entries.clear();
    }

    /// Returns the cached result for `key`, or calls `load` and caches its result.
    /// Errors are not cached.
    async fn read_through<T, F, Fut>(&self, key: CacheKey, load: F) -> Result<T>
    where
        T: Cacheable + Clone,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let generation = match self.lookup(&key) {
            Ok(value) => match T::from_value(value) {
                Some(result) => return Ok(result),
                // Each kind of key contains one type, so this does not happen. It is
                // handled as a miss.
                None => self.lock().generation,
            },
            Err(generation) => generation,
        };
        let read_at = Instant::now();
        let result = load().await?;
        self.insert(key, result.clone().into_value(), read_at, generation);
        Ok(result)
    }

    /// Awaits a write of the inner store, then invalidates the cache whatever its
    /// outcome, because a failed write, such as a lost compare-and-set, can mean
    /// that a cached result is outdated.
    async fn write<T>(&self, write: impl Future<Output = Result<T>>) -> Result<T> {
        let outcome = write.await;
        self.invalidate();
        outcome
    }
}

#[async_trait]
impl<S: ControlStore> ControlStore for CachedStore<S> {
    async fn create_account(&self, name: &str, concurrency_limit: u32) -> Result<Account> {
        self.write(self.inner.create_account(name, concurrency_limit)).await
    }

    async fn get_account(&self, account_id: Uuid) -> Result<Option<Account>> {
        self.read_through(CacheKey::Account(account_id), || self.inner.get_account(account_id))
            .await
    }

    async fn get_account_by_name(&self, name: &str) -> Result<Option<Account>> {
        self.inner.get_account_by_name(name).await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.inner.list_accounts().await
    }

    async fn set_account_concurrency_limit(&self, account_id: Uuid, limit: u32) -> Result<()> {
        self.write(self.inner.set_account_concurrency_limit(account_id, limit))
            .await
    }

    async fn account_usage(&self, account_id: Uuid) -> Result<AccountUsage> {
        self.inner.account_usage(account_id).await
    }

    async fn add_api_key(&self, account_id: Uuid, key_sha256: &str, key_prefix: &str) -> Result<()> {
        self.write(self.inner.add_api_key(account_id, key_sha256, key_prefix))
            .await
    }

    async fn account_for_key(&self, key_sha256: &str) -> Result<Option<Account>> {
        self.read_through(CacheKey::AccountForKey(key_sha256.to_string()), || {
            self.inner.account_for_key(key_sha256)
        })
        .await
    }

    async fn insert_function(&self, function: &FunctionRecord) -> Result<()> {
        self.write(self.inner.insert_function(function)).await
    }

    async fn get_function(&self, account_id: Uuid, name: &str) -> Result<Option<FunctionRecord>> {
        let key = CacheKey::Function {
            account_id,
            name: name.to_string(),
        };
        self.read_through(key, || self.inner.get_function(account_id, name))
            .await
    }

    async fn get_function_by_id(&self, function_id: Uuid) -> Result<Option<FunctionRecord>> {
        self.read_through(CacheKey::FunctionById(function_id), || {
            self.inner.get_function_by_id(function_id)
        })
        .await
    }

    async fn list_functions(&self, account_id: Uuid, after: Option<&str>, limit: u32) -> Result<Vec<FunctionRecord>> {
        self.inner.list_functions(account_id, after, limit).await
    }

    async fn update_function(&self, function: &FunctionRecord, expected_state: FunctionState) -> Result<()> {
        self.write(self.inner.update_function(function, expected_state)).await
    }

    async fn delete_function(&self, function_id: Uuid) -> Result<()> {
        self.write(self.inner.delete_function(function_id)).await
    }

    async fn publish_version(&self, function_id: Uuid, description: Option<&str>) -> Result<(VersionRecord, bool)> {
        self.write(self.inner.publish_version(function_id, description)).await
    }

    async fn get_version(&self, function_id: Uuid, number: u32) -> Result<Option<VersionRecord>> {
        self.read_through(CacheKey::Version { function_id, number }, || {
            self.inner.get_version(function_id, number)
        })
        .await
    }

    async fn list_versions(&self, function_id: Uuid, after: Option<u32>, limit: u32) -> Result<Vec<VersionRecord>> {
        self.inner.list_versions(function_id, after, limit).await
    }

    async fn delete_version(&self, function_id: Uuid, function_name: &str, number: u32) -> Result<()> {
        self.write(self.inner.delete_version(function_id, function_name, number))
            .await
    }

    async fn put_alias(&self, function_id: Uuid, alias: &AliasRecord) -> Result<bool> {
        self.write(self.inner.put_alias(function_id, alias)).await
    }

    async fn get_alias(&self, function_id: Uuid, name: &str) -> Result<Option<AliasRecord>> {
        let key = CacheKey::Alias {
            function_id,
            name: name.to_string(),
        };
        self.read_through(key, || self.inner.get_alias(function_id, name)).await
    }

    async fn list_aliases(&self, function_id: Uuid) -> Result<Vec<AliasRecord>> {
        self.inner.list_aliases(function_id).await
    }

    async fn delete_alias(&self, function_id: Uuid, name: &str) -> Result<bool> {
        self.write(self.inner.delete_alias(function_id, name)).await
    }

    async fn set_reserved_concurrency(&self, account_id: Uuid, function_id: Uuid, value: Option<u32>) -> Result<()> {
        self.write(self.inner.set_reserved_concurrency(account_id, function_id, value))
            .await
    }

    // The methods below change nothing that is cached, so they leave the cache alone.
    // Invocation records in particular are written after every invocation.

    async fn record_invocations(&self, records: &[InvocationRecord], logs: &[LogEvent]) -> Result<()> {
        self.inner.record_invocations(records, logs).await
    }

    async fn list_invocations(
        &self,
        function_id: Uuid,
        before: Option<OffsetDateTime>,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>> {
        self.inner.list_invocations(function_id, before, limit).await
    }

    async fn query_logs(&self, function_id: Uuid, query: &LogQuery) -> Result<Vec<LogEvent>> {
        self.inner.query_logs(function_id, query).await
    }

    async fn prune_logs(&self, before_ms: i64) -> Result<u64> {
        self.inner.prune_logs(before_ms).await
    }

    async fn enqueue_event(&self, event: &AsyncEvent) -> Result<()> {
        self.inner.enqueue_event(event).await
    }

    async fn claim_events(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<AsyncEvent>> {
        self.inner.claim_events(now_ms, lease_ms, limit).await
    }

    async fn retry_event(&self, event_id: &str, attempts: u32, next_attempt_ms: i64) -> Result<()> {
        self.inner.retry_event(event_id, attempts, next_attempt_ms).await
    }

    async fn delete_event(&self, event_id: &str) -> Result<()> {
        self.inner.delete_event(event_id).await
    }

    async fn count_events(&self) -> Result<u64> {
        self.inner.count_events().await
    }

    async fn release_event_leases(&self) -> Result<u64> {
        self.inner.release_event_leases().await
    }

    async fn put_provisioned_concurrency(&self, config: &ProvisionedConcurrencyRecord) -> Result<()> {
        self.inner.put_provisioned_concurrency(config).await
    }

    async fn get_provisioned_concurrency(
        &self,
        function_id: Uuid,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConcurrencyRecord>> {
        self.inner.get_provisioned_concurrency(function_id, qualifier).await
    }

    async fn list_provisioned_concurrency(&self, function_id: Uuid) -> Result<Vec<ProvisionedConcurrencyRecord>> {
        self.inner.list_provisioned_concurrency(function_id).await
    }

    async fn list_all_provisioned_concurrency(&self) -> Result<Vec<ProvisionedConcurrencyRecord>> {
        self.inner.list_all_provisioned_concurrency().await
    }

    async fn delete_provisioned_concurrency(&self, function_id: Uuid, qualifier: &str) -> Result<bool> {
        self.inner.delete_provisioned_concurrency(function_id, qualifier).await
    }

    async fn update_provisioned_status(
        &self,
        function_id: Uuid,
        qualifier: &str,
        expected_requested: u32,
        resolved_version: &str,
        status: ProvisionedStatus,
        status_reason: Option<&str>,
    ) -> Result<bool> {
        self.inner
            .update_provisioned_status(
                function_id,
                qualifier,
                expected_requested,
                resolved_version,
                status,
                status_reason,
            )
            .await
    }

    async fn heartbeat_worker_host(&self, host_id: u32, availability_zone: &str, now_ms: i64) -> Result<String> {
        self.inner
            .heartbeat_worker_host(host_id, availability_zone, now_ms)
            .await
    }

    async fn list_worker_hosts(&self) -> Result<Vec<WorkerHostRecord>> {
        self.inner.list_worker_hosts().await
    }

    async fn set_worker_host_state(&self, host_id: u32, desired_state: &str) -> Result<bool> {
        self.inner.set_worker_host_state(host_id, desired_state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    #[tokio::test]
    async fn read_started_before_write_not_cached() {
        let dir = tempfile::tempdir().expect("create temporary directory");
        let inner = SqliteStore::open(&dir.path().join("nimbus.db")).await.unwrap();
        let cached = CachedStore::new(inner, Duration::from_secs(600));
        let key = CacheKey::Account(Uuid::new_v4());

        // A read misses, a write invalidates the cache while the read waits on the
        // store, and then the read's result arrives.
        let generation = cached.lookup(&key).err().expect("empty cache misses");
        cached.invalidate();
        cached.insert(key.clone(), CachedValue::Account(None), Instant::now(), generation);

        assert!(cached.lookup(&key).is_err(), "the outdated result is not cached");
    }
}
