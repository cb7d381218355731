//! The identity procedures' `CALL` entry points and argument parsing:
//! `identify`, `merge_contacts`, `delete_contact_data`, `set_dedupe_rule`,
//! `dedupe_contacts`.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{Expr, UnaryOperator, Value};

use crate::error::{Result, SqlError};
use crate::runtime::{Reply, StatementContext};

/// A literal argument.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Null,
    Text(String),
    Bool(bool),
    List(Vec<Arg>),
}

fn literal(e: &Expr) -> Result<Arg> {
    Ok(match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::DoubleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::DollarQuotedString(datafusion::sql::sqlparser::ast::DollarQuotedString {
                value: s,
                ..
            }) => Arg::Text(s.clone()),
            Value::Number(n, _) => Arg::Text(n.to_string()),
            Value::Boolean(b) => Arg::Bool(*b),
            Value::Null => Arg::Null,
            other => {
                return Err(SqlError::InvalidValue(format!(
                    "unsupported procedure argument {other}"
                )))
            }
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            Arg::Text(t) => Arg::Text(format!("-{t}")),
            other => other,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => literal(expr)?,
        Expr::Array(a) => Arg::List(a.elem.iter().map(literal).collect::<Result<_>>()?),
        Expr::Identifier(i) => Arg::Text(i.value.clone()),
        // `CAST(x AS text)` as the parser's PostgreSQL rewrites leave it: `text(x)`
        Expr::Function(f) if cast_function(f).is_some() => {
            literal(cast_function(f).expect("checked"))?
        }
        other => {
            return Err(SqlError::InvalidValue(format!(
                "procedure arguments must be literals, got {other}"
            )))
        }
    })
}

/// The argument of a one-argument call named as a type (`text(1)`,
/// `int8('5')`): a cast.
fn cast_function(f: &datafusion::sql::sqlparser::ast::Function) -> Option<&Expr> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let name = f.name.to_string().to_ascii_lowercase();
    if !matches!(
        name.as_str(),
        "text" | "varchar" | "int2" | "int4" | "int8" | "bigint" | "integer" | "int" | "bool"
    ) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => Some(e),
        _ => None,
    }
}

fn text(a: &Arg, what: &str) -> Result<String> {
    match a {
        Arg::Text(s) => Ok(s.clone()),
        Arg::Bool(b) => Ok(b.to_string()),
        _ => Err(SqlError::NotNull(format!("{what} is required"))),
    }
}

fn id(a: &Arg, what: &str) -> Result<u64> {
    let t = text(a, what)?;
    t.trim()
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| SqlError::InvalidText(format!("{what} must be a contact id, got '{t}'")))
}

fn list(a: &Arg, what: &str) -> Result<Vec<String>> {
    match a {
        Arg::List(items) => items.iter().map(|i| text(i, what)).collect(),
        Arg::Null => Ok(vec![]),
        // a Postgres array literal '{a,b}' or a comma-separated string
        Arg::Text(s) => Ok(s
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .split(',')
            .map(|x| x.trim().trim_matches('"').to_string())
            .filter(|x| !x.is_empty())
            .collect()),
        Arg::Bool(_) => Err(SqlError::InvalidValue(format!("{what} must be an array"))),
    }
}

fn usage(name: &str, n: usize, range: std::ops::RangeInclusive<usize>, sig: &str) -> Result<()> {
    if range.contains(&n) {
        Ok(())
    } else {
        Err(SqlError::InvalidValue(format!(
            "{name} takes {sig}: CALL {name}({sig})"
        )))
    }
}

fn done() -> Reply {
    Reply::command("CALL")
}

fn int_rows(cols: &[&str], rows: Vec<Vec<i64>>) -> Result<Reply> {
    let schema = int_schema(cols);
    let arrays = (0..cols.len())
        .map(|i| {
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r[i]).collect::<Vec<_>>(),
            )) as datafusion::arrow::array::ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema, arrays)?;
    Ok(Reply::Batch(batch))
}

