//! Scheduling algorithms of Nimbus and an offline simulator to compare them.
//!
//! Every algorithm is pure code over plain data and a [`Clock`], so the server and the
//! simulator run the same code:
//!
//! - [`placement`] scores worker hosts and picks one for a new execution slot.
//! - [`lifecycle`] is the execution slot state machine.
//! - [`predictor`] is the hybrid-histogram keep-alive policy of "Serverless in the
//!   Wild" (Shahrad et al., USENIX ATC 2020).
//! - [`warm_pool`] plans pre-warms, retirements and expirations for one function.
//! - [`scaling`] decides scale-up and scale-down and enforces the burst limit.
//! - [`sim`] replays an invocation trace through the code above on a simulated clock,
//!   and generates synthetic traces.

pub mod clock;
pub mod lifecycle;
pub mod placement;
pub mod predictor;
pub mod scaling;
pub mod sim;
pub mod warm_pool;

pub use clock::{Clock, ManualClock, MonotonicClock, Timestamp};
