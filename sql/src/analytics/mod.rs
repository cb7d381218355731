//! The analytics statements FUNNEL, RETENTION, ATTRIBUTE, LTV and PATHS:
//! resolving their predicates against `event_view` / `contact_view`,
//! planning the event scan (only the event types the predicates can match,
//! only the days the statement can use), running the per-contact
//! algorithms of `cohortdb-analytics` over contact shards on two threads,
//! and shaping the result rows. The ClickHouse-style
//! aggregates `window_funnel` and `retention` and the statements as
//! aggregate functions are in `cohortdb_analytics::udaf`.
//!
//! May use: `tables` (the event scan plan), `segments` (IN GROUP),
//! `runtime`, `model`, `error`.

pub mod distributed;
pub mod parse;
pub mod relation;
pub mod scan;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use cohortdb_analytics::attribute::{AttrWindow, AttributeAcc, AttributeSpec};
use cohortdb_analytics::calendar::{period_index, period_start};
use cohortdb_analytics::funnel::{FunnelAcc, FunnelSpec, Window};
use cohortdb_analytics::ltv::{LtvAcc, LtvSpec};
use cohortdb_analytics::paths::{Anchor, PathsAcc, PathsSpec};
use cohortdb_analytics::retention::{RetentionAcc, RetentionSpec};
use cohortdb_analytics::udaf::keys::{compare_tuples, node_name};
use cohortdb_analytics::udaf::statement::sort_path_rows;
use cohortdb_analytics::{Day, Event, KeyOrder, Unit};
use cohortdb_storage::catalog::Catalog;
use cohortdb_storage::time::utc_day;
use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Expr as SqlExpr;

pub use parse::{split, AnalyticsStatement, Body, Kind, Piece};
use scan::{Dictionary, KeySource, Predicate, ScanSpec, ValueSource};

use crate::error::{Result, SqlError};
use crate::model::convert::{date_from_days, days_from_date, parse_timestamp_ms};
use crate::model::layout::{EventCol, EventLayout};
use crate::runtime::StatementContext;
use crate::tables::events::{lit_str, plan_event_scan};

/// Where a BY column comes from.
#[derive(Debug, Clone)]
enum Side {
    Event,
    Contact,
}

#[derive(Debug, Clone)]
struct ByResolved {
    name: String,
    side: Side,
    field: Field,
}

fn resolve_by(
    b: &parse::ByColumn,
    events: &Schema,
    contacts: &Schema,
    event_allowed: bool,
) -> Result<ByResolved> {
    if !b.contact && event_allowed {
        if let Ok(f) = events.field_with_name(&b.name) {
            return Ok(ByResolved {
                name: b.name.clone(),
                side: Side::Event,
                field: f.clone().with_nullable(true),
            });
        }
    }
    match contacts.field_with_name(&b.name) {
        Ok(f) => Ok(ByResolved {
            name: b.name.clone(),
            side: Side::Contact,
            field: f.clone().with_nullable(true),
        }),
        Err(_) => Err(SqlError::UndefinedColumn(format!(
            "column \"{}\" does not exist in {}",
            b.name,
            if b.contact || !event_allowed {
                "contact_view"
            } else {
                "event_view or contact_view"
            }
        ))),
    }
}

async fn view_schema(ctx: &SessionContext, name: &str) -> Result<SchemaRef> {
    Ok(ctx.table_provider(name).await?.schema())
}

fn by_columns(stmt: &AnalyticsStatement) -> Vec<parse::ByColumn> {
    match &stmt.body {
        Body::Funnel { by: Some(b), .. } => vec![b.clone()],
        Body::Ltv { group_by, .. } => group_by.clone(),
        _ => vec![],
    }
}

async fn resolve_all_by(
    sctx: &StatementContext,
    stmt: &AnalyticsStatement,
) -> Result<Vec<ByResolved>> {
    let ctx = &sctx.df;
    let ev = view_schema(ctx, "event_view").await?;
    let ct = view_schema(ctx, "contact_view").await?;
    resolve_all_by_in(stmt, &ev, &ct)
}

/// [`resolve_all_by`] against the given `event_view` and `contact_view` schemas.
fn resolve_all_by_in(
    stmt: &AnalyticsStatement,
    ev: &Schema,
    ct: &Schema,
) -> Result<Vec<ByResolved>> {
    let event_allowed = !matches!(
        &stmt.body,
        Body::Ltv {
            initial: parse::LtvInitial::Attribute(_),
            ..
        }
    );
    by_columns(stmt)
        .iter()
        .map(|b| resolve_by(b, ev, ct, event_allowed))
        .collect()
}

fn f64_field(name: &str) -> Field {
    Field::new(name, A::Float64, true)
}
fn i64_field(name: &str) -> Field {
    Field::new(name, A::Int64, true)
}

