//! The engine: one shared DataFusion context over the cohortdb catalog, and
//! per-connection sessions that parse statements, route cohortdb's own
//! statements (DDL on the catalog, COPY, SET/SHOW, procedures) and hand the
//! rest to DataFusion.

use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use cohortdb_storage::catalog::FieldDef;
use cohortdb_storage::{ColumnDef, DataType, Store, UserTableDef};
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CopyOption, CopySource, CopyTarget, Expr as SqlExpr, ObjectName,
    ObjectType, Set, Statement, Value as SqlValue,
};
use datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::catalog::{CohortCatalog, TableEnv, BUILTIN_RELATIONS};
use crate::copy::{CopyFormat, CopyIn, CopyOptions};
use crate::error::{Result, SqlError};
use crate::functions;
use crate::ingest::OnError;
use crate::interrupt::Interrupt;
use crate::settings::SettingsMap;
use crate::tables::meta::{define_property, is_identifier};

/// Name of the one database.
pub const DATABASE: &str = "cohortdb";
/// Postgres version reported to clients.
pub const PG_VERSION: &str = "16.4";
/// `server_version_num` reported to clients.
pub const PG_VERSION_NUM: &str = "160004";

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            timezone: Tz::UTC,
            max_expression_depth: crate::limits::DEFAULT_MAX_EXPRESSION_DEPTH,
            max_message: crate::limits::DEFAULT_MAX_MESSAGE_MB << 20,
            max_query_memory: crate::limits::DEFAULT_MAX_QUERY_MEMORY_MB << 20,
        }
    }
}

/// The shared engine.
pub struct Engine {
    store: Arc<Store>,
    base: SessionContext,
    env: TableEnv,
    limits: EngineConfig,
    relation_oids: crate::origins::RelationOids,
    parser: PostgresCompatibilityParser,
    scheduler: crate::scheduler::Scheduler,
}

/// What a statement produced.
pub enum Outcome {
    /// Rows to send.
    Rows(DataFrame),
    /// A completed command: tag and affected rows (`INSERT 0 n` is formatted by the server).
    Command {
        /// Command tag word(s), e.g. `CREATE TABLE`.
        tag: String,
        /// Affected rows, when the tag carries a count.
        rows: Option<u64>,
    },
    /// The client must now send COPY data.
    CopyIn(Box<CopyIn>),
    /// Rows to stream as COPY data.
    CopyOut {
        /// Rows.
        df: DataFrame,
        /// Format.
        opts: CopyOptions,
    },
    /// A setting changed that clients track (ParameterStatus).
    ParameterChanged {
        /// Tag (`SET`).
        tag: String,
        /// Parameter name as reported.
        name: String,
        /// New value.
        value: String,
    },
}

/// One parsed statement: SQL the `sqlparser` grammar knows, or one of
/// cohortdb's own statements.
#[derive(Debug, Clone)]
pub enum CohortStatement {
    /// A SQL statement.
    Sql(Statement),
    /// FUNNEL / RETENTION / ATTRIBUTE / LTV / PATHS, possibly under EXPLAIN.
    Analytics {
        /// `EXPLAIN` in front.
        explain: bool,
        /// The statement.
        stmt: Box<crate::analytics::AnalyticsStatement>,
    },
}

