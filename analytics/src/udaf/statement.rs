//! `cohort_funnel`, `cohort_retention`, `cohort_attribute`, `cohort_ltv`,
//! `cohort_paths` (one contact's contribution) and their `_merge`
//! aggregates (the statement's rows): see the module docs of [`super`] for
//! the two-level plan and the argument layout.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
    ListArray, StringArray, StructArray, UInt32Array,
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
use super::keys;
use super::spec::{self, Spec};
use crate::attribute::AttributeAcc;
use crate::funnel::FunnelAcc;
use crate::ltv::LtvAcc;
use crate::paths::PathsAcc;
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
    /// LTV: conditions are INITIAL and REVENUE; VALUE on revenue events;
    /// an optional initial-time argument (INITIAL ATTRIBUTE).
    Ltv,
    /// PATHS: conditions are EVENTS, START AT and END AT; the key is the
    /// node (event code[, BY value]).
    Paths,
}

impl Statement {
    fn name(self) -> &'static str {
        match self {
            Statement::Funnel => "funnel",
            Statement::Retention => "retention",
            Statement::Attribute => "attribute",
            Statement::Ltv => "ltv",
            Statement::Paths => "paths",
        }
    }

    fn conds(self) -> (usize, usize) {
        match self {
            Statement::Funnel => (1, 31),
            Statement::Retention | Statement::Ltv => (2, 2),
            Statement::Attribute => (2, 32),
            Statement::Paths => (3, 3),
        }
    }

    /// The mask bits of the events whose VALUE the kernel reads (None: no
    /// VALUE argument).
    fn value_bits(self) -> Option<u32> {
        match self {
            Statement::Funnel | Statement::Retention | Statement::Paths => None,
            Statement::Attribute => Some(1),
            Statement::Ltv => Some(2),
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
            Statement::Paths => Fields::from(vec![
                f("level", A::Int32, false),
                f("node", A::Utf8, false),
                f("next_node", A::Utf8, true),
                f("sessions", A::Int64, false),
            ]),
        }
    }

    fn check(self, spec: &Spec) -> DfResult<()> {
        match (self, spec) {
            (Statement::Funnel, Spec::Funnel(..))
            | (Statement::Retention, Spec::Retention(..))
            | (Statement::Attribute, Spec::Attribute(..))
            | (Statement::Ltv, Spec::Ltv(..))
            | (Statement::Paths, Spec::Paths(..)) => Ok(()),
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

/// Where the arguments of a per-contact aggregate are:
/// `(spec, event_time, [value], [key STRUCT], [initial time], cond…)`.
#[derive(Debug, Clone)]
struct Layout {
    /// VALUE (ATTRIBUTE, LTV).
    value: Option<usize>,
    /// The key `STRUCT` and its fields (FUNNEL BY, LTV GROUP BY, PATHS).
    key: Option<(usize, Fields)>,
    /// The initial time (LTV INITIAL ATTRIBUTE): not a boolean.
    initial: Option<usize>,
    /// First condition.
    first_cond: usize,
}

impl Layout {
    fn of(statement: Statement, name: &str, types: &[A]) -> DfResult<Layout> {
        let mut i = 2;
        let value = statement.value_bits().map(|_| {
            i += 1;
            i - 1
        });
        let key = match types.get(i) {
            // keys group FUNNEL, LTV and PATHS rows only
            Some(A::Struct(fields))
                if matches!(
                    statement,
                    Statement::Funnel | Statement::Ltv | Statement::Paths
                ) =>
            {
                keys::check_fields(fields, name)?;
                i += 1;
                Some((i - 1, fields.clone()))
            }
            _ => None,
        };
        let initial = match types.get(i) {
            Some(t) if statement == Statement::Ltv && t != &A::Boolean && t != &A::Null => {
                if !matches!(t, A::Timestamp(_, _) | A::Date32) {
                    return plan_err!(
                        "{name}: the initial time must be a TIMESTAMP or DATE, got {t}"
                    );
                }
                i += 1;
                Some(i - 1)
            }
            _ => None,
        };
        let (lo, hi) = statement.conds();
        let n = types.len().saturating_sub(i);
        if types.len() < i || n < lo || n > hi {
            let shape = match statement {
                Statement::Funnel => "spec, event_time, [key STRUCT,] step…",
                Statement::Retention => "spec, event_time, initial, return",
                Statement::Attribute => "spec, event_time, value, target, touch…",
                Statement::Ltv => {
                    "spec, event_time, value, [key STRUCT,] [initial_time,] initial, revenue"
                }
                Statement::Paths => "spec, event_time, key STRUCT, events, start_at, end_at",
            };
            return plan_err!("{name}({shape}) takes {lo} to {hi} conditions, got {n}");
        }
        if statement == Statement::Paths && key.is_none() {
            return plan_err!("{name}: the third argument must be the node STRUCT(event[, by])");
        }
        if !matches!(types[1], A::Timestamp(_, _) | A::Int64 | A::Null) {
            return plan_err!(
                "{name}: the second argument must be the event time, got {}",
                types[1]
            );
        }
        Ok(Layout {
            value,
            key,
            initial,
            first_cond: i,
        })
    }

    fn of_fields(statement: Statement, name: &str, fields: &[FieldRef]) -> DfResult<Layout> {
        let types: Vec<A> = fields.iter().map(|f| f.data_type().clone()).collect();
        Layout::of(statement, name, &types)
    }
}

/// `cohort_<statement>(spec, event_time, [value,] [key,] [initial,] cond…)`.
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

    fn kernel(&self, args: &AccumulatorArgs) -> DfResult<Kernel> {
        let spec = spec_arg(&self.name, args)?;
        self.statement.check(&spec)?;
        let layout = Layout::of_fields(self.statement, &self.name, args.expr_fields)?;
        Ok(Kernel {
            statement: self.statement,
            spec,
            layout,
        })
    }
}

/// The contribution's type: BINARY, or with a key `STRUCT(state BINARY,
/// key STRUCT)` whose `key` is always NULL and carries the key's types to
/// the `_merge` aggregate.
fn contribution_type(layout: &Layout) -> A {
    match &layout.key {
        None => A::Binary,
        Some((_, fields)) => A::Struct(Fields::from(vec![
            Field::new("state", A::Binary, true),
            Field::new("key", A::Struct(fields.clone()), true),
        ])),
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
        Ok(contribution_type(&Layout::of(
            self.statement,
            &self.name,
            args,
        )?))
    }
    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(ContactAcc {
            kernel: self.kernel(&args)?,
            group: Group::default(),
        }))
    }
    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }
    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(ContactGroups {
            kernel: self.kernel(&args)?,
            groups: Vec::new(),
            held: 0,
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let layout = Layout::of_fields(self.statement, &self.name, args.input_fields)?;
        let item = |t: A| Arc::new(Field::new_list_field(t, true));
        let list = |n: &str, t: A| {
            Arc::new(Field::new(
                format!("{}_{n}", args.name),
                A::List(item(t)),
                true,
            ))
        };
        let mut fields = vec![list("ts", A::Int64), list("mask", A::UInt32)];
        if layout.value.is_some() {
            fields.push(list("value", A::Float64));
        }
        if layout.key.is_some() {
            fields.push(list("key", A::UInt32));
            fields.push(list("keys", A::Binary));
        }
        if layout.initial.is_some() {
            fields.push(Arc::new(Field::new(
                format!("{}_initial", args.name),
                A::Int64,
                true,
            )));
        }
        Ok(fields)
    }
}

