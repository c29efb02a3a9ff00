//! Function configuration: the request bodies that create and change functions, the
//! per-version settings they produce, and every validation rule on them.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ValidationError;
use crate::runtime::Runtime;

pub const MEMORY_MB: (i64, i64) = (128, 10240);
pub const TIMEOUT_SECONDS: (i64, i64) = (1, 900);
pub const EPHEMERAL_STORAGE_MB: (i64, i64) = (512, 10240);
pub const DEFAULT_MEMORY_MB: u32 = 128;
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 3;
pub const DEFAULT_EPHEMERAL_STORAGE_MB: u32 = 512;
/// Lambda's limit on all environment variables of a function: keys plus values.
pub const MAX_ENVIRONMENT_BYTES: usize = 4096;
pub const MAX_DESCRIPTION_LEN: usize = 256;
pub const MAX_LAYERS: usize = 5;
pub const MAX_SUBNETS: usize = 16;
pub const MAX_SECURITY_GROUPS: usize = 5;

/// Variables the platform sets in every execution environment; Lambda rejects them
/// as user variables, and so does Nimbus.
pub const RESERVED_ENVIRONMENT_KEYS: &[&str] = &[
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_REGION",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
];

static ENV_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z][a-zA-Z0-9_]+$").unwrap());
static ROLE_ARN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-/]+$").unwrap());
static QUEUE_ARN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^arn:aws[a-zA-Z-]*:(sqs|sns):[a-z0-9-]+:\d{12}:[a-zA-Z0-9_.\-]+$").unwrap());
static LAYER_ARN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[a-zA-Z0-9_\-]+:[0-9]+$").unwrap());
static SUBNET_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^subnet-[0-9a-z]+$").unwrap());
static SECURITY_GROUP_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^sg-[0-9a-z]+$").unwrap());

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum TracingMode {
    Active,
    #[default]
    PassThrough,
}

impl TracingMode {
    pub fn as_db_str(self) -> &'static str {
        match self {
            TracingMode::Active => "ACTIVE",
            TracingMode::PassThrough => "PASSTHROUGH",
        }
    }

    pub fn from_db_str(value: &str) -> Option<Self> {
        match value {
            "ACTIVE" => Some(TracingMode::Active),
            "PASSTHROUGH" => Some(TracingMode::PassThrough),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcConfig {
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
}

/// Source of a code package: inline base64 (`zip_file`) or an object in the
/// origin store (`s3_bucket` and `s3_key`, optionally pinned to `s3_object_version`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeLocation {
    /// The zip file, base64-encoded; at most 50 MB before encoding.
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub s3_object_version: Option<String>,
}

/// A code location after its shape has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeSource {
    Inline(String),
    Object {
        bucket: String,
        key: String,
        version_id: Option<String>,
    },
}

impl CodeLocation {
    pub fn source(&self, field: &str) -> Result<CodeSource, ValidationError> {
        let has_object = self.s3_bucket.is_some() || self.s3_key.is_some() || self.s3_object_version.is_some();
        match (&self.zip_file, has_object) {
            (Some(_), true) => Err(ValidationError::new(
                field,
                "code has both zip_file and s3_bucket/s3_key; give one of them",
            )),
            (Some(zip), false) => Ok(CodeSource::Inline(zip.clone())),
            (None, true) => match (&self.s3_bucket, &self.s3_key) {
                (Some(bucket), Some(key)) => Ok(CodeSource::Object {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    version_id: self.s3_object_version.clone(),
                }),
                _ => Err(ValidationError::new(
                    field,
                    "code refers to an object without both s3_bucket and s3_key; give both",
                )),
            },
            (None, false) => Err(ValidationError::new(
                field,
                "code is missing; give zip_file (base64 zip) or s3_bucket and s3_key",
            )),
        }
    }
}

