//! Integration tests of `SqliteStore` through the `ControlStore` trait, each on a
//! fresh `nimbus.db` in its own temporary directory.

use std::collections::BTreeMap;
use std::sync::Arc;

use nimbus_model::{CodeInfo, FunctionRecord, FunctionSettings, FunctionState, TracingMode, VpcConfig};
use nimbus_store::{Account, AliasRecord, ControlStore, SqliteStore, StoreError};
use tempfile::TempDir;
use time::OffsetDateTime;
use uuid::Uuid;

const ROLE: &str = "arn:aws:iam::123456789012:role/lambda-role";
const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:failed-events";
const LAYER: &str = "arn:aws:lambda:us-east-1:123456789012:layer:deps:3";

/// Opens a store on `nimbus.db` in a new temporary directory. The directory is
/// returned so it lives as long as the test.
async fn open_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let store = SqliteStore::open(&dir.path().join("nimbus.db"))
        .await
        .expect("open store");
    (dir, store)
}

async fn create_account(store: &SqliteStore, name: &str) -> Account {
    store.create_account(name, 1000).await.expect("create account")
}

fn settings() -> FunctionSettings {
    FunctionSettings {
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
    }
}

/// Settings where every optional field is set and no field has its default.
fn full_settings() -> FunctionSettings {
    FunctionSettings {
        runtime: "nodejs20.x".to_string(),
        handler: "index.main".to_string(),
        role: Some(ROLE.to_string()),
        description: "resizes uploaded images".to_string(),
        memory_size: 1024,
        timeout: 30,
        ephemeral_storage: 2048,
        environment: BTreeMap::from([
            ("DB_HOST".to_string(), "db.internal".to_string()),
            ("LOG_LEVEL".to_string(), "debug".to_string()),
        ]),
        vpc_config: Some(VpcConfig {
            subnet_ids: vec!["subnet-abc123".to_string(), "subnet-def456".to_string()],
            security_group_ids: vec!["sg-xyz789".to_string()],
        }),
        dead_letter_queue: Some(QUEUE.to_string()),
        tracing_mode: TracingMode::Active,
        layers: vec![LAYER.to_string()],
    }
}

fn code(sha256: &str, size: u64) -> CodeInfo {
    CodeInfo {
        sha256: sha256.to_string(),
        size,
        location: format!("code/{sha256}.zip"),
    }
}

/// An Active function with default settings and a 1000-byte code package.
fn function(account_id: Uuid, name: &str) -> FunctionRecord {
    let now = OffsetDateTime::now_utc();
    FunctionRecord {
        function_id: Uuid::new_v4(),
        account_id,
        name: name.to_string(),
        state: FunctionState::Active,
        state_reason: None,
        settings: settings(),
        code: code("aaaa", 1000),
        reserved_concurrency: None,
        created_at: now,
        last_modified: now,
    }
}

/// Inserts an Active function with default settings and returns it.
async fn insert(store: &SqliteStore, account_id: Uuid, name: &str) -> FunctionRecord {
    let record = function(account_id, name);
    store.insert_function(&record).await.expect("insert function");
    record
}

/// Writes `record` as $LATEST, expecting the stored state to be Active.
async fn update_active(store: &SqliteStore, record: &FunctionRecord) {
    store
        .update_function(record, FunctionState::Active)
        .await
        .expect("update Active function");
}

fn alias(name: &str, function_version: &str, additional_version: Option<(u32, f64)>) -> AliasRecord {
    AliasRecord {
        name: name.to_string(),
        function_version: function_version.to_string(),
        description: format!("alias {name}"),
        additional_version,
    }
}

fn names(functions: &[FunctionRecord]) -> Vec<&str> {
    functions.iter().map(|f| f.name.as_str()).collect()
}

// Accounts

#[tokio::test]
async fn account_create_then_get_by_id_and_name() {
    let (_dir, store) = open_store().await;
    let created = store.create_account("acme", 750).await.unwrap();
    assert_eq!(created.name, "acme");
    assert_eq!(created.concurrency_limit, 750);

    let by_id = store.get_account(created.account_id).await.unwrap();
    assert_eq!(by_id, Some(created.clone()));

    let by_name = store.get_account_by_name("acme").await.unwrap();
    assert_eq!(by_name, Some(created));
}

