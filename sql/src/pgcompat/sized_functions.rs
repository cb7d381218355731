//! Values over 1 GB are refused with 54000, as PostgreSQL does. String
//! functions whose result size is known before they run — `repeat`, `lpad`,
//! `rpad`, `concat`, `concat_ws` — check it first ("requested length too
//! large") instead of allocating it: one `SELECT repeat('x', 2000000000)`
//! would otherwise take gigabytes outside any memory pool. The aggregates
//! that build one value from many rows — `string_agg`, `array_agg` — stop
//! once their value passes 1 GB (their memory also counts against the
//! query's pool). All wrap DataFusion's own implementations, which run
//! unchanged below the limit.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Documentation, Expr,
    GroupsAccumulator, ReturnFieldArgs, ReversedUDAF, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
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
    /// `concat(a, b, …)`: the sum of the arguments' lengths.
    Concat,
    /// `concat_ws(sep, a, b, …)`: the arguments' lengths plus a separator
    /// between each two.
    ConcatWs,
}

#[derive(Debug)]
struct Sized {
    inner: Arc<dyn ScalarUDFImpl>,
    rule: Rule,
    /// The largest value allowed ([`MAX_VALUE_BYTES`]; smaller in tests).
    limit: u64,
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

/// Byte lengths of an array's values as text, as i64. Strings and binaries
/// are measured in place (no copy); other types through their text cast.
fn byte_lengths(a: &ArrayRef) -> DfResult<Vec<Option<i64>>> {
    let measured = match a.data_type() {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => datafusion::arrow::compute::kernels::length::length(a)?,
        _ => {
            let text = datafusion::arrow::compute::cast(a, &DataType::LargeUtf8)?;
            datafusion::arrow::compute::kernels::length::length(&text)?
        }
    };
    let measured = datafusion::arrow::compute::cast(&measured, &DataType::Int64)?;
    let n = measured.as_primitive::<Int64Type>();
    Ok((0..n.len())
        .map(|i| (!n.is_null(i)).then(|| n.value(i)))
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

/// Per-row values of `v` measured by `measure`: a scalar is measured once
/// (never expanded to `rows` copies).
fn per_row<T: Clone>(
    v: &ColumnarValue,
    rows: usize,
    measure: impl Fn(&ArrayRef) -> DfResult<Vec<T>>,
) -> DfResult<Vec<T>> {
    match v {
        ColumnarValue::Scalar(s) => {
            let one = measure(&s.to_array_of_size(1)?)?;
            Ok(vec![one[0].clone(); rows])
        }
        ColumnarValue::Array(a) => measure(a),
    }
}

impl Sized {
    /// The size of each row's result in bytes (an upper bound).
    fn result_sizes(&self, args: &[ColumnarValue], rows: usize) -> DfResult<Vec<u64>> {
        let rows = rows.max(1);
        if matches!(self.rule, Rule::Concat | Rule::ConcatWs) {
            return concat_sizes(self.rule, args, rows);
        }
        if args.len() < 2 {
            return Ok(vec![0; rows]);
        }
        let n = per_row(&args[1], rows, counts)?;
        Ok(match self.rule {
            Rule::Repeat => {
                let len = per_row(&args[0], rows, byte_lengths)?;
                len.iter()
                    .zip(&n)
                    .map(|(l, n)| match (l, n) {
                        (Some(l), Some(n)) => {
                            ((*l).max(0) as u64).saturating_mul((*n).max(0) as u64)
                        }
                        _ => 0,
                    })
                    .collect()
            }
            Rule::Concat | Rule::ConcatWs => vec![0; rows],
            Rule::Pad => {
                let ascii = |v: &ColumnarValue| -> DfResult<bool> {
                    Ok(match v {
                        ColumnarValue::Scalar(s) => all_ascii(&s.to_array_of_size(1)?)?,
                        ColumnarValue::Array(a) => all_ascii(a)?,
                    })
                };
                let mut all = ascii(&args[0])?;
                if let Some(fill) = args.get(2) {
                    all &= ascii(fill)?;
                }
                let per_char = if all { 1 } else { 4 };
                n.iter()
                    .map(|n| ((*n).unwrap_or(0).max(0) as u64).saturating_mul(per_char))
                    .collect()
            }
        })
    }

    /// The largest result any row would have, in bytes.
    #[cfg(test)]
    fn largest_result(&self, args: &[ColumnarValue], rows: usize) -> DfResult<u64> {
        Ok(self
            .result_sizes(args, rows)?
            .into_iter()
            .max()
            .unwrap_or(0))
    }
}

/// Refuses a call whose largest value passes `limit` (54000), or whose
/// results together would take the process past its memory budget (53200).
fn check_sizes(
    name: &str,
    sizes: &[u64],
    limit: u64,
) -> DfResult<Option<crate::runtime::memory_budget::Headroom>> {
    let largest = sizes.iter().copied().max().unwrap_or(0);
    if largest > limit {
        return Err(SqlError::ProgramLimit(format!(
            "{name}(): requested length too large ({largest} bytes; a value is at most 1 GB)"
        ))
        .into());
    }
    let total = sizes.iter().fold(0u64, |a, b| a.saturating_add(*b));
    // small results are not worth a look at the gauge
    if total > 16 << 20 {
        return crate::runtime::memory_budget::check_headroom(total as usize).map(Some);
    }
    Ok(None)
}

/// The size of each row's `concat`/`concat_ws` result in bytes (an upper
/// bound: a non-string argument counts as its text cast).
fn concat_sizes(rule: Rule, args: &[ColumnarValue], rows: usize) -> DfResult<Vec<u64>> {
    let mut total = vec![0u64; rows];
    let (sep, values) = match rule {
        Rule::ConcatWs if !args.is_empty() => (Some(&args[0]), &args[1..]),
        _ => (None, args),
    };
    for a in values {
        let lens = per_row(a, rows, byte_lengths)?;
        for (t, l) in total.iter_mut().zip(lens) {
            *t = t.saturating_add(l.unwrap_or(0).max(0) as u64);
        }
    }
    if let Some(sep) = sep {
        let gaps = values.len().saturating_sub(1) as u64;
        let lens = per_row(sep, rows, byte_lengths)?;
        for (t, l) in total.iter_mut().zip(lens) {
            *t = t.saturating_add((l.unwrap_or(0).max(0) as u64).saturating_mul(gaps));
        }
    }
    Ok(total)
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
        // `concat` folds literal arguments while simplifying, before any
        // invocation: check the folded value here
        if matches!(self.rule, Rule::Concat | Rule::ConcatWs) {
            let lens: Vec<u64> = args
                .iter()
                .map(|a| match a {
                    Expr::Literal(v, _) if !v.is_null() => v.to_string().len() as u64,
                    _ => 0,
                })
                .collect();
            let literal_bytes = match (self.rule, lens.split_first()) {
                (Rule::ConcatWs, Some((sep, values))) => values
                    .iter()
                    .sum::<u64>()
                    .saturating_add(sep.saturating_mul(values.len().saturating_sub(1) as u64)),
                _ => lens.iter().sum(),
            };
            if literal_bytes > self.limit {
                return Err(SqlError::ProgramLimit(format!(
                    "{}(): requested length too large ({literal_bytes} bytes; a value is at most 1 GB)",
                    self.inner.name()
                ))
                .into());
            }
        }
        self.inner.simplify(args, info)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let sizes = self.result_sizes(&args.args, args.number_rows)?;
        let _building = check_sizes(self.inner.name(), &sizes, self.limit)?;
        self.inner.invoke_with_args(args)
    }
}

/// An aggregate that builds one value from many rows, stopped with 54000
/// once the value passes 1 GB. The grouped form (one state per group, all
/// groups in one accumulator) runs unchanged: its memory is bounded by the
/// query's pool instead (53200).
#[derive(Debug)]
struct SizedAggregate {
    inner: Arc<dyn AggregateUDFImpl>,
    /// The largest value allowed ([`MAX_VALUE_BYTES`]; smaller in tests).
    limit: u64,
}

impl PartialEq for SizedAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name()
    }
}
impl Eq for SizedAggregate {}
impl Hash for SizedAggregate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
    }
}

