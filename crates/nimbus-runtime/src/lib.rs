//! The runtime layer of Nimbus: what runs inside an execution environment ("slot").
//!
//! - [`api`]: the AWS Lambda Runtime API server that a slot's runtime talks to, one per slot.
//! - [`catalog`]: the runtimes a worker offers (`python3.11`, `nodejs20.x`,
//!   `provided.al2023`, …), with the interpreter and command line for each.
//! - The Python and Node.js bootstraps, which implement Lambda's programming model on top of
//!   the Runtime API. They are embedded in the binary and written out by
//!   [`catalog::install_bootstraps`].

pub mod api;
pub mod catalog;

pub use api::{InitOutcome, Invocation, InvokeOutcome, RuntimeApi, RuntimeApiLimits, DEFAULT_MAX_RESPONSE_BYTES};
pub use catalog::{install_bootstraps, RuntimeCatalog, RuntimeKind, RuntimeOffer};
