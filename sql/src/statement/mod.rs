//! Every statement cohortdb runs, as one typed enum ([`Statement`]), and the
//! one parser entry point that produces it ([`parse::parse`]). SQL the
//! `sqlparser` grammar knows is carried as its syntax tree inside the
//! variant for its kind; cohortdb's own statements (analytics, groups and
//! tags, users, procedures) have typed variants of their own. The session's
//! dispatch and, later, the privilege check are exhaustive matches over
//! this enum, so a new statement kind forces a decision in both.
//!
//! May use: `analytics` (its statement syntax), `ingest` (which INSERTs are
//! identity-keyed), `segments` (group/tag statement syntax), `pgcompat`
//! (rewrites applied after parsing), `runtime` (parse limits), `model`,
//! `error`.

pub mod bind;
pub mod parse;
pub mod procedure;
pub mod user;

use datafusion::sql::sqlparser::ast;

pub use procedure::{Procedure, ProcedureCall};
pub use user::{UserAction, UserStatement};

use crate::analytics::AnalyticsStatement;
use crate::model::rows::OnError;
use crate::segments::groups::GroupStatement;

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// A query DataFusion plans and that returns rows: `SELECT`, `VALUES`,
    /// `WITH`, `EXPLAIN <sql>`, `SHOW TABLES`, `SHOW COLUMNS`.
    Query(Box<ast::Statement>),
    /// `INSERT` planned by DataFusion.
    Insert(Box<ast::Statement>),
    /// `INSERT INTO events|contacts` naming identity columns (`openid`,
    /// `external_id`, …) instead of ids: resolved through identities.
    IdentityInsert(Box<ast::Statement>),
    /// `UPDATE` planned by DataFusion.
    Update(Box<ast::Statement>),
    /// `DELETE` planned by DataFusion.
    Delete(Box<ast::Statement>),
    /// `CREATE TABLE` (a user table).
    CreateTable(Box<ast::CreateTable>),
    /// `DROP TABLE [IF EXISTS] a, b`.
    DropTable {
        /// Table names.
        names: Vec<String>,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// `CREATE [OR REPLACE] VIEW name [(columns)] AS query` (stored).
    CreateView {
        /// View name.
        name: String,
        /// Column names given in parentheses (else the query's).
        columns: Vec<String>,
        /// The query.
        query: Box<ast::Query>,
        /// OR REPLACE.
        or_replace: bool,
        /// IF NOT EXISTS.
        if_not_exists: bool,
    },
    /// `DROP VIEW [IF EXISTS] a, b`.
    DropView {
        /// View names.
        names: Vec<String>,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// `TRUNCATE [TABLE] a, b` (user tables).
    Truncate {
        /// Table names.
        names: Vec<String>,
    },
    /// `VACUUM [options] [tables]` / `ANALYZE [tables]`: accepted and
    /// checked (the tables must exist); RocksDB compacts by itself and the
    /// planner keeps no statistics, so there is nothing else to do.
    Maintenance {
        /// `VACUUM` or `ANALYZE`.
        kind: MaintenanceKind,
        /// Named tables (none = all).
        tables: Vec<String>,
    },
    /// `ALTER TABLE contacts|events ADD COLUMN p_…`.
    AlterTable {
        /// The table.
        table: String,
        /// Its operations.
        operations: Vec<ast::AlterTableOperation>,
    },
    /// `COPY … FROM STDIN` / `COPY … TO STDOUT`.
    Copy(Box<CopyStatement>),
    /// `SET name = value`, `SET TIME ZONE …`, `SET NAMES …`.
    Set(Box<ast::Set>),
    /// `SHOW name`.
    Show {
        /// The setting as written (`transaction isolation level`).
        name: String,
    },
    /// `RESET`, `CLOSE`, `UNLISTEN`: statements that only touch session state.
    SessionReset(Box<ast::Statement>),
    /// `DISCARD ALL`.
    Discard,
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT`.
    Commit,
    /// `ROLLBACK`.
    Rollback,
    /// `SAVEPOINT name`, `RELEASE [SAVEPOINT] name`, `ROLLBACK TO
    /// [SAVEPOINT] name`: accepted so drivers' nested transactions work;
    /// each statement is atomic on its own, so a rollback to a savepoint
    /// undoes nothing, but it ends a failed block's 25P02 state.
    Savepoint {
        /// Which statement.
        action: SavepointAction,
        /// The savepoint.
        name: String,
    },
    /// `PREPARE name [(types)] AS statement`.
    Prepare {
        /// Name.
        name: ast::Ident,
        /// Declared parameter types.
        data_types: Vec<ast::DataType>,
        /// The statement.
        statement: Box<ast::Statement>,
    },
    /// `EXECUTE name [(values)]`.
    Execute {
        /// Name.
        name: Option<ast::ObjectName>,
        /// Parameter values.
        parameters: Vec<ast::Expr>,
    },
    /// `DEALLOCATE [PREPARE] name | ALL`.
    Deallocate {
        /// Name (`ALL` for all).
        name: ast::Ident,
    },
    /// `CALL procedure(args)`.
    Call(ProcedureCall),
    /// `CREATE/ALTER/DROP USER|ROLE`, `GRANT`/`REVOKE` of a role.
    User(UserStatement),
    /// `ALTER TABLE contacts ALTER COLUMN c SET|DROP MASKED`.
    Mask(user::MaskStatement),
    /// A group or tag statement (`CREATE GROUP`, `REFRESH TAG`, …).
    Segment(Box<GroupStatement>),
    /// FUNNEL, RETENTION, ATTRIBUTE, LTV, PATHS, possibly under EXPLAIN.
    Analytics {
        /// `EXPLAIN` in front.
        explain: bool,
        /// The statement.
        stmt: Box<AnalyticsStatement>,
    },
}

/// Which savepoint statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavepointAction {
    /// `SAVEPOINT`.
    Create,
    /// `RELEASE SAVEPOINT`.
    Release,
    /// `ROLLBACK TO SAVEPOINT`.
    RollbackTo,
}

