//! Relations of groups and tags: the `groups`, `tags` and `tag_history`
//! tables, and the `group_*` / `tag_*` columns of `contact_view` with bitmap
//! pushdown of group predicates (`WHERE group_a AND NOT group_b`,
//! `in_group(id, 'group_a')`): the scan reads only the contacts of the
//! combined bitmap, and `count(*)` is the bitmap's cardinality.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cohortdb_storage::keys::BITMAP_GROUP;
use cohortdb_storage::{GroupDef, Store, TagDef};
use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, Date32Builder, Int64Array, Int64Builder,
    RecordBatch, RecordBatchOptions, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::ScalarValue;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use roaring::RoaringTreemap;

use super::memory_exec;
use crate::error::{Result, SqlError};
use crate::model::convert::arrow_type_in;
use crate::model::layout::ContactLayout;
use crate::tables::contacts::{contact_batches, ids_from_filters};

fn ext<E: std::error::Error + Send + Sync + 'static>(e: E) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn ts_type(tz: &str) -> A {
    arrow_type_in(cohortdb_storage::DataType::Timestamptz, tz)
}

/// Which of the three relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupsKind {
    /// `groups`.
    Groups,
    /// `tags`.
    Tags,
    /// `tag_history`.
    TagHistory,
}

/// `groups`, `tags` or `tag_history`: built in memory from the catalog.
#[derive(Debug)]
pub struct GroupsTable {
    store: Arc<Store>,
    kind: GroupsKind,
    tz: Arc<str>,
}

impl GroupsTable {
    /// The relation `kind`; timestamps carry time zone `tz`.
    pub fn new(store: Arc<Store>, kind: GroupsKind, tz: Arc<str>) -> Self {
        GroupsTable { store, kind, tz }
    }

    fn build(&self) -> Result<RecordBatch> {
        let cat = self.store.catalog();
        let schema = self.schema();
        let tz = self.tz.as_ref();
        let cols: Vec<ArrayRef> = match self.kind {
            GroupsKind::Groups => {
                let gs = &cat.data().groups;
                let mut members = Int64Builder::new();
                for g in gs {
                    // the current complete membership (static edits and
                    // deleted contacts included)
                    let n = self.store.read_bitmap(BITMAP_GROUP, g.id, g.version)?.len();
                    members.append_value(n as i64);
                }
                let mut at = TimestampMillisecondBuilder::new().with_timezone(tz);
                for g in gs {
                    at.append_option(g.computed_at_ms);
                }
                vec![
                    strings(gs.iter().map(|g| Some(g.name.clone()))),
                    strings(
                        gs.iter()
                            .map(|g| Some(g.comment.clone().unwrap_or(g.name.clone()))),
                    ),
                    strings(gs.iter().map(|g| Some(g.kind.as_str().to_string()))),
                    strings(gs.iter().map(|g| g.definition.clone())),
                    strings(gs.iter().map(|g| Some(g.refresh.as_str().to_string()))),
                    strings(gs.iter().map(|g| Some(g.status.as_str().to_string()))),
                    Arc::new(members.finish()),
                    Arc::new(at.finish()),
                    strings(gs.iter().map(|g| g.error.clone())),
                ]
            }
            GroupsKind::Tags => {
                let ts = &cat.data().tags;
                let mut at = TimestampMillisecondBuilder::new().with_timezone(tz);
                for t in ts {
                    at.append_option(t.computed_at_ms);
                }
                vec![
                    strings(ts.iter().map(|t| Some(t.name.clone()))),
                    strings(
                        ts.iter()
                            .map(|t| Some(t.comment.clone().unwrap_or(t.name.clone()))),
                    ),
                    strings(ts.iter().map(|t| {
                        Some(
                            if t.external_id_type.is_some() {
                                "external"
                            } else {
                                "sql"
                            }
                            .into(),
                        )
                    })),
                    strings(ts.iter().map(|t| Some(t.data_type.sql_name().to_string()))),
                    strings(ts.iter().map(|t| t.definition.clone())),
                    strings(ts.iter().map(|t| Some(t.refresh.as_str().to_string()))),
                    strings(ts.iter().map(|t| Some(t.status.as_str().to_string()))),
                    Arc::new(Int64Array::from_iter_values(
                        ts.iter().map(|t| t.members as i64),
                    )),
                    Arc::new(at.finish()),
                    strings(ts.iter().map(|t| t.error.clone())),
                    strings(ts.iter().map(|t| t.external_id_type.clone())),
                ]
            }
            GroupsKind::TagHistory => {
                let names: HashMap<u32, String> = cat
                    .data()
                    .tags
                    .iter()
                    .map(|t| (t.id, t.name.clone()))
                    .collect();
                let (mut tag, mut day, mut value, mut n) = (
                    StringBuilder::new(),
                    Date32Builder::new(),
                    StringBuilder::new(),
                    Int64Builder::new(),
                );
                let mut err = None;
                self.store.scan_tag_history(&mut |tid, d, bytes| {
                    let Some(name) = names.get(&tid) else {
                        return true;
                    };
                    match serde_json::from_slice::<Vec<(String, u64)>>(bytes) {
                        Ok(counts) => {
                            for (v, c) in counts {
                                tag.append_value(name);
                                day.append_value(d);
                                value.append_value(v);
                                n.append_value(c as i64);
                            }
                            true
                        }
                        Err(e) => {
                            err = Some(e);
                            false
                        }
                    }
                })?;
                if let Some(e) = err {
                    return Err(cohortdb_storage::StorageError::from(e).into());
                }
                vec![
                    Arc::new(tag.finish()),
                    Arc::new(day.finish()),
                    Arc::new(value.finish()),
                    Arc::new(n.finish()),
                ]
            }
        };
        Ok(RecordBatch::try_new(schema, cols)?)
    }
}

