//! `events` (append-only) and `event_view` over the day × event-type event
//! index, with pushdown of event codes, contact ids and time ranges.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::{NaiveTime, TimeZone};
use chrono_tz::Tz;
use cohortdb_storage::catalog::{Catalog, EVENT_CHANNEL_FIELD};
use cohortdb_storage::time::utc_day;
use cohortdb_storage::{EventScanSpec, RowReader, Store, ValueRef};
use datafusion::arrow::array::{
    Date32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::ScalarValue;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use super::contacts::ids_from_filters;
use super::IngestSink;
use crate::error::SqlError;
use crate::ingest::batch::EventIngest;
use crate::model::convert::{date_from_days, days_from_date, value_at, ColumnBuilder};
use crate::model::layout::{EventCol, EventLayout};
use crate::model::rows::{event_col_type, RowRef};

/// Rows per batch produced by event scans.
pub const EVENT_BATCH_ROWS: usize = 8192;

/// The `events` table or the `event_view` view.
#[derive(Debug)]
pub struct EventsTable {
    store: Arc<Store>,
    layout: Arc<EventLayout>,
    tz: Tz,
    contact_lock: Arc<tokio::sync::Mutex<()>>,
}

impl EventsTable {
    /// A provider; `tz` is the server time zone that defines `event_day`.
    pub fn new(env: &crate::tables::catalog::TableEnv, view: bool) -> Self {
        let layout = Arc::new(EventLayout::new_in(
            &env.store.catalog(),
            view,
            &env.session_tz,
        ));
        EventsTable {
            store: env.store.clone(),
            layout,
            tz: env.tz,
            contact_lock: env.contact_lock.clone(),
        }
    }
}

impl EventsTable {
    /// The rows of `written` as this table shows them (RETURNING).
    pub fn written_batch(
        &self,
        written: &[crate::ingest::batch::WrittenEvent],
    ) -> crate::error::Result<RecordBatch> {
        written_batch(&self.store, &self.layout, self.tz, written)
    }
}

/// What the filters of a query pin down.
#[derive(Debug, Default, Clone)]
struct Pushdown {
    codes: Option<Vec<String>>,
    ts_lo: Option<i64>,
    ts_hi: Option<i64>,
    day_lo: Option<i32>,
    day_hi: Option<i32>,
}

/// A text literal (possibly under a cast).
pub(crate) fn lit_str(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        Expr::Cast(c) => lit_str(&c.expr),
        _ => None,
    }
}

fn col_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

/// A literal as milliseconds (timestamps) or days (dates).
/// A literal as a range of milliseconds it may denote: exact for timestamps,
/// widened by a day for dates and text (their zone may differ from `tz`).
fn lit_ts(e: &Expr, tz: &Tz) -> Option<(i64, i64)> {
    const DAY: i64 = 86_400_000;
    let exact = matches!(
        e,
        Expr::Literal(
            ScalarValue::TimestampMillisecond(..)
                | ScalarValue::TimestampMicrosecond(..)
                | ScalarValue::TimestampNanosecond(..)
                | ScalarValue::TimestampSecond(..),
            _
        )
    );
    let t = lit_ts_point(e, tz)?;
    Some(if exact { (t, t) } else { (t - DAY, t + DAY) })
}

fn lit_ts_point(e: &Expr, tz: &Tz) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::TimestampMillisecond(Some(x), _) => Some(*x),
            ScalarValue::TimestampMicrosecond(Some(x), _) => Some(x.div_euclid(1000)),
            ScalarValue::TimestampNanosecond(Some(x), _) => Some(x.div_euclid(1_000_000)),
            ScalarValue::TimestampSecond(Some(x), _) => Some(x * 1000),
            ScalarValue::Date32(Some(d)) => local_midnight_ms(*d, tz),
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                crate::model::convert::parse_timestamp_ms(s, tz)
            }
            _ => None,
        },
        Expr::Cast(c) => lit_ts_point(&c.expr, tz),
        Expr::TryCast(c) => lit_ts_point(&c.expr, tz),
        _ => None,
    }
}

