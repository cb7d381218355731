//! Rewrites of the client catalog idioms (psql `\d+`/`\du`, pgjdbc
//! `DatabaseMetaData`, SQLAlchemy reflection) that DataFusion cannot plan as
//! written, applied to any statement before `rewrite.rs`'s own:
//!
//! - `ARRAY(SELECT e FROM ...)` → `coalesce((SELECT array_agg(e ORDER BY ...) FROM ...), [])`;
//!   over `unnest(arr) x` alone it becomes `array_transform`/`array_filter`
//!   of `arr` (DataFusion cannot correlate a table function's argument).
//! - `generate_subscripts(a, d)` → `unnest(generate_series(1, array_length(a, d)))`.
//! - `regexp_split_to_table(s, p [, flags])` → `unnest(regexp_split_to_array(s, p [, flags]))`.
//! - `'name(argtypes)'::regprocedure` → `pg_regprocedure_oid('name(argtypes)')`.
//! - `information_schema._pg_expandarray(a)` → `unnest(pg_expandarray(a))`,
//!   and composite field access `(expr).f` → `get_field(expr, 'f')`.
//! - `x::regclass::text` → the relation's name from `pg_class` (the OID's
//!   digits when there is none).
//! - `LIKE p ESCAPE 'c'` → `LIKE pg_like_escape(p, 'c')` (backslash escapes).
//! - Conjuncts of a scalar subquery's `WHERE` that read only outer columns
//!   (`WHERE outer.flag AND inner.k = outer.k`) are moved in front of it as
//!   `CASE WHEN outer.flag THEN (subquery) END`: DataFusion cannot decorrelate
//!   a subquery with an outer-only predicate.
//! - `pg_get_serial_sequence(...)` → `NULL` (cohortdb has no sequences), so
//!   that its arguments do not correlate the subquery around it.
//! - Targeted: `typinput = 'name'::regproc` (pgjdbc `getTypeInfo`):
//!   `datafusion-pg-catalog` keeps `pg_type`'s regproc columns as the
//!   function's name, so the comparison is made on the unqualified name.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, CaseWhen, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArgumentList, FunctionArguments, GroupByExpr, Ident,
    LambdaFunction, LambdaFunctionParameter, LambdaSyntax, ObjectName, OneOrManyWithParens,
    OrderByExpr, OrderByKind, Query, SelectItem, SetExpr, Statement, TableFactor, Value,
    ValueWithSpan, VisitMut, VisitorMut,
};

/// Applies the client-idiom rewrites to `stmt` in place.
pub fn rewrite(stmt: &mut Statement) {
    let _ = stmt.visit(&mut KeepOrderByRegclass);
    let _ = stmt.visit(&mut ClientIdioms);
}

struct ClientIdioms;

fn func(name: &str, args: Vec<Expr>) -> Expr {
    func_with(name, args, vec![])
}

fn func_with(name: &str, args: Vec<Expr>, clauses: Vec<FunctionArgumentClause>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses,
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn string(s: &str) -> Expr {
    Expr::value(Value::SingleQuotedString(s.to_string()))
}

fn number(n: &str) -> Expr {
    Expr::value(Value::Number(n.to_string(), false))
}

fn null() -> Expr {
    Expr::value(Value::Null)
}

fn take(e: &mut Expr) -> Expr {
    std::mem::replace(e, null())
}

/// The function's name without a schema, lowercased.
fn bare_name(n: &ObjectName) -> String {
    n.0.last()
        .map(|p| p.to_string().trim_matches('"').to_ascii_lowercase())
        .unwrap_or_default()
}

/// The plain (unnamed) arguments of a call, if that is all it has.
fn plain_args(f: &Function) -> Option<Vec<&Expr>> {
    let FunctionArguments::List(l) = &f.args else {
        return None;
    };
    if !l.clauses.is_empty() || l.duplicate_treatment.is_some() {
        return None;
    }
    l.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

fn lambda(param: &Ident, body: Expr) -> Expr {
    Expr::Lambda(LambdaFunction {
        params: OneOrManyWithParens::One(LambdaFunctionParameter {
            name: param.clone(),
            data_type: None,
        }),
        body: Box::new(body),
        syntax: LambdaSyntax::Arrow,
    })
}

/// `unnest(arr) x` (or `pg_catalog.unnest(arr) AS x`): the array and the
/// element's name.
fn unnest_source(f: &TableFactor) -> Option<(Expr, Ident)> {
    match f {
        TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } if array_exprs.len() == 1 => {
            let name = alias
                .columns
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_else(|| alias.name.clone());
            Some((array_exprs[0].clone(), name))
        }
        TableFactor::Table {
            name,
            alias: Some(alias),
            args: Some(args),
            with_ordinality: false,
            ..
        } if bare_name(name) == "unnest" && args.args.len() == 1 => {
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(arr)) = &args.args[0] else {
                return None;
            };
            let name = alias
                .columns
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_else(|| alias.name.clone());
            Some((arr.clone(), name))
        }
        _ => None,
    }
}

