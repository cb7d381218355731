//! `cohort_funnel`, `cohort_retention`, `cohort_attribute`, `cohort_ltv`
//! (one contact's contribution) and their `_merge` aggregates (the
//! statement's rows): see the module docs of [`super`] for the two-level
//! plan. ATTRIBUTE and LTV take the VALUE column as their third argument.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
    ListArray, StructArray, UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType as A, Field, FieldRef, Fields};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

use super::codec;
use super::composable::{cond_bits, to_ms};
use super::spec::{self, Spec};
use crate::attribute::AttributeAcc;
use crate::funnel::FunnelAcc;
use crate::ltv::LtvAcc;
use crate::retention::RetentionAcc;
use crate::Event;

/// Which statement an aggregate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statement {
    /// FUNNEL: conditions are the steps.
    Funnel,
    /// RETENTION: conditions are INITIAL and RETURN.
    Retention,
    /// ATTRIBUTE: conditions are TARGET and the touches; VALUE on targets.
    Attribute,
    /// LTV (INITIAL EVENT, no GROUP BY): conditions are INITIAL and REVENUE;
    /// VALUE on revenue events.
    Ltv,
}

impl Statement {
    fn name(self) -> &'static str {
        match self {
            Statement::Funnel => "funnel",
            Statement::Retention => "retention",
            Statement::Attribute => "attribute",
            Statement::Ltv => "ltv",
        }
    }

    fn conds(self) -> (usize, usize) {
        match self {
            Statement::Funnel => (1, 31),
            Statement::Retention | Statement::Ltv => (2, 2),
            Statement::Attribute => (2, 32),
        }
    }

    /// The mask bits of the events whose VALUE the kernel reads (None: no
    /// VALUE argument).
    fn value_bits(self) -> Option<u32> {
        match self {
            Statement::Funnel | Statement::Retention => None,
            Statement::Attribute => Some(1),
            Statement::Ltv => Some(2),
        }
    }

    /// Index of the first condition argument.
    fn first_cond(self) -> usize {
        if self.value_bits().is_some() {
            3
        } else {
            2
        }
    }

    /// Fields of one result row of the `_merge` aggregate.
    pub fn row_fields(self) -> Fields {
        let f = |n: &str, t: A, null: bool| Field::new(n, t, null);
        match self {
            Statement::Funnel => Fields::from(vec![
                f("step", A::Int32, false),
                f("contacts", A::Int64, false),
                f("conversion_rate", A::Float64, true),
                f("overall_rate", A::Float64, true),
                f("median_seconds", A::Float64, true),
                f("avg_seconds", A::Float64, true),
            ]),
            Statement::Retention => Fields::from(vec![
                f("cohort", A::Date32, false),
                f("cohort_contacts", A::Int64, false),
                f("period", A::Int32, false),
                f("contacts", A::Int64, true),
                f("rate", A::Float64, true),
            ]),
            Statement::Attribute => Fields::from(vec![
                f("touch", A::Int32, true),
                f("clicks", A::Int64, true),
                f("effective_clicks", A::Int64, true),
                f("effective_rate", A::Float64, true),
                f("conversions", A::Float64, false),
                f("value", A::Float64, true),
                f("contribution", A::Float64, true),
            ]),
            Statement::Ltv => Fields::from(vec![
                f("cohort", A::Date32, true),
                f("initial_contacts", A::Int64, false),
                f("paying_contacts", A::Int64, false),
                f("period", A::Int32, false),
                f("revenue", A::Float64, true),
                f("arpu", A::Float64, true),
                f("arppu", A::Float64, true),
                f("new_payers", A::Int64, true),
            ]),
        }
    }

    fn check(self, spec: &Spec) -> DfResult<()> {
        match (self, spec) {
            (Statement::Funnel, Spec::Funnel(..))
            | (Statement::Retention, Spec::Retention(..))
            | (Statement::Attribute, Spec::Attribute(..))
            | (Statement::Ltv, Spec::Ltv(..)) => Ok(()),
            _ => plan_err!("cohort_{}: the spec is for another statement", self.name()),
        }
    }
}

