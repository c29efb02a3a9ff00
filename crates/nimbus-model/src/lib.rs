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

/// Timestamps in API responses: RFC 3339 in UTC, as Lambda's `LastModified`.
pub fn format_timestamp(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}
