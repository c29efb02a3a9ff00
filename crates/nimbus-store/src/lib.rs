//! Control-plane persistence of Nimbus: accounts, API keys, functions, versions,
//! configurations and aliases, behind the [`ControlStore`] trait. The embedded
//! backend is SQLite ([`SqliteStore`]); its SQL is written so PostgreSQL runs it too.

mod error;
mod sqlite;

use async_trait::async_trait;
use nimbus_model::{FunctionRecord, FunctionState, VersionRecord};
use time::OffsetDateTime;
use uuid::Uuid;

pub use error::StoreError;
pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Concurrency that Lambda keeps unreserved in every account, so functions without a
/// reservation can always run.
pub const MIN_UNRESERVED_CONCURRENCY: u32 = 100;
pub const DEFAULT_ACCOUNT_CONCURRENCY: u32 = 1000;

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

/// Persistence of the control plane. Implementations keep every method atomic.
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
    /// would leave less than [`MIN_UNRESERVED_CONCURRENCY`] unreserved.
    async fn set_reserved_concurrency(&self, account_id: Uuid, function_id: Uuid, value: Option<u32>) -> Result<()>;
}