/// One contact's matching events as (time, condition bits, VALUE, index
/// into `keys`), in arrival order, its distinct encoded keys, and its
/// initial time (INITIAL ATTRIBUTE).
#[derive(Debug, Default, Clone)]
struct Group {
    rows: Vec<(i64, u32, Option<f64>, u32)>,
    keys: Vec<Vec<u8>>,
    initial: Option<i64>,
    /// Bytes of `keys`, for `size`.
    key_bytes: usize,
}

impl Group {
    /// The index of `key` in `keys`, adding it.
    fn key_index(&mut self, key: &[u8]) -> u32 {
        match self.keys.iter().rposition(|k| k == key) {
            Some(i) => i as u32,
            None => {
                self.key_bytes += key.len() + 24;
                self.keys.push(key.to_vec());
                self.keys.len() as u32 - 1
            }
        }
    }

    fn set_initial(&mut self, ts: i64) {
        self.initial = Some(self.initial.map_or(ts, |t| t.min(ts)));
    }

    fn bytes(&self) -> usize {
        self.rows.len() * 32 + self.key_bytes
    }
}

/// What every accumulator of one aggregate call shares.
#[derive(Debug)]
struct Kernel {
    statement: Statement,
    spec: Spec,
    layout: Layout,
}

/// One batch of arguments, decoded.
struct Input {
    ts: Int64Array,
    masks: Vec<u32>,
    value: Option<Float64Array>,
    key: Option<ArrayRef>,
    initial: Option<Int64Array>,
}

