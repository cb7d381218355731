//! Queries and DML that DataFusion plans: planning a statement against the
//! session's catalog, typing its output literals as PostgreSQL does, and
//! running a plan (rows, or the affected-row count of INSERT/UPDATE/DELETE).

use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;

use crate::error::Result;
use crate::runtime::Reply;

/// Plans `stmt` in `ctx`; output literals of queries are typed as
/// PostgreSQL types them (`SELECT 1` is `integer`).
pub async fn plan(ctx: &SessionContext, stmt: &Statement) -> Result<LogicalPlan> {
    let plan = ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            stmt.clone(),
        )))
        .await?;
    if matches!(stmt, Statement::Query(_)) {
        crate::pgcompat::literals::type_output_literals(plan)
    } else {
        Ok(plan)
    }
}

/// Runs a plan of `stmt` in `ctx` (the query's own context, with its
/// memory pool): a query's rows, or a DML statement's command tag and count.
pub async fn run_plan(ctx: &SessionContext, stmt: &Statement, plan: LogicalPlan) -> Result<Reply> {
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