/// A statement parsed for the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The statement.
    pub stmt: CohortStatement,
    /// Its DataFusion plan, when DataFusion plans it (queries and DML).
    pub plan: Option<LogicalPlan>,
    /// Result columns of statements DataFusion does not plan (analytics).
    pub schema: Option<datafusion::arrow::datatypes::SchemaRef>,
    /// Table OID and column number of each result column read from a
    /// relation (RowDescription); empty when none are known.
    pub origins: Vec<crate::origins::Origin>,
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
        };
        base.register_catalog(DATABASE, Arc::new(CohortCatalog::new(env.clone())));
        setup_pg_catalog(
            &base,
            DATABASE,
            crate::client_functions::CohortRoles::new(store.clone()),
        )
        .map_err(|e| SqlError::DataFusion(*e))?;
        functions::register(&base);
        functions::register_groups(&base, store.clone());
        crate::pg_functions::register(&base);
        crate::client_functions::register(&base);
        crate::client_functions::register_users(&base, store.clone());
        futures::executor::block_on(crate::pg_catalog_ext::install(&base, DATABASE))?;
        crate::bi_functions::register(&base);
        futures::executor::block_on(crate::bi_functions::install(&base, DATABASE))?;
        let engine = Arc::new(Engine {
            store,
            base,
            env,
            limits: config,
            relation_oids: Default::default(),
            parser: PostgresCompatibilityParser::new(),
            scheduler: Default::default(),
        });
        engine.scheduler.attach(&engine);
        Ok(engine)
    }

    /// The group/tag refresh scheduler.
    pub fn scheduler(&self) -> &crate::scheduler::Scheduler {
        &self.scheduler
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The lock serialising read-modify-write of contact rows.
    pub fn contact_lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.env.contact_lock.clone()
    }

    /// A DataFusion context for a session in time zone `tz`: its own catalog
    /// list whose TIMESTAMPTZ columns carry `tz`, sharing everything else.
    fn session_context(
        &self,
        tz: Tz,
        settings: &SettingsMap,
        interrupt: &Arc<Interrupt>,
    ) -> SessionContext {
        use datafusion::catalog::{
            CatalogProvider, CatalogProviderList, MemoryCatalogProviderList,
        };
        let catalog = CohortCatalog::new(TableEnv {
            session_tz: tz.name().into(),
            ..self.env.clone()
        });
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
        crate::text_cast::register(&ctx, tz.name());
        crate::pg_functions::register_session(
            &ctx,
            settings.clone(),
            tz.name().to_string(),
            interrupt.clone(),
        );
        ctx
    }

    /// A new session (one per connection).
    pub fn session(self: &Arc<Self>) -> Session {
        let settings = SettingsMap::default();
        let interrupt = Arc::new(Interrupt::default());
        let ctx = self.session_context(self.env.tz, &settings, &interrupt);
        crate::bi_functions::register_user(&ctx, "admin");
        Session {
            engine: self.clone(),
            ctx: std::sync::RwLock::new(ctx),
            settings,
            interrupt,
            user: Mutex::new("admin".into()),
            tz: Mutex::new(self.env.tz),
            prepared: Default::default(),
        }
    }

    /// Parses SQL text into statements (Postgres dialect with catalog
    /// rewrites; the analytics statements by their own grammar).
    pub fn parse(&self, sql: &str) -> Result<(Vec<CohortStatement>, Option<OnError>)> {
        if sql.len() > self.limits.max_message {
            return Err(SqlError::ProgramLimit(format!(
                "statement text of {} bytes exceeds max_message_mb ({} MiB); send large data with COPY, or raise max_message_mb in the server configuration",
                sql.len(),
                self.limits.max_message >> 20
            )));
        }
        crate::limits::check_expression_depth(sql, self.limits.max_expression_depth)?;
        let (sql, on_error) = extract_on_error(sql);
        // Group and tag statements travel as carrier CALLs (crate::groups).
        if let Some(parts) = crate::groups::parse_script(&sql) {
            let mut out = Vec::new();
            for part in parts? {
                out.extend(self.parse_script(&part)?);
            }
            return Ok((out, on_error));
        }
        Ok((self.parse_script(&sql)?, on_error))
    }

    /// Parses statements, the analytics ones by their own grammar.
    fn parse_script(&self, sql: &str) -> Result<Vec<CohortStatement>> {
        let Some(pieces) = crate::analytics::split(sql)? else {
            return self.parse_sql(sql);
        };
        let mut out = Vec::new();
        for p in pieces {
            match p {
                crate::analytics::Piece::Sql(text) => out.extend(self.parse_sql(&text)?),
                crate::analytics::Piece::Analytics { explain, stmt } => {
                    out.push(CohortStatement::Analytics { explain, stmt })
                }
            }
        }
        Ok(out)
    }

    fn parse_sql(&self, sql: &str) -> Result<Vec<CohortStatement>> {
        // CREATE/ALTER/DROP USER travel as carrier CALLs (crate::users).
        let rewritten = crate::users::rewrite_sql(sql);
        let text = rewritten.as_deref().unwrap_or(sql);
        let parsed = if crate::bi_rewrite::needs_unblacklisted_parse(text) {
            crate::bi_rewrite::parse_unblacklisted(&self.parser, text)
        } else {
            self.parser.parse(text)
        };
        let mut stmts = parsed.map_err(|e| {
            let msg = e.to_string();
            if msg.contains("recursion limit exceeded") {
                SqlError::TooComplex(format!(
                    "the statement nests more than {} levels deep (parentheses, subqueries, function calls); simplify it",
                    crate::limits::PARSER_NESTING_LIMIT
                ))
            } else {
                // The compatibility parser's tokens carry no locations:
                // the plain parser finds where the error is.
                match datafusion::sql::sqlparser::parser::Parser::parse_sql(
                    &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                    sql,
                ) {
                    Err(located) => crate::error::syntax_error_at(sql, &located.to_string()),
                    Ok(_) => crate::error::syntax_error_at(sql, &msg),
                }
            }
        })?;
        stmts.iter_mut().for_each(crate::rewrite::rewrite);
        Ok(stmts.into_iter().map(CohortStatement::Sql).collect())
    }
}

