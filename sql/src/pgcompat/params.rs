//! Types of `$n` parameters of a planned statement, as the extended protocol
//! describes them: DataFusion's inferred type, else the type of a cast the
//! parameter is the operand of (`$1::bigint`), else the type the client
//! declared in its Parse message, else text (as PostgreSQL resolves them).

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use std::sync::Arc;

use datafusion::arrow::datatypes::Field;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
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
    // `x = ANY($1)` (planned as `array_has($1, x)`): an untyped $1 is an
    // array of x's type, as PostgreSQL infers it (pgcli's `relkind = ANY($1)`)
    let mut arrays: HashMap<usize, DataType> = HashMap::new();
    plan.apply_with_subqueries(|p| {
        let inputs = p.inputs();
        let schema = match inputs.as_slice() {
            [one] => one.schema().clone(),
            _ => p.schema().clone(),
        };
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if f.name() == "array_has" {
                        if let [Expr::Placeholder(Placeholder { id, field: None }), x] =
                            f.args.as_slice()
                        {
                            if let Ok(t) = datafusion::logical_expr::ExprSchemable::get_type(
                                x,
                                schema.as_ref(),
                            ) {
                                arrays.entry(index(id)).or_insert_with(|| {
                                    DataType::List(std::sync::Arc::new(
                                        datafusion::arrow::datatypes::Field::new_list_field(
                                            match t {
                                                DataType::Utf8View | DataType::LargeUtf8 => {
                                                    DataType::Utf8
                                                }
                                                other => other,
                                            },
                                            true,
                                        ),
                                    ))
                                });
                            }
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    for (i, t) in arrays {
        casts.entry(i).or_insert(t);
    }
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

/// Types the parameters nothing in the statement types (`SELECT $1`): with
/// the type the client declared for them (`client[i]` for `$i+1`), else text.
/// Values bound later are decoded with the client's type, so the described
/// result columns then match the rows sent. `Some(DataType::Null)` marks a
/// declared type with no Arrow counterpart here: such a parameter is left as
/// DataFusion planned it.
pub fn apply_client_types(plan: LogicalPlan, client: &[Option<DataType>]) -> Result<LogicalPlan> {
    let known = parameter_types(&plan)?;
    let mut fill: HashMap<String, DataType> = HashMap::new();
    for (i, t) in known.iter().enumerate() {
        if t.is_none() {
            match client.get(i).cloned().flatten() {
                Some(DataType::Null) => {}
                Some(ty) => {
                    fill.insert(format!("${}", i + 1), ty);
                }
                None => {
                    fill.insert(format!("${}", i + 1), DataType::Utf8);
                }
            }
        }
    }
    if fill.is_empty() {
        return Ok(plan);
    }
    let typed = plan.transform_up_with_subqueries(|p| {
        let p = p.map_expressions(|e| {
            e.transform_up(|e| match e {
                Expr::Placeholder(Placeholder { id, field: None }) if fill.contains_key(&id) => {
                    let field = Arc::new(Field::new(id.clone(), fill[&id].clone(), true));
                    Ok(Transformed::yes(Expr::Placeholder(Placeholder {
                        id,
                        field: Some(field),
                    })))
                }
                other => Ok(Transformed::no(other)),
            })
        })?;
        if p.transformed {
            Ok(Transformed::yes(p.data.recompute_schema()?))
        } else {
            Ok(p)
        }
    })?;
    Ok(typed.data)
}