fn dry_run_arg(a: &[Arg]) -> Result<bool> {
    Ok(match a.first() {
        None | Some(Arg::Null) => false,
        Some(Arg::Bool(b)) => *b,
        Some(Arg::Text(t)) => matches!(
            t.trim().to_ascii_lowercase().as_str(),
            "true" | "t" | "1" | "dry_run" | "dry-run" | "yes" | "on"
        ),
        Some(Arg::List(_)) => {
            return Err(SqlError::InvalidValue("dry_run must be a boolean".into()))
        }
    })
}

fn int_schema(cols: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(*c, A::Int64, false))
            .collect::<Vec<_>>(),
    ))
}

/// The columns a procedure returns, known before it runs (for Describe in
/// the extended protocol); `None` for procedures that return no rows.
pub fn result_schema(name: &str, args: &[&Expr]) -> Option<SchemaRef> {
    match name {
        "identify" => Some(crate::identity::resolve::identify_schema()),
        "dedupe_contacts" => {
            let a: Vec<Arg> = args.iter().filter_map(|e| literal(e).ok()).collect();
            Some(if dry_run_arg(&a).unwrap_or(false) {
                int_schema(&["target_id", "source_id"])
            } else {
                int_schema(&["merged"])
            })
        }
        _ => None,
    }
}

/// Runs the identity procedure `name` (`identify`, `merge_contacts`,
/// `delete_contact_data`, `set_dedupe_rule`, `dedupe_contacts`).
pub async fn call(ctx: &StatementContext, name: &str, args: &[&Expr]) -> Result<Reply> {
    let a: Vec<Arg> = args.iter().map(|e| literal(e)).collect::<Result<_>>()?;
    match name {
        "identify" => {
            usage(name, a.len(), 2..=3, "channel_id, external_id, props_json")?;
            let channel = text(&a[0], "channel_id")?;
            let ext = text(&a[1], "external_id")?;
            let props = match a.get(2) {
                Some(Arg::Text(s)) => Some(s.clone()),
                _ => None,
            };
            crate::identity::resolve::identify(ctx, &channel, &ext, props.as_deref()).await
        }
        "merge_contacts" => {
            usage(name, a.len(), 2..=2, "target_id, source_id")?;
            let t = id(&a[0], "target_id")?;
            let s = id(&a[1], "source_id")?;
            crate::identity::merge::merge_contacts(ctx, t, s).await
        }
        "delete_contact_data" => {
            usage(name, a.len(), 2..=2, "channel_id, external_id")?;
            let channel = text(&a[0], "channel_id")?;
            let ext = text(&a[1], "external_id")?;
            crate::identity::deletion::delete_contact_data(ctx, &channel, &ext).await?;
            Ok(crate::identity::deletion::outcome())
        }
        "set_dedupe_rule" => {
            usage(
                name,
                a.len(),
                1..=3,
                "'any' | 'all', ARRAY['mobile_phone','email','id_card'], ARRAY['nil','null','undefined','1']",
            )?;
            let mode = text(&a[0], "the match mode")?;
            let fields = match a.get(1) {
                Some(x) => list(x, "fields")?,
                None => crate::identity::dedupe::DEDUPE_FIELDS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            };
            let placeholders = match a.get(2) {
                Some(x) => list(x, "placeholders")?,
                None => crate::identity::dedupe::DedupeRule::default().placeholders,
            };
            let r = crate::identity::dedupe::DedupeRule::new(&mode, fields, placeholders)?;
            crate::identity::dedupe::set_rule(&ctx.store, &r).await?;
            Ok(done())
        }
        "dedupe_contacts" => {
            usage(name, a.len(), 0..=1, "[dry_run BOOLEAN]")?;
            let dry = dry_run_arg(&a)?;
            let pairs = crate::identity::dedupe::run(ctx, dry).await?;
            if dry {
                int_rows(
                    &["target_id", "source_id"],
                    pairs
                        .iter()
                        .map(|(t, s)| vec![*t as i64, *s as i64])
                        .collect(),
                )
            } else {
                int_rows(&["merged"], vec![vec![pairs.len() as i64]])
            }
        }
        other => Err(SqlError::UndefinedObject(format!(
            "procedure {other} does not exist"
        ))),
    }
}
