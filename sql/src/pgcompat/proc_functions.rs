//! PostgreSQL functions over `pg_proc` and strings that clients call:
//! `pg_get_function_arguments`, `pg_get_function_identity_arguments`,
//! `pg_get_function_result`, `pg_get_functiondef` and `'f(args)'::regprocedure`
//! (`pg_regprocedure_oid`) (psql `\df`/`\sf`,
//! pgcli's function list, DBeaver), answered from the `pg_proc` rows of
//! `datafusion-pg-catalog`, read once per process; and
//! `regexp_split_to_array` (`regexp_split_to_table(s, p)` is rewritten to
//! `unnest(regexp_split_to_array(s, p))` by `client_rewrite.rs`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, ListArray, StringArray, StringBuilder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType as A, Field};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::Volatility;
use datafusion::prelude::SessionContext;

use super::pg_functions::{int, regtype_name, text, type_oid, udf};
use crate::error::SqlError;

/// What the definition functions need of one `pg_proc` row.
#[derive(Debug, Clone)]
struct Proc {
    name: String,
    args: Vec<i32>,
    ret: i32,
    retset: bool,
    kind: String,
    volatile: String,
    strict: bool,
    parallel: String,
    lang: i32,
    src: String,
}

/// `pg_proc` by OID, read once from the catalog.
static PROCS: OnceLock<HashMap<i32, Proc>> = OnceLock::new();

/// `pg_type` names by OID (`typname`, and element OID of array types), for
/// the types [`regtype_name`] does not spell itself.
static TYPE_NAMES: OnceLock<HashMap<i32, (String, i32)>> = OnceLock::new();

/// A type's name as `regtype` prints it.
fn type_name(oid: i32) -> String {
    let known = regtype_name(oid);
    if known != oid.to_string() {
        return known;
    }
    match TYPE_NAMES.get().and_then(|m| m.get(&oid)) {
        Some((name, elem)) if name.starts_with('_') && *elem != 0 => {
            format!("{}[]", type_name(*elem))
        }
        Some((name, _)) => name.clone(),
        None => known,
    }
}

/// Reads the `pg_proc` rows once per process (the static catalog is the
/// same for every session); later calls return at once.
pub async fn load(ctx: &SessionContext) {
    if PROCS.get().is_some() {
        return;
    }
    let sql = "SELECT oid, proname, CAST(proargtypes AS VARCHAR), prorettype, proretset, \
               CAST(prokind AS VARCHAR), CAST(provolatile AS VARCHAR), proisstrict, \
               CAST(proparallel AS VARCHAR), prolang, prosrc FROM pg_catalog.pg_proc";
    let batches = match ctx.sql(sql).await {
        Ok(df) => df.collect().await.unwrap_or_default(),
        Err(e) => {
            tracing::warn!("pg_proc not readable, function definitions unavailable: {e}");
            Vec::new()
        }
    };
    let mut procs = HashMap::new();
    for b in &batches {
        let col = |i: usize| b.column(i).clone();
        let (Ok(oid), Ok(name), Ok(args), Ok(ret), Ok(kind), Ok(vol), Ok(par), Ok(lang), Ok(src)) = (
            int(&col(0)),
            text(&col(1)),
            text(&col(2)),
            int(&col(3)),
            text(&col(5)),
            text(&col(6)),
            text(&col(8)),
            int(&col(9)),
            text(&col(10)),
        ) else {
            continue;
        };
        let flag = |i: usize, r: usize| {
            b.column(i)
                .as_boolean_opt()
                .is_some_and(|a| a.is_valid(r) && a.value(r))
        };
        for r in 0..b.num_rows() {
            if oid.is_null(r) {
                continue;
            }
            procs.insert(
                oid.value(r),
                Proc {
                    name: name.value(r).to_string(),
                    args: parse_oids(args.value(r)),
                    ret: ret.value(r),
                    retset: flag(4, r),
                    kind: kind.value(r).to_string(),
                    volatile: vol.value(r).to_string(),
                    strict: flag(7, r),
                    parallel: par.value(r).to_string(),
                    lang: lang.value(r),
                    src: src.value(r).to_string(),
                },
            );
        }
    }
    let _ = PROCS.set(procs);
    let mut types = HashMap::new();
    if let Ok(df) = ctx
        .sql("SELECT oid, typname, typelem FROM pg_catalog.pg_type")
        .await
    {
        for b in df.collect().await.unwrap_or_default() {
            let (Ok(oid), Ok(name), Ok(elem)) =
                (int(b.column(0)), text(b.column(1)), int(b.column(2)))
            else {
                continue;
            };
            for r in 0..b.num_rows() {
                if oid.is_valid(r) && name.is_valid(r) {
                    let e = if elem.is_valid(r) { elem.value(r) } else { 0 };
                    types.insert(oid.value(r), (name.value(r).to_string(), e));
                }
            }
        }
    }
    let _ = TYPE_NAMES.set(types);
}

