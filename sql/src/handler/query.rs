//! Queries and DML that DataFusion plans: planning a statement against the
//! session's catalog, typing its output literals as PostgreSQL does, and
//! running a plan (rows, or the affected-row count of INSERT/UPDATE/DELETE).
//! `INSERT INTO contacts … RETURNING` runs the insert, then reads the
//! inserted contacts back (with the ids and defaults the server assigned).

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{SelectItem, Statement, TableObject};

use crate::error::{Result, SqlError};
use crate::runtime::Reply;

/// The RETURNING items of an INSERT, UPDATE or DELETE, if it has them.
pub fn returning(stmt: &Statement) -> Option<&[SelectItem]> {
    match stmt {
        Statement::Insert(ins) => ins.returning.as_deref(),
        Statement::Update(u) => u.returning.as_deref(),
        Statement::Delete(d) => d.returning.as_deref(),
        _ => None,
    }
}

/// `stmt` without its RETURNING clause (what DataFusion plans).
fn without_returning(stmt: &Statement) -> std::borrow::Cow<'_, Statement> {
    match stmt {
        Statement::Insert(ins) if ins.returning.is_some() => {
            let mut ins = ins.clone();
            ins.returning = None;
            std::borrow::Cow::Owned(Statement::Insert(ins))
        }
        Statement::Update(u) if u.returning.is_some() => {
            let mut u = u.clone();
            u.returning = None;
            std::borrow::Cow::Owned(Statement::Update(u))
        }
        Statement::Delete(d) if d.returning.is_some() => {
            let mut d = d.clone();
            d.returning = None;
            std::borrow::Cow::Owned(Statement::Delete(d))
        }
        other => std::borrow::Cow::Borrowed(other),
    }
}

/// The table a DML statement writes to, and the name RETURNING items may
/// qualify its columns with (its alias, else its name).
fn dml_target(stmt: &Statement) -> (String, String) {
    use datafusion::sql::sqlparser::ast::{FromTable, TableFactor};
    let from_factor = |f: &TableFactor| match f {
        TableFactor::Table { name, alias, .. } => {
            let n = crate::statement::parse::object_name(name);
            let a = alias
                .as_ref()
                .map(|a| a.name.value.clone())
                .unwrap_or_else(|| n.clone());
            (n, a)
        }
        _ => (String::new(), String::new()),
    };
    match stmt {
        Statement::Insert(ins) => match &ins.table {
            TableObject::TableName(n) => {
                let n = crate::statement::parse::object_name(n);
                let a = ins
                    .table_alias
                    .as_ref()
                    .map(|a| a.alias.value.clone())
                    .unwrap_or_else(|| n.clone());
                (n, a)
            }
            _ => (String::new(), String::new()),
        },
        Statement::Update(u) => from_factor(&u.table.relation),
        Statement::Delete(d) => match &d.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t
                .first()
                .map(|t| from_factor(&t.relation))
                .unwrap_or_default(),
        },
        _ => (String::new(), String::new()),
    }
}

/// Plans `stmt` in `ctx` as DataFusion types it; a RETURNING clause is
/// left out of the plan (see [`run_plan`]).
pub async fn plan_untyped(ctx: &SessionContext, stmt: &Statement) -> Result<LogicalPlan> {
    let plan = ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            without_returning(stmt).into_owned(),
        )))
        .await?;
    crate::pgcompat::literals::boolean_text_comparisons(plan)
}

/// Plans `stmt` in `ctx`; output literals of queries are typed as
/// PostgreSQL types them (`SELECT 1` is `integer`).
pub async fn plan(ctx: &SessionContext, stmt: &Statement) -> Result<LogicalPlan> {
    let plan = plan_untyped(ctx, stmt).await?;
    if matches!(stmt, Statement::Query(_)) {
        crate::pgcompat::literals::type_output_literals(plan)
    } else {
        Ok(plan)
    }
}

