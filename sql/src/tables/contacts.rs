//! `contacts` (writable) and `contact_view` (read-only) over the contacts column family.

use std::sync::Arc;

use cohortdb_storage::{Store, Value};
use datafusion::arrow::array::{Array, BooleanArray, BooleanBuilder, Int64Builder, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;

use super::{memory_exec, DmlExec, IngestSink};
use crate::error::{Result, SqlError};
use crate::ingest::batch::ContactIngest;
use crate::model::convert::{value_at, ColumnBuilder};
use crate::model::layout::{ContactCol, ContactLayout};
use crate::model::masking::MaskKind;
use crate::model::rows::{
    contact_col_type, contact_is_identified, decode_contact, encode_contact, now_ms,
    validate_contact_value, RowRef,
};

/// Rows per batch built by scans.
pub const SCAN_BATCH_ROWS: usize = 8192;

/// The `contacts` table or the `contact_view` view.
#[derive(Debug)]
pub struct ContactsTable {
    store: Arc<Store>,
    layout: ContactLayout,
    view: bool,
    contact_lock: Arc<tokio::sync::Mutex<()>>,
    /// `contact_view` only: the group and tag columns.
    extras: Option<super::groups::ViewExtras>,
    /// Whether this session masks (read when the scan runs, so a plan
    /// prepared earlier follows the roles and masks of now).
    mask: crate::runtime::context::MaskFlag,
}

impl ContactsTable {
    /// A provider over the current catalog, for a session in `env.session_tz`.
    pub fn new(env: &crate::tables::catalog::TableEnv, view: bool) -> Self {
        let layout = ContactLayout::new_in(&env.store.catalog(), &env.session_tz);
        let extras = view.then(|| super::groups::ViewExtras::new(&env.store, &layout));
        ContactsTable {
            mask: env.mask.clone(),
            extras,
            store: env.store.clone(),
            layout,
            view,
            contact_lock: env.contact_lock.clone(),
        }
    }

    /// The columns this session masks now.
    fn masked_now(&self) -> Vec<(usize, MaskKind)> {
        if self.mask.on() {
            masked_columns(&self.store.catalog(), &self.layout)
        } else {
            vec![]
        }
    }

    /// The keyed read of `contacts` and `contact_view` (by `id`).
    pub fn keyed(&self) -> Option<&dyn super::keyed::KeyedRead> {
        Some(self as &dyn super::keyed::KeyedRead)
    }

    /// What an INSERT into this table does with its rows (`None` for
    /// `contact_view`, which takes no inserts).
    pub fn insert_writer(&self) -> Option<super::SinkFn> {
        if self.view {
            return None;
        }
        let store = self.store.clone();
        let layout = self.layout.clone();
        Some(Arc::new(move |batches| {
            let store = store.clone();
            let layout = layout.clone();
            Box::pin(async move {
                let types: Vec<_> = layout
                    .cols
                    .iter()
                    .map(|(_, c)| contact_col_type(*c))
                    .collect();
                let names: Vec<_> = layout.cols.iter().map(|(n, _)| n.clone()).collect();
                let rows = batch_rows(&batches, &types, &names)?;
                let mut ingest = ContactIngest::new(store);
                for (i, row) in rows.into_iter().enumerate() {
                    ingest.push(
                        row,
                        RowRef {
                            n: i as u64 + 1,
                            copy_line: false,
                        },
                    )?;
                }
                ingest.commit().await
            })
        }))
    }

    /// Whether this provider's columns are those `catalog` defines now.
    pub fn defined_as_in(&self, catalog: &cohortdb_storage::Catalog) -> bool {
        let now = ContactLayout::new_in(catalog, &self.layout.tz);
        if now.cols != self.layout.cols {
            return false;
        }
        match &self.extras {
            None => true,
            // the group and tag columns
            Some(x) => super::groups::ViewExtras::new(&self.store, &now).schema == x.schema,
        }
    }

    fn name(&self) -> &'static str {
        if self.view {
            "contact_view"
        } else {
            "contacts"
        }
    }
}

