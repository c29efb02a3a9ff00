//! The embedded SQLite backend. One process writes through a single connection, so
//! its transactions never conflict with each other. Reads use a separate pool, and
//! WAL mode lets them run beside the writer.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use nimbus_model::{CodeInfo, FunctionRecord, FunctionSettings, FunctionState, TracingMode, VersionRecord};
use rand::Rng;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    min_unreserved_concurrency, Account, AccountUsage, AliasRecord, AsyncEvent, ControlStore, InvocationRecord,
    LogEvent, LogQuery, ProvisionedConcurrencyRecord, ProvisionedStatus, Result, StoreError, WorkerHostRecord,
};

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

const FUNCTION_COLUMNS: &str = "f.function_id, f.account_id, f.name, f.description, f.runtime, f.handler, \
    f.role_arn, f.state, f.state_reason, f.code_sha256, f.code_location, f.code_size_bytes, \
    f.last_modified, f.created_at, c.memory_mb, c.timeout_seconds, c.ephemeral_storage_mb, \
    c.environment_variables, c.vpc_config, c.reserved_concurrency, c.layers, c.dead_letter_queue, \
    c.tracing_mode \
    FROM functions f JOIN function_configs c ON c.function_id = f.function_id AND c.version_id IS NULL";

const VERSION_COLUMNS: &str = "v.version_id, v.function_id, v.version_number, v.code_sha256, \
    v.code_location, v.code_size_bytes, v.runtime, v.handler, v.role_arn, v.description, v.created_at, \
    c.memory_mb, c.timeout_seconds, c.ephemeral_storage_mb, c.environment_variables, c.vpc_config, \
    c.layers, c.dead_letter_queue, c.tracing_mode \
    FROM function_versions v JOIN function_configs c ON c.version_id = v.version_id";

const PROVISIONED_COLUMNS: &str = "function_id, qualifier, resolved_version, requested, status, status_reason, \
    created_at, updated_at FROM provisioned_concurrency";

const ACCOUNT_COLUMNS: &str = "account_id, name, account_number, concurrency_limit, created_at FROM accounts";

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn timestamp(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("UTC timestamps format as RFC 3339")
}

fn parse_timestamp(value: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|e| StoreError::Corrupt(format!("timestamp '{value}': {e}")))
}

fn parse_uuid(value: &str) -> Result<Uuid> {
    Uuid::parse_str(value).map_err(|e| StoreError::Corrupt(format!("uuid '{value}': {e}")))
}

