//! String functions whose result size is known before they run — `repeat`,
//! `lpad`, `rpad` — refuse a value over 1 GB with 54000, as PostgreSQL
//! does ("requested length too large"), instead of allocating it: one
//! `SELECT repeat('x', 2000000000)` would otherwise take gigabytes outside
//! any memory pool. They wrap DataFusion's own implementations, which run
//! unchanged below the limit.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

use crate::error::SqlError;

/// The largest value a function may produce, in bytes (PostgreSQL's 1 GB).
pub const MAX_VALUE_BYTES: u64 = 1 << 30;

/// Which size rule a wrapped function follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    /// `repeat(s, n)`: `bytes(s) * n`.
    Repeat,
    /// `lpad/rpad(s, n [, fill])`: `n` characters, each up to 4 bytes unless
    /// every string involved is ASCII.
    Pad,
}

#[derive(Debug)]
struct Sized {
    inner: Arc<dyn ScalarUDFImpl>,
    rule: Rule,
}

impl PartialEq for Sized {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name() && self.rule == other.rule
    }
}
impl Eq for Sized {}
impl Hash for Sized {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
        self.rule.hash(state);
    }
}

fn as_array(v: &ColumnarValue, rows: usize) -> DfResult<ArrayRef> {
    v.clone().into_array(rows)
}

/// Byte lengths of a string array (any string type), as i64.
fn byte_lengths(a: &ArrayRef) -> DfResult<Vec<Option<i64>>> {
    let a = datafusion::arrow::compute::cast(a, &DataType::LargeUtf8)?;
    let s = a.as_string::<i64>();
    Ok((0..s.len())
        .map(|i| (!s.is_null(i)).then(|| s.value(i).len() as i64))
        .collect())
}

fn all_ascii(a: &ArrayRef) -> DfResult<bool> {
    let a = datafusion::arrow::compute::cast(a, &DataType::LargeUtf8)?;
    let s = a.as_string::<i64>();
    Ok((0..s.len()).all(|i| s.is_null(i) || s.value(i).is_ascii()))
}

fn counts(a: &ArrayRef) -> DfResult<Vec<Option<i64>>> {
    let a = datafusion::arrow::compute::cast(a, &DataType::Int64)?;
    let n = a.as_primitive::<Int64Type>();
    Ok((0..n.len())
        .map(|i| (!n.is_null(i)).then(|| n.value(i)))
        .collect())
}

impl Sized {
    /// The largest result any row would have, in bytes.
    fn largest_result(&self, args: &[ColumnarValue], rows: usize) -> DfResult<u64> {
        let rows = rows.max(1);
        if args.len() < 2 {
            return Ok(0);
        }
        let n = counts(&as_array(&args[1], rows)?)?;
        let largest = match self.rule {
            Rule::Repeat => {
                let len = byte_lengths(&as_array(&args[0], rows)?)?;
                len.iter()
                    .zip(&n)
                    .filter_map(|(l, n)| Some((l.as_ref()?.max(&0), n.as_ref()?.max(&0))))
                    .map(|(l, n)| (*l as u64).saturating_mul(*n as u64))
                    .max()
                    .unwrap_or(0)
            }
            Rule::Pad => {
                let mut ascii = all_ascii(&as_array(&args[0], rows)?)?;
                if let Some(fill) = args.get(2) {
                    ascii &= all_ascii(&as_array(fill, rows)?)?;
                }
                let per_char = if ascii { 1 } else { 4 };
                n.iter()
                    .filter_map(|n| *n)
                    .map(|n| (n.max(0) as u64).saturating_mul(per_char))
                    .max()
                    .unwrap_or(0)
            }
        };
        Ok(largest)
    }
}

impl ScalarUDFImpl for Sized {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let largest = self.largest_result(&args.args, args.number_rows)?;
        if largest > MAX_VALUE_BYTES {
            return Err(SqlError::ProgramLimit(format!(
                "{}(): requested length too large ({largest} bytes; a value is at most 1 GB)",
                self.inner.name()
            ))
            .into());
        }
        self.inner.invoke_with_args(args)
    }
}

/// Replaces `repeat`, `lpad` and `rpad` on `ctx` with their size-checked forms.
pub fn register(ctx: &SessionContext) {
    let state = ctx.state();
    for (name, rule) in [
        ("repeat", Rule::Repeat),
        ("lpad", Rule::Pad),
        ("rpad", Rule::Pad),
    ] {
        if let Some(f) = state.scalar_functions().get(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Sized {
                inner: f.inner().clone(),
                rule,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> Result<usize, String> {
        let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
        let rows = df.collect().await.map_err(|e| e.to_string())?;
        Ok(rows.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn oversize_results_are_refused_before_they_are_built() {
        let ctx = SessionContext::new();
        register(&ctx);
        assert_eq!(
            run(
                &ctx,
                "SELECT repeat('ab', 3), lpad('x', 4, '-'), rpad('y', 2)"
            )
            .await,
            Ok(1)
        );
        for sql in [
            "SELECT repeat('x', 2000000000)",
            "SELECT repeat(s, 600000000) FROM (VALUES ('ab'), ('c')) t(s)",
            "SELECT lpad('x', 1100000000)",
            "SELECT rpad('x', 300000000, '中')",
        ] {
            let err = run(&ctx, sql).await.expect_err(sql);
            assert!(err.contains("requested length too large"), "{sql}: {err}");
        }
        // 300 M ASCII characters is under the limit (not run: it is just allowed)
        let ok = Sized {
            inner: ctx.state().scalar_functions()["rpad"].inner().clone(),
            rule: Rule::Pad,
        };
        let args = [
            ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some("x".into()))),
            ColumnarValue::Scalar(datafusion::common::ScalarValue::Int64(Some(300_000_000))),
        ];
        assert_eq!(ok.largest_result(&args, 1).unwrap(), 300_000_000);
    }
}