impl AggregateUDFImpl for SizedAggregate {
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
    fn return_field(&self, arg_fields: &[FieldRef]) -> DfResult<FieldRef> {
        self.inner.return_field(arg_fields)
    }
    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }
    fn accumulator(&self, acc_args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(SizedAccumulator {
            inner: self.inner.accumulator(acc_args)?,
            name: self.inner.name().to_string(),
            limit: self.limit,
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }
    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }
    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
    }
    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> DfResult<Option<Arc<dyn AggregateUDFImpl>>> {
        Ok(self
            .inner
            .clone()
            .with_beneficial_ordering(beneficial_ordering)?
            .map(|inner| {
                Arc::new(SizedAggregate {
                    inner,
                    limit: self.limit,
                }) as Arc<dyn AggregateUDFImpl>
            }))
    }
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }
    fn reverse_expr(&self) -> ReversedUDAF {
        match self.inner.reverse_expr() {
            ReversedUDAF::Reversed(f) => {
                ReversedUDAF::Reversed(Arc::new(AggregateUDF::new_from_impl(SizedAggregate {
                    inner: f.inner().clone(),
                    limit: self.limit,
                })))
            }
            other => other,
        }
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn default_value(&self, data_type: &DataType) -> DfResult<ScalarValue> {
        self.inner.default_value(data_type)
    }
    fn supports_null_handling_clause(&self) -> bool {
        self.inner.supports_null_handling_clause()
    }
    fn supports_within_group_clause(&self) -> bool {
        self.inner.supports_within_group_clause()
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[derive(Debug)]
struct SizedAccumulator {
    inner: Box<dyn Accumulator>,
    name: String,
    limit: u64,
}

impl SizedAccumulator {
    /// Refuses a batch that would take the value past the limit before it
    /// is copied in (54000), or past the server budget (53200); holds the
    /// budget for the copy while it is made.
    fn admit(
        &self,
        values: &[ArrayRef],
    ) -> DfResult<Option<crate::runtime::memory_budget::Headroom>> {
        let incoming: u64 = values
            .iter()
            .map(|a| a.to_data().get_slice_memory_size().unwrap_or(0) as u64)
            .sum();
        let after = (self.inner.size() as u64).saturating_add(incoming);
        if after > self.limit {
            return Err(SqlError::ProgramLimit(format!(
                "{}(): the aggregated value would pass 1 GB ({after} bytes), the most one value may hold",
                self.name
            ))
            .into());
        }
        if incoming > 16 << 20 {
            return crate::runtime::memory_budget::check_headroom(incoming as usize).map(Some);
        }
        Ok(None)
    }

    fn check(&self) -> DfResult<()> {
        let size = self.inner.size() as u64;
        if size > self.limit {
            return Err(SqlError::ProgramLimit(format!(
                "{}(): the aggregated value passed 1 GB ({size} bytes), the most one value may hold",
                self.name
            ))
            .into());
        }
        Ok(())
    }
}

impl Accumulator for SizedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let _copying = self.admit(values)?;
        self.inner.update_batch(values)?;
        self.check()
    }
    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.inner.evaluate()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.inner.state()
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.inner.merge_batch(states)?;
        self.check()
    }
    fn retract_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.inner.retract_batch(values)
    }
    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}