#[tokio::test]
async fn account_get_unknown_returns_none() {
    let (_dir, store) = open_store().await;
    assert_eq!(store.get_account(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(store.get_account_by_name("missing").await.unwrap(), None);
}

#[tokio::test]
async fn account_duplicate_name_already_exists() {
    let (_dir, store) = open_store().await;
    create_account(&store, "acme").await;

    let error = store.create_account("acme", 500).await.unwrap_err();
    match error {
        StoreError::AlreadyExists { resource, name } => {
            assert_eq!(resource, "account");
            assert_eq!(name, "acme");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.list_accounts().await.unwrap().len(), 1);
}

#[tokio::test]
async fn account_number_has_twelve_digits() {
    let (_dir, store) = open_store().await;
    for i in 0..20 {
        let account = create_account(&store, &format!("account-{i}")).await;
        let number = &account.account_number;
        assert_eq!(number.len(), 12, "account number {number}");
        assert!(number.chars().all(|c| c.is_ascii_digit()), "account number {number}");
    }
}

#[tokio::test]
async fn account_concurrency_limit_update() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;

    store
        .set_account_concurrency_limit(account.account_id, 3000)
        .await
        .unwrap();

    let stored = store.get_account(account.account_id).await.unwrap().unwrap();
    assert_eq!(stored.concurrency_limit, 3000);
}

#[tokio::test]
async fn account_concurrency_limit_unknown_not_found() {
    let (_dir, store) = open_store().await;
    let error = store
        .set_account_concurrency_limit(Uuid::new_v4(), 10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NotFound {
                resource: "account",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn list_accounts_returns_all_by_name() {
    let (_dir, store) = open_store().await;
    assert!(store.list_accounts().await.unwrap().is_empty());
    for name in ["zeta", "alpha", "mid"] {
        create_account(&store, name).await;
    }

    let accounts = store.list_accounts().await.unwrap();
    let listed: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(listed, ["alpha", "mid", "zeta"]);
}

// API keys

#[tokio::test]
async fn api_key_maps_to_account() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let hash = "a".repeat(64);

    store.add_api_key(account.account_id, &hash, "nmb_abcd").await.unwrap();

    let found = store.account_for_key(&hash).await.unwrap();
    assert_eq!(found, Some(account));
}

#[tokio::test]
async fn api_key_added_twice_is_noop() {
    let (_dir, store) = open_store().await;
    let first = create_account(&store, "first").await;
    let second = create_account(&store, "second").await;
    let hash = "b".repeat(64);

    store.add_api_key(first.account_id, &hash, "nmb_1111").await.unwrap();
    store.add_api_key(first.account_id, &hash, "nmb_1111").await.unwrap();
    // The same hash for another account is also ignored, so the key stays with the first.
    store.add_api_key(second.account_id, &hash, "nmb_2222").await.unwrap();

    let found = store.account_for_key(&hash).await.unwrap().unwrap();
    assert_eq!(found.account_id, first.account_id);
}

#[tokio::test]
async fn api_key_unknown_hash_returns_none() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    store
        .add_api_key(account.account_id, &"c".repeat(64), "nmb_cccc")
        .await
        .unwrap();

    assert_eq!(store.account_for_key(&"d".repeat(64)).await.unwrap(), None);
}

// Functions

#[tokio::test]
async fn function_round_trips_every_field() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = function(account.account_id, "resize-images");
    record.state = FunctionState::Pending;
    record.state_reason = Some("storing the code package".to_string());
    record.settings = full_settings();
    record.code = code(&"e".repeat(64), 52_428_800);
    record.reserved_concurrency = Some(25);
    store.insert_function(&record).await.unwrap();

    let stored = store
        .get_function(account.account_id, "resize-images")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.function_id, record.function_id);
    assert_eq!(stored.account_id, account.account_id);
    assert_eq!(stored.name, "resize-images");
    assert_eq!(stored.state, FunctionState::Pending);
    assert_eq!(stored.state_reason.as_deref(), Some("storing the code package"));
    assert_eq!(stored.reserved_concurrency, Some(25));
    assert_eq!(stored.created_at, record.created_at);
    assert_eq!(stored.last_modified, record.last_modified);
    assert_eq!(stored.code, record.code);

    // Each settings field on its own, so a failure names the field.
    let expected = full_settings();
    assert_eq!(stored.settings.runtime, expected.runtime);
    assert_eq!(stored.settings.handler, expected.handler);
    assert_eq!(stored.settings.role, expected.role);
    assert_eq!(stored.settings.description, expected.description);
    assert_eq!(stored.settings.memory_size, expected.memory_size);
    assert_eq!(stored.settings.timeout, expected.timeout);
    assert_eq!(stored.settings.ephemeral_storage, expected.ephemeral_storage);
    assert_eq!(stored.settings.environment, expected.environment);
    assert_eq!(stored.settings.vpc_config, expected.vpc_config);
    assert_eq!(stored.settings.dead_letter_queue, expected.dead_letter_queue);
    assert_eq!(stored.settings.tracing_mode, expected.tracing_mode);
    assert_eq!(stored.settings.layers, expected.layers);
    assert_eq!(stored.settings, expected);
}

#[tokio::test]
async fn function_defaults_round_trip() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let record = insert(&store, account.account_id, "plain").await;

    let stored = store.get_function(account.account_id, "plain").await.unwrap().unwrap();
    assert_eq!(stored.settings, record.settings);
    assert_eq!(stored.settings.role, None);
    assert_eq!(stored.settings.vpc_config, None);
    assert_eq!(stored.settings.dead_letter_queue, None);
    assert_eq!(stored.reserved_concurrency, None);
    assert_eq!(stored.state_reason, None);
}

