//! `nimbus function`: create, inspect, update, publish and delete functions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::api::{ApiClient, RequestBody};
use super::listing::{fetch_pages, PageArgs};
use super::output::{self, cell, FUNCTION_FIELDS};
use super::package;

#[derive(Debug, clap::Subcommand)]
pub enum FunctionCommand {
    /// Create a function from a code directory, a .zip file or an uploaded code object.
    Create(CreateArgs),

    /// Show a function's configuration.
    Get {
        /// Function name.
        name: String,
        /// Version number or alias to show instead of $LATEST.
        #[arg(long)]
        qualifier: Option<String>,
    },

    /// List functions.
    List(PageArgs),

    /// Replace the code of $LATEST.
    UpdateCode {
        /// Function name.
        name: String,
        #[command(flatten)]
        code: CodeArgs,
        /// Publish a new version with the new code.
        #[arg(long)]
        publish: bool,
    },

    /// Change settings of $LATEST; settings that are not given keep their values.
    UpdateConfig(UpdateConfigArgs),

    /// Publish the current code and settings of $LATEST as a new version.
    Publish {
        /// Function name.
        name: String,
        /// Description of the new version.
        #[arg(long)]
        description: Option<String>,
    },

    /// List a function's versions, $LATEST included.
    Versions {
        /// Function name.
        name: String,
        #[command(flatten)]
        page: PageArgs,
    },

    /// Delete a function, or only one of its versions.
    Delete {
        /// Function name.
        name: String,
        /// Version number to delete instead of the whole function.
        #[arg(long)]
        qualifier: Option<String>,
    },
}

/// Source of the code: a local path, or an object that `nimbus code upload` stored
/// on the server.
#[derive(Debug, clap::Args)]
pub struct CodeArgs {
    /// Directory to zip, or a .zip file to send as is.
    #[arg(long, value_name = "PATH", required_unless_present = "s3_bucket", conflicts_with_all = ["s3_bucket", "s3_key", "s3_object_version"])]
    pub code: Option<PathBuf>,

    /// Bucket of an uploaded code object.
    #[arg(long, value_name = "BUCKET", requires = "s3_key")]
    pub s3_bucket: Option<String>,

    /// Key of an uploaded code object.
    #[arg(long, value_name = "KEY", requires = "s3_bucket")]
    pub s3_key: Option<String>,

    /// Version id of the code object; without it the latest version is used.
    #[arg(long, value_name = "VERSION_ID", requires = "s3_bucket")]
    pub s3_object_version: Option<String>,
}

impl CodeArgs {
    /// Returns the code location fields of a request body: `zip_file` with the base64
    /// zip, or `s3_bucket`, `s3_key` and optionally `s3_object_version`.
    fn location(&self) -> anyhow::Result<Map<String, Value>> {
        let mut location = Map::new();
        if let Some(path) = &self.code {
            let zip = package::read_package(path)?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(zip);
            location.insert("zip_file".into(), Value::String(encoded));
            return Ok(location);
        }
        let (Some(bucket), Some(key)) = (&self.s3_bucket, &self.s3_key) else {
            bail!("code is missing; pass --code PATH, or --s3-bucket and --s3-key");
        };
        location.insert("s3_bucket".into(), json!(bucket));
        location.insert("s3_key".into(), json!(key));
        if let Some(version) = &self.s3_object_version {
            location.insert("s3_object_version".into(), json!(version));
        }
        Ok(location)
    }
}

/// Settings that `create` and `update-config` share.
#[derive(Debug, clap::Args)]
pub struct SettingsArgs {
    /// Description of the function.
    #[arg(long)]
    pub description: Option<String>,

    /// Execution role ARN; stored and reported, not enforced.
    #[arg(long, value_name = "ARN")]
    pub role: Option<String>,

    /// Memory in MB, 128 to 10240.
    #[arg(long, value_name = "MB")]
    pub memory_size: Option<u32>,

    /// Timeout in seconds, 1 to 900.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u32>,

    /// Size of /tmp in MB, 512 to 10240.
    #[arg(long, value_name = "MB")]
    pub ephemeral_storage: Option<u32>,

    /// Environment variable; repeat for more. With update-config, the given variables
    /// replace all existing ones.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_var)]
    pub env: Vec<(String, String)>,

    /// Tracing mode.
    #[arg(long, value_name = "MODE", value_parser = ["Active", "PassThrough"])]
    pub tracing_mode: Option<String>,

    /// Layer version ARN; repeat for more, at most 5. With update-config, the given
    /// layers replace all existing ones.
    #[arg(long = "layer", value_name = "ARN")]
    pub layers: Vec<String>,

    /// ARN of an SQS queue or SNS topic for events that failed asynchronous invocation.
    #[arg(long, value_name = "ARN")]
    pub dead_letter_queue: Option<String>,