/// Body of `PUT /functions/{name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFunctionRequest {
    /// Runtime id in AWS spelling, for example `python3.11` or `nodejs20.x`.
    pub runtime: String,
    /// Entry point, for example `app.handler` (file `app.py`, function `handler`).
    pub handler: String,
    /// Execution role ARN; stored and reported, not enforced.
    pub role: Option<String>,
    pub code: CodeLocation,
    pub description: Option<String>,
    /// Memory in MB, 128 to 10240; default 128.
    pub memory_size: Option<i64>,
    /// Timeout in seconds, 1 to 900; default 3.
    pub timeout: Option<i64>,
    /// Size of `/tmp` in MB, 512 to 10240; default 512.
    pub ephemeral_storage: Option<i64>,
    pub environment: Option<Environment>,
    pub vpc_config: Option<VpcConfig>,
    /// ARN of an SQS queue or SNS topic for failed asynchronous events.
    pub dead_letter_queue: Option<String>,
    pub tracing_mode: Option<TracingMode>,
    /// Layer version ARNs, at most 5.
    pub layers: Option<Vec<String>>,
    /// Publish version 1 right after creation.
    #[serde(default)]
    pub publish: bool,
}

/// Body of `PUT /functions/{name}/code`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCodeRequest {
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub s3_object_version: Option<String>,
    /// Publish a version once the code is stored; the response then names it.
    #[serde(default)]
    pub publish: bool,
}

impl UpdateCodeRequest {
    pub fn location(&self) -> CodeLocation {
        CodeLocation {
            zip_file: self.zip_file.clone(),
            s3_bucket: self.s3_bucket.clone(),
            s3_key: self.s3_key.clone(),
            s3_object_version: self.s3_object_version.clone(),
        }
    }
}

/// Body of `PUT /functions/{name}/configuration`: every field is optional, and an
/// absent field keeps its value. Empty `variables`, `layers`, `subnet_ids` or an
/// empty `dead_letter_queue` string clear the setting.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfigRequest {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: Option<String>,
    pub description: Option<String>,
    pub memory_size: Option<i64>,
    pub timeout: Option<i64>,
    pub ephemeral_storage: Option<i64>,
    pub environment: Option<Environment>,
    pub vpc_config: Option<VpcConfig>,
    pub dead_letter_queue: Option<String>,
    pub tracing_mode: Option<TracingMode>,
    pub layers: Option<Vec<String>>,
}

/// The configuration that a version freezes: everything but the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSettings {
    pub runtime: String,
    pub handler: String,
    pub role: Option<String>,
    pub description: String,
    pub memory_size: u32,
    pub timeout: u32,
    pub ephemeral_storage: u32,
    pub environment: BTreeMap<String, String>,
    pub vpc_config: Option<VpcConfig>,
    pub dead_letter_queue: Option<String>,
    pub tracing_mode: TracingMode,
    pub layers: Vec<String>,
}

fn check_range(field: &str, value: i64, (min, max): (i64, i64), unit: &str) -> Result<u32, ValidationError> {
    if value < min || value > max {
        return Err(ValidationError::new(
            field,
            format!("{field} {value} is out of range; use {min} to {max} {unit}"),
        ));
    }
    Ok(value as u32)
}

fn check_description(description: &str) -> Result<(), ValidationError> {
    let length = description.chars().count();
    if length > MAX_DESCRIPTION_LEN {
        return Err(ValidationError::new(
            "description",
            format!("description is {length} characters long; use at most {MAX_DESCRIPTION_LEN}"),
        ));
    }
    Ok(())
}

fn check_role(role: &str) -> Result<(), ValidationError> {
    if !ROLE_ARN.is_match(role) {
        return Err(ValidationError::new(
            "role",
            format!("role '{role}' is not an IAM role ARN; use the form arn:aws:iam::123456789012:role/NAME"),
        ));
    }
    Ok(())
}

