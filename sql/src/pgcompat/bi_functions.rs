//! What BI tools' schema browsers (Metabase, Grafana, DBeaver, Superset) need
//! from the catalog beyond `pg_functions`: `format` (`%s`, `%I`, `%L`),
//! `parse_ident`, a `quote_ident` that quotes like PostgreSQL,
//! `pg_regclass` (a computed name's `::regclass`), the
//! session's real user in `session_user`/`current_user`/`user`, and a
//! `pg_database` that lists only the database clients can connect to.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ListBuilder, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType as A, Field};
use datafusion::catalog::TableProvider;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::ViewTable;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::error::{Result, SqlError};

/// A scalar function over argument arrays cast to text.
struct TextFn {
    name: &'static str,
    signature: Signature,
    ret: A,
    body: fn(&[StringArray], usize) -> DfResult<ArrayRef>,
}

impl std::fmt::Debug for TextFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextFn({})", self.name)
    }
}
impl PartialEq for TextFn {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}
impl Eq for TextFn {}
impl std::hash::Hash for TextFn {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

impl ScalarUDFImpl for TextFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[A]) -> DfResult<A> {
        Ok(self.ret.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let mut texts = Vec::with_capacity(args.args.len());
        for a in &args.args {
            let arr = a.to_array(rows)?;
            let arr = if matches!(arr.data_type(), A::Boolean) {
                // PostgreSQL prints booleans as t/f
                let b = arr
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::BooleanArray>()
                    .cloned()
                    .unwrap_or_else(|| vec![None::<bool>; 0].into());
                Arc::new(
                    b.iter()
                        .map(|v| v.map(|v| if v { "t" } else { "f" }))
                        .collect::<StringArray>(),
                ) as ArrayRef
            } else {
                cast(&arr, &A::Utf8)?
            };
            let s = arr
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .unwrap_or_else(|| StringArray::from(Vec::<Option<&str>>::new()));
            texts.push(s);
        }
        let out = (self.body)(&texts, rows)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

fn text_udf(
    name: &'static str,
    signature: Signature,
    ret: A,
    body: fn(&[StringArray], usize) -> DfResult<ArrayRef>,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(TextFn {
        name,
        signature,
        ret,
        body,
    })
}

/// Whether `s` can be written as an identifier without double quotes.
fn is_plain_ident(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !RESERVED.contains(&s)
}

/// PostgreSQL's reserved key words, which `quote_ident` always quotes.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "system_user",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// `quote_ident`: `s` as an SQL identifier, double-quoted when needed.
pub fn quote_ident(s: &str) -> String {
    if is_plain_ident(s) {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// `quote_literal`: `s` as an SQL string literal.
fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// PostgreSQL's `format(fmt, args...)` for one row: `%s` (NULL prints as
/// nothing), `%I` (identifier, NULL is an error), `%L` (literal, NULL prints
/// `NULL`), `%%`, with an optional position `n$`, the `-` flag and a width.
pub fn format_row(fmt: &str, args: &[Option<&str>]) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // position (n$), flags, width
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let mut position = None;
        if !digits.is_empty() && chars.peek() == Some(&'$') {
            chars.next();
            position = Some(digits.parse::<usize>().map_err(|e| e.to_string())?);
            digits.clear();
        }
        let mut left = false;
        while chars.peek() == Some(&'-') {
            left = true;
            chars.next();
        }
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let width: usize = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| "invalid width".to_string())?
        };
        let kind = chars
            .next()
            .ok_or_else(|| "unterminated format() type specifier".to_string())?;
        let idx = match position {
            Some(0) => {
                return Err("format specifies argument 0, but arguments are numbered from 1".into())
            }
            Some(p) => p - 1,
            None => next_arg,
        };
        next_arg = idx + 1;
        let arg = *args
            .get(idx)
            .ok_or_else(|| "too few arguments for format()".to_string())?;
        let piece = match kind {
            's' => arg.unwrap_or("").to_string(),
            'I' => match arg {
                Some(a) => quote_ident(a),
                None => return Err("null values cannot be formatted as an SQL identifier".into()),
            },
            'L' => arg.map(quote_literal).unwrap_or_else(|| "NULL".into()),
            other => return Err(format!("unrecognized format() type specifier \"{other}\"")),
        };
        let pad = width.saturating_sub(piece.chars().count());
        if left {
            out.push_str(&piece);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&piece);
        }
    }
    Ok(out)
}

/// `parse_ident`: the parts of a qualified identifier (`a."B c".d`),
/// unquoted parts lower-cased.
pub fn parse_ident(s: &str) -> std::result::Result<Vec<String>, String> {
    let err = || format!("string is not a valid identifier: \"{s}\"");
    let mut parts = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(err()),
                }
            }
            if part.is_empty() {
                return Err(err());
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return Err(err());
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(_) => return Err(err()),
        }
    }
}