fn schema_for(kind: Kind, by: &[ByResolved]) -> SchemaRef {
    let mut fields: Vec<Field> = by.iter().map(|b| b.field.clone()).collect();
    match kind {
        Kind::Funnel => fields.extend([
            Field::new("step", A::Int32, false),
            Field::new("step_name", A::Utf8, false),
            i64_field("contacts"),
            f64_field("conversion_rate"),
            f64_field("overall_rate"),
            f64_field("median_seconds"),
            f64_field("avg_seconds"),
        ]),
        Kind::Retention => fields.extend([
            Field::new("cohort", A::Date32, true),
            i64_field("cohort_contacts"),
            Field::new("period", A::Int32, false),
            i64_field("contacts"),
            f64_field("rate"),
        ]),
        Kind::Attribute => fields.extend([
            Field::new("touch", A::Utf8, false),
            i64_field("clicks"),
            i64_field("effective_clicks"),
            f64_field("effective_rate"),
            f64_field("conversions"),
            f64_field("value"),
            f64_field("contribution"),
        ]),
        Kind::Ltv => fields.extend([
            Field::new("cohort", A::Date32, true),
            i64_field("initial_contacts"),
            i64_field("paying_contacts"),
            Field::new("period", A::Int32, false),
            f64_field("revenue"),
            f64_field("arpu"),
            f64_field("arppu"),
            i64_field("new_payers"),
        ]),
        Kind::Paths => fields.extend([
            Field::new("level", A::Int32, false),
            Field::new("node", A::Utf8, true),
            Field::new("next_node", A::Utf8, true),
            i64_field("sessions"),
        ]),
    }
    Arc::new(Schema::new(fields))
}

/// Result columns of an analytics statement (for Describe), `EXPLAIN` ones when `explain`.
pub async fn output_schema(
    sctx: &StatementContext,
    stmt: &AnalyticsStatement,
    explain: bool,
) -> Result<SchemaRef> {
    if explain {
        return Ok(explain_schema());
    }
    let by = resolve_all_by(sctx, stmt).await?;
    Ok(schema_for(stmt.kind, &by))
}

fn explain_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("plan_type", A::Utf8, false),
        Field::new("plan", A::Utf8, false),
    ]))
}

/// Compiles event-side SQL expressions against `event_view`.
struct Compiler {
    ctx: SessionContext,
    full: DFSchema,
}

impl Compiler {
    fn logical(&self, e: &SqlExpr) -> Result<Expr> {
        let state = self.ctx.state();
        Ok(state.create_logical_expr(&e.to_string(), &self.full)?)
    }
}

fn is_event_col(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == "event")
}

/// Type ids when `e` only tests the event code (`event = 'x'`, `IN`, `OR`).
fn type_only(e: &Expr, catalog: &Catalog) -> Option<Vec<u32>> {
    let id = |s: &str| catalog.event_type(s).map(|t| t.id);
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let code = if is_event_col(left) {
                lit_str(right)?
            } else if is_event_col(right) {
                lit_str(left)?
            } else {
                return None;
            };
            Some(id(&code).into_iter().collect())
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut a = type_only(left, catalog)?;
            a.extend(type_only(right, catalog)?);
            a.sort_unstable();
            a.dedup();
            Some(a)
        }
        Expr::InList(l) if !l.negated && is_event_col(&l.expr) => {
            let mut v = Vec::new();
            for x in &l.list {
                if let Some(i) = id(&lit_str(x)?) {
                    v.push(i);
                }
            }
            v.sort_unstable();
            v.dedup();
            Some(v)
        }
        _ => None,
    }
}

/// Event types a general predicate can match (None = any).
fn types_of(e: &Expr, catalog: &Catalog, tz: &chrono_tz::Tz) -> Option<Vec<u32>> {
    let conj: Vec<Expr> = split_conjunction(e).into_iter().cloned().collect();
    plan_event_scan(&conj, catalog, tz).spec.event_types
}

/// Day bounds and statement parameters computed from the statement.
struct Frame {
    from: Day,
    to: Day,
    as_of_ms: i64,
    as_of_day: Day,
    /// Local days the scan must read.
    scan: (Day, Day),
}

fn local_day_of(ms: i64, tz: &chrono_tz::Tz) -> Day {
    use chrono::TimeZone;
    match tz.timestamp_millis_opt(ms).single() {
        Some(t) => days_from_date(t.date_naive()),
        None => utc_day(ms),
    }
}