/// The spec constant of an aggregate's first argument.
fn spec_arg(name: &str, args: &AccumulatorArgs) -> DfResult<Spec> {
    let Some(e) = args.exprs.first() else {
        return plan_err!("{name}: the first argument must be the spec (a JSON text constant)");
    };
    match e.downcast_ref::<Literal>().map(|l| l.value()) {
        Some(ScalarValue::Utf8(Some(s)))
        | Some(ScalarValue::LargeUtf8(Some(s)))
        | Some(ScalarValue::Utf8View(Some(s))) => spec::parse(s.as_str()),
        _ => plan_err!("{name}: the first argument must be the spec (a JSON text constant)"),
    }
}

/// `cohort_<statement>(spec, event_time, cond…)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ContactAggregate {
    statement: Statement,
    name: String,
    signature: Signature,
}

impl ContactAggregate {
    /// The per-contact aggregate of `statement`.
    pub fn new(statement: Statement) -> Self {
        ContactAggregate {
            statement,
            name: format!("cohort_{}", statement.name()),
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for ContactAggregate {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[A]) -> DfResult<A> {
        let (lo, hi) = self.statement.conds();
        let first = self.statement.first_cond();
        let n = args.len().saturating_sub(first);
        if args.len() < first || n < lo || n > hi {
            let shape = if first == 3 {
                "spec, event_time, value, cond…"
            } else {
                "spec, event_time, cond…"
            };
            return plan_err!(
                "{}({shape}) takes {lo} to {hi} conditions, got {n}",
                self.name
            );
        }
        if !matches!(args[1], A::Timestamp(_, _) | A::Int64) {
            return plan_err!(
                "{}: the second argument must be the event time, got {}",
                self.name,
                args[1]
            );
        }
        Ok(A::Binary)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let spec = spec_arg(&self.name, &args)?;
        self.statement.check(&spec)?;
        Ok(Box::new(ContactAcc {
            statement: self.statement,
            spec,
            rows: Vec::new(),
        }))
    }
    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }
    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        let spec = spec_arg(&self.name, &args)?;
        self.statement.check(&spec)?;
        Ok(Box::new(ContactGroups {
            statement: self.statement,
            spec,
            groups: Vec::new(),
            held: 0,
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let item = |t: A| Arc::new(Field::new_list_field(t, true));
        let mut fields = vec![
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
        ];
        if self.statement.value_bits().is_some() {
            fields.push(Arc::new(Field::new(
                format!("{}_value", args.name),
                A::List(item(A::Float64)),
                true,
            )));
        }
        Ok(fields)
    }
}

/// One contact's matching events (time, condition bits, VALUE), in
/// arrival order.
#[derive(Debug)]
struct ContactAcc {
    statement: Statement,
    spec: Spec,
    rows: Vec<(i64, u32, Option<f64>)>,
}

impl Accumulator for ContactAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.rows.extend(
            matching_rows(self.statement, values)?
                .into_iter()
                .map(|(_, ts, m, v)| (ts, m, v)),
        );
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Binary(contribution(&self.spec, &self.rows)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.rows.capacity() * 24
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        state_arrays(self.statement, std::slice::from_ref(&self.rows))?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        for i in 0..states[0].len() {
            append_state(states, i, &mut self.rows)?;
        }
        Ok(())
    }
}

/// One contact's contribution: its events (any order) through the
/// statement's kernel, encoded; None when it contributes nothing.
fn contribution(spec: &Spec, rows: &[(i64, u32, Option<f64>)]) -> Option<Vec<u8>> {
    let frame = spec.frame();
    // The scan's rules: nothing after AS OF, only the scanned local days.
    let mut events: Vec<Event> = rows
        .iter()
        .filter(|(ts, _, _)| *ts <= frame.as_of_ms)
        .filter_map(|&(ts, mask, value)| {
            let day = frame.day(ts);
            (day >= frame.scan.0 && day <= frame.scan.1).then_some(Event {
                ts,
                day,
                mask,
                value,
                key: 0,
            })
        })
        .collect();
    if events.is_empty() {
        return None;
    }
    // Time order; equal times in any order (no kernel result depends on it).
    events.sort_by(|a, b| {
        (a.ts, a.mask).cmp(&(b.ts, b.mask)).then(
            a.value
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&b.value.unwrap_or(f64::NEG_INFINITY)),
        )
    });
    match spec {
        Spec::Funnel(s, _) => {
            let mut acc = FunnelAcc::new(s.clone());
            acc.add_contact(&events, None);
            (!acc.groups.is_empty()).then(|| codec::encode_funnel(&acc))
        }
        Spec::Retention(s, _) => {
            let mut acc = RetentionAcc::new(s.clone());
            acc.add_contact(&events);
            (!acc.cohorts.is_empty()).then(|| codec::encode_retention(&acc))
        }
        Spec::Attribute(s, _) => {
            let mut acc = AttributeAcc::new(s.clone());
            acc.add_contact(&events);
            let any = acc.direct_conversions != 0.0
                || acc.direct_value != 0.0
                || acc
                    .touches
                    .iter()
                    .any(|t| t.clicks != 0 || t.effective_clicks != 0 || t.conversions != 0.0);
            any.then(|| codec::encode_attribute(&acc))
        }
        Spec::Ltv(s, _) => {
            let mut acc = LtvAcc::new(s.clone());
            acc.add_contact(&events, None, None);
            (!acc.cohorts.is_empty()).then(|| codec::encode_ltv(&acc))
        }
    }
}

/// The rows of `values` (an aggregate's arguments) that carry a matching
/// event, as (row, time, condition bits, VALUE).
fn matching_rows(
    statement: Statement,
    values: &[ArrayRef],
) -> DfResult<Vec<(usize, i64, u32, Option<f64>)>> {
    let n = values[1].len();
    let ts = to_ms(&values[1])?;
    let masks = cond_bits(values, statement.first_cond(), n)?;
    let value_bits = statement.value_bits();
    let value = match value_bits {
        Some(_) => Some(datafusion::arrow::compute::cast(&values[2], &A::Float64)?),
        None => None,
    };
    let value = value
        .as_ref()
        .and_then(|v| v.as_any().downcast_ref::<Float64Array>());
    let mut out = Vec::new();
    for (r, m) in masks.into_iter().enumerate() {
        if m != 0 && ts.is_valid(r) {
            // VALUE only where the kernel reads it (targets, revenue)
            let v = match (value, value_bits) {
                (Some(v), Some(bits)) if m & bits != 0 && v.is_valid(r) => Some(v.value(r)),
                _ => None,
            };
            out.push((r, ts.value(r), m, v));
        }
    }
    Ok(out)
}

/// Appends the state lists of row `i` of `states` to `rows`.
fn append_state(
    states: &[ArrayRef],
    i: usize,
    rows: &mut Vec<(i64, u32, Option<f64>)>,
) -> DfResult<()> {
    let (Some(ts), Some(ms)) = (
        states[0].as_any().downcast_ref::<ListArray>(),
        states[1].as_any().downcast_ref::<ListArray>(),
    ) else {
        return exec_err!("cohort aggregate: unexpected state types");
    };
    if ts.is_null(i) || ms.is_null(i) {
        return Ok(());
    }
    let values = match states.get(2) {
        Some(v) => match v.as_any().downcast_ref::<ListArray>() {
            Some(l) => Some(l),
            None => return exec_err!("cohort aggregate: unexpected state types"),
        },
        None => None,
    };
    let t = ts.value(i);
    let m = ms.value(i);
    let (Some(t), Some(m)) = (
        t.as_any().downcast_ref::<Int64Array>(),
        m.as_any().downcast_ref::<UInt32Array>(),
    ) else {
        return exec_err!("cohort aggregate: unexpected state types");
    };
    if t.len() != m.len() {
        return exec_err!("cohort aggregate: state lists differ in length");
    }
    match values {
        Some(vl) => {
            let v = vl.value(i);
            let Some(v) = v.as_any().downcast_ref::<Float64Array>() else {
                return exec_err!("cohort aggregate: unexpected state types");
            };
            if v.len() != t.len() {
                return exec_err!("cohort aggregate: state lists differ in length");
            }
            for j in 0..t.len() {
                rows.push((t.value(j), m.value(j), v.is_valid(j).then(|| v.value(j))));
            }
        }
        None => rows.extend(
            t.values()
                .iter()
                .zip(m.values().iter())
                .map(|(&t, &m)| (t, m, None)),
        ),
    }
    Ok(())
}

/// The state lists of `groups` (time, bits[, VALUE]), one list per group.
fn state_arrays(
    statement: Statement,
    groups: &[Vec<(i64, u32, Option<f64>)>],
) -> DfResult<Vec<ArrayRef>> {
    let offsets = OffsetBuffer::from_lengths(groups.iter().map(|g| g.len()));
    let item = |t: A| Arc::new(Field::new_list_field(t, true));
    let ts = Int64Array::from_iter_values(groups.iter().flatten().map(|r| r.0));
    let ms = UInt32Array::from_iter_values(groups.iter().flatten().map(|r| r.1));
    let mut out: Vec<ArrayRef> = vec![
        Arc::new(ListArray::try_new(
            item(A::Int64),
            offsets.clone(),
            Arc::new(ts),
            None,
        )?),
        Arc::new(ListArray::try_new(
            item(A::UInt32),
            offsets.clone(),
            Arc::new(ms),
            None,
        )?),
    ];
    if statement.value_bits().is_some() {
        let vs = Float64Array::from_iter(groups.iter().flatten().map(|r| r.2));
        out.push(Arc::new(ListArray::try_new(
            item(A::Float64),
            offsets,
            Arc::new(vs),
            None,
        )?));
    }
    Ok(out)
}

/// [`ContactAcc`] for many groups at once (one per contact of a `GROUP BY
/// contact_id`): what DataFusion's hash aggregation calls.
#[derive(Debug)]
struct ContactGroups {
    statement: Statement,
    spec: Spec,
    groups: Vec<Vec<(i64, u32, Option<f64>)>>,
    /// Events held, for `size`.
    held: usize,
}

impl GroupsAccumulator for ContactGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        for (r, ts, m, v) in matching_rows(self.statement, values)? {
            if opt_filter.is_some_and(|f| !(f.is_valid(r) && f.value(r))) {
                continue;
            }
            self.groups[group_indices[r]].push((ts, m, v));
            self.held += 1;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        let taken = emit_to.take_needed(&mut self.groups);
        self.held -= taken.iter().map(|g| g.len()).sum::<usize>();
        let out: BinaryArray = taken.iter().map(|g| contribution(&self.spec, g)).collect();
        Ok(Arc::new(out))
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        let taken = emit_to.take_needed(&mut self.groups);
        self.held -= taken.iter().map(|g| g.len()).sum::<usize>();
        state_arrays(self.statement, &taken)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        for (i, &g) in group_indices.iter().enumerate() {
            let before = self.groups[g].len();
            append_state(values, i, &mut self.groups[g])?;
            self.held += self.groups[g].len() - before;
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        // every input row its own group: a one-event list, or an empty one
        let mut groups: Vec<Vec<(i64, u32, Option<f64>)>> = vec![Vec::new(); values[1].len()];
        for (r, ts, m, v) in matching_rows(self.statement, values)? {
            if opt_filter.is_none_or(|f| f.is_valid(r) && f.value(r)) {
                groups[r].push((ts, m, v));
            }
        }
        state_arrays(self.statement, &groups)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.groups.capacity() * 24 + self.held * 24
    }
}

/// `cohort_<statement>_merge(spec, contribution)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MergeAggregate {
    statement: Statement,
    name: String,
    signature: Signature,
}

