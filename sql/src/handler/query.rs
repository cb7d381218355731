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

/// The RETURNING items of an INSERT, if it has them.
pub fn returning(stmt: &Statement) -> Option<&[SelectItem]> {
    match stmt {
        Statement::Insert(ins) => ins.returning.as_deref(),
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
        other => std::borrow::Cow::Borrowed(other),
    }
}

/// The table an INSERT writes to.
fn insert_target(stmt: &Statement) -> String {
    match stmt {
        Statement::Insert(ins) => match &ins.table {
            TableObject::TableName(n) => crate::statement::parse::object_name(n),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

/// Plans `stmt` in `ctx` as DataFusion types it; a RETURNING clause is
/// left out of the plan (see [`run_plan`]).
pub async fn plan_untyped(ctx: &SessionContext, stmt: &Statement) -> Result<LogicalPlan> {
    Ok(ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            without_returning(stmt).into_owned(),
        )))
        .await?)
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

fn returning_list(items: &[SelectItem]) -> String {
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
    let table = insert_target(stmt);
    check_returning_target(&table)?;
    let df = ctx
        .sql(&format!(
            "SELECT {} FROM {table} WHERE false",
            returning_list(items)
        ))
        .await?;
    Ok(Some(Arc::new(df.schema().as_arrow().clone())))
}

fn check_returning_target(table: &str) -> Result<()> {
    if table == "contacts" {
        Ok(())
    } else {
        Err(SqlError::Unsupported(format!(
            "INSERT … RETURNING is supported on contacts (the ids the server assigns), not on \"{table}\" yet"
        )))
    }
}

/// Runs a plan of `stmt` in `ctx` (the query's own context, with its
/// memory pool): a query's rows, or a DML statement's command tag and count.
pub async fn run_plan(ctx: &SessionContext, stmt: &Statement, plan: LogicalPlan) -> Result<Reply> {
    if let Some(items) = returning(stmt) {
        return run_returning(ctx, &insert_target(stmt), items, plan).await;
    }
    let plan = crate::pgcompat::catalog_subqueries::neutralize_undecorrelated(ctx, plan)?;
    let df = ctx.execute_logical_plan(plan).await?;
    let tag = match stmt {
        Statement::Insert(_) => "INSERT",
        Statement::Update { .. } => "UPDATE",
        Statement::Delete(_) => "DELETE",
        _ => return Ok(Reply::Rows(df)),
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
    Ok(Reply::Command {
        tag: tag.into(),
        rows: Some(n),
    })
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
    crate::ingest::batch::INSERTED_CONTACTS
        .scope(ids.clone(), async {
            ctx.execute_logical_plan(plan).await?.collect().await?;
            Ok::<_, SqlError>(())
        })
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
    let full_schema = Arc::new(df.schema().as_arrow().clone());
    let batch = datafusion::arrow::compute::concat_batches(&full_schema, &df.collect().await?)?;
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
