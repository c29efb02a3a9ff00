//! Tests of `CachedStore` over a real `SqliteStore`. A second `SqliteStore` opened on
//! the same file simulates another process, such as `nimbus admin`, that writes to
//! the database without going through the cache.

use std::collections::BTreeMap;
use std::time::Duration;

use nimbus_model::{CodeInfo, FunctionRecord, FunctionSettings, FunctionState, TracingMode};
use nimbus_store::{Account, AliasRecord, CachedStore, ControlStore, SqliteStore};
use tempfile::TempDir;
use time::OffsetDateTime;
use uuid::Uuid;

/// Long enough that no entry expires during a test, so a change that a test reads
/// through the cache came from an invalidation, not an expiry.
const LONG_TTL: Duration = Duration::from_secs(600);
const SHORT_TTL: Duration = Duration::from_millis(50);

const KEY_HASH: &str = "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5";

/// A cached store and a second, uncached store on the same database file. The
/// directory is returned so it lives as long as the test.
struct Stores {
    _dir: TempDir,
    cached: CachedStore<SqliteStore>,
    other_process: SqliteStore,
}

async fn open_stores(ttl: Duration) -> Stores {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let path = dir.path().join("nimbus.db");
    let inner = SqliteStore::open(&path).await.expect("open store");
    let other_process = SqliteStore::open(&path).await.expect("open second store");
    Stores {
        _dir: dir,
        cached: CachedStore::new(inner, ttl),
        other_process,
    }
}

/// Creates an account with a limit of 1000 and an API key whose hash is [`KEY_HASH`].
async fn create_account(store: &dyn ControlStore) -> Account {
    let account = store.create_account("acme", 1000).await.expect("create account");
    store
        .add_api_key(account.account_id, KEY_HASH, "nmb_test")
        .await
        .expect("add API key");
    account
}

fn function(account_id: Uuid, name: &str) -> FunctionRecord {
    let now = OffsetDateTime::now_utc();
    FunctionRecord {
        function_id: Uuid::new_v4(),
        account_id,
        name: name.to_string(),
        state: FunctionState::Active,
        state_reason: None,
        settings: FunctionSettings {
            runtime: "python3.11".to_string(),
            handler: "app.handler".to_string(),
            role: None,
            description: String::new(),
            memory_size: 128,
            timeout: 3,
            ephemeral_storage: 512,
            environment: BTreeMap::new(),
            vpc_config: None,
            dead_letter_queue: None,
            tracing_mode: TracingMode::PassThrough,
            layers: Vec::new(),
        },
        code: CodeInfo {
            sha256: "aaaa".to_string(),
            size: 1000,
            location: "code/aaaa.zip".to_string(),
        },
        reserved_concurrency: None,
        created_at: now,
        last_modified: now,
    }
}

async fn insert(store: &dyn ControlStore, account_id: Uuid, name: &str) -> FunctionRecord {
    let record = function(account_id, name);
    store.insert_function(&record).await.expect("insert function");
    record
}

async fn memory_size(store: &dyn ControlStore, account_id: Uuid, name: &str) -> u32 {
    store
        .get_function(account_id, name)
        .await
        .expect("get function")
        .expect("function exists")
        .settings
        .memory_size
}

async fn key_limit(store: &dyn ControlStore) -> u32 {
    store
        .account_for_key(KEY_HASH)
        .await
        .expect("look up key")
        .expect("key exists")
        .concurrency_limit
}

fn alias(name: &str, function_version: &str) -> AliasRecord {
    AliasRecord {
        name: name.to_string(),
        function_version: function_version.to_string(),
        description: String::new(),
        additional_version: None,
    }
}

#[tokio::test]
async fn cached_reads_return_stored_values() {
    let stores = open_stores(LONG_TTL).await;
    let cached = &stores.cached;
    let account = create_account(cached).await;
    let record = insert(cached, account.account_id, "hello").await;
    let (version, _) = cached.publish_version(record.function_id, None).await.unwrap();
    cached.put_alias(record.function_id, &alias("live", "1")).await.unwrap();

    // Twice each: the first read fills the cache and the second is served from it.
    for _ in 0..2 {
        let by_key = cached.account_for_key(KEY_HASH).await.unwrap();
        assert_eq!(by_key.as_ref(), Some(&account));
        let by_id = cached.get_account(account.account_id).await.unwrap();
        assert_eq!(by_id.as_ref(), Some(&account));

        let by_name = cached.get_function(account.account_id, "hello").await.unwrap().unwrap();
        assert_eq!(by_name.function_id, record.function_id);
        assert_eq!(by_name.settings, record.settings);
        let by_function_id = cached.get_function_by_id(record.function_id).await.unwrap().unwrap();
        assert_eq!(by_function_id.name, "hello");

        let got_version = cached.get_version(record.function_id, 1).await.unwrap().unwrap();
        assert_eq!(got_version.version_id, version.version_id);
        let got_alias = cached.get_alias(record.function_id, "live").await.unwrap();
        assert_eq!(got_alias, Some(alias("live", "1")));
    }
}