/// RETURNING items as a select list.
pub fn returning_list(items: &[SelectItem]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns `INSERT … RETURNING items` returns (for Describe).
pub async fn returning_schema(ctx: &SessionContext, stmt: &Statement) -> Result<Option<SchemaRef>> {
    let Some(items) = returning(stmt) else {
        return Ok(None);
    };
    let (table, alias) = dml_target(stmt);
    check_returning_target(&table)?;
    let df = ctx
        .sql(&format!(
            "SELECT {} FROM {table} AS {alias} WHERE false",
            returning_list(items)
        ))
        .await?;
    Ok(Some(Arc::new(df.schema().as_arrow().clone())))
}

/// RETURNING is answered for contacts, events and user tables; the other
/// built-in relations refuse it (0A000) before anything is written.
fn check_returning_target(table: &str) -> Result<()> {
    if table == "contacts"
        || table == "events"
        || !crate::tables::catalog::BUILTIN_RELATIONS.contains(&table)
    {
        Ok(())
    } else {
        Err(SqlError::Unsupported(format!(
            "RETURNING is supported on contacts, events and user tables, not on \"{table}\""
        )))
    }
}

/// `INSERT INTO events (openid, …) … RETURNING items` (identity-keyed):
/// the rows are written as without RETURNING, then `items` are computed
/// over them as stored, with the contact ids the identities resolved to.
pub async fn identity_insert_returning(
    sctx: &crate::runtime::StatementContext,
    stmt: &Statement,
) -> Result<Reply> {
    let Some(items) = returning(stmt) else {
        return crate::ingest::identity_insert::run(sctx, stmt).await;
    };
    let (table, alias) = dml_target(stmt);
    if table != "events" {
        return Err(SqlError::Unsupported(
            "INSERT INTO contacts … RETURNING with identity columns is not supported; CALL identify(...) returns the contact id"
                .into(),
        ));
    }
    let provider = sctx.df.table_provider("events").await?;
    let Some(events) = provider.downcast_ref::<crate::tables::events::EventsTable>() else {
        return Err(SqlError::Unsupported(
            "RETURNING: the events relation is not the events table".into(),
        ));
    };
    let (_, written) = crate::ingest::identity_insert::run_recorded(sctx, stmt, true).await?;
    let batch = events.written_batch(&written)?;
    project_returning(&sctx.df, &alias, items, batch).await
}

/// `items` computed over `rows` (a table's rows), the table named `alias`.
async fn project_returning(
    ctx: &SessionContext,
    alias: &str,
    items: &[SelectItem],
    rows: RecordBatch,
) -> Result<Reply> {
    let rctx = SessionContext::new();
    rctx.register_batch(alias, rows)?;
    let df = rctx
        .sql(&format!(
            "SELECT {} FROM \"{alias}\"",
            returning_list(items)
        ))
        .await?;
    Ok(Reply::Rows(ctx.read_batch(one_batch(df).await?)?))
}

/// Runs a plan of `stmt` in `ctx` (the query's own context, with its
/// memory pool): a query's rows, or a DML statement's command tag and count.
pub async fn run_plan(ctx: &SessionContext, stmt: &Statement, plan: LogicalPlan) -> Result<Reply> {
    if let Some(items) = returning(stmt) {
        let (table, alias) = dml_target(stmt);
        let written_contacts =
            table == "contacts" && matches!(stmt, Statement::Insert(_) | Statement::Update(_));
        if written_contacts {
            return run_returning(ctx, &table, items, plan).await;
        }
        return run_returning_rows(ctx, &table, &alias, items, plan).await;
    }
    let plan = crate::pgcompat::catalog_subqueries::neutralize_undecorrelated(ctx, plan)?;
    let df = ctx.execute_logical_plan(plan).await?;
    let tag = match stmt {
        Statement::Insert(_) => "INSERT",
        Statement::Update { .. } => "UPDATE",
        Statement::Delete(_) => "DELETE",
        _ => return Ok(Reply::Rows(df)),
    };
    let n = dml_count(&df.collect().await?);
    Ok(Reply::Command {
        tag: tag.into(),
        rows: Some(n),
    })
}

/// The row count a DataFusion DML plan reports (its `count` column).
pub(crate) fn dml_count(batches: &[RecordBatch]) -> u64 {
    batches
        .first()
        .and_then(|b| b.column_by_name("count"))
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0)
}

