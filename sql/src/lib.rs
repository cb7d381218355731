//! cohortdb SQL layer: DataFusion table providers over the storage crate,
//! cohortdb's own statements (analytics, groups and tags, identity
//! procedures, users, catalog DDL, COPY, SET/SHOW), and the session API the
//! server drives. Knows nothing of the wire protocol.
//!
//! Folders by capability, each allowed to use only the folders below it
//! (docs/architecture.md draws the map; `tests/layering.rs` checks it):
//!
//! ```text
//! session    Engine, Session, the statement router, Describe, SET/SHOW, PREPARE
//! handler    what each statement kind does (queries, DDL, COPY, CALL)
//! access     users (and, next, roles and privileges)
//! statement  the typed Statement enum and its one parser entry point
//! analytics  FUNNEL, RETENTION, ATTRIBUTE, LTV, PATHS (+ composable aggregates)
//! tables     the catalog DataFusion sees and its table providers
//! ingest     COPY in/out, statement-level ingest, identity-keyed INSERT
//! identity   identity resolution, identify / merge / dedupe / deletion
//! segments   groups and tags, their scheduler, memberships, in_group
//! pgcompat   pg_catalog additions, client/BI rewrites and functions
//! runtime    StatementContext, Reply, settings, limits, interrupts
//! model      layouts, value conversions, row validation, Postgres text
//! error      SqlError
//! ```

pub mod access;
pub mod analytics;
pub mod error;
pub mod handler;
pub mod identity;
pub mod ingest;
pub mod model;
pub mod pgcompat;
pub mod runtime;
pub mod segments;
pub mod session;
pub mod statement;
pub mod tables;

pub use error::{find_sql_error, Result, SqlError};
pub use handler::Outcome;
pub use session::{Engine, EngineConfig, Prepared, Session};
pub use statement::Statement;