fn parse_json<T: serde::de::DeserializeOwned>(column: &str, value: &str) -> Result<T> {
    serde_json::from_str(value).map_err(|e| StoreError::Corrupt(format!("{column} '{value}': {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("configuration values serialize to JSON")
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Decodes the configuration columns shared by $LATEST and version rows.
fn settings_from_row(row: &SqliteRow) -> Result<FunctionSettings> {
    let tracing: String = row.try_get("tracing_mode")?;
    let vpc: Option<String> = row.try_get("vpc_config")?;
    Ok(FunctionSettings {
        runtime: row.try_get("runtime")?,
        handler: row.try_get("handler")?,
        role: row.try_get("role_arn")?,
        description: row.try_get("description")?,
        memory_size: row.try_get::<i64, _>("memory_mb")? as u32,
        timeout: row.try_get::<i64, _>("timeout_seconds")? as u32,
        ephemeral_storage: row.try_get::<i64, _>("ephemeral_storage_mb")? as u32,
        environment: parse_json(
            "environment_variables",
            &row.try_get::<String, _>("environment_variables")?,
        )?,
        vpc_config: vpc.map(|v| parse_json("vpc_config", &v)).transpose()?,
        dead_letter_queue: row.try_get("dead_letter_queue")?,
        tracing_mode: TracingMode::from_db_str(&tracing)
            .ok_or_else(|| StoreError::Corrupt(format!("tracing_mode '{tracing}'")))?,
        layers: parse_json("layers", &row.try_get::<String, _>("layers")?)?,
    })
}

fn code_from_row(row: &SqliteRow) -> Result<CodeInfo> {
    Ok(CodeInfo {
        sha256: row.try_get("code_sha256")?,
        size: row.try_get::<i64, _>("code_size_bytes")? as u64,
        location: row.try_get("code_location")?,
    })
}

fn function_from_row(row: &SqliteRow) -> Result<FunctionRecord> {
    let state: String = row.try_get("state")?;
    Ok(FunctionRecord {
        function_id: parse_uuid(row.try_get("function_id")?)?,
        account_id: parse_uuid(row.try_get("account_id")?)?,
        name: row.try_get("name")?,
        state: FunctionState::from_db_str(&state).ok_or_else(|| StoreError::Corrupt(format!("state '{state}'")))?,
        state_reason: row.try_get("state_reason")?,
        settings: settings_from_row(row)?,
        code: code_from_row(row)?,
        reserved_concurrency: row.try_get::<Option<i64>, _>("reserved_concurrency")?.map(|v| v as u32),
        created_at: parse_timestamp(row.try_get("created_at")?)?,
        last_modified: parse_timestamp(row.try_get("last_modified")?)?,
    })
}

fn version_from_row(row: &SqliteRow) -> Result<VersionRecord> {
    let settings = settings_from_row(row)?;
    Ok(VersionRecord {
        version_id: parse_uuid(row.try_get("version_id")?)?,
        function_id: parse_uuid(row.try_get("function_id")?)?,
        number: row.try_get::<i64, _>("version_number")? as u32,
        description: settings.description.clone(),
        settings,
        code: code_from_row(row)?,
        created_at: parse_timestamp(row.try_get("created_at")?)?,
    })
}

fn account_from_row(row: &SqliteRow) -> Result<Account> {
    Ok(Account {
        account_id: parse_uuid(row.try_get("account_id")?)?,
        name: row.try_get("name")?,
        account_number: row.try_get("account_number")?,
        concurrency_limit: row.try_get::<i64, _>("concurrency_limit")? as u32,
        created_at: parse_timestamp(row.try_get("created_at")?)?,
    })
}

fn alias_from_row(row: &SqliteRow) -> Result<AliasRecord> {
    let version: Option<i64> = row.try_get("additional_version")?;
    let weight: Option<f64> = row.try_get("additional_weight")?;
    Ok(AliasRecord {
        name: row.try_get("name")?,
        function_version: row.try_get("function_version")?,
        description: row.try_get("description")?,
        additional_version: version.zip(weight).map(|(v, w)| (v as u32, w)),
    })
}

fn invocation_from_row(row: &SqliteRow) -> Result<InvocationRecord> {
    Ok(InvocationRecord {
        request_id: row.try_get("request_id")?,
        function_id: parse_uuid(row.try_get("function_id")?)?,
        version: row.try_get("version")?,
        account_id: parse_uuid(row.try_get("account_id")?)?,
        trigger_type: row.try_get("trigger_type")?,
        invocation_type: row.try_get("invocation_type")?,
        start_time: parse_timestamp(row.try_get("start_time")?)?,
        end_time: parse_timestamp(row.try_get("end_time")?)?,
        duration_ms: row.try_get("duration_ms")?,
        billed_duration_ms: row.try_get::<i64, _>("billed_duration_ms")? as u64,
        memory_used_mb: row.try_get::<i64, _>("memory_used_mb")? as u64,
        init_duration_ms: row.try_get("init_duration_ms")?,
        sandbox_ms: row.try_get("sandbox_ms")?,
        code_ms: row.try_get("code_ms")?,
        code_tier: row.try_get("code_tier")?,
        runtime_init_ms: row.try_get("runtime_init_ms")?,
        user_init_ms: row.try_get("user_init_ms")?,
        status: row.try_get("status")?,
        error_type: row.try_get("error_type")?,
        cold_start: row.try_get("cold_start")?,
        slot_id: row.try_get("slot_id")?,
        trace_id: row.try_get("trace_id")?,
    })
}

fn log_event_from_row(row: &SqliteRow) -> Result<LogEvent> {
    Ok(LogEvent {
        sequence: row.try_get("sequence")?,
        function_id: parse_uuid(row.try_get("function_id")?)?,
        request_id: row.try_get("request_id")?,
        timestamp_ms: row.try_get("timestamp_ms")?,
        message: row.try_get("message")?,
    })
}

fn provisioned_from_row(row: &SqliteRow) -> Result<ProvisionedConcurrencyRecord> {
    let status: String = row.try_get("status")?;
    Ok(ProvisionedConcurrencyRecord {
        function_id: parse_uuid(row.try_get("function_id")?)?,
        qualifier: row.try_get("qualifier")?,
        resolved_version: row.try_get("resolved_version")?,
        requested: row.try_get::<i64, _>("requested")? as u32,
        status: ProvisionedStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("provisioned concurrency status '{status}'")))?,
        status_reason: row.try_get("status_reason")?,
        created_at: parse_timestamp(row.try_get("created_at")?)?,
        updated_at: parse_timestamp(row.try_get("updated_at")?)?,
    })
}

fn async_event_from_row(row: &SqliteRow) -> Result<AsyncEvent> {
    Ok(AsyncEvent {
        event_id: row.try_get("event_id")?,
        account_id: parse_uuid(row.try_get("account_id")?)?,
        function_id: parse_uuid(row.try_get("function_id")?)?,
        qualifier: row.try_get("qualifier")?,
        payload: row.try_get("payload")?,
        client_context: row.try_get("client_context")?,
        trace_id: row.try_get("trace_id")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        created_ms: row.try_get("created_ms")?,
    })
}

/// Inserts a configuration row for $LATEST (`version_id` None) or a version.
async fn insert_config(
    connection: &mut SqliteConnection,
    function_id: Uuid,
    version_id: Option<Uuid>,
    settings: &FunctionSettings,
    reserved_concurrency: Option<u32>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO function_configs (config_id, function_id, version_id, memory_mb, timeout_seconds, \
         ephemeral_storage_mb, environment_variables, vpc_config, reserved_concurrency, layers, \
         dead_letter_queue, tracing_mode, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(function_id.to_string())
    .bind(version_id.map(|id| id.to_string()))
    .bind(settings.memory_size as i64)
    .bind(settings.timeout as i64)
    .bind(settings.ephemeral_storage as i64)
    .bind(to_json(&settings.environment))
    .bind(settings.vpc_config.as_ref().map(to_json))
    .bind(reserved_concurrency.map(|v| v as i64))
    .bind(to_json(&settings.layers))
    .bind(&settings.dead_letter_queue)
    .bind(settings.tracing_mode.as_db_str())
    .bind(timestamp(now()))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Settings equal apart from the description, which publishing may override.
fn same_settings(a: &FunctionSettings, b: &FunctionSettings) -> bool {
    let mut a = a.clone();
    a.description = b.description.clone();
    &a == b
}

/// Pool settings for SQLite files: connections never expire, so sqlx starts no
/// maintenance task. SQLite connections stay valid for as long as the file exists, and
/// sqlx 0.8.6's maintenance task loops without yielding once its idle count underflows,
/// which starved a tokio worker thread here (seen under load in the end-to-end tests).
/// Rows per multi-row INSERT, within SQLite's limit of 32,766 bound values: 22
/// columns of invocation records, 4 of log events.
const RECORDS_PER_INSERT: usize = 1_000;
const LOG_EVENTS_PER_INSERT: usize = 5_000;

fn pool_options(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .idle_timeout(None)
        .max_lifetime(None)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = pool_options(1).connect_with(options.clone()).await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = pool_options(4).connect_with(options.read_only(true)).await?;
        Ok(SqliteStore { reader, writer })
    }

    async fn fetch_function(connection: &mut SqliteConnection, function_id: Uuid) -> Result<FunctionRecord> {
        let row = sqlx::query(&format!("SELECT {FUNCTION_COLUMNS} WHERE f.function_id = $1"))
            .bind(function_id.to_string())
            .fetch_optional(&mut *connection)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                resource: "function",
                name: function_id.to_string(),
            })?;
        function_from_row(&row)
    }
}

#[async_trait]
impl ControlStore for SqliteStore {
    async fn create_account(&self, name: &str, concurrency_limit: u32) -> Result<Account> {
        // Retry on the unlikely collision of a random account number.
        for _ in 0..5 {
            let account = Account {
                account_id: Uuid::new_v4(),
                name: name.to_string(),
                account_number: format!(
                    "{:012}",
                    rand::thread_rng().gen_range(100_000_000_000u64..1_000_000_000_000)
                ),
                concurrency_limit,
                created_at: now(),
            };
            let result = sqlx::query(
                "INSERT INTO accounts (account_id, name, account_number, concurrency_limit, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(account.account_id.to_string())
            .bind(&account.name)
            .bind(&account.account_number)
            .bind(concurrency_limit as i64)
            .bind(timestamp(account.created_at))
            .execute(&self.writer)
            .await;
            match result {
                Ok(_) => return Ok(account),
                Err(e) if is_unique_violation(&e) => {
                    if self.get_account_by_name(name).await?.is_some() {
                        return Err(StoreError::AlreadyExists {
                            resource: "account",
                            name: name.to_string(),
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Corrupt("could not pick a free account number".to_string()))
    }

    async fn get_account(&self, account_id: Uuid) -> Result<Option<Account>> {
        let row = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} WHERE account_id = $1"))
            .bind(account_id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn get_account_by_name(&self, name: &str) -> Result<Option<Account>> {
        let row = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} ORDER BY name"))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(account_from_row).collect()
    }

    async fn set_account_concurrency_limit(&self, account_id: Uuid, limit: u32) -> Result<()> {
        let result = sqlx::query("UPDATE accounts SET concurrency_limit = $1 WHERE account_id = $2")
            .bind(limit as i64)
            .bind(account_id.to_string())
            .execute(&self.writer)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                resource: "account",
                name: account_id.to_string(),
            });
        }
        Ok(())
    }

    async fn account_usage(&self, account_id: Uuid) -> Result<AccountUsage> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS function_count, \
             COALESCE(SUM(f.code_size_bytes), 0) AS latest_size, \
             COALESCE(SUM(c.reserved_concurrency), 0) AS reserved \
             FROM functions f JOIN function_configs c ON c.function_id = f.function_id AND c.version_id IS NULL \
             WHERE f.account_id = $1",
        )
        .bind(account_id.to_string())
        .fetch_one(&self.reader)
        .await?;
        let versions_size: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(v.code_size_bytes), 0) FROM function_versions v \
             JOIN functions f ON f.function_id = v.function_id WHERE f.account_id = $1",
        )
        .bind(account_id.to_string())
        .fetch_one(&self.reader)
        .await?;
        Ok(AccountUsage {
            function_count: row.try_get::<i64, _>("function_count")? as u64,
            total_code_size: (row.try_get::<i64, _>("latest_size")? + versions_size) as u64,
            reserved_concurrency: row.try_get::<i64, _>("reserved")? as u64,
        })
    }

    async fn add_api_key(&self, account_id: Uuid, key_sha256: &str, key_prefix: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, account_id, key_sha256, key_prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_sha256) DO NOTHING",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(account_id.to_string())
        .bind(key_sha256)
        .bind(key_prefix)
        .bind(timestamp(now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn account_for_key(&self, key_sha256: &str) -> Result<Option<Account>> {
        let row = sqlx::query(
            "SELECT a.account_id, a.name, a.account_number, a.concurrency_limit, a.created_at \
             FROM api_keys k JOIN accounts a ON a.account_id = k.account_id WHERE k.key_sha256 = $1",
        )
        .bind(key_sha256)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn insert_function(&self, function: &FunctionRecord) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let settings = &function.settings;
        let inserted = sqlx::query(
            "INSERT INTO functions (function_id, account_id, name, description, runtime, handler, role_arn, \
             state, state_reason, code_sha256, code_location, code_size_bytes, last_modified, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(function.function_id.to_string())
        .bind(function.account_id.to_string())
        .bind(&function.name)
        .bind(&settings.description)
        .bind(&settings.runtime)
        .bind(&settings.handler)
        .bind(&settings.role)
        .bind(function.state.as_db_str())
        .bind(&function.state_reason)
        .bind(&function.code.sha256)
        .bind(&function.code.location)
        .bind(function.code.size as i64)
        .bind(timestamp(function.last_modified))
        .bind(timestamp(function.created_at))
        .bind(timestamp(now()))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    resource: "function",
                    name: function.name.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        insert_config(
            &mut tx,
            function.function_id,
            None,
            settings,
            function.reserved_concurrency,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_function(&self, account_id: Uuid, name: &str) -> Result<Option<FunctionRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {FUNCTION_COLUMNS} WHERE f.account_id = $1 AND f.name = $2"
        ))
        .bind(account_id.to_string())
        .bind(name)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(function_from_row).transpose()
    }

    async fn list_functions(&self, account_id: Uuid, after: Option<&str>, limit: u32) -> Result<Vec<FunctionRecord>> {
        let rows = match after {
            Some(after) => {
                sqlx::query(&format!(
                    "SELECT {FUNCTION_COLUMNS} WHERE f.account_id = $1 AND f.name > $2 ORDER BY f.name LIMIT $3"
                ))
                .bind(account_id.to_string())
                .bind(after)
                .bind(limit as i64)
                .fetch_all(&self.reader)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {FUNCTION_COLUMNS} WHERE f.account_id = $1 ORDER BY f.name LIMIT $2"
                ))
                .bind(account_id.to_string())
                .bind(limit as i64)
                .fetch_all(&self.reader)
                .await?
            }
        };
        rows.iter().map(function_from_row).collect()
    }

    async fn update_function(&self, function: &FunctionRecord, expected_state: FunctionState) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let settings = &function.settings;
        let updated = sqlx::query(
            "UPDATE functions SET description = $1, runtime = $2, handler = $3, role_arn = $4, state = $5, \
             state_reason = $6, code_sha256 = $7, code_location = $8, code_size_bytes = $9, last_modified = $10, \
             updated_at = $11 WHERE function_id = $12 AND state = $13",
        )
        .bind(&settings.description)
        .bind(&settings.runtime)
        .bind(&settings.handler)
        .bind(&settings.role)
        .bind(function.state.as_db_str())
        .bind(&function.state_reason)
        .bind(&function.code.sha256)
        .bind(&function.code.location)
        .bind(function.code.size as i64)
        .bind(timestamp(function.last_modified))
        .bind(timestamp(now()))
        .bind(function.function_id.to_string())
        .bind(expected_state.as_db_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            let actual = Self::fetch_function(&mut tx, function.function_id).await?.state;
            return Err(StoreError::StateConflict {
                function: function.name.clone(),
                expected: expected_state,
                actual,
            });
        }
        sqlx::query(
            "UPDATE function_configs SET memory_mb = $1, timeout_seconds = $2, ephemeral_storage_mb = $3, \
             environment_variables = $4, vpc_config = $5, layers = $6, dead_letter_queue = $7, tracing_mode = $8, \
             updated_at = $9 WHERE function_id = $10 AND version_id IS NULL",
        )
        .bind(settings.memory_size as i64)
        .bind(settings.timeout as i64)
        .bind(settings.ephemeral_storage as i64)
        .bind(to_json(&settings.environment))
        .bind(settings.vpc_config.as_ref().map(to_json))
        .bind(to_json(&settings.layers))
        .bind(&settings.dead_letter_queue)
        .bind(settings.tracing_mode.as_db_str())
        .bind(timestamp(now()))
        .bind(function.function_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_function(&self, function_id: Uuid) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let id = function_id.to_string();
        for statement in [
            "DELETE FROM aliases WHERE function_id = $1",
            "DELETE FROM provisioned_concurrency WHERE function_id = $1",
            "DELETE FROM event_source_mappings WHERE function_id = $1",
            "DELETE FROM function_configs WHERE function_id = $1",
            "DELETE FROM function_versions WHERE function_id = $1",
            "DELETE FROM functions WHERE function_id = $1",
        ] {
            sqlx::query(statement).bind(&id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn publish_version(&self, function_id: Uuid, description: Option<&str>) -> Result<(VersionRecord, bool)> {
        let mut tx = self.writer.begin().await?;
        let function = Self::fetch_function(&mut tx, function_id).await?;
        if function.state != FunctionState::Active {
            return Err(StoreError::StateConflict {
                function: function.name,
                expected: FunctionState::Active,
                actual: function.state,
            });
        }

        let newest = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} WHERE v.function_id = $1 ORDER BY v.version_number DESC LIMIT 1"
        ))
        .bind(function_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = newest {
            let newest = version_from_row(&row)?;
            if newest.code.sha256 == function.code.sha256 && same_settings(&newest.settings, &function.settings) {
                return Ok((newest, false));
            }
        }

        let number: i64 = sqlx::query_scalar(
            "UPDATE functions SET last_version_number = last_version_number + 1 WHERE function_id = $1 \
             RETURNING last_version_number",
        )
        .bind(function_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let mut settings = function.settings.clone();
        if let Some(description) = description {
            settings.description = description.to_string();
        }
        let version = VersionRecord {
            version_id: Uuid::new_v4(),
            function_id,
            number: number as u32,
            description: settings.description.clone(),
            settings,
            code: function.code.clone(),
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO function_versions (version_id, function_id, version_number, code_sha256, code_location, \
             code_size_bytes, runtime, handler, role_arn, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(version.version_id.to_string())
        .bind(function_id.to_string())
        .bind(number)
        .bind(&version.code.sha256)
        .bind(&version.code.location)
        .bind(version.code.size as i64)
        .bind(&version.settings.runtime)
        .bind(&version.settings.handler)
        .bind(&version.settings.role)
        .bind(&version.settings.description)
        .bind(timestamp(version.created_at))
        .execute(&mut *tx)
        .await?;
        insert_config(&mut tx, function_id, Some(version.version_id), &version.settings, None).await?;
        tx.commit().await?;
        Ok((version, true))
    }

    async fn get_version(&self, function_id: Uuid, number: u32) -> Result<Option<VersionRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} WHERE v.function_id = $1 AND v.version_number = $2"
        ))
        .bind(function_id.to_string())
        .bind(number as i64)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn list_versions(&self, function_id: Uuid, after: Option<u32>, limit: u32) -> Result<Vec<VersionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} WHERE v.function_id = $1 AND v.version_number > $2 \
             ORDER BY v.version_number LIMIT $3"
        ))
        .bind(function_id.to_string())
        .bind(after.unwrap_or(0) as i64)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn delete_version(&self, function_id: Uuid, function_name: &str, number: u32) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let alias: Option<String> = sqlx::query_scalar(
            "SELECT name FROM aliases WHERE function_id = $1 AND (function_version = $2 OR additional_version = $3) \
             ORDER BY name LIMIT 1",
        )
        .bind(function_id.to_string())
        .bind(number.to_string())
        .bind(number as i64)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(alias) = alias {
            return Err(StoreError::VersionInUse {
                function: function_name.to_string(),
                version: number,
                alias,
            });
        }
        let version_id: Option<String> = sqlx::query_scalar(
            "SELECT version_id FROM function_versions WHERE function_id = $1 AND version_number = $2",
        )
        .bind(function_id.to_string())
        .bind(number as i64)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version_id) = version_id else {
            return Err(StoreError::NotFound {
                resource: "version",
                name: format!("{function_name}:{number}"),
            });
        };
        sqlx::query("DELETE FROM function_configs WHERE version_id = $1")
            .bind(&version_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM function_versions WHERE version_id = $1")
            .bind(&version_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_alias(&self, function_id: Uuid, alias: &AliasRecord) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "UPDATE aliases SET function_version = $1, description = $2, additional_version = $3, \
             additional_weight = $4, updated_at = $5 WHERE function_id = $6 AND name = $7",
        )
        .bind(&alias.function_version)
        .bind(&alias.description)
        .bind(alias.additional_version.map(|(v, _)| v as i64))
        .bind(alias.additional_version.map(|(_, w)| w))
        .bind(timestamp(now()))
        .bind(function_id.to_string())
        .bind(&alias.name)
        .execute(&mut *tx)
        .await?;
        let created = updated.rows_affected() == 0;
        if created {
            sqlx::query(
                "INSERT INTO aliases (alias_id, function_id, name, function_version, description, \
                 additional_version, additional_weight, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(function_id.to_string())
            .bind(&alias.name)
            .bind(&alias.function_version)
            .bind(&alias.description)
            .bind(alias.additional_version.map(|(v, _)| v as i64))
            .bind(alias.additional_version.map(|(_, w)| w))
            .bind(timestamp(now()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn get_alias(&self, function_id: Uuid, name: &str) -> Result<Option<AliasRecord>> {
        let row = sqlx::query(
            "SELECT name, function_version, description, additional_version, additional_weight FROM aliases \
             WHERE function_id = $1 AND name = $2",
        )
        .bind(function_id.to_string())
        .bind(name)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(alias_from_row).transpose()
    }

    async fn list_aliases(&self, function_id: Uuid) -> Result<Vec<AliasRecord>> {
        let rows = sqlx::query(
            "SELECT name, function_version, description, additional_version, additional_weight FROM aliases \
             WHERE function_id = $1 ORDER BY name",
        )
        .bind(function_id.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(alias_from_row).collect()
    }

    async fn delete_alias(&self, function_id: Uuid, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM aliases WHERE function_id = $1 AND name = $2")
            .bind(function_id.to_string())
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn set_reserved_concurrency(&self, account_id: Uuid, function_id: Uuid, value: Option<u32>) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        if let Some(requested) = value {
            let limit: i64 = sqlx::query_scalar("SELECT concurrency_limit FROM accounts WHERE account_id = $1")
                .bind(account_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
            let others: i64 = sqlx::query_scalar(
                "SELECT COALESCE(SUM(c.reserved_concurrency), 0) FROM function_configs c \
                 JOIN functions f ON f.function_id = c.function_id \
                 WHERE f.account_id = $1 AND c.version_id IS NULL AND f.function_id <> $2",
            )
            .bind(account_id.to_string())
            .bind(function_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
            let unreserved = limit - others - requested as i64;
            let minimum = min_unreserved_concurrency(limit as u32);
            if unreserved < minimum as i64 {
                return Err(StoreError::ReservedConcurrencyExceeded {
                    requested,
                    unreserved,
                    limit: limit as u32,
                    minimum,
                    max_allowed: (limit - others - minimum as i64).max(0),
                });
            }
        }
        sqlx::query("UPDATE function_configs SET reserved_concurrency = $1, updated_at = $2 WHERE function_id = $3 AND version_id IS NULL")
            .bind(value.map(|v| v as i64))
            .bind(timestamp(now()))
            .bind(function_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_invocations(&self, records: &[InvocationRecord], logs: &[LogEvent]) -> Result<()> {
        // Multi-row INSERTs: every statement is a round trip to sqlx's SQLite thread,
        // which cost more than the insert itself when each row had its own.
        let mut tx = self.writer.begin().await?;
        for chunk in records.chunks(RECORDS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO invocations (request_id, function_id, version, account_id, trigger_type, invocation_type, \
                 start_time, end_time, duration_ms, billed_duration_ms, memory_used_mb, init_duration_ms, status, \
                 error_type, cold_start, slot_id, trace_id, sandbox_ms, code_ms, code_tier, runtime_init_ms, \
                 user_init_ms) ",
            );
            insert.push_values(chunk, |mut row, record| {
                row.push_bind(&record.request_id)
                    .push_bind(record.function_id.to_string())
                    .push_bind(&record.version)
                    .push_bind(record.account_id.to_string())
                    .push_bind(&record.trigger_type)
                    .push_bind(&record.invocation_type)
                    .push_bind(timestamp(record.start_time))
                    .push_bind(timestamp(record.end_time))
                    .push_bind(record.duration_ms)
                    .push_bind(record.billed_duration_ms as i64)
                    .push_bind(record.memory_used_mb as i64)
                    .push_bind(record.init_duration_ms)
                    .push_bind(&record.status)
                    .push_bind(&record.error_type)
                    .push_bind(record.cold_start)
                    .push_bind(&record.slot_id)
                    .push_bind(&record.trace_id)
                    .push_bind(record.sandbox_ms)
                    .push_bind(record.code_ms)
                    .push_bind(&record.code_tier)
                    .push_bind(record.runtime_init_ms)
                    .push_bind(record.user_init_ms);
            });
            insert.build().execute(&mut *tx).await?;
        }
        for chunk in logs.chunks(LOG_EVENTS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO log_events (function_id, request_id, timestamp_ms, message) ",
            );
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(event.function_id.to_string())
                    .push_bind(&event.request_id)
                    .push_bind(event.timestamp_ms)
                    .push_bind(&event.message);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_invocations(
        &self,
        function_id: Uuid,
        before: Option<OffsetDateTime>,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>> {
        // RFC 3339 UTC strings of one format sort in time order.
        let before = before.map(timestamp).unwrap_or_else(|| "9999".to_string());
        let rows = sqlx::query(
            "SELECT * FROM invocations WHERE function_id = $1 AND start_time < $2 \
             ORDER BY start_time DESC, invocation_id DESC LIMIT $3",
        )
        .bind(function_id.to_string())
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(invocation_from_row).collect()
    }

    async fn query_logs(&self, function_id: Uuid, query: &LogQuery) -> Result<Vec<LogEvent>> {
        let rows = sqlx::query(
            "SELECT sequence, function_id, request_id, timestamp_ms, message FROM log_events \
             WHERE function_id = $1 AND ($2 IS NULL OR request_id = $2) AND ($3 IS NULL OR timestamp_ms >= $3) \
             AND ($4 IS NULL OR timestamp_ms < $4) AND ($5 IS NULL OR sequence > $5) ORDER BY sequence LIMIT $6",
        )
        .bind(function_id.to_string())
        .bind(&query.request_id)
        .bind(query.start_ms)
        .bind(query.end_ms)
        .bind(query.after_sequence)
        .bind(query.limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(log_event_from_row).collect()
    }

    async fn prune_logs(&self, before_ms: i64) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        let deleted = sqlx::query("DELETE FROM log_events WHERE timestamp_ms < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        let cutoff = OffsetDateTime::from_unix_timestamp_nanos(before_ms as i128 * 1_000_000)
            .map_err(|e| StoreError::Corrupt(format!("timestamp {before_ms}: {e}")))?;
        sqlx::query("DELETE FROM invocations WHERE start_time < $1")
            .bind(timestamp(cutoff))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected())
    }

    async fn enqueue_event(&self, event: &AsyncEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO async_events (event_id, account_id, function_id, qualifier, payload, client_context, trace_id, \
             attempts, next_attempt_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&event.event_id)
        .bind(event.account_id.to_string())
        .bind(event.function_id.to_string())
        .bind(&event.qualifier)
        .bind(&event.payload)
        .bind(&event.client_context)
        .bind(&event.trace_id)
        .bind(event.attempts as i64)
        .bind(event.next_attempt_ms)
        .bind(event.created_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn claim_events(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<AsyncEvent>> {
        let rows = sqlx::query(
            "UPDATE async_events SET lease_until_ms = $1 WHERE event_id IN (\
             SELECT event_id FROM async_events WHERE next_attempt_ms <= $2 \
             AND (lease_until_ms IS NULL OR lease_until_ms <= $2) ORDER BY next_attempt_ms LIMIT $3) \
             RETURNING event_id, account_id, function_id, qualifier, payload, client_context, trace_id, attempts, \
             next_attempt_ms, created_ms",
        )
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(async_event_from_row).collect()
    }

    async fn retry_event(&self, event_id: &str, attempts: u32, next_attempt_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE async_events SET attempts = $1, next_attempt_ms = $2, lease_until_ms = NULL WHERE event_id = $3",
        )
        .bind(attempts as i64)
        .bind(next_attempt_ms)
        .bind(event_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn delete_event(&self, event_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM async_events WHERE event_id = $1")
            .bind(event_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn release_event_leases(&self) -> Result<u64> {
        let released = sqlx::query("UPDATE async_events SET lease_until_ms = NULL WHERE lease_until_ms IS NOT NULL")
            .execute(&self.writer)
            .await?;
        Ok(released.rows_affected())
    }

    async fn get_function_by_id(&self, function_id: Uuid) -> Result<Option<FunctionRecord>> {
        let row = sqlx::query(&format!("SELECT {FUNCTION_COLUMNS} WHERE f.function_id = $1"))
            .bind(function_id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(function_from_row).transpose()
    }

    async fn count_events(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM async_events")
            .fetch_one(&self.reader)
            .await?;
        Ok(count as u64)
    }

    async fn put_provisioned_concurrency(&self, config: &ProvisionedConcurrencyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO provisioned_concurrency (function_id, qualifier, resolved_version, requested, status, \
             status_reason, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (function_id, qualifier) DO UPDATE SET resolved_version = excluded.resolved_version, \
             requested = excluded.requested, status = excluded.status, status_reason = excluded.status_reason, \
             updated_at = excluded.updated_at",
        )
        .bind(config.function_id.to_string())
        .bind(&config.qualifier)
        .bind(&config.resolved_version)
        .bind(config.requested as i64)
        .bind(config.status.as_str())
        .bind(&config.status_reason)
        .bind(timestamp(config.created_at))
        .bind(timestamp(config.updated_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_provisioned_concurrency(
        &self,
        function_id: Uuid,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConcurrencyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {PROVISIONED_COLUMNS} WHERE function_id = $1 AND qualifier = $2"
        ))
        .bind(function_id.to_string())
        .bind(qualifier)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(provisioned_from_row).transpose()
    }

    async fn list_provisioned_concurrency(&self, function_id: Uuid) -> Result<Vec<ProvisionedConcurrencyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROVISIONED_COLUMNS} WHERE function_id = $1 ORDER BY qualifier"
        ))
        .bind(function_id.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(provisioned_from_row).collect()
    }

    async fn list_all_provisioned_concurrency(&self) -> Result<Vec<ProvisionedConcurrencyRecord>> {
        let rows = sqlx::query(&format!("SELECT {PROVISIONED_COLUMNS} ORDER BY function_id, qualifier"))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(provisioned_from_row).collect()
    }

    async fn delete_provisioned_concurrency(&self, function_id: Uuid, qualifier: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM provisioned_concurrency WHERE function_id = $1 AND qualifier = $2")
            .bind(function_id.to_string())
            .bind(qualifier)
            .execute(&self.writer)
            .await?;
        Ok(deleted.rows_affected() > 0)
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
        let updated = sqlx::query(
            "UPDATE provisioned_concurrency SET resolved_version = $1, status = $2, status_reason = $3, \
             updated_at = $4 WHERE function_id = $5 AND qualifier = $6 AND requested = $7",
        )
        .bind(resolved_version)
        .bind(status.as_str())
        .bind(status_reason)
        .bind(timestamp(now()))
        .bind(function_id.to_string())
        .bind(qualifier)
        .bind(expected_requested as i64)
        .execute(&self.writer)
        .await?;
        Ok(updated.rows_affected() > 0)
    }

    async fn heartbeat_worker_host(&self, host_id: u32, availability_zone: &str, now_ms: i64) -> Result<String> {
        let state: String = sqlx::query_scalar(
            "INSERT INTO worker_hosts (host_id, availability_zone, last_heartbeat_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (host_id) DO UPDATE SET availability_zone = excluded.availability_zone, \
             last_heartbeat_ms = excluded.last_heartbeat_ms RETURNING desired_state",
        )
        .bind(i64::from(host_id))
        .bind(availability_zone)
        .bind(now_ms)
        .fetch_one(&self.writer)
        .await?;
        Ok(state)
    }

    async fn list_worker_hosts(&self) -> Result<Vec<WorkerHostRecord>> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT host_id, availability_zone, desired_state, last_heartbeat_ms FROM worker_hosts ORDER BY host_id",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(host_id, availability_zone, desired_state, last_heartbeat_ms)| WorkerHostRecord {
                    host_id: host_id as u32,
                    availability_zone,
                    desired_state,
                    last_heartbeat_ms,
                },
            )
            .collect())
    }

    async fn set_worker_host_state(&self, host_id: u32, desired_state: &str) -> Result<bool> {
        let result = sqlx::query("UPDATE worker_hosts SET desired_state = $1 WHERE host_id = $2")
            .bind(desired_state)
            .bind(i64::from(host_id))
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}