impl Kernel {
    fn input(&self, values: &[ArrayRef]) -> DfResult<Input> {
        let n = values[1].len();
        let value = match self.layout.value {
            Some(i) => {
                let v = datafusion::arrow::compute::cast(&values[i], &A::Float64)?;
                v.as_any().downcast_ref::<Float64Array>().cloned()
            }
            None => None,
        };
        Ok(Input {
            ts: to_ms(&values[1])?,
            masks: cond_bits(values, self.layout.first_cond, n)?,
            value,
            key: self.layout.key.as_ref().map(|(i, _)| values[*i].clone()),
            initial: match self.layout.initial {
                Some(i) => Some(to_ms(&values[i])?),
                None => None,
            },
        })
    }

    /// Adds row `r` of `input` to `group`.
    fn add_row(&self, input: &Input, r: usize, group: &mut Group) -> DfResult<()> {
        if let Some(init) = &input.initial {
            if init.is_valid(r) {
                group.set_initial(init.value(r));
                // INITIAL ATTRIBUTE groups by contact columns: keep the
                // contact's key even when it has no events
                if let (Some(key), true) = (&input.key, group.keys.is_empty()) {
                    group.key_index(&keys::encode_row(key, r)?);
                }
            }
        }
        let m = input.masks[r];
        if m == 0 || !input.ts.is_valid(r) {
            return Ok(());
        }
        // VALUE only where the kernel reads it (targets, revenue)
        let v = match (&input.value, self.statement.value_bits()) {
            (Some(v), Some(bits)) if m & bits != 0 && v.is_valid(r) => Some(v.value(r)),
            _ => None,
        };
        let k = match &input.key {
            Some(key) => group.key_index(&keys::encode_row(key, r)?),
            None => 0,
        };
        group.rows.push((input.ts.value(r), m, v, k));
        Ok(())
    }