/// Sets the account's limit to 500 and the function's memory to 256 MB through the
/// other store, as another process on the same database would.
async fn change_in_other_process(stores: &Stores, account: &Account, record: &mut FunctionRecord) {
    stores
        .other_process
        .set_account_concurrency_limit(account.account_id, 500)
        .await
        .unwrap();
    record.settings.memory_size = 256;
    stores
        .other_process
        .update_function(record, FunctionState::Active)
        .await
        .unwrap();
}

#[tokio::test]
async fn cached_reads_ignore_other_process_within_ttl() {
    let stores = open_stores(LONG_TTL).await;
    let cached = &stores.cached;
    let account = create_account(cached).await;
    let mut record = insert(cached, account.account_id, "hello").await;
    assert_eq!(key_limit(cached).await, 1000);
    assert_eq!(memory_size(cached, account.account_id, "hello").await, 128);

    change_in_other_process(&stores, &account, &mut record).await;

    assert_eq!(key_limit(cached).await, 1000, "the cached account is used");
    assert_eq!(
        memory_size(cached, account.account_id, "hello").await,
        128,
        "the cached function is used"
    );
}

#[tokio::test]
async fn other_process_change_seen_after_ttl() {
    let stores = open_stores(SHORT_TTL).await;
    let cached = &stores.cached;
    let account = create_account(cached).await;
    let mut record = insert(cached, account.account_id, "hello").await;
    assert_eq!(key_limit(cached).await, 1000);
    assert_eq!(memory_size(cached, account.account_id, "hello").await, 128);

    change_in_other_process(&stores, &account, &mut record).await;
    tokio::time::sleep(SHORT_TTL + Duration::from_millis(10)).await;

    assert_eq!(key_limit(cached).await, 500);
    assert_eq!(memory_size(cached, account.account_id, "hello").await, 256);
}

#[tokio::test]
async fn write_through_cache_seen_at_once() {
    let stores = open_stores(LONG_TTL).await;
    let cached = &stores.cached;
    let account = create_account(cached).await;
    let mut record = insert(cached, account.account_id, "hello").await;
    assert_eq!(memory_size(cached, account.account_id, "hello").await, 128);
    assert_eq!(key_limit(cached).await, 1000);

    record.settings.memory_size = 256;
    cached.update_function(&record, FunctionState::Active).await.unwrap();
    assert_eq!(memory_size(cached, account.account_id, "hello").await, 256);

    cached
        .set_reserved_concurrency(account.account_id, record.function_id, Some(5))
        .await
        .unwrap();
    let reserved = cached
        .get_function_by_id(record.function_id)
        .await
        .unwrap()
        .unwrap()
        .reserved_concurrency;
    assert_eq!(reserved, Some(5));

    cached
        .set_account_concurrency_limit(account.account_id, 500)
        .await
        .unwrap();
    assert_eq!(key_limit(cached).await, 500);
    let limit = cached
        .get_account(account.account_id)
        .await
        .unwrap()
        .unwrap()
        .concurrency_limit;
    assert_eq!(limit, 500);

    cached.delete_function(record.function_id).await.unwrap();
    let deleted = cached.get_function(account.account_id, "hello").await.unwrap();
    assert!(deleted.is_none(), "a deleted function is not served from the cache");
}

#[tokio::test]
async fn version_and_alias_writes_seen_at_once() {
    let stores = open_stores(LONG_TTL).await;
    let cached = &stores.cached;
    let account = create_account(cached).await;
    let mut record = insert(cached, account.account_id, "hello").await;
    assert!(cached.get_version(record.function_id, 1).await.unwrap().is_none());
    assert!(cached.get_alias(record.function_id, "live").await.unwrap().is_none());

    cached.publish_version(record.function_id, None).await.unwrap();
    assert!(cached.get_version(record.function_id, 1).await.unwrap().is_some());

    cached.put_alias(record.function_id, &alias("live", "1")).await.unwrap();
    let created = cached.get_alias(record.function_id, "live").await.unwrap();
    assert_eq!(created, Some(alias("live", "1")));

    record.code.sha256 = "bbbb".to_string();
    cached.update_function(&record, FunctionState::Active).await.unwrap();
    cached.publish_version(record.function_id, None).await.unwrap();
    cached.put_alias(record.function_id, &alias("live", "2")).await.unwrap();
    let moved = cached.get_alias(record.function_id, "live").await.unwrap();
    assert_eq!(moved, Some(alias("live", "2")));

    cached.delete_version(record.function_id, "hello", 1).await.unwrap();
    assert!(cached.get_version(record.function_id, 1).await.unwrap().is_none());

    assert!(cached.delete_alias(record.function_id, "live").await.unwrap());
    assert!(cached.get_alias(record.function_id, "live").await.unwrap().is_none());
}

