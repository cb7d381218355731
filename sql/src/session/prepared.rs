//! SQL-level prepared statements of a session: `PREPARE name [(type, ...)]
//! AS statement`, `EXECUTE name [(value, ...)]`, `DEALLOCATE [PREPARE]
//! name | ALL` (also cleared by `DISCARD ALL`). They share the planning and
//! parameter binding of the extended protocol's statements.

use std::collections::HashMap;
use std::sync::Mutex;

use datafusion::arrow::datatypes::{DataType as ArrowType, TimeUnit};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{DataType, Expr, Ident, ObjectName, Statement};

use super::{Outcome, Prepared, Session};
use crate::error::{Result, SqlError};

/// A session's prepared statements by name.
#[derive(Default)]
pub struct PreparedStatements {
    by_name: Mutex<HashMap<String, Prepared>>,
}

impl PreparedStatements {
    /// Forgets every prepared statement (`DEALLOCATE ALL`, `DISCARD ALL`).
    pub fn clear(&self) {
        self.by_name.lock().expect("prepared").clear();
    }

    fn get(&self, name: &str) -> Result<Prepared> {
        self.by_name
            .lock()
            .expect("prepared")
            .get(name)
            .cloned()
            .ok_or_else(|| unknown(name))
    }

    fn contains(&self, name: &str) -> bool {
        self.by_name.lock().expect("prepared").contains_key(name)
    }

    fn insert(&self, name: String, p: Prepared) {
        self.by_name.lock().expect("prepared").insert(name, p);
    }

    fn remove(&self, name: &str) -> Result<()> {
        match self.by_name.lock().expect("prepared").remove(name) {
            Some(_) => Ok(()),
            None => Err(unknown(name)),
        }
    }
}

fn unknown(name: &str) -> SqlError {
    SqlError::UndefinedPrepared(format!("prepared statement \"{name}\" does not exist"))
}