    /// The contact's contribution: its events (any order) through the
    /// statement's kernel, encoded; None when it contributes nothing.
    fn contribution(&self, group: &Group) -> DfResult<Option<Vec<u8>>> {
        let frame = self.spec.frame();
        // Keys ranked in value order: the kernels' "smallest key" is the
        // smallest value, as on the server.
        let mut table: Vec<Vec<u8>> = Vec::new();
        let mut rank = vec![0u32; group.keys.len()];
        if let Some((_, fields)) = &self.layout.key {
            let decoded = group
                .keys
                .iter()
                .map(|k| keys::decode(k, fields))
                .collect::<DfResult<Vec<_>>>()?;
            let mut order: Vec<usize> = (0..group.keys.len()).collect();
            order.sort_by(|a, b| keys::compare_tuples(&decoded[*a], &decoded[*b]));
            for (pos, i) in order.into_iter().enumerate() {
                rank[i] = pos as u32 + 1;
                table.push(group.keys[i].clone());
            }
        }
        // The scan's rules: nothing after AS OF, only the scanned local days.
        let mut events: Vec<Event> = group
            .rows
            .iter()
            .filter(|r| r.0 <= frame.as_of_ms)
            .filter_map(|&(ts, mask, value, k)| {
                let day = frame.day(ts);
                (day >= frame.scan.0 && day <= frame.scan.1).then(|| Event {
                    ts,
                    day,
                    mask,
                    value,
                    key: rank.get(k as usize).copied().unwrap_or(0),
                })
            })
            .collect();
        let initial_mode = self.layout.initial.is_some();
        if events.is_empty() && !(initial_mode && group.initial.is_some()) {
            return Ok(None);
        }
        // Time order; equal times in any order (no kernel result depends on it).
        events.sort_by(|a, b| {
            (a.ts, a.mask, a.key).cmp(&(b.ts, b.mask, b.key)).then(
                a.value
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&b.value.unwrap_or(f64::NEG_INFINITY)),
            )
        });
        Ok(match &self.spec {
            Spec::Funnel(s, _) => {
                let mut acc = FunnelAcc::new(s.clone());
                acc.add_contact(&events, None);
                (!acc.groups.is_empty()).then(|| codec::encode_funnel(&acc, &table))
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
                if initial_mode {
                    // Contacts without the attribute are skipped, as on the server.
                    let Some(ts) = group.initial else {
                        return Ok(None);
                    };
                    // the contact's key (GROUP BY contact columns: one per contact)
                    let key = (!table.is_empty()).then_some(1);
                    acc.add_contact(&events, Some((ts, frame.day(ts))), key);
                } else {
                    acc.add_contact(&events, None, None);
                }
                (!acc.cohorts.is_empty()).then(|| codec::encode_ltv(&acc, &table))
            }
            Spec::Paths(s, _) => {
                let mut acc = PathsAcc::new(s.clone());
                acc.add_contact(&events);
                (!acc.links.is_empty()).then(|| codec::encode_paths(&acc, &table))
            }
        })
    }

    /// The state lists of `groups`, one list per group.
    fn state_arrays(&self, groups: &[Group]) -> DfResult<Vec<ArrayRef>> {
        let offsets = OffsetBuffer::from_lengths(groups.iter().map(|g| g.rows.len()));
        let item = |t: A| Arc::new(Field::new_list_field(t, true));
        let rows = || groups.iter().flat_map(|g| g.rows.iter());
        let mut out: Vec<ArrayRef> = vec![
            Arc::new(ListArray::try_new(
                item(A::Int64),
                offsets.clone(),
                Arc::new(Int64Array::from_iter_values(rows().map(|r| r.0))),
                None,
            )?),
            Arc::new(ListArray::try_new(
                item(A::UInt32),
                offsets.clone(),
                Arc::new(UInt32Array::from_iter_values(rows().map(|r| r.1))),
                None,
            )?),
        ];
        if self.layout.value.is_some() {
            out.push(Arc::new(ListArray::try_new(
                item(A::Float64),
                offsets.clone(),
                Arc::new(Float64Array::from_iter(rows().map(|r| r.2))),
                None,
            )?));
        }
        if self.layout.key.is_some() {
            out.push(Arc::new(ListArray::try_new(
                item(A::UInt32),
                offsets,
                Arc::new(UInt32Array::from_iter_values(rows().map(|r| r.3))),
                None,
            )?));
            let key_offsets = OffsetBuffer::from_lengths(groups.iter().map(|g| g.keys.len()));
            let table: BinaryArray = groups
                .iter()
                .flat_map(|g| g.keys.iter().map(|k| Some(k.as_slice())))
                .collect();
            out.push(Arc::new(ListArray::try_new(
                item(A::Binary),
                key_offsets,
                Arc::new(table),
                None,
            )?));
        }
        if self.layout.initial.is_some() {
            out.push(Arc::new(Int64Array::from_iter(
                groups.iter().map(|g| g.initial),
            )));
        }
        Ok(out)
    }

    /// Appends the state of row `i` of `states` to `group`.
    fn append_state(&self, states: &[ArrayRef], i: usize, group: &mut Group) -> DfResult<()> {
        let bad = || exec_err!("cohort aggregate: unexpected state types");
        let list = |j: usize| -> DfResult<Option<ArrayRef>> {
            match states
                .get(j)
                .and_then(|a| a.as_any().downcast_ref::<ListArray>())
            {
                Some(l) if l.is_null(i) => Ok(None),
                Some(l) => Ok(Some(l.value(i))),
                None => exec_err!("cohort aggregate: unexpected state types"),
            }
        };
        let mut next = 2;
        let (Some(t), Some(m)) = (list(0)?, list(1)?) else {
            return Ok(());
        };
        let (Some(t), Some(m)) = (
            t.as_any().downcast_ref::<Int64Array>(),
            m.as_any().downcast_ref::<UInt32Array>(),
        ) else {
            return bad();
        };
        let n = t.len();
        let values = match self.layout.value {
            Some(_) => {
                next += 1;
                match list(next - 1)? {
                    Some(v) => match v.as_any().downcast_ref::<Float64Array>() {
                        Some(v) => Some(v.clone()),
                        None => return bad(),
                    },
                    None => return bad(),
                }
            }
            None => None,
        };
        // key index of the state → index in `group.keys`
        let mut key_map: Option<(UInt32Array, Vec<u32>)> = None;
        if self.layout.key.is_some() {
            next += 2;
            let (Some(k), Some(table)) = (list(next - 2)?, list(next - 1)?) else {
                return bad();
            };
            let (Some(k), Some(table)) = (
                k.as_any().downcast_ref::<UInt32Array>(),
                table.as_any().downcast_ref::<BinaryArray>(),
            ) else {
                return bad();
            };
            let map: Vec<u32> = (0..table.len())
                .map(|j| group.key_index(table.value(j)))
                .collect();
            key_map = Some((k.clone(), map));
        }
        if self.layout.initial.is_some() {
            match states
                .get(next)
                .and_then(|a| a.as_any().downcast_ref::<Int64Array>())
            {
                Some(a) if a.is_valid(i) => group.set_initial(a.value(i)),
                Some(_) => {}
                None => return bad(),
            }
        }
        if m.len() != n
            || values.as_ref().is_some_and(|v| v.len() != n)
            || key_map.as_ref().is_some_and(|(k, _)| k.len() != n)
        {
            return exec_err!("cohort aggregate: state lists differ in length");
        }
        for j in 0..n {
            let v = values
                .as_ref()
                .and_then(|v| v.is_valid(j).then(|| v.value(j)));
            let k = match &key_map {
                Some((k, map)) => match map.get(k.value(j) as usize) {
                    Some(x) => *x,
                    None => return exec_err!("cohort aggregate: a key index out of range"),
                },
                None => 0,
            };
            group.rows.push((t.value(j), m.value(j), v, k));
        }
        Ok(())
    }
}

