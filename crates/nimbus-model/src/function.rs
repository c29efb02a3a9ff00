use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::{Environment, FunctionSettings, TracingMode, VpcConfig};
use crate::names::LATEST;
use crate::state::FunctionState;

/// A stored code package, addressed by the sha256 of its zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    pub sha256: String,
    pub size: u64,
    /// Key of the package in the origin store.
    pub location: String,
}

/// A function and its `$LATEST` settings and code.
#[derive(Debug, Clone)]
pub struct FunctionRecord {
    pub function_id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub state: FunctionState,
    pub state_reason: Option<String>,
    pub settings: FunctionSettings,
    pub code: CodeInfo,
    pub reserved_concurrency: Option<u32>,
    pub created_at: OffsetDateTime,
    pub last_modified: OffsetDateTime,
}

/// A published version: a frozen copy of settings and code.
#[derive(Debug, Clone)]
pub struct VersionRecord {
    pub version_id: Uuid,
    pub function_id: Uuid,
    pub number: u32,
    pub description: String,
    pub settings: FunctionSettings,
    pub code: CodeInfo,
    pub created_at: OffsetDateTime,
}

/// A function's configuration as the API returns it, for `$LATEST` or a version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionConfiguration {
    pub function_name: String,
    pub function_arn: String,
    pub runtime: String,
    pub role: Option<String>,
    pub handler: String,
    /// Size of the zip in bytes.
    pub code_size: u64,
    /// Lowercase hex sha256 of the zip.
    pub code_sha256: String,
    pub description: String,
    pub memory_size: u32,
    pub timeout: u32,
    pub ephemeral_storage: u32,
    pub environment: Environment,
    pub vpc_config: Option<VpcConfig>,
    pub dead_letter_queue: Option<String>,
    pub tracing_mode: TracingMode,
    pub layers: Vec<String>,
    /// `$LATEST` or a version number.
    pub version: String,
    pub state: FunctionState,
    pub state_reason: Option<String>,
    /// RFC 3339 time of the last change.
    pub last_modified: String,
    pub reserved_concurrent_executions: Option<u32>,
}

/// ARN of a function, optionally qualified with a version or alias.
pub fn function_arn(region: &str, account_number: &str, name: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(qualifier) => format!("arn:aws:lambda:{region}:{account_number}:function:{name}:{qualifier}"),
        None => format!("arn:aws:lambda:{region}:{account_number}:function:{name}"),
    }
}

impl FunctionConfiguration {
    fn build(
        function: &FunctionRecord,
        arn: String,
        version: String,
        settings: &FunctionSettings,
        code: &CodeInfo,
        last_modified: OffsetDateTime,
    ) -> Self {
        FunctionConfiguration {
            function_name: function.name.clone(),
            function_arn: arn,
            runtime: settings.runtime.clone(),
            role: settings.role.clone(),
            handler: settings.handler.clone(),
            code_size: code.size,
            code_sha256: code.sha256.clone(),
            description: settings.description.clone(),
            memory_size: settings.memory_size,
            timeout: settings.timeout,
            ephemeral_storage: settings.ephemeral_storage,
            environment: Environment {
                variables: settings.environment.clone(),
            },
            vpc_config: settings.vpc_config.clone(),
            dead_letter_queue: settings.dead_letter_queue.clone(),
            tracing_mode: settings.tracing_mode,
            layers: settings.layers.clone(),
            version,
            state: function.state,
            state_reason: function.state_reason.clone(),
            last_modified: crate::format_timestamp(last_modified),
            reserved_concurrent_executions: function.reserved_concurrency,
        }
    }

    pub fn latest(function: &FunctionRecord, region: &str, account_number: &str) -> Self {
        let arn = function_arn(region, account_number, &function.name, None);
        Self::build(
            function,
            arn,
            LATEST.to_string(),
            &function.settings,
            &function.code,
            function.last_modified,
        )
    }

    pub fn version(function: &FunctionRecord, version: &VersionRecord, region: &str, account_number: &str) -> Self {
        let number = version.number.to_string();
        let arn = function_arn(region, account_number, &function.name, Some(&number));
        let mut configuration = Self::build(
            function,
            arn,
            number,
            &version.settings,
            &version.code,
            version.created_at,
        );
        // A published version is immutable and was Active when it was published.
        configuration.state = FunctionState::Active;
        configuration.state_reason = None;
        configuration
    }
}
