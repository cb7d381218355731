//! The ClickHouse-compatible aggregates `window_funnel(window_seconds, ts,
//! cond1, …)` → INT and `retention(cond1, …)` → BOOLEAN[] as DataFusion
//! aggregate functions over any query (typically `event_view GROUP BY
//! contact_id`). The algorithms live in `crate::composable`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, ListArray, UInt32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType as A, Field, FieldRef, TimeUnit};
use datafusion::common::{plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// Most conditions either aggregate takes (one bit each).
const MAX_CONDS: usize = 32;

pub(crate) fn cond_bits(values: &[ArrayRef], first: usize, rows: usize) -> DfResult<Vec<u32>> {
    let mut masks = vec![0u32; rows];
    for (k, a) in values[first..].iter().enumerate() {
        let b = cast(a, &A::Boolean)?;
        let b = b
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("boolean after cast");
        for (r, m) in masks.iter_mut().enumerate() {
            if b.is_valid(r) && b.value(r) {
                *m |= 1 << k;
            }
        }
    }
    Ok(masks)
}

/// `window_funnel`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowFunnel {
    signature: Signature,
}

impl WindowFunnel {
    fn new() -> Self {
        WindowFunnel {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for WindowFunnel {
    fn name(&self) -> &str {
        "window_funnel"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[A]) -> DfResult<A> {
        if args.len() < 3 || args.len() - 2 > MAX_CONDS {
            return plan_err!(
                "window_funnel(window_seconds, timestamp, cond1, ..., condN) takes 1 to {MAX_CONDS} conditions"
            );
        }
        if !args[0].is_integer() {
            return plan_err!(
                "window_funnel: window_seconds must be an integer, got {}",
                args[0]
            );
        }
        if !matches!(
            args[1],
            A::Timestamp(_, _) | A::Date32 | A::Int64 | A::Int32
        ) {
            return plan_err!(
                "window_funnel: the second argument must be a timestamp, got {}",
                args[1]
            );
        }
        Ok(A::Int32)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(WindowFunnelAcc {
            window_ms: None,
            conds: args.exprs.len().saturating_sub(2),
            rows: Vec::new(),
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let item = |t: A| Arc::new(Field::new_list_field(t, true));
        Ok(vec![
            Arc::new(Field::new(format!("{}_window", args.name), A::Int64, true)),
            Arc::new(Field::new(
                format!("{}_ts", args.name),
                A::List(item(A::Int64)),
                true,
            )),
            Arc::new(Field::new(
                format!("{}_mask", args.name),
                A::List(item(A::UInt32)),
                true,
            )),
        ])
    }
}

#[derive(Debug)]
struct WindowFunnelAcc {
    window_ms: Option<i64>,
    conds: usize,
    rows: Vec<(i64, u32)>,
}

pub(crate) fn to_ms(a: &ArrayRef) -> DfResult<Int64Array> {
    let ms = match a.data_type() {
        A::Timestamp(_, tz) => cast(
            &cast(a, &A::Timestamp(TimeUnit::Millisecond, tz.clone()))?,
            &A::Int64,
        )?,
        A::Date32 => cast(
            &cast(a, &A::Timestamp(TimeUnit::Millisecond, None))?,
            &A::Int64,
        )?,
        // Integers are Unix seconds (as ClickHouse's DateTime).
        _ => {
            let s = cast(a, &A::Int64)?;
            let s = s.as_any().downcast_ref::<Int64Array>().expect("int64");
            return Ok(s.iter().map(|v| v.map(|x| x * 1000)).collect());
        }
    };
    Ok(ms
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("int64")
        .clone())
}

impl Accumulator for WindowFunnelAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let rows = values[1].len();
        if self.window_ms.is_none() {
            let w = cast(&values[0], &A::Int64)?;
            let w = w.as_any().downcast_ref::<Int64Array>().expect("int64");
            if let Some(v) = (0..w.len()).find(|i| w.is_valid(*i)).map(|i| w.value(i)) {
                self.window_ms = Some(v.saturating_mul(1000));
            }
        }
        let ts = to_ms(&values[1])?;
        let masks = cond_bits(values, 2, rows)?;
        for (r, m) in masks.into_iter().enumerate() {
            if m != 0 && ts.is_valid(r) {
                self.rows.push((ts.value(r), m));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let level = crate::composable::window_funnel(
            self.window_ms.unwrap_or(0),
            self.conds,
            &mut self.rows,
        );
        Ok(ScalarValue::Int32(Some(level as i32)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.rows.capacity() * 16
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let ts: Vec<ScalarValue> = self
            .rows
            .iter()
            .map(|r| ScalarValue::Int64(Some(r.0)))
            .collect();
        let ms: Vec<ScalarValue> = self
            .rows
            .iter()
            .map(|r| ScalarValue::UInt32(Some(r.1)))
            .collect();
        Ok(vec![
            ScalarValue::Int64(self.window_ms),
            ScalarValue::List(ScalarValue::new_list_nullable(&ts, &A::Int64)),
            ScalarValue::List(ScalarValue::new_list_nullable(&ms, &A::UInt32)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let w = states[0]
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64");
        let ts = states[1]
            .as_any()
            .downcast_ref::<ListArray>()
            .expect("list");
        let ms = states[2]
            .as_any()
            .downcast_ref::<ListArray>()
            .expect("list");
        for i in 0..w.len() {
            if self.window_ms.is_none() && w.is_valid(i) {
                self.window_ms = Some(w.value(i));
            }
            if ts.is_null(i) {
                continue;
            }
            let t = ts.value(i);
            let t = t.as_any().downcast_ref::<Int64Array>().expect("int64");
            let m = ms.value(i);
            let m = m.as_any().downcast_ref::<UInt32Array>().expect("uint32");
            for j in 0..t.len() {
                self.rows.push((t.value(j), m.value(j)));
            }
        }
        Ok(())
    }
}

/// `retention`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Retention {
    signature: Signature,
}

impl AggregateUDFImpl for Retention {
    fn name(&self) -> &str {
        "retention"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[A]) -> DfResult<A> {
        if args.is_empty() || args.len() > MAX_CONDS {
            return plan_err!("retention(cond1, ..., condN) takes 1 to {MAX_CONDS} conditions");
        }
        Ok(A::List(Arc::new(Field::new_list_field(A::Boolean, true))))
    }
    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(RetentionAcc {
            conds: args.exprs.len(),
            any: 0,
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}_mask", args.name),
            A::UInt32,
            true,
        ))])
    }
}

#[derive(Debug)]
struct RetentionAcc {
    conds: usize,
    any: u32,
}

impl Accumulator for RetentionAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let rows = values.first().map(|a| a.len()).unwrap_or(0);
        for m in cond_bits(values, 0, rows)? {
            self.any |= m;
        }
        Ok(())
    }
    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let flags = crate::composable::retention(self.conds, self.any);
        let vals: Vec<ScalarValue> = flags
            .into_iter()
            .map(|b| ScalarValue::Boolean(Some(b)))
            .collect();
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &vals,
            &A::Boolean,
        )))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::UInt32(Some(self.any))])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let m = states[0]
            .as_any()
            .downcast_ref::<UInt32Array>()
            .expect("uint32");
        for i in 0..m.len() {
            if m.is_valid(i) {
                self.any |= m.value(i);
            }
        }
        Ok(())
    }
}

/// The two aggregates, ready to register.
pub fn aggregates() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::from(WindowFunnel::new()),
        AggregateUDF::from(Retention {
            signature: Signature::variadic_any(Volatility::Immutable),
        }),
    ]
}
