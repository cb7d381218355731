//! cohortdb SQL layer: DataFusion table providers over the storage crate,
//! cohortdb's own statements (catalog DDL, COPY, SET/SHOW, CALL), and the
//! session API the server drives. Knows nothing of the wire protocol.

pub mod analytics;
pub mod catalog;
pub mod composable;
pub mod convert;
pub mod copy;
pub mod engine;
pub mod error;
pub mod dedupe;
pub mod deletion;
pub mod functions;
pub mod groups;
pub mod identity;
pub mod identity_insert;
pub mod identity_procs;
pub mod ingest;
pub mod layout;
pub mod merge;
pub mod pgtext;
pub mod procedures;
pub mod scheduler;
pub mod tables;
pub mod tags;

pub use engine::{CohortStatement, Engine, EngineConfig, Outcome, Prepared, Session};
pub use error::{find_sql_error, Result, SqlError};