impl MergeAggregate {
    /// The merging aggregate of `statement`.
    pub fn new(statement: Statement) -> Self {
        MergeAggregate {
            statement,
            name: format!("cohort_{}_merge", statement.name()),
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for MergeAggregate {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[A]) -> DfResult<A> {
        if !matches!(
            args.get(1),
            Some(A::Binary | A::LargeBinary | A::BinaryView)
        ) {
            return plan_err!(
                "{}(spec, contribution): the contribution must be cohort_{}(…)'s BYTEA",
                self.name,
                self.statement.name()
            );
        }
        Ok(A::List(Arc::new(Field::new_list_field(
            A::Struct(self.statement.row_fields()),
            true,
        ))))
    }
    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let spec = spec_arg(&self.name, &args)?;
        self.statement.check(&spec)?;
        let acc = match &spec {
            Spec::Funnel(s, _) => Merged::Funnel(FunnelAcc::new(s.clone())),
            Spec::Retention(s, _) => Merged::Retention(RetentionAcc::new(s.clone())),
            Spec::Attribute(s, _) => Merged::Attribute(AttributeAcc::new(s.clone())),
            Spec::Ltv(s, _) => Merged::Ltv(LtvAcc::new(s.clone())),
        };
        Ok(Box::new(MergeAcc {
            statement: self.statement,
            acc,
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}_acc", args.name),
            A::Binary,
            true,
        ))])
    }
}

