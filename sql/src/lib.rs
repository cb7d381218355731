//! cohortdb SQL layer: DataFusion table providers over the storage crate,
//! cohortdb's own statements (catalog DDL, COPY, SET/SHOW, CALL), and the
//! session API the server drives. Knows nothing of the wire protocol.

pub mod analytics;
pub mod bi_functions;
pub mod bi_rewrite;
pub mod catalog;
pub mod client_functions;
pub mod client_rewrite;
pub mod composable;
pub mod convert;
pub mod copy;
pub mod copy_binary;
pub mod copy_binary_out;
pub mod dedupe;
pub mod deletion;
pub mod engine;
pub mod error;
pub mod functions;
pub mod groups;
pub mod identity;
pub mod identity_insert;
pub mod identity_procs;
pub mod ingest;
pub mod interrupt;
pub mod layout;
pub mod limits;
pub mod literals;
pub mod merge;
pub mod origins;
pub mod params;
pub mod pg_catalog_ext;
pub mod pg_functions;
pub mod pgtext;
pub mod prepared_sql;
pub mod procedures;
pub mod rewrite;
pub mod scheduler;
pub mod settings;
pub mod tables;
pub mod tags;
pub mod text_cast;
pub mod users;

pub use engine::{CohortStatement, Engine, EngineConfig, Outcome, Prepared, Session};
pub use error::{find_sql_error, Result, SqlError};