    /// VPC subnet id; repeat for more. With update-config, --subnet-id and
    /// --security-group-id replace the whole VPC configuration.
    #[arg(long = "subnet-id", value_name = "ID")]
    pub subnet_ids: Vec<String>,

    /// VPC security group id; repeat for more. With update-config, --subnet-id and
    /// --security-group-id replace the whole VPC configuration.
    #[arg(long = "security-group-id", value_name = "ID")]
    pub security_group_ids: Vec<String>,
}

impl SettingsArgs {
    /// Inserts the given settings into a request body.
    fn insert_into(&self, body: &mut Map<String, Value>) -> anyhow::Result<()> {
        insert_some(body, "description", &self.description);
        insert_some(body, "role", &self.role);
        insert_some(body, "memory_size", &self.memory_size);
        insert_some(body, "timeout", &self.timeout);
        insert_some(body, "ephemeral_storage", &self.ephemeral_storage);
        insert_some(body, "tracing_mode", &self.tracing_mode);
        insert_some(body, "dead_letter_queue", &self.dead_letter_queue);
        if !self.env.is_empty() {
            body.insert(
                "environment".into(),
                json!({ "variables": environment_variables(&self.env)? }),
            );
        }
        if !self.layers.is_empty() {
            body.insert("layers".into(), json!(self.layers));
        }
        if !self.subnet_ids.is_empty() || !self.security_group_ids.is_empty() {
            body.insert(
                "vpc_config".into(),
                json!({ "subnet_ids": self.subnet_ids, "security_group_ids": self.security_group_ids }),
            );
        }
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Function name: letters, digits, hyphens and underscores.
    pub name: String,

    /// Runtime id, for example python3.11 or nodejs20.x.
    #[arg(long)]
    pub runtime: String,

    /// Entry point, for example app.handler (function `handler` in app.py).
    #[arg(long)]
    pub handler: String,

    #[command(flatten)]
    pub code: CodeArgs,

    #[command(flatten)]
    pub settings: SettingsArgs,

    /// Publish version 1 right after creating the function.
    #[arg(long)]
    pub publish: bool,
}

#[derive(Debug, clap::Args)]
pub struct UpdateConfigArgs {
    /// Function name.
    pub name: String,

    /// Runtime id, for example python3.12.
    #[arg(long)]
    pub runtime: Option<String>,

    /// Entry point, for example app.handler.
    #[arg(long)]
    pub handler: Option<String>,

    #[command(flatten)]
    pub settings: SettingsArgs,

    /// Remove all environment variables.
    #[arg(long, conflicts_with = "env")]
    pub clear_env: bool,

    /// Remove all layers.
    #[arg(long, conflicts_with = "layers")]
    pub clear_layers: bool,

    /// Remove the VPC configuration.
    #[arg(long, conflicts_with_all = ["subnet_ids", "security_group_ids"])]
    pub clear_vpc_config: bool,

