//! The analytics event scan: reads the `(day, event type)` runs a statement
//! needs, one contact-id shard at a time, evaluates the statement's
//! predicates on the events, and hands each contact's matching events in
//! time order to a per-contact callback. Memory is bounded by one shard.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{Offset, TimeZone};
use chrono_tz::Tz;
use cohortdb_analytics::Event;
use cohortdb_storage::catalog::Catalog;
use cohortdb_storage::codec::RowReader;
use cohortdb_storage::{Store, ValueRef};
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType as A, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Result, SqlError};
use crate::model::layout::EventLayout;
use crate::tables::events::{BatchReader, EVENT_BATCH_ROWS};

/// How one predicate is evaluated.
#[derive(Debug, Clone)]
pub enum Predicate {
    /// Matches events of these type ids (`event = 'x'`, `event IN (...)`).
    Types(Vec<u32>),
    /// A general boolean expression over the projected event columns.
    Expr(Arc<dyn PhysicalExpr>),
    /// Never matches.
    Never,
}

/// How the VALUE column is read.
#[derive(Debug, Clone)]
pub enum ValueSource {
    /// A numeric property read straight from the stored row.
    Field(u32),
    /// An expression over the projected columns, cast to DOUBLE.
    Expr(Arc<dyn PhysicalExpr>),
}

/// How `Event::key` is derived.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Expressions whose values (as a tuple) are interned in the shared dictionary.
    Exprs(Vec<Arc<dyn PhysicalExpr>>),
    /// The event type id (PATHS nodes without BY).
    EventType,
    /// `[event code, value of expr]` interned (PATHS nodes with BY).
    TypeAndExpr(Arc<dyn PhysicalExpr>),
}

/// Interned grouping values; id 0 is reserved for "no value".
#[derive(Debug, Default)]
pub struct Dictionary {
    ids: HashMap<Vec<ScalarValue>, u32>,
    /// Values by id (index 0 unused).
    pub values: Vec<Vec<ScalarValue>>,
    /// One-text-column keys by their text ([`Dictionary::intern_text`]),
    /// under their event type for PATHS nodes (`u32::MAX` otherwise):
    /// looked up without building a tuple.
    text_ids: HashMap<u32, HashMap<String, u32>>,
    null_text: HashMap<u32, u32>,
}

/// The Arrow string type of a one-column text key.
#[derive(Debug, Clone, Copy)]
pub enum TextKind {
    /// Utf8.
    Utf8,
    /// LargeUtf8.
    Large,
    /// Utf8View.
    View,
}

impl Dictionary {
    /// A dictionary with id 0 taken.
    pub fn new() -> Self {
        Dictionary {
            values: vec![vec![]],
            ..Default::default()
        }
    }

    /// The id of the one-column text key `v` (of Arrow type `kind`), after
    /// the event code of `node` (type id, code) for PATHS nodes, interning
    /// it: the same id [`Dictionary::intern`] gives its tuple, found by the
    /// text alone, so a known value allocates nothing.
    pub fn intern_text(
        &mut self,
        node: Option<(u32, Option<&str>)>,
        v: Option<&str>,
        kind: TextKind,
    ) -> u32 {
        let scope = node.map_or(u32::MAX, |n| n.0);
        let known = match v {
            Some(s) => self.text_ids.get(&scope).and_then(|m| m.get(s)).copied(),
            None => self.null_text.get(&scope).copied(),
        };
        if let Some(id) = known {
            return id;
        }
        let owned = v.map(str::to_string);
        let sv = match kind {
            TextKind::Utf8 => ScalarValue::Utf8(owned),
            TextKind::Large => ScalarValue::LargeUtf8(owned),
            TextKind::View => ScalarValue::Utf8View(owned),
        };
        let tuple = match node {
            Some((_, code)) => vec![ScalarValue::Utf8(code.map(str::to_string)), sv],
            None => vec![sv],
        };
        let id = self.intern(tuple);
        match v {
            Some(s) => {
                self.text_ids
                    .entry(scope)
                    .or_default()
                    .insert(s.to_string(), id);
            }
            None => {
                self.null_text.insert(scope, id);
            }
        }
        id
    }

