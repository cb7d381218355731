//! Bound parameters (`$n`) of the statements DataFusion does not plan:
//! `CALL` procedures and identity-keyed `INSERT`. One mechanism for all of
//! them: Describe reports a type per parameter (the client's declared
//! type, else the type the position takes — a procedure's argument, the
//! target column of a `VALUES` row — else `text`), and Bind puts each value
//! into the statement's syntax tree as the literal it stands for, so the
//! statement then runs exactly as if the client had written the values.

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{
    self, Array, Expr, SetExpr, TableObject, Value, ValueWithSpan, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use std::ops::ControlFlow;
use std::sync::Arc;

use super::{Procedure, Statement};
use crate::error::{Result, SqlError};

/// The parameter number of a `$n` placeholder expression.
fn placeholder(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(ValueWithSpan {
            value: Value::Placeholder(p),
            ..
        }) => p.strip_prefix('$')?.parse().ok(),
        _ => None,
    }
}

/// Visits every expression of the parts of `stmt` that can hold parameters.
fn for_each_expr(stmt: &mut Statement, f: &mut dyn FnMut(&mut Expr) -> Result<()>) -> Result<()> {
    struct V<'a>(&'a mut dyn FnMut(&mut Expr) -> Result<()>);
    impl VisitorMut for V<'_> {
        type Break = SqlError;
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<SqlError> {
            match (self.0)(e) {
                Ok(()) => ControlFlow::Continue(()),
                Err(err) => ControlFlow::Break(err),
            }
        }
    }
    let mut v = V(f);
    let flow = match stmt {
        Statement::Call(call) => {
            let mut flow = ControlFlow::Continue(());
            for a in &mut call.args {
                flow = a.visit(&mut v);
                if flow.is_break() {
                    break;
                }
            }
            flow
        }
        Statement::IdentityInsert(s) => s.visit(&mut v),
        Statement::Analytics { stmt, .. } => {
            let mut flow = ControlFlow::Continue(());
            for e in stmt.exprs_mut() {
                flow = e.visit(&mut v);
                if flow.is_break() {
                    break;
                }
            }
            flow
        }
        _ => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// How many parameters (`$1` … `$n`) the statement takes.
pub fn parameter_count(stmt: &Statement) -> usize {
    let mut stmt = stmt.clone();
    let mut n = 0;
    let _ = for_each_expr(&mut stmt, &mut |e| {
        if let Some(i) = placeholder(e) {
            n = n.max(i);
        }
        Ok(())
    });
    if let Statement::Analytics { stmt: a, .. } = &stmt {
        n = n
            .max(a.from_param.unwrap_or(0))
            .max(a.to_param.unwrap_or(0));
    }
    if let Statement::Segment(g) = &mut stmt {
        for text in g.texts_mut() {
            for t in text_tokens(text) {
                if let Token::Placeholder(p) = t {
                    if let Some(i) = p.strip_prefix('$').and_then(|i| i.parse::<usize>().ok()) {
                        n = n.max(i);
                    }
                }
            }
        }
    }
    n
}

fn text_tokens(sql: &str) -> Vec<Token> {
    Tokenizer::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    )
    .tokenize()
    .unwrap_or_default()
}

/// The value bound for `$i`.
fn bound(
    values: &[datafusion::common::metadata::ScalarAndMetadata],
    i: usize,
) -> Result<&ScalarValue> {
    i.checked_sub(1)
        .and_then(|k| values.get(k))
        .map(|v| v.value())
        .ok_or_else(|| {
            SqlError::Syntax(format!(
                "no value bound for parameter ${i} ({} given)",
                values.len()
            ))
        })
}