fn frame(stmt: &AnalyticsStatement, tz: &chrono_tz::Tz) -> Result<Frame> {
    let from = days_from_date(stmt.from);
    let to = days_from_date(stmt.to);
    let as_of_ms = match &stmt.as_of {
        Some(s) => parse_timestamp_ms(s.trim(), tz).ok_or_else(|| {
            SqlError::InvalidDatetime(format!(
                "invalid AS OF timestamp '{s}' (expected 'YYYY-MM-DD[ HH:MM:SS]')"
            ))
        })?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    let as_of_day = local_day_of(as_of_ms, tz);
    let periods_end =
        |unit: Unit, n: u32| period_start(unit, period_index(unit, to) + n as i32 + 1) - 1;
    let scan = match &stmt.body {
        Body::Funnel { window, strict, .. } => {
            if *strict {
                (from, to)
            } else {
                let extra = match window {
                    Window::Days(n) => *n as i32,
                    Window::Hours(h) => (*h as i32 + 23) / 24 + 1,
                };
                (from, to + extra)
            }
        }
        Body::Retention { unit, periods, .. } => (from, periods_end(*unit, *periods)),
        Body::Attribute { window, .. } => match window {
            AttrWindow::SameDay => (from, to),
            AttrWindow::Days(n) => (from - *n as i32, to),
        },
        Body::Ltv { unit, periods, .. } => (from, periods_end(*unit, *periods)),
        Body::Paths { .. } => (from, to),
    };
    Ok(Frame {
        from,
        to,
        as_of_ms,
        as_of_day,
        scan: (scan.0, scan.1.min(as_of_day)),
    })
}

/// UTC storage days covering local days `a..=b`.
fn utc_days(a: Day, b: Day, tz: &chrono_tz::Tz) -> (i32, i32) {
    use chrono::{NaiveTime, TimeZone};
    let midnight = |d: Day| {
        tz.from_local_datetime(&date_from_days(d).and_time(NaiveTime::MIN))
            .earliest()
            .map(|x| x.timestamp_millis())
            .unwrap_or(d as i64 * 86_400_000)
    };
    (utc_day(midnight(a)) - 1, utc_day(midnight(b + 1) - 1) + 1)
}

/// What the contact side contributes.
#[derive(Default)]
struct ContactSide {
    /// Members (sorted) when WHERE / IN GROUP restrict.
    members: Option<Arc<Vec<u64>>>,
    /// Per-contact group key (BY contact columns).
    keys: HashMap<u64, u32>,
    /// LTV INITIAL ATTRIBUTE times.
    initial: HashMap<u64, i64>,
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn contact_side(
    ctx: &SessionContext,
    store: &cohortdb_storage::Store,
    stmt: &AnalyticsStatement,
    by: &[ByResolved],
    dict: &Mutex<Dictionary>,
) -> Result<ContactSide> {
    let by_contact: Vec<&ByResolved> = by
        .iter()
        .filter(|b| matches!(b.side, Side::Contact))
        .collect();
    let attr = match &stmt.body {
        Body::Ltv {
            initial: parse::LtvInitial::Attribute(a),
            ..
        } => Some(a.clone()),
        _ => None,
    };
    // IN GROUP: the group's current complete membership, as a bitmap.
    let group: Option<Vec<u64>> = match &stmt.group {
        Some(g) => Some(
            crate::segments::membership::group_members(store, g)?
                .iter()
                .collect(),
        ),
        None => None,
    };
    if stmt.filter.is_none() && by_contact.is_empty() && attr.is_none() {
        return Ok(ContactSide {
            members: group.map(Arc::new),
            ..ContactSide::default()
        });
    }
    let restricts = stmt.filter.is_some() || group.is_some();
    let mut cols = vec!["id".to_string()];
    for b in &by_contact {
        cols.push(quote_ident(&b.name));
    }
    if let Some(a) = &attr {
        cols.push(quote_ident(a));
    }
    let mut conds = Vec::new();
    if let Some(f) = &stmt.filter {
        conds.push(format!("({f})"));
    }
    let sql = format!(
        "SELECT {} FROM contact_view{}",
        cols.join(", "),
        if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        }
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut side = ContactSide::default();
    let mut members = Vec::new();
    let mut d = dict.lock().expect("dict");
    for b in &batches {
        let ids = cast(b.column(0), &A::Int64)?;
        let ids = ids
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64 ids");
        let attr_col = if attr.is_some() {
            let c = b.column(b.num_columns() - 1);
            let t = match c.data_type() {
                A::Timestamp(_, _) => cast(c, &A::Timestamp(TimeUnit::Millisecond, None))?,
                A::Date32 => cast(
                    &cast(c, &A::Timestamp(TimeUnit::Millisecond, None))?,
                    &A::Timestamp(TimeUnit::Millisecond, None),
                )?,
                other => {
                    return Err(SqlError::DatatypeMismatch(format!(
                        "INITIAL ATTRIBUTE needs a TIMESTAMPTZ or DATE contact column, \"{}\" is {other}",
                        attr.as_deref().unwrap_or_default()
                    )))
                }
            };
            Some(cast(&t, &A::Int64)?)
        } else {
            None
        };
        for r in 0..b.num_rows() {
            if !ids.is_valid(r) {
                continue;
            }
            let id = ids.value(r) as u64;
            if restricts {
                members.push(id);
            }
            if !by_contact.is_empty() {
                let mut tuple = Vec::new();
                for i in 0..by_contact.len() {
                    tuple.push(ScalarValue::try_from_array(b.column(1 + i), r)?);
                }
                side.keys.insert(id, d.intern(tuple));
            }
            if let Some(a) = &attr_col {
                let a = a.as_any().downcast_ref::<Int64Array>().expect("int64");
                if a.is_valid(r) {
                    side.initial.insert(id, a.value(r));
                }
            }
        }
    }
    if restricts {
        members.sort_unstable();
        members.dedup();
        if let Some(g) = group {
            // Both sorted: keep the WHERE rows that are group members.
            if stmt.filter.is_some() {
                members.retain(|id| g.binary_search(id).is_ok());
            } else {
                members = g;
            }
        }
        side.members = Some(Arc::new(members));
    }
    Ok(side)
}

enum Acc {
    Funnel(FunnelAcc),
    Retention(RetentionAcc),
    Attribute(AttributeAcc),
    Ltv(LtvAcc),
    Paths(PathsAcc),
}

impl Acc {
    fn merge(&mut self, other: Acc) {
        match (self, other) {
            (Acc::Funnel(a), Acc::Funnel(b)) => a.merge(b),
            (Acc::Retention(a), Acc::Retention(b)) => a.merge(b),
            (Acc::Attribute(a), Acc::Attribute(b)) => a.merge(b),
            (Acc::Ltv(a), Acc::Ltv(b)) => a.merge(b),
            (Acc::Paths(a), Acc::Paths(b)) => a.merge(b),
            _ => unreachable!("accumulators of one statement"),
        }
    }
}

/// An event-side expression to compile.
enum Want<'a> {
    Pred(&'a SqlExpr),
    Never,
}

/// Executes an analytics statement (or explains it); a trailing
/// `ORDER BY … LIMIT … OFFSET …` is applied to the rows the statement made.
pub async fn execute(
    sctx: &StatementContext,
    stmt: &AnalyticsStatement,
    explain: bool,
) -> Result<RecordBatch> {
    let batch = compute(sctx, stmt, explain).await?;
    match &stmt.tail {
        Some(tail) if !explain => {
            let ctx = SessionContext::new();
            ctx.register_batch("analytics_result", batch)?;
            let df = ctx
                .sql(&format!("SELECT * FROM analytics_result {tail}"))
                .await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let rows = df.collect().await?;
            Ok(datafusion::arrow::compute::concat_batches(&schema, &rows)?)
        }
        _ => Ok(batch),
    }
}

async fn compute(
    sctx: &StatementContext,
    stmt: &AnalyticsStatement,
    explain: bool,
) -> Result<RecordBatch> {
    if let Some(p) = stmt.from_param.or(stmt.to_param) {
        return Err(SqlError::UndefinedParameter(format!(
            "there is no parameter ${p}"
        )));
    }
    let ctx = sctx.df.clone();
    let tz = sctx.tz;
    let store = sctx.store.clone();
    let catalog = store.catalog();
    let layout = Arc::new(EventLayout::new_in(&catalog, true, tz.name()));
    let by = resolve_all_by(sctx, stmt).await?;
    let out_schema = schema_for(stmt.kind, &by);
    let fr = frame(stmt, &tz)?;
    let full = DFSchema::try_from(layout.schema.as_ref().clone())?;
    let comp = Compiler {
        ctx: ctx.clone(),
        full,
    };

    // Predicates by mask bit, VALUE, event keys.
    let mut wants: Vec<Want> = Vec::new();
    let mut value_expr: Option<&SqlExpr> = None;
    let mut key_cols: Vec<String> = by
        .iter()
        .filter(|b| matches!(b.side, Side::Event))
        .map(|b| b.name.clone())
        .collect();
    let mut paths_by: Option<String> = None;
    match &stmt.body {
        Body::Funnel { steps, .. } => wants.extend(steps.iter().map(|s| Want::Pred(&s.expr))),
        Body::Retention { initial, ret, .. } => {
            wants.push(Want::Pred(initial));
            wants.push(Want::Pred(ret));
        }
        Body::Attribute {
            target,
            value,
            touches,
            ..
        } => {
            wants.push(Want::Pred(target));
            wants.extend(touches.iter().map(|t| Want::Pred(&t.expr)));
            value_expr = value.as_ref();
        }
        Body::Ltv {
            initial,
            revenue,
            value,
            ..
        } => {
            match initial {
                parse::LtvInitial::Event(e) => wants.push(Want::Pred(e)),
                parse::LtvInitial::Attribute(_) => wants.push(Want::Never),
            }
            wants.push(Want::Pred(revenue));
            value_expr = Some(value);
        }
        Body::Paths {
            events,
            anchor_expr,
            anchor,
            by: pb,
            ..
        } => {
            wants.push(Want::Pred(events));
            match (anchor, anchor_expr) {
                (Anchor::Start, Some(e)) => {
                    wants.push(Want::Pred(e));
                    wants.push(Want::Never);
                }
                (Anchor::End, Some(e)) => {
                    wants.push(Want::Never);
                    wants.push(Want::Pred(e));
                }
                _ => {}
            }
            paths_by = pb.clone();
            key_cols.clear();
        }
    }

    // Logical plans, column needs, fast paths.
    let mut logical: Vec<Option<Expr>> = Vec::new();
    let mut needed: HashSet<String> = HashSet::new();
    let mut predicates: Vec<Option<Predicate>> = Vec::new();
    let mut scan_types: Option<HashSet<u32>> = Some(HashSet::new());
    for w in &wants {
        match w {
            Want::Never => {
                logical.push(None);
                predicates.push(Some(Predicate::Never));
            }
            Want::Pred(e) => {
                let l = comp.logical(e)?;
                match type_only(&l, &catalog) {
                    Some(ids) => {
                        if let Some(s) = scan_types.as_mut() {
                            s.extend(ids.iter().copied());
                        }
                        predicates.push(Some(Predicate::Types(ids)));
                        logical.push(None);
                    }
                    None => {
                        match types_of(&l, &catalog, &tz) {
                            Some(ids) => {
                                if let Some(s) = scan_types.as_mut() {
                                    s.extend(ids);
                                }
                            }
                            None => scan_types = None,
                        }
                        for c in l.column_refs() {
                            needed.insert(c.name.clone());
                        }
                        predicates.push(None);
                        logical.push(Some(l));
                    }
                }
            }
        }
    }
    // VALUE: a stored numeric property is read straight from the row.
    let mut value_src: Option<ValueSource> = None;
    let mut value_logical: Option<Expr> = None;
    if let Some(v) = value_expr {
        let l = comp.logical(v)?;
        let direct = match &l {
            Expr::Column(c) => match layout.index_of(&c.name).map(|i| layout.cols[i].1) {
                Some(EventCol::Prop(fid, t))
                    if matches!(
                        t,
                        cohortdb_storage::DataType::Bigint | cohortdb_storage::DataType::Double
                    ) =>
                {
                    Some(fid)
                }
                Some(EventCol::Prop(_, t)) => {
                    return Err(SqlError::DatatypeMismatch(format!(
                        "VALUE must be numeric; \"{}\" is {}",
                        c.name,
                        t.sql_name()
                    )))
                }
                _ => None,
            },
            _ => None,
        };
        match direct {
            Some(fid) => value_src = Some(ValueSource::Field(fid)),
            None => {
                for c in l.column_refs() {
                    needed.insert(c.name.clone());
                }
                value_logical = Some(l);
            }
        }
    }
    let mut key_logical: Vec<Expr> = Vec::new();
    for c in key_cols.iter().chain(paths_by.iter()) {
        if layout.index_of(c).is_none() {
            return Err(SqlError::UndefinedColumn(format!(
                "column \"{c}\" does not exist in event_view"
            )));
        }
        needed.insert(c.clone());
        key_logical.push(Expr::Column(datafusion::common::Column::new_unqualified(c)));
    }

    // Projection of the needed columns, and physical expressions over it.
    let mut projection: Vec<usize> = needed.iter().filter_map(|n| layout.index_of(n)).collect();
    projection.sort_unstable();
    let proj_schema = Arc::new(layout.schema.project(&projection)?);
    let proj_df = DFSchema::try_from(proj_schema.as_ref().clone())?;
    let state = ctx.state();
    let physical = |e: &Expr| -> Result<Arc<dyn PhysicalExpr>> {
        Ok(state.create_physical_expr(e.clone(), &proj_df)?)
    };
    let predicates: Vec<Predicate> = predicates
        .into_iter()
        .zip(logical.iter())
        .map(|(p, l)| match (p, l) {
            (Some(p), _) => Ok(p),
            (None, Some(l)) => Ok(Predicate::Expr(physical(l)?)),
            (None, None) => Ok(Predicate::Never),
        })
        .collect::<Result<_>>()?;
    if let Some(l) = &value_logical {
        value_src = Some(ValueSource::Expr(physical(l)?));
    }
    let key = if matches!(stmt.kind, Kind::Paths) {
        Some(match key_logical.first() {
            Some(l) => KeySource::TypeAndExpr(physical(l)?),
            None => KeySource::EventType,
        })
    } else if key_logical.is_empty() {
        None
    } else {
        Some(KeySource::Exprs(
            key_logical.iter().map(&physical).collect::<Result<_>>()?,
        ))
    };

    let mut types: Vec<u32> = match scan_types {
        Some(s) => s.into_iter().collect(),
        None => catalog.data().event_types.iter().map(|t| t.id).collect(),
    };
    types.sort_unstable();
    let dict = Arc::new(Mutex::new(Dictionary::new()));
    let utc = utc_days(fr.scan.0, fr.scan.1, &tz);
    let max_contact = store.max_contact_id();
    let shard_width = (max_contact / 64).clamp(1024, 65536);

    if explain {
        let mut logical_text = format!("{}: from={} to={}", stmt.kind.name(), stmt.from, stmt.to);
        for (i, w) in wants.iter().enumerate() {
            if let Want::Pred(e) = w {
                let _ = write!(logical_text, "\n  predicate[{i}]: {e}");
            }
        }
        if let Some(f) = &stmt.filter {
            let _ = write!(logical_text, "\n  contacts: WHERE {f}");
        }
        if let Some(g) = &stmt.group {
            let _ = write!(logical_text, "\n  contacts: IN GROUP {g}");
        }
        let mut codes: Vec<String> = types
            .iter()
            .filter_map(|t| catalog.event_type_by_id(*t).map(|d| d.event.clone()))
            .collect();
        codes.sort();
        let physical_text = format!(
            "CohortAnalyticsExec: {}, threads=2, shard_width={}\n  CohortEventsScan: event_types=[{}], days=[{}..{}], projection=[{}]",
            stmt.kind.name(),
            shard_width,
            codes.join(", "),
            date_from_days(fr.scan.0),
            date_from_days(fr.scan.1),
            projection
                .iter()
                .map(|i| layout.cols[*i].0.clone())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(RecordBatch::try_new(
            explain_schema(),
            vec![
                Arc::new(StringArray::from(vec!["logical_plan", "physical_plan"])),
                Arc::new(StringArray::from(vec![logical_text, physical_text])),
            ],
        )?);
    }

    let side = contact_side(&ctx, &store, stmt, &by, &dict).await?;
    let visit_all = if side.initial.is_empty() {
        None
    } else {
        let mut v: Vec<u64> = side.initial.keys().copied().collect();
        v.sort_unstable();
        Some(Arc::new(v))
    };
    let spec = ScanSpec {
        store: store.clone(),
        catalog: catalog.clone(),
        layout: layout.clone(),
        projection,
        schema: proj_schema,
        tz,
        predicates,
        value: value_src,
        value_mask: match stmt.kind {
            Kind::Attribute => 1,
            Kind::Ltv => 2,
            _ => u32::MAX,
        },
        key,
        utc_days: utc,
        local_days: fr.scan,
        types,
        as_of_ms: fr.as_of_ms,
        contacts: side.members.clone(),
        visit_all,
        dict: dict.clone(),
        max_contact,
        shard_width,
    };
    // GROUP BY event and contact columns together: each event's key becomes
    // the pair (its event tuple, its contact's tuple).
    let mixed =
        (!key_cols.is_empty() && by.iter().any(|b| matches!(b.side, Side::Contact))).then(|| {
            let null_contact: Vec<ScalarValue> = by
                .iter()
                .filter(|b| matches!(b.side, Side::Contact))
                .map(|b| null_of(b.field.data_type()))
                .collect();
            Arc::new(MixedKeys::new(
                dict.lock().expect("dict").intern(null_contact),
            ))
        });
    // How keys compare where a kernel picks "the smallest": by the values
    // behind the interned ids (ids follow arrival order), as the
    // distributed aggregates do.
    let key_order = match (&spec.key, &mixed) {
        (None, _) => KeyOrder::ids(),
        (Some(KeySource::EventType), _) => {
            let codes: HashMap<u32, String> = catalog
                .data()
                .event_types
                .iter()
                .map(|t| (t.id, t.event.clone()))
                .collect();
            KeyOrder::by(move |a, b| codes.get(&a).cmp(&codes.get(&b)))
        }
        (Some(_), Some(m)) => {
            let (m, d) = (m.clone(), dict.clone());
            KeyOrder::by(move |a, b| m.compare(a, b, &d))
        }
        (Some(_), None) => {
            let d = dict.clone();
            KeyOrder::by(move |a, b| {
                let d = d.lock().expect("dict");
                let empty = Vec::new();
                compare_tuples(
                    d.values.get(a as usize).unwrap_or(&empty),
                    d.values.get(b as usize).unwrap_or(&empty),
                )
            })
        }
    };
    let side = Arc::new(side);
    let body = stmt.body.clone();
    let (from, to, as_of_day) = (fr.from, fr.to, fr.as_of_day);
    let make_acc = move || -> Acc {
        match &body {
            Body::Funnel {
                steps,
                window,
                strict,
                ..
            } => Acc::Funnel(
                FunnelAcc::new(FunnelSpec {
                    steps: steps.len(),
                    window: *window,
                    from,
                    to,
                    strict: *strict,
                })
                .with_key_order(key_order.clone()),
            ),
            Body::Retention {
                unit,
                periods,
                churn,
                ..
            } => Acc::Retention(RetentionAcc::new(RetentionSpec {
                unit: *unit,
                periods: *periods,
                from,
                to,
                churn: *churn,
                as_of_day,
            })),
            Body::Attribute {
                touches,
                window,
                model,
                include_direct,
                value,
                ..
            } => Acc::Attribute(AttributeAcc::new(AttributeSpec {
                touches: touches.len(),
                window: *window,
                model: *model,
                from,
                to,
                include_direct: *include_direct,
                has_value: value.is_some(),
            })),
            Body::Ltv { unit, periods, .. } => Acc::Ltv(
                LtvAcc::new(LtvSpec {
                    unit: *unit,
                    periods: *periods,
                    from,
                    to,
                    as_of_day,
                })
                .with_key_order(key_order.clone()),
            ),
            Body::Paths {
                gap_ms,
                anchor,
                merge_repeats,
                depth,
                ..
            } => Acc::Paths(
                PathsAcc::new(PathsSpec {
                    gap_ms: *gap_ms,
                    from,
                    to,
                    anchor: *anchor,
                    merge_repeats: *merge_repeats,
                    depth: *depth,
                })
                .with_key_order(key_order.clone()),
            ),
        }
    };
    let side2 = side.clone();
    let mixed2 = mixed.clone();
    let attr_mode = matches!(
        &stmt.body,
        Body::Ltv {
            initial: parse::LtvInitial::Attribute(_),
            ..
        }
    );
    let tz2 = tz;
    let interrupt = sctx.interrupt.clone();
    let accs = tokio::task::spawn_blocking(move || -> Result<Vec<Acc>> {
        scan::run(
            &spec,
            2,
            &|| interrupt.check(),
            &make_acc,
            &|acc: &mut Acc, contact: u64, evs: &[Event]| {
                let mut ck = side2.keys.get(&contact).copied();
                let paired;
                let evs = match &mixed2 {
                    Some(m) => {
                        paired = m.pair(evs, ck);
                        ck = None;
                        &paired[..]
                    }
                    None => evs,
                };
                match acc {
                    Acc::Funnel(a) => a.add_contact(evs, ck),
                    Acc::Retention(a) => a.add_contact(evs),
                    Acc::Attribute(a) => a.add_contact(evs),
                    Acc::Ltv(a) => {
                        if attr_mode {
                            if let Some(ts) = side2.initial.get(&contact) {
                                a.add_contact(evs, Some((*ts, local_day_of(*ts, &tz2))), ck);
                            }
                        } else {
                            a.add_contact(evs, None, ck);
                        }
                    }
                    Acc::Paths(a) => a.add_contact(evs),
                }
                Ok(())
            },
        )
    })
    .await
    .map_err(|e| SqlError::Unsupported(format!("analytics task failed: {e}")))??;
    let mut it = accs.into_iter();
    let mut acc = it.next().expect("at least one worker");
    for a in it {
        acc.merge(a);
    }
    let mut dict = std::mem::take(&mut *dict.lock().expect("dict"));
    if let Some(m) = mixed {
        dict = m.dictionary(&by, &dict);
    }
    build_output(stmt, &acc, &by, &dict, &catalog, out_schema)
}

/// Group keys of a GROUP BY mixing event and contact columns: the event
/// tuple (interned by the scan) and the contact tuple (interned by
/// [`contact_side`]) of each event, paired under one id.
struct MixedKeys {
    /// Dictionary id of the contact tuple of all NULLs (a contact without a row).
    null_contact: u32,
    /// (event tuple id, contact tuple id) → pair id (from 1), and back
    /// (index id − 1).
    pairs: Mutex<(HashMap<(u32, u32), u32>, Vec<(u32, u32)>)>,
}

impl MixedKeys {
    fn new(null_contact: u32) -> Self {
        MixedKeys {
            null_contact,
            pairs: Mutex::new((HashMap::new(), Vec::new())),
        }
    }

    /// `evs` with each key replaced by the id of (its key, `contact_key`).
    fn pair(&self, evs: &[Event], contact_key: Option<u32>) -> Vec<Event> {
        let ck = contact_key.unwrap_or(self.null_contact);
        let mut guard = self.pairs.lock().expect("pairs");
        let (pairs, back) = &mut *guard;
        evs.iter()
            .map(|e| {
                let key = *pairs.entry((e.key, ck)).or_insert_with(|| {
                    back.push((e.key, ck));
                    back.len() as u32
                });
                Event { key, ..*e }
            })
            .collect()
    }

    /// Orders two pair ids by their values: the event tuple, then the
    /// contact tuple (within one contact, the `GROUP BY` order).
    fn compare(&self, a: u32, b: u32, dict: &Mutex<Dictionary>) -> std::cmp::Ordering {
        let (pa, pb) = {
            let guard = self.pairs.lock().expect("pairs");
            let get = |id: u32| {
                (id as usize)
                    .checked_sub(1)
                    .and_then(|i| guard.1.get(i))
                    .copied()
            };
            (get(a), get(b))
        };
        let (Some(pa), Some(pb)) = (pa, pb) else {
            return a.cmp(&b);
        };
        let d = dict.lock().expect("dict");
        let empty = Vec::new();
        let v = |id: u32| d.values.get(id as usize).unwrap_or(&empty);
        compare_tuples(v(pa.0), v(pb.0)).then_with(|| compare_tuples(v(pa.1), v(pb.1)))
    }

    /// The dictionary of pair ids: each value the tuple in `by` order.
    fn dictionary(&self, by: &[ByResolved], parts: &Dictionary) -> Dictionary {
        let guard = self.pairs.lock().expect("pairs");
        let pairs = &guard.0;
        let mut values = vec![Vec::new(); pairs.len() + 1];
        for (&(ek, ck), &id) in pairs.iter() {
            let empty = Vec::new();
            let ev = parts.values.get(ek as usize).unwrap_or(&empty);
            let ct = parts.values.get(ck as usize).unwrap_or(&empty);
            let (mut ei, mut ci) = (0, 0);
            values[id as usize] = by
                .iter()
                .map(|b| {
                    let (tuple, i) = match b.side {
                        Side::Event => (ev, &mut ei),
                        Side::Contact => (ct, &mut ci),
                    };
                    let v = tuple.get(*i).cloned();
                    *i += 1;
                    v.unwrap_or_else(|| null_of(b.field.data_type()))
                })
                .collect();
        }
        Dictionary::from_values(values)
    }
}

fn null_of(t: &A) -> ScalarValue {
    ScalarValue::try_from(t).unwrap_or(ScalarValue::Null)
}

/// Sort order of group keys by their values (element by element, NULLs
/// last: `ORDER BY k1 NULLS LAST, k2 NULLS LAST`).
fn key_order(keys: &mut [u32], dict: &Dictionary) {
    let empty = Vec::new();
    keys.sort_by(|a, b| {
        compare_tuples(
            dict.values.get(*a as usize).unwrap_or(&empty),
            dict.values.get(*b as usize).unwrap_or(&empty),
        )
    });
}

fn key_columns(by: &[ByResolved], row_keys: &[u32], dict: &Dictionary) -> Result<Vec<ArrayRef>> {
    let mut cols = Vec::new();
    for (i, b) in by.iter().enumerate() {
        let vals: Vec<ScalarValue> = row_keys
            .iter()
            .map(|k| {
                dict.values
                    .get(*k as usize)
                    .and_then(|t| t.get(i).cloned())
                    .unwrap_or_else(|| null_of(b.field.data_type()))
            })
            .map(|v| {
                if v.is_null() {
                    null_of(b.field.data_type())
                } else {
                    v
                }
            })
            .collect();
        let arr = if vals.is_empty() {
            datafusion::arrow::array::new_empty_array(b.field.data_type())
        } else {
            ScalarValue::iter_to_array(vals)?
        };
        let arr = if arr.data_type() != b.field.data_type() {
            cast(&arr, b.field.data_type())?
        } else {
            arr
        };
        cols.push(arr);
    }
    Ok(cols)
}

fn label_of(l: &parse::Labeled, prefix: &str, k: usize) -> String {
    l.label.clone().unwrap_or_else(|| format!("{prefix} {k}"))
}

fn build_output(
    stmt: &AnalyticsStatement,
    acc: &Acc,
    by: &[ByResolved],
    dict: &Dictionary,
    catalog: &Catalog,
    schema: SchemaRef,
) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = Vec::new();
    match (acc, &stmt.body) {
        (Acc::Funnel(a), Body::Funnel { steps, .. }) => {
            let mut rows = a.rows(!by.is_empty());
            let mut keys: Vec<u32> = rows.iter().map(|r| r.key).collect();
            keys.dedup();
            let mut uniq: Vec<u32> = keys.clone();
            uniq.sort_unstable();
            uniq.dedup();
            key_order(&mut uniq, dict);
            let pos: HashMap<u32, usize> = uniq.iter().enumerate().map(|(i, k)| (*k, i)).collect();
            rows.sort_by_key(|r| (pos.get(&r.key).copied().unwrap_or(0), r.step));
            let row_keys: Vec<u32> = rows.iter().map(|r| r.key).collect();
            cols.extend(key_columns(by, &row_keys, dict)?);
            cols.push(Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.step as i32),
            )));
            cols.push(Arc::new(StringArray::from_iter_values(
                rows.iter()
                    .map(|r| label_of(&steps[r.step - 1], "step", r.step)),
            )));
            cols.push(Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.contacts as i64),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.conversion_rate),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.overall_rate),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.median_seconds),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.avg_seconds),
            )));
        }
        (Acc::Retention(a), _) => {
            let rows = a.rows();
            cols.push(Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| r.cohort),
            )));
            cols.push(Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.cohort_contacts as i64),
            )));
            cols.push(Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.period as i32),
            )));
            cols.push(Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.contacts.map(|c| c as i64)),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.rate),
            )));
        }
        (Acc::Attribute(a), Body::Attribute { touches, .. }) => {
            let rows = a.rows();
            cols.push(Arc::new(StringArray::from_iter_values(rows.iter().map(
                |r| match r.touch {
                    Some(i) => label_of(&touches[i], "touch", i + 1),
                    None => "direct".to_string(),
                },
            ))));
            cols.push(Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.clicks.map(|c| c as i64)),
            )));
            cols.push(Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.effective_clicks.map(|c| c as i64)),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.effective_rate),
            )));
            cols.push(Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.conversions),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.value),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.contribution),
            )));
        }
        (Acc::Ltv(a), _) => {
            let mut rows = a.rows();
            let mut uniq: Vec<u32> = rows.iter().map(|r| r.key).collect();
            uniq.sort_unstable();
            uniq.dedup();
            key_order(&mut uniq, dict);
            let pos: HashMap<u32, usize> = uniq.iter().enumerate().map(|(i, k)| (*k, i)).collect();
            rows.sort_by_key(|r| {
                (
                    pos.get(&r.key).copied().unwrap_or(0),
                    r.cohort.is_none(),
                    r.cohort.unwrap_or(0),
                    r.period,
                )
            });
            let row_keys: Vec<u32> = rows.iter().map(|r| r.key).collect();
            cols.extend(key_columns(by, &row_keys, dict)?);
            cols.push(Arc::new(Date32Array::from_iter(
                rows.iter().map(|r| r.cohort),
            )));
            cols.push(Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.initial_contacts as i64),
            )));
            cols.push(Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.paying_contacts as i64),
            )));
            cols.push(Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.period as i32),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.revenue),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.arpu),
            )));
            cols.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.arppu),
            )));
            cols.push(Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.new_payers.map(|c| c as i64)),
            )));
        }
        (Acc::Paths(a), Body::Paths { by: pb, .. }) => {
            let rows = a.rows();
            let name = |id: u32| -> String {
                if pb.is_some() {
                    dict.values
                        .get(id as usize)
                        .map(|t| node_name(t))
                        .unwrap_or_default()
                } else {
                    catalog
                        .event_type_by_id(id)
                        .map(|t| t.event.clone())
                        .unwrap_or_default()
                }
            };
            let mut named: Vec<(u32, String, Option<String>, u64)> = rows
                .iter()
                .map(|r| (r.level, name(r.node), r.next.map(name), r.sessions))
                .collect();
            sort_path_rows(&mut named);
            cols.push(Arc::new(Int32Array::from_iter_values(
                named.iter().map(|r| r.0 as i32),
            )));
            cols.push(Arc::new(StringArray::from_iter(
                named.iter().map(|r| Some(r.1.clone())),
            )));
            cols.push(Arc::new(StringArray::from_iter(
                named.iter().map(|r| r.2.clone()),
            )));
            cols.push(Arc::new(Int64Array::from_iter_values(
                named.iter().map(|r| r.3 as i64),
            )));
        }
        _ => unreachable!("accumulator matches statement"),
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}
