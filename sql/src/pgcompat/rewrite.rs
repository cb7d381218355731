//! Rewrites of parsed statements for client idioms the planner cannot take
//! as written (applied after `datafusion-pg-catalog`'s own rewrites):
//! `x::regtype::text` (a type's name from its OID) becomes `pg_regtype_name(x)`;
//! a correlated scalar subquery that is not aggregated (SQLAlchemy's and
//! pgjdbc's catalog lookups: one row by construction) gets its value wrapped
//! in `max(...)`, which DataFusion requires; casts to `json`/`jsonb`/`uuid`
//! are casts to text, and `'\x…'::bytea` literals are hex-decoded.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, GroupByExpr, Ident, ObjectName, Query, SelectItem, SetExpr, Statement,
    VisitMut, VisitorMut,
};

struct RegTypeText;

/// True when `t` is the type `name`, also spelled `pg_catalog.name`.
pub(crate) fn is_named(t: &DataType, name: &str) -> bool {
    let s = t.to_string().to_ascii_lowercase();
    s == name || s == format!("pg_catalog.{name}")
}

/// True for the text types (`text`, `varchar`, `name`, ...).
pub(crate) fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Text | DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::String(_)
    ) || is_named(t, "text")
        || is_named(t, "name")
}

/// The call `name(arg)`.
pub(crate) fn call(name: &str, arg: Expr) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Aggregate functions clients' catalog queries use (a subquery projecting
/// one is left as it is).
pub(crate) const AGGREGATES: &[&str] = &[
    "count",
    "max",
    "min",
    "sum",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "every",
];

fn is_aggregate(e: &Expr) -> bool {
    match e {
        Expr::Function(f) => {
            let n = f.name.to_string().to_ascii_lowercase();
            let n = n.trim_start_matches("pg_catalog.");
            AGGREGATES.contains(&n)
        }
        Expr::Nested(inner) => is_aggregate(inner),
        _ => false,
    }
}

fn aggregate_scalar_subquery(q: &mut Query) {
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return;
    };
    let grouped = match &sel.group_by {
        GroupByExpr::Expressions(v, _) => !v.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if grouped || sel.projection.len() != 1 || q.limit_clause.is_some() {
        return;
    }
    let item = &mut sel.projection[0];
    let target = match item {
        SelectItem::UnnamedExpr(e) => e,
        SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return,
    };
    if is_aggregate(target) || matches!(target, Expr::Subquery(_)) {
        return;
    }
    let inner = std::mem::replace(
        target,
        Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
    );
    *target = call("max", inner);
}

/// Casts to types cohortdb stores as text: `json`, `jsonb`, `uuid` values
/// are their text (as they print in PostgreSQL); a `'\x…'::bytea` literal is
/// hex-decoded as PostgreSQL reads it.
fn text_backed_cast(e: &mut Expr) {
    let Expr::Cast {
        expr, data_type, ..
    } = e
    else {
        return;
    };
    match data_type {
        DataType::JSON | DataType::JSONB | DataType::Uuid => *data_type = DataType::Text,
        DataType::Bytea => {
            use datafusion::sql::sqlparser::ast::Value;
            let hex = match expr.as_ref() {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => {
                        s.strip_prefix("\\x").map(str::to_string)
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some(hex) = hex {
                let bytes = Expr::Cast {
                    kind: datafusion::sql::sqlparser::ast::CastKind::DoubleColon,
                    expr: Box::new(Expr::value(Value::SingleQuotedString(hex))),
                    data_type: DataType::Bytea,
                    array: false,
                    format: None,
                };
                let mut f = call("decode", bytes);
                if let Expr::Function(func) = &mut f {
                    if let FunctionArguments::List(l) = &mut func.args {
                        l.args
                            .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                                Value::SingleQuotedString("hex".into()),
                            ))));
                    }
                }
                *e = f;
            }
        }
        _ => {}
    }
}

