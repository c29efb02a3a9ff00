use nimbus_model::FunctionState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{resource} '{name}' already exists")]
    AlreadyExists { resource: &'static str, name: String },

    #[error("{resource} '{name}' was not found")]
    NotFound { resource: &'static str, name: String },

    /// A compare-and-set on the function state lost a race.
    #[error("function '{function}' is {actual:?}, not {expected:?}; another change is in progress")]
    StateConflict {
        function: String,
        expected: FunctionState,
        actual: FunctionState,
    },

    #[error("version {version} of function '{function}' is used by alias '{alias}'; delete the alias or point it elsewhere first")]
    VersionInUse {
        function: String,
        version: u32,
        alias: String,
    },

    #[error(
        "reserved concurrency {requested} would leave {unreserved} of the account's {limit} concurrent executions unreserved; at least {minimum} must stay unreserved, so reserve at most {max_allowed}"
    )]
    ReservedConcurrencyExceeded {
        requested: u32,
        unreserved: i64,
        limit: u32,
        minimum: u32,
        max_allowed: i64,
    },

    #[error("stored data is invalid: {0}")]
    Corrupt(String),

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}
