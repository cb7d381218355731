//! Types of constant output columns as PostgreSQL gives them: an integer
//! literal selected as a column (`SELECT 1`, `SELECT 1 AS one`) is `integer`
//! when it fits in 32 bits. DataFusion types every integer literal `bigint`,
//! which drivers such as node-postgres hand back as strings. Only the
//! statement's output columns change; the literal's value and every
//! expression inside the query keep DataFusion's types.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::Alias;
use datafusion::logical_expr::{cast, Expr, LogicalPlan, Projection};

use crate::error::Result;

fn int4_literal(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Literal(ScalarValue::Int64(Some(v)), _) if i32::try_from(*v).is_ok()
    )
}

/// `plan` with its integer-literal output columns typed `integer`.
pub fn type_output_literals(plan: LogicalPlan) -> Result<LogicalPlan> {
    let LogicalPlan::Projection(p) = &plan else {
        return Ok(plan);
    };
    if !p.expr.iter().any(|e| match e {
        Expr::Alias(Alias { expr, .. }) => int4_literal(expr),
        other => int4_literal(other),
    }) {
        return Ok(plan);
    }
    let schema = p.schema.clone();
    let exprs = p
        .expr
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (inner, name) = match e {
                Expr::Alias(Alias { expr, name, .. }) => (expr.as_ref(), name.clone()),
                other => (other, schema.field(i).name().clone()),
            };
            if int4_literal(inner) {
                cast(inner.clone(), DataType::Int32).alias(name)
            } else {
                e.clone()
            }
        })
        .collect::<Vec<_>>();
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        p.input.clone(),
    )?))
}