    /// A dictionary whose id `i` is `values[i]` (`values[0]` unused); the
    /// values must be distinct.
    pub fn from_values(values: Vec<Vec<ScalarValue>>) -> Self {
        let ids = values
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, v)| (v.clone(), i as u32))
            .collect();
        Dictionary {
            ids,
            values,
            ..Default::default()
        }
    }

    /// The id of `v`, interning it.
    pub fn intern(&mut self, v: Vec<ScalarValue>) -> u32 {
        if let Some(id) = self.ids.get(&v) {
            return *id;
        }
        let id = self.values.len() as u32;
        self.values.push(v.clone());
        self.ids.insert(v, id);
        id
    }
}

/// Everything a scan needs, shared by the worker threads.
pub struct ScanSpec {
    /// The store.
    pub store: Arc<Store>,
    /// Catalog snapshot.
    pub catalog: Arc<Catalog>,
    /// event_view layout (session time zone).
    pub layout: Arc<EventLayout>,
    /// Projected column indexes of `layout` that expressions read (empty: no batch decoding).
    pub projection: Vec<usize>,
    /// Schema of the projection.
    pub schema: SchemaRef,
    /// Session time zone.
    pub tz: Tz,
    /// Predicates, by mask bit.
    pub predicates: Vec<Predicate>,
    /// VALUE column.
    pub value: Option<ValueSource>,
    /// Mask bits of the predicates whose events need VALUE (ATTRIBUTE's
    /// target, LTV's revenue).
    pub value_mask: u32,
    /// Event key.
    pub key: Option<KeySource>,
    /// UTC storage days to read.
    pub utc_days: (i32, i32),
    /// Local days kept (inclusive).
    pub local_days: (i32, i32),
    /// Event types to read (sorted).
    pub types: Vec<u32>,
    /// Events after this time are ignored (AS OF).
    pub as_of_ms: i64,
    /// Contacts considered (sorted), None = all.
    pub contacts: Option<Arc<Vec<u64>>>,
    /// Contacts that must be visited even without events (sorted), e.g. LTV INITIAL ATTRIBUTE.
    pub visit_all: Option<Arc<Vec<u64>>>,
    /// Shared dictionary for keys.
    pub dict: Arc<Mutex<Dictionary>>,
    /// Highest contact id to consider.
    pub max_contact: u64,
    /// Contact ids per shard.
    pub shard_width: u64,
}

/// Local-day computation with per-UTC-day cached offsets.
struct LocalDay {
    utc: bool,
    tz: Tz,
    first: i32,
    offsets: Vec<Option<i64>>,
}

impl LocalDay {
    fn new(tz: Tz, days: (i32, i32)) -> Self {
        let utc = tz == Tz::UTC;
        let mut offsets = Vec::new();
        if !utc && days.1 >= days.0 && days.1 - days.0 < 100_000 {
            for d in days.0..=days.1 {
                let start = d as i64 * 86_400_000;
                let end = start + 86_399_999;
                let off = |ms: i64| {
                    tz.timestamp_millis_opt(ms)
                        .single()
                        .map(|t| t.offset().fix().local_minus_utc() as i64 * 1000)
                };
                offsets.push(match (off(start), off(end)) {
                    (Some(a), Some(b)) if a == b => Some(a),
                    _ => None,
                });
            }
        }
        LocalDay {
            utc,
            tz,
            first: days.0,
            offsets,
        }
    }

    #[inline]
    fn day(&self, ts: i64) -> i32 {
        if self.utc {
            return ts.div_euclid(86_400_000) as i32;
        }
        let ud = ts.div_euclid(86_400_000) as i32;
        if let Some(Some(off)) = self.offsets.get((ud - self.first) as usize) {
            return (ts + off).div_euclid(86_400_000) as i32;
        }
        match self.tz.timestamp_millis_opt(ts).single() {
            Some(t) => (ts + t.offset().fix().local_minus_utc() as i64 * 1000)
                .div_euclid(86_400_000) as i32,
            None => ud,
        }
    }
}

