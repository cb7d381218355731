//! Rewrites of parsed statements for PostgreSQL forms that BI tools' catalog
//! queries use (Grafana's search-path lookup, pgjdbc's type cache) and
//! DataFusion does not plan as written:
//!
//! - a scalar function in `FROM` (`FROM string_to_array(x, ',') s`) is one row
//!   with one column named after the alias: it becomes the derived table
//!   `(SELECT string_to_array(x, ',') AS s) AS s`;
//! - a single-column set-returning function aliased without a column list
//!   (`FROM generate_series(1, 3) AS i`) names its column after the alias,
//!   so `i` is the value: the alias becomes `i(i)`;
//! - `::regclass` of a computed name (`format('%I.%I', s, t)::regclass`,
//!   Metabase) is `pg_regclass(name)`, a lookup in `pg_class`;
//! - Grafana's search-path subquery is parsed without `datafusion-pg-catalog`'s
//!   blacklist, which would replace it (see [`needs_unblacklisted_parse`]);
//! - `x IN (SELECT ...)` in a `SELECT` list or `ORDER BY` item is
//!   `array_has` of the set as an array (see [`InToArrayHas`]);
//! - `ORDER BY` items with subqueries are computed in a derived table and
//!   sorted on outside (see [`sort_by_subqueries`]);
//! - the bare key word `user` (unquoted: reserved in PostgreSQL, never a
//!   column) is `session_user`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArguments, Ident, ObjectName, Query, SetExpr, Statement, TableAlias,
    TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::pgcompat::rewrite::call;

/// Table functions (set-returning) DataFusion and `datafusion-pg-catalog`
/// provide; any other function in `FROM` is scalar.
const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "pg_get_keywords", "unnest"];

/// The table functions among [`TABLE_FUNCTIONS`] that return one column.
const SINGLE_COLUMN: &[&str] = &["generate_series", "range", "unnest"];

fn base_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase())
        .unwrap_or_default()
}

/// `(SELECT <call> AS <col>) AS <alias>` for a scalar function in `FROM`.
fn scalar_as_derived(call: String, col: &Ident, alias: Option<TableAlias>) -> Option<TableFactor> {
    let sql = format!("SELECT {call} AS {col}");
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?;
    let Some(Statement::Query(q)) = stmts.pop() else {
        return None;
    };
    if !matches!(q.body.as_ref(), SetExpr::Select(_)) {
        return None;
    }
    let alias = alias.unwrap_or(TableAlias {
        explicit: true,
        name: col.clone(),
        columns: vec![],
        at: None,
    });
    Some(TableFactor::Derived {
        lateral: false,
        subquery: q,
        alias: Some(alias),
        sample: None,
    })
}

/// A computed text (a call, a concatenation, a cast): `::regclass` of it is a
/// name lookup; literals and placeholders are `datafusion-pg-catalog`'s,
/// columns are OIDs.
fn is_computed(e: &Expr) -> bool {
    match e {
        Expr::Function(_) => true,
        Expr::BinaryOp { op, .. } => {
            matches!(
                op,
                datafusion::sql::sqlparser::ast::BinaryOperator::StringConcat
            )
        }
        Expr::Nested(inner) => is_computed(inner),
        Expr::Cast { data_type, .. } => {
            let t = data_type.to_string().to_ascii_lowercase();
            t == "text" || t.starts_with("varchar") || t.starts_with("character varying")
        }
        _ => false,
    }
}