#[tokio::test]
async fn function_duplicate_name_already_exists() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let original = insert(&store, account.account_id, "hello").await;

    let mut duplicate = function(account.account_id, "hello");
    duplicate.settings.memory_size = 2048;
    let error = store.insert_function(&duplicate).await.unwrap_err();
    match error {
        StoreError::AlreadyExists { resource, name } => {
            assert_eq!(resource, "function");
            assert_eq!(name, "hello");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    let stored = store.get_function(account.account_id, "hello").await.unwrap().unwrap();
    assert_eq!(stored.function_id, original.function_id);
    assert_eq!(stored.settings.memory_size, 128);
}

#[tokio::test]
async fn function_same_name_in_other_account() {
    let (_dir, store) = open_store().await;
    let first = create_account(&store, "first").await;
    let second = create_account(&store, "second").await;
    let in_first = insert(&store, first.account_id, "hello").await;
    let in_second = insert(&store, second.account_id, "hello").await;

    let stored_first = store.get_function(first.account_id, "hello").await.unwrap().unwrap();
    let stored_second = store.get_function(second.account_id, "hello").await.unwrap().unwrap();
    assert_eq!(stored_first.function_id, in_first.function_id);
    assert_eq!(stored_second.function_id, in_second.function_id);
}

#[tokio::test]
async fn function_names_case_sensitive() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let upper = insert(&store, account.account_id, "Hello").await;
    let lower = insert(&store, account.account_id, "hello").await;

    let stored_upper = store.get_function(account.account_id, "Hello").await.unwrap().unwrap();
    let stored_lower = store.get_function(account.account_id, "hello").await.unwrap().unwrap();
    assert_eq!(stored_upper.function_id, upper.function_id);
    assert_eq!(stored_lower.function_id, lower.function_id);
    assert_eq!(
        store
            .get_function(account.account_id, "HELLO")
            .await
            .unwrap()
            .map(|f| f.name),
        None
    );

    let listed = store.list_functions(account.account_id, None, 10).await.unwrap();
    assert_eq!(names(&listed), ["Hello", "hello"]);
}

#[tokio::test]
async fn list_functions_pages_in_name_order() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let other = create_account(&store, "other").await;
    for name in ["echo", "alpha", "delta", "charlie", "bravo"] {
        insert(&store, account.account_id, name).await;
    }
    insert(&store, other.account_id, "aardvark").await;

    let all = store.list_functions(account.account_id, None, 100).await.unwrap();
    assert_eq!(names(&all), ["alpha", "bravo", "charlie", "delta", "echo"]);

    let first_page = store.list_functions(account.account_id, None, 2).await.unwrap();
    assert_eq!(names(&first_page), ["alpha", "bravo"]);

    let second_page = store
        .list_functions(account.account_id, Some("bravo"), 2)
        .await
        .unwrap();
    assert_eq!(names(&second_page), ["charlie", "delta"]);

    let last_page = store
        .list_functions(account.account_id, Some("delta"), 2)
        .await
        .unwrap();
    assert_eq!(names(&last_page), ["echo"]);

    let past_end = store.list_functions(account.account_id, Some("echo"), 2).await.unwrap();
    assert!(past_end.is_empty());

    // `after` need not be a stored name.
    let between = store.list_functions(account.account_id, Some("c"), 10).await.unwrap();
    assert_eq!(names(&between), ["charlie", "delta", "echo"]);
}

