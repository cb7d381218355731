//! Postgres wire protocol: translates pgwire messages into session calls and
//! results back into wire responses. No execution logic lives here.

mod auth;
mod cancel;
pub mod error;
pub mod liveness;
mod params;
pub mod tls;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono_tz::Tz;
use cohortdb_sql::ingest::copy::{format_header, format_row, CopyIn, CopyOptions};
use cohortdb_sql::model::pgtext;
use cohortdb_sql::runtime::settings::PG_VERSION_NUM;
use cohortdb_sql::{Engine, Outcome, Prepared, Session, Statement};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use futures::{stream, Sink, SinkExt, Stream, StreamExt};
use pgwire::api::auth::{ServerParameterProvider, StartupHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::DescribeResponse;
use pgwire::api::results::{
    CopyResponse, DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ErrorHandler, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{DataRow, NoData, ParameterDescription};
use pgwire::messages::extendedquery::{Describe, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::response::{NoticeResponse, TransactionStatus};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;
use tokio::sync::Mutex;

use self::error::to_pg;

/// Per-connection state kept in pgwire's session extensions.
pub struct ConnState {
    session: Session,
    copy: Mutex<Option<ActiveCopy>>,
    /// Backend key under which the session can be cancelled.
    registration: std::sync::Mutex<Option<(i32, Arc<cancel::Registry>)>>,
    /// The client's TCP socket, checked while statements run.
    peer: Option<liveness::PeerSocket>,
}

impl ConnState {
    /// What this connection's next statement is watched by.
    fn watch(&self) -> cancel::Watch {
        cancel::Watch {
            interrupt: self.session.interrupt().clone(),
            peer: self.peer.clone(),
            check_every: self.session.connection_check_interval(),
        }
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        if let Some((pid, registry)) = self.registration.lock().expect("registration").take() {
            registry.unregister(pid);
        }
    }
}

struct ActiveCopy {
    copy: CopyIn,
    failed: Option<PgWireError>,
}

pub(crate) fn conn<C: ClientInfo + ?Sized>(client: &C, engine: &Arc<Engine>) -> Arc<ConnState> {
    client
        .session_extensions()
        .get_or_insert_with(|| ConnState {
            session: engine.session(),
            copy: Mutex::new(None),
            registration: std::sync::Mutex::new(None),
            peer: liveness::current_socket(),
        })
}

/// All protocol handlers of one server.
pub struct Handlers {
    query: Arc<QueryHandler>,
    engine: Arc<Engine>,
    lockout: Arc<cohortdb_sql::access::lockout::Lockout>,
    registry: Arc<cancel::Registry>,
    cancel: Arc<cancel::Canceller>,
}

impl Handlers {
    /// Handlers over `engine`.
    pub fn new(
        engine: Arc<Engine>,
        lockout: Arc<cohortdb_sql::access::lockout::Lockout>,
    ) -> Handlers {
        let query = Arc::new(QueryHandler {
            engine: engine.clone(),
            parser: Arc::new(Parser {
                engine: engine.clone(),
            }),
        });
        let registry = Arc::new(cancel::Registry::default());
        Handlers {
            query,
            engine,
            lockout,
            registry: registry.clone(),
            cancel: Arc::new(cancel::Canceller { registry }),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        // one per connection: it holds the connection's SASL state
        Arc::new(auth::Startup::new(
            self.engine.clone(),
            self.lockout.clone(),
            self.registry.clone(),
        ))
    }
    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.query.clone()
    }
    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(MapErrors)
    }
    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

struct MapErrors;

impl ErrorHandler for MapErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        error::remap(error);
        tracing::debug!("sending error: {error}");
    }
}

/// Parameters reported at startup.
pub(crate) struct Parameters {
    timezone: String,
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let mut p = HashMap::new();
        p.insert(
            "server_version".into(),
            cohortdb_sql::runtime::settings::PG_VERSION.into(),
        );
        p.insert("server_version_num".into(), PG_VERSION_NUM.into());
        p.insert("server_encoding".into(), "UTF8".into());
        p.insert("client_encoding".into(), "UTF8".into());
        p.insert("DateStyle".into(), "ISO, MDY".into());
        p.insert("IntervalStyle".into(), "postgres".into());
        p.insert("TimeZone".into(), self.timezone.clone());
        p.insert("integer_datetimes".into(), "on".into());
        p.insert("standard_conforming_strings".into(), "on".into());
        p.insert("is_superuser".into(), "on".into());
        p.insert("in_hot_standby".into(), "off".into());
        p.insert("default_transaction_read_only".into(), "off".into());
        p.insert("search_path".into(), "\"$user\", public".into());
        let app = client
            .metadata()
            .get("application_name")
            .cloned()
            .unwrap_or_default();
        p.insert("application_name".into(), app);
        if let Some(u) = client.metadata().get("user") {
            p.insert("session_authorization".into(), u.clone());
        }
        Some(p)
    }
}

