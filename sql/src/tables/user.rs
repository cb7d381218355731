//! User-created tables (`CREATE TABLE`): dimension and dictionary tables stored in RocksDB.

use std::sync::Arc;

use cohortdb_storage::codec::{decode_row, encode_row};
use cohortdb_storage::{Store, UserTableDef};
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::contacts::{physical_predicate, unqualify};
use super::{memory_exec, DmlExec, IngestSink};
use crate::error::{Result, SqlError};
use crate::ingest::batch::UserRowIngest;
use crate::model::convert::{value_at, ColumnBuilder};
use crate::model::layout::user_table_schema;

/// Serialises read-modify-write of user-table rows (UPDATE), so two
/// concurrent `SET x = x + 1` never lose one of the increments.
static ROW_UPDATES: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(Default::default);

/// A user table provider.
#[derive(Debug)]
pub struct UserTable {
    store: Arc<Store>,
    def: UserTableDef,
    schema: SchemaRef,
    tz: String,
}

impl UserTable {
    /// Provider for `def`.
    pub fn new(store: Arc<Store>, def: UserTableDef, tz: &str) -> Self {
        let schema = user_table_schema(&def.columns, tz);
        UserTable {
            store,
            def,
            schema,
            tz: tz.to_string(),
        }
    }
}