#[tokio::test]
async fn get_function_of_other_account_none() {
    let (_dir, store) = open_store().await;
    let owner = create_account(&store, "owner").await;
    let stranger = create_account(&store, "stranger").await;
    insert(&store, owner.account_id, "private").await;

    assert!(store
        .get_function(stranger.account_id, "private")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_functions(stranger.account_id, None, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn concurrent_inserts_one_wins() {
    let (_dir, store) = open_store().await;
    let store = Arc::new(store);
    let account = create_account(&store, "acme").await;

    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        let record = function(account.account_id, "contested");
        tasks.push(tokio::spawn(async move {
            let result = store.insert_function(&record).await;
            (record.function_id, result)
        }));
    }

    let mut winners = Vec::new();
    let mut already_exists = 0;
    for task in tasks {
        let (function_id, result) = task.await.expect("insert task panicked");
        match result {
            Ok(()) => winners.push(function_id),
            Err(StoreError::AlreadyExists { .. }) => already_exists += 1,
            Err(other) => panic!("expected Ok or AlreadyExists, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "successful inserts");
    assert_eq!(already_exists, 7, "AlreadyExists errors");

    let stored = store
        .get_function(account.account_id, "contested")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.function_id, winners[0]);
    assert_eq!(store.account_usage(account.account_id).await.unwrap().function_count, 1);
}

// Compare-and-set on $LATEST

#[tokio::test]
async fn update_function_with_expected_state() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = insert(&store, account.account_id, "hello").await;

    record.state = FunctionState::Updating;
    record.settings = full_settings();
    record.code = code("bbbb", 2000);
    store.update_function(&record, FunctionState::Active).await.unwrap();

    let stored = store.get_function(account.account_id, "hello").await.unwrap().unwrap();
    assert_eq!(stored.state, FunctionState::Updating);
    assert_eq!(stored.settings, full_settings());
    assert_eq!(stored.code, code("bbbb", 2000));
}

#[tokio::test]
async fn update_function_stale_state_conflicts() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = insert(&store, account.account_id, "hello").await;
    record.state = FunctionState::Updating;
    update_active(&store, &record).await;

    // A second writer still expects the function to be Active.
    let mut stale = record.clone();
    stale.state = FunctionState::Active;
    stale.settings.memory_size = 4096;
    stale.code = code("cccc", 3000);
    let error = store.update_function(&stale, FunctionState::Active).await.unwrap_err();
    match &error {
        StoreError::StateConflict {
            function,
            expected,
            actual,
        } => {
            assert_eq!(function, "hello");
            assert_eq!(*expected, FunctionState::Active);
            assert_eq!(*actual, FunctionState::Updating);
        }
        other => panic!("expected StateConflict, got {other:?}"),
    }
    assert!(error.to_string().contains("is Updating"), "{error}");

    let stored = store.get_function(account.account_id, "hello").await.unwrap().unwrap();
    assert_eq!(stored.state, FunctionState::Updating);
    assert_eq!(stored.settings.memory_size, 128);
    assert_eq!(stored.code, code("aaaa", 1000));
}

// Publishing versions

#[tokio::test]
async fn publish_first_creates_version_one() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = function(account.account_id, "hello");
    record.settings = full_settings();
    store.insert_function(&record).await.unwrap();

    let (version, created) = store.publish_version(record.function_id, None).await.unwrap();
    assert!(created);
    assert_eq!(version.number, 1);
    assert_eq!(version.function_id, record.function_id);
    assert_eq!(version.settings, full_settings());
    assert_eq!(version.description, "resizes uploaded images");
    assert_eq!(version.code, record.code);
}

#[tokio::test]
async fn publish_unchanged_returns_newest() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let record = insert(&store, account.account_id, "hello").await;
    let (first, _) = store.publish_version(record.function_id, None).await.unwrap();

    let (again, created) = store.publish_version(record.function_id, None).await.unwrap();
    assert!(!created);
    assert_eq!(again.number, 1);
    assert_eq!(again.version_id, first.version_id);
    assert_eq!(
        store.list_versions(record.function_id, None, 10).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn publish_numbers_follow_changes() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = insert(&store, account.account_id, "hello").await;
    let (first, created) = store.publish_version(record.function_id, None).await.unwrap();
    assert!(created);
    assert_eq!(first.number, 1);

    record.code = code("bbbb", 1500);
    update_active(&store, &record).await;
    let (second, created) = store.publish_version(record.function_id, None).await.unwrap();
    assert!(created, "a new code sha256 publishes a version");
    assert_eq!(second.number, 2);
    assert_eq!(second.code.sha256, "bbbb");

    record.settings.memory_size = 512;
    update_active(&store, &record).await;
    let (third, created) = store.publish_version(record.function_id, None).await.unwrap();
    assert!(created, "a memory change publishes a version");
    assert_eq!(third.number, 3);
    assert_eq!(third.settings.memory_size, 512);
    assert_eq!(third.code.sha256, "bbbb");
}

#[tokio::test]
async fn publish_description_overrides_version() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = function(account.account_id, "hello");
    record.settings.description = "function description".to_string();
    store.insert_function(&record).await.unwrap();

    let (version, _) = store
        .publish_version(record.function_id, Some("release 1"))
        .await
        .unwrap();
    assert_eq!(version.description, "release 1");
    assert_eq!(version.settings.description, "release 1");

    let stored = store.get_version(record.function_id, 1).await.unwrap().unwrap();
    assert_eq!(stored.description, "release 1");

    let latest = store.get_function(account.account_id, "hello").await.unwrap().unwrap();
    assert_eq!(latest.settings.description, "function description");
}

#[tokio::test]
async fn publish_description_only_change_reuses_version() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = insert(&store, account.account_id, "hello").await;
    store
        .publish_version(record.function_id, Some("release 1"))
        .await
        .unwrap();

    record.settings.description = "new function description".to_string();
    update_active(&store, &record).await;
    let (version, created) = store.publish_version(record.function_id, None).await.unwrap();
    assert!(!created);
    assert_eq!(version.number, 1);
    assert_eq!(version.description, "release 1");

    let (version, created) = store
        .publish_version(record.function_id, Some("release 2"))
        .await
        .unwrap();
    assert!(!created, "a different publish description alone is not a change");
    assert_eq!(version.number, 1);
}