/// `a || b` on text (PostgreSQL's `textcat`): NULL if either side is NULL,
/// otherwise both sides' text, refused with 54000 when the result would
/// pass the value limit. Planned for every `||` whose sides are not arrays
/// ([`TextConcatPlanner`]).
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextConcat {
    signature: Signature,
    limit: u64,
}

impl TextConcat {
    fn new(limit: u64) -> TextConcat {
        TextConcat {
            signature: Signature::any(2, datafusion::logical_expr::Volatility::Immutable),
            limit,
        }
    }
}

/// The text type of `t` after `||` (strings keep their width).
fn text_type(t: &DataType) -> DataType {
    match t {
        DataType::LargeUtf8 => DataType::LargeUtf8,
        _ => DataType::Utf8,
    }
}

impl ScalarUDFImpl for TextConcat {
    fn name(&self) -> &str {
        "textcat"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(
            if arg_types
                .iter()
                .any(|t| text_type(t) == DataType::LargeUtf8)
            {
                DataType::LargeUtf8
            } else {
                DataType::Utf8
            },
        )
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use datafusion::arrow::compute::kernels::concat_elements::concat_elements_dyn;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let out = args.return_field.data_type().clone();
        // measured before anything is expanded or copied
        let la = per_row(&args.args[0], rows, byte_lengths)?;
        let lb = per_row(&args.args[1], rows, byte_lengths)?;
        let sizes: Vec<u64> = la
            .iter()
            .zip(&lb)
            .map(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => (*x).max(0) as u64 + (*y).max(0) as u64,
                _ => 0,
            })
            .collect();
        let _building = check_sizes("textcat", &sizes, self.limit)?;
        let [a, b] = [&args.args[0], &args.args[1]].map(|v| {
            as_array(v, rows).and_then(|a| Ok(datafusion::arrow::compute::cast(&a, &out)?))
        });
        let (a, b) = (a?, b?);
        let joined = concat_elements_dyn(&a, &b)?;
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &joined, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(joined))
        }
    }
}

