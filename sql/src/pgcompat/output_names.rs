//! PostgreSQL's names for unaliased output columns where DataFusion would
//! refuse the query: PostgreSQL allows two output columns with one name
//! (`SELECT (SELECT 1), (SELECT 2)` gives two `?column?`, `SELECT user,
//! current_user` gives `user` and `current_user`), DataFusion wants unique
//! names. Items of a SELECT list whose PostgreSQL names collide get an alias
//! that carries that name plus [`DUPLICATE_MARK`] and their position; the
//! wire layer shows the part before the mark
//! ([`crate::model::pgtext::pg_column_name`]). Items DataFusion would name
//! after their text (casts, CASE, subqueries) get PostgreSQL's name as their
//! alias, so `SELECT x::int` is `x` to a client and to an enclosing query.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Ident, Query, SelectItem, SetExpr, Statement, Value, VisitMut, VisitorMut,
};

pub use crate::model::pgtext::DUPLICATE_MARK;

fn ident_name(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_ascii_lowercase()
    }
}

/// PostgreSQL's name of a type in a cast (`FigureColname` gives the type).
fn type_name(t: &DataType) -> String {
    let s = t.to_string().to_ascii_lowercase();
    let base = s.split('(').next().unwrap_or("").trim().to_string();
    match base.as_str() {
        "int" | "integer" | "int4" => "int4".into(),
        "bigint" | "int8" => "int8".into(),
        "smallint" | "int2" => "int2".into(),
        "boolean" | "bool" => "bool".into(),
        "double precision" | "float8" | "double" => "float8".into(),
        "real" | "float4" => "float4".into(),
        "decimal" | "numeric" => "numeric".into(),
        "character varying" | "varchar" => "varchar".into(),
        "character" | "char" => "bpchar".into(),
        "timestamp with time zone" | "timestamptz" => "timestamptz".into(),
        "timestamp" | "timestamp without time zone" => "timestamp".into(),
        other => other.trim_start_matches("pg_catalog.").to_string(),
    }
}

/// PostgreSQL's output name of an unaliased expression (`FigureColname`);
/// `None` is `?column?`.
pub fn figure_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(id) => Some(ident_name(id)),
        Expr::CompoundIdentifier(ids) => ids.last().map(ident_name),
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(ident_name),
        Expr::Cast {
            expr, data_type, ..
        } => figure_name(expr).or_else(|| Some(type_name(data_type))),
        Expr::Nested(inner) => figure_name(inner),
        Expr::Subquery(q) => first_item_name(q),
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::TypedString(ts) => Some(type_name(&ts.data_type)),
        Expr::Interval(_) => Some("interval".into()),
        Expr::Extract { .. } => Some("extract".into()),
        Expr::Substring { .. } => Some("substring".into()),
        Expr::Position { .. } => Some("position".into()),
        Expr::Trim { .. } => Some("btrim".into()),
        Expr::Ceil { .. } => Some("ceil".into()),
        Expr::Floor { .. } => Some("floor".into()),
        Expr::AtTimeZone { .. } => Some("timezone".into()),
        Expr::Value(v) => match &v.value {
            Value::Boolean(_) => Some("bool".into()),
            _ => None,
        },
        _ => None,
    }
}

/// The output name of a subquery's first column.
fn first_item_name(q: &Query) -> Option<String> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    match s.projection.first()? {
        SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
        SelectItem::UnnamedExpr(e) => figure_name(e),
        _ => None,
    }
}