#[tokio::test]
async fn publish_while_updating_conflicts() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = insert(&store, account.account_id, "hello").await;
    record.state = FunctionState::Updating;
    update_active(&store, &record).await;

    let error = store.publish_version(record.function_id, None).await.unwrap_err();
    match error {
        StoreError::StateConflict {
            function,
            expected,
            actual,
        } => {
            assert_eq!(function, "hello");
            assert_eq!(expected, FunctionState::Active);
            assert_eq!(actual, FunctionState::Updating);
        }
        other => panic!("expected StateConflict, got {other:?}"),
    }
    assert!(store
        .list_versions(record.function_id, None, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn publish_unknown_function_not_found() {
    let (_dir, store) = open_store().await;
    let error = store.publish_version(Uuid::new_v4(), None).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NotFound {
                resource: "function",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn publish_after_delete_never_reuses_number() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = insert(&store, account.account_id, "hello").await;
    for memory in [256, 512, 1024] {
        record.settings.memory_size = memory;
        update_active(&store, &record).await;
        store.publish_version(record.function_id, None).await.unwrap();
    }

    store.delete_version(record.function_id, "hello", 3).await.unwrap();
    assert!(store.get_version(record.function_id, 3).await.unwrap().is_none());

    let (version, created) = store.publish_version(record.function_id, None).await.unwrap();
    assert!(created);
    assert_eq!(version.number, 4);
    assert_eq!(version.settings.memory_size, 1024);
}

// Versions

#[tokio::test]
async fn get_version_by_number() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = function(account.account_id, "hello");
    record.settings = full_settings();
    store.insert_function(&record).await.unwrap();
    let (published, _) = store
        .publish_version(record.function_id, Some("release 1"))
        .await
        .unwrap();

    let stored = store.get_version(record.function_id, 1).await.unwrap().unwrap();
    assert_eq!(stored.version_id, published.version_id);
    assert_eq!(stored.function_id, record.function_id);
    assert_eq!(stored.number, 1);
    assert_eq!(stored.code, record.code);
    assert_eq!(stored.settings, published.settings);
    assert_eq!(stored.created_at, published.created_at);

    assert!(store.get_version(record.function_id, 2).await.unwrap().is_none());
    assert!(store.get_version(Uuid::new_v4(), 1).await.unwrap().is_none());
}

#[tokio::test]
async fn list_versions_pages_in_number_order() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = insert(&store, account.account_id, "hello").await;
    for size in 1..=5u64 {
        record.code = code(&format!("sha-{size}"), size * 100);
        update_active(&store, &record).await;
        store.publish_version(record.function_id, None).await.unwrap();
    }
    let numbers =
        |versions: Vec<nimbus_model::VersionRecord>| -> Vec<u32> { versions.iter().map(|v| v.number).collect() };

    let all = store.list_versions(record.function_id, None, 100).await.unwrap();
    assert_eq!(numbers(all), [1, 2, 3, 4, 5]);

    let first_page = store.list_versions(record.function_id, None, 2).await.unwrap();
    assert_eq!(numbers(first_page), [1, 2]);

    let second_page = store.list_versions(record.function_id, Some(2), 2).await.unwrap();
    assert_eq!(numbers(second_page), [3, 4]);

    let last_page = store.list_versions(record.function_id, Some(4), 2).await.unwrap();
    assert_eq!(numbers(last_page), [5]);

    let past_end = store.list_versions(record.function_id, Some(5), 2).await.unwrap();
    assert!(past_end.is_empty());
}

#[tokio::test]
async fn version_settings_frozen_after_latest_changes() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let mut record = function(account.account_id, "hello");
    record.settings = full_settings();
    store.insert_function(&record).await.unwrap();
    store.publish_version(record.function_id, None).await.unwrap();

    record.settings = settings();
    record.settings.description = "changed".to_string();
    record.code = code("ffff", 9999);
    update_active(&store, &record).await;

    let version = store.get_version(record.function_id, 1).await.unwrap().unwrap();
    assert_eq!(version.settings, full_settings());
    assert_eq!(version.code, code("aaaa", 1000));

    let latest = store.get_function(account.account_id, "hello").await.unwrap().unwrap();
    assert_eq!(latest.settings.description, "changed");
    assert_eq!(latest.code.sha256, "ffff");
}

// Aliases

/// Inserts "hello" and publishes versions 1 to `count`, each with new code.
async fn function_with_versions(store: &SqliteStore, account_id: Uuid, count: u32) -> FunctionRecord {
    let mut record = insert(store, account_id, "hello").await;
    for number in 1..=count {
        record.code = code(&format!("sha-{number}"), 1000);
        update_active(store, &record).await;
        store.publish_version(record.function_id, None).await.unwrap();
    }
    record
}

#[tokio::test]
async fn put_alias_creates_then_updates() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let record = function_with_versions(&store, account.account_id, 2).await;

    let created = store
        .put_alias(record.function_id, &alias("live", "1", None))
        .await
        .unwrap();
    assert!(created);

    let updated_alias = alias("live", "2", Some((1, 0.25)));
    let created = store.put_alias(record.function_id, &updated_alias).await.unwrap();
    assert!(!created);

    let stored = store.get_alias(record.function_id, "live").await.unwrap();
    assert_eq!(stored, Some(updated_alias));
    assert_eq!(store.list_aliases(record.function_id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn alias_get_list_delete() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let record = function_with_versions(&store, account.account_id, 2).await;
    let live = alias("live", "2", Some((1, 0.1)));
    let dev = alias("dev", "$LATEST", None);
    store.put_alias(record.function_id, &live).await.unwrap();
    store.put_alias(record.function_id, &dev).await.unwrap();

    assert_eq!(
        store.get_alias(record.function_id, "live").await.unwrap(),
        Some(live.clone())
    );
    assert_eq!(
        store.get_alias(record.function_id, "dev").await.unwrap(),
        Some(dev.clone())
    );
    assert_eq!(store.get_alias(record.function_id, "missing").await.unwrap(), None);

    let listed = store.list_aliases(record.function_id).await.unwrap();
    assert_eq!(listed, [dev.clone(), live]);

    assert!(store.delete_alias(record.function_id, "live").await.unwrap());
    assert!(!store.delete_alias(record.function_id, "live").await.unwrap());
    assert_eq!(store.get_alias(record.function_id, "live").await.unwrap(), None);
    assert_eq!(store.list_aliases(record.function_id).await.unwrap(), [dev]);
}

#[tokio::test]
async fn delete_version_used_by_alias() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let record = function_with_versions(&store, account.account_id, 2).await;
    store
        .put_alias(record.function_id, &alias("live", "2", None))
        .await
        .unwrap();

    let error = store.delete_version(record.function_id, "hello", 2).await.unwrap_err();
    match &error {
        StoreError::VersionInUse {
            function,
            version,
            alias,
        } => {
            assert_eq!(function, "hello");
            assert_eq!(*version, 2);
            assert_eq!(alias, "live");
        }
        other => panic!("expected VersionInUse, got {other:?}"),
    }
    assert!(error.to_string().contains("alias 'live'"), "{error}");
    assert!(store.get_version(record.function_id, 2).await.unwrap().is_some());
}