fn lit_day(e: &Expr) -> Option<i32> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Date32(Some(d)) => Some(*d),
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                crate::model::convert::parse_date(s.trim())
            }
            _ => None,
        },
        Expr::Cast(c) => lit_day(&c.expr),
        _ => None,
    }
}

fn local_midnight_ms(day: i32, tz: &Tz) -> Option<i64> {
    let d = date_from_days(day).and_time(NaiveTime::MIN);
    tz.from_local_datetime(&d)
        .earliest()
        .map(|x| x.timestamp_millis())
}

enum Kind {
    Exact,
    Inexact,
}

/// Recognises one filter; updates `p` and says how exactly it is applied.
fn analyze(e: &Expr, p: &mut Pushdown, tz: &Tz) -> Option<Kind> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (col, lit, op) = match (col_name(left), col_name(right)) {
                (Some(c), None) => (c, right.as_ref(), *op),
                (None, Some(c)) => (c, left.as_ref(), op.swap()?),
                _ => return None,
            };
            match (col, op) {
                ("event", Operator::Eq) => {
                    let s = lit_str(lit)?;
                    intersect_codes(p, vec![s]);
                    Some(Kind::Exact)
                }
                ("event_date", _) => {
                    let (lo, hi) = lit_ts(lit, tz)?;
                    match op {
                        Operator::Eq => {
                            p.ts_lo = Some(p.ts_lo.map_or(lo, |x| x.max(lo)));
                            p.ts_hi = Some(p.ts_hi.map_or(hi, |x| x.min(hi)));
                        }
                        Operator::Gt | Operator::GtEq => {
                            p.ts_lo = Some(p.ts_lo.map_or(lo, |x| x.max(lo)))
                        }
                        Operator::Lt | Operator::LtEq => {
                            p.ts_hi = Some(p.ts_hi.map_or(hi, |x| x.min(hi)))
                        }
                        _ => return None,
                    }
                    Some(Kind::Inexact)
                }
                ("event_day", _) => {
                    let d = lit_day(lit)?;
                    match op {
                        Operator::Eq => {
                            p.day_lo = Some(p.day_lo.map_or(d, |x| x.max(d)));
                            p.day_hi = Some(p.day_hi.map_or(d, |x| x.min(d)));
                        }
                        Operator::Gt => p.day_lo = Some(p.day_lo.map_or(d + 1, |x| x.max(d + 1))),
                        Operator::GtEq => p.day_lo = Some(p.day_lo.map_or(d, |x| x.max(d))),
                        Operator::Lt => p.day_hi = Some(p.day_hi.map_or(d - 1, |x| x.min(d - 1))),
                        Operator::LtEq => p.day_hi = Some(p.day_hi.map_or(d, |x| x.min(d))),
                        _ => return None,
                    }
                    Some(Kind::Inexact)
                }
                ("contact_id", Operator::Eq) => Some(Kind::Exact),
                _ => None,
            }
        }
        Expr::InList(l) if !l.negated => match col_name(&l.expr)? {
            "event" => {
                let codes: Option<Vec<String>> = l.list.iter().map(lit_str).collect();
                intersect_codes(p, codes?);
                Some(Kind::Exact)
            }
            "contact_id" => {
                ids_from_filters(std::slice::from_ref(e), "contact_id").map(|_| Kind::Exact)
            }
            _ => None,
        },
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => match col_name(expr)? {
            "event_date" => {
                let (lo, hi) = (lit_ts(low, tz)?.0, lit_ts(high, tz)?.1);
                p.ts_lo = Some(p.ts_lo.map_or(lo, |x| x.max(lo)));
                p.ts_hi = Some(p.ts_hi.map_or(hi, |x| x.min(hi)));
                Some(Kind::Inexact)
            }
            "event_day" => {
                let (lo, hi) = (lit_day(low)?, lit_day(high)?);
                p.day_lo = Some(p.day_lo.map_or(lo, |x| x.max(lo)));
                p.day_hi = Some(p.day_hi.map_or(hi, |x| x.min(hi)));
                Some(Kind::Inexact)
            }
            _ => None,
        },
        _ => None,
    }
}