#[derive(Debug)]
enum Merged {
    Funnel(FunnelAcc),
    Retention(RetentionAcc),
    Attribute(AttributeAcc),
    Ltv(LtvAcc),
}

#[derive(Debug)]
struct MergeAcc {
    statement: Statement,
    acc: Merged,
}

impl MergeAcc {
    fn merge_bytes(&mut self, b: &[u8]) -> DfResult<()> {
        match &mut self.acc {
            Merged::Funnel(a) => {
                let mut other = FunnelAcc::new(a.spec().clone());
                other.groups = codec::decode_funnel(b)?;
                a.merge(other);
            }
            Merged::Retention(a) => {
                let mut other = RetentionAcc::new(a.spec().clone());
                other.cohorts = codec::decode_retention(b)?;
                a.merge(other);
            }
            Merged::Attribute(a) => {
                let st = codec::decode_attribute(b)?;
                if st.touches.len() != a.touches.len() {
                    return exec_err!("cohort_attribute_merge: a state of another statement");
                }
                let mut other = AttributeAcc::new(a.spec().clone());
                other.touches = st.touches;
                other.direct_conversions = st.direct_conversions;
                other.direct_value = st.direct_value;
                a.merge(other);
            }
            Merged::Ltv(a) => {
                let mut other = LtvAcc::new(a.spec().clone());
                other.cohorts = codec::decode_ltv(b)?;
                a.merge(other);
            }
        }
        Ok(())
    }

