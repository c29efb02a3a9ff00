//! Control-plane persistence of Nimbus: accounts, API keys, functions, versions,
//! configurations and aliases, behind the [`ControlStore`] trait. The embedded
//! backend is SQLite ([`SqliteStore`]); its SQL is written so PostgreSQL runs it too.

mod cached;
mod error;
mod sqlite;

use async_trait::async_trait;
use nimbus_model::{FunctionRecord, FunctionState, VersionRecord};
use time::OffsetDateTime;
use uuid::Uuid;

pub use cached::{CachedStore, DEFAULT_CACHE_TTL, DEFAULT_MAX_CACHE_ENTRIES};
pub use error::StoreError;
pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Concurrency that Lambda keeps unreserved in every account, so functions without a
/// reservation can always run. An account whose limit is smaller keeps all of it
/// unreserved; see [`min_unreserved_concurrency`].
pub const MIN_UNRESERVED_CONCURRENCY: u32 = 100;
pub const DEFAULT_ACCOUNT_CONCURRENCY: u32 = 1000;
/// Smallest account concurrency limit.
pub const MIN_ACCOUNT_CONCURRENCY: u32 = 1;

/// Returns the part of an account limit that reservations must leave unreserved:
/// [`MIN_UNRESERVED_CONCURRENCY`], or the whole limit when it is smaller. Lambda
/// treats accounts with small limits the same way: they cannot reserve concurrency.
pub fn min_unreserved_concurrency(account_limit: u32) -> u32 {
    MIN_UNRESERVED_CONCURRENCY.min(account_limit)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub account_id: Uuid,
    pub name: String,
    /// The 12-digit number used in ARNs.
    pub account_number: String,
    pub concurrency_limit: u32,
    pub created_at: OffsetDateTime,
}

/// Totals over one account's functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountUsage {
    pub function_count: u64,
    /// Bytes of all code packages: $LATEST and every version.
    pub total_code_size: u64,
    pub reserved_concurrency: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AliasRecord {
    pub name: String,
    /// `$LATEST` or a version number.
    pub function_version: String,
    pub description: String,
    /// The version that gets a share of the traffic, with its weight from 0 to 1.
    pub additional_version: Option<(u32, f64)>,
}

/// The record of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationRecord {
    pub request_id: String,
    pub function_id: Uuid,
    pub version: String,
    pub account_id: Uuid,
    /// Source of the invocation: `HTTP` for the invoke API.
    pub trigger_type: String,
    /// `RequestResponse` or `Event`.
    pub invocation_type: String,
    pub start_time: OffsetDateTime,
    pub end_time: OffsetDateTime,
    pub duration_ms: f64,
    pub billed_duration_ms: u64,
    pub memory_used_mb: u64,
    /// Set on cold starts only.
    pub init_duration_ms: Option<f64>,
    /// Time to start the sandbox. Set on cold starts only.
    pub sandbox_ms: Option<f64>,
    /// Time to fetch the code. Set on cold starts only.
    pub code_ms: Option<f64>,
    /// Code cache tier that served the code: `L1`, `L2` or `L3`. Set on cold starts only.
    pub code_tier: Option<String>,
    /// Runtime start-up part of `init_duration_ms`. Set on cold starts whose runtime
    /// reported when it became ready.
    pub runtime_init_ms: Option<f64>,
    /// The function's own part of `init_duration_ms`. Set when `runtime_init_ms` is.
    pub user_init_ms: Option<f64>,
    /// `SUCCESS`, `ERROR`, `TIMEOUT` or `THROTTLED`.
    pub status: String,
    pub error_type: Option<String>,
    pub cold_start: bool,
    pub slot_id: Option<String>,
    pub trace_id: String,
}

/// One line of a function's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Increases with every stored line; the cursor of follow-mode reads.
    pub sequence: i64,
    pub function_id: Uuid,
    pub request_id: Option<String>,
    /// Unix epoch milliseconds.
    pub timestamp_ms: i64,
    pub message: String,
}

/// Filter of a log read. All bounds are optional.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub request_id: Option<String>,
    /// Unix epoch milliseconds, inclusive.
    pub start_ms: Option<i64>,
    /// Unix epoch milliseconds, exclusive.
    pub end_ms: Option<i64>,
    /// Only lines stored after this sequence number.
    pub after_sequence: Option<i64>,
    pub limit: u32,
}