/// Per-worker scratch space.
struct Worker<'a> {
    spec: &'a ScanSpec,
    reader: Option<BatchReader>,
    local: LocalDay,
    /// Type id → mask of the type-only predicates.
    type_masks: Vec<u32>,
    /// Bits decided by expressions.
    expr_bits: u32,
    /// Events of the shard as read: (contact, event).
    recs: Vec<(u64, Event)>,
    /// Events read into the current batch, waiting for expression evaluation.
    pending: Vec<(u64, Event, u32)>,
    /// Counting-sort output.
    sorted: Vec<Event>,
    counts: Vec<u32>,
}

fn eval_bool(e: &Arc<dyn PhysicalExpr>, b: &RecordBatch) -> Result<BooleanArray> {
    let v = e.evaluate(b)?.into_array(b.num_rows())?;
    let a = v.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| {
        SqlError::DatatypeMismatch("a predicate must be a boolean expression".into())
    })?;
    Ok(a.clone())
}

fn eval_array(e: &Arc<dyn PhysicalExpr>, b: &RecordBatch) -> Result<ArrayRef> {
    Ok(e.evaluate(b)?.into_array(b.num_rows())?)
}

impl<'a> Worker<'a> {
    fn new(spec: &'a ScanSpec) -> Self {
        let reader = (!spec.projection.is_empty()).then(|| {
            BatchReader::new(
                &spec.catalog,
                &spec.layout,
                &spec.projection,
                spec.schema.clone(),
                spec.tz,
            )
        });
        let max_type = spec.types.iter().copied().max().unwrap_or(0) as usize;
        let mut type_masks: Vec<u32> = vec![0; max_type + 1];
        let mut expr_bits = 0u32;
        for (bit, p) in spec.predicates.iter().enumerate() {
            match p {
                Predicate::Types(ts) => {
                    for t in ts {
                        if let Some(m) = type_masks.get_mut(*t as usize) {
                            *m |= 1 << bit;
                        }
                    }
                }
                Predicate::Expr(_) => expr_bits |= 1 << bit,
                Predicate::Never => {}
            }
        }
        Worker {
            spec,
            reader,
            local: LocalDay::new(spec.tz, spec.utc_days),
            type_masks,
            expr_bits,
            recs: Vec::new(),
            pending: Vec::new(),
            sorted: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Evaluates expressions on the pending batch and moves matching events to `recs`.
    fn flush(&mut self) -> Result<()> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(());
        };
        if reader.rows == 0 {
            return Ok(());
        }
        let batch = reader.finish()?;
        let n = batch.num_rows();
        let mut masks: Vec<u32> = self.pending.iter().map(|p| p.2).collect();
        for (bit, p) in self.spec.predicates.iter().enumerate() {
            if let Predicate::Expr(e) = p {
                let a = eval_bool(e, &batch)?;
                for (i, m) in masks.iter_mut().enumerate() {
                    if a.is_valid(i) && a.value(i) {
                        *m |= 1 << bit;
                    }
                }
            }
        }
        let values: Option<Float64Array> = match &self.spec.value {
            Some(ValueSource::Expr(e)) => {
                let a = eval_array(e, &batch)?;
                let a = cast(&a, &A::Float64)?;
                Some(
                    a.as_any()
                        .downcast_ref::<Float64Array>()
                        .expect("cast to Float64")
                        .clone(),
                )
            }
            _ => None,
        };
        let key_arrays: Option<Vec<ArrayRef>> = match &self.spec.key {
            Some(KeySource::Exprs(es)) => Some(
                es.iter()
                    .map(|e| eval_array(e, &batch))
                    .collect::<Result<_>>()?,
            ),
            Some(KeySource::TypeAndExpr(e)) => Some(vec![eval_array(e, &batch)?]),
            _ => None,
        };
        // One text column (the common FUNNEL BY / GROUP BY / PATHS BY):
        // interned by its text.
        let text_key = match (&self.spec.key, key_arrays.as_deref()) {
            (Some(KeySource::Exprs(_) | KeySource::TypeAndExpr(_)), Some([a])) => {
                match a.data_type() {
                    A::Utf8 => Some((TextKind::Utf8, a)),
                    A::LargeUtf8 => Some((TextKind::Large, a)),
                    A::Utf8View => Some((TextKind::View, a)),
                    _ => None,
                }
            }
            _ => None,
        };
        let mut dict = key_arrays
            .as_ref()
            .map(|_| self.spec.dict.lock().expect("dict"));
        for (i, (contact, mut ev, _)) in self.pending.drain(..).enumerate().take(n) {
            let m = masks[i];
            if m == 0 {
                continue;
            }
            ev.mask = m;
            if let Some(v) = &values {
                ev.value = v.is_valid(i).then(|| v.value(i));
            }
            if let (Some((kind, a)), Some(d)) = (text_key, dict.as_mut()) {
                use datafusion::arrow::array::AsArray;
                let v = if a.is_null(i) {
                    None
                } else {
                    Some(match kind {
                        TextKind::Utf8 => a.as_string::<i32>().value(i),
                        TextKind::Large => a.as_string::<i64>().value(i),
                        TextKind::View => a.as_string_view().value(i),
                    })
                };
                let node = match &self.spec.key {
                    Some(KeySource::TypeAndExpr(_)) => Some((
                        ev.key,
                        self.spec
                            .catalog
                            .event_type_by_id(ev.key)
                            .map(|t| t.event.as_str()),
                    )),
                    _ => None,
                };
                ev.key = d.intern_text(node, v, kind);
            } else if let (Some(arrays), Some(d)) = (&key_arrays, dict.as_mut()) {
                let mut tuple = Vec::with_capacity(arrays.len() + 1);
                if let Some(KeySource::TypeAndExpr(_)) = &self.spec.key {
                    let code = self
                        .spec
                        .catalog
                        .event_type_by_id(ev.key)
                        .map(|t| t.event.clone());
                    tuple.push(ScalarValue::Utf8(code));
                }
                for a in arrays {
                    tuple.push(ScalarValue::try_from_array(a, i)?);
                }
                ev.key = d.intern(tuple);
            }
            self.recs.push((contact, ev));
        }
        self.pending.clear();
        Ok(())
    }

