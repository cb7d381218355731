//! cohortdb SQL layer: DataFusion table providers over the storage crate,
//! cohortdb's own statements (catalog DDL, COPY, SET/SHOW, CALL), and the
//! session API the server drives. Knows nothing of the wire protocol.

pub mod catalog;
pub mod convert;
pub mod copy;
pub mod engine;
pub mod error;
pub mod dedupe;
pub mod deletion;
pub mod functions;
pub mod identity;
pub mod identity_insert;
pub mod identity_procs;
pub mod ingest;
pub mod layout;
pub mod merge;
pub mod pgtext;
pub mod procedures;
pub mod tables;

pub use engine::{Engine, EngineConfig, Outcome, Prepared, Session};
pub use error::{find_sql_error, Result, SqlError};