/// Plans `a || b` as [`TextConcat`] unless a side is an array (those stay
/// with DataFusion's array planner, consulted first).
#[derive(Debug)]
struct TextConcatPlanner {
    textcat: Arc<ScalarUDF>,
}

impl datafusion::logical_expr::planner::ExprPlanner for TextConcatPlanner {
    fn plan_binary_op(
        &self,
        expr: datafusion::logical_expr::planner::RawBinaryExpr,
        schema: &datafusion::common::DFSchema,
    ) -> DfResult<
        datafusion::logical_expr::planner::PlannerResult<
            datafusion::logical_expr::planner::RawBinaryExpr,
        >,
    > {
        use datafusion::logical_expr::planner::PlannerResult;
        use datafusion::logical_expr::ExprSchemable;
        use datafusion::sql::sqlparser::ast::BinaryOperator;
        if expr.op != BinaryOperator::StringConcat {
            return Ok(PlannerResult::Original(expr));
        }
        let is_list = |e: &Expr| {
            matches!(
                e.get_type(schema),
                Ok(DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..))
                    | Err(_)
            )
        };
        if is_list(&expr.left) || is_list(&expr.right) {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(
            self.textcat.call(vec![expr.left, expr.right]),
        ))
    }
}

/// Replaces `repeat`, `lpad`, `rpad`, `concat`, `concat_ws`, `string_agg`
/// and `array_agg` on `ctx` with their size-checked forms, and plans text
/// `||` as the size-checked `textcat`.
pub fn register(ctx: &SessionContext) {
    register_with_limit(ctx, MAX_VALUE_BYTES)
}