    /// Reads one shard and calls `f` per contact with its events in time order.
    fn shard(
        &mut self,
        lo: u64,
        hi: u64,
        f: &mut dyn FnMut(u64, &[Event]) -> Result<()>,
    ) -> Result<()> {
        let spec = self.spec;
        if let Some(c) = &spec.contacts {
            let i = c.partition_point(|x| *x < lo);
            if i >= c.len() || c[i] >= hi {
                return Ok(());
            }
        }
        self.recs.clear();
        let mut err: Option<SqlError> = None;
        let needs_exprs = self.expr_bits != 0
            || matches!(spec.value, Some(ValueSource::Expr(_)))
            || matches!(
                spec.key,
                Some(KeySource::Exprs(_)) | Some(KeySource::TypeAndExpr(_))
            );
        let field_value = match spec.value {
            Some(ValueSource::Field(f)) => Some(f),
            _ => None,
        };
        let key_is_type = matches!(spec.key, Some(KeySource::EventType));
        let (dlo, dhi) = spec.local_days;
        spec.store
            .scan_event_runs(spec.utc_days, &spec.types, (lo, hi), &mut |key, val| {
                if key.ts_ms > spec.as_of_ms {
                    return true;
                }
                let day = self.local.day(key.ts_ms);
                if day < dlo || day > dhi {
                    return true;
                }
                let tmask = self
                    .type_masks
                    .get(key.event_type as usize)
                    .copied()
                    .unwrap_or(0);
                if tmask == 0 && !needs_exprs {
                    return true;
                }
                let mut ev = Event {
                    ts: key.ts_ms,
                    day,
                    mask: tmask,
                    value: None,
                    key: 0,
                };
                // VALUE is decoded only for events whose predicates use it.
                let wants_value = (tmask | self.expr_bits) & spec.value_mask != 0;
                if let (Some(fid), true) = (field_value, wants_value) {
                    for (id, v) in RowReader::new(val) {
                        if id == fid {
                            ev.value = match v {
                                ValueRef::Int(x) => Some(x as f64),
                                ValueRef::Float(x) => Some(x),
                                _ => None,
                            };
                            break;
                        }
                    }
                }
                if key_is_type {
                    ev.key = key.event_type;
                }
                if needs_exprs {
                    if matches!(spec.key, Some(KeySource::TypeAndExpr(_))) {
                        ev.key = key.event_type;
                    }
                    let reader = self.reader.as_mut().expect("reader when expressions");
                    reader.push(key.event_type, key.contact, key.ts_ms, val);
                    self.pending.push((key.contact, ev, tmask));
                    if reader.rows >= EVENT_BATCH_ROWS {
                        if let Err(e) = self.flush() {
                            err = Some(e);
                            return false;
                        }
                    }
                } else {
                    self.recs.push((key.contact, ev));
                }
                true
            })?;
        if let Some(e) = err {
            return Err(e);
        }
        self.flush()?;
        // Counting sort by contact, then time order within each contact.
        let width = (hi - lo) as usize;
        self.counts.clear();
        self.counts.resize(width + 1, 0);
        for (c, _) in &self.recs {
            self.counts[(c - lo) as usize + 1] += 1;
        }
        for i in 1..=width {
            self.counts[i] += self.counts[i - 1];
        }
        self.sorted.clear();
        self.sorted.resize(
            self.recs.len(),
            Event {
                ts: 0,
                day: 0,
                mask: 0,
                value: None,
                key: 0,
            },
        );
        {
            let mut next: Vec<u32> = self.counts[..width].to_vec();
            for (c, ev) in &self.recs {
                let slot = &mut next[(c - lo) as usize];
                self.sorted[*slot as usize] = *ev;
                *slot += 1;
            }
        }
        let filter = spec.contacts.as_deref();
        let visit_all = spec.visit_all.as_deref();
        let mut visit_i = visit_all
            .map(|v| v.partition_point(|x| *x < lo))
            .unwrap_or(0);
        for i in 0..width {
            let (a, b) = (self.counts[i] as usize, self.counts[i + 1] as usize);
            let contact = lo + i as u64;
            let forced = match visit_all {
                Some(v) => {
                    while visit_i < v.len() && v[visit_i] < contact {
                        visit_i += 1;
                    }
                    visit_i < v.len() && v[visit_i] == contact
                }
                None => false,
            };
            if a == b && !forced {
                continue;
            }
            if let Some(fl) = filter {
                if fl.binary_search(&contact).is_err() {
                    continue;
                }
            }
            let evs = &mut self.sorted[a..b];
            if !evs.windows(2).all(|w| w[0].ts <= w[1].ts) {
                evs.sort_unstable_by_key(|e| (e.ts, e.mask, e.key));
            }
            f(contact, evs)?;
        }
        Ok(())
    }
}

/// Runs the scan on `threads` workers; `make` creates one accumulator per
/// worker, `add` feeds it a contact, and the accumulators are returned for merging.
pub fn run<T: Send>(
    spec: &ScanSpec,
    threads: usize,
    check: &(dyn Fn() -> Result<()> + Sync),
    make: &(dyn Fn() -> T + Sync),
    add: &(dyn Fn(&mut T, u64, &[Event]) -> Result<()> + Sync),
) -> Result<Vec<T>> {
    let width = spec.shard_width.max(1);
    let shards = spec.max_contact / width + 1;
    let next = AtomicUsize::new(0);
    let results: Vec<Result<T>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<T> {
                    let mut acc = make();
                    let mut w = Worker::new(spec);
                    loop {
                        // Cancel requests and statement_timeout, between shards.
                        check()?;
                        let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                        if i >= shards {
                            break;
                        }
                        let lo = i * width;
                        let hi = lo + width;
                        w.shard(lo, hi, &mut |c, evs| add(&mut acc, c, evs))?;
                    }
                    Ok(acc)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(SqlError::Unsupported("analytics worker panicked".into()))
                })
            })
            .collect()
    });
    results.into_iter().collect()
}