/// Refuses a value cohortdb cannot apply for a setting it interprets (22023).
fn validate_setting(name: &str, value: &str) -> Result<()> {
    let ok = match name {
        "statement_timeout" => {
            value.trim_matches('\'').trim() == "0"
                || crate::interrupt::parse_timeout(value).is_some()
        }
        "max_query_memory" => crate::limits::parse_memory(value).is_some(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(SqlError::InvalidValue(format!(
            "invalid value for parameter \"{name}\": \"{value}\" ({})",
            match name {
                "statement_timeout" => "use milliseconds or a number with ms, s, min, h or d",
                _ => "use MB, or a number with kB, MB, GB or TB; 0 means no limit",
            }
        )))
    }
}

/// Removes a `ON_ERROR <mode>` COPY option (which the parser does not know) from `sql`.
fn extract_on_error(sql: &str) -> (String, Option<OnError>) {
    let upper = sql.to_ascii_uppercase();
    let Some(pos) = upper.find("ON_ERROR") else {
        return (sql.to_string(), None);
    };
    let rest = &sql[pos + 8..];
    let word: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '\'')
        .collect();
    let ws = rest.len() - rest.trim_start().len();
    let end = pos + 8 + ws + word.len();
    let mode = match word.trim_matches('\'').to_ascii_lowercase().as_str() {
        "ignore" => OnError::Ignore,
        _ => OnError::Stop,
    };
    let mut before = sql[..pos].trim_end().to_string();
    let mut after = sql[end..].to_string();
    if before.ends_with(',') {
        before.pop();
    } else if after.trim_start().starts_with(',') {
        after = after.trim_start()[1..].to_string();
    }
    let mut out = format!("{before} {after}");
    out = out.replace("( )", "").replace("()", "");
    (out, Some(mode))
}

/// Per-connection state: settings, time zone, its DataFusion context.
pub struct Session {
    engine: Arc<Engine>,
    ctx: std::sync::RwLock<SessionContext>,
    settings: SettingsMap,
    interrupt: Arc<Interrupt>,
    user: Mutex<String>,
    tz: Mutex<Tz>,
    prepared: crate::prepared_sql::PreparedStatements,
}

fn object_name(n: &ObjectName) -> String {
    n.0.last()
        .map(|p| p.to_string().trim_matches('"').to_string())
        .unwrap_or_default()
}