pub(crate) fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// A statement parsed by Parse.
#[derive(Clone, Default)]
pub struct ParsedStatement {
    prepared: Option<Prepared>,
    /// Its result columns in text format, found at the first Describe and
    /// reused by later Describes and Executes (drivers describe every
    /// execution; pgbench `-M prepared` does).
    text_fields: Arc<std::sync::OnceLock<Arc<Vec<FieldInfo>>>>,
}

/// Parses statements for the extended protocol.
pub struct Parser {
    engine: Arc<Engine>,
}

fn param_types(p: &Prepared) -> PgWireResult<Vec<Option<DataType>>> {
    p.parameter_types().map_err(to_pg)
}

/// `fields` with the table OID and column number of each column read from a relation.
fn with_origins(
    fields: Vec<FieldInfo>,
    origins: &[cohortdb_sql::pgcompat::origins::Origin],
) -> Vec<FieldInfo> {
    if origins.iter().all(Option::is_none) {
        return fields;
    }
    fields
        .into_iter()
        .enumerate()
        .map(|(i, f)| match origins.get(i).copied().flatten() {
            Some((table, column)) => FieldInfo::new(
                f.name().to_string(),
                Some(table),
                Some(column),
                f.datatype().clone(),
                f.format(),
            ),
            None => f,
        })
        .collect()
}

fn result_fields(p: &Prepared, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    Ok(with_origins(result_fields_plain(p, format)?, &p.origins))
}

