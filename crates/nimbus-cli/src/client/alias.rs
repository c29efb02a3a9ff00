//! `nimbus alias`: named pointers to function versions, optionally splitting traffic
//! between two versions.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::api::{ApiClient, RequestBody};
use super::listing::{fetch_pages, PageArgs};
use super::output::{self, cell, ALIAS_FIELDS};

#[derive(Debug, clap::Subcommand)]
pub enum AliasCommand {
    /// Create an alias, or replace it if it exists.
    Create(PutAliasArgs),

    /// Replace an alias's version, description and routing; same request as `create`.
    Update(PutAliasArgs),

    /// Show an alias.
    Get {
        /// Function name.
        function: String,
        /// Alias name.
        alias: String,
    },

    /// List a function's aliases.
    List {
        /// Function name.
        function: String,
        #[command(flatten)]
        page: PageArgs,
    },

    /// Delete an alias.
    Delete {
        /// Function name.
        function: String,
        /// Alias name.
        alias: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct PutAliasArgs {
    /// Function name.
    pub function: String,

    /// Alias name, for example live.
    pub alias: String,

    /// Version the alias points to: a version number or $LATEST.
    #[arg(long, value_name = "VERSION")]
    pub function_version: String,

    /// Description of the alias.
    #[arg(long)]
    pub description: Option<String>,

    /// Send a share of the invocations to another version, for example 2=0.1 for 10 %
    /// to version 2.
    #[arg(long, value_name = "VERSION=WEIGHT", value_parser = parse_routing_weight)]
    pub routing_weight: Option<(String, f64)>,
}

pub async fn run(api: &ApiClient, json: bool, command: AliasCommand) -> anyhow::Result<()> {
    match command {
        AliasCommand::Create(args) | AliasCommand::Update(args) => put(api, json, args).await,
        AliasCommand::Get { function, alias } => {
            let response = api.get(&["functions", &function, "aliases", &alias], &[]).await?;
            print_alias(json, response.json_body()?);
            Ok(())
        }
        AliasCommand::List { function, page } => list(api, json, &function, page).await,
        AliasCommand::Delete { function, alias } => {
            let response = api.delete(&["functions", &function, "aliases", &alias], &[]).await?;
            if json {
                if let Some(body) = &response.body {
                    output::print_json(body);
                }
            } else {
                println!("deleted alias {alias} of function {function}");
            }
            Ok(())
        }
    }
}

async fn put(api: &ApiClient, json: bool, args: PutAliasArgs) -> anyhow::Result<()> {
    let mut body = json!({ "function_version": args.function_version });
    if let Some(description) = &args.description {
        body["description"] = json!(description);
    }
    if let Some((version, weight)) = &args.routing_weight {
        body["routing_config"] = json!({ "additional_version_weights": { version: weight } });
    }

    let path = ["functions", args.function.as_str(), "aliases", args.alias.as_str()];
    let response = api.put(&path, RequestBody::Json(body)).await?;
    let alias = response.json_body()?;
    if !json {
        // Both subcommands send the same PUT, and only the status shows whether the alias existed.
        let action = if response.status == StatusCode::CREATED {
            "created"
        } else {
            "updated"
        };
        println!("{action} alias {} of function {}", args.alias, args.function);
    }
    print_alias(json, alias);
    Ok(())
}

async fn list(api: &ApiClient, json: bool, function: &str, page: PageArgs) -> anyhow::Result<()> {
    let listing = fetch_pages(api, &["functions", function, "aliases"], "aliases", &page).await?;
    if json {
        output::print_json(&listing.body);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = listing
        .items()
        .iter()
        .map(|alias| {
            vec![
                cell(alias, "name"),
                cell(alias, "function_version"),
                output::render_weights(alias.get("routing_config").unwrap_or(&Value::Null)),
                cell(alias, "description"),
            ]
        })
        .collect();
    output::print_table(&["NAME", "VERSION", "WEIGHTS", "DESCRIPTION"], &rows);
    listing.print_next_marker_hint();
    Ok(())
}

fn print_alias(json: bool, alias: &Value) {
    if json {
        output::print_json(alias);
    } else {
        output::print_fields(&output::object_fields(alias, ALIAS_FIELDS));
    }
}

/// Parses a `--routing-weight VERSION=WEIGHT` argument. The range of the weight is
/// left to the server, but the weight must be a finite number, because JSON cannot
/// carry NaN or infinity.
fn parse_routing_weight(argument: &str) -> Result<(String, f64), String> {
    let expected = "use VERSION=WEIGHT with a weight from 0 to 1, for example 2=0.1";
    let Some((version, weight)) = argument.split_once('=') else {
        return Err(format!("'{argument}' has no '='; {expected}"));
    };
    if version.is_empty() {
        return Err(format!("'{argument}' has no version before '='; {expected}"));
    }
    match weight.trim().parse::<f64>() {
        Ok(weight) if weight.is_finite() => Ok((version.to_string(), weight)),
        _ => Err(format!(
            "'{argument}' has weight '{weight}', which is not a number; {expected}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_weight_parses() {
        assert_eq!(parse_routing_weight("2=0.25"), Ok(("2".to_string(), 0.25)));
    }

    #[test]
    fn routing_weight_rejects_bad_forms() {
        let cases = [
            ("2", "'2' has no '='"),
            ("=0.5", "'=0.5' has no version"),
            ("2=lots", "'2=lots' has weight 'lots', which is not a number"),
            ("2=NaN", "'2=NaN' has weight 'NaN', which is not a number"),
            ("2=inf", "'2=inf' has weight 'inf', which is not a number"),
        ];
        for (argument, expected) in cases {
            let error = parse_routing_weight(argument).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
            assert!(
                error.ends_with("use VERSION=WEIGHT with a weight from 0 to 1, for example 2=0.1"),
                "{error}"
            );
        }
    }
}