/// One contact's events, for a single group.
#[derive(Debug)]
struct ContactAcc {
    kernel: Kernel,
    group: Group,
}

impl Accumulator for ContactAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let input = self.kernel.input(values)?;
        for r in 0..input.masks.len() {
            self.kernel.add_row(&input, r, &mut self.group)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let c = self.kernel.contribution(&self.group)?;
        let arr = contribution_array(&self.kernel.layout, vec![c])?;
        ScalarValue::try_from_array(&arr, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.group.bytes()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.kernel
            .state_arrays(std::slice::from_ref(&self.group))?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        for i in 0..states[0].len() {
            self.kernel.append_state(states, i, &mut self.group)?;
        }
        Ok(())
    }
}

/// The contributions as the aggregate's return type.
fn contribution_array(layout: &Layout, c: Vec<Option<Vec<u8>>>) -> DfResult<ArrayRef> {
    let states: BinaryArray = c.iter().map(|b| b.as_deref()).collect();
    Ok(match &layout.key {
        None => Arc::new(states),
        Some((_, fields)) => {
            let n = states.len();
            let key = datafusion::arrow::array::new_null_array(&A::Struct(fields.clone()), n);
            let A::Struct(outer) = contribution_type(layout) else {
                unreachable!("a keyed contribution is a struct")
            };
            Arc::new(StructArray::try_new(
                outer,
                vec![Arc::new(states), key],
                None,
            )?)
        }
    })
}