/// Which maintenance statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceKind {
    /// `VACUUM`.
    Vacuum,
    /// `ANALYZE`.
    Analyze,
}

impl MaintenanceKind {
    /// The command tag.
    pub fn tag(&self) -> &'static str {
        match self {
            MaintenanceKind::Vacuum => "VACUUM",
            MaintenanceKind::Analyze => "ANALYZE",
        }
    }
}

/// A `COPY` statement.
#[derive(Debug, Clone)]
pub struct CopyStatement {
    /// Table (and columns) or query.
    pub source: ast::CopySource,
    /// True for `COPY … TO`.
    pub to: bool,
    /// `STDIN` / `STDOUT` (anything else is refused when it runs).
    pub target: ast::CopyTarget,
    /// `WITH (…)` options.
    pub options: Vec<ast::CopyOption>,
    /// Whether pre-9.0 options were used (refused).
    pub legacy: bool,
    /// `ON_ERROR ignore|stop`.
    pub on_error: Option<OnError>,
}

impl Statement {
    /// True for INSERT, UPDATE and DELETE (they describe no result columns).
    pub fn is_dml(&self) -> bool {
        matches!(
            self,
            Statement::Insert(_)
                | Statement::IdentityInsert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
        )
    }

    /// The statement DataFusion plans, for the kinds it plans.
    pub fn planned_by_datafusion(&self) -> Option<&ast::Statement> {
        match self {
            Statement::Query(s)
            | Statement::Insert(s)
            | Statement::Update(s)
            | Statement::Delete(s) => Some(s),
            _ => None,
        }
    }

    /// The command tag word(s) of the statement's kind, as the command
    /// completion reports it (statements that return rows say `SELECT`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Statement::Query(_) | Statement::Analytics { .. } | Statement::Show { .. } => "SELECT",
            Statement::Insert(_) | Statement::IdentityInsert(_) => "INSERT",
            Statement::Update(_) => "UPDATE",
            Statement::Delete(_) => "DELETE",
            Statement::CreateTable(_) => "CREATE TABLE",
            Statement::DropTable { .. } => "DROP TABLE",
            Statement::CreateView { .. } => "CREATE VIEW",
            Statement::DropView { .. } => "DROP VIEW",
            Statement::Truncate { .. } => "TRUNCATE TABLE",
            Statement::Maintenance { kind, .. } => kind.tag(),
            Statement::AlterTable { .. } => "ALTER TABLE",
            Statement::Copy(_) => "COPY",
            Statement::Set(_) => "SET",
            Statement::SessionReset(_) => "RESET",
            Statement::Discard => "DISCARD ALL",
            Statement::Begin => "BEGIN",
            Statement::Commit => "COMMIT",
            Statement::Rollback => "ROLLBACK",
            Statement::Savepoint { action, .. } => match action {
                SavepointAction::Create => "SAVEPOINT",
                SavepointAction::Release => "RELEASE",
                SavepointAction::RollbackTo => "ROLLBACK TO",
            },
            Statement::Prepare { .. } => "PREPARE",
            Statement::Execute { .. } => "EXECUTE",
            Statement::Deallocate { .. } => "DEALLOCATE",
            Statement::Call(_) => "CALL",
            Statement::User(u) => match u.action {
                UserAction::Create => "CREATE ROLE",
                UserAction::Alter => "ALTER ROLE",
                UserAction::Drop { .. } => "DROP ROLE",
                UserAction::Grant { .. } => "GRANT ROLE",
                UserAction::Revoke { .. } => "REVOKE ROLE",
            },
            Statement::Mask(_) => "ALTER TABLE",
            Statement::Segment(g) => g.tag(),
        }
    }
}