    fn merge_array(&mut self, a: &ArrayRef) -> DfResult<()> {
        let a = datafusion::arrow::compute::cast(a, &A::Binary)?;
        let Some(b) = a.as_any().downcast_ref::<BinaryArray>() else {
            return exec_err!("{}: contributions must be BYTEA", self.statement.name());
        };
        for v in b.iter().flatten() {
            self.merge_bytes(v)?;
        }
        Ok(())
    }
}

impl Accumulator for MergeAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.merge_array(&values[1])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.merge_array(&states[0])
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let bytes = match &self.acc {
            Merged::Funnel(a) => codec::encode_funnel(a),
            Merged::Retention(a) => codec::encode_retention(a),
            Merged::Attribute(a) => codec::encode_attribute(a),
            Merged::Ltv(a) => codec::encode_ltv(a),
        };
        Ok(vec![ScalarValue::Binary(Some(bytes))])
    }

    fn size(&self) -> usize {
        let inner = match &self.acc {
            Merged::Funnel(a) => a
                .groups
                .values()
                .map(|g| {
                    64 + g.reached.len() * 8
                        + g.seconds
                            .iter()
                            .map(|s| 24 + s.capacity() * 8)
                            .sum::<usize>()
                })
                .sum::<usize>(),
            Merged::Retention(a) => a.cohorts.values().map(|c| 48 + c.counts.len() * 8).sum(),
            Merged::Attribute(a) => a.touches.len() * 32,
            Merged::Ltv(a) => a
                .cohorts
                .values()
                .map(|c| 64 + c.revenue.len() * 8 + c.new_payers.len() * 8)
                .sum(),
        };
        std::mem::size_of_val(self) + inner
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let columns: Vec<ArrayRef> = match &self.acc {
            Merged::Funnel(a) => {
                let rows = a.rows(false);
                vec![
                    Arc::new(Int32Array::from_iter_values(
                        rows.iter().map(|r| r.step as i32),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|r| r.contacts as i64),
                    )),
                    Arc::new(Float64Array::from_iter(
                        rows.iter().map(|r| r.conversion_rate),
                    )),
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.overall_rate))),
                    Arc::new(Float64Array::from_iter(
                        rows.iter().map(|r| r.median_seconds),
                    )),
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.avg_seconds))),
                ]
            }
            Merged::Retention(a) => {
                let rows = a.rows();
                vec![
                    Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.cohort))),
                    Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|r| r.cohort_contacts as i64),
                    )),
                    Arc::new(Int32Array::from_iter_values(
                        rows.iter().map(|r| r.period as i32),
                    )),
                    Arc::new(Int64Array::from_iter(
                        rows.iter().map(|r| r.contacts.map(|c| c as i64)),
                    )),
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.rate))),
                ]
            }
            Merged::Attribute(a) => {
                let rows = a.rows();
                vec![
                    Arc::new(Int32Array::from_iter(
                        rows.iter().map(|r| r.touch.map(|t| t as i32 + 1)),
                    )),
                    Arc::new(Int64Array::from_iter(
                        rows.iter().map(|r| r.clicks.map(|c| c as i64)),
                    )),
                    Arc::new(Int64Array::from_iter(
                        rows.iter().map(|r| r.effective_clicks.map(|c| c as i64)),
                    )),
                    Arc::new(Float64Array::from_iter(
                        rows.iter().map(|r| r.effective_rate),
                    )),
                    Arc::new(Float64Array::from_iter_values(
                        rows.iter().map(|r| r.conversions),
                    )),
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.value))),
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.contribution))),
                ]
            }
            Merged::Ltv(a) => {
                let rows = a.rows();
                vec![
                    Arc::new(Date32Array::from_iter(rows.iter().map(|r| r.cohort))),
                    Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|r| r.initial_contacts as i64),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|r| r.paying_contacts as i64),
                    )),
                    Arc::new(Int32Array::from_iter_values(
                        rows.iter().map(|r| r.period as i32),
                    )),
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.revenue))),
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.arpu))),
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.arppu))),
                    Arc::new(Int64Array::from_iter(
                        rows.iter().map(|r| r.new_payers.map(|c| c as i64)),
                    )),
                ]
            }
        };
        let n = columns.first().map(|c| c.len()).unwrap_or(0);
        let rows = StructArray::try_new(self.statement.row_fields(), columns, None)?;
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(
                A::Struct(self.statement.row_fields()),
                true,
            )),
            OffsetBuffer::from_lengths([n]),
            Arc::new(rows),
            None,
        )?;
        Ok(ScalarValue::List(Arc::new(list)))
    }
}

/// The statement aggregates, ready to register.
pub fn aggregates() -> Vec<AggregateUDF> {
    [
        Statement::Funnel,
        Statement::Retention,
        Statement::Attribute,
        Statement::Ltv,
    ]
    .into_iter()
    .flat_map(|s| {
        [
            AggregateUDF::from(ContactAggregate::new(s)),
            AggregateUDF::from(MergeAggregate::new(s)),
        ]
    })
    .collect()
}
