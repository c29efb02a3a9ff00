//! Client subcommands: `nimbus function`, `alias`, `concurrency`, `code`, `account`,
//! `invoke` and `logs`
//! send requests to a running Nimbus server over its HTTP API and print the responses.

mod alias;
mod api;
mod code;
mod concurrency;
mod function;
mod invoke;
mod listing;
mod output;
mod package;

use std::process::ExitCode;

use api::{ApiClient, ApiError};

const GLOBAL_OPTIONS: &str = "Global options";

/// Options shared by every client subcommand.
// No `Debug` derive, so the API key cannot end up in a debug print.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// Base URL of the Nimbus API.
    #[arg(
        long,
        global = true,
        env = "NIMBUS_ENDPOINT",
        default_value = "http://127.0.0.1:9000",
        help_heading = GLOBAL_OPTIONS
    )]
    pub endpoint: String,

    /// API key sent as a bearer token. Without it, the key is read from the file
    /// `api-key` in the data directory ($NIMBUS_DATA_DIR, or ./nimbus-data), which
    /// `nimbus server` writes on its first start.
    #[arg(long, global = true, env = "NIMBUS_API_KEY", hide_env_values = true, help_heading = GLOBAL_OPTIONS)]
    pub api_key: Option<String>,

    /// Print the JSON response body instead of the human-readable output.
    #[arg(long, global = true, help_heading = GLOBAL_OPTIONS)]
    pub json: bool,
}

/// Client subcommands, one per API resource.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Create, inspect, update, publish and delete functions.
    #[command(subcommand)]
    Function(function::FunctionCommand),

    /// Manage aliases, the named pointers to function versions.
    #[command(subcommand)]
    Alias(alias::AliasCommand),

    /// Set, show or remove a function's reserved concurrency.
    #[command(subcommand)]
    Concurrency(concurrency::ConcurrencyCommand),

    /// Upload code packages to the server's code object store.
    #[command(subcommand)]
    Code(code::CodeCommand),

    /// Show the account that the API key belongs to.
    Account,

    /// Invoke a function and print its response.
    Invoke(invoke::InvokeArgs),

    /// Print a function's logs.
    Logs(invoke::LogsArgs),
}

/// Runs one client subcommand against the API.
///
/// An error response from the API is printed as `error: MESSAGE (TYPE, HTTP STATUS)` on
/// stderr and yields exit code 1; with `--json` the response body also goes to stdout.
/// Every other failure, such as an unreadable code path or an unreachable server, is
/// returned as an error.
pub async fn run(args: &ClientArgs, command: ClientCommand) -> anyhow::Result<ExitCode> {
    let result = run_command(args, command).await;
    let Err(error) = result else {
        return Ok(ExitCode::SUCCESS);
    };
    let Some(api_error) = error.downcast_ref::<ApiError>() else {
        return Err(error);
    };
    if args.json {
        println!("{}", api_error.body_for_output());
    }
    eprintln!("error: {api_error}");
    Ok(ExitCode::from(1))
}

async fn run_command(args: &ClientArgs, command: ClientCommand) -> anyhow::Result<()> {
    let api = ApiClient::new(args)?;
    match command {
        ClientCommand::Function(command) => function::run(&api, args.json, command).await,
        ClientCommand::Alias(command) => alias::run(&api, args.json, command).await,
        ClientCommand::Concurrency(command) => concurrency::run(&api, args.json, command).await,
        ClientCommand::Code(command) => code::run(&api, args.json, command).await,
        ClientCommand::Account => show_account(&api, args.json).await,
        ClientCommand::Invoke(command) => invoke::invoke(&api, args.json, command).await,
        ClientCommand::Logs(command) => invoke::logs(&api, args.json, command).await,
    }
}

async fn show_account(api: &ApiClient, json: bool) -> anyhow::Result<()> {
    let response = api.get(&["account"], &[]).await?;
    let body = response.json_body()?;
    if json {
        output::print_json(body);
    } else {
        output::print_fields(&output::flatten_fields(body));
    }
    Ok(())
}