/// `ARRAY(subquery)` as an expression DataFusion plans, if the subquery has
/// one column and no grouping or limit.
fn array_of_subquery(q: &Query) -> Option<Expr> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    let grouped = match &sel.group_by {
        GroupByExpr::Expressions(v, _) => !v.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if grouped
        || sel.having.is_some()
        || sel.distinct.is_some()
        || sel.projection.len() != 1
        || q.limit_clause.is_some()
        || q.fetch.is_some()
        || q.with.is_some()
    {
        return None;
    }
    let (value, alias) = match &sel.projection[0] {
        SelectItem::UnnamedExpr(e) => (e.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
        _ => return None,
    };
    let order: Vec<OrderByExpr> = match &q.order_by {
        None => vec![],
        Some(o) => match &o.kind {
            OrderByKind::Expressions(v) => v
                .iter()
                .map(|o| {
                    let mut o = o.clone();
                    let by_output = match &o.expr {
                        Expr::Value(ValueWithSpan {
                            value: Value::Number(n, _),
                            ..
                        }) => n == "1",
                        Expr::Identifier(i) => alias.as_ref().is_some_and(|a| a.value == i.value),
                        _ => false,
                    };
                    if by_output {
                        o.expr = value.clone();
                    }
                    o
                })
                .collect(),
            OrderByKind::All(_) => return None,
        },
    };
    // over the elements of an outer array: no table to correlate, map the array
    if sel.from.len() == 1 && sel.from[0].joins.is_empty() && order.is_empty() {
        if let Some((arr, x)) = unnest_source(&sel.from[0].relation) {
            let mut out = arr;
            if let Some(w) = &sel.selection {
                out = func("array_filter", vec![out, lambda(&x, w.clone())]);
            }
            if !matches!(&value, Expr::Identifier(i) if i.value == x.value) {
                out = func("array_transform", vec![out, lambda(&x, value)]);
            }
            return Some(out);
        }
    }
    let mut q = q.clone();
    q.order_by = None;
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return None;
    };
    let clauses = if order.is_empty() {
        vec![]
    } else {
        vec![FunctionArgumentClause::OrderBy(order)]
    };
    sel.projection = vec![SelectItem::UnnamedExpr(func_with(
        "array_agg",
        vec![value],
        clauses,
    ))];
    let mut e = Expr::Subquery(Box::new(q));
    hoist_outer_predicates(&mut e);
    // array_agg over no rows is NULL; ARRAY() of no rows is '{}'
    Some(func("coalesce", vec![e, func("make_array", vec![])]))
}