#[tokio::test]
async fn delete_version_used_as_additional_version() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let record = function_with_versions(&store, account.account_id, 2).await;
    store
        .put_alias(record.function_id, &alias("canary", "2", Some((1, 0.05))))
        .await
        .unwrap();

    let error = store.delete_version(record.function_id, "hello", 1).await.unwrap_err();
    match error {
        StoreError::VersionInUse {
            function,
            version,
            alias,
        } => {
            assert_eq!(function, "hello");
            assert_eq!(version, 1);
            assert_eq!(alias, "canary");
        }
        other => panic!("expected VersionInUse, got {other:?}"),
    }
    assert!(store.get_version(record.function_id, 1).await.unwrap().is_some());
}

#[tokio::test]
async fn delete_version_after_alias_moves() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let record = function_with_versions(&store, account.account_id, 2).await;
    store
        .put_alias(record.function_id, &alias("live", "1", None))
        .await
        .unwrap();
    store
        .put_alias(record.function_id, &alias("live", "2", None))
        .await
        .unwrap();

    store.delete_version(record.function_id, "hello", 1).await.unwrap();
    assert!(store.get_version(record.function_id, 1).await.unwrap().is_none());
}

#[tokio::test]
async fn delete_unknown_version_not_found() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let record = function_with_versions(&store, account.account_id, 1).await;

    let error = store.delete_version(record.function_id, "hello", 7).await.unwrap_err();
    match error {
        StoreError::NotFound { resource, name } => {
            assert_eq!(resource, "version");
            assert_eq!(name, "hello:7");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

// Reserved concurrency

#[tokio::test]
async fn reserved_concurrency_keeps_unreserved_minimum() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let big = insert(&store, account.account_id, "big").await;
    let small = insert(&store, account.account_id, "small").await;

    store
        .set_reserved_concurrency(account.account_id, big.function_id, Some(900))
        .await
        .unwrap();

    let error = store
        .set_reserved_concurrency(account.account_id, small.function_id, Some(1))
        .await
        .unwrap_err();
    let message = error.to_string();
    match error {
        StoreError::ReservedConcurrencyExceeded {
            requested,
            unreserved,
            limit,
            minimum,
            max_allowed,
        } => {
            assert_eq!(requested, 1);
            assert_eq!(unreserved, 99);
            assert_eq!(limit, 1000);
            assert_eq!(minimum, 100);
            assert_eq!(max_allowed, 0);
        }
        other => panic!("expected ReservedConcurrencyExceeded, got {other:?}"),
    }
    assert!(message.contains("reserve at most 0"), "{message}");

    let stored = store.get_function(account.account_id, "small").await.unwrap().unwrap();
    assert_eq!(stored.reserved_concurrency, None);
}

#[tokio::test]
async fn reserved_concurrency_reset_same_value() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let record = insert(&store, account.account_id, "big").await;
    store
        .set_reserved_concurrency(account.account_id, record.function_id, Some(900))
        .await
        .unwrap();

    // The function's own 900 is replaced, not added to the new value.
    store
        .set_reserved_concurrency(account.account_id, record.function_id, Some(900))
        .await
        .unwrap();

    let stored = store.get_function(account.account_id, "big").await.unwrap().unwrap();
    assert_eq!(stored.reserved_concurrency, Some(900));
}

#[tokio::test]
async fn reserved_concurrency_clear_frees_it() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let big = insert(&store, account.account_id, "big").await;
    let small = insert(&store, account.account_id, "small").await;
    store
        .set_reserved_concurrency(account.account_id, big.function_id, Some(900))
        .await
        .unwrap();

    store
        .set_reserved_concurrency(account.account_id, big.function_id, None)
        .await
        .unwrap();
    let stored = store.get_function(account.account_id, "big").await.unwrap().unwrap();
    assert_eq!(stored.reserved_concurrency, None);

    store
        .set_reserved_concurrency(account.account_id, small.function_id, Some(900))
        .await
        .unwrap();
    let stored = store.get_function(account.account_id, "small").await.unwrap().unwrap();
    assert_eq!(stored.reserved_concurrency, Some(900));
}

#[tokio::test]
async fn reserved_concurrency_zero_allowed() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let big = insert(&store, account.account_id, "big").await;
    let paused = insert(&store, account.account_id, "paused").await;
    store
        .set_reserved_concurrency(account.account_id, big.function_id, Some(900))
        .await
        .unwrap();

    store
        .set_reserved_concurrency(account.account_id, paused.function_id, Some(0))
        .await
        .unwrap();

    let stored = store.get_function(account.account_id, "paused").await.unwrap().unwrap();
    assert_eq!(stored.reserved_concurrency, Some(0));
}

#[tokio::test]
async fn small_account_reserves_nothing() {
    let (_dir, store) = open_store().await;
    let account = store.create_account("tiny", 5).await.unwrap();
    let function = insert(&store, account.account_id, "fn").await;

    let zero = store
        .set_reserved_concurrency(account.account_id, function.function_id, Some(0))
        .await;
    let one = store
        .set_reserved_concurrency(account.account_id, function.function_id, Some(1))
        .await;

    assert!(zero.is_ok(), "reserving 0 leaves all 5 unreserved: {zero:?}");
    match one.unwrap_err() {
        StoreError::ReservedConcurrencyExceeded {
            minimum, max_allowed, ..
        } => {
            assert_eq!(minimum, 5, "an account under 100 keeps its whole limit unreserved");
            assert_eq!(max_allowed, 0);
        }
        other => panic!("expected ReservedConcurrencyExceeded, got {other:?}"),
    }
}