fn intersect_codes(p: &mut Pushdown, codes: Vec<String>) {
    p.codes = Some(match p.codes.take() {
        None => codes,
        Some(prev) => prev.into_iter().filter(|c| codes.contains(c)).collect(),
    });
}

/// The scan plan derived from filters, with its EXPLAIN description.
#[derive(Debug, Clone)]
pub struct EventScanPlan {
    /// What storage reads.
    pub spec: EventScanSpec,
    /// `event_types=[..]` part of EXPLAIN.
    pub types_desc: String,
    /// `days=[..]` part of EXPLAIN.
    pub days_desc: String,
    /// True when no row can match.
    pub empty: bool,
}

/// Builds the storage scan for `filters`.
pub fn plan_event_scan(filters: &[Expr], catalog: &Catalog, tz: &Tz) -> EventScanPlan {
    let mut p = Pushdown::default();
    for f in filters {
        let _ = analyze(f, &mut p, tz);
    }
    let mut spec = EventScanSpec::default();
    let mut empty = false;
    let types_desc = match &p.codes {
        None => "all".to_string(),
        Some(codes) => {
            let mut ids: Vec<u32> = codes
                .iter()
                .filter_map(|c| catalog.event_type(c).map(|t| t.id))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            empty |= ids.is_empty();
            spec.event_types = Some(ids);
            let mut shown = codes.clone();
            shown.sort();
            shown.dedup();
            format!("[{}]", shown.join(", "))
        }
    };
    spec.contacts = ids_from_filters(filters, "contact_id");
    if spec.contacts.as_ref().is_some_and(|c| c.is_empty()) {
        empty = true;
    }
    // UTC day range covering every pushed bound.
    let mut lo: Option<i32> = p.ts_lo.map(utc_day);
    let mut hi: Option<i32> = p.ts_hi.map(utc_day);
    if let Some(d) = p.day_lo {
        if let Some(ms) = local_midnight_ms(d, tz) {
            let u = utc_day(ms);
            lo = Some(lo.map_or(u, |x| x.max(u)));
        }
    }
    if let Some(d) = p.day_hi {
        if let Some(ms) = local_midnight_ms(d + 1, tz) {
            let u = utc_day(ms - 1);
            hi = Some(hi.map_or(u, |x| x.min(u)));
        }
    }
    let days_desc = match (lo, hi) {
        (None, None) => "all".to_string(),
        (l, h) => format!(
            "[{}..{}]",
            l.map(|d| date_from_days(d).to_string()).unwrap_or_default(),
            h.map(|d| date_from_days(d).to_string()).unwrap_or_default()
        ),
    };
    if lo.is_some() || hi.is_some() {
        let (l, h) = (lo.unwrap_or(i32::MIN), hi.unwrap_or(i32::MAX));
        empty |= l > h;
        spec.days = Some((l, h));
    }
    EventScanPlan {
        spec,
        types_desc,
        days_desc,
        empty,
    }
}

#[async_trait::async_trait]
impl TableProvider for EventsTable {
    fn schema(&self) -> SchemaRef {
        self.layout.schema.clone()
    }