/// `sql` with every `$n` token replaced by the literal of its value.
fn bind_text(
    sql: &str,
    values: &[datafusion::common::metadata::ScalarAndMetadata],
) -> Result<String> {
    let mut out = String::with_capacity(sql.len());
    for t in text_tokens(sql) {
        match &t {
            Token::Placeholder(p) => {
                let i: usize = p
                    .strip_prefix('$')
                    .and_then(|i| i.parse().ok())
                    .ok_or_else(|| SqlError::Syntax(format!("invalid parameter {p}")))?;
                out.push_str(&literal(bound(values, i)?)?.to_string());
            }
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

/// The Arrow type of a stored column type, as parameters are decoded.
pub fn arrow_type(t: cohortdb_storage::DataType) -> DataType {
    use cohortdb_storage::DataType as S;
    match t {
        S::Varchar => DataType::Utf8,
        S::Bigint => DataType::Int64,
        S::Double => DataType::Float64,
        S::Boolean => DataType::Boolean,
        S::Date => DataType::Date32,
        S::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The type parameter position `arg` of `procedure` takes when it is a bare `$n`.
fn procedure_arg_type(procedure: Procedure, arg: usize) -> DataType {
    let text_list = || DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    match (procedure, arg) {
        (Procedure::MergeContacts, _) => DataType::Int64,
        (Procedure::DedupeContacts, _) => DataType::Boolean,
        (Procedure::DropEventsBefore, _) => DataType::Date32,
        (Procedure::SetDedupeRule, 1 | 2) => text_list(),
        (
            Procedure::Identify
            | Procedure::DeleteContactData
            | Procedure::SetDedupeRule
            | Procedure::CollectorAddApp
            | Procedure::CollectorSetWechatToken
            | Procedure::AuditVerify
            | Procedure::WechatAddAccount
            | Procedure::WechatMassSend
            | Procedure::WechatTemplateSend
            | Procedure::WechatCustomSend
            | Procedure::WechatSubscribeSend
            | Procedure::WechatCreateQrcode
            | Procedure::CreateJourney
            | Procedure::PublishJourney
            | Procedure::StopJourney
            | Procedure::DeleteJourney
            | Procedure::ExportEvents,
            _,
        ) => DataType::Utf8,
        (Procedure::WechatCancelSend, _) => DataType::Int64,
    }
}

/// Types of `$1` … `$n`: the client's declared type where it gave one,
/// else the type of the position the parameter stands in, else `text`.
/// `column_type(table, column)` gives the type of an INSERT target column.
pub fn parameter_types(
    stmt: &Statement,
    client: &[Option<DataType>],
    column_type: &dyn Fn(&str, &str) -> Option<DataType>,
) -> Vec<Option<DataType>> {
    let n = parameter_count(stmt);
    let mut inferred: Vec<Option<DataType>> = vec![None; n];
    let mut note = |e: &Expr, t: Option<DataType>| {
        if let (Some(i), Some(t)) = (placeholder(e), t) {
            if i >= 1 && inferred[i - 1].is_none() {
                inferred[i - 1] = Some(t);
            }
        }
    };
    match stmt {
        Statement::Call(call) => {
            for (k, a) in call.args.iter().enumerate() {
                note(a, Some(procedure_arg_type(call.procedure, k)));
            }
        }
        Statement::Analytics { stmt: a, .. } => {
            for p in [a.from_param, a.to_param].into_iter().flatten() {
                if p >= 1 && p <= n && inferred[p - 1].is_none() {
                    inferred[p - 1] = Some(DataType::Date32);
                }
            }
        }
        Statement::IdentityInsert(s) => {
            if let ast::Statement::Insert(ins) = s.as_ref() {
                let table = match &ins.table {
                    TableObject::TableName(n) => super::parse::object_name(n),
                    _ => String::new(),
                };
                let cols: Vec<String> = ins.columns.iter().map(super::parse::object_name).collect();
                if let Some(SetExpr::Values(v)) = ins.source.as_ref().map(|q| q.body.as_ref()) {
                    for row in &v.rows {
                        for (k, e) in row.iter().enumerate() {
                            let t = cols.get(k).and_then(|c| column_type(&table, c));
                            note(e, t);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    (0..n)
        .map(|i| {
            client
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != DataType::Null)
                .or_else(|| inferred[i].clone())
                .or(Some(DataType::Utf8))
        })
        .collect()
}

/// The literal a bound value stands for.
fn literal(v: &ScalarValue) -> Result<Expr> {
    let value = |v: Value| Expr::Value(ValueWithSpan::from(v));
    if v.is_null() {
        return Ok(value(Value::Null));
    }
    Ok(match v {
        ScalarValue::Boolean(Some(b)) => value(Value::Boolean(*b)),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_) => value(Value::Number(v.to_string(), false)),
        ScalarValue::Float32(Some(f)) if f.is_finite() => {
            value(Value::Number(f.to_string(), false))
        }
        ScalarValue::Float64(Some(f)) if f.is_finite() => {
            value(Value::Number(f.to_string(), false))
        }
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => value(Value::SingleQuotedString(s.clone())),
        ScalarValue::List(list) => {
            let arr = list.value(0);
            let mut elem = Vec::with_capacity(arr.len());
            for i in 0..arr.len() {
                elem.push(literal(&ScalarValue::try_from_array(&arr, i)?)?);
            }
            Expr::Array(Array { elem, named: true })
        }
        // dates, timestamps, non-finite floats: PostgreSQL's text form
        other => {
            let arr = other.to_array()?;
            let text = crate::model::pgtext::format_cell(arr.as_ref(), 0, &chrono_tz::Tz::UTC)
                .ok_or_else(|| {
                    SqlError::Unsupported(format!(
                        "a parameter of type {} cannot be bound here",
                        other.data_type()
                    ))
                })?;
            value(Value::SingleQuotedString(text))
        }
    })
}

/// `stmt` with every `$n` replaced by the literal of its bound value.
pub fn bind(mut stmt: Statement, params: &ParamValues) -> Result<Statement> {
    let ParamValues::List(values) = params else {
        return Err(SqlError::Syntax(
            "named parameters are not supported".into(),
        ));
    };
    for_each_expr(&mut stmt, &mut |e| {
        if let Some(i) = placeholder(e) {
            *e = literal(bound(values, i)?)?;
        }
        Ok(())
    })?;
    if let Statement::Segment(g) = &mut stmt {
        for text in g.texts_mut() {
            *text = bind_text(text, values)?;
        }
    }
    if let Statement::Analytics { stmt: a, .. } = &mut stmt {
        let date = |p: usize| -> Result<chrono::NaiveDate> {
            match bound(values, p)? {
                ScalarValue::Date32(Some(d)) => Ok(crate::model::convert::date_from_days(*d)),
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)) => {
                    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
                        SqlError::InvalidDatetime(format!(
                            "invalid date '{s}' for ${p} (expected 'YYYY-MM-DD')"
                        ))
                    })
                }
                other => Err(SqlError::InvalidDatetime(format!(
                    "${p} must be a date, got {other}"
                ))),
            }
        };
        if let Some(p) = a.from_param.take() {
            a.from = date(p)?;
        }
        if let Some(p) = a.to_param.take() {
            a.to = date(p)?;
        }
        if a.to < a.from {
            return Err(SqlError::InvalidValue(format!(
                "FROM {} is after TO {}",
                a.from, a.to
            )));
        }
    }
    Ok(stmt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcompat::parser::CompatParser;
    use crate::statement::parse::{parse, ParseLimits};

    fn one(sql: &str) -> Statement {
        let limits = ParseLimits {
            max_message: 1 << 20,
            max_expression_depth: 1000,
        };
        parse(&CompatParser::new(), sql, limits).unwrap().remove(0)
    }

    #[test]
    fn procedure_parameters_take_the_argument_types() {
        let s = one("CALL merge_contacts($1, $2)");
        assert_eq!(parameter_count(&s), 2);
        let t = parameter_types(&s, &[], &|_, _| None);
        assert_eq!(t, vec![Some(DataType::Int64), Some(DataType::Int64)]);
        let t = parameter_types(&s, &[Some(DataType::Utf8)], &|_, _| None);
        assert_eq!(t[0], Some(DataType::Utf8));
        let bound = bind(
            s,
            &ParamValues::List(vec![
                ScalarValue::Int64(Some(7)).into(),
                ScalarValue::Utf8(Some("9".into())).into(),
            ]),
        )
        .unwrap();
        let Statement::Call(c) = bound else { panic!() };
        assert_eq!(c.args[0].to_string(), "7");
        assert_eq!(c.args[1].to_string(), "'9'");
    }

    #[test]
    fn insert_parameters_take_the_target_column_types() {
        let s = one(
            "INSERT INTO events (openid, channel_id, event, event_date) VALUES ($1, $2, $3, $4)",
        );
        assert!(matches!(s, Statement::IdentityInsert(_)));
        let t = parameter_types(&s, &[], &|table, col| {
            assert_eq!(table, "events");
            (col == "event_date").then_some(DataType::Date32)
        });
        assert_eq!(
            t,
            vec![
                Some(DataType::Utf8),
                Some(DataType::Utf8),
                Some(DataType::Utf8),
                Some(DataType::Date32)
            ]
        );
        let bound = bind(
            s,
            &ParamValues::List(vec![
                ScalarValue::Utf8(Some("o'1".into())).into(),
                ScalarValue::Utf8(Some("wx".into())).into(),
                ScalarValue::Utf8(Some("app_launch".into())).into(),
                ScalarValue::Date32(Some(20240)).into(),
            ]),
        )
        .unwrap();
        let Statement::IdentityInsert(ast) = bound else {
            panic!()
        };
        let text = ast.to_string();
        assert!(text.contains("'o''1'"), "{text}");
        assert!(text.contains("'2025-06-01'"), "{text}");
        assert!(!text.contains('$'), "{text}");
    }

    #[test]
    fn a_missing_value_is_an_error() {
        let s = one("CALL identify($1, $2)");
        assert!(bind(
            s,
            &ParamValues::List(vec![ScalarValue::Utf8(Some("a".into())).into()])
        )
        .is_err());
    }
}
