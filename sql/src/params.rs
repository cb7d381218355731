//! Types of `$n` parameters of a planned statement, as the extended protocol
//! describes them: DataFusion's inferred type, else the type of a cast the
//! parameter is the operand of (`$1::bigint`), else unknown.

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::{Cast, Placeholder, TryCast};
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::error::Result;

/// The type of each parameter `$1..$n` (index 0 is `$1`); `None` where
/// nothing in the statement fixes it.
pub fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let mut found: HashMap<usize, Option<DataType>> = HashMap::new();
    for (k, v) in plan.get_parameter_types()? {
        found.insert(index(&k), v);
    }
    let mut casts: HashMap<usize, DataType> = HashMap::new();
    plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                let (inner, to) = match e {
                    Expr::Cast(Cast { expr, field }) => (expr.as_ref(), field.data_type()),
                    Expr::TryCast(TryCast { expr, field }) => (expr.as_ref(), field.data_type()),
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                if let Expr::Placeholder(Placeholder { id, field: None }) = inner {
                    casts.entry(index(id)).or_insert_with(|| to.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    let max = found.keys().copied().max().unwrap_or(0);
    let mut out = vec![None; max];
    for (i, t) in found {
        if i >= 1 {
            out[i - 1] = t.or_else(|| casts.get(&i).cloned());
        }
    }
    Ok(out)
}

fn index(id: &str) -> usize {
    id.trim_start_matches('$').parse::<usize>().unwrap_or(0)
}
