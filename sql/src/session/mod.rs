//! Sessions: the [`Engine`] shared by all connections, and one [`Session`]
//! per connection with its settings, time zone, user, prepared statements
//! and interrupt flag. `dispatch.rs` holds the one exhaustive match that
//! routes every [`Statement`] kind (to a handler, or to session state);
//! `describe.rs` plans statements for Parse/Describe without running them;
//! `cache.rs` keeps the plans of recent simple-protocol query texts.
//!
//! May use every other folder of the crate; nothing imports `session`
//! (the server crate uses it through the crate root).

mod cache;
mod describe;
mod dispatch;
pub mod engine;
pub mod prepared;
mod vars;

use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

pub use engine::{Engine, EngineConfig};

pub use crate::handler::Outcome;
use crate::runtime::interrupt::Interrupt;
use crate::runtime::settings::SettingsMap;
use crate::runtime::StatementContext;
use crate::statement::Statement;

/// A statement parsed (and, where DataFusion plans it, planned) for the
/// extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The statement.
    pub stmt: Statement,
    /// Its DataFusion plan, when DataFusion plans it (queries and DML).
    pub plan: Option<LogicalPlan>,
    /// Result columns of statements DataFusion does not plan (analytics,
    /// procedures that return rows, SHOW).
    pub schema: Option<SchemaRef>,
    /// Table OID and column number of each result column read from a
    /// relation (RowDescription); empty when none are known.
    pub origins: Vec<crate::pgcompat::origins::Origin>,
    /// Types of the `$n` parameters: of the plan (found once, at Parse), or
    /// of statements DataFusion does not plan (`CALL`, identity-keyed
    /// INSERT; see `statement::bind`).
    pub bound_types: Vec<Option<DataType>>,
    /// The key lookup the plan is, when it is one (`handler::lookup`).
    pub lookup: Option<Arc<crate::handler::lookup::KeyLookup>>,
    /// The row insert the plan is, when it is one (`handler::row_insert`).
    pub insert: Option<Arc<crate::handler::row_insert::RowInsert>>,
    /// The catalog the plan was made in, and its re-planning since.
    pub planned_in: Option<PlannedIn>,
}

/// The catalog a prepared plan was made in, what it was made with, and the
/// plan Execute uses once the catalog has changed (`describe.rs`).
#[derive(Clone)]
pub struct PlannedIn {
    catalog: Arc<cohortdb_storage::Catalog>,
    /// The Parse message's parameter types.
    client_types: Vec<Option<DataType>>,
    current: Arc<Mutex<Option<CurrentPlan>>>,
}

impl std::fmt::Debug for PlannedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedIn")
            .field("client_types", &self.client_types)
            .finish_non_exhaustive()
    }
}

/// A prepared statement's plan valid in `catalog`.
#[derive(Clone)]
struct CurrentPlan {
    catalog: Arc<cohortdb_storage::Catalog>,
    plan: LogicalPlan,
    lookup: Option<Arc<crate::handler::lookup::KeyLookup>>,
    insert: Option<Arc<crate::handler::row_insert::RowInsert>>,
}

impl Prepared {
    /// Types of the statement's `$n` parameters, as Describe reports them
    /// and Bind decodes them (`None`: left to the client's declared type).
    pub fn parameter_types(&self) -> crate::error::Result<Vec<Option<DataType>>> {
        Ok(self.bound_types.clone())
    }
}

/// Per-connection state: settings, time zone, its DataFusion context.
pub struct Session {
    engine: Arc<Engine>,
    ctx: std::sync::RwLock<SessionContext>,
    settings: SettingsMap,
    interrupt: Arc<Interrupt>,
    /// Set before each statement from the user's roles.
    mask: crate::runtime::context::MaskFlag,
    user: Mutex<String>,
    tz: Mutex<Tz>,
    prepared: prepared::PreparedStatements,
    query_cache: cache::QueryCache,
}

impl Session {
    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// This session's DataFusion context.
    pub fn context(&self) -> SessionContext {
        self.ctx.read().expect("context lock").clone()
    }

    /// The session time zone.
    pub fn timezone(&self) -> Tz {
        *self.tz.lock().expect("tz lock")
    }

    /// The user this session is logged in as.
    pub fn user(&self) -> String {
        self.user.lock().expect("user").clone()
    }

    /// Sets the user this session is logged in as (at startup).
    pub fn set_user(&self, name: &str) {
        *self.user.lock().expect("user") = name.to_string();
        self.query_cache.clear();
        crate::pgcompat::bi_functions::register_user(&self.context(), name);
    }

    /// This session's SQL-level prepared statements (`PREPARE`).
    pub fn prepared_statements(&self) -> &prepared::PreparedStatements {
        &self.prepared
    }

    /// The interrupt flag of this session's running statement.
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// What a statement of this session runs with.
    pub fn statement_context(&self) -> StatementContext {
        StatementContext {
            store: self.engine.store().clone(),
            df: self.context(),
            tz: self.timezone(),
            user: self.user(),
            interrupt: self.interrupt.clone(),
            contact_lock: self.engine.contact_lock(),
        }
    }

    /// `statement_timeout` of this session, if one is set.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        crate::runtime::interrupt::parse_timeout(&self.setting("statement_timeout")?)
    }

    /// `client_connection_check_interval`: how often a running statement
    /// checks that its client is still connected (`None` = never).
    pub fn connection_check_interval(&self) -> Option<std::time::Duration> {
        crate::runtime::interrupt::parse_timeout(&self.setting("client_connection_check_interval")?)
    }

    /// Value of a setting as `SHOW` reports it.
    pub fn setting(&self, name: &str) -> Option<String> {
        crate::runtime::settings::lookup(&self.settings, name, self.timezone().name()).or_else(
            || match crate::runtime::settings::normalize(name).as_str() {
                "max_query_memory" => {
                    Some(format!("{}MB", self.engine.limits.max_query_memory >> 20))
                }
                "max_expression_depth" => Some(self.engine.limits.max_expression_depth.to_string()),
                _ => None,
            },
        )
    }

    /// Memory one query of this session may use, in bytes (0 = no limit).
    pub fn max_query_memory(&self) -> usize {
        self.settings
            .lock()
            .expect("settings")
            .get("max_query_memory")
            .and_then(|v| crate::runtime::limits::parse_memory(v))
            .unwrap_or(self.engine.limits.max_query_memory)
    }

    /// A context for one query: the session's, with a memory pool of the
    /// query's own (`max_query_memory`) drawing from the server's budget
    /// (`max_server_memory`).
    fn query_context(&self) -> crate::error::Result<SessionContext> {
        use crate::runtime::memory_budget::BudgetedPool;
        use datafusion::execution::memory_pool::{MemoryPool, UnboundedMemoryPool};
        let ctx = self.context();
        let limit = self.max_query_memory();
        let budget = &self.engine.memory_budget;
        if limit == 0 && budget.limit().is_none() {
            return Ok(ctx);
        }
        let own: Arc<dyn MemoryPool> = if limit == 0 {
            Arc::new(UnboundedMemoryPool::default())
        } else {
            crate::runtime::limits::query_memory_pool(limit)
        };
        let state = ctx.state();
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::from_runtime_env(
            state.runtime_env(),
        )
        .with_memory_pool(Arc::new(BudgetedPool::new(own, budget.clone())))
        .build_arc()?;
        let state =
            datafusion::execution::session_state::SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime)
                .build();
        Ok(SessionContext::new_with_state(state))
    }
}
