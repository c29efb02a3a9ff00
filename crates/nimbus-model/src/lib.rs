//! Domain types of Nimbus and their validation rules. No I/O happens here, so every
//! rule is unit-tested directly and reused by the API, the store and the CLI.

pub mod alias;
pub mod config;
pub mod error;
pub mod function;
pub mod names;
pub mod runtime;
pub mod state;

pub use alias::{Alias, AliasRequest, RoutingConfig};
pub use config::{
    CodeLocation, CreateFunctionRequest, Environment, FunctionSettings, TracingMode, UpdateCodeRequest,
    UpdateConfigRequest, VpcConfig,
};
pub use error::ValidationError;
pub use function::{CodeInfo, FunctionConfiguration, FunctionRecord, VersionRecord};
pub use names::{validate_alias_name, validate_function_name, Qualifier};
pub use runtime::{Runtime, RuntimeFamily};
pub use state::{FunctionState, InvalidTransition};

/// Formats a timestamp for API responses: RFC 3339 in UTC with milliseconds, so
/// timestamps line up in columns.
pub fn format_timestamp(at: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}