/// Names a query's `FROM` items can be referred to by (aliases, table names
/// with and without schema), lowercased.
fn from_names(q: &Query) -> Option<HashSet<String>> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    let mut names = HashSet::new();
    let mut add = |f: &TableFactor| -> bool {
        match f {
            TableFactor::Table { name, alias, .. } => {
                match alias {
                    Some(a) => {
                        names.insert(a.name.value.to_ascii_lowercase());
                    }
                    None => {
                        let full = name
                            .0
                            .iter()
                            .map(|p| p.to_string().trim_matches('"').to_ascii_lowercase())
                            .collect::<Vec<_>>();
                        names.insert(full.join("."));
                        if let Some(last) = full.last() {
                            names.insert(last.clone());
                        }
                    }
                }
                true
            }
            TableFactor::Derived { alias: Some(a), .. }
            | TableFactor::UNNEST { alias: Some(a), .. }
            | TableFactor::TableFunction { alias: Some(a), .. }
            | TableFactor::Function { alias: Some(a), .. } => {
                names.insert(a.name.value.to_ascii_lowercase());
                true
            }
            _ => false,
        }
    };
    for twj in &sel.from {
        if !add(&twj.relation) {
            return None;
        }
        for j in &twj.joins {
            if !add(&j.relation) {
                return None;
            }
        }
    }
    Some(names)
}

/// True when `e` reads columns, all of them qualified by names not in `inner`,
/// and holds no subquery.
fn outer_only(e: &Expr, inner: &HashSet<String>) -> bool {
    struct Check<'a> {
        inner: &'a HashSet<String>,
        columns: usize,
        ok: bool,
    }
    impl datafusion::sql::sqlparser::ast::Visitor for Check<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(_) => self.ok = false,
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    self.columns += 1;
                    let q: Vec<String> = parts[..parts.len() - 1]
                        .iter()
                        .map(|p| p.value.to_ascii_lowercase())
                        .collect();
                    let last = q.last().cloned().unwrap_or_default();
                    if self.inner.contains(&q.join(".")) || self.inner.contains(&last) {
                        self.ok = false;
                    }
                }
                Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::InSubquery { .. }
                | Expr::Function(_)
                | Expr::Value(ValueWithSpan {
                    value: Value::Placeholder(_),
                    ..
                }) => self.ok = false,
                _ => {}
            }
            if self.ok {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }
    }
    let mut c = Check {
        inner,
        columns: 0,
        ok: true,
    };
    let _ = datafusion::sql::sqlparser::ast::Visit::visit(e, &mut c);
    c.ok && c.columns > 0
}

fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, out)
        }
        e => out.push(e),
    }
}

fn and_all(mut v: Vec<Expr>) -> Option<Expr> {
    let first = if v.is_empty() {
        return None;
    } else {
        v.remove(0)
    };
    Some(v.into_iter().fold(first, |a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    }))
}

/// `(SELECT ... WHERE outer_only AND rest)` → `CASE WHEN outer_only THEN
/// (SELECT ... WHERE rest) END` for a scalar subquery `e`.
fn hoist_outer_predicates(e: &mut Expr) {
    let Expr::Subquery(q) = e else {
        return;
    };
    let Some(inner) = from_names(q) else {
        return;
    };
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return;
    };
    // count(...) is 0, not NULL, over no rows: the subquery must run
    if sel.projection.iter().any(projects_count) {
        return;
    }
    let Some(w) = sel.selection.take() else {
        return;
    };
    let mut parts = Vec::new();
    conjuncts(w, &mut parts);
    let (outer, rest): (Vec<Expr>, Vec<Expr>) =
        parts.into_iter().partition(|p| outer_only(p, &inner));
    sel.selection = and_all(rest);
    split_outer_arguments(e, &inner);
    let Some(cond) = and_all(outer) else {
        return;
    };
    let sub = take(e);
    *e = Expr::Case {
        case_token: datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(
        ),
        end_token: datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![CaseWhen {
            condition: cond,
            result: sub,
        }],
        else_result: None,
    };
}

/// `(SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'name')`, the form
/// `datafusion-pg-catalog` gives `'name'::regproc`: the name.
fn regproc_lookup_name(e: &Expr) -> Option<String> {
    let Expr::Subquery(q) = e else {
        return None;
    };
    let s = q.to_string();
    let rest = s.strip_prefix("SELECT oid FROM pg_catalog.pg_proc WHERE proname = '")?;
    let name = rest.strip_suffix('\'')?;
    if name.contains('\'') {
        return None;
    }
    Some(name.trim_start_matches("pg_catalog.").to_string())
}