/// Whether `e` contains a subquery (`IN (SELECT ...)`, `EXISTS`, scalar).
fn has_subquery(e: &Expr) -> bool {
    struct Find(bool);
    impl datafusion::sql::sqlparser::ast::Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if matches!(
                e,
                Expr::InSubquery { .. } | Expr::Exists { .. } | Expr::Subquery(_)
            ) {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Find(false);
    let _ = datafusion::sql::sqlparser::ast::Visit::visit(e, &mut f);
    f.0
}

/// `ORDER BY` items with subqueries (Grafana's `ORDER BY CASE WHEN schema IN
/// (SELECT ...) THEN 0 ELSE 1 END`), which DataFusion cannot sort by: the
/// query becomes `SELECT <its columns> FROM (<it, plus one column per such
/// item>) ORDER BY <those columns>`. Only for a plain `SELECT` (no `DISTINCT`,
/// `GROUP BY`, `*`) whose columns all have names.
fn sort_by_subqueries(q: &mut Query) {
    use datafusion::sql::sqlparser::ast::{GroupByExpr, OrderByKind, SelectItem};
    let Some(order) = &q.order_by else {
        return;
    };
    let OrderByKind::Expressions(items) = &order.kind else {
        return;
    };
    if !items.iter().any(|o| has_subquery(&o.expr)) || q.with.is_some() {
        return;
    }
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return;
    };
    let grouped = match &sel.group_by {
        GroupByExpr::Expressions(v, _) => !v.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if sel.distinct.is_some() || grouped || sel.having.is_some() {
        return;
    }
    let mut names = Vec::new();
    for item in &sel.projection {
        let name = match item {
            SelectItem::ExprWithAlias { alias, .. } => alias.clone(),
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => i.clone(),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => match parts.last() {
                Some(i) => i.clone(),
                None => return,
            },
            _ => return,
        };
        names.push(name);
    }
    let mut inner = q.clone();
    inner.order_by = None;
    inner.limit_clause = None;
    inner.fetch = None;
    let SetExpr::Select(inner_sel) = inner.body.as_mut() else {
        return;
    };
    let mut outer_items = Vec::new();
    for (k, o) in items.iter().enumerate() {
        let keep = match &o.expr {
            // an output column by position or by name stays as it is
            Expr::Value(_) => true,
            Expr::Identifier(i) => names.iter().any(|n| n.value == i.value),
            _ => false,
        };
        let mut o = o.clone();
        if !keep {
            let alias = Ident::new(format!("__bi_sort_{k}"));
            inner_sel.projection.push(SelectItem::ExprWithAlias {
                expr: o.expr.clone(),
                alias: alias.clone(),
            });
            o.expr = Expr::Identifier(alias);
        }
        outer_items.push(o);
    }
    let cols = names
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let Ok(mut stmts) = Parser::parse_sql(
        &PostgreSqlDialect {},
        &format!("SELECT {cols} FROM (SELECT 1) AS __bi_sorted"),
    ) else {
        return;
    };
    let Some(Statement::Query(mut outer)) = stmts.pop() else {
        return;
    };
    let SetExpr::Select(outer_sel) = outer.body.as_mut() else {
        return;
    };
    let Some(TableFactor::Derived { subquery, .. }) =
        outer_sel.from.first_mut().map(|t| &mut t.relation)
    else {
        return;
    };
    *subquery = Box::new(inner);
    let mut order = order.clone();
    order.kind = OrderByKind::Expressions(outer_items);
    outer.order_by = Some(order);
    outer.limit_clause = q.limit_clause.take();
    outer.fetch = q.fetch.take();
    *q = *outer;
}

/// `x IN (SELECT ...)` where DataFusion cannot run it (in a `SELECT` list or
/// an `ORDER BY` item, e.g. Grafana's `CASE WHEN schema IN (SELECT ...)`) as
/// `array_has((SELECT array_agg(v) FROM (SELECT ...) AS __bi_in (v)), x)`:
/// the set as one array, from an uncorrelated scalar subquery. Not for
/// `NOT IN`, whose result on an empty set would differ.
struct InToArrayHas {
    depth: usize,
}

impl VisitorMut for InToArrayHas {
    type Break = ();
    fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }
    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        if let Expr::InSubquery {
            expr,
            subquery,
            negated: false,
        } = e
        {
            let sql = format!(
                "array_has((SELECT array_agg(__bi_in.v) FROM ({subquery}) AS __bi_in (v)), {expr})"
            );
            let parsed = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_expr());
            if let Ok(new) = parsed {
                *e = new;
            }
        }
        ControlFlow::Continue(())
    }
}