/// All rows of a user table, plus a trailing hidden row-id column when `with_row_id`.
fn table_batch(
    store: &Store,
    def: &UserTableDef,
    schema: &SchemaRef,
    with_row_id: bool,
    tz: &str,
) -> Result<RecordBatch> {
    let mut builders: Vec<ColumnBuilder> = def
        .columns
        .iter()
        .map(|c| ColumnBuilder::new_in(c.data_type, 1024, tz))
        .collect();
    let mut row_ids = Vec::new();
    store.scan_user_rows(def.id, &mut |row_id, bytes| {
        let vals = decode_row(bytes, def.columns.len());
        for (b, v) in builders.iter_mut().zip(vals.iter()) {
            b.append(v.as_ref());
        }
        row_ids.push(row_id as i64);
        true
    })?;
    let mut cols: Vec<Arc<dyn datafusion::arrow::array::Array>> =
        builders.iter_mut().map(|b| b.finish()).collect();
    let mut schema = schema.clone();
    if with_row_id {
        cols.push(Arc::new(Int64Array::from(row_ids)));
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("__row_id", A::Int64, false));
        schema = Arc::new(Schema::new(fields));
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// The row ids (the hidden last column) of rows read with [`table_batch`].
fn row_ids(rows: &RecordBatch, visible_columns: usize) -> Int64Array {
    rows.column(visible_columns)
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .unwrap_or_else(|| Int64Array::from(Vec::<i64>::new()))
}

/// The rows of `full` (visible columns, then the row id) that `pred` keeps.
fn filter_rows(
    full: &RecordBatch,
    visible_columns: usize,
    pred: Option<&Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
) -> Result<RecordBatch> {
    let Some(p) = pred else {
        return Ok(full.clone());
    };
    let visible = full.project(&(0..visible_columns).collect::<Vec<_>>())?;
    let v = p.evaluate(&visible)?.into_array(visible.num_rows())?;
    let mask = v
        .as_any()
        .downcast_ref::<datafusion::arrow::array::BooleanArray>()
        .ok_or_else(|| SqlError::DatatypeMismatch("WHERE must be boolean".into()))?
        .clone();
    Ok(datafusion::arrow::compute::filter_record_batch(
        full, &mask,
    )?)
}

#[async_trait::async_trait]
impl TableProvider for UserTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
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
        let batch = table_batch(&self.store, &self.def, &self.schema, false, &self.tz)?;
        memory_exec(self.schema.clone(), vec![batch], projection)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        _op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let store = self.store.clone();
        let def = self.def.clone();
        let sink = IngestSink::new(
            self.def.name.clone(),
            self.schema.clone(),
            Arc::new(move |batches: Vec<RecordBatch>| {
                let (store, def) = (store.clone(), def.clone());
                Box::pin(async move {
                    let mut ingest = UserRowIngest::new(store, def.clone());
                    let mut n = 0;
                    for b in &batches {
                        for r in 0..b.num_rows() {
                            n += 1;
                            let mut row = Vec::with_capacity(def.columns.len());
                            for (c, col) in def.columns.iter().enumerate() {
                                row.push(
                                    value_at(b.column(c).as_ref(), r, col.data_type).map_err(
                                        |e| {
                                            SqlError::InvalidText(format!(
                                                "invalid value for column {} in row {n}: {e}",
                                                col.name
                                            ))
                                        },
                                    )?,
                                );
                            }
                            ingest.push(&row)?;
                        }
                    }
                    ingest.commit().await
                })
            }),
        );
        Ok(Arc::new(DataSinkExec::new(input, sink, None)))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let mut sets = Vec::new();
        for (name, expr) in assignments {
            let Some(idx) = self.def.columns.iter().position(|c| c.name == name) else {
                return Err(SqlError::UndefinedColumn(format!(
                    "column \"{name}\" of relation \"{}\" does not exist",
                    self.def.name
                ))
                .into());
            };
            sets.push((
                idx,
                state.create_physical_expr(unqualify(expr)?, &df_schema)?,
            ));
        }
        let pred = physical_predicate(state, &self.schema, filters)?;
        let (store, def, schema) = (self.store.clone(), self.def.clone(), self.schema.clone());
        let tz = self.tz.clone();
        let sets = Arc::new(sets);
        Ok(DmlExec::new(
            format!("CohortUpdate: table={}", self.def.name),
            Arc::new(move || {
                let (store, def, schema, pred, tz, sets) = (
                    store.clone(),
                    def.clone(),
                    schema.clone(),
                    pred.clone(),
                    tz.clone(),
                    sets.clone(),
                );
                Box::pin(async move {
                    let _g = ROW_UPDATES.lock().await;
                    let full = table_batch(&store, &def, &schema, true, &tz)?;
                    let hit = filter_rows(&full, def.columns.len(), pred.as_ref())?;
                    let visible = hit.project(&(0..def.columns.len()).collect::<Vec<_>>())?;
                    let mut new_cols = Vec::with_capacity(sets.len());
                    for (idx, e) in sets.iter() {
                        new_cols
                            .push((*idx, e.evaluate(&visible)?.into_array(visible.num_rows())?));
                    }
                    let ids = row_ids(&hit, def.columns.len());
                    let mut batch = store.batch();
                    for r in 0..visible.num_rows() {
                        let mut row = Vec::with_capacity(def.columns.len());
                        for (c, col) in def.columns.iter().enumerate() {
                            let arr = new_cols
                                .iter()
                                .find(|(i, _)| *i == c)
                                .map(|(_, a)| a.clone())
                                .unwrap_or_else(|| visible.column(c).clone());
                            row.push(value_at(arr.as_ref(), r, col.data_type).map_err(|e| {
                                SqlError::InvalidText(format!(
                                    "invalid value for column {} in row {}: {e}",
                                    col.name,
                                    r + 1
                                ))
                            })?);
                        }
                        let bytes = encode_row(row.iter().enumerate().map(|(i, v)| (i as u32, v)));
                        batch.put_user_row(def.id, ids.value(r) as u64, &bytes);
                    }
                    store.commit(batch).await?;
                    Ok(visible.num_rows() as u64)
                })
            }),
        ))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let pred = physical_predicate(state, &self.schema, filters)?;
        let (store, def, schema) = (self.store.clone(), self.def.clone(), self.schema.clone());
        let tz = self.tz.clone();
        Ok(DmlExec::new(
            format!("CohortDelete: table={}", self.def.name),
            Arc::new(move || {
                let (store, def, schema, pred, tz) = (
                    store.clone(),
                    def.clone(),
                    schema.clone(),
                    pred.clone(),
                    tz.clone(),
                );
                Box::pin(async move {
                    let full = table_batch(&store, &def, &schema, true, &tz)?;
                    let hit = filter_rows(&full, def.columns.len(), pred.as_ref())?;
                    let ids = row_ids(&hit, def.columns.len());
                    let mut batch = store.batch();
                    for id in ids.values() {
                        batch.delete_user_row(def.id, *id as u64);
                    }
                    store.commit(batch).await?;
                    Ok(ids.len() as u64)
                })
            }),
        ))
    }
}