/// An asynchronous invocation waiting in the durable queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncEvent {
    pub event_id: String,
    pub account_id: Uuid,
    pub function_id: Uuid,
    pub qualifier: Option<String>,
    pub payload: Vec<u8>,
    pub client_context: Option<String>,
    pub trace_id: String,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub created_ms: i64,
}

/// State of a provisioned concurrency configuration, named as in Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionedStatus {
    /// Slots are still being initialized.
    InProgress,
    /// `requested` slots are initialized.
    Ready,
    /// Initialization failed, with the error in `status_reason`.
    Failed,
}

impl ProvisionedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisionedStatus::InProgress => "IN_PROGRESS",
            ProvisionedStatus::Ready => "READY",
            ProvisionedStatus::Failed => "FAILED",
        }
    }

    pub fn parse(value: &str) -> Option<ProvisionedStatus> {
        match value {
            "IN_PROGRESS" => Some(ProvisionedStatus::InProgress),
            "READY" => Some(ProvisionedStatus::Ready),
            "FAILED" => Some(ProvisionedStatus::Failed),
            _ => None,
        }
    }
}

/// A provisioned concurrency configuration of one function qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedConcurrencyRecord {
    pub function_id: Uuid,
    /// A version number or an alias; never `$LATEST`.
    pub qualifier: String,
    /// The version number the qualifier resolved to at the last check.
    pub resolved_version: String,
    /// Slots to keep initialized, at least 1.
    pub requested: u32,
    pub status: ProvisionedStatus,
    pub status_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Persistence of the control plane. Implementations keep every method atomic.
/// A worker host as the server last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHostRecord {
    pub host_id: u32,
    pub availability_zone: String,
    /// `ACTIVE`, `DRAINING` or `MAINTENANCE`.
    pub desired_state: String,
    /// Unix milliseconds.
    pub last_heartbeat_ms: i64,
}

#[async_trait]
pub trait ControlStore: Send + Sync {
    async fn create_account(&self, name: &str, concurrency_limit: u32) -> Result<Account>;
    async fn get_account(&self, account_id: Uuid) -> Result<Option<Account>>;
    async fn get_account_by_name(&self, name: &str) -> Result<Option<Account>>;
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    async fn set_account_concurrency_limit(&self, account_id: Uuid, limit: u32) -> Result<()>;
    async fn account_usage(&self, account_id: Uuid) -> Result<AccountUsage>;

    /// Stores an API key by its sha256; adding a hash that exists is a no-op.
    async fn add_api_key(&self, account_id: Uuid, key_sha256: &str, key_prefix: &str) -> Result<()>;
    async fn account_for_key(&self, key_sha256: &str) -> Result<Option<Account>>;

    /// Inserts a function and its $LATEST configuration; a taken name is
    /// [`StoreError::AlreadyExists`].
    async fn insert_function(&self, function: &FunctionRecord) -> Result<()>;
    async fn get_function(&self, account_id: Uuid, name: &str) -> Result<Option<FunctionRecord>>;
    /// Lists functions ordered by name, starting after `after`.
    async fn list_functions(&self, account_id: Uuid, after: Option<&str>, limit: u32) -> Result<Vec<FunctionRecord>>;
    /// Writes $LATEST (state, settings, code) only if the stored state is still
    /// `expected_state`; otherwise returns [`StoreError::StateConflict`]. This is
    /// the compare-and-set that keeps concurrent updates from interleaving.
    async fn update_function(&self, function: &FunctionRecord, expected_state: FunctionState) -> Result<()>;
    /// Deletes a function with its versions, configurations and aliases.
    async fn delete_function(&self, function_id: Uuid) -> Result<()>;

    /// Publishes $LATEST as the next version number. When neither the code nor the
    /// configuration changed since the newest version, returns that version and
    /// `false`.
    async fn publish_version(&self, function_id: Uuid, description: Option<&str>) -> Result<(VersionRecord, bool)>;
    async fn get_version(&self, function_id: Uuid, number: u32) -> Result<Option<VersionRecord>>;
    async fn list_versions(&self, function_id: Uuid, after: Option<u32>, limit: u32) -> Result<Vec<VersionRecord>>;
    /// Deletes a version unless an alias routes to it ([`StoreError::VersionInUse`]).
    async fn delete_version(&self, function_id: Uuid, function_name: &str, number: u32) -> Result<()>;