#[tokio::test]
async fn account_usage_totals() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let other = create_account(&store, "other").await;
    assert_eq!(
        store.account_usage(account.account_id).await.unwrap(),
        Default::default()
    );

    // "api": version 1 of 1000 bytes, version 2 and $LATEST of 2500 bytes.
    let mut api = insert(&store, account.account_id, "api").await;
    store.publish_version(api.function_id, None).await.unwrap();
    api.code = code("bbbb", 2500);
    update_active(&store, &api).await;
    store.publish_version(api.function_id, None).await.unwrap();

    let mut worker = function(account.account_id, "worker");
    worker.code = code("cccc", 300);
    store.insert_function(&worker).await.unwrap();

    store
        .set_reserved_concurrency(account.account_id, api.function_id, Some(200))
        .await
        .unwrap();
    store
        .set_reserved_concurrency(account.account_id, worker.function_id, Some(50))
        .await
        .unwrap();

    // Another account's function must not count toward these totals.
    let foreign = insert(&store, other.account_id, "foreign").await;
    store.publish_version(foreign.function_id, None).await.unwrap();
    store
        .set_reserved_concurrency(other.account_id, foreign.function_id, Some(400))
        .await
        .unwrap();

    let usage = store.account_usage(account.account_id).await.unwrap();
    assert_eq!(usage.function_count, 2);
    assert_eq!(usage.total_code_size, 1000 + 2500 + 2500 + 300);
    assert_eq!(usage.reserved_concurrency, 250);
}

// Deleting functions and reopening the store

#[tokio::test]
async fn delete_function_removes_versions_and_aliases() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let old = function_with_versions(&store, account.account_id, 3).await;
    store
        .put_alias(old.function_id, &alias("live", "3", Some((2, 0.5))))
        .await
        .unwrap();

    store.delete_function(old.function_id).await.unwrap();

    assert!(store.get_function(account.account_id, "hello").await.unwrap().is_none());
    assert!(store.list_versions(old.function_id, None, 10).await.unwrap().is_empty());
    assert!(store.list_aliases(old.function_id).await.unwrap().is_empty());
    assert_eq!(store.account_usage(account.account_id).await.unwrap().function_count, 0);

    let new = insert(&store, account.account_id, "hello").await;
    assert!(store.list_aliases(new.function_id).await.unwrap().is_empty());
    let (version, created) = store.publish_version(new.function_id, None).await.unwrap();
    assert!(created);
    assert_eq!(version.number, 1);
}

#[tokio::test]
async fn store_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nimbus.db");
    let (account, record) = {
        let store = SqliteStore::open(&path).await.unwrap();
        let account = create_account(&store, "acme").await;
        store
            .add_api_key(account.account_id, &"a".repeat(64), "nmb_aaaa")
            .await
            .unwrap();
        let mut record = function(account.account_id, "hello");
        record.settings = full_settings();
        store.insert_function(&record).await.unwrap();
        store
            .publish_version(record.function_id, Some("release 1"))
            .await
            .unwrap();
        store
            .put_alias(record.function_id, &alias("live", "1", None))
            .await
            .unwrap();
        store
            .set_reserved_concurrency(account.account_id, record.function_id, Some(10))
            .await
            .unwrap();
        (account, record)
    };

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.get_account(account.account_id).await.unwrap(),
        Some(account.clone())
    );
    let key_owner = store.account_for_key(&"a".repeat(64)).await.unwrap();
    assert_eq!(key_owner.map(|a| a.account_id), Some(account.account_id));

    let stored = store.get_function(account.account_id, "hello").await.unwrap().unwrap();
    assert_eq!(stored.function_id, record.function_id);
    assert_eq!(stored.settings, full_settings());
    assert_eq!(stored.reserved_concurrency, Some(10));

    let version = store.get_version(record.function_id, 1).await.unwrap().unwrap();
    assert_eq!(version.description, "release 1");
    let live = store.get_alias(record.function_id, "live").await.unwrap();
    assert_eq!(live, Some(alias("live", "1", None)));
}

// Provisioned concurrency

fn provisioned(function_id: Uuid, qualifier: &str, requested: u32) -> nimbus_store::ProvisionedConcurrencyRecord {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    nimbus_store::ProvisionedConcurrencyRecord {
        function_id,
        qualifier: qualifier.to_string(),
        resolved_version: "1".to_string(),
        requested,
        status: nimbus_store::ProvisionedStatus::InProgress,
        status_reason: None,
        created_at: now,
        updated_at: now,
    }
}