#[tokio::test]
async fn not_found_is_cached() {
    let stores = open_stores(LONG_TTL).await;
    let cached = &stores.cached;
    let account = create_account(cached).await;
    assert!(cached
        .get_function(account.account_id, "later")
        .await
        .unwrap()
        .is_none());
    assert!(cached.account_for_key("0".repeat(64).as_str()).await.unwrap().is_none());

    insert(&stores.other_process, account.account_id, "later").await;
    stores
        .other_process
        .add_api_key(account.account_id, &"0".repeat(64), "nmb_0000")
        .await
        .unwrap();

    let function = cached.get_function(account.account_id, "later").await.unwrap();
    assert!(function.is_none(), "the cached not-found is used");
    let key = cached.account_for_key(&"0".repeat(64)).await.unwrap();
    assert!(key.is_none(), "the cached not-found is used");
}

#[tokio::test]
async fn insert_invalidates_not_found() {
    let stores = open_stores(LONG_TTL).await;
    let cached = &stores.cached;
    let account = create_account(cached).await;
    assert!(cached
        .get_function(account.account_id, "later")
        .await
        .unwrap()
        .is_none());
    assert!(cached.account_for_key(&"0".repeat(64)).await.unwrap().is_none());

    let record = insert(cached, account.account_id, "later").await;
    let found = cached.get_function(account.account_id, "later").await.unwrap();
    assert_eq!(found.map(|f| f.function_id), Some(record.function_id));

    cached
        .add_api_key(account.account_id, &"0".repeat(64), "nmb_0000")
        .await
        .unwrap();
    let key = cached.account_for_key(&"0".repeat(64)).await.unwrap();
    assert_eq!(key.map(|a| a.account_id), Some(account.account_id));
}

#[tokio::test]
async fn failed_write_still_invalidates() {
    let stores = open_stores(LONG_TTL).await;
    let cached = &stores.cached;
    let account = create_account(cached).await;
    let mut record = insert(cached, account.account_id, "hello").await;
    assert_eq!(memory_size(cached, account.account_id, "hello").await, 128);

    // Another process moves the function to Updating, so the compare-and-set below
    // fails, and the cached Active copy is outdated.
    let mut updating = record.clone();
    updating.state = FunctionState::Updating;
    updating.settings.memory_size = 512;
    stores
        .other_process
        .update_function(&updating, FunctionState::Active)
        .await
        .unwrap();
    record.settings.memory_size = 256;
    let conflict = cached.update_function(&record, FunctionState::Active).await;
    assert!(conflict.is_err(), "the compare-and-set fails: {conflict:?}");

    let current = cached.get_function(account.account_id, "hello").await.unwrap().unwrap();
    assert_eq!(current.state, FunctionState::Updating);
    assert_eq!(current.settings.memory_size, 512);
}

/// Returns the memory size a cache of `max_entries` reports for function "first"
/// after that function changed out of band and two absent functions were looked up.
/// It is 128 while the entry is still cached and 256 once the cache was cleared.
async fn memory_size_after_two_more_entries(max_entries: usize) -> u32 {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let path = dir.path().join("nimbus.db");
    let cached = CachedStore::new(SqliteStore::open(&path).await.unwrap(), LONG_TTL).with_max_entries(max_entries);
    let other_process = SqliteStore::open(&path).await.unwrap();
    let account = create_account(&cached).await;
    let mut record = insert(&cached, account.account_id, "first").await;
    assert_eq!(memory_size(&cached, account.account_id, "first").await, 128);

    record.settings.memory_size = 256;
    other_process
        .update_function(&record, FunctionState::Active)
        .await
        .unwrap();
    for name in ["absent-1", "absent-2"] {
        assert!(cached.get_function(account.account_id, name).await.unwrap().is_none());
    }
    memory_size(&cached, account.account_id, "first").await
}

#[tokio::test]
async fn full_cache_is_cleared() {
    // The second entry fills a cache of two and the third clears it.
    assert_eq!(memory_size_after_two_more_entries(2).await, 256);
}

#[tokio::test]
async fn full_cache_keeps_entries_below_bound() {
    // Three entries in all, which a bound of three allows.
    assert_eq!(
        memory_size_after_two_more_entries(3).await,
        128,
        "the entry is still cached"
    );
}
