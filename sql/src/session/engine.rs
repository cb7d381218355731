//! The engine: one shared DataFusion context over the cohortdb catalog with
//! every function and catalog extension registered, the group/tag
//! scheduler, and the factory of per-connection [`Session`]s.

use std::sync::{Arc, Mutex};

use crate::pgcompat::parser::CompatParser;
use chrono_tz::Tz;
use cohortdb_storage::Store;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_pg_catalog::pg_catalog::setup_pg_catalog;

use super::Session;
use crate::error::{Result, SqlError};
use crate::runtime::interrupt::Interrupt;
use crate::runtime::settings::{SettingsMap, DATABASE};
use crate::runtime::{ContextSource, StatementContext};
use crate::segments::scheduler::Scheduler;
use crate::statement::parse::ParseLimits;
use crate::statement::Statement;
use crate::tables::catalog::{CohortCatalog, TableEnv};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Server time zone: defines `event_day` and the default session time zone.
    pub timezone: Tz,
    /// Deepest expression nesting a statement may have (SQLSTATE 54001 beyond).
    pub max_expression_depth: usize,
    /// Longest statement text (a Query or Parse message) in bytes (SQLSTATE 54000 beyond).
    pub max_message: usize,
    /// Memory one query may use, in bytes, unless the session sets
    /// `max_query_memory` (0 = no limit; SQLSTATE 53200 beyond).
    pub max_query_memory: usize,
    /// Memory all running queries together may use, in bytes (0 = no
    /// limit; the query crossing it gets SQLSTATE 53200).
    pub max_server_memory: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            timezone: Tz::UTC,
            max_expression_depth: crate::runtime::limits::DEFAULT_MAX_EXPRESSION_DEPTH,
            max_message: crate::runtime::limits::DEFAULT_MAX_MESSAGE_MB << 20,
            max_query_memory: crate::runtime::limits::DEFAULT_MAX_QUERY_MEMORY_MB << 20,
            max_server_memory: crate::runtime::memory_budget::default_server_memory_mb() << 20,
        }
    }
}

/// The shared engine.
pub struct Engine {
    store: Arc<Store>,
    base: SessionContext,
    env: TableEnv,
    pub(super) limits: EngineConfig,
    pub(super) relation_oids: crate::pgcompat::origins::RelationOids,
    /// What all running queries' memory pools draw from.
    pub(super) memory_budget: Arc<crate::runtime::memory_budget::ServerBudget>,
    parser: CompatParser,
    scheduler: Arc<Scheduler>,
}

impl Engine {
    /// Builds the engine over an open store.
    pub fn new(store: Arc<Store>, config: EngineConfig) -> Result<Arc<Engine>> {
        let mut sc = SessionConfig::new()
            .with_information_schema(false)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(DATABASE, "public")
            .with_target_partitions(2);
        sc.options_mut().execution.time_zone = Some(config.timezone.name().to_string());
        sc.options_mut().sql_parser.enable_ident_normalization = true;
        let base = SessionContext::new_with_config(sc);
        let env = TableEnv {
            store: store.clone(),
            tz: config.timezone,
            contact_lock: Arc::new(tokio::sync::Mutex::new(())),
            session_tz: config.timezone.name().into(),
            mask: Default::default(),
        };
        base.register_catalog(DATABASE, Arc::new(CohortCatalog::new(env.clone())));
        setup_pg_catalog(
            &base,
            DATABASE,
            crate::pgcompat::client_functions::CohortRoles::new(store.clone()),
        )
        .map_err(|e| SqlError::DataFusion(*e))?;
        crate::pgcompat::version::register(&base);
        crate::pgcompat::sized_functions::register(&base);
        for f in cohortdb_analytics::udaf::aggregates() {
            base.register_udaf(f);
        }
        crate::segments::functions::register_groups(&base, store.clone());
        crate::pgcompat::pg_functions::register(&base);
        crate::pgcompat::client_functions::register(&base);
        crate::pgcompat::client_functions::register_users(&base, store.clone());
        futures::executor::block_on(crate::pgcompat::pg_catalog_ext::install(
            &base, DATABASE, &store,
        ))?;
        crate::pgcompat::bi_functions::register(&base);
        futures::executor::block_on(crate::pgcompat::bi_functions::install(&base, DATABASE))?;
        crate::pgcompat::proc_functions::register(&base);
        futures::executor::block_on(crate::pgcompat::proc_functions::load(&base));
        let memory_budget =
            crate::runtime::memory_budget::ServerBudget::new(config.max_server_memory);
        memory_budget.install();
        let engine = Arc::new(Engine {
            store,
            base,
            env,
            memory_budget,
            limits: config,
            relation_oids: Default::default(),
            parser: CompatParser::new(),
            scheduler: Default::default(),
        });
        let source: Arc<dyn ContextSource> = engine.clone();
        engine.scheduler.attach(Arc::downgrade(&source));
        Ok(engine)
    }