fn result_fields_plain(p: &Prepared, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    if let Some(schema) = &p.schema {
        return pg_fields(schema, format);
    }
    if let Some(plan) = &p.plan {
        if p.stmt.is_dml() {
            return Ok(vec![]);
        }
        return pg_fields(plan.schema().as_arrow(), format);
    }
    if let Statement::Show { name } = &p.stmt {
        let name = name.to_ascii_lowercase();
        // the column is named as the simple protocol names it
        // (`SHOW TRANSACTION ISOLATION LEVEL` → `transaction_isolation`)
        let name = cohortdb_sql::runtime::settings::normalize(&name);
        return Ok(vec![FieldInfo::new(
            name,
            None,
            None,
            Type::TEXT,
            format.format_for(0),
        )]);
    }
    Ok(vec![])
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = ParsedStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<ParsedStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let state = conn(client, &self.engine);
        let mut stmts = self.engine.parse(sql).map_err(to_pg)?;
        if stmts.is_empty() {
            return Ok(None);
        }
        if stmts.len() > 1 {
            return Err(to_pg(cohortdb_sql::SqlError::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            )));
        }
        let prepared = state
            .session
            .prepare_typed(
                stmts.remove(0),
                &types
                    .iter()
                    .map(|t| {
                        t.as_ref()
                            .map(|t| params::arrow_type(t).unwrap_or(DataType::Null))
                    })
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(to_pg)?;
        Ok(Some(ParsedStatement {
            prepared: Some(prepared),
            text_fields: Default::default(),
        }))
    }

    fn get_parameter_types(&self, stmt: &ParsedStatement) -> PgWireResult<Vec<Type>> {
        let Some(p) = &stmt.prepared else {
            return Ok(vec![]);
        };
        param_types(p)?
            .into_iter()
            .map(|t| match t {
                Some(t) => arrow_pg::datatypes::into_pg_type(&t),
                // PostgreSQL resolves a parameter nothing types as text
                None => Ok(Type::TEXT),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &ParsedStatement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let Some(p) = &stmt.prepared else {
            return Ok(vec![]);
        };
        let format = format.unwrap_or(&Format::UnifiedText);
        if !matches!(format, Format::UnifiedText) {
            return result_fields(p, format);
        }
        if let Some(f) = stmt.text_fields.get() {
            return Ok(f.as_ref().clone());
        }
        let fields = result_fields(p, format)?;
        let _ = stmt.text_fields.set(Arc::new(fields.clone()));
        Ok(fields)
    }
}

/// Simple and extended query handling, and COPY data.
pub struct QueryHandler {
    engine: Arc<Engine>,
    parser: Arc<Parser>,
}

impl QueryHandler {
    async fn respond<C>(
        &self,
        client: &mut C,
        state: &ConnState,
        outcome: Outcome,
        format: &Format,
        described: Option<Arc<Vec<FieldInfo>>>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(match outcome {
            Outcome::Rows(df) => {
                let schema = Arc::new(df.schema().as_arrow().clone());
                let described = described.filter(|f| f.len() == schema.fields().len());
                let origins = match described {
                    Some(_) => vec![],
                    None => state.session.column_origins(df.logical_plan()).await,
                };
                let batches = df.execute_stream().await.map_err(|e| to_pg(e.into()))?;
                let q = encode_rows(client, state, &schema, batches, &origins, format, described)?;
                Response::Query(q)
            }
            Outcome::Batch { batch, origins } => {
                let schema = batch.schema();
                let described = described.filter(|f| f.len() == schema.fields().len());
                let batches = stream::once(async move { Ok(batch) });
                let q = encode_rows(client, state, &schema, batches, &origins, format, described)?;
                Response::Query(q)
            }
            Outcome::Command { tag, rows } => {
                let t = match (tag.as_str(), rows) {
                    ("INSERT", Some(n)) => Tag::new("INSERT").with_oid(0).with_rows(n as usize),
                    (_, Some(n)) => Tag::new(&tag).with_rows(n as usize),
                    (_, None) => Tag::new(&tag),
                };
                match tag.as_str() {
                    "BEGIN" => Response::TransactionStart(t),
                    "COMMIT" | "ROLLBACK" => Response::TransactionEnd(t),
                    // Leaves the failed state. pgwire keeps 'E' on a
                    // TransactionStart, so the block reports idle ('I')
                    // until it ends; statements before it stay applied.
                    "ROLLBACK TO" => Response::TransactionEnd(Tag::new("ROLLBACK")),
                    _ => Response::Execution(t),
                }
            }
            Outcome::ParameterChanged { tag, name, value } => {
                client
                    .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                        name, value,
                    )))
                    .await?;
                Response::Execution(Tag::new(&tag))
            }
            Outcome::CopyIn(copy) => {
                let columns = copy.columns;
                let format = if copy.is_binary() { 1 } else { 0 };
                *state.copy.lock().await = Some(ActiveCopy {
                    copy: *copy,
                    failed: None,
                });
                Response::CopyIn(CopyResponse::new(format, columns, stream::empty()))
            }
            Outcome::CopyOut { df, opts } => {
                let columns = df.schema().fields().len();
                let header: Vec<String> = df
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                let batches = df.execute_stream().await.map_err(|e| to_pg(e.into()))?;
                if opts.binary {
                    // format 0 keeps pgwire from appending a trailer of its own
                    let mut copy = CopyResponse::new(0, columns, binary_copy_out_stream(batches));
                    copy.format = 1;
                    Response::CopyOut(copy)
                } else {
                    let data = copy_out_stream(batches, opts, header, state.session.timezone());
                    Response::CopyOut(CopyResponse::new(0, columns, data.boxed()))
                }
            }
        })
    }
}