    fn table_type(&self) -> TableType {
        if self.layout.view {
            TableType::View
        } else {
            TableType::Base
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match analyze(f, &mut Pushdown::default(), &self.tz) {
                Some(Kind::Exact) => TableProviderFilterPushDown::Exact,
                Some(Kind::Inexact) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let catalog = self.store.catalog();
        let plan = plan_event_scan(filters, &catalog, &self.tz);
        let projection: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.layout.cols.len()).collect());
        let schema = Arc::new(self.layout.schema.project(&projection)?);
        Ok(Arc::new(EventsScanExec::new(
            self.store.clone(),
            self.layout.clone(),
            projection,
            schema,
            plan,
            self.tz,
            limit,
        )))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        _op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.layout.view {
            return Err(
                SqlError::Unsupported("event_view is a view; insert into events".into()).into(),
            );
        }
        let store = self.store.clone();
        let lock = self.contact_lock.clone();
        let layout = self.layout.clone();
        let tz = self.tz;
        let sink = IngestSink::new(
            "events",
            self.layout.schema.clone(),
            Arc::new(move |batches| {
                let (store, lock, layout) = (store.clone(), lock.clone(), layout.clone());
                Box::pin(async move {
                    let mut ingest = EventIngest::new(store.clone());
                    // INSERT … RETURNING: keep the rows to hand back
                    let returning = super::RETURNING_ROWS.try_with(|_| ()).is_ok();
                    if returning {
                        ingest.record_written();
                    }
                    let mut n = 0u64;
                    let mut row = Vec::with_capacity(layout.cols.len());
                    for b in &batches {
                        for r in 0..b.num_rows() {
                            n += 1;
                            row.clear();
                            for (c, (name, col)) in layout.cols.iter().enumerate() {
                                let t = event_col_type(*col);
                                let v = value_at(b.column(c).as_ref(), r, t).map_err(|e| {
                                    SqlError::InvalidText(format!(
                                        "invalid value for column {name} in row {n}: {e}"
                                    ))
                                })?;
                                row.push(v);
                            }
                            ingest.push(
                                &row,
                                RowRef {
                                    n,
                                    copy_line: false,
                                },
                            )?;
                        }
                    }
                    let (n, written) = ingest.commit_returning(&lock).await?;
                    if returning {
                        super::record_returning(&written_batch(&store, &layout, tz, &written)?);
                    }
                    Ok(n)
                })
            }),
        );
        Ok(Arc::new(DataSinkExec::new(input, sink, None)))
    }

    async fn delete_from(
        &self,
        _state: &dyn Session,
        _filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(SqlError::Unsupported(
            "events are append-only: remove old days with CALL drop_events_before('YYYY-MM-DD') and a person's data with CALL delete_contact_data(channel_id, external_id)".into(),
        )
        .into())
    }

    async fn update(
        &self,
        _state: &dyn Session,
        _a: Vec<(String, Expr)>,
        _f: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(SqlError::Unsupported("events are append-only and cannot be updated".into()).into())
    }
}

/// Streams events from storage as Arrow batches.
pub struct EventsScanExec {
    store: Arc<Store>,
    layout: Arc<EventLayout>,
    projection: Vec<usize>,
    schema: SchemaRef,
    plan: EventScanPlan,
    tz: Tz,
    limit: Option<usize>,
    props: Arc<PlanProperties>,
}

impl EventsScanExec {
    fn new(
        store: Arc<Store>,
        layout: Arc<EventLayout>,
        projection: Vec<usize>,
        schema: SchemaRef,
        plan: EventScanPlan,
        tz: Tz,
        limit: Option<usize>,
    ) -> Self {
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        EventsScanExec {
            store,
            layout,
            projection,
            schema,
            plan,
            tz,
            limit,
            props,
        }
    }
}

impl fmt::Debug for EventsScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventsScanExec")
    }
}

