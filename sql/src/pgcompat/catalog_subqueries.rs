//! Client catalog queries whose correlated subqueries DataFusion cannot
//! decorrelate. psql's `\d`, pgcli's `\dD` and asyncpg's type introspection
//! ask things like `(SELECT c.collname FROM pg_collation c, pg_type t WHERE
//! c.oid = a.attcollation AND a.attcollation <> t.typcollation)`; DataFusion
//! plans no correlated subquery with a non-equality between inner and outer
//! columns, and would refuse the whole query (0A000). When a query reads
//! only `pg_catalog` / `information_schema` and such a subquery is left after
//! optimization, that subquery's value is NULL (scalar), false (EXISTS) or
//! no match (IN) — what cohortdb's catalog holds for the collations,
//! domains and ACLs these subqueries look up. Queries over data keep the
//! error: a silent NULL there would be a wrong answer.

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{lit, Expr, LogicalPlan};
use datafusion::prelude::SessionContext;

use crate::error::Result;

/// A correlated subquery expression (uncorrelated ones DataFusion runs).
fn is_subquery(e: &Expr) -> bool {
    match e {
        Expr::ScalarSubquery(sq) => !sq.outer_ref_columns.is_empty(),
        Expr::Exists(x) => !x.subquery.outer_ref_columns.is_empty(),
        Expr::InSubquery(x) => !x.subquery.outer_ref_columns.is_empty(),
        _ => false,
    }
}

fn has_subquery_expr(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|p| {
        if p.expressions()
            .iter()
            .any(|e| e.exists(|e| Ok(is_subquery(e))).unwrap_or(false))
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn reads_only_catalog(plan: &LogicalPlan) -> bool {
    let mut only = true;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(s) = p {
            let system = matches!(
                s.table_name.schema(),
                Some("pg_catalog" | "information_schema")
            ) || s.table_name.table().starts_with("pg_");
            if !system {
                only = false;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    only
}

/// `plan`, or — for a catalog-only query whose optimized plan still holds
/// a subquery DataFusion cannot run — that optimized plan with those
/// subqueries replaced by their empty values.
pub fn neutralize_undecorrelated(ctx: &SessionContext, plan: LogicalPlan) -> Result<LogicalPlan> {
    if !has_subquery_expr(&plan) || !reads_only_catalog(&plan) {
        return Ok(plan);
    }
    let optimized = ctx.state().optimize(&plan)?;
    if !has_subquery_expr(&optimized) {
        return Ok(plan);
    }
    let replaced = optimized
        .transform_up(|p| {
            p.map_expressions(|e| {
                e.transform_up(|e| {
                    if !is_subquery(&e) {
                        return Ok(Transformed::no(e));
                    }
                    Ok(match e {
                        Expr::ScalarSubquery(sq) => {
                            let t = sq.subquery.schema().field(0).data_type().clone();
                            Transformed::yes(Expr::Literal(ScalarValue::try_from(&t)?, None))
                        }
                        Expr::Exists(x) => Transformed::yes(lit(x.negated)),
                        Expr::InSubquery(x) => Transformed::yes(lit(x.negated)),
                        other => Transformed::no(other),
                    })
                })
            })
        })?
        .data;
    Ok(replaced.recompute_schema()?)
}