    /// Remove the dead-letter queue.
    #[arg(long, conflicts_with = "dead_letter_queue")]
    pub clear_dead_letter_queue: bool,
}

pub async fn run(api: &ApiClient, json: bool, command: FunctionCommand) -> anyhow::Result<()> {
    match command {
        FunctionCommand::Create(args) => create(api, json, args).await,
        FunctionCommand::Get { name, qualifier } => {
            let query: Vec<(&str, String)> = qualifier.into_iter().map(|q| ("qualifier", q)).collect();
            let response = api.get(&["functions", &name], &query).await?;
            print_configuration(json, response.json_body()?, None);
            Ok(())
        }
        FunctionCommand::List(page) => list(api, json, page).await,
        FunctionCommand::UpdateCode { name, code, publish } => {
            let mut body = code.location()?;
            if publish {
                body.insert("publish".into(), Value::Bool(true));
            }
            let response = api
                .put(&["functions", &name, "code"], RequestBody::Json(Value::Object(body)))
                .await?;
            let configuration = response.json_body()?;
            let published = if publish {
                published_version(configuration)
            } else {
                None
            };
            print_configuration(json, configuration, published);
            Ok(())
        }
        FunctionCommand::UpdateConfig(args) => update_config(api, json, args).await,
        FunctionCommand::Publish { name, description } => {
            let body = match description {
                Some(description) => json!({ "description": description }),
                None => json!({}),
            };
            let response = api
                .post(&["functions", &name, "versions"], RequestBody::Json(body))
                .await?;
            let configuration = response.json_body()?;
            print_configuration(json, configuration, published_version(configuration));
            Ok(())
        }
        FunctionCommand::Versions { name, page } => versions(api, json, &name, page).await,
        FunctionCommand::Delete { name, qualifier } => {
            let query: Vec<(&str, String)> = qualifier.iter().map(|q| ("qualifier", q.clone())).collect();
            let response = api.delete(&["functions", &name], &query).await?;
            if json {
                if let Some(body) = &response.body {
                    output::print_json(body);
                }
            } else {
                match qualifier {
                    Some(qualifier) => println!("deleted version {qualifier} of function {name}"),
                    None => println!("deleted function {name}"),
                }
            }
            Ok(())
        }
    }
}

async fn create(api: &ApiClient, json: bool, args: CreateArgs) -> anyhow::Result<()> {
    let mut body = Map::new();
    body.insert("runtime".into(), json!(args.runtime));
    body.insert("handler".into(), json!(args.handler));
    body.insert("code".into(), Value::Object(args.code.location()?));
    args.settings.insert_into(&mut body)?;
    if args.publish {
        body.insert("publish".into(), Value::Bool(true));
    }

    let response = api
        .put(&["functions", &args.name], RequestBody::Json(Value::Object(body)))
        .await?;
    let configuration = response.json_body()?;
    let published = if args.publish {
        published_version(configuration)
    } else {
        None
    };
    print_configuration(json, configuration, published);
    Ok(())
}

async fn update_config(api: &ApiClient, json: bool, args: UpdateConfigArgs) -> anyhow::Result<()> {
    let mut body = Map::new();
    insert_some(&mut body, "runtime", &args.runtime);
    insert_some(&mut body, "handler", &args.handler);
    args.settings.insert_into(&mut body)?;
    // Empty values clear a setting, as the API defines for this request.
    if args.clear_env {
        body.insert("environment".into(), json!({ "variables": {} }));
    }
    if args.clear_layers {
        body.insert("layers".into(), json!([]));
    }
    if args.clear_vpc_config {
        body.insert(
            "vpc_config".into(),
            json!({ "subnet_ids": [], "security_group_ids": [] }),
        );
    }
    if args.clear_dead_letter_queue {
        body.insert("dead_letter_queue".into(), json!(""));
    }
    if body.is_empty() {
        bail!(
            "nothing to update for function {}; pass at least one setting, for example --memory-size 256",
            args.name
        );
    }

    let response = api
        .put(
            &["functions", &args.name, "configuration"],
            RequestBody::Json(Value::Object(body)),
        )
        .await?;
    print_configuration(json, response.json_body()?, None);
    Ok(())
}

async fn list(api: &ApiClient, json: bool, page: PageArgs) -> anyhow::Result<()> {
    let listing = fetch_pages(api, &["functions"], "functions", &page).await?;
    if json {
        output::print_json(&listing.body);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = listing
        .items()
        .iter()
        .map(|function| {
            vec![
                cell(function, "function_name"),
                cell(function, "runtime"),
                with_unit(function, "memory_size", "MB"),
                with_unit(function, "timeout", "s"),
                cell(function, "state"),
                cell(function, "last_modified"),
            ]
        })
        .collect();
    output::print_table(
        &["NAME", "RUNTIME", "MEMORY", "TIMEOUT", "STATE", "LAST_MODIFIED"],
        &rows,
    );
    listing.print_next_marker_hint();
    Ok(())
}

async fn versions(api: &ApiClient, json: bool, name: &str, page: PageArgs) -> anyhow::Result<()> {
    let listing = fetch_pages(api, &["functions", name, "versions"], "versions", &page).await?;
    if json {
        output::print_json(&listing.body);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = listing
        .items()
        .iter()
        .map(|version| {
            let sha256 = cell(version, "code_sha256");
            vec![
                cell(version, "version"),
                sha256.chars().take(12).collect(),
                cell(version, "description"),
                cell(version, "last_modified"),
            ]
        })
        .collect();
    output::print_table(&["VERSION", "CODE_SHA256", "DESCRIPTION", "LAST_MODIFIED"], &rows);
    listing.print_next_marker_hint();
    Ok(())
}

/// Prints a FunctionConfiguration, led by "published version N" when a version was published.
fn print_configuration(json: bool, configuration: &Value, published: Option<String>) {
    if json {
        output::print_json(configuration);
        return;
    }
    if let Some(version) = published {
        println!("published version {version}");
    }
    output::print_fields(&output::object_fields(configuration, FUNCTION_FIELDS));
}

/// Returns the version number of a configuration, or `None` for $LATEST.
fn published_version(configuration: &Value) -> Option<String> {
    configuration
        .get("version")
        .and_then(Value::as_str)
        .filter(|version| *version != "$LATEST")
        .map(str::to_string)
}

fn with_unit(object: &Value, key: &str, unit: &str) -> String {
    match object.get(key) {
        Some(Value::Number(number)) => format!("{number} {unit}"),
        _ => cell(object, key),
    }
}

fn insert_some<T: serde::Serialize>(body: &mut Map<String, Value>, key: &str, value: &Option<T>) {
    if let Some(value) = value {
        body.insert(key.to_string(), json!(value));
    }
}

/// Collects `--env` pairs into a map, rejecting a key that is given twice.
fn environment_variables(pairs: &[(String, String)]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut variables = BTreeMap::new();
    for (key, value) in pairs {
        if variables.insert(key.clone(), value.clone()).is_some() {
            bail!("environment variable {key} is given twice with --env; give each variable once");
        }
    }
    Ok(variables)
}

/// Parses a `--env KEY=VALUE` argument. The value may contain '=' and may be empty.
fn parse_env_var(argument: &str) -> Result<(String, String), String> {
    match argument.split_once('=') {
        Some((key, _)) if key.is_empty() => Err(format!(
            "'{argument}' has no variable name before '='; use KEY=VALUE, for example LOG_LEVEL=debug"
        )),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(format!(
            "'{argument}' has no '='; use KEY=VALUE, for example LOG_LEVEL=debug"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: FunctionCommand,
    }

    fn parse(arguments: &[&str]) -> Result<FunctionCommand, clap::Error> {
        TestCli::try_parse_from(std::iter::once("function").chain(arguments.iter().copied())).map(|cli| cli.command)
    }

    fn create_body(arguments: &[&str]) -> Value {
        let FunctionCommand::Create(args) = parse(arguments).unwrap() else {
            panic!("not create")
        };
        let mut body = Map::new();
        args.settings.insert_into(&mut body).unwrap();
        Value::Object(body)
    }

    #[test]
    fn env_parser_messages() {
        assert_eq!(parse_env_var("A=b=c"), Ok(("A".to_string(), "b=c".to_string())));
        assert_eq!(parse_env_var("A="), Ok(("A".to_string(), String::new())));
        assert_eq!(
            parse_env_var("NOEQUALS").unwrap_err(),
            "'NOEQUALS' has no '='; use KEY=VALUE, for example LOG_LEVEL=debug"
        );
        assert!(parse_env_var("=x").unwrap_err().contains("no variable name"));
    }

    #[test]
    fn settings_become_fields() {
        let body = create_body(&[
            "create",
            "f",
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--s3-bucket",
            "b",
            "--s3-key",
            "k",
            "--memory-size",
            "256",
            "--env",
            "A=1",
            "--env",
            "B=2",
            "--tracing-mode",
            "Active",
            "--layer",
            "L1",
            "--subnet-id",
            "subnet-1",
        ]);
        assert_eq!(
            body,
            json!({
                "memory_size": 256,
                "environment": {"variables": {"A": "1", "B": "2"}},
                "tracing_mode": "Active",
                "layers": ["L1"],
                "vpc_config": {"subnet_ids": ["subnet-1"], "security_group_ids": []},
            })
        );
    }

    #[test]
    fn duplicate_env_key_rejected() {
        let FunctionCommand::Create(args) = parse(&[
            "create",
            "f",
            "--runtime",
            "r",
            "--handler",
            "h",
            "--code",
            "x",
            "--env",
            "A=1",
            "--env",
            "A=2",
        ])
        .unwrap() else {
            panic!("not create")
        };
        let error = args.settings.insert_into(&mut Map::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable A is given twice with --env; give each variable once"
        );
    }

    #[test]
    fn code_source_required() {
        let error = parse(&["create", "f", "--runtime", "r", "--handler", "h"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn code_and_s3_conflict() {
        let error = parse(&[
            "create",
            "f",
            "--runtime",
            "r",
            "--handler",
            "h",
            "--code",
            "x",
            "--s3-bucket",
            "b",
            "--s3-key",
            "k",
        ])
        .unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn s3_key_requires_bucket() {
        let error = parse(&["create", "f", "--runtime", "r", "--handler", "h", "--s3-key", "k"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn s3_location_fields() {
        let FunctionCommand::UpdateCode { code, .. } = parse(&[
            "update-code",
            "f",
            "--s3-bucket",
            "b",
            "--s3-key",
            "dir/k.zip",
            "--s3-object-version",
            "v1",
        ])
        .unwrap() else {
            panic!("not update-code")
        };
        assert_eq!(
            Value::Object(code.location().unwrap()),
            json!({"s3_bucket": "b", "s3_key": "dir/k.zip", "s3_object_version": "v1"})
        );
    }

    #[test]
    fn tracing_mode_values() {
        let error = parse(&["update-config", "f", "--tracing-mode", "active"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn clear_env_conflicts_with_env() {
        let error = parse(&["update-config", "f", "--clear-env", "--env", "A=1"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn published_version_ignores_latest() {
        assert_eq!(published_version(&json!({"version": "3"})), Some("3".to_string()));
        assert_eq!(published_version(&json!({"version": "$LATEST"})), None);
    }
}