/// `pg_type`'s regproc columns, which `datafusion-pg-catalog` stores as names.
const REGPROC_NAME_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
];

fn is_regproc_name_column(e: &Expr) -> bool {
    let last = match e {
        Expr::Identifier(i) => &i.value,
        Expr::CompoundIdentifier(p) => match p.last() {
            Some(i) => &i.value,
            None => return false,
        },
        _ => return false,
    };
    REGPROC_NAME_COLUMNS.contains(&last.to_ascii_lowercase().as_str())
}

/// `(SELECT coalesce(max(relname), CAST(x AS VARCHAR)) FROM pg_class WHERE oid = x)`.
fn regclass_name(x: Expr) -> Expr {
    let sql = "SELECT max(__rc.relname) FROM pg_catalog.pg_class AS __rc WHERE __rc.oid = $1";
    let mut q = match datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    ) {
        Ok(mut v) => match v.remove(0) {
            Statement::Query(q) => q,
            _ => return x,
        },
        Err(_) => return x,
    };
    struct Subst(Expr);
    impl VisitorMut for Subst {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if matches!(
                e,
                Expr::Value(ValueWithSpan {
                    value: Value::Placeholder(_),
                    ..
                })
            ) {
                *e = self.0.clone();
            }
            ControlFlow::Continue(())
        }
    }
    let _ = q.visit(&mut Subst(x.clone()));
    func(
        "coalesce",
        vec![
            Expr::Subquery(q),
            Expr::Cast {
                kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
                expr: Box::new(x),
                data_type: DataType::Varchar(None),
                array: false,
                format: None,
            },
        ],
    )
}

impl VisitorMut for ClientIdioms {
    type Break = ();