#[tokio::test]
async fn provisioned_put_get_list_delete() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let function = insert(&store, account.account_id, "worker").await;
    let prod = provisioned(function.function_id, "prod", 2);
    store.put_provisioned_concurrency(&prod).await.unwrap();
    store
        .put_provisioned_concurrency(&provisioned(function.function_id, "1", 1))
        .await
        .unwrap();

    let found = store
        .get_provisioned_concurrency(function.function_id, "prod")
        .await
        .unwrap();
    assert_eq!(found, Some(prod.clone()));
    let listed = store.list_provisioned_concurrency(function.function_id).await.unwrap();
    let qualifiers: Vec<&str> = listed.iter().map(|c| c.qualifier.as_str()).collect();
    assert_eq!(qualifiers, ["1", "prod"]);
    assert_eq!(store.list_all_provisioned_concurrency().await.unwrap().len(), 2);

    let mut replaced = provisioned(function.function_id, "prod", 5);
    replaced.created_at = OffsetDateTime::UNIX_EPOCH;
    store.put_provisioned_concurrency(&replaced).await.unwrap();
    let found = store
        .get_provisioned_concurrency(function.function_id, "prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.requested, 5);
    assert_eq!(found.created_at, prod.created_at, "a replacement keeps created_at");

    assert!(store
        .delete_provisioned_concurrency(function.function_id, "prod")
        .await
        .unwrap());
    assert!(!store
        .delete_provisioned_concurrency(function.function_id, "prod")
        .await
        .unwrap());
    assert_eq!(
        store
            .get_provisioned_concurrency(function.function_id, "prod")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn provisioned_status_update_checks_requested() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let function = insert(&store, account.account_id, "worker").await;
    store
        .put_provisioned_concurrency(&provisioned(function.function_id, "prod", 2))
        .await
        .unwrap();

    let failed = nimbus_store::ProvisionedStatus::Failed;
    let stale = store
        .update_provisioned_status(function.function_id, "prod", 3, "2", failed, Some("stale"))
        .await
        .unwrap();
    assert!(!stale, "an update for another requested count is ignored");
    let applied = store
        .update_provisioned_status(function.function_id, "prod", 2, "2", failed, Some("init failed"))
        .await
        .unwrap();
    assert!(applied);
    let found = store
        .get_provisioned_concurrency(function.function_id, "prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.status, failed);
    assert_eq!(found.status_reason.as_deref(), Some("init failed"));
    assert_eq!(found.resolved_version, "2");
}

#[tokio::test]
async fn provisioned_deleted_with_function() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "acme").await;
    let function = insert(&store, account.account_id, "worker").await;
    store
        .put_provisioned_concurrency(&provisioned(function.function_id, "prod", 1))
        .await
        .unwrap();
    store.delete_function(function.function_id).await.unwrap();
    assert!(store.list_all_provisioned_concurrency().await.unwrap().is_empty());
}

fn invocation(function: &FunctionRecord, i: usize, at: OffsetDateTime) -> nimbus_store::InvocationRecord {
    nimbus_store::InvocationRecord {
        request_id: format!("request-{i:05}"),
        function_id: function.function_id,
        version: "$LATEST".to_string(),
        account_id: function.account_id,
        trigger_type: "HTTP".to_string(),
        invocation_type: "RequestResponse".to_string(),
        start_time: at + time::Duration::milliseconds(i as i64),
        end_time: at + time::Duration::milliseconds(i as i64 + 1),
        duration_ms: 0.5,
        billed_duration_ms: 1,
        memory_used_mb: 10,
        init_duration_ms: (i % 2 == 0).then_some(12.5),
        sandbox_ms: None,
        code_ms: None,
        code_tier: (i % 2 == 0).then(|| "L1".to_string()),
        runtime_init_ms: None,
        user_init_ms: None,
        status: "SUCCESS".to_string(),
        error_type: None,
        cold_start: i % 2 == 0,
        slot_id: Some(format!("slot-{i}")),
        trace_id: format!("Root=1-{i:08x}"),
    }
}

#[tokio::test]
async fn record_invocations_spans_several_inserts() {
    let (_dir, store) = open_store().await;
    let account = create_account(&store, "batches").await;
    let function = function(account.account_id, "batched");
    store.insert_function(&function).await.unwrap();
    let at = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    // More rows than one multi-row INSERT takes, of records and of log lines.
    let records: Vec<_> = (0..2_500).map(|i| invocation(&function, i, at)).collect();
    let logs: Vec<_> = (0..12_000)
        .map(|i| nimbus_store::LogEvent {
            sequence: 0,
            function_id: function.function_id,
            request_id: Some(format!("request-{:05}", i / 5)),
            timestamp_ms: at.unix_timestamp() * 1000 + i as i64,
            message: format!("line {i}"),
        })
        .collect();
    store.record_invocations(&records, &logs).await.unwrap();

    let stored = store
        .list_invocations(function.function_id, None, 10_000)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2_500);
    let newest = &stored[0];
    assert_eq!(newest.request_id, "request-02499");
    assert_eq!(newest.trace_id, "Root=1-000009c3");
    assert!(!newest.cold_start);
    let oldest = stored.last().unwrap();
    assert_eq!(oldest.init_duration_ms, Some(12.5));
    assert_eq!(oldest.code_tier.as_deref(), Some("L1"));

    let query = nimbus_store::LogQuery {
        request_id: None,
        start_ms: None,
        end_ms: None,
        after_sequence: None,
        limit: 20_000,
    };
    let lines = store.query_logs(function.function_id, &query).await.unwrap();
    assert_eq!(lines.len(), 12_000);
    assert_eq!(lines[0].message, "line 0");
    assert_eq!(lines[11_999].message, "line 11999");
    assert!(lines.windows(2).all(|pair| pair[0].sequence < pair[1].sequence));
}