/// A name as PostgreSQL folds it: unquoted names are lower-cased.
fn folded(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// The Arrow type a declared parameter type is bound as; `None` leaves the
/// parameter to inference.
fn arrow_type(t: &DataType) -> Option<ArrowType> {
    let name = t.to_string().to_ascii_lowercase();
    let base = name.split('(').next().unwrap_or("").trim();
    Some(match base {
        "smallint" | "int2" => ArrowType::Int16,
        "int" | "integer" | "int4" => ArrowType::Int32,
        "bigint" | "int8" => ArrowType::Int64,
        "real" | "float4" => ArrowType::Float32,
        "double precision" | "double" | "float8" | "float" => ArrowType::Float64,
        "text" | "varchar" | "character varying" | "char" | "character" | "string" => {
            ArrowType::Utf8
        }
        "boolean" | "bool" => ArrowType::Boolean,
        "date" => ArrowType::Date32,
        "timestamp" | "timestamp without time zone" => {
            ArrowType::Timestamp(TimeUnit::Microsecond, None)
        }
        "timestamptz" | "timestamp with time zone" => {
            ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        _ => return None,
    })
}

/// `PREPARE name [(types)] AS statement`.
pub async fn prepare(
    session: &Session,
    name: &Ident,
    data_types: &[DataType],
    statement: &Statement,
) -> Result<Outcome> {
    let key = folded(name);
    if session.prepared_statements().contains(&key) {
        return Err(SqlError::DuplicatePrepared(format!(
            "prepared statement \"{key}\" already exists (DEALLOCATE it first)"
        )));
    }
    if matches!(
        statement,
        Statement::Prepare { .. } | Statement::Execute { .. } | Statement::Deallocate { .. }
    ) {
        return Err(SqlError::Syntax(
            "PREPARE takes a query or DML statement, not PREPARE/EXECUTE/DEALLOCATE".into(),
        ));
    }
    let types: Vec<Option<ArrowType>> = data_types
        .iter()
        .map(|t| Some(arrow_type(t).unwrap_or(ArrowType::Null)))
        .collect();
    let prepared = session
        .prepare_typed(
            crate::statement::parse::classify(statement.clone())?,
            &types,
        )
        .await?;
    session.prepared_statements().insert(key, prepared);
    Ok(Outcome::Command {
        tag: "PREPARE".into(),
        rows: None,
    })
}

fn statement_name(name: &Option<ObjectName>) -> Result<String> {
    let n = name
        .as_ref()
        .and_then(|n| n.0.last())
        .and_then(|p| p.as_ident())
        .ok_or_else(|| SqlError::Syntax("EXECUTE needs a prepared statement name".into()))?;
    Ok(folded(n))
}

/// The result columns of `EXECUTE name` (for Describe).
pub fn result_schema(
    session: &Session,
    name: &Option<ObjectName>,
) -> Option<datafusion::arrow::datatypes::SchemaRef> {
    let p = session
        .prepared_statements()
        .get(&statement_name(name).ok()?)
        .ok()?;
    if let Some(s) = p.schema {
        return Some(s);
    }
    let plan = p.plan?;
    p.stmt
        .planned_by_datafusion()
        .is_some_and(|s| matches!(s, Statement::Query(_)))
        .then(|| std::sync::Arc::new(plan.schema().as_arrow().clone()))
}

/// `EXECUTE name [(values)]`: the values are evaluated, cast to the
/// parameters' types and bound.
pub async fn execute(
    session: &Session,
    name: &Option<ObjectName>,
    parameters: &[Expr],
) -> Result<Outcome> {
    let key = statement_name(name)?;
    let prepared = session.prepared_statements().get(&key)?;
    let types = prepared.parameter_types()?;
    if parameters.len() != types.len() {
        return Err(SqlError::Syntax(format!(
            "wrong number of parameters for prepared statement \"{key}\": expected {}, got {}",
            types.len(),
            parameters.len()
        )));
    }
    let mut values = Vec::with_capacity(parameters.len());
    if !parameters.is_empty() {
        let select = format!(
            "SELECT {}",
            parameters
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let batches = session.context().sql(&select).await?.collect().await?;
        let batch = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| SqlError::Syntax("EXECUTE parameters produced no value".into()))?;
        for (i, t) in types.iter().enumerate() {
            let v = ScalarValue::try_from_array(batch.column(i), 0)?;
            let v = match t {
                Some(t) if v.data_type() != *t => v.cast_to(t).map_err(|e| {
                    SqlError::InvalidText(format!(
                        "parameter ${} of prepared statement \"{key}\": {e}",
                        i + 1
                    ))
                })?,
                _ => v,
            };
            values.push(v);
        }
    }
    let params = (!values.is_empty())
        .then(|| ParamValues::List(values.into_iter().map(Into::into).collect()));
    // Boxed: EXECUTE is itself a statement execute_prepared may run.
    Box::pin(session.execute_prepared(&prepared, params)).await
}

/// `DEALLOCATE [PREPARE] name | ALL`.
pub fn deallocate(session: &Session, name: &Ident) -> Result<Outcome> {
    if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
        session.prepared_statements().clear();
    } else {
        session.prepared_statements().remove(&folded(name))?;
    }
    Ok(Outcome::Command {
        tag: if name.value.eq_ignore_ascii_case("all") {
            "DEALLOCATE ALL".into()
        } else {
            "DEALLOCATE".into()
        },
        rows: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map_to_arrow() {
        assert_eq!(arrow_type(&DataType::BigInt(None)), Some(ArrowType::Int64));
        assert_eq!(arrow_type(&DataType::Text), Some(ArrowType::Utf8));
        assert_eq!(arrow_type(&DataType::Varchar(None)), Some(ArrowType::Utf8));
        assert_eq!(arrow_type(&DataType::Date), Some(ArrowType::Date32));
        assert_eq!(arrow_type(&DataType::Uuid), None);
    }
}