fn format_body(a: &[StringArray], rows: usize) -> DfResult<ArrayRef> {
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        if a[0].is_null(r) {
            out.push(None);
            continue;
        }
        let args: Vec<Option<&str>> = a[1..]
            .iter()
            .map(|c| (!c.is_null(r)).then(|| c.value(r)))
            .collect();
        match format_row(a[0].value(r), &args) {
            Ok(s) => out.push(Some(s)),
            Err(e) => return Err(SqlError::InvalidValue(e).into()),
        }
    }
    Ok(Arc::new(StringArray::from(out)))
}

fn parse_ident_body(a: &[StringArray], rows: usize) -> DfResult<ArrayRef> {
    let mut b = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        "item",
        A::Utf8,
        true,
    )));
    for r in 0..rows {
        if a[0].is_null(r) {
            b.append_null();
            continue;
        }
        match parse_ident(a[0].value(r)) {
            Ok(parts) => {
                for p in parts {
                    b.values().append_value(p);
                }
                b.append(true);
            }
            Err(e) => return Err(SqlError::InvalidValue(e).into()),
        }
    }
    Ok(Arc::new(b.finish()))
}

fn quote_ident_body(a: &[StringArray], _rows: usize) -> DfResult<ArrayRef> {
    Ok(Arc::new(
        a[0].iter()
            .map(|v| v.map(quote_ident))
            .collect::<StringArray>(),
    ))
}

/// Registers the engine-wide functions on `ctx` (after `datafusion-pg-catalog`'s,
/// whose `quote_ident` this one replaces).
pub fn register(ctx: &SessionContext) {
    use Volatility::*;
    ctx.register_udf(text_udf(
        "format",
        Signature::variadic_any(Immutable),
        A::Utf8,
        format_body,
    ));
    ctx.register_udf(text_udf(
        "parse_ident",
        Signature::one_of(
            vec![
                datafusion::logical_expr::TypeSignature::Any(1),
                datafusion::logical_expr::TypeSignature::Any(2),
            ],
            Immutable,
        ),
        A::List(Arc::new(Field::new("item", A::Utf8, true))),
        parse_ident_body,
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(RegClass {
        base: ctx.clone(),
        signature: Signature::any(1, Stable),
    }));
    ctx.register_udf(text_udf(
        "quote_ident",
        Signature::any(1, Immutable),
        A::Utf8,
        quote_ident_body,
    ));
}

/// `text::regclass` for a computed name (Metabase's
/// `format('%I.%I', schema, table)::regclass::oid`): the OID of relation
/// `[schema.]name` in `pg_class`; a literal `'name'::regclass`
/// is resolved by `datafusion-pg-catalog` already.
struct RegClass {
    /// The engine's base context, which reads `pg_class` (the same provider,
    /// and so the same OIDs, as every session's).
    base: SessionContext,
    signature: Signature,
}

impl std::fmt::Debug for RegClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegClass")
    }
}
impl PartialEq for RegClass {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for RegClass {}
impl std::hash::Hash for RegClass {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        "pg_regclass".hash(h)
    }
}

/// `(schema, relation) -> oid` of every relation in `pg_class`.
fn relation_oids(base: &SessionContext) -> DfResult<HashMap<(String, String), i64>> {
    const SQL: &str = "SELECT n.nspname, c.relname, CAST(c.oid AS BIGINT) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid";
    let base = base.clone();
    // a thread of its own: this runs inside a query's execution
    let batches = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        rt.block_on(async move { base.sql(SQL).await?.collect().await })
    })
    .join()
    .map_err(|_| {
        datafusion::error::DataFusionError::Execution("pg_class lookup panicked".into())
    })??;
    let mut out = HashMap::new();
    for b in batches {
        let ns = cast(b.column(0), &A::Utf8)?;
        let rel = cast(b.column(1), &A::Utf8)?;
        let oid = cast(b.column(2), &A::Int64)?;
        let ns = ns.as_any().downcast_ref::<StringArray>().cloned();
        let rel = rel.as_any().downcast_ref::<StringArray>().cloned();
        let oid = oid
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .cloned();
        let (Some(ns), Some(rel), Some(oid)) = (ns, rel, oid) else {
            continue;
        };
        for r in 0..b.num_rows() {
            if !ns.is_null(r) && !rel.is_null(r) && !oid.is_null(r) {
                out.insert(
                    (ns.value(r).to_string(), rel.value(r).to_string()),
                    oid.value(r),
                );
            }
        }
    }
    Ok(out)
}

