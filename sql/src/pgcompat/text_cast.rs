//! `expr::text` as PostgreSQL renders it: the value's output text in the
//! session time zone (`2025-06-01 18:00:00+08`, shortest floats `12`,
//! arrays `{1,2}`), and `true`/`false` for booleans — where an Arrow cast
//! would give `2025-06-01T10:00:00Z`, `12.0` and `[1, 2]`. Casts to text are
//! rewritten to the session's `text(expr)` function.

use std::ops::ControlFlow;
use std::sync::Arc;

use chrono_tz::Tz;
use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType as A;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{DataType, Expr, Statement, Value, VisitMut, VisitorMut};

/// The session's `text(x)`: PostgreSQL's text form of `x`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextCast {
    signature: Signature,
    tz: String,
}

impl ScalarUDFImpl for TextCast {
    fn name(&self) -> &str {
        "text"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[A]) -> DfResult<A> {
        Ok(A::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arg = args.args[0].clone().into_array(n)?;
        Ok(ColumnarValue::Array(to_text(&arg, &self.tz)?))
    }
}

/// The PostgreSQL text of every value of `a`.
fn to_text(a: &ArrayRef, tz_name: &str) -> DfResult<ArrayRef> {
    match a.data_type() {
        A::Null => return Ok(new_null_array(&A::Utf8, a.len())),
        A::Utf8 => return Ok(a.clone()),
        A::LargeUtf8 | A::Utf8View => {
            return Ok(datafusion::arrow::compute::cast(a, &A::Utf8)?);
        }
        A::Boolean => {
            let b = a.as_boolean();
            let mut out = StringBuilder::with_capacity(a.len(), a.len() * 5);
            for i in 0..a.len() {
                if b.is_null(i) {
                    out.append_null();
                } else {
                    out.append_value(if b.value(i) { "true" } else { "false" });
                }
            }
            return Ok(Arc::new(out.finish()));
        }
        t if !crate::model::pgtext::supports(t) => {
            return Ok(datafusion::arrow::compute::cast(a, &A::Utf8)?);
        }
        _ => {}
    }
    let tz: Tz = tz_name.parse().unwrap_or(Tz::UTC);
    let mut out = StringBuilder::with_capacity(a.len(), a.len() * 8);
    for i in 0..a.len() {
        match crate::model::pgtext::format_cell(a.as_ref(), i, &tz) {
            Some(s) => out.append_value(s),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Registers `text(x)` for a session in time zone `tz`.
pub fn register(ctx: &SessionContext, tz: &str) {
    ctx.register_udf(ScalarUDF::new_from_impl(TextCast {
        signature: Signature::any(1, Volatility::Stable),
        tz: tz.to_string(),
    }));
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Text
            | DataType::Varchar(None)
            | DataType::CharacterVarying(None)
            | DataType::String(None)
    )
}

/// Rewrites `expr::text` / `CAST(expr AS text)` to `text(expr)`, except
/// where the operand is already text-like as written (a string literal,
/// NULL) or a parameter (whose type the cast declares).
struct CastsToText;

impl VisitorMut for CastsToText {
    type Break = ();
    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::Cast {
            expr, data_type, ..
        } = e
        {
            if !is_text(data_type) {
                return ControlFlow::Continue(());
            }
            if let Expr::Value(v) = expr.as_ref() {
                if matches!(
                    v.value,
                    Value::SingleQuotedString(_)
                        | Value::EscapedStringLiteral(_)
                        | Value::Null
                        | Value::Placeholder(_)
                ) {
                    return ControlFlow::Continue(());
                }
            }
            let arg = std::mem::replace(expr.as_mut(), Expr::value(Value::Null));
            *e = crate::pgcompat::rewrite::call("text", arg);
        }
        ControlFlow::Continue(())
    }
}

/// Applies the rewrite to `stmt` in place.
pub fn rewrite(stmt: &mut Statement) {
    let _ = stmt.visit(&mut CastsToText);
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanArray, Float64Array, TimestampMicrosecondArray};

    fn texts(a: ArrayRef, tz: &str) -> Vec<Option<String>> {
        let t = to_text(&a, tz).unwrap();
        let s = t.as_string::<i32>();
        (0..s.len())
            .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
            .collect()
    }

    #[test]
    fn postgres_text_forms() {
        assert_eq!(
            texts(
                Arc::new(Float64Array::from(vec![Some(12.0), Some(0.1), None])),
                "UTC"
            ),
            vec![Some("12".into()), Some("0.1".into()), None]
        );
        assert_eq!(
            texts(Arc::new(BooleanArray::from(vec![true, false])), "UTC"),
            vec![Some("true".into()), Some("false".into())]
        );
        let ts = TimestampMicrosecondArray::from(vec![1_748_772_000_000_000]).with_timezone("UTC");
        assert_eq!(
            texts(Arc::new(ts), "Asia/Shanghai"),
            vec![Some("2025-06-01 18:00:00+08".into())]
        );
    }
}