    /// The group/tag refresh scheduler.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.scheduler
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The server time zone.
    pub fn timezone(&self) -> Tz {
        self.env.tz
    }

    /// The lock serialising read-modify-write of contact rows.
    pub fn contact_lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.env.contact_lock.clone()
    }

    /// A DataFusion context for a session in time zone `tz`: its own catalog
    /// list whose TIMESTAMPTZ columns carry `tz`, sharing everything else.
    pub(super) fn session_context(
        &self,
        tz: Tz,
        settings: &SettingsMap,
        interrupt: &Arc<Interrupt>,
        mask: &crate::runtime::context::MaskFlag,
    ) -> SessionContext {
        use datafusion::catalog::{
            CatalogProvider, CatalogProviderList, MemoryCatalogProviderList,
        };
        let env = TableEnv {
            session_tz: tz.name().into(),
            mask: mask.clone(),
            ..self.env.clone()
        };
        let catalog = CohortCatalog::new(env.clone());
        for name in ["pg_catalog", "information_schema"] {
            if let Some(s) = self.base.catalog(DATABASE).and_then(|c| c.schema(name)) {
                let _ = catalog.register_schema(name, s);
            }
        }
        let list = Arc::new(MemoryCatalogProviderList::new());
        list.register_catalog(DATABASE.to_string(), Arc::new(catalog));
        let mut state =
            datafusion::execution::session_state::SessionStateBuilder::new_from_existing(
                self.base.state(),
            )
            .with_catalog_list(list)
            .build();
        state.config_mut().options_mut().execution.time_zone = Some(tz.name().to_string());
        let ctx = SessionContext::new_with_state(state);
        crate::pgcompat::text_cast::register(&ctx, tz.name());
        crate::pgcompat::pg_functions::register_session(
            &ctx,
            settings.clone(),
            tz.name().to_string(),
            interrupt.clone(),
        );
        crate::analytics::relation::register(&ctx, env, interrupt.clone());
        ctx
    }

    /// A new session (one per connection).
    pub fn session(self: &Arc<Self>) -> Session {
        let settings = SettingsMap::default();
        let interrupt = Arc::new(Interrupt::default());
        let mask = crate::runtime::context::MaskFlag::default();
        let ctx = self.session_context(self.env.tz, &settings, &interrupt, &mask);
        crate::pgcompat::bi_functions::register_user(&ctx, "admin");
        Session {
            engine: self.clone(),
            ctx: std::sync::RwLock::new(ctx),
            settings,
            interrupt,
            mask,
            user: Mutex::new("admin".into()),
            tz: Mutex::new(self.env.tz),
            prepared: Default::default(),
            query_cache: Default::default(),
        }
    }

    /// Parses SQL text into statements (the one entry point,
    /// [`crate::statement::parse::parse`]).
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        crate::statement::parse::parse(
            &self.parser,
            sql,
            ParseLimits {
                max_message: self.limits.max_message,
                max_expression_depth: self.limits.max_expression_depth,
            },
        )
    }

    /// A statement context for work outside client sessions (scheduled
    /// refreshes, the daily dedupe): server time zone, user `admin`.
    pub fn background_context(&self) -> StatementContext {
        ContextSource::statement_context(self)
    }
}

impl ContextSource for Engine {
    fn statement_context(&self) -> StatementContext {
        let settings = SettingsMap::default();
        let interrupt = Arc::new(Interrupt::default());
        let df = self.session_context(self.env.tz, &settings, &interrupt, &Default::default());
        crate::pgcompat::bi_functions::register_user(&df, "admin");
        StatementContext {
            store: self.store.clone(),
            df,
            tz: self.env.tz,
            user: "admin".into(),
            interrupt,
            contact_lock: self.env.contact_lock.clone(),
        }
    }
}