impl ScalarUDFImpl for RegClass {
    fn name(&self) -> &str {
        "pg_regclass"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[A]) -> DfResult<A> {
        Ok(A::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let rows = if scalar { 1 } else { args.number_rows };
        let names = cast(&args.args[0].to_array(rows)?, &A::Utf8)?;
        let names = names
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .unwrap_or_else(|| StringArray::from(Vec::<Option<&str>>::new()));
        let oids = if names.null_count() == names.len() {
            HashMap::new()
        } else {
            relation_oids(&self.base)?
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names.iter() {
            let Some(name) = name else {
                out.push(None);
                continue;
            };
            let parts = parse_ident(name).map_err(SqlError::InvalidName)?;
            let key = match parts.as_slice() {
                [rel] => ("public".to_string(), rel.clone()),
                [ns, rel] => (ns.clone(), rel.clone()),
                _ => {
                    return Err(SqlError::InvalidName(format!(
                        "improper relation name (too many dotted names): {name}"
                    ))
                    .into())
                }
            };
            match oids.get(&key) {
                Some(o) => out.push(Some(*o as i32)),
                None => {
                    return Err(SqlError::UndefinedTable(format!(
                        "relation \"{name}\" does not exist"
                    ))
                    .into())
                }
            }
        }
        let arr: ArrayRef = Arc::new(datafusion::arrow::array::Int32Array::from(out));
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&arr, 0)?))
        } else {
            Ok(ColumnarValue::Array(arr))
        }
    }
}

/// `session_user` (and so `current_user` and `user`, which name it) of a
/// session logged in as `user`.
pub fn register_user(ctx: &SessionContext, user: &str) {
    #[derive(Debug, PartialEq, Eq, Hash)]
    struct SessionUser {
        user: String,
        signature: Signature,
    }
    impl ScalarUDFImpl for SessionUser {
        fn name(&self) -> &str {
            "session_user"
        }
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn return_type(&self, _: &[A]) -> DfResult<A> {
            Ok(A::Utf8)
        }
        fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                self.user.clone(),
            ))))
        }
    }
    ctx.register_udf(ScalarUDF::new_from_impl(SessionUser {
        user: user.to_string(),
        signature: Signature::nullary(Volatility::Stable),
    }));
}

/// `catalog`'s `pg_catalog` (after `pg_catalog_ext::install`): `pg_database`
/// lists only `catalog` (`datafusion-pg-catalog` adds a `postgres` database,
/// which cannot be connected to; Superset and DBeaver offer every row).
pub async fn install(ctx: &SessionContext, catalog: &str) -> Result<()> {
    let cat = ctx
        .catalog(catalog)
        .ok_or_else(|| SqlError::UndefinedObject(format!("catalog {catalog} missing")))?;
    let inner = cat
        .schema("pg_catalog")
        .ok_or_else(|| SqlError::UndefinedObject("pg_catalog missing".into()))?;
    let mut overrides: HashMap<&'static str, Arc<dyn TableProvider>> = HashMap::new();
    if inner.table("pg_database").await?.is_some() {
        let sql = format!(
            "SELECT * FROM pg_catalog.pg_database WHERE datname = '{}'",
            catalog.replace('\'', "''")
        );
        match ctx.state().create_logical_plan(&sql).await {
            Ok(plan) => {
                overrides.insert(
                    "pg_database",
                    Arc::new(ViewTable::new(plan, Some(sql))) as Arc<dyn TableProvider>,
                );
            }
            Err(e) => tracing::warn!("pg_catalog.pg_database keeps its base rows: {e}"),
        }
    }
    if !overrides.is_empty() {
        cat.register_schema(
            "pg_catalog",
            Arc::new(crate::pgcompat::pg_catalog_ext::PgCatalogExt::new(
                inner, overrides,
            )),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_postgres() {
        let f = |fmt: &str, args: &[Option<&str>]| format_row(fmt, args).unwrap();
        assert_eq!(f("%s", &[Some("int8")]), "int8");
        assert_eq!(f("\"%s\".\"%s\"", &[Some("a"), Some("b")]), "\"a\".\"b\"");
        assert_eq!(
            f("%I.%I", &[Some("public"), Some("My Table")]),
            "public.\"My Table\""
        );
        assert_eq!(f("%L, %L", &[Some("it's"), None]), "'it''s', NULL");
        assert_eq!(f("%s|%s", &[None, Some("x")]), "|x");
        assert_eq!(f("%2$s %1$s %%", &[Some("a"), Some("b")]), "b a %");
        assert_eq!(f("[%-4s][%4s]", &[Some("ab"), Some("cd")]), "[ab  ][  cd]");
        assert!(format_row("%I", &[None]).is_err());
        assert!(format_row("%s %s", &[Some("a")]).is_err());
    }

    #[test]
    fn parses_and_quotes_identifiers() {
        assert_eq!(parse_ident("public.games").unwrap(), ["public", "games"]);
        assert_eq!(
            parse_ident("Public.\"My \"\"T\"\"\"").unwrap(),
            ["public", "My \"T\""]
        );
        assert_eq!(parse_ident("contacts").unwrap(), ["contacts"]);
        assert!(parse_ident("a..b").is_err());
        assert_eq!(quote_ident("contacts"), "contacts");
        assert_eq!(quote_ident("Ab"), "\"Ab\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
