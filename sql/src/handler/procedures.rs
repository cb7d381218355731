//! `CALL` procedures.

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Value,
};

use crate::convert::parse_date;
use crate::engine::{Outcome, Session};
use crate::error::{Result, SqlError};

fn args(f: &Function) -> Vec<&Expr> {
    match &f.args {
        FunctionArguments::List(l) => l
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                FunctionArg::Named {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => Some(e),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

fn string_arg(e: &Expr, what: &str) -> Result<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Ok(s.clone()),
            other => Err(SqlError::InvalidValue(format!(
                "{what} must be a string literal, got {other}"
            ))),
        },
        other => Err(SqlError::InvalidValue(format!(
            "{what} must be a string literal, got {other}"
        ))),
    }
}

/// The columns `CALL name(args)` will return, when it returns rows (the
/// server describes them before execution in the extended protocol).
pub fn result_schema(
    stmt: &datafusion::sql::sqlparser::ast::Statement,
) -> Option<datafusion::arrow::datatypes::SchemaRef> {
    let datafusion::sql::sqlparser::ast::Statement::Call(f) = stmt else {
        return None;
    };
    let name = f.name.to_string().to_ascii_lowercase();
    crate::identity_procs::result_schema(&name, &args(f))
}

/// Runs `CALL name(args)`.
pub async fn call(session: &Session, f: &Function) -> Result<Outcome> {
    let name = f.name.to_string().to_ascii_lowercase();
    let a = args(f);
    match name.as_str() {
        "drop_events_before" => {
            if a.len() != 1 {
                return Err(SqlError::InvalidValue(
                    "drop_events_before takes one date: CALL drop_events_before('YYYY-MM-DD')"
                        .into(),
                ));
            }
            let s = string_arg(a[0], "the date")?;
            let day = parse_date(s.trim()).ok_or_else(|| {
                SqlError::InvalidValue(format!("invalid date '{s}' (expected YYYY-MM-DD)"))
            })?;
            let store = session.engine().store();
            let mut batch = store.batch();
            batch.drop_events_before(day);
            store.commit(batch).await?;
            Ok(Outcome::Command {
                tag: "CALL".into(),
                rows: None,
            })
        }
        n if crate::identity_procs::PROCEDURES.contains(&n) => {
            crate::identity_procs::call(session, n, &a).await
        }
        other => Err(SqlError::UndefinedObject(format!(
            "procedure {other} does not exist (available: drop_events_before, {})",
            crate::identity_procs::PROCEDURES.join(", ")
        ))),
    }
}
