//! cohortdb SQL layer: DataFusion table providers over the storage crate,
//! cohortdb's own statements (catalog DDL, COPY, SET/SHOW, CALL), and the
//! session API the server drives. Knows nothing of the wire protocol.

pub mod catalog;
pub mod convert;
pub mod copy;
pub mod copy_binary;
pub mod engine;
pub mod error;
pub mod functions;
pub mod ingest;
pub mod interrupt;
pub mod layout;
pub mod pgtext;
pub mod params;
pub mod pg_catalog_ext;
pub mod pg_functions;
pub mod procedures;
pub mod rewrite;
pub mod settings;
pub mod tables;
pub mod users;

pub use engine::{Engine, EngineConfig, Outcome, Prepared, Session};
pub use error::{find_sql_error, Result, SqlError};