impl DisplayAs for EventsScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CohortEventsScan: event_types={}, days={}",
            self.plan.types_desc, self.plan.days_desc
        )?;
        if let Some(c) = &self.plan.spec.contacts {
            write!(f, ", contacts={}", c.len())?;
        }
        if let Some(l) = self.limit {
            write!(f, ", limit={l}")?;
        }
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(f, ", projection=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for EventsScanExec {
    fn name(&self) -> &str {
        "EventsScanExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn with_new_children(
        self: Arc<Self>,
        _c: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }
    fn execute(
        &self,
        _partition: usize,
        _ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let (tx, rx) = tokio::sync::mpsc::channel::<DfResult<RecordBatch>>(2);
        if !self.plan.empty {
            let mut reader = BatchReader::new(
                &self.store.catalog(),
                &self.layout,
                &self.projection,
                self.schema.clone(),
                self.tz,
            );
            let store = self.store.clone();
            let spec = self.plan.spec.clone();
            let limit = self.limit;
            tokio::task::spawn_blocking(move || {
                let mut total = 0usize;
                let mut failed = false;
                let res = store.scan_events(&spec, &mut |key, val| {
                    reader.push(key.event_type, key.contact, key.ts_ms, val);
                    total += 1;
                    let at_limit = limit.is_some_and(|l| total >= l);
                    if reader.rows >= EVENT_BATCH_ROWS || at_limit {
                        match reader.finish() {
                            Ok(b) => {
                                if tx.blocking_send(Ok(b)).is_err() {
                                    return false;
                                }
                            }
                            Err(e) => {
                                let _ = tx.blocking_send(Err(e));
                                failed = true;
                                return false;
                            }
                        }
                    }
                    !at_limit
                });
                if failed {
                    return;
                }
                match res {
                    Err(e) => {
                        let _ = tx.blocking_send(Err(DataFusionError::External(Box::new(e))));
                    }
                    Ok(()) => {
                        if reader.rows > 0 {
                            let _ = tx.blocking_send(reader.finish());
                        }
                    }
                }
            });
        }
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

enum OutCol {
    ContactId(Int64Builder),
    Event(StringBuilder),
    Alias(StringBuilder),
    Date(TimestampMillisecondBuilder),
    Day(Date32Builder),
    Channel(StringBuilder),
    Prop(ColumnBuilder),
}

/// Turns stored events into Arrow batches of the projected columns.
pub struct BatchReader {
    cols: Vec<OutCol>,
    /// field id → index in `cols` (channel_id and properties).
    field_slot: Vec<Option<usize>>,
    filled: Vec<bool>,
    needs_value: bool,
    names: HashMap<u32, (String, Option<String>)>,
    schema: SchemaRef,
    tz: Tz,
    utc: bool,
    /// Rows in the current batch.
    pub rows: usize,
}

impl BatchReader {
    /// A reader producing `schema` (the projection of `layout`).
    pub fn new(
        catalog: &Catalog,
        layout: &EventLayout,
        projection: &[usize],
        schema: SchemaRef,
        tz: Tz,
    ) -> Self {
        let mut cols = Vec::new();
        let max_field = catalog
            .data()
            .event_properties
            .iter()
            .map(|p| p.id)
            .max()
            .unwrap_or(0) as usize;
        let mut field_slot = vec![None; max_field + 1];
        for (i, &p) in projection.iter().enumerate() {
            let c = match layout.cols[p].1 {
                EventCol::ContactId => {
                    OutCol::ContactId(Int64Builder::with_capacity(EVENT_BATCH_ROWS))
                }
                EventCol::Event => OutCol::Event(StringBuilder::new()),
                EventCol::EventAlias => OutCol::Alias(StringBuilder::new()),
                EventCol::EventDate => OutCol::Date(
                    TimestampMillisecondBuilder::with_capacity(EVENT_BATCH_ROWS)
                        .with_timezone(layout.tz.as_str()),
                ),
                EventCol::EventDay => OutCol::Day(Date32Builder::with_capacity(EVENT_BATCH_ROWS)),
                EventCol::ChannelId => {
                    field_slot[EVENT_CHANNEL_FIELD as usize] = Some(i);
                    OutCol::Channel(StringBuilder::new())
                }
                EventCol::Prop(fid, t) => {
                    if (fid as usize) < field_slot.len() {
                        field_slot[fid as usize] = Some(i);
                    }
                    OutCol::Prop(ColumnBuilder::new_in(t, EVENT_BATCH_ROWS, &layout.tz))
                }
            };
            cols.push(c);
        }
        let needs_value = field_slot.iter().any(|s| s.is_some());
        let names = catalog
            .data()
            .event_types
            .iter()
            .map(|t| (t.id, (t.event.clone(), t.display_name.clone())))
            .collect();
        let filled = vec![false; cols.len()];
        let utc = tz == Tz::UTC;
        BatchReader {
            cols,
            field_slot,
            filled,
            needs_value,
            names,
            schema,
            tz,
            utc,
            rows: 0,
        }
    }

    fn local_day(&self, ts: i64) -> i32 {
        if self.utc {
            return utc_day(ts);
        }
        match self.tz.timestamp_millis_opt(ts).single() {
            Some(d) => days_from_date(d.date_naive()),
            None => utc_day(ts),
        }
    }

    /// Appends one event.
    pub fn push(&mut self, event_type: u32, contact: u64, ts: i64, value: &[u8]) {
        let day = self.local_day(ts);
        for c in self.cols.iter_mut() {
            match c {
                OutCol::ContactId(b) => b.append_value(contact as i64),
                OutCol::Event(b) => match self.names.get(&event_type) {
                    Some((code, _)) => b.append_value(code),
                    None => b.append_null(),
                },
                OutCol::Alias(b) => match self.names.get(&event_type).and_then(|(_, a)| a.as_ref())
                {
                    Some(a) => b.append_value(a),
                    None => b.append_null(),
                },
                OutCol::Date(b) => b.append_value(ts),
                OutCol::Day(b) => b.append_value(day),
                OutCol::Channel(_) | OutCol::Prop(_) => {}
            }
        }
        if self.needs_value {
            for f in self.filled.iter_mut() {
                *f = false;
            }
            for (fid, v) in RowReader::new(value) {
                let Some(Some(slot)) = self.field_slot.get(fid as usize) else {
                    continue;
                };
                match (&mut self.cols[*slot], v) {
                    (OutCol::Channel(b), ValueRef::Str(s)) => b.append_value(s),
                    (OutCol::Prop(b), v) => b.append(v),
                    _ => continue,
                }
                self.filled[*slot] = true;
            }
            for (i, c) in self.cols.iter_mut().enumerate() {
                if !self.filled[i] {
                    match c {
                        OutCol::Channel(b) => b.append_null(),
                        OutCol::Prop(b) => b.append_null(),
                        _ => {}
                    }
                }
            }
        }
        self.rows += 1;
    }

    /// Finishes the current batch.
    pub fn finish(&mut self) -> DfResult<RecordBatch> {
        let arrays = self
            .cols
            .iter_mut()
            .map(|c| -> Arc<dyn datafusion::arrow::array::Array> {
                match c {
                    OutCol::ContactId(b) => Arc::new(b.finish()),
                    OutCol::Event(b) | OutCol::Alias(b) | OutCol::Channel(b) => {
                        Arc::new(b.finish())
                    }
                    OutCol::Date(b) => Arc::new(b.finish()),
                    OutCol::Day(b) => Arc::new(b.finish()),
                    OutCol::Prop(b) => b.finish(),
                }
            })
            .collect();
        let n = self.rows;
        self.rows = 0;
        if self.schema.fields().is_empty() {
            let opts = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n));
            return Ok(RecordBatch::try_new_with_options(
                Arc::new(Schema::empty()),
                vec![],
                &opts,
            )?);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

/// The rows of `written` as the `events` table shows them (every column of
/// `layout`, event_day and event_alias included): what RETURNING reads.
pub fn written_batch(
    store: &cohortdb_storage::Store,
    layout: &EventLayout,
    tz: Tz,
    written: &[crate::ingest::batch::WrittenEvent],
) -> crate::error::Result<RecordBatch> {
    let projection: Vec<usize> = (0..layout.cols.len()).collect();
    let mut reader = BatchReader::new(
        &store.catalog(),
        layout,
        &projection,
        layout.schema.clone(),
        tz,
    );
    for w in written {
        reader.push(w.event_type, w.contact, w.ts_ms, &w.props);
    }
    Ok(reader.finish()?)
}