/// Fails with 42501 when `plan` reads a masked column of contacts or
/// contact_view (COPY TO by a user without `cohort_unmasked`).
pub fn refuse_masked_export(
    plan: &datafusion::logical_expr::LogicalPlan,
    store: &Store,
) -> Result<()> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let catalog = store.catalog();
    let masked: Vec<&str> = catalog
        .data()
        .contact_fields
        .iter()
        .filter(|f| f.masked)
        .map(|f| f.name.as_str())
        .collect();
    if masked.is_empty() {
        return Ok(());
    }
    let mut hit = None;
    plan.apply_with_subqueries(|p| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(s) = p {
            if matches!(s.table_name.table(), "contacts" | "contact_view") {
                if let Some(f) = s
                    .projected_schema
                    .fields()
                    .iter()
                    .find(|f| masked.contains(&f.name().as_str()))
                {
                    hit = Some(f.name().clone());
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match hit {
        Some(c) => Err(SqlError::InsufficientPrivilege(format!(
            "permission denied to export masked column {c} (COPY TO of masked columns needs cohort_unmasked; leave the column out)"
        ))),
        None => Ok(()),
    }
}

/// The masked columns of `layout`: `(layout index, rule)`.
pub fn masked_columns(
    catalog: &cohortdb_storage::Catalog,
    layout: &ContactLayout,
) -> Vec<(usize, MaskKind)> {
    let fields = &catalog.data().contact_fields;
    layout
        .cols
        .iter()
        .enumerate()
        .filter_map(|(i, (name, c))| match c {
            ContactCol::Field(fid, _) if fields.get(*fid as usize).is_some_and(|f| f.masked) => {
                Some((i, MaskKind::of(name)))
            }
            _ => None,
        })
        .collect()
}

/// Builds record batches of contacts (all, or the given sorted ids), with
/// the columns `mask` masked (a masked session's reads; writes read raw).
pub fn contact_batches(
    store: &Store,
    layout: &ContactLayout,
    ids: Option<&[u64]>,
    mask: &[(usize, MaskKind)],
) -> Result<Vec<RecordBatch>> {
    let catalog = store.catalog();
    let mut out = Vec::new();
    // point reads build batches of their own size, not of a scan's
    let capacity = ids.map_or(SCAN_BATCH_ROWS, |ids| ids.len().clamp(1, SCAN_BATCH_ROWS));
    let new_builders = || -> Vec<ContactBuilder> {
        layout
            .cols
            .iter()
            .map(|(_, c)| match c {
                ContactCol::Id => ContactBuilder::Id(Int64Builder::with_capacity(capacity)),
                ContactCol::IsIdentified => {
                    ContactBuilder::Bool(BooleanBuilder::with_capacity(capacity))
                }
                ContactCol::Field(_, t) => {
                    ContactBuilder::Col(ColumnBuilder::new_in(*t, capacity, &layout.tz))
                }
            })
            .collect()
    };
    let mut builders = new_builders();
    let mut rows = 0usize;
    let mut err = None;
    let flush = |builders: &mut Vec<ContactBuilder>, out: &mut Vec<RecordBatch>| -> Result<()> {
        let cols = builders.iter_mut().map(|b| b.finish()).collect();
        let batch = RecordBatch::try_new(layout.schema.clone(), cols)?;
        out.push(crate::model::masking::mask_batch(&batch, mask)?);
        Ok(())
    };
    store.scan_contacts(ids, &mut |id, bytes| {
        let fields = decode_contact(bytes, layout);
        for ((_, col), b) in layout.cols.iter().zip(builders.iter_mut()) {
            match (col, b) {
                (ContactCol::Id, ContactBuilder::Id(b)) => b.append_value(id as i64),
                (ContactCol::IsIdentified, ContactBuilder::Bool(b)) => {
                    b.append_value(contact_is_identified(&fields, &catalog))
                }
                (ContactCol::Field(fid, _), ContactBuilder::Col(b)) => {
                    b.append(fields[*fid as usize].as_ref())
                }
                _ => {}
            }
        }
        rows += 1;
        if rows == SCAN_BATCH_ROWS {
            if let Err(e) = flush(&mut builders, &mut out) {
                err = Some(e);
                return false;
            }
            rows = 0;
        }
        true
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    if rows > 0 || out.is_empty() {
        flush(&mut builders, &mut out)?;
    }
    Ok(out)
}

enum ContactBuilder {
    Id(Int64Builder),
    Bool(BooleanBuilder),
    Col(ColumnBuilder),
}

impl ContactBuilder {
    fn finish(&mut self) -> Arc<dyn Array> {
        match self {
            ContactBuilder::Id(b) => Arc::new(b.finish()),
            ContactBuilder::Bool(b) => Arc::new(b.finish()),
            ContactBuilder::Col(b) => b.finish(),
        }
    }
}

/// Extracts `id = n` / `id IN (...)` point lookups from filters.
fn id_filter(expr: &Expr, col: &str) -> Option<Vec<u64>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c))
                if c.name == col =>
            {
                scalar_to_u64(v).map(|i| vec![i]).or(Some(vec![]))
            }
            _ => None,
        },
        Expr::InList(l) if !l.negated => match l.expr.as_ref() {
            Expr::Column(c) if c.name == col => {
                let mut ids = Vec::new();
                for e in &l.list {
                    match e {
                        Expr::Literal(v, _) => ids.extend(scalar_to_u64(v)),
                        _ => return None,
                    }
                }
                Some(ids)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Point-lookup ids from a set of filters (intersection), if any filter is one.
pub fn ids_from_filters(filters: &[Expr], col: &str) -> Option<Vec<u64>> {
    let mut result: Option<Vec<u64>> = None;
    for f in filters {
        if let Some(mut ids) = id_filter(f, col) {
            ids.sort_unstable();
            ids.dedup();
            result = Some(match result {
                None => ids,
                Some(prev) => prev
                    .into_iter()
                    .filter(|i| ids.binary_search(i).is_ok())
                    .collect(),
            });
        }
    }
    result
}

fn scalar_to_u64(v: &ScalarValue) -> Option<u64> {
    match v {
        ScalarValue::Int64(Some(i)) if *i > 0 => Some(*i as u64),
        ScalarValue::Int32(Some(i)) if *i > 0 => Some(*i as u64),
        ScalarValue::UInt64(Some(i)) => Some(*i),
        ScalarValue::Int16(Some(i)) if *i > 0 => Some(*i as u64),
        _ => None,
    }
}

/// Removes table qualifiers so expressions resolve against an unqualified schema.
pub fn unqualify(expr: Expr) -> DfResult<Expr> {
    expr.transform(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
            c.name,
        )))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Plans `filters` as one physical predicate over `schema` (None = all rows).
pub fn physical_predicate(
    state: &dyn Session,
    schema: &SchemaRef,
    filters: Vec<Expr>,
) -> DfResult<Option<Arc<dyn PhysicalExpr>>> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let mut combined: Option<Expr> = None;
    for f in filters {
        let f = unqualify(f)?;
        combined = Some(match combined {
            None => f,
            Some(c) => c.and(f),
        });
    }
    combined
        .map(|e| state.create_physical_expr(e, &df_schema))
        .transpose()
}

/// Rows of `batch` matching `pred`.
pub fn apply_predicate(
    batch: &RecordBatch,
    pred: &Option<Arc<dyn PhysicalExpr>>,
) -> Result<RecordBatch> {
    let Some(pred) = pred else {
        return Ok(batch.clone());
    };
    let v = pred.evaluate(batch)?.into_array(batch.num_rows())?;
    let mask = v
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| SqlError::DatatypeMismatch("WHERE must be a boolean expression".into()))?;
    Ok(filter_record_batch(batch, mask)?)
}

/// Converts batches in `layout` order into rows of values, typed per column.
fn batch_rows(
    batches: &[RecordBatch],
    types: &[cohortdb_storage::DataType],
    names: &[String],
) -> Result<Vec<Vec<Value>>> {
    let mut rows = Vec::new();
    let mut n = 0u64;
    for b in batches {
        for r in 0..b.num_rows() {
            n += 1;
            let mut row = Vec::with_capacity(types.len());
            for (c, t) in types.iter().enumerate() {
                let v = value_at(b.column(c).as_ref(), r, *t).map_err(|e| {
                    SqlError::InvalidText(format!(
                        "invalid value for column {} in row {n}: {e}",
                        names[c]
                    ))
                })?;
                row.push(v);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

impl super::keyed::KeyedRead for ContactsTable {
    fn key_columns(&self) -> Vec<usize> {
        self.layout
            .cols
            .iter()
            .position(|(_, c)| matches!(c, ContactCol::Id))
            .into_iter()
            .collect()
    }

    fn read_keys(&self, keys: &[Vec<ScalarValue>], columns: &[usize]) -> Result<RecordBatch> {
        // as `scan` reads `id = …` / `id IN (…)`: sorted, each id once
        let mut ids: Vec<u64> = keys
            .iter()
            .filter_map(|k| k.first().and_then(scalar_to_u64))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if let Some(x) = &self.extras {
            return super::groups::view_rows(
                &self.store,
                &self.layout,
                x,
                &ids,
                Some(columns),
                &self.masked_now(),
            );
        }
        let mut batches =
            contact_batches(&self.store, &self.layout, Some(&ids), &self.masked_now())?;
        if batches.len() == 1 {
            return Ok(batches.remove(0));
        }
        Ok(datafusion::arrow::compute::concat_batches(
            &self.layout.schema,
            &batches,
        )?)
    }
}

#[async_trait::async_trait]
impl TableProvider for ContactsTable {
    fn schema(&self) -> SchemaRef {
        match &self.extras {
            Some(x) => x.schema.clone(),
            None => self.layout.schema.clone(),
        }
    }

    fn table_type(&self) -> TableType {
        if self.view {
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
            .map(|f| {
                if id_filter(f, "id").is_some()
                    || self
                        .extras
                        .as_ref()
                        .is_some_and(|x| super::groups::pushable(f, x))
                {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(x) = &self.extras {
            return super::groups::scan_view(
                self.store.clone(),
                self.layout.clone(),
                x.clone(),
                projection,
                filters,
                self.masked_now(),
            )
            .await;
        }
        let ids = ids_from_filters(filters, "id");
        let store = self.store.clone();
        let layout = self.layout.clone();
        let mask = self.masked_now();
        let batches = tokio::task::spawn_blocking(move || {
            contact_batches(&store, &layout, ids.as_deref(), &mask)
        })
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
        .map_err(datafusion::error::DataFusionError::from)?;
        memory_exec(self.layout.schema.clone(), batches, projection)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        _op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(write) = self.insert_writer() else {
            return Err(SqlError::Unsupported(format!(
                "{} is a view; insert into contacts",
                self.name()
            ))
            .into());
        };
        let sink = IngestSink::new("contacts", self.layout.schema.clone(), write);
        Ok(Arc::new(DataSinkExec::new(input, sink, None)))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.view {
            return Err(SqlError::Unsupported(format!(
                "{} is a view; delete from contacts",
                self.name()
            ))
            .into());
        }
        // `id = v` / `id IN (…)` reads those contacts only
        let ids = Arc::new(ids_from_filters(&filters, "id"));
        let pred = physical_predicate(state, &self.layout.schema, filters)?;
        let store = self.store.clone();
        let layout = self.layout.clone();
        let lock = self.contact_lock.clone();
        Ok(DmlExec::new(
            "CohortDelete: table=contacts",
            Arc::new(move || {
                let (store, layout, pred, lock, ids) = (
                    store.clone(),
                    layout.clone(),
                    pred.clone(),
                    lock.clone(),
                    ids.clone(),
                );
                Box::pin(async move {
                    let guard = lock.lock().await;
                    let batches = contact_batches(&store, &layout, ids.as_deref(), &[])?;
                    let mut batch = store.batch();
                    let mut deleted = Vec::new();
                    for b in &batches {
                        let hit = apply_predicate(b, &pred)?;
                        super::record_returning(&hit);
                        let ids = hit
                            .column(0)
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::Int64Array>();
                        deleted.extend(ids.into_iter().flatten().flatten().map(|id| id as u64));
                    }
                    // A deleted contact takes its identities and events with it,
                    // in the same atomic batch.
                    deleted.sort_unstable();
                    for id in &deleted {
                        batch.delete_contact(*id);
                        for identity in store.contact_identity_keys(*id)? {
                            batch.delete_identity(*id, &identity);
                        }
                    }
                    if !deleted.is_empty() {
                        let spec = cohortdb_storage::EventScanSpec {
                            contacts: Some(deleted.clone()),
                            ..Default::default()
                        };
                        store.scan_events(&spec, &mut |key, _| {
                            batch.delete_event(key);
                            true
                        })?;
                    }
                    // ... and leaves every group.
                    crate::segments::membership::forget_contacts(&store, &mut batch, &deleted);
                    crate::runtime::audit::take_into(
                        &store,
                        &mut batch,
                        Some(deleted.len() as u64),
                    );
                    // written under the lock, durable after it (group commit)
                    let pending = store.commit_applied(batch).await?;
                    drop(guard);
                    pending.durable().await?;
                    Ok(deleted.len() as u64)
                })
            }),
        ))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.view {
            return Err(SqlError::Unsupported(format!(
                "{} is a view; update contacts",
                self.name()
            ))
            .into());
        }
        let df_schema = DFSchema::try_from(self.layout.schema.as_ref().clone())?;
        let mut sets = Vec::new();
        for (name, expr) in assignments {
            let Some(idx) = self.layout.index_of(&name) else {
                return Err(SqlError::UndefinedColumn(format!(
                    "column \"{name}\" of relation \"contacts\" does not exist"
                ))
                .into());
            };
            let expr = unqualify(expr)?;
            if matches!(&expr, Expr::Column(c) if c.name == name) {
                continue;
            }
            match self.layout.cols[idx].1 {
                ContactCol::Id => {
                    return Err(SqlError::Unsupported("contact ids cannot be changed; use CALL merge_contacts".into()).into())
                }
                ContactCol::IsIdentified => {
                    return Err(SqlError::Unsupported(
                        "column is_identified is derived from name, mobile_phone and email and cannot be set".into(),
                    )
                    .into())
                }
                ContactCol::Field(..) => {}
            }
            sets.push((idx, state.create_physical_expr(expr, &df_schema)?));
        }
        // `id = v` / `id IN (…)` reads those contacts only
        let ids = Arc::new(ids_from_filters(&filters, "id"));
        let pred = physical_predicate(state, &self.layout.schema, filters)?;
        let store = self.store.clone();
        let layout = self.layout.clone();
        let lock = self.contact_lock.clone();
        let sets = Arc::new(sets);
        Ok(DmlExec::new(
            "CohortUpdate: table=contacts",
            Arc::new(move || {
                let (store, layout, pred, lock, sets, ids) = (
                    store.clone(),
                    layout.clone(),
                    pred.clone(),
                    lock.clone(),
                    sets.clone(),
                    ids.clone(),
                );
                Box::pin(async move {
                    let guard = lock.lock().await;
                    let catalog = store.catalog();
                    let batches = contact_batches(&store, &layout, ids.as_deref(), &[])?;
                    let mut batch = store.batch();
                    let now = now_ms();
                    let mut n = 0u64;
                    let mut written = Vec::new();
                    for b in &batches {
                        let hit = apply_predicate(b, &pred)?;
                        if hit.num_rows() == 0 {
                            continue;
                        }
                        let mut new_cols = Vec::new();
                        for (idx, e) in sets.iter() {
                            new_cols.push((*idx, e.evaluate(&hit)?.into_array(hit.num_rows())?));
                        }
                        let ids = hit
                            .column(0)
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::Int64Array>()
                            .ok_or_else(|| SqlError::Unsupported("contact id column".into()))?;
                        for r in 0..hit.num_rows() {
                            n += 1;
                            let id = ids.value(r) as u64;
                            let Some(bytes) = store.get_contact(id)? else {
                                continue;
                            };
                            let mut fields = decode_contact(&bytes, &layout);
                            let was_identified = contact_is_identified(&fields, &catalog);
                            for (idx, arr) in &new_cols {
                                let (name, col) = &layout.cols[*idx];
                                let ContactCol::Field(fid, t) = col else {
                                    continue;
                                };
                                let mut v = value_at(arr.as_ref(), r, *t).map_err(|e| {
                                    SqlError::InvalidText(format!(
                                        "invalid value for column {name} in row {n}: {e}"
                                    ))
                                })?;
                                validate_contact_value(
                                    name,
                                    &mut v,
                                    RowRef {
                                        n,
                                        copy_line: false,
                                    },
                                )?;
                                fields[*fid as usize] = v;
                            }
                            if !was_identified && contact_is_identified(&fields, &catalog) {
                                if let Some((fid, _)) = catalog.contact_field("created_at") {
                                    if fields[fid as usize].is_null() {
                                        fields[fid as usize] = Value::Ts(now);
                                    }
                                }
                            }
                            if let Some((fid, _)) = catalog.contact_field("updated_at") {
                                fields[fid as usize] = Value::Ts(now);
                            }
                            batch.put_contact(id, &encode_contact(&fields));
                            written.push(id);
                        }
                    }
                    crate::runtime::audit::take_into(&store, &mut batch, Some(n));
                    let pending = store.commit_applied(batch).await?;
                    drop(guard);
                    pending.durable().await?;
                    let _ = crate::ingest::batch::WRITTEN_CONTACTS
                        .try_with(|ids| ids.lock().expect("written ids").extend(written));
                    Ok(n)
                })
            }),
        ))
    }
}