fn in_subqueries_as_arrays(q: &mut Query) {
    use datafusion::sql::sqlparser::ast::{OrderByKind, SelectItem};
    let mut v = InToArrayHas { depth: 0 };
    if let SetExpr::Select(sel) = q.body.as_mut() {
        for item in sel.projection.iter_mut() {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
                if has_subquery(e) {
                    let _ = e.visit(&mut v);
                }
            }
        }
    }
    if let Some(order) = q.order_by.as_mut() {
        if let OrderByKind::Expressions(items) = &mut order.kind {
            for o in items.iter_mut() {
                if has_subquery(&o.expr) {
                    let _ = o.expr.visit(&mut v);
                }
            }
        }
    }
}

struct BiRewrite;

impl VisitorMut for BiRewrite {
    type Break = ();

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        in_subqueries_as_arrays(q);
        sort_by_subqueries(q);
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            alias,
            args: Some(args),
            with_ordinality: false,
            ..
        } = tf
        else {
            return ControlFlow::Continue(());
        };
        let fname = base_name(name);
        if SINGLE_COLUMN.contains(&fname.as_str()) {
            if let Some(a) = alias {
                if a.columns.is_empty() {
                    a.columns = vec![TableAliasColumnDef::from_name(a.name.value.clone())];
                }
            }
            return ControlFlow::Continue(());
        }
        if TABLE_FUNCTIONS.contains(&fname.as_str()) || args.settings.is_some() {
            return ControlFlow::Continue(());
        }
        let call = format!(
            "{name}({})",
            args.args
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        // the column is named after the alias (PostgreSQL), else the function
        let (col, alias) = match alias.take() {
            Some(a) if a.columns.len() == 1 => (a.columns[0].name.clone(), Some(a)),
            Some(a) if a.columns.is_empty() => (a.name.clone(), Some(a)),
            other => {
                *alias = other;
                return ControlFlow::Continue(());
            }
        };
        let alias = alias.map(|mut a| {
            a.columns.clear();
            a
        });
        if let Some(derived) = scalar_as_derived(call, &col, alias) {
            *tf = derived;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::Cast {
            expr, data_type, ..
        } = e
        {
            let t = data_type.to_string().to_ascii_lowercase();
            if t.trim_start_matches("pg_catalog.") == "regclass" && is_computed(expr) {
                let arg = std::mem::replace(
                    expr.as_mut(),
                    Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
                );
                *e = call("pg_regclass", arg);
                return ControlFlow::Continue(());
            }
        }
        // sqlparser gives `user` as an identifier or as a call without parentheses
        let is_user = match e {
            Expr::Identifier(id) => {
                id.quote_style.is_none() && id.value.eq_ignore_ascii_case("user")
            }
            Expr::Function(f) => {
                matches!(f.args, FunctionArguments::None)
                    && f.name.0.len() == 1
                    && f.name.0[0].as_ident().is_some_and(|i| {
                        i.quote_style.is_none() && i.value.eq_ignore_ascii_case("user")
                    })
            }
            _ => false,
        };
        {
            if is_user {
                *e = Expr::Function(Function {
                    name: ObjectName::from(vec![Ident::new("session_user")]),
                    uses_odbc_syntax: false,
                    parameters: FunctionArguments::None,
                    // without parentheses, the only spelling sqlparser re-parses
                    args: FunctionArguments::None,
                    filter: None,
                    null_treatment: None,
                    over: None,
                    within_group: vec![],
                });
            }
        }
        ControlFlow::Continue(())
    }
}

/// Grafana's search-path subquery (postgresMetaQuery.ts `buildSchemaConstraint`),
/// which `datafusion-pg-catalog` 0.19's parser blacklists (replaces by `''`,
/// so that it matches nothing) because it assumed no `current_setting()`;
/// cohortdb has `current_setting`, so such statements are parsed without
/// the blacklist (the text is the blacklist entry's, token for token).
const GRAFANA_SEARCH_PATH: &str = r#"SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
        FROM
            generate_series(
                array_lower(string_to_array(current_setting('search_path'),','),1),
                array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s"#;

fn tokens(sql: &str) -> Option<Vec<datafusion::sql::sqlparser::tokenizer::Token>> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let toks = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    Some(
        toks.into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
            .collect(),
    )
}