    /// Creates or replaces an alias; returns true when it was created.
    async fn put_alias(&self, function_id: Uuid, alias: &AliasRecord) -> Result<bool>;
    async fn get_alias(&self, function_id: Uuid, name: &str) -> Result<Option<AliasRecord>>;
    async fn list_aliases(&self, function_id: Uuid) -> Result<Vec<AliasRecord>>;
    /// Returns false when there was no such alias.
    async fn delete_alias(&self, function_id: Uuid, name: &str) -> Result<bool>;

    /// Sets or clears a function's reserved concurrency. Setting it fails with
    /// [`StoreError::ReservedConcurrencyExceeded`] when the account's reservations
    /// would leave less than [`min_unreserved_concurrency`] of its limit unreserved.
    async fn set_reserved_concurrency(&self, account_id: Uuid, function_id: Uuid, value: Option<u32>) -> Result<()>;

    /// Stores invocation records and log lines in one transaction; `sequence` of
    /// the given log events is ignored and assigned by the store.
    async fn record_invocations(&self, records: &[InvocationRecord], logs: &[LogEvent]) -> Result<()>;
    /// Lists a function's invocations, newest first, starting before `before`.
    async fn list_invocations(
        &self,
        function_id: Uuid,
        before: Option<OffsetDateTime>,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>>;
    /// Reads a function's log lines in the order they were stored.
    async fn query_logs(&self, function_id: Uuid, query: &LogQuery) -> Result<Vec<LogEvent>>;
    /// Deletes log lines and invocation records older than `before_ms`; returns the
    /// number of log lines deleted.
    async fn prune_logs(&self, before_ms: i64) -> Result<u64>;

    /// Stores an asynchronous event durably.
    async fn enqueue_event(&self, event: &AsyncEvent) -> Result<()>;
    /// Claims up to `limit` due events for `lease_ms`; an event whose lease ran
    /// out (its dispatcher died) is due again.
    async fn claim_events(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<AsyncEvent>>;
    /// Schedules another attempt and releases the lease.
    async fn retry_event(&self, event_id: &str, attempts: u32, next_attempt_ms: i64) -> Result<()>;
    async fn delete_event(&self, event_id: &str) -> Result<()>;
    async fn count_events(&self) -> Result<u64>;
    /// Frees every claimed event. The embedded server calls it at start, because the
    /// only dispatcher that can hold a lease is its own previous run.
    async fn release_event_leases(&self) -> Result<u64>;
    async fn get_function_by_id(&self, function_id: Uuid) -> Result<Option<FunctionRecord>>;

    /// Creates or replaces the provisioned concurrency configuration of a qualifier.
    /// A replacement keeps the stored `created_at`.
    async fn put_provisioned_concurrency(&self, config: &ProvisionedConcurrencyRecord) -> Result<()>;
    async fn get_provisioned_concurrency(
        &self,
        function_id: Uuid,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConcurrencyRecord>>;
    /// Lists a function's configurations ordered by qualifier.
    async fn list_provisioned_concurrency(&self, function_id: Uuid) -> Result<Vec<ProvisionedConcurrencyRecord>>;
    /// Lists the configurations of every function, for the warm pool manager.
    async fn list_all_provisioned_concurrency(&self) -> Result<Vec<ProvisionedConcurrencyRecord>>;
    /// Returns false when there was no such configuration.
    async fn delete_provisioned_concurrency(&self, function_id: Uuid, qualifier: &str) -> Result<bool>;
    /// Records the resolved version and status of a configuration. Returns false
    /// when the configuration no longer exists, or when its `requested` is no longer
    /// `expected_requested` because a newer PUT replaced it.
    async fn update_provisioned_status(
        &self,
        function_id: Uuid,
        qualifier: &str,
        expected_requested: u32,
        resolved_version: &str,
        status: ProvisionedStatus,
        status_reason: Option<&str>,
    ) -> Result<bool>;

    /// Records a heartbeat of a worker host, creating its row as `ACTIVE` on the
    /// first one, and returns the host's desired state.
    async fn heartbeat_worker_host(&self, host_id: u32, availability_zone: &str, now_ms: i64) -> Result<String>;
    async fn list_worker_hosts(&self) -> Result<Vec<WorkerHostRecord>>;
    /// Sets a host's desired state. Returns false when no host has that id.
    async fn set_worker_host_state(&self, host_id: u32, desired_state: &str) -> Result<bool>;
}