/// The OIDs of an `oidvector` as the catalog prints it: `{23,25}`,
/// `[23, 25]` or `23 25`.
fn parse_oids(s: &str) -> Vec<i32> {
    s.trim_matches(|c| matches!(c, '{' | '}' | '[' | ']'))
        .split([',', ' '])
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}

fn proc_of(oid: i32) -> Option<&'static Proc> {
    PROCS.get().and_then(|m| m.get(&oid))
}

fn arguments(p: &Proc) -> String {
    p.args
        .iter()
        .map(|t| type_name(*t))
        .collect::<Vec<_>>()
        .join(", ")
}

fn result(p: &Proc) -> String {
    let t = type_name(p.ret);
    if p.retset {
        format!("SETOF {t}")
    } else {
        t
    }
}

/// `pg_get_functiondef`: PostgreSQL's text for a built-in function (an
/// error for an aggregate, as in PostgreSQL).
fn definition(p: &Proc) -> DfResult<String> {
    if p.kind == "a" {
        return Err(
            SqlError::WrongObjectType(format!("\"{}\" is an aggregate function", p.name)).into(),
        );
    }
    let volatility = match p.volatile.as_str() {
        "i" => "IMMUTABLE",
        "s" => "STABLE",
        _ => "VOLATILE",
    };
    let parallel = match p.parallel.as_str() {
        "s" => " PARALLEL SAFE",
        "r" => " PARALLEL RESTRICTED",
        _ => "",
    };
    let lang = match p.lang {
        12 => "internal",
        13 => "c",
        14 => "sql",
        _ => "plpgsql",
    };
    let kind = if p.kind == "p" {
        "PROCEDURE"
    } else {
        "FUNCTION"
    };
    let returns = if p.kind == "p" {
        String::new()
    } else {
        format!("\n RETURNS {}", result(p))
    };
    Ok(format!(
        "CREATE OR REPLACE {kind} pg_catalog.{}({}){returns}\n LANGUAGE {lang}\n {volatility}{parallel}{}\nAS $function${}$function$\n",
        p.name,
        arguments(p),
        if p.strict { " STRICT" } else { "" },
        p.src
    ))
}

/// The pieces of `s` between the matches of `re`, as PostgreSQL's
/// `regexp_split_to_array`: zero-length matches at the start or end of
/// the string or right after a match are ignored.
fn split(s: &str, re: &regex::Regex) -> Vec<String> {
    let mut out = Vec::new();
    let mut last = 0;
    let mut prev_end: Option<usize> = None;
    for m in re.find_iter(s) {
        if m.start() == m.end()
            && (m.start() == 0 || m.start() == s.len() || prev_end == Some(m.start()))
        {
            continue;
        }
        out.push(s[last..m.start()].to_string());
        last = m.end();
        prev_end = Some(m.end());
    }
    out.push(s[last..].to_string());
    out
}

/// A regex from a PostgreSQL pattern and flags (`i` case-insensitive, `c`
/// case-sensitive, `n`/`m` newline-sensitive, `s` the default, `x`
/// expanded); `g` is refused, as PostgreSQL refuses it here.
fn compile(pattern: &str, flags: &str) -> DfResult<regex::Regex> {
    let mut b = regex::RegexBuilder::new(pattern);
    for f in flags.chars() {
        match f {
            'i' => b.case_insensitive(true),
            'c' => b.case_insensitive(false),
            'n' | 'm' => b.multi_line(true),
            's' => b.multi_line(false),
            'x' => b.ignore_whitespace(true),
            'g' => {
                return Err(SqlError::InvalidValue(
                    "regexp_split_to_array() does not support the \"global\" option".into(),
                )
                .into())
            }
            other => {
                return Err(SqlError::InvalidValue(format!(
                    "invalid regular expression option: \"{other}\""
                ))
                .into())
            }
        };
    }
    b.size_limit(1 << 20).build().map_err(|e| {
        SqlError::InvalidRegularExpression(format!("invalid regular expression: {e}")).into()
    })
}

/// The OID of the function `spec` names as `regprocedure` input does:
/// `name(type, …)` (optionally `pg_catalog.`-qualified), or a bare `name`
/// when only one function has it.
fn regprocedure_oid(spec: &str) -> DfResult<i32> {
    let missing = || -> datafusion::error::DataFusionError {
        SqlError::UndefinedFunction(format!("function \"{spec}\" does not exist")).into()
    };
    let procs = PROCS.get().ok_or_else(missing)?;
    let spec_t = spec.trim();
    let (name, args) = match spec_t.split_once('(') {
        Some((n, rest)) => {
            let inner = rest.strip_suffix(')').ok_or_else(missing)?;
            let args: Option<Vec<i32>> = inner
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(type_oid)
                .collect();
            (n.trim(), Some(args.ok_or_else(missing)?))
        }
        None => (spec_t, None),
    };
    let name = name.trim_start_matches("pg_catalog.").trim_matches('"');
    let mut hits = procs
        .iter()
        .filter(|(_, p)| p.name == name && args.as_ref().is_none_or(|a| *a == p.args))
        .map(|(oid, _)| *oid);
    match (hits.next(), hits.next()) {
        (Some(oid), None) => Ok(oid),
        (Some(_), Some(_)) => Err(SqlError::UndefinedFunction(format!(
            "more than one function named \"{name}\""
        ))
        .into()),
        (None, _) => Err(missing()),
    }
}