/// RETURNING of a user-table INSERT/UPDATE/DELETE or a contacts DELETE:
/// the statement runs as usual while the table records the rows it wrote
/// (new values) or removed (old values); `items` are computed over them.
async fn run_returning_rows(
    ctx: &SessionContext,
    table: &str,
    alias: &str,
    items: &[SelectItem],
    plan: LogicalPlan,
) -> Result<Reply> {
    check_returning_target(table)?;
    let rows = Arc::new(Mutex::new(Vec::new()));
    run_recording(ctx, &crate::tables::RETURNING_ROWS, rows.clone(), plan).await?;
    let batches = std::mem::take(&mut *rows.lock().expect("returning rows"));
    let schema = ctx.table_provider(table).await?.schema();
    let batches: Vec<RecordBatch> = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<std::result::Result<_, _>>()?;
    let all = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
    // items are planned over the rows alone, named as the statement names the table
    project_returning(ctx, alias, items, all).await
}

/// All rows of `df` in one batch.
async fn one_batch(df: datafusion::dataframe::DataFrame) -> Result<RecordBatch> {
    let schema = Arc::new(df.schema().as_arrow().clone());
    Ok(datafusion::arrow::compute::concat_batches(
        &schema,
        &df.collect().await?,
    )?)
}

/// Runs `plan` to completion inside the task-local `key` set to `cell`, so
/// the table providers can record what the statement wrote.
async fn run_recording<T: 'static>(
    ctx: &SessionContext,
    key: &'static tokio::task::LocalKey<Arc<Mutex<T>>>,
    cell: Arc<Mutex<T>>,
    plan: LogicalPlan,
) -> Result<()> {
    key.scope(cell, async {
        ctx.execute_logical_plan(plan).await?.collect().await?;
        Ok::<_, SqlError>(())
    })
    .await
}

/// `INSERT INTO contacts … RETURNING items`: the insert runs as usual
/// while the ingest records the ids it commits; the inserted contacts are
/// then read back in insertion order and projected to `items`.
async fn run_returning(
    ctx: &SessionContext,
    table: &str,
    items: &[SelectItem],
    plan: LogicalPlan,
) -> Result<Reply> {
    check_returning_target(table)?;
    let ids = Arc::new(Mutex::new(Vec::new()));
    run_recording(
        ctx,
        &crate::ingest::batch::WRITTEN_CONTACTS,
        ids.clone(),
        plan,
    )
    .await?;
    let ids = ids.lock().expect("inserted ids").clone();
    let list = if ids.is_empty() {
        "NULL".to_string()
    } else {
        ids.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let df = ctx
        .sql(&format!(
            "SELECT id AS returning_row_id, {} FROM contacts WHERE id IN ({list})",
            returning_list(items)
        ))
        .await?;
    let batch = one_batch(df).await?;
    let full_schema = batch.schema();
    // insertion order, then drop the row id
    let found = batch.column(0).as_primitive::<Int64Type>().clone();
    let pos: std::collections::HashMap<i64, u32> = (0..found.len())
        .map(|i| (found.value(i), i as u32))
        .collect();
    let take = UInt32Array::from(
        ids.iter()
            .filter_map(|id| pos.get(&(*id as i64)).copied())
            .collect::<Vec<_>>(),
    );
    let columns = batch
        .columns()
        .iter()
        .skip(1)
        .map(|c| datafusion::arrow::compute::take(c.as_ref(), &take, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
        full_schema.fields()[1..].to_vec(),
    ));
    let out = RecordBatch::try_new(schema, columns)?;
    Ok(Reply::Rows(ctx.read_batch(out)?))
}