/// Aliases the colliding unaliased items of one SELECT list.
fn name_select_list(items: &mut [SelectItem]) {
    // Name of each item as PostgreSQL shows it; `None` for wildcards.
    let names: Vec<Option<String>> = items
        .iter()
        .map(|i| match i {
            SelectItem::UnnamedExpr(e) => Some(figure_name(e).unwrap_or_else(|| "?column?".into())),
            SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
            _ => None,
        })
        .collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for n in names.iter().flatten() {
        *count.entry(n.as_str()).or_default() += 1;
    }
    // Plain column references keep their names unless the same text repeats
    // (DataFusion names them by their qualified text, which is unique).
    let mut texts: HashMap<String, usize> = HashMap::new();
    for i in items.iter() {
        if let SelectItem::UnnamedExpr(e) = i {
            *texts.entry(e.to_string()).or_default() += 1;
        }
    }
    for (pos, item) in items.iter_mut().enumerate() {
        if let SelectItem::ExprWithAlias { alias, .. } = item {
            // `SELECT 1 AS a, 2 AS a`: PostgreSQL allows it.
            let name = ident_name(alias);
            if count.get(name.as_str()).copied().unwrap_or(0) > 1 {
                *alias = Ident::with_quote('"', format!("{name}{DUPLICATE_MARK}{pos}"));
            }
            continue;
        }
        let SelectItem::UnnamedExpr(e) = item else {
            continue;
        };
        let Some(name) = &names[pos] else { continue };
        // `user`, `current_user` and `session_user` all plan as
        // `session_user()`: they always get their own names.
        let session_user = matches!(
            name.as_str(),
            "user" | "current_user" | "session_user" | "current_role"
        ) && matches!(e, Expr::Identifier(_) | Expr::Function(_));
        let plain_column = matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
        // DataFusion names these after their text (`CASE WHEN … END`,
        // `CAST(Int64(1) AS Int32)`): give them PostgreSQL's name.
        let named_by_text = matches!(
            e,
            Expr::Cast { .. }
                | Expr::Case { .. }
                | Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::Array(_)
                | Expr::TypedString(_)
                | Expr::Interval(_)
                | Expr::Extract { .. }
                | Expr::Substring { .. }
                | Expr::Position { .. }
                | Expr::Trim { .. }
                | Expr::Ceil { .. }
                | Expr::Floor { .. }
                | Expr::AtTimeZone { .. }
        ) && figure_name(e).is_some();
        if session_user || named_by_text {
            // fall through to the alias
        } else if count.get(name.as_str()).copied().unwrap_or(0) < 2 {
            continue;
        } else if plain_column && texts.get(&e.to_string()).copied().unwrap_or(0) < 2 {
            continue;
        }
        let alias = if count.get(name.as_str()).copied().unwrap_or(0) > 1 {
            Ident::with_quote('"', format!("{name}{DUPLICATE_MARK}{pos}"))
        } else {
            Ident::with_quote('"', name.clone())
        };
        let expr = std::mem::replace(e, Expr::value(Value::Null));
        *item = SelectItem::ExprWithAlias { expr, alias };
    }
}

struct OutputNames;

impl VisitorMut for OutputNames {
    type Break = ();
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        fn walk(body: &mut SetExpr) {
            match body {
                SetExpr::Select(s) => name_select_list(&mut s.projection),
                SetExpr::SetOperation { left, right, .. } => {
                    walk(left);
                    walk(right);
                }
                SetExpr::Query(q) => walk(&mut q.body),
                _ => {}
            }
        }
        walk(&mut q.body);
        ControlFlow::Continue(())
    }
}

/// Applies PostgreSQL output naming to every SELECT list of `stmt`.
pub fn rewrite(stmt: &mut Statement) {
    let _ = stmt.visit(&mut OutputNames);
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        rewrite(&mut s);
        s.to_string().replace(DUPLICATE_MARK, "#")
    }

    #[test]
    fn colliding_items_get_marked_aliases() {
        assert_eq!(
            rewritten("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)"),
            "SELECT (SELECT count(*) FROM a) AS \"count#0\", (SELECT count(*) FROM b) AS \"count#1\""
        );
        assert_eq!(
            rewritten("SELECT 1, 2"),
            "SELECT 1 AS \"?column?#0\", 2 AS \"?column?#1\""
        );
    }

    #[test]
    fn distinct_names_and_qualified_columns_stay() {
        assert_eq!(
            rewritten("SELECT count(*), sum(x) FROM t"),
            "SELECT count(*), sum(x) FROM t"
        );
        assert_eq!(
            rewritten("SELECT a.x, b.x FROM a, b"),
            "SELECT a.x, b.x FROM a, b"
        );
        assert_eq!(
            rewritten("SELECT user, current_user"),
            "SELECT user AS \"user\", current_user AS \"current_user\""
        );
        assert_eq!(
            rewritten("SELECT x::int FROM t"),
            "SELECT x::INT AS \"x\" FROM t"
        );
    }

    #[test]
    fn names_follow_postgres() {
        let name = |sql: &str| {
            let s = Parser::parse_sql(&PostgreSqlDialect {}, &format!("SELECT {sql}")).unwrap();
            let Statement::Query(q) = &s[0] else { panic!() };
            first_item_name(q)
        };
        assert_eq!(name("1::text").as_deref(), Some("text"));
        assert_eq!(name("x::int").as_deref(), Some("x"));
        assert_eq!(name("CASE WHEN true THEN 1 END").as_deref(), Some("case"));
        assert_eq!(name("(SELECT max(y) FROM t)").as_deref(), Some("max"));
        assert_eq!(name("1 + 1"), None);
        assert_eq!(crate::model::pgtext::pg_column_name("count\u{1}3"), "count");
    }
}