impl VisitorMut for RegTypeText {
    type Break = ();
    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        text_backed_cast(e);
        if let Expr::Subquery(q) = e {
            aggregate_scalar_subquery(q);
            return ControlFlow::Continue(());
        }
        if let Expr::Cast {
            expr, data_type, ..
        } = e
        {
            // to_regtype(x)::text prints the type's name
            if is_text(data_type) {
                if let Expr::Function(f) = expr.as_ref() {
                    if f.name.to_string().eq_ignore_ascii_case("to_regtype") {
                        let inner = std::mem::replace(
                            expr.as_mut(),
                            Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
                        );
                        *e = call("pg_regtype_name", inner);
                        return ControlFlow::Continue(());
                    }
                }
            }
            if is_text(data_type) {
                if let Expr::Cast {
                    expr: inner,
                    data_type: t2,
                    ..
                } = expr.as_mut()
                {
                    if is_named(t2, "regtype") {
                        let arg = std::mem::replace(
                            inner.as_mut(),
                            Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
                        );
                        *e = call("pg_regtype_name", arg);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `EXISTS (q)` in a SELECT list (pgcli's `SELECT EXISTS(SELECT * FROM
/// pg_proc WHERE …)`) becomes `((SELECT count(*) FROM (q)) > 0)`: DataFusion
/// runs EXISTS only as a filter (a semi join), and a counting scalar
/// subquery it plans anywhere.
struct ExistsInSelectList;

fn exists_as_count(e: &mut Expr) {
    let _ = e.visit(&mut ExistsToCount);
}

struct ExistsToCount;

impl VisitorMut for ExistsToCount {
    type Break = ();
    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::Exists { subquery, negated } = e {
            // A plain SELECT counts its own rows (so a correlated predicate
            // stays where DataFusion decorrelates it); anything else is
            // counted as a derived table.
            let simple = subquery.with.is_none()
                && subquery.limit_clause.is_none()
                && subquery.order_by.is_none()
                && subquery.fetch.is_none()
                && matches!(subquery.body.as_ref(), SetExpr::Select(s)
                    if s.distinct.is_none()
                        && s.having.is_none()
                        && matches!(&s.group_by, GroupByExpr::Expressions(v, _) if v.is_empty()));
            if simple {
                let mut q = subquery.as_ref().clone();
                if let SetExpr::Select(s) = q.body.as_mut() {
                    s.projection = vec![SelectItem::UnnamedExpr(call(
                        "count",
                        Expr::value(datafusion::sql::sqlparser::ast::Value::Number(
                            "1".into(),
                            false,
                        )),
                    ))];
                }
                let count = Expr::Nested(Box::new(Expr::BinaryOp {
                    left: Box::new(Expr::Subquery(Box::new(q))),
                    op: if *negated {
                        datafusion::sql::sqlparser::ast::BinaryOperator::Eq
                    } else {
                        datafusion::sql::sqlparser::ast::BinaryOperator::Gt
                    },
                    right: Box::new(Expr::value(datafusion::sql::sqlparser::ast::Value::Number(
                        "0".into(),
                        false,
                    ))),
                }));
                *e = count;
                return ControlFlow::Continue(());
            }
            let sql = format!(
                "((SELECT count(*) FROM ({subquery}) AS __exists) {} 0)",
                if *negated { "=" } else { ">" }
            );
            let parsed = datafusion::sql::sqlparser::parser::Parser::new(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            )
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_expr());
            if let Ok(count) = parsed {
                *e = count;
            }
        }
        ControlFlow::Continue(())
    }
}

impl VisitorMut for ExistsInSelectList {
    type Break = ();
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(sel) = q.body.as_mut() {
            for item in sel.projection.iter_mut() {
                match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                        exists_as_count(e)
                    }
                    _ => {}
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Inside an INSERT's source, a `VALUES` list that is not the source itself
/// (`INSERT INTO t (a, b) SELECT x, 'y' FROM (VALUES (1)) v(x)`) becomes
/// `SELECT … AS column1 UNION ALL …`: DataFusion types every VALUES in an
/// INSERT by the target's columns and refuses one with fewer columns.
struct NestedValues {
    depth: usize,
}

fn values_as_selects(q: &mut Query) {
    let SetExpr::Values(v) = q.body.as_ref() else {
        return;
    };
    let sql = v
        .rows
        .iter()
        .map(|row| {
            let items: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{e} AS column{}", i + 1))
                .collect();
            format!("SELECT {}", items.join(", "))
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    if let Ok(mut parsed) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        &sql,
    ) {
        if let Some(Statement::Query(p)) = parsed.pop() {
            q.body = p.body;
        }
    }
}

impl VisitorMut for NestedValues {
    type Break = ();
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > 1 {
            values_as_selects(q);
        }
        ControlFlow::Continue(())
    }
    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Applies cohortdb's rewrites to `stmt` in place.
pub fn rewrite(stmt: &mut Statement) {
    if let Statement::Insert(ins) = stmt {
        if let Some(src) = ins.source.as_mut() {
            let _ = src.visit(&mut NestedValues { depth: 0 });
        }
    }
    crate::pgcompat::output_names::rewrite(stmt);
    let _ = stmt.visit(&mut ExistsInSelectList);
    crate::pgcompat::client_rewrite::rewrite(stmt);
    let _ = stmt.visit(&mut RegTypeText);
    crate::pgcompat::bi_rewrite::rewrite(stmt);
    crate::pgcompat::text_cast::rewrite(stmt);
}