/// Whether `sql` contains a fragment `datafusion-pg-catalog` would blacklist
/// although cohortdb runs it (see [`GRAFANA_SEARCH_PATH`]).
pub fn needs_unblacklisted_parse(sql: &str) -> bool {
    if !sql.contains("current_setting") {
        return false;
    }
    let (Some(text), Some(pattern)) = (tokens(sql), tokens(GRAFANA_SEARCH_PATH)) else {
        return false;
    };
    text.windows(pattern.len()).any(|w| w == pattern.as_slice())
}

/// Parses `sql` with `datafusion-pg-catalog`'s rewrite rules but without its
/// blacklist substitutions.
pub fn parse_unblacklisted(
    parser: &crate::pgcompat::parser::CompatParser,
    sql: &str,
) -> std::result::Result<Vec<Statement>, datafusion::sql::sqlparser::parser::ParserError> {
    Ok(Parser::parse_sql(&PostgreSqlDialect {}, sql)?
        .into_iter()
        .map(|s| parser.rewrite(s))
        .collect())
}

/// Applies the BI-tool rewrites to `stmt` in place.
pub fn rewrite(stmt: &mut Statement) {
    let _ = stmt.visit(&mut BiRewrite);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        rewrite(&mut stmts[0]);
        stmts[0].to_string()
    }

    #[test]
    fn functions_in_from() {
        assert_eq!(
            rw("SELECT s[i] FROM generate_series(1, 2) AS i, string_to_array('a,b', ',') s"),
            "SELECT s[i] FROM generate_series(1, 2) AS i (i), \
             (SELECT string_to_array('a,b', ',') AS s) s"
        );
        assert_eq!(
            rw("SELECT * FROM generate_series(1, 2) AS s(r)"),
            "SELECT * FROM generate_series(1, 2) AS s (r)"
        );
        assert_eq!(rw("SELECT * FROM contacts c"), "SELECT * FROM contacts c");
        assert_eq!(
            rw("SELECT * FROM pg_get_keywords() k"),
            "SELECT * FROM pg_get_keywords() k"
        );
    }

    #[test]
    fn regclass_of_computed_names() {
        assert_eq!(
            rw("SELECT CAST(CAST(format('%I.%I', a, b) AS REGCLASS) AS OID), x::regclass FROM t"),
            "SELECT CAST(pg_regclass(format('%I.%I', a, b)) AS OID), x::REGCLASS FROM t"
        );
    }

    #[test]
    fn grafana_search_path_is_recognised() {
        let q =
            format!("SELECT 1 FROM t WHERE quote_ident(table_schema) IN ({GRAFANA_SEARCH_PATH})");
        assert!(needs_unblacklisted_parse(&q));
        assert!(!needs_unblacklisted_parse(
            "SELECT current_setting('search_path')"
        ));
        let p = crate::pgcompat::parser::CompatParser::new();
        let stmts = parse_unblacklisted(&p, &q).unwrap();
        assert!(stmts[0].to_string().contains("generate_series"));
    }

    #[test]
    fn order_by_subquery_moves_into_a_derived_table() {
        assert_eq!(
            rw("SELECT a AS x, b FROM t WHERE c ORDER BY CASE WHEN a IN (SELECT y FROM u) THEN 0 ELSE 1 END, 1 LIMIT 3"),
            "SELECT x, b FROM (SELECT a AS x, b, CASE WHEN array_has((SELECT array_agg(__bi_in.v) \
             FROM (SELECT y FROM u) AS __bi_in (v)), a) THEN 0 ELSE 1 END AS __bi_sort_0 \
             FROM t WHERE c) AS __bi_sorted ORDER BY __bi_sort_0, 1 LIMIT 3"
        );
        assert_eq!(
            rw("SELECT a FROM t ORDER BY a"),
            "SELECT a FROM t ORDER BY a"
        );
        // IN in a filter stays (DataFusion runs it as a semi join)
        assert_eq!(
            rw("SELECT a FROM t WHERE a IN (SELECT y FROM u)"),
            "SELECT a FROM t WHERE a IN (SELECT y FROM u)"
        );
    }

    #[test]
    fn user_is_session_user() {
        assert_eq!(
            rw("SELECT user, \"user\" FROM t"),
            "SELECT session_user, \"user\" FROM t"
        );
    }
}
