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

/// PostgreSQL's reading of a text literal as a boolean (`'f'`, `'yes'`, …).
fn text_as_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A string literal compared with a boolean (`ix.indisprimary = 'f'`,
/// SQLAlchemy 1.4's index reflection) is a boolean literal, as PostgreSQL
/// reads an untyped literal by the other side's type; DataFusion refuses
/// `Boolean = Utf8`.
pub fn boolean_text_comparisons(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::{BinaryExpr, ExprSchemable, Operator};
    let out = plan.transform_up_with_subqueries(|node| {
        let inputs = node.inputs();
        let schema = match inputs.as_slice() {
            [one] => one.schema().clone(),
            _ => node.schema().clone(),
        };
        node.map_expressions(|e| {
            e.transform_up(|e| {
                let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
                    return Ok(Transformed::no(e));
                };
                if !matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                ) {
                    return Ok(Transformed::no(e));
                }
                let is_bool =
                    |x: &Expr| matches!(x.get_type(schema.as_ref()), Ok(DataType::Boolean));
                let text = |x: &Expr| match x {
                    Expr::Literal(
                        ScalarValue::Utf8(Some(s))
                        | ScalarValue::Utf8View(Some(s))
                        | ScalarValue::LargeUtf8(Some(s)),
                        _,
                    ) => text_as_bool(s),
                    _ => None,
                };
                let lit = |b: bool| Box::new(Expr::Literal(ScalarValue::Boolean(Some(b)), None));
                let rewritten = if let (true, Some(b)) = (is_bool(left), text(right)) {
                    Some(BinaryExpr::new(left.clone(), *op, lit(b)))
                } else if let (Some(b), true) = (text(left), is_bool(right)) {
                    Some(BinaryExpr::new(lit(b), *op, right.clone()))
                } else {
                    None
                };
                Ok(match rewritten {
                    Some(b) => Transformed::yes(Expr::BinaryExpr(b)),
                    None => Transformed::no(e),
                })
            })
        })
    })?;
    Ok(out.data)
}