fn copy_out_stream(
    batches: datafusion::execution::SendableRecordBatchStream,
    opts: CopyOptions,
    header: Vec<String>,
    tz: Tz,
) -> impl futures::Stream<Item = PgWireResult<CopyData>> + Send {
    let mut header_line = opts
        .header
        .then(|| format_header(header.iter().map(String::as_str), &opts));
    batches.flat_map(move |b| {
        let rows: Vec<PgWireResult<CopyData>> = match b {
            Ok(batch) => {
                let mut out = Vec::with_capacity(batch.num_rows());
                for r in 0..batch.num_rows() {
                    let mut line = header_line.take().unwrap_or_default();
                    format_row(&mut line, &batch, r, &opts, &tz);
                    out.push(Ok(CopyData::new(Bytes::from(line))));
                }
                out
            }
            Err(e) => vec![Err(to_pg(e.into()))],
        };
        stream::iter(rows)
    })
}

/// COPY TO in PostgreSQL's binary format, framed as PostgreSQL frames it
/// (clients such as psycopg rely on it): the header travels with the first
/// row, then one CopyData per row, then the trailer (with the header when
/// there were no rows).
fn binary_copy_out_stream(
    batches: datafusion::execution::SendableRecordBatchStream,
) -> futures::stream::BoxStream<'static, PgWireResult<CopyData>> {
    use cohortdb_sql::ingest::copy_binary_out as bin;
    use std::sync::atomic::{AtomicBool, Ordering};
    let pending = Arc::new(AtomicBool::new(true));
    let header = move |pending: &AtomicBool| {
        if pending.swap(false, Ordering::Relaxed) {
            bin::header()
        } else {
            Vec::new()
        }
    };
    let in_rows = pending.clone();
    let rows = batches.flat_map(move |b| {
        let messages: Vec<PgWireResult<CopyData>> = match b {
            Ok(batch) => (0..batch.num_rows())
                .map(|r| {
                    let mut out = header(&in_rows);
                    bin::encode_row(&batch, r, &mut out).map_err(to_pg)?;
                    Ok(CopyData::new(Bytes::from(out)))
                })
                .collect(),
            Err(e) => vec![Err(to_pg(e.into()))],
        };
        stream::iter(messages)
    });
    let tail = stream::once(async move {
        let mut out = header(&pending);
        out.extend(bin::trailer());
        Ok(CopyData::new(Bytes::from(out)))
    });
    rows.chain(tail).boxed()
}

/// True for statements after which a failed block no longer refuses
/// statements (the block ends, or rolls back to a savepoint).
fn ends_transaction(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::Commit
            | Statement::Rollback
            | Statement::Savepoint {
                action: cohortdb_sql::statement::SavepointAction::RollbackTo,
                ..
            }
    )
}

/// In a failed transaction block (an error after `BEGIN`) statements are
/// refused with 25P02 until the block ends, as in PostgreSQL: `ROLLBACK`
/// runs, `COMMIT` ends the block reporting `ROLLBACK`. Statements that ran
/// before the error stay applied (each statement is atomic on its own).
fn failed_transaction_gate(failed: bool, stmt: &Statement) -> Option<PgWireResult<Response>> {
    if !failed {
        return None;
    }
    match stmt {
        Statement::Rollback
        | Statement::Savepoint {
            action: cohortdb_sql::statement::SavepointAction::RollbackTo,
            ..
        } => None,
        Statement::Commit => Some(Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))),
        _ => Some(Err(error::in_failed_transaction())),
    }
}