fn strings(it: impl Iterator<Item = Option<String>>) -> ArrayRef {
    let mut b = StringBuilder::new();
    for s in it {
        b.append_option(s);
    }
    Arc::new(b.finish())
}

#[async_trait::async_trait]
impl TableProvider for GroupsTable {
    fn schema(&self) -> SchemaRef {
        let s = |n: &str, nullable: bool| Field::new(n, A::Utf8, nullable);
        let tz = self.tz.as_ref();
        Arc::new(Schema::new(match self.kind {
            GroupsKind::Groups => vec![
                s("id", false),
                s("name", false),
                s("kind", false),
                s("definition", true),
                s("refresh", false),
                s("status", false),
                Field::new("members", A::Int64, false),
                Field::new("computed_at", ts_type(tz), true),
                s("error", true),
            ],
            GroupsKind::Tags => vec![
                s("id", false),
                s("name", false),
                s("kind", false),
                s("type", false),
                s("definition", true),
                s("refresh", false),
                s("status", false),
                Field::new("members", A::Int64, false),
                Field::new("computed_at", ts_type(tz), true),
                s("error", true),
                s("id_type", true),
            ],
            GroupsKind::TagHistory => vec![
                s("tag_id", false),
                Field::new("computed_day", A::Date32, false),
                s("value", false),
                Field::new("contacts", A::Int64, false),
            ],
        }))
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self.build().map_err(DataFusionError::from)?;
        memory_exec(self.schema(), vec![batch], projection)
    }
}

// ---------------------------------------------------------------------------
// contact_view columns

/// The group and tag columns `contact_view` adds after the contact fields.
#[derive(Debug, Clone)]
pub struct ViewExtras {
    /// Groups, in catalog order (one BOOLEAN column each).
    pub groups: Vec<GroupDef>,
    /// Tags, in catalog order (one typed column each).
    pub tags: Vec<TagDef>,
    /// The whole view schema (contact fields, then groups, then tags).
    pub schema: SchemaRef,
}