fn sql_value_text(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        SqlExpr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
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
        crate::bi_functions::register_user(&self.context(), name);
    }

    /// This session's SQL-level prepared statements (`PREPARE`).
    pub fn prepared_statements(&self) -> &crate::prepared_sql::PreparedStatements {
        &self.prepared
    }

    /// The interrupt flag of this session's running statement.
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// `statement_timeout` of this session, if one is set.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        crate::interrupt::parse_timeout(&self.setting("statement_timeout")?)
    }

    /// Value of a setting as `SHOW` reports it.
    pub fn setting(&self, name: &str) -> Option<String> {
        crate::settings::lookup(&self.settings, name, self.timezone().name()).or_else(|| {
            match crate::settings::normalize(name).as_str() {
                "max_query_memory" => {
                    Some(format!("{}MB", self.engine.limits.max_query_memory >> 20))
                }
                "max_expression_depth" => Some(self.engine.limits.max_expression_depth.to_string()),
                _ => None,
            }
        })
    }

    /// Plans a statement for Parse/Describe (no side effects).
    pub async fn prepare(&self, stmt: CohortStatement) -> Result<Prepared> {
        self.prepare_typed(stmt, &[]).await
    }

    /// Plans a statement for Parse/Describe, typing the `$n` parameters
    /// nothing in the statement types with `client_types` (the Parse
    /// message's OIDs; `None` = unspecified, then text).
    pub async fn prepare_typed(
        &self,
        stmt: CohortStatement,
        client_types: &[Option<datafusion::arrow::datatypes::DataType>],
    ) -> Result<Prepared> {
        if let CohortStatement::Sql(Statement::Execute { name, .. }) = &stmt {
            let schema = crate::prepared_sql::result_schema(self, name);
            return Ok(Prepared {
                stmt,
                plan: None,
                schema,
                origins: vec![],
            });
        }
        let stmt = match stmt {
            CohortStatement::Sql(s) => s,
            CohortStatement::Analytics { explain, stmt } => {
                let schema = crate::analytics::output_schema(self, &stmt, explain).await?;
                return Ok(Prepared {
                    stmt: CohortStatement::Analytics { explain, stmt },
                    plan: None,
                    schema: Some(schema),
                    origins: vec![],
                });
            }
        };
        let plan = if is_datafusion_statement(&stmt) && !crate::identity_insert::wants(&stmt) {
            Some(
                self.context()
                    .state()
                    .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                        stmt.clone(),
                    )))
                    .await?,
            )
        } else {
            None
        };
        let plan = match plan {
            Some(p) if matches!(stmt, Statement::Query(_)) => {
                Some(crate::literals::type_output_literals(
                    crate::params::apply_client_types(p, client_types)?,
                )?)
            }
            other => other,
        };
        let origins = match &plan {
            Some(p) if matches!(stmt, Statement::Query(_)) => self.column_origins(p).await,
            _ => vec![],
        };
        Ok(Prepared {
            stmt: CohortStatement::Sql(stmt),
            plan,
            schema: None,
            origins,
        })
    }

    /// Table OID and column number of each output column of `plan` that is
    /// read straight from a relation (as RowDescription reports them).
    pub async fn column_origins(&self, plan: &LogicalPlan) -> Vec<crate::origins::Origin> {
        self.engine
            .relation_oids
            .origins(&self.context(), plan)
            .await
    }

    /// Executes a prepared statement with bound parameters.
    pub async fn execute_prepared(
        &self,
        p: &Prepared,
        params: Option<ParamValues>,
        on_error: Option<OnError>,
    ) -> Result<Outcome> {
        match &p.plan {
            Some(plan) => {
                let plan = match params {
                    Some(v) => plan.clone().replace_params_with_values(&v)?,
                    None => plan.clone(),
                };
                let CohortStatement::Sql(stmt) = &p.stmt else {
                    unreachable!("only SQL statements carry a DataFusion plan")
                };
                self.run_plan(stmt, plan).await
            }
            None => self.execute(p.stmt.clone(), on_error).await,
        }
    }

    /// Memory one query of this session may use, in bytes (0 = no limit).
    pub fn max_query_memory(&self) -> usize {
        self.settings
            .lock()
            .expect("settings")
            .get("max_query_memory")
            .and_then(|v| crate::limits::parse_memory(v))
            .unwrap_or(self.engine.limits.max_query_memory)
    }

    /// A context for one query: the session's, with a memory pool of the
    /// query's own when `max_query_memory` limits it.
    fn query_context(&self) -> Result<SessionContext> {
        let ctx = self.context();
        let limit = self.max_query_memory();
        if limit == 0 {
            return Ok(ctx);
        }
        let state = ctx.state();
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::from_runtime_env(
            state.runtime_env(),
        )
        .with_memory_pool(crate::limits::query_memory_pool(limit))
        .build_arc()?;
        let state =
            datafusion::execution::session_state::SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime)
                .build();
        Ok(SessionContext::new_with_state(state))
    }

    async fn run_plan(&self, stmt: &Statement, plan: LogicalPlan) -> Result<Outcome> {
        let df = self.query_context()?.execute_logical_plan(plan).await?;
        let tag = match stmt {
            Statement::Insert(_) => "INSERT",
            Statement::Update { .. } => "UPDATE",
            Statement::Delete(_) => "DELETE",
            _ => return Ok(Outcome::Rows(df)),
        };
        let batches = df.collect().await?;
        let n = batches
            .first()
            .and_then(|b| b.column_by_name("count"))
            .and_then(|c| {
                c.as_any()
                    .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        Ok(Outcome::Command {
            tag: tag.into(),
            rows: Some(n),
        })
    }

    /// Executes one statement.
    pub async fn execute(
        &self,
        stmt: CohortStatement,
        on_error: Option<OnError>,
    ) -> Result<Outcome> {
        match stmt {
            CohortStatement::Sql(s) => self.execute_sql(s, on_error).await,
            CohortStatement::Analytics { explain, stmt } => {
                let batch = crate::analytics::execute(self, &stmt, explain).await?;
                Ok(Outcome::Rows(self.context().read_batch(batch)?))
            }
        }
    }

    /// Executes one SQL statement.
    async fn execute_sql(&self, stmt: Statement, on_error: Option<OnError>) -> Result<Outcome> {
        if let Some(g) = crate::groups::carried(&stmt) {
            return crate::groups::execute(self, g?).await;
        }
        match &stmt {
            Statement::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                ..
            } => {
                self.copy(
                    source,
                    *to,
                    target,
                    options,
                    !legacy_options.is_empty(),
                    on_error,
                )
                .await
            }
            Statement::CreateTable(ct) => {
                let name = object_name(&ct.name);
                if ct.query.is_some() {
                    return Err(SqlError::Unsupported("CREATE TABLE ... AS SELECT is not supported; create the table, then INSERT ... SELECT".into()));
                }
                let mut cols = Vec::new();
                for c in &ct.columns {
                    let t = DataType::parse(&c.data_type.to_string()).ok_or_else(|| {
                        SqlError::Unsupported(format!(
                            "column \"{}\": type {} is not supported (use VARCHAR, BIGINT, DOUBLE, BOOLEAN, DATE or TIMESTAMPTZ)",
                            c.name.value, c.data_type
                        ))
                    })?;
                    if cols.iter().any(|x: &ColumnDef| x.name == c.name.value) {
                        return Err(SqlError::DuplicateColumn(format!(
                            "column \"{}\" specified more than once",
                            c.name.value
                        )));
                    }
                    cols.push(ColumnDef {
                        name: c.name.value.clone(),
                        data_type: t,
                    });
                }
                if cols.is_empty() {
                    return Err(SqlError::Syntax(
                        "CREATE TABLE needs at least one column".into(),
                    ));
                }
                let if_not_exists = ct.if_not_exists;
                let created = self
                    .engine
                    .store
                    .update_catalog(|data, _| -> Result<bool> {
                        if BUILTIN_RELATIONS.contains(&name.as_str())
                            || data.tables.iter().any(|t| t.name == name)
                        {
                            if if_not_exists {
                                return Ok(false);
                            }
                            return Err(SqlError::DuplicateTable(format!(
                                "relation \"{name}\" already exists"
                            )));
                        }
                        if !is_identifier(&name) {
                            return Err(SqlError::InvalidName(format!(
                                "invalid table name \"{name}\""
                            )));
                        }
                        let id = data.next_table_id;
                        data.next_table_id += 1;
                        data.tables.push(UserTableDef {
                            id,
                            name: name.clone(),
                            columns: cols,
                        });
                        Ok(true)
                    })
                    .await?;
                let _ = created;
                Ok(Outcome::Command {
                    tag: "CREATE TABLE".into(),
                    rows: None,
                })
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                names,
                if_exists,
                ..
            } => {
                for n in names {
                    let name = object_name(n);
                    if BUILTIN_RELATIONS.contains(&name.as_str()) {
                        return Err(SqlError::InsufficientPrivilege(format!(
                            "\"{name}\" is a built-in relation and cannot be dropped"
                        )));
                    }
                    let if_exists = *if_exists;
                    self.engine
                        .store
                        .update_catalog(|data, batch| -> Result<()> {
                            match data.tables.iter().position(|t| t.name == name) {
                                Some(i) => {
                                    let t = data.tables.remove(i);
                                    batch.drop_user_table_rows(t.id);
                                    Ok(())
                                }
                                None if if_exists => Ok(()),
                                None => Err(SqlError::UndefinedTable(format!(
                                    "table \"{name}\" does not exist"
                                ))),
                            }
                        })
                        .await?;
                }
                Ok(Outcome::Command {
                    tag: "DROP TABLE".into(),
                    rows: None,
                })
            }
            Statement::AlterTable(at) => {
                self.alter_table(&object_name(&at.name), &at.operations)
                    .await
            }
            Statement::Set(set) => self.set(set),
            Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(|i| i.value.clone())
                    .collect::<Vec<_>>()
                    .join(" ");
                let lname = crate::settings::normalize(&name);
                if lname == "all" {
                    return Err(SqlError::Unsupported(
                        "SHOW ALL is not supported; query pg_settings".into(),
                    ));
                }
                let value = self.setting(&lname).ok_or_else(|| {
                    SqlError::UndefinedObject(format!(
                        "unrecognized configuration parameter \"{name}\""
                    ))
                })?;
                let df = self
                    .context()
                    .read_batch(single_text_batch(&lname, &value)?)?;
                Ok(Outcome::Rows(df))
            }
            Statement::StartTransaction { .. } => Ok(Outcome::Command {
                tag: "BEGIN".into(),
                rows: None,
            }),
            Statement::Commit { .. } => Ok(Outcome::Command {
                tag: "COMMIT".into(),
                rows: None,
            }),
            Statement::Rollback { .. } => Ok(Outcome::Command {
                tag: "ROLLBACK".into(),
                rows: None,
            }),
            Statement::Reset(_) | Statement::Close { .. } | Statement::UNLISTEN { .. } => {
                crate::settings::session_statement(&self.settings, &stmt)
            }
            Statement::Prepare {
                name,
                data_types,
                statement,
            } => crate::prepared_sql::prepare(self, &name, &data_types, &statement).await,
            Statement::Execute {
                name, parameters, ..
            } => Box::pin(crate::prepared_sql::execute(self, name, parameters)).await,
            Statement::Deallocate { name, .. } => crate::prepared_sql::deallocate(self, &name),
            Statement::Discard { .. } => {
                crate::settings::reset_all(&self.settings);
                self.prepared.clear();
                Ok(Outcome::Command {
                    tag: "DISCARD ALL".into(),
                    rows: None,
                })
            }
            Statement::Call(f) if crate::users::is_user_call(f) => {
                let user = self.user();
                crate::users::call(&self.engine.store, f, &user).await
            }
            Statement::Call(f) => crate::procedures::call(self, f).await,
            _ if crate::identity_insert::wants(&stmt) => {
                crate::identity_insert::run(self, &stmt).await
            }
            _ if is_datafusion_statement(&stmt) => {
                let plan = self
                    .context()
                    .state()
                    .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                        stmt.clone(),
                    )))
                    .await?;
                let plan = if matches!(stmt, Statement::Query(_)) {
                    crate::literals::type_output_literals(plan)?
                } else {
                    plan
                };
                self.run_plan(&stmt, plan).await
            }
            other => Err(SqlError::Unsupported(format!(
                "statement not supported: {}",
                other
                    .to_string()
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            ))),
        }
    }

    fn set(&self, set: &Set) -> Result<Outcome> {
        let (name, value) = match set {
            Set::SetTimeZone { value, .. } => ("timezone".to_string(), sql_value_text(value)),
            Set::SingleAssignment {
                variable, values, ..
            } => (
                variable.to_string().to_ascii_lowercase(),
                values
                    .iter()
                    .map(sql_value_text)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Set::SetNames { charset_name, .. } => {
                ("client_encoding".into(), charset_name.value.clone())
            }
            Set::SetTransaction { .. } | Set::SetSessionParam(_) | Set::SetRole { .. } => {
                return Ok(Outcome::Command {
                    tag: "SET".into(),
                    rows: None,
                })
            }
            other => {
                return Err(SqlError::Unsupported(format!(
                    "unsupported SET form: {other}"
                )))
            }
        };
        let name = if name == "time zone" {
            "timezone".to_string()
        } else {
            name
        };
        if name == "timezone" {
            let v = if value.eq_ignore_ascii_case("local") || value.eq_ignore_ascii_case("default")
            {
                self.engine.env.tz.name().to_string()
            } else {
                value.clone()
            };
            let tz: Tz = parse_tz(&v).ok_or_else(|| {
                SqlError::InvalidValue(format!("invalid value for parameter \"TimeZone\": \"{v}\" (use an IANA name such as Asia/Shanghai or UTC)"))
            })?;
            *self.tz.lock().expect("tz") = tz;
            *self.ctx.write().expect("context lock") =
                self.engine
                    .session_context(tz, &self.settings, &self.interrupt);
            crate::bi_functions::register_user(&self.context(), &self.user());
            return Ok(Outcome::ParameterChanged {
                tag: "SET".into(),
                name: "TimeZone".into(),
                value: tz.name().to_string(),
            });
        }
        validate_setting(&name, &value)?;
        self.settings
            .lock()
            .expect("settings")
            .insert(name.clone(), value.clone());
        let reported = match name.as_str() {
            "application_name" => Some("application_name"),
            "datestyle" => Some("DateStyle"),
            "client_encoding" => Some("client_encoding"),
            "intervalstyle" => Some("IntervalStyle"),
            _ => None,
        };
        Ok(match reported {
            Some(n) => Outcome::ParameterChanged {
                tag: "SET".into(),
                name: n.into(),
                value,
            },
            None => Outcome::Command {
                tag: "SET".into(),
                rows: None,
            },
        })
    }

    async fn alter_table(&self, table: &str, ops: &[AlterTableOperation]) -> Result<Outcome> {
        if table != "contacts" && table != "events" {
            return Err(SqlError::Unsupported(format!(
                "ALTER TABLE is supported on contacts and events (ADD COLUMN p_<name> <type>), not on \"{table}\""
            )));
        }
        let mut adds = Vec::new();
        for op in ops {
            match op {
                AlterTableOperation::AddColumn { column_def, if_not_exists, .. } => {
                    let name = column_def.name.value.clone();
                    let t = DataType::parse(&column_def.data_type.to_string()).ok_or_else(|| {
                        SqlError::Unsupported(format!(
                            "type {} is not supported for custom fields (use VARCHAR, BIGINT, DOUBLE, DATE or TIMESTAMPTZ)",
                            column_def.data_type
                        ))
                    })?;
                    if !name.starts_with("p_") || !is_identifier(&name) || name.len() < 3 {
                        return Err(SqlError::InvalidName(format!(
                            "invalid custom field name \"{name}\": custom fields are named p_<name> with letters, digits and underscores"
                        )));
                    }
                    if table == "contacts" && t == DataType::Boolean {
                        return Err(SqlError::Unsupported(
                            "custom contact fields are VARCHAR, BIGINT, DOUBLE, DATE or TIMESTAMPTZ".into(),
                        ));
                    }
                    adds.push((name, t, *if_not_exists));
                }
                AlterTableOperation::DropColumn { .. } => {
                    return Err(SqlError::Unsupported("custom fields cannot be dropped".into()))
                }
                AlterTableOperation::AlterColumn { .. } => {
                    return Err(SqlError::Unsupported(
                        "the type of a field cannot change (masking is set with ALTER COLUMN ... SET MASKED, not yet available)".into(),
                    ))
                }
                other => return Err(SqlError::Unsupported(format!("unsupported ALTER TABLE operation: {other}"))),
            }
        }
        let is_contacts = table == "contacts";
        self.engine
            .store
            .update_catalog(|data, _| -> Result<()> {
                for (name, t, if_not_exists) in &adds {
                    if is_contacts {
                        if data.contact_fields.iter().any(|f| &f.name == name) {
                            if *if_not_exists {
                                continue;
                            }
                            return Err(SqlError::DuplicateColumn(format!(
                                "column \"{name}\" of relation \"contacts\" already exists"
                            )));
                        }
                        data.contact_fields.push(FieldDef {
                            name: name.clone(),
                            data_type: *t,
                            custom: true,
                        });
                    } else {
                        if data.event_properties.iter().any(|p| &p.property == name) {
                            if *if_not_exists {
                                continue;
                            }
                            return Err(SqlError::DuplicateColumn(format!(
                                "column \"{name}\" of relation \"events\" already exists"
                            )));
                        }
                        define_property(data, name, None, *t)?;
                    }
                }
                Ok(())
            })
            .await?;
        Ok(Outcome::Command {
            tag: "ALTER TABLE".into(),
            rows: None,
        })
    }

    async fn copy(
        &self,
        source: &CopySource,
        to: bool,
        target: &CopyTarget,
        options: &[CopyOption],
        legacy: bool,
        on_error: Option<OnError>,
    ) -> Result<Outcome> {
        let mut fmt = CopyFormat::Text;
        let mut binary = false;
        for o in options {
            if let CopyOption::Format(f) = o {
                fmt = match f.value.to_ascii_lowercase().as_str() {
                    "csv" => CopyFormat::Csv,
                    "text" => CopyFormat::Text,
                    "binary" => {
                        binary = true;
                        CopyFormat::Csv
                    }
                    other => {
                        return Err(SqlError::InvalidValue(format!(
                            "COPY format \"{other}\" not recognized (use text, csv or binary)"
                        )))
                    }
                };
            }
        }
        if legacy {
            return Err(SqlError::Unsupported(
                "legacy COPY options are not supported; use COPY ... WITH (FORMAT csv, HEADER)"
                    .into(),
            ));
        }
        let mut opts = CopyOptions::new(fmt);
        for o in options {
            match o {
                CopyOption::Format(_) | CopyOption::Encoding(_) | CopyOption::Freeze(_) => {}
                CopyOption::Delimiter(c) => opts.delimiter = *c as u8,
                CopyOption::Null(s) => opts.null = s.clone(),
                CopyOption::Header(h) => opts.header = *h,
                CopyOption::Quote(c) => opts.quote = *c as u8,
                CopyOption::Escape(c) => opts.escape = *c as u8,
                other => {
                    return Err(SqlError::Unsupported(format!(
                        "COPY option {other} is not supported"
                    )))
                }
            }
        }
        if let Some(m) = on_error {
            opts.on_error = m;
        }
        opts.binary = binary && to;
        match (to, target) {
            (false, CopyTarget::Stdin) => {
                let CopySource::Table { table_name, columns } = source else {
                    return Err(SqlError::Syntax("COPY FROM needs a table".into()));
                };
                let cols: Vec<String> = columns.iter().map(|c| c.value.clone()).collect();
                let copy = CopyIn::begin(
                    self.engine.store.clone(),
                    &object_name(table_name),
                    &cols,
                    opts,
                    self.timezone(),
                    self.engine.env.contact_lock.clone(),
                )?;
                let copy = if binary { copy.into_binary() } else { copy };
                Ok(Outcome::CopyIn(Box::new(copy)))
            }
            (true, CopyTarget::Stdout) => {
                let sql = match source {
                    CopySource::Table { table_name, columns } => {
                        let cols = if columns.is_empty() {
                            "*".to_string()
                        } else {
                            columns.iter().map(|c| format!("\"{}\"", c.value)).collect::<Vec<_>>().join(", ")
                        };
                        format!("SELECT {cols} FROM {table_name}")
                    }
                    CopySource::Query(q) => q.to_string(),
                };
                let df = self.query_context()?.sql(&sql).await?;
                if opts.binary {
                    crate::copy_binary_out::check_schema(df.schema().as_arrow())?;
                }
                Ok(Outcome::CopyOut { df, opts })
            }
            _ => Err(SqlError::Unsupported("COPY supports FROM STDIN and TO STDOUT only (files are read by the client, e.g. psql \\copy)".into())),
        }
    }
}

