//! What a running statement is given and bounded by: its
//! [`StatementContext`] (store, DataFusion context, time zone, user,
//! interrupt), the [`Reply`] lower layers answer with, session settings,
//! resource limits and interruption.
//!
//! May use: `model`, `error`. Everything above `runtime` receives a
//! `StatementContext` instead of reaching into `session`.

pub mod audit;
pub mod context;
pub mod interrupt;
pub mod limits;
pub mod memory_budget;
pub mod settings;

pub use context::{ContextSource, Reply, StatementContext};