/// [`ContactAcc`] for many groups at once (one per contact of a `GROUP BY
/// contact_id`): what DataFusion's hash aggregation calls.
#[derive(Debug)]
struct ContactGroups {
    kernel: Kernel,
    groups: Vec<Group>,
    /// Bytes held, for `size`.
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
        self.groups.resize_with(total_num_groups, Group::default);
        let input = self.kernel.input(values)?;
        for (r, &g) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !(f.is_valid(r) && f.value(r))) {
                continue;
            }
            let group = &mut self.groups[g];
            let before = group.bytes();
            self.kernel.add_row(&input, r, group)?;
            self.held += group.bytes() - before;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        let taken = emit_to.take_needed(&mut self.groups);
        self.held = self
            .held
            .saturating_sub(taken.iter().map(Group::bytes).sum());
        let c = taken
            .iter()
            .map(|g| self.kernel.contribution(g))
            .collect::<DfResult<Vec<_>>>()?;
        contribution_array(&self.kernel.layout, c)
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        let taken = emit_to.take_needed(&mut self.groups);
        self.held = self
            .held
            .saturating_sub(taken.iter().map(Group::bytes).sum());
        self.kernel.state_arrays(&taken)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.groups.resize_with(total_num_groups, Group::default);
        for (i, &g) in group_indices.iter().enumerate() {
            let group = &mut self.groups[g];
            let before = group.bytes();
            self.kernel.append_state(values, i, group)?;
            self.held += group.bytes() - before;
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        // every input row its own group: a one-event list, or an empty one
        let input = self.kernel.input(values)?;
        let mut groups = vec![Group::default(); input.masks.len()];
        for (r, g) in groups.iter_mut().enumerate() {
            if opt_filter.is_none_or(|f| f.is_valid(r) && f.value(r)) {
                self.kernel.add_row(&input, r, g)?;
            }
        }
        self.kernel.state_arrays(&groups)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.groups.capacity() * 80 + self.held
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

    /// The key fields carried by a contribution of type `t` (None: unkeyed).
    fn key_fields(&self, t: Option<&A>) -> DfResult<Option<Fields>> {
        match t {
            Some(A::Binary | A::LargeBinary | A::BinaryView) => Ok(None),
            Some(A::Struct(f))
                if f.len() == 2
                    && f[0].name() == "state"
                    && f[0].data_type() == &A::Binary
                    && matches!(f[1].data_type(), A::Struct(_)) =>
            {
                let A::Struct(k) = f[1].data_type() else {
                    unreachable!("checked above")
                };
                Ok(Some(k.clone()))
            }
            _ => plan_err!(
                "{}(spec, contribution): the contribution must be cohort_{}(…)'s result",
                self.name,
                self.statement.name()
            ),
        }
    }

    /// The fields of one result row.
    fn out_fields(&self, key: &Option<Fields>) -> Fields {
        match key {
            Some(k) if self.statement != Statement::Paths => {
                let mut f: Vec<FieldRef> = k
                    .iter()
                    .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
                    .collect();
                f.extend(self.statement.row_fields().iter().cloned());
                Fields::from(f)
            }
            _ => self.statement.row_fields(),
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
        let key = self.key_fields(args.get(1))?;
        Ok(A::List(Arc::new(Field::new_list_field(
            A::Struct(self.out_fields(&key)),
            true,
        ))))
    }
    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let spec = spec_arg(&self.name, &args)?;
        self.statement.check(&spec)?;
        let key_fields = self.key_fields(args.expr_fields.get(1).map(|f| f.data_type()))?;
        let acc = match &spec {
            Spec::Funnel(s, _) => Merged::Funnel(FunnelAcc::new(s.clone())),
            Spec::Retention(s, _) => Merged::Retention(RetentionAcc::new(s.clone())),
            Spec::Attribute(s, _) => Merged::Attribute(AttributeAcc::new(s.clone())),
            Spec::Ltv(s, _) => Merged::Ltv(LtvAcc::new(s.clone())),
            Spec::Paths(s, _) => Merged::Paths(PathsAcc::new(s.clone())),
        };
        Ok(Box::new(MergeAcc {
            statement: self.statement,
            out_fields: self.out_fields(&key_fields),
            key_fields,
            acc,
            keys: KeyTable::default(),
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
    Paths(PathsAcc),
}

/// The keys a merge has seen: encoded tuples by id − 1 (ids from 1).
#[derive(Debug, Default)]
struct KeyTable {
    table: Vec<Vec<u8>>,
    ids: HashMap<Vec<u8>, u32>,
}

impl KeyTable {
    /// The id of key `k` of a state whose key table is `local` (an empty
    /// table: unkeyed, `k` as it is).
    fn remap(&mut self, local: &[Vec<u8>], k: u32) -> DfResult<u32> {
        if local.is_empty() {
            return Ok(k);
        }
        let Some(bytes) = (k as usize).checked_sub(1).and_then(|i| local.get(i)) else {
            return exec_err!("cohort aggregate merge: a key out of range");
        };
        if let Some(id) = self.ids.get(bytes) {
            return Ok(*id);
        }
        self.table.push(bytes.clone());
        let id = self.table.len() as u32;
        self.ids.insert(bytes.clone(), id);
        Ok(id)
    }
}

#[derive(Debug)]
struct MergeAcc {
    statement: Statement,
    key_fields: Option<Fields>,
    out_fields: Fields,
    acc: Merged,
    keys: KeyTable,
}

impl MergeAcc {
    fn merge_bytes(&mut self, b: &[u8]) -> DfResult<()> {
        let keys = &mut self.keys;
        match &mut self.acc {
            Merged::Funnel(a) => {
                let (local, groups) = codec::decode_funnel(b)?;
                let mut other = FunnelAcc::new(a.spec().clone());
                for (k, g) in groups {
                    other.groups.insert(keys.remap(&local, k)?, g);
                }
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
                let (local, cohorts) = codec::decode_ltv(b)?;
                let mut other = LtvAcc::new(a.spec().clone());
                for ((k, c), v) in cohorts {
                    other.cohorts.insert((keys.remap(&local, k)?, c), v);
                }
                a.merge(other);
            }
            Merged::Paths(a) => {
                let (local, links) = codec::decode_paths(b)?;
                let mut other = PathsAcc::new(a.spec().clone());
                for ((level, node, next), n) in links {
                    let node = keys.remap(&local, node)?;
                    let next = match next {
                        Some(x) => Some(keys.remap(&local, x)?),
                        None => None,
                    };
                    *other.links.entry((level, node, next)).or_insert(0) += n;
                }
                a.merge(other);
            }
        }
        Ok(())
    }

    fn merge_array(&mut self, a: &ArrayRef) -> DfResult<()> {
        let a = match a.as_any().downcast_ref::<StructArray>() {
            Some(s) => s.column(0).clone(),
            None => a.clone(),
        };
        let a = datafusion::arrow::compute::cast(&a, &A::Binary)?;
        let Some(b) = a.as_any().downcast_ref::<BinaryArray>() else {
            return exec_err!("{}: contributions must be BYTEA", self.statement.name());
        };
        for v in b.iter().flatten() {
            self.merge_bytes(v)?;
        }
        Ok(())
    }

    /// The decoded keys by id − 1, and each id's position in key order
    /// (index 0: the unkeyed 0).
    fn key_order(&self) -> DfResult<(Vec<Vec<ScalarValue>>, Vec<usize>)> {
        let Some(fields) = &self.key_fields else {
            return Ok((Vec::new(), vec![0]));
        };
        let decoded = self
            .keys
            .table
            .iter()
            .map(|k| keys::decode(k, fields))
            .collect::<DfResult<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..decoded.len()).collect();
        order.sort_by(|a, b| keys::compare_tuples(&decoded[*a], &decoded[*b]));
        let mut pos = vec![0; decoded.len() + 1];
        for (p, i) in order.into_iter().enumerate() {
            pos[i + 1] = p;
        }
        Ok((decoded, pos))
    }

    /// The key columns of rows with key ids `ids`.
    fn key_columns(&self, decoded: &[Vec<ScalarValue>], ids: &[u32]) -> DfResult<Vec<ArrayRef>> {
        let Some(fields) = &self.key_fields else {
            return Ok(Vec::new());
        };
        let mut cols = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            let t = f.data_type();
            if ids.is_empty() {
                cols.push(datafusion::arrow::array::new_empty_array(t));
                continue;
            }
            let vals = ids
                .iter()
                .map(
                    |id| match (*id as usize).checked_sub(1).and_then(|j| decoded.get(j)) {
                        Some(tuple) => Ok(tuple[i].clone()),
                        None => Ok(ScalarValue::try_from(t)?),
                    },
                )
                .collect::<DfResult<Vec<_>>>()?;
            let arr = ScalarValue::iter_to_array(vals)?;
            cols.push(if arr.data_type() != t {
                datafusion::arrow::compute::cast(&arr, t)?
            } else {
                arr
            });
        }
        Ok(cols)
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
        let t = &self.keys.table;
        let bytes = match &self.acc {
            Merged::Funnel(a) => codec::encode_funnel(a, t),
            Merged::Retention(a) => codec::encode_retention(a),
            Merged::Attribute(a) => codec::encode_attribute(a),
            Merged::Ltv(a) => codec::encode_ltv(a, t),
            Merged::Paths(a) => codec::encode_paths(a, t),
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
            Merged::Paths(a) => a.links.len() * 40,
        };
        let keys: usize = self.keys.table.iter().map(|k| 2 * k.len() + 64).sum();
        std::mem::size_of_val(self) + inner + keys
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let (decoded, pos) = self.key_order()?;
        let rank = |k: u32| pos.get(k as usize).copied().unwrap_or(0);
        let mut columns: Vec<ArrayRef> = Vec::new();
        match &self.acc {
            Merged::Funnel(a) => {
                let mut rows = a.rows(self.key_fields.is_some());
                rows.sort_by_key(|r| (rank(r.key), r.step));
                let ids: Vec<u32> = rows.iter().map(|r| r.key).collect();
                columns.extend(self.key_columns(&decoded, &ids)?);
                columns.extend([
                    Arc::new(Int32Array::from_iter_values(
                        rows.iter().map(|r| r.step as i32),
                    )) as ArrayRef,
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
                ]);
            }
            Merged::Retention(a) => {
                let rows = a.rows();
                columns.extend([
                    Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.cohort)))
                        as ArrayRef,
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
                ]);
            }
            Merged::Attribute(a) => {
                let rows = a.rows();
                columns.extend([
                    Arc::new(Int32Array::from_iter(
                        rows.iter().map(|r| r.touch.map(|t| t as i32 + 1)),
                    )) as ArrayRef,
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
                ]);
            }
            Merged::Ltv(a) => {
                let mut rows = a.rows();
                rows.sort_by_key(|r| {
                    (
                        rank(r.key),
                        r.cohort.is_none(),
                        r.cohort.unwrap_or(0),
                        r.period,
                    )
                });
                let ids: Vec<u32> = rows.iter().map(|r| r.key).collect();
                columns.extend(self.key_columns(&decoded, &ids)?);
                columns.extend([
                    Arc::new(Date32Array::from_iter(rows.iter().map(|r| r.cohort))) as ArrayRef,
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
                ]);
            }
            Merged::Paths(a) => {
                let name = |id: u32| -> String {
                    (id as usize)
                        .checked_sub(1)
                        .and_then(|i| decoded.get(i))
                        .map(|t| keys::node_name(t))
                        .unwrap_or_default()
                };
                let mut named: Vec<(u32, String, Option<String>, u64)> = a
                    .rows()
                    .iter()
                    .map(|r| (r.level, name(r.node), r.next.map(name), r.sessions))
                    .collect();
                sort_path_rows(&mut named);
                columns.extend([
                    Arc::new(Int32Array::from_iter_values(
                        named.iter().map(|r| r.0 as i32),
                    )) as ArrayRef,
                    Arc::new(StringArray::from_iter_values(
                        named.iter().map(|r| r.1.as_str()),
                    )),
                    Arc::new(StringArray::from_iter(named.iter().map(|r| r.2.as_deref()))),
                    Arc::new(Int64Array::from_iter_values(
                        named.iter().map(|r| r.3 as i64),
                    )),
                ]);
            }
        }
        let n = columns.first().map(|c| c.len()).unwrap_or(0);
        let rows = StructArray::try_new(self.out_fields.clone(), columns, None)?;
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(
                A::Struct(self.out_fields.clone()),
                true,
            )),
            OffsetBuffer::from_lengths([n]),
            Arc::new(rows),
            None,
        )?;
        Ok(ScalarValue::List(Arc::new(list)))
    }
}

/// PATHS rows `(level, node, next, sessions)` in the statement's order:
/// level, sessions descending, node, next (NULL last).
pub fn sort_path_rows(rows: &mut [(u32, String, Option<String>, u64)]) {
    rows.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(b.3.cmp(&a.3))
            .then(a.1.cmp(&b.1))
            .then(match (&a.2, &b.2) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) => x.cmp(y),
            })
    });
}

/// The statement aggregates, ready to register.
pub fn aggregates() -> Vec<AggregateUDF> {
    [
        Statement::Funnel,
        Statement::Retention,
        Statement::Attribute,
        Statement::Ltv,
        Statement::Paths,
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