/// [`register`] with another value limit (tests use a small one).
fn register_with_limit(ctx: &SessionContext, limit: u64) {
    let state = ctx.state();
    for (name, rule) in [
        ("repeat", Rule::Repeat),
        ("lpad", Rule::Pad),
        ("rpad", Rule::Pad),
        ("concat", Rule::Concat),
        ("concat_ws", Rule::ConcatWs),
    ] {
        if let Some(f) = state.scalar_functions().get(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Sized {
                inner: f.inner().clone(),
                rule,
                limit,
            }));
        }
    }
    let textcat = Arc::new(ScalarUDF::new_from_impl(TextConcat::new(limit)));
    {
        use datafusion::execution::FunctionRegistry;
        let planner = Arc::new(TextConcatPlanner { textcat });
        if let Err(e) = ctx.state_ref().write().register_expr_planner(planner) {
            tracing::warn!("cannot register the || planner: {e}");
        }
    }
    for name in ["string_agg", "array_agg"] {
        if let Some(f) = state.aggregate_functions().get(name) {
            ctx.register_udaf(AggregateUDF::new_from_impl(SizedAggregate {
                inner: f.inner().clone(),
                limit,
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
        // the same rules with a 1 MB limit instead of 1 GB, to stay fast
        let small = SessionContext::new();
        register_with_limit(&small, 1 << 20);
        for sql in [
            "SELECT concat(repeat('x', 600000), repeat('y', 600000))",
            "SELECT concat(s, s) FROM (VALUES (repeat('x', 600000))) t(s)",
            "SELECT concat_ws(repeat(',', 400000), 'a', 'b', 'c', 'd')",
            "SELECT concat_ws(s, 'a', 'b', 'c', 'd') FROM (VALUES (repeat(',', 400000))) t(s)",
        ] {
            let err = run(&small, sql).await.expect_err(sql);
            assert!(err.contains("requested length too large"), "{sql}: {err}");
        }
        assert_eq!(
            run(&small, "SELECT concat(repeat('x', 400000), 'y', 1, NULL)").await,
            Ok(1)
        );
        for sql in [
            "SELECT repeat('x', 600000) || repeat('y', 600000)",
            "SELECT s || s FROM (VALUES (repeat('x', 600000))) t(s)",
        ] {
            let err = run(&small, sql).await.expect_err(sql);
            assert!(err.contains("requested length too large"), "{sql}: {err}");
        }
        // || keeps PostgreSQL's NULL rule and leaves arrays to array_concat
        let batches = small
            .sql("SELECT 'a' || NULL IS NULL, 'a' || 1 || 'b', 'x' || s, [1] || [2] FROM (VALUES ('y')) t(s)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(
            text.contains("| true ")
                && text.contains("a1b")
                && text.contains("xy")
                && text.contains("[1, 2]"),
            "{text}"
        );
        // string_agg / array_agg stop at the limit (the values here are 10 kB each)
        for sql in [
            "SELECT length(string_agg(repeat('x', 10000), '')) FROM generate_series(1, 200)",
            "SELECT cardinality(array_agg(repeat('x', 10000))) FROM generate_series(1, 200)",
            "SELECT length(string_agg(repeat('x', 10000), '' ORDER BY x)) FROM generate_series(1, 200) t(x)",
        ] {
            let err = run(&small, sql).await.expect_err(sql);
            assert!(err.contains("1 GB"), "{sql}: {err}");
        }
        assert_eq!(
            run(
                &small,
                "SELECT length(string_agg(repeat('x', 10000), '')) FROM generate_series(1, 50)"
            )
            .await,
            Ok(1)
        );
        assert_eq!(
            run(
                &ctx,
                "SELECT string_agg(x::text, ','), array_agg(x) FROM generate_series(1, 10) t(x)"
            )
            .await,
            Ok(1)
        );
        assert_eq!(
            run(&ctx, "SELECT x % 3, string_agg(x::text, ',' ORDER BY x DESC) FROM generate_series(1, 10) t(x) GROUP BY 1").await,
            Ok(3)
        );
        // 300 M ASCII characters is under the limit (not run: it is just allowed)
        let ok = Sized {
            inner: ctx.state().scalar_functions()["rpad"].inner().clone(),
            rule: Rule::Pad,
            limit: MAX_VALUE_BYTES,
        };
        let args = [
            ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some("x".into()))),
            ColumnarValue::Scalar(datafusion::common::ScalarValue::Int64(Some(300_000_000))),
        ];
        assert_eq!(ok.largest_result(&args, 1).unwrap(), 300_000_000);
    }
}