/// Field descriptions with the column names Postgres would show.
fn pg_fields(
    schema: &datafusion::arrow::datatypes::Schema,
    format: &Format,
) -> PgWireResult<Vec<FieldInfo>> {
    let fields = arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, None)?;
    Ok(pg_named(fields))
}

/// `fields` renamed as PostgreSQL names unaliased columns.
fn pg_named(fields: impl IntoIterator<Item = FieldInfo>) -> Vec<FieldInfo> {
    fields
        .into_iter()
        .map(|f| {
            FieldInfo::new(
                pgtext::pg_column_name(f.name()),
                f.table_id(),
                f.column_id(),
                f.datatype().clone(),
                f.format(),
            )
        })
        .collect()
}

/// Encodes rows for the client: all-text results with cohortdb's
/// formatter (`cohortdb_sql::model::pgtext`, matching what PostgreSQL
/// prints), others with arrow-pg; columns named as PostgreSQL names them,
/// with their origins, the stream guarded by the connection's cancel watch.
fn encode_rows<C, S>(
    client: &C,
    state: &ConnState,
    schema: &datafusion::arrow::datatypes::Schema,
    batches: S,
    origins: &[cohortdb_sql::pgcompat::origins::Origin],
    format: &Format,
    described: Option<Arc<Vec<FieldInfo>>>,
) -> PgWireResult<QueryResponse>
where
    C: ClientInfo,
    S: Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
{
    let all_text = (0..schema.fields().len()).all(|i| format.format_for(i) == FieldFormat::Text);
    let supported = schema
        .fields()
        .iter()
        .all(|f| pgtext::supports(f.data_type()));
    if let (true, true, Some(fields)) = (all_text, supported, described) {
        // the columns as Describe reported them: named, typed and with origins
        let mut q = encode_text_as(fields, batches, state.session.timezone());
        let rows = std::mem::replace(&mut q.data_rows, Box::pin(stream::empty()));
        q.data_rows = Box::pin(cancel::guard_stream(state.watch(), rows));
        return Ok(q);
    }
    let mut q = if all_text && supported {
        encode_text(schema, batches, state.session.timezone())?
    } else {
        let opts = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(
            schema,
            format,
            Some(opts),
        )?);
        let row_fields = fields.clone();
        let rows = batches
            .map(move |b| {
                let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match b {
                    Ok(b) => arrow_pg::datatypes::encode_recordbatch(row_fields.clone(), b),
                    Err(e) => Box::new(std::iter::once(Err(to_pg(e.into())))),
                };
                stream::iter(rows)
            })
            .flatten();
        QueryResponse::new(fields, rows)
    };
    // PostgreSQL's names whichever encoder built the fields
    let named = pg_named(q.row_schema.iter().cloned());
    q.row_schema = Arc::new(with_origins(named, origins));
    let rows = std::mem::replace(&mut q.data_rows, Box::pin(stream::empty()));
    q.data_rows = Box::pin(cancel::guard_stream(state.watch(), rows));
    Ok(q)
}

/// Encodes rows in Postgres text format with cohortdb's formatter.
fn encode_text<S>(
    schema: &datafusion::arrow::datatypes::Schema,
    batches: S,
    tz: Tz,
) -> PgWireResult<QueryResponse>
where
    S: Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
{
    let fields = Arc::new(pg_fields(schema, &Format::UnifiedText)?);
    Ok(encode_text_as(fields, batches, tz))
}