    fn post_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        // FROM regexp_split_to_table(s, p) → FROM unnest(regexp_split_to_array(s, p))
        if let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            with_ordinality,
            ..
        } = tf
        {
            if bare_name(name) == "regexp_split_to_table" && (2..=3).contains(&args.args.len()) {
                let plain: Option<Vec<Expr>> = args
                    .args
                    .iter()
                    .map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                        _ => None,
                    })
                    .collect();
                if let Some(plain) = plain {
                    *tf = TableFactor::UNNEST {
                        alias: alias.take(),
                        array_exprs: vec![func("regexp_split_to_array", plain)],
                        with_offset: false,
                        with_offset_alias: None,
                        with_ordinality: *with_ordinality,
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => {
                let name = bare_name(&f.name);
                if name == "array" {
                    if let FunctionArguments::Subquery(q) = &f.args {
                        if let Some(new) = array_of_subquery(q) {
                            *e = new;
                        }
                    }
                    return ControlFlow::Continue(());
                }
                if f.over.is_some() {
                    return ControlFlow::Continue(());
                }
                let Some(args) = plain_args(f) else {
                    return ControlFlow::Continue(());
                };
                match (name.as_str(), args.as_slice()) {
                    ("generate_subscripts", [arr, dim]) => {
                        let len = Expr::Cast {
                            kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
                            expr: Box::new(func(
                                "array_length",
                                vec![(*arr).clone(), (*dim).clone()],
                            )),
                            data_type: DataType::BigInt(None),
                            array: false,
                            format: None,
                        };
                        *e = func(
                            "unnest",
                            vec![func("generate_series", vec![number("1"), len])],
                        );
                    }
                    ("regexp_split_to_table", [_, _] | [_, _, _]) => {
                        let args = args.iter().map(|a| (*a).clone()).collect();
                        *e = func("unnest", vec![func("regexp_split_to_array", args)]);
                    }
                    ("_pg_expandarray", [arr]) => {
                        *e = func("unnest", vec![func("pg_expandarray", vec![(*arr).clone()])]);
                    }
                    ("pg_get_serial_sequence", [_, _]) => {
                        *e = Expr::Cast {
                            kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
                            expr: Box::new(null()),
                            data_type: DataType::Varchar(None),
                            array: false,
                            format: None,
                        };
                    }
                    _ => {}
                }
            }
            Expr::CompoundFieldAccess { root, access_chain }
                if matches!(root.as_ref(), Expr::Nested(_))
                    && !access_chain.is_empty()
                    && access_chain
                        .iter()
                        .all(|a| matches!(a, AccessExpr::Dot(Expr::Identifier(_)))) =>
            {
                let Expr::Nested(inner) = root.as_mut() else {
                    return ControlFlow::Continue(());
                };
                let mut out = take(inner);
                for a in access_chain.iter() {
                    if let AccessExpr::Dot(Expr::Identifier(i)) = a {
                        out = func(
                            "get_field",
                            vec![out, string(&i.value.to_ascii_lowercase())],
                        );
                    }
                }
                *e = out;
            }
            // 'name(argtypes)'::regprocedure (psql \sf, \ef): the function's OID
            Expr::Cast {
                expr, data_type, ..
            } if crate::pgcompat::rewrite::is_named(data_type, "regprocedure") => {
                let x = take(expr);
                *e = func("pg_regprocedure_oid", vec![x]);
            }
            Expr::Cast {
                expr, data_type, ..
            } if crate::pgcompat::rewrite::is_text(data_type) => {
                if let Expr::Cast {
                    expr: inner,
                    data_type: t2,
                    ..
                } = expr.as_mut()
                {
                    if crate::pgcompat::rewrite::is_named(t2, "regclass") {
                        let x = take(inner);
                        *e = regclass_name(x);
                    }
                } else if is_regclass_lookup(expr) {
                    // 'name'::regclass, already resolved to its OID lookup
                    let x = take(expr);
                    *e = regclass_name(x);
                }
            }
            Expr::Like {
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                ..
            } => {
                if let Some(ValueWithSpan {
                    value: Value::SingleQuotedString(c),
                    ..
                }) = escape_char
                {
                    if c != "\\" {
                        let esc = c.clone();
                        let p = take(pattern);
                        **pattern = func("pg_like_escape", vec![p, string(&esc)]);
                        *escape_char = None;
                    }
                }
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq | BinaryOperator::NotEq,
                right,
            } => {
                if is_regproc_name_column(left) {
                    if let Some(n) = regproc_lookup_name(right) {
                        **right = string(&n);
                    }
                } else if is_regproc_name_column(right) {
                    if let Some(n) = regproc_lookup_name(left) {
                        **left = string(&n);
                    }
                }
            }
            Expr::Subquery(_) => hoist_outer_predicates(e),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// True when `e` names a column qualified by one of `inner`'s names.
fn reads_inner(e: &Expr, inner: &HashSet<String>) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |x| {
        match x {
            Expr::Identifier(_) => found = true,
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let q: Vec<String> = parts[..parts.len() - 1]
                    .iter()
                    .map(|p| p.value.to_ascii_lowercase())
                    .collect();
                let last = q.last().cloned().unwrap_or_default();
                if inner.contains(&q.join(".")) || inner.contains(&last) {
                    found = true;
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// True when `e` names a column qualified by a name not in `inner`.
fn reads_outer(e: &Expr, inner: &HashSet<String>) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |x| {
        if let Expr::CompoundIdentifier(parts) = x {
            if parts.len() >= 2 {
                let q: Vec<String> = parts[..parts.len() - 1]
                    .iter()
                    .map(|p| p.value.to_ascii_lowercase())
                    .collect();
                let last = q.last().cloned().unwrap_or_default();
                if !inner.contains(&q.join(".")) && !inner.contains(&last) {
                    found = true;
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// `(SELECT f(outer, inner1, inner2) FROM ... WHERE w)` (SQLAlchemy's
/// `json_build_object` of identity options) → `CASE WHEN (SELECT count(*)
/// FROM ... WHERE w) > 0 THEN f(outer, (SELECT inner1 ...), (SELECT inner2
/// ...)) END`: DataFusion cannot decorrelate outer columns in a subquery's
/// select list; each argument becomes its own subquery over the same rows.
fn split_outer_arguments(e: &mut Expr, inner: &HashSet<String>) {
    let Expr::Subquery(q) = e else {
        return;
    };
    if q.limit_clause.is_some() || q.fetch.is_some() || q.with.is_some() || q.order_by.is_some() {
        return;
    }
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return;
    };
    let grouped = match &sel.group_by {
        GroupByExpr::Expressions(v, _) => !v.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if grouped || sel.having.is_some() || sel.distinct.is_some() || sel.projection.len() != 1 {
        return;
    }
    let value = match &sel.projection[0] {
        SelectItem::UnnamedExpr(v) | SelectItem::ExprWithAlias { expr: v, .. } => v,
        _ => return,
    };
    let Expr::Function(f) = value else {
        return;
    };
    if f.over.is_some()
        || crate::pgcompat::rewrite::AGGREGATES.contains(&bare_name(&f.name).as_str())
        || !reads_outer(value, inner)
    {
        return;
    }
    let Some(args) = plain_args(f) else {
        return;
    };
    if !args.iter().any(|a| reads_inner(a, inner)) {
        return;
    }
    // every argument reads either only outer columns (or none) or only inner ones
    if args
        .iter()
        .any(|a| reads_inner(a, inner) && reads_outer(a, inner))
    {
        return;
    }
    let sub_for = |x: Expr| -> Expr {
        let mut q2 = q.clone();
        if let SetExpr::Select(s2) = q2.body.as_mut() {
            s2.projection = vec![SelectItem::UnnamedExpr(x)];
        }
        Expr::Subquery(q2)
    };
    let new_args: Vec<Expr> = args
        .iter()
        .map(|a| {
            if reads_inner(a, inner) {
                sub_for((*a).clone())
            } else {
                (*a).clone()
            }
        })
        .collect();
    let name = f.name.to_string();
    let any_row = Expr::BinaryOp {
        left: Box::new(sub_for(func("count", vec![number("1")]))),
        op: BinaryOperator::Gt,
        right: Box::new(number("0")),
    };
    *e = Expr::Case {
        case_token: datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(
        ),
        end_token: datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![CaseWhen {
            condition: any_row,
            result: func(&name, new_args),
        }],
        else_result: None,
    };
}

/// Marks `x::regclass::text` in `ORDER BY` to be left as written (ordering by
/// the OID's digits): a name lookup there would make DataFusion add the bare
/// OID column to a projection that already holds `x::regclass` under the same
/// name (psql `\d+` child tables).
struct KeepOrderByRegclass;

impl VisitorMut for KeepOrderByRegclass {
    type Break = ();
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        if let Some(o) = &mut q.order_by {
            if let OrderByKind::Expressions(v) = &mut o.kind {
                for o in v.iter_mut() {
                    if let Expr::Cast {
                        expr, data_type, ..
                    } = &mut o.expr
                    {
                        if crate::pgcompat::rewrite::is_text(data_type)
                            && matches!(expr.as_ref(), Expr::Cast { data_type: t, .. } if crate::pgcompat::rewrite::is_named(t, "regclass"))
                        {
                            *data_type = DataType::Char(None);
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `datafusion-pg-catalog`'s form of `'name'::regclass`: a `pg_class` OID
/// lookup by `parse_ident` of the name.
fn is_regclass_lookup(e: &Expr) -> bool {
    let Expr::Subquery(q) = e else {
        return false;
    };
    let s = q.to_string();
    s.starts_with("SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n")
        && s.contains("parse_ident(")
}

fn projects_count(item: &SelectItem) -> bool {
    let e = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return false,
    };
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |x| {
        if let Expr::Function(f) = x {
            if bare_name(&f.name) == "count" {
                found = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}