fn parse_tz(v: &str) -> Option<Tz> {
    let t = v.trim();
    if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("gmt") || t == "Z" {
        return Some(Tz::UTC);
    }
    t.parse::<Tz>().ok()
}

fn single_text_batch(name: &str, value: &str) -> Result<datafusion::arrow::array::RecordBatch> {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{DataType as A, Field, Schema};
    let schema = Arc::new(Schema::new(vec![Field::new(name, A::Utf8, false)]));
    Ok(datafusion::arrow::array::RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(vec![value]))],
    )?)
}

/// True for statements DataFusion plans (queries and DML).
pub fn is_datafusion_statement(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::Query(_)
            | Statement::Insert(_)
            | Statement::Update { .. }
            | Statement::Delete(_)
            | Statement::Explain { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_error_option_is_extracted() {
        let (s, m) = extract_on_error("COPY events (a) FROM STDIN (FORMAT csv, ON_ERROR ignore)");
        assert_eq!(m, Some(OnError::Ignore));
        assert!(!s.to_ascii_uppercase().contains("ON_ERROR"));
        assert!(s.contains("FORMAT csv"));
        let (s, m) = extract_on_error("COPY events FROM STDIN (ON_ERROR ignore)");
        assert_eq!(m, Some(OnError::Ignore));
        assert_eq!(s.trim(), "COPY events FROM STDIN");
    }
}