/// Encodes rows in Postgres text format as the columns `fields`.
fn encode_text_as<S>(fields: Arc<Vec<FieldInfo>>, batches: S, tz: Tz) -> QueryResponse
where
    S: Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
{
    let schema = fields.clone();
    let rows = batches.flat_map(move |b| {
        let rows: Vec<PgWireResult<DataRow>> = match b {
            Ok(batch) => {
                let mut enc = DataRowEncoder::new(schema.clone());
                let opts = FormatOptions::default();
                let mut out = Vec::with_capacity(batch.num_rows());
                for r in 0..batch.num_rows() {
                    let mut res = Ok(());
                    for c in 0..batch.num_columns() {
                        let cell = pgtext::format_cell(batch.column(c).as_ref(), r, &tz);
                        res = enc.encode_field_with_type_and_format(
                            &cell.as_deref(),
                            &Type::TEXT,
                            FieldFormat::Text,
                            &opts,
                        );
                        if res.is_err() {
                            break;
                        }
                    }
                    out.push(res.map(|_| enc.take_row()));
                }
                out
            }
            Err(e) => vec![Err(to_pg(e.into()))],
        };
        stream::iter(rows)
    });
    QueryResponse::new(fields, rows)
}

/// One statement of a simple-protocol query text, and how it runs.
enum Step {
    /// Planned when the session ran the same text before.
    Planned(Box<Prepared>),
    /// The text's only statement, a query: planned, kept for the text, run.
    ForText(Box<Statement>),
    /// Run as it is.
    Plain(Box<Statement>),
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = conn(client, &self.engine);
        // a key lookup of a shape the session ran before runs without
        // parsing or planning
        if client.transaction_status() != TransactionStatus::Error {
            let watch = state.watch();
            cancel::begin(&watch.interrupt, state.session.statement_timeout());
            let session = &state.session;
            let templated = cancel::guard(&watch, async {
                match session.run_templated(query).await {
                    Some(r) => r.map(Some).map_err(to_pg),
                    None => Ok(None),
                }
            })
            .await;
            match templated {
                Ok(Some(o)) => {
                    let r = self
                        .respond(client, &state, o, &Format::UnifiedText, None)
                        .await;
                    return r.map(|resp| vec![resp]).map_err(|mut e| {
                        error::remap(&mut e);
                        e
                    });
                }
                Ok(None) => {}
                Err(mut e) => {
                    error::remap(&mut e);
                    return Err(e);
                }
            }
        }
        // a text the session ran before runs on its kept plan
        let steps: Vec<Step> = match state.session.cached_query(query) {
            Some(p) => vec![Step::Planned(Box::new(p))],
            None => {
                let stmts = self.engine.parse(query).map_err(to_pg)?;
                if stmts.len() == 1 && Session::caches(query, &stmts[0]) {
                    stmts
                        .into_iter()
                        .map(|s| Step::ForText(Box::new(s)))
                        .collect()
                } else {
                    stmts
                        .into_iter()
                        .map(|s| Step::Plain(Box::new(s)))
                        .collect()
                }
            }
        };
        if steps.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::new();
        let mut failed = client.transaction_status() == TransactionStatus::Error;
        for step in steps {
            let stmt = match &step {
                Step::Planned(p) => &p.stmt,
                Step::ForText(s) | Step::Plain(s) => s.as_ref(),
            };
            if let Some(r) = failed_transaction_gate(failed, stmt) {
                match r {
                    Ok(resp) => {
                        out.push(resp);
                        failed = false;
                        continue;
                    }
                    Err(e) if out.is_empty() => return Err(e),
                    Err(e) => {
                        out.push(Response::Error(Box::new(ErrorInfo::from(e))));
                        break;
                    }
                }
            }
            if ends_transaction(stmt) {
                failed = false;
            }
            let watch = state.watch();
            cancel::begin(&watch.interrupt, state.session.statement_timeout());
            let session = &state.session;
            let r = match cancel::guard(&watch, async {
                match step {
                    Step::Planned(p) => session.execute_prepared(&p, None).await,
                    Step::ForText(s) => match session.prepare_for_text(query, *s).await {
                        Ok(p) => session.execute_prepared(&p, None).await,
                        Err(e) => Err(e),
                    },
                    Step::Plain(s) => session.execute(*s).await,
                }
                .map_err(to_pg)
            })
            .await
            {
                Ok(o) => {
                    self.respond(client, &state, o, &Format::UnifiedText, None)
                        .await
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(resp) => {
                    let is_copy = matches!(resp, Response::CopyIn(_));
                    out.push(resp);
                    if is_copy {
                        break;
                    }
                }
                Err(mut e) => {
                    error::remap(&mut e);
                    if out.is_empty() {
                        return Err(e);
                    }
                    out.push(Response::Error(Box::new(ErrorInfo::from(e))));
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = ParsedStatement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// Describe of a statement that takes parameters and returns no rows
    /// (`INSERT … VALUES ($1)`, `CALL merge_contacts($1, $2)`) answers
    /// ParameterDescription + NoData, as PostgreSQL does; pgwire's default
    /// sends an empty RowDescription there, which pgjdbc's `executeUpdate`
    /// takes for a result set. Everything else is pgwire's default.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
            if let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) {
                let described = self.do_describe_statement(client, &stmt).await?;
                if described.fields().is_empty() {
                    let oids = described
                        .parameters()
                        .map(|ts| ts.iter().map(|t| t.oid()).collect())
                        .unwrap_or_default();
                    // fed, not flushed: Sync or Flush sends them (as PostgreSQL)
                    client
                        .feed(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(oids),
                        ))
                        .await?;
                    client
                        .feed(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<ParsedStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = conn(client, &self.engine);
        let parsed = &portal.statement.statement;
        let Some(p) = &parsed.prepared else {
            return Ok(Response::EmptyQuery);
        };
        let failed = client.transaction_status() == TransactionStatus::Error;
        if let Some(r) = failed_transaction_gate(failed, &p.stmt) {
            return r;
        }
        let params = {
            let types = param_types(p)?;
            let refs: Vec<Option<&DataType>> = types.iter().map(|t| t.as_ref()).collect();
            if refs.is_empty() {
                None
            } else {
                let portal = params::normalize_text_parameters(portal, &types);
                Some(arrow_pg::datatypes::df::deserialize_parameters(
                    &portal, &refs,
                )?)
            }
        };
        let watch = state.watch();
        cancel::begin(&watch.interrupt, state.session.statement_timeout());
        let outcome = cancel::guard(&watch, async {
            state
                .session
                .execute_prepared(p, params)
                .await
                .map_err(to_pg)
        })
        .await?;
        let described = match &portal.result_column_format {
            Format::UnifiedText => parsed.text_fields.get().cloned(),
            _ => None,
        };
        self.respond(
            client,
            &state,
            outcome,
            &portal.result_column_format,
            described,
        )
        .await
    }
}

#[async_trait]
impl CopyHandler for QueryHandler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = conn(client, &self.engine);
        let mut guard = state.copy.lock().await;
        if let Some(active) = guard.as_mut() {
            if active.failed.is_none() {
                if let Err(e) = active.copy.feed(&copy_data.data) {
                    active.failed = Some(to_pg(e));
                }
            }
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = conn(client, &self.engine);
        let active = state.copy.lock().await.take();
        let Some(active) = active else {
            return Err(to_pg(cohortdb_sql::SqlError::Syntax(
                "COPY data received but no COPY is in progress".into(),
            )));
        };
        if let Some(e) = active.failed {
            return Err(e);
        }
        let (rows, skipped, first) = active.copy.finish().await.map_err(to_pg)?;
        if skipped > 0 {
            let msg = format!(
                "{skipped} row{} skipped due to data type incompatibility or invalid values (first: {})",
                if skipped == 1 { " was" } else { "s were" },
                first.unwrap_or_default()
            );
            client
                .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                    ErrorInfo::new("NOTICE".into(), "00000".into(), msg),
                )))
                .await?;
        }
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(rows as usize).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = conn(client, &self.engine);
        state.copy.lock().await.take();
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}