/// Checks environment variable keys as Lambda does (a letter, then at least one
/// letter, digit or underscore), reserved names, and the 4 KB total.
pub fn check_environment(variables: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    let mut total = 0;
    for (key, value) in variables {
        let field = format!("environment.variables.{key}");
        if !ENV_KEY.is_match(key) {
            return Err(ValidationError::new(
                field,
                format!(
                    "environment variable name '{key}' is invalid; start with a letter followed by at least one letter, digit or underscore, as Lambda requires"
                ),
            ));
        }
        if RESERVED_ENVIRONMENT_KEYS.contains(&key.as_str()) {
            return Err(ValidationError::new(
                field,
                format!("environment variable name '{key}' is reserved for the platform; choose another name"),
            ));
        }
        total += key.len() + value.len();
    }
    if total > MAX_ENVIRONMENT_BYTES {
        return Err(ValidationError::new(
            "environment.variables",
            format!(
                "environment variables take {total} bytes (keys plus values); the limit is {MAX_ENVIRONMENT_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

fn check_vpc_config(vpc: &VpcConfig) -> Result<(), ValidationError> {
    if vpc.subnet_ids.len() > MAX_SUBNETS {
        return Err(ValidationError::new(
            "vpc_config.subnet_ids",
            format!(
                "vpc_config has {} subnet ids; use at most {MAX_SUBNETS}",
                vpc.subnet_ids.len()
            ),
        ));
    }
    if vpc.security_group_ids.len() > MAX_SECURITY_GROUPS {
        return Err(ValidationError::new(
            "vpc_config.security_group_ids",
            format!(
                "vpc_config has {} security group ids; use at most {MAX_SECURITY_GROUPS}",
                vpc.security_group_ids.len()
            ),
        ));
    }
    if let Some(bad) = vpc.subnet_ids.iter().find(|id| !SUBNET_ID.is_match(id)) {
        return Err(ValidationError::new(
            "vpc_config.subnet_ids",
            format!("subnet id '{bad}' is invalid; use the form subnet-0abc123"),
        ));
    }
    if let Some(bad) = vpc.security_group_ids.iter().find(|id| !SECURITY_GROUP_ID.is_match(id)) {
        return Err(ValidationError::new(
            "vpc_config.security_group_ids",
            format!("security group id '{bad}' is invalid; use the form sg-0abc123"),
        ));
    }
    Ok(())
}

fn check_dead_letter_queue(arn: &str) -> Result<(), ValidationError> {
    if !QUEUE_ARN.is_match(arn) {
        return Err(ValidationError::new(
            "dead_letter_queue",
            format!(
                "dead_letter_queue '{arn}' is not an SQS queue or SNS topic ARN; use the form arn:aws:sqs:us-east-1:123456789012:NAME"
            ),
        ));
    }
    Ok(())
}

fn check_layers(layers: &[String]) -> Result<(), ValidationError> {
    if layers.len() > MAX_LAYERS {
        return Err(ValidationError::new(
            "layers",
            format!(
                "{} layers were given; a function can use at most {MAX_LAYERS}",
                layers.len()
            ),
        ));
    }
    if let Some(bad) = layers.iter().find(|arn| !LAYER_ARN.is_match(arn)) {
        return Err(ValidationError::new(
            "layers",
            format!(
                "layer '{bad}' is not a layer version ARN; use the form arn:aws:lambda:us-east-1:123456789012:layer:NAME:1"
            ),
        ));
    }
    Ok(())
}

impl FunctionSettings {
    /// Builds the settings of a new function, applying Lambda's defaults.
    pub fn from_create(request: &CreateFunctionRequest) -> Result<Self, ValidationError> {
        let mut settings = FunctionSettings {
            runtime: String::new(),
            handler: String::new(),
            role: None,
            description: String::new(),
            memory_size: DEFAULT_MEMORY_MB,
            timeout: DEFAULT_TIMEOUT_SECONDS,
            ephemeral_storage: DEFAULT_EPHEMERAL_STORAGE_MB,
            environment: BTreeMap::new(),
            vpc_config: None,
            dead_letter_queue: None,
            tracing_mode: TracingMode::PassThrough,
            layers: Vec::new(),
        };
        settings.apply(&UpdateConfigRequest {
            runtime: Some(request.runtime.clone()),
            handler: Some(request.handler.clone()),
            role: request.role.clone(),
            description: request.description.clone(),
            memory_size: request.memory_size,
            timeout: request.timeout,
            ephemeral_storage: request.ephemeral_storage,
            environment: request.environment.clone(),
            vpc_config: request.vpc_config.clone(),
            dead_letter_queue: request.dead_letter_queue.clone(),
            tracing_mode: request.tracing_mode,
            layers: request.layers.clone(),
        })?;
        Ok(settings)
    }

    /// Applies an update, validating every given field. On error `self` may be
    /// partly changed, so callers apply to a copy.
    pub fn apply(&mut self, update: &UpdateConfigRequest) -> Result<(), ValidationError> {
        if let Some(runtime) = &update.runtime {
            Runtime::parse(runtime)?;
            self.runtime = runtime.clone();
        }
        if let Some(handler) = &update.handler {
            self.handler = handler.clone();
        }
        Runtime::parse(&self.runtime)?.validate_handler(&self.handler)?;
        if let Some(role) = &update.role {
            check_role(role)?;
            self.role = Some(role.clone());
        }
        if let Some(description) = &update.description {
            check_description(description)?;
            self.description = description.clone();
        }
        if let Some(memory) = update.memory_size {
            self.memory_size = check_range("memory_size", memory, MEMORY_MB, "MB")?;
        }
        if let Some(timeout) = update.timeout {
            self.timeout = check_range("timeout", timeout, TIMEOUT_SECONDS, "seconds")?;
        }
        if let Some(storage) = update.ephemeral_storage {
            self.ephemeral_storage = check_range("ephemeral_storage", storage, EPHEMERAL_STORAGE_MB, "MB")?;
        }
        if let Some(environment) = &update.environment {
            check_environment(&environment.variables)?;
            self.environment = environment.variables.clone();
        }
        if let Some(vpc) = &update.vpc_config {
            check_vpc_config(vpc)?;
            let empty = vpc.subnet_ids.is_empty() && vpc.security_group_ids.is_empty();
            self.vpc_config = if empty { None } else { Some(vpc.clone()) };
        }
        if let Some(arn) = &update.dead_letter_queue {
            if arn.is_empty() {
                self.dead_letter_queue = None;
            } else {
                check_dead_letter_queue(arn)?;
                self.dead_letter_queue = Some(arn.clone());
            }
        }
        if let Some(mode) = update.tracing_mode {
            self.tracing_mode = mode;
        }
        if let Some(layers) = &update.layers {
            check_layers(layers)?;
            self.layers = layers.clone();
        }
        Ok(())
    }

    pub fn runtime(&self) -> Runtime {
        // Settings are only built through `apply`, which checked the id.
        Runtime::parse(&self.runtime).expect("stored runtime id is known")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: serde_json::Value) -> Result<FunctionSettings, ValidationError> {
        let request: CreateFunctionRequest = serde_json::from_value(json).unwrap();
        FunctionSettings::from_create(&request)
    }

    fn base() -> serde_json::Value {
        serde_json::json!({"runtime": "python3.11", "handler": "app.handler", "code": {"zip_file": "UEs="}})
    }

    fn with(field: &str, value: serde_json::Value) -> serde_json::Value {
        let mut body = base();
        body[field] = value;
        body
    }

    fn error_of(json: serde_json::Value) -> ValidationError {
        create(json).expect_err("validation should fail")
    }

    #[test]
    fn defaults_match_lambda() {
        let settings = create(base()).unwrap();
        assert_eq!(settings.memory_size, 128);
        assert_eq!(settings.timeout, 3);
        assert_eq!(settings.ephemeral_storage, 512);
        assert_eq!(settings.tracing_mode, TracingMode::PassThrough);
        assert!(settings.environment.is_empty());
        assert_eq!(settings.role, None);
    }

    #[test]
    fn memory_size_range() {
        assert_eq!(create(with("memory_size", 10240.into())).unwrap().memory_size, 10240);
        assert_eq!(create(with("memory_size", 128.into())).unwrap().memory_size, 128);
        for bad in [127, 10241, -1, 0] {
            let error = error_of(with("memory_size", bad.into()));
            assert_eq!(error.field, "memory_size");
            assert_eq!(
                error.message,
                format!("memory_size {bad} is out of range; use 128 to 10240 MB")
            );
        }
    }

    #[test]
    fn timeout_range() {
        assert_eq!(create(with("timeout", 900.into())).unwrap().timeout, 900);
        for bad in [0, 901] {
            let error = error_of(with("timeout", bad.into()));
            assert_eq!(
                error.message,
                format!("timeout {bad} is out of range; use 1 to 900 seconds")
            );
        }
    }

    #[test]
    fn ephemeral_storage_range() {
        assert_eq!(
            create(with("ephemeral_storage", 10240.into()))
                .unwrap()
                .ephemeral_storage,
            10240
        );
        for bad in [511, 10241] {
            let error = error_of(with("ephemeral_storage", bad.into()));
            assert_eq!(error.field, "ephemeral_storage");
            assert!(error.message.contains("512 to 10240 MB"), "{}", error.message);
        }
    }

    #[test]
    fn environment_key_rules() {
        let ok = serde_json::json!({"variables": {"DB_HOST": "x", "ab": "y"}});
        assert_eq!(create(with("environment", ok)).unwrap().environment.len(), 2);

        for bad in ["1ABC", "A", "A-B", "_HIDDEN", "A B"] {
            let error = error_of(with("environment", serde_json::json!({"variables": {bad: "v"}})));
            assert_eq!(error.field, format!("environment.variables.{bad}"));
            assert!(error.message.contains(&format!("'{bad}'")), "{}", error.message);
        }
    }

    #[test]
    fn environment_reserved_keys() {
        for key in ["AWS_REGION", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT"] {
            let error = error_of(with("environment", serde_json::json!({"variables": {key: "v"}})));
            assert!(error.message.contains("reserved"), "{}", error.message);
        }
    }

    #[test]
    fn environment_total_size() {
        let fits = serde_json::json!({"variables": {"KEY": "v".repeat(4096 - 3)}});
        assert!(create(with("environment", fits)).is_ok());
        let over = serde_json::json!({"variables": {"KEY": "v".repeat(4096 - 2)}});
        let error = error_of(with("environment", over));
        assert_eq!(error.field, "environment.variables");
        assert!(error.message.contains("4097 bytes"), "{}", error.message);
    }

    #[test]
    fn role_format() {
        let role = "arn:aws:iam::123456789012:role/lambda-role";
        assert_eq!(create(with("role", role.into())).unwrap().role.as_deref(), Some(role));
        let error = error_of(with("role", "admin".into()));
        assert_eq!(error.field, "role");
        assert!(error.message.contains("'admin'"));
    }

    #[test]
    fn description_length() {
        assert!(create(with("description", "d".repeat(256).into())).is_ok());
        let error = error_of(with("description", "d".repeat(257).into()));
        assert!(error.message.contains("257 characters"), "{}", error.message);
    }

    #[test]
    fn vpc_config_rules() {
        let good = serde_json::json!({"subnet_ids": ["subnet-abc123"], "security_group_ids": ["sg-xyz789"]});
        assert!(create(with("vpc_config", good)).unwrap().vpc_config.is_some());

        let bad_subnet = serde_json::json!({"subnet_ids": ["net-1"]});
        assert!(error_of(with("vpc_config", bad_subnet)).message.contains("'net-1'"));
        let bad_group = serde_json::json!({"security_group_ids": ["group"]});
        assert!(error_of(with("vpc_config", bad_group)).message.contains("'group'"));

        let subnets: Vec<String> = (0..17).map(|i| format!("subnet-{i}")).collect();
        let too_many = serde_json::json!({"subnet_ids": subnets});
        assert!(error_of(with("vpc_config", too_many)).message.contains("17 subnet ids"));
    }

    #[test]
    fn dead_letter_queue_format() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:failed-events";
        assert_eq!(
            create(with("dead_letter_queue", arn.into()))
                .unwrap()
                .dead_letter_queue
                .as_deref(),
            Some(arn)
        );
        let error = error_of(with("dead_letter_queue", "my-queue".into()));
        assert_eq!(error.field, "dead_letter_queue");
        assert!(error.message.contains("'my-queue'"));
    }

    #[test]
    fn layers_rules() {
        let arn = "arn:aws:lambda:us-east-1:123456789012:layer:deps:3";
        assert_eq!(create(with("layers", serde_json::json!([arn]))).unwrap().layers, [arn]);
        let error = error_of(with("layers", serde_json::json!(["deps"])));
        assert!(error.message.contains("'deps'"));
        let six = vec![arn; 6];
        let error = error_of(with("layers", serde_json::json!(six)));
        assert!(error.message.contains("at most 5"));
    }

    #[test]
    fn runtime_and_handler_checked() {
        assert_eq!(error_of(with("runtime", "cobol".into())).field, "runtime");
        assert_eq!(error_of(with("handler", "app".into())).field, "handler");
    }

    #[test]
    fn tracing_mode_names() {
        let settings = create(with("tracing_mode", "Active".into())).unwrap();
        assert_eq!(settings.tracing_mode, TracingMode::Active);
        let parsed: Result<CreateFunctionRequest, _> = serde_json::from_value(with("tracing_mode", "On".into()));
        assert!(parsed.unwrap_err().to_string().contains("unknown variant `On`"));
    }

    #[test]
    fn update_keeps_absent_fields() {
        let mut settings = create(with("memory_size", 512.into())).unwrap();
        settings
            .apply(&UpdateConfigRequest {
                timeout: Some(30),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(settings.memory_size, 512);
        assert_eq!(settings.timeout, 30);
    }

    #[test]
    fn update_clears_with_empty_values() {
        let mut settings = create(with("dead_letter_queue", "arn:aws:sns:us-east-1:123456789012:t".into())).unwrap();
        settings
            .apply(&UpdateConfigRequest {
                dead_letter_queue: Some(String::new()),
                vpc_config: Some(VpcConfig::default()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(settings.dead_letter_queue, None);
        assert_eq!(settings.vpc_config, None);
    }

    #[test]
    fn code_location_shapes() {
        let inline = CodeLocation {
            zip_file: Some("UEs=".into()),
            ..Default::default()
        };
        assert_eq!(inline.source("code"), Ok(CodeSource::Inline("UEs=".into())));

        let object = CodeLocation {
            s3_bucket: Some("b".into()),
            s3_key: Some("k.zip".into()),
            ..Default::default()
        };
        assert!(matches!(
            object.source("code"),
            Ok(CodeSource::Object { version_id: None, .. })
        ));

        let both = CodeLocation {
            zip_file: Some("x".into()),
            s3_bucket: Some("b".into()),
            ..Default::default()
        };
        assert!(both.source("code").unwrap_err().message.contains("both"));

        let half = CodeLocation {
            s3_bucket: Some("b".into()),
            ..Default::default()
        };
        assert!(half
            .source("code")
            .unwrap_err()
            .message
            .contains("both s3_bucket and s3_key"));

        assert!(CodeLocation::default()
            .source("code")
            .unwrap_err()
            .message
            .contains("missing"));
    }

    #[test]
    fn unknown_fields_rejected() {
        let parsed: Result<CreateFunctionRequest, _> = serde_json::from_value(with("memory", 512.into()));
        assert!(parsed.unwrap_err().to_string().contains("unknown field `memory`"));
    }
}