impl ViewExtras {
    /// Extras of the current catalog on top of `layout`.
    pub fn new(store: &Store, layout: &ContactLayout) -> ViewExtras {
        let cat = store.catalog();
        let groups = cat.data().groups.clone();
        let tags = cat.data().tags.clone();
        let mut fields: Vec<Field> = layout
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for g in &groups {
            fields.push(Field::new(&g.name, A::Boolean, true));
        }
        for t in &tags {
            fields.push(Field::new(
                &t.name,
                crate::segments::tags::arrow_type(t.data_type, &layout.tz),
                true,
            ));
        }
        ViewExtras {
            groups,
            tags,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    fn group(&self, name: &str) -> Option<&GroupDef> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// A set of contacts, or everything but a set.
#[derive(Debug, Clone)]
pub enum Bits {
    /// Exactly these contacts.
    Pos(RoaringTreemap),
    /// Every contact except these.
    Comp(RoaringTreemap),
}

impl Bits {
    fn not(self) -> Bits {
        match self {
            Bits::Pos(s) => Bits::Comp(s),
            Bits::Comp(s) => Bits::Pos(s),
        }
    }
    fn and(self, o: Bits) -> Bits {
        match (self, o) {
            (Bits::Pos(a), Bits::Pos(b)) => Bits::Pos(a & b),
            (Bits::Pos(a), Bits::Comp(b)) | (Bits::Comp(b), Bits::Pos(a)) => Bits::Pos(a - b),
            (Bits::Comp(a), Bits::Comp(b)) => Bits::Comp(a | b),
        }
    }
    fn or(self, o: Bits) -> Bits {
        match (self, o) {
            (Bits::Pos(a), Bits::Pos(b)) => Bits::Pos(a | b),
            (Bits::Pos(a), Bits::Comp(b)) | (Bits::Comp(b), Bits::Pos(a)) => Bits::Comp(b - a),
            (Bits::Comp(a), Bits::Comp(b)) => Bits::Comp(a & b),
        }
    }
}

/// The group a leaf names: a `group_*` column or `in_group(id, 'group_x')`.
fn leaf_group(e: &Expr, extras: &ViewExtras) -> Option<String> {
    match e {
        Expr::Column(c) if extras.group(&c.name).is_some() => Some(c.name.clone()),
        Expr::ScalarFunction(f) if f.name() == "in_group" && f.args.len() == 2 => {
            match (&f.args[0], &f.args[1]) {
                (
                    Expr::Column(c),
                    Expr::Literal(ScalarValue::Utf8(Some(g)) | ScalarValue::Utf8View(Some(g)), _),
                ) if c.name == "id" => Some(g.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// True when `e` is answered by bitmap operations.
pub fn pushable(e: &Expr, extras: &ViewExtras) -> bool {
    match e {
        Expr::Not(x) | Expr::IsTrue(x) | Expr::IsFalse(x) => pushable(x, extras),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => pushable(left, extras) && pushable(right, extras),
            Operator::Eq | Operator::NotEq => {
                (leaf_group(left, extras).is_some()
                    && matches!(
                        right.as_ref(),
                        Expr::Literal(ScalarValue::Boolean(Some(_)), _)
                    ))
                    || (leaf_group(right, extras).is_some()
                        && matches!(
                            left.as_ref(),
                            Expr::Literal(ScalarValue::Boolean(Some(_)), _)
                        ))
            }
            _ => false,
        },
        other => leaf_group(other, extras).is_some(),
    }
}

fn eval(
    e: &Expr,
    extras: &ViewExtras,
    load: &mut dyn FnMut(&str) -> Result<RoaringTreemap>,
) -> Result<Bits> {
    Ok(match e {
        Expr::Not(x) | Expr::IsFalse(x) => eval(x, extras, load)?.not(),
        Expr::IsTrue(x) => eval(x, extras, load)?,
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => eval(left, extras, load)?.and(eval(right, extras, load)?),
            Operator::Or => eval(left, extras, load)?.or(eval(right, extras, load)?),
            Operator::Eq | Operator::NotEq => {
                let (leaf, lit) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Literal(ScalarValue::Boolean(Some(b)), _), x)
                    | (x, Expr::Literal(ScalarValue::Boolean(Some(b)), _)) => (x, *b),
                    _ => return Err(SqlError::Unsupported("bitmap filter".into())),
                };
                let bits = eval(leaf, extras, load)?;
                if lit == (*op == Operator::Eq) {
                    bits
                } else {
                    bits.not()
                }
            }
            _ => return Err(SqlError::Unsupported("bitmap filter".into())),
        },
        other => {
            let g = leaf_group(other, extras)
                .ok_or_else(|| SqlError::Unsupported("bitmap filter".into()))?;
            Bits::Pos(load(&g)?)
        }
    })
}

/// The contacts of the current membership of every group in `extras`,
/// loaded once per scan.
struct Members<'a> {
    store: &'a Store,
    loaded: HashMap<String, RoaringTreemap>,
}

impl Members<'_> {
    fn get(&mut self, name: &str) -> Result<RoaringTreemap> {
        if let Some(s) = self.loaded.get(name) {
            return Ok(s.clone());
        }
        let s = crate::segments::membership::group_members(self.store, name)?;
        self.loaded.insert(name.to_string(), s.clone());
        Ok(s)
    }
}

/// Rows of `contact_view` for the contacts `fetch` names (all when `None`)
/// except those in `except`: contact fields, then group and tag columns
/// (NULL where `projection` leaves them out).
#[allow(clippy::too_many_arguments)]
fn view_batches(
    store: &Store,
    layout: &ContactLayout,
    extras: &ViewExtras,
    members: &mut Members<'_>,
    fetch: Option<&[u64]>,
    except: Option<&RoaringTreemap>,
    projection: Option<&[usize]>,
    mask: &[(usize, crate::model::masking::MaskKind)],
) -> Result<Vec<RecordBatch>> {
    let wanted = |i: usize| projection.map_or(true, |p| p.contains(&i));
    let mut out = Vec::new();
    for batch in contact_batches(store, layout, fetch, mask)? {
        let idcol = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("id column")
            .clone();
        let batch = match except {
            Some(x) => {
                let mask: BooleanArray = idcol
                    .iter()
                    .map(|v| Some(!v.is_some_and(|i| x.contains(i as u64))))
                    .collect();
                filter_record_batch(&batch, &mask)?
            }
            None => batch,
        };
        if batch.num_rows() == 0 {
            continue;
        }
        let ids: Vec<u64> = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("id column")
            .values()
            .iter()
            .map(|i| *i as u64)
            .collect();
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        let mut idx = layout.schema.fields().len();
        for g in &extras.groups {
            if wanted(idx) {
                let m = members.get(&g.name)?;
                let arr: BooleanArray = ids.iter().map(|i| Some(m.contains(*i))).collect();
                cols.push(Arc::new(arr));
            } else {
                cols.push(new_null_array(&A::Boolean, ids.len()));
            }
            idx += 1;
        }
        for t in &extras.tags {
            let ty = extras.schema.field(idx).data_type().clone();
            if wanted(idx) {
                cols.push(crate::segments::tags::tag_column(
                    store, t, &ids, &layout.tz,
                )?);
            } else {
                cols.push(new_null_array(&ty, ids.len()));
            }
            idx += 1;
        }
        out.push(RecordBatch::try_new(extras.schema.clone(), cols)?);
    }
    Ok(out)
}

/// Rows of `contact_view` for contacts `ids` (sorted, each once), as a scan
/// filtered on `id` returns them; columns outside `projection` are NULL.
pub fn view_rows(
    store: &Store,
    layout: &ContactLayout,
    extras: &ViewExtras,
    ids: &[u64],
    projection: Option<&[usize]>,
    mask: &[(usize, crate::model::masking::MaskKind)],
) -> Result<RecordBatch> {
    let mut members = Members {
        store,
        loaded: HashMap::new(),
    };
    let batches = view_batches(
        store,
        layout,
        extras,
        &mut members,
        Some(ids),
        None,
        projection,
        mask,
    )?;
    Ok(datafusion::arrow::compute::concat_batches(
        &extras.schema,
        &batches,
    )?)
}

/// Scans `contact_view`: contact fields, group and tag columns, with group
/// predicates answered from bitmaps.
pub async fn scan_view(
    store: Arc<Store>,
    layout: ContactLayout,
    extras: ViewExtras,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    mask: Vec<(usize, crate::model::masking::MaskKind)>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let ids = ids_from_filters(filters, "id");
    let bit_filters: Vec<Expr> = filters
        .iter()
        .filter(|f| pushable(f, &extras))
        .cloned()
        .collect();
    let label = bit_filters
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(" AND ");
    let projection = projection.cloned();
    let projection_out = projection.clone();
    let view_schema = extras.schema.clone();
    let out = tokio::task::spawn_blocking(
        move || -> Result<(Vec<RecordBatch>, Option<u64>, Option<u64>)> {
            let mut members = Members {
                store: &store,
                loaded: HashMap::new(),
            };
            let mut bits: Option<Bits> = None;
            for f in &bit_filters {
                let b = eval(f, &extras, &mut |g| members.get(g))?;
                bits = Some(match bits {
                    None => b,
                    Some(prev) => prev.and(b),
                });
            }
            let bitmap_count = match &bits {
                Some(Bits::Pos(s)) => Some(s.len()),
                _ => None,
            };
            // count(*) and friends: no column is read, the bitmap is the answer.
            if let (Some(p), Some(Bits::Pos(s)), None) = (&projection, &bits, &ids) {
                if p.is_empty() {
                    let b = RecordBatch::try_new_with_options(
                        Arc::new(Schema::empty()),
                        vec![],
                        &RecordBatchOptions::new().with_row_count(Some(s.len() as usize)),
                    )?;
                    return Ok((vec![b], bitmap_count, Some(s.len())));
                }
            }
            let (fetch, except): (Option<Vec<u64>>, Option<RoaringTreemap>) = match (bits, ids) {
                (None, ids) => (ids, None),
                (Some(Bits::Pos(s)), None) => (Some(s.iter().collect()), None),
                (Some(Bits::Pos(s)), Some(ids)) => (
                    Some(ids.into_iter().filter(|i| s.contains(*i)).collect()),
                    None,
                ),
                (Some(Bits::Comp(s)), ids) => (ids, Some(s)),
            };
            let out = view_batches(
                &store,
                &layout,
                &extras,
                &mut members,
                fetch.as_deref(),
                except.as_ref(),
                projection.as_deref(),
                &mask,
            )?;
            Ok((out, bitmap_count, None))
        },
    )
    .await
    .map_err(ext)?
    .map_err(DataFusionError::from)?;
    let (batches, bitmap_count, counted) = out;
    let inner: Arc<dyn ExecutionPlan> = if counted.is_some() {
        MemorySourceConfig::try_new_exec(&[batches], Arc::new(Schema::empty()), None)?
    } else {
        memory_exec(view_schema, batches, projection_out.as_ref())?
    };
    if label.is_empty() {
        return Ok(inner);
    }
    let label = match bitmap_count {
        Some(n) => format!("{label}, contacts={n}"),
        None => format!("{label}, contacts=all except a bitmap"),
    };
    Ok(Arc::new(BitmapScanExec {
        label,
        input: inner,
    }))
}

/// Shows in EXPLAIN how a `contact_view` scan used bitmaps; runs its input.
pub struct BitmapScanExec {
    label: String,
    input: Arc<dyn ExecutionPlan>,
}

impl fmt::Debug for BitmapScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BitmapScanExec({})", self.label)
    }
}

impl DisplayAs for BitmapScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CohortBitmapFilter: {}", self.label)
    }
}

impl ExecutionPlan for BitmapScanExec {
    fn name(&self) -> &str {
        "CohortBitmapFilter"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
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
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }
    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, ctx)
    }
}