/// Registers the functions of this module on `ctx`.
pub fn register(ctx: &SessionContext) {
    use Volatility::*;
    let by_oid = |name: &'static str, f: fn(&Proc) -> DfResult<String>| {
        udf(name, vec![vec![A::Int32]], A::Utf8, Stable, move |a, _| {
            let o: Int32Array = int(&a[0])?;
            let mut out = StringBuilder::new();
            for v in o.iter() {
                match v.and_then(proc_of) {
                    Some(p) => out.append_value(f(p)?),
                    None => out.append_null(),
                }
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        })
    };
    ctx.register_udf(by_oid("pg_get_function_arguments", |p| Ok(arguments(p))));
    ctx.register_udf(by_oid("pg_get_function_identity_arguments", |p| {
        Ok(arguments(p))
    }));
    ctx.register_udf(by_oid("pg_get_function_result", |p| {
        Ok(if p.kind == "p" {
            String::new()
        } else {
            result(p)
        })
    }));
    ctx.register_udf(by_oid("pg_get_functiondef", definition));
    ctx.register_udf(udf(
        "pg_regprocedure_oid",
        vec![vec![A::Utf8]],
        A::Int32,
        Stable,
        |a, _| {
            let s: StringArray = text(&a[0])?;
            let out = s
                .iter()
                .map(|v| v.map(regprocedure_oid).transpose())
                .collect::<DfResult<Int32Array>>()?;
            Ok(Arc::new(out) as ArrayRef)
        },
    ));
    let list = A::List(Arc::new(Field::new_list_field(A::Utf8, true)));
    ctx.register_udf(udf(
        "regexp_split_to_array",
        vec![vec![A::Utf8, A::Utf8], vec![A::Utf8, A::Utf8, A::Utf8]],
        list,
        Immutable,
        |a, rows| {
            let s: StringArray = text(&a[0])?;
            let p: StringArray = text(&a[1])?;
            let flags: Option<StringArray> = a.get(2).map(text).transpose()?;
            let mut cache: Option<(String, String, regex::Regex)> = None;
            let mut values = StringBuilder::new();
            let mut lengths = Vec::with_capacity(rows);
            let mut nulls = Vec::with_capacity(rows);
            for r in 0..rows {
                let f = flags.as_ref().map(|f| (f.is_valid(r), f.value(r)));
                if s.is_null(r) || p.is_null(r) || f.is_some_and(|(valid, _)| !valid) {
                    lengths.push(0);
                    nulls.push(false);
                    continue;
                }
                let fl = f.map_or("", |(_, v)| v);
                let hit = matches!(&cache, Some((cp, cf, _)) if cp == p.value(r) && cf == fl);
                if !hit {
                    cache = Some((
                        p.value(r).to_string(),
                        fl.to_string(),
                        compile(p.value(r), fl)?,
                    ));
                }
                let re = &cache.as_ref().expect("compiled").2;
                let parts = split(s.value(r), re);
                lengths.push(parts.len());
                nulls.push(true);
                for part in parts {
                    values.append_value(part);
                }
            }
            Ok(Arc::new(ListArray::try_new(
                Arc::new(Field::new_list_field(A::Utf8, true)),
                OffsetBuffer::from_lengths(lengths),
                Arc::new(values.finish()),
                Some(nulls.into()),
            )?) as ArrayRef)
        },
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_follows_postgres_on_empty_matches() {
        let re = compile(r"\s*", "").unwrap();
        assert_eq!(
            split("hello world", &re),
            ["h", "e", "l", "l", "o", "w", "o", "r", "l", "d"]
        );
        let re = compile(",", "").unwrap();
        assert_eq!(split("a,,b,", &re), ["a", "", "b", ""]);
        assert_eq!(split("abc", &compile("x", "").unwrap()), ["abc"]);
        assert_eq!(split("aXbxc", &compile("x", "i").unwrap()), ["a", "b", "c"]);
        assert!(compile("x", "g").is_err());
        assert_eq!(parse_oids("{23,25}"), [23, 25]);
        assert_eq!(parse_oids("23 25"), [23, 25]);
        assert_eq!(parse_oids("[23, 25]"), [23, 25]);
        assert!(parse_oids("").is_empty());
    }
}
