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
use crate::ingest::batch::{
    check_not_null, duplicate_key, user_pk, UserRowIngest, USER_ROW_WRITES,
};
use crate::model::convert::{value_at, ColumnBuilder};
use crate::model::layout::user_table_schema;

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

/// Which rows of a user table a statement reads.
enum Rows {
    /// Every row.
    All,
    /// The rows primary key equalities name, in row-id (scan) order.
    Keys(Vec<u64>),
}

/// The row ids `filters` pin down through the primary key: a conjunct
/// `key_column = literal` on a single-column key.
fn rows_for(
    store: &Store,
    def: &UserTableDef,
    schema: &SchemaRef,
    filters: &[Expr],
) -> Result<Rows> {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let [pk] = def.primary_key.as_slice() else {
        return Ok(Rows::All);
    };
    let col = &def.columns[*pk as usize];
    let literal_of = |e: &Expr| -> Option<datafusion::common::ScalarValue> {
        match e {
            Expr::Literal(v, _) => Some(v.clone()),
            Expr::Cast(c) => match c.expr.as_ref() {
                Expr::Literal(v, _) => Some(v.clone()),
                _ => None,
            },
            _ => None,
        }
    };
    let is_key = |e: &Expr| matches!(e, Expr::Column(c) if c.name == col.name);
    for f in filters {
        for conj in datafusion::logical_expr::utils::split_conjunction(f) {
            let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) = conj
            else {
                continue;
            };
            let lit = if is_key(left) {
                literal_of(right)
            } else if is_key(right) {
                literal_of(left)
            } else {
                None
            };
            let Some(lit) = lit else { continue };
            if lit.is_null() {
                return Ok(Rows::Keys(vec![]));
            }
            match row_of_key(store, def, schema, &lit)? {
                KeyRow::Unusable => continue,
                KeyRow::Scan => return Ok(Rows::All),
                KeyRow::Found(row) => return Ok(Rows::Keys(row.into_iter().collect())),
            }
        }
    }
    Ok(Rows::All)
}

/// What a primary key value names.
enum KeyRow {
    /// The value does not convert to the key's type: not a key lookup.
    Unusable,
    /// The key cannot be encoded (NULL part): read every row.
    Scan,
    /// The row id it names, if a row has it.
    Found(Option<u64>),
}

/// The row the one-column primary key value `lit` names.
fn row_of_key(
    store: &Store,
    def: &UserTableDef,
    schema: &SchemaRef,
    lit: &datafusion::common::ScalarValue,
) -> Result<KeyRow> {
    let [pk] = def.primary_key.as_slice() else {
        return Ok(KeyRow::Scan);
    };
    let col = &def.columns[*pk as usize];
    let arr = lit.to_array()?;
    let target = schema.field(*pk as usize).data_type();
    let Ok(arr) = datafusion::arrow::compute::cast(&arr, target) else {
        return Ok(KeyRow::Unusable);
    };
    let Ok(v) = value_at(arr.as_ref(), 0, col.data_type) else {
        return Ok(KeyRow::Unusable);
    };
    let mut row = vec![cohortdb_storage::Value::Null; def.columns.len()];
    row[*pk as usize] = v;
    let Some(key) = user_pk(def, &row)? else {
        return Ok(KeyRow::Scan);
    };
    Ok(KeyRow::Found(store.get_user_pk(def.id, &key)?))
}

/// The rows `which` names, plus a trailing hidden row-id column when `with_row_id`.
fn table_batch(
    store: &Store,
    def: &UserTableDef,
    schema: &SchemaRef,
    with_row_id: bool,
    tz: &str,
    which: Rows,
) -> Result<RecordBatch> {
    let mut builders: Vec<ColumnBuilder> = def
        .columns
        .iter()
        .map(|c| ColumnBuilder::new_in(c.data_type, 1024, tz))
        .collect();
    let mut row_ids = Vec::new();
    let mut add = |row_id: u64, bytes: &[u8]| {
        let vals = decode_row(bytes, def.columns.len());
        for (b, v) in builders.iter_mut().zip(vals.iter()) {
            b.append(v.as_ref());
        }
        row_ids.push(row_id as i64);
        true
    };
    match which {
        Rows::All => store.scan_user_rows(def.id, &mut add)?,
        Rows::Keys(ids) => {
            for id in ids {
                if let Some(bytes) = store.get_user_row(def.id, id)? {
                    add(id, &bytes);
                }
            }
        }
    }
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

impl UserTable {
    /// The keyed read of this table: one with a one-column primary key.
    pub fn keyed(&self) -> Option<&dyn super::keyed::KeyedRead> {
        (self.def.primary_key.len() == 1).then_some(self as &dyn super::keyed::KeyedRead)
    }

    /// Whether this provider's definition is the one `catalog` holds now.
    pub fn defined_as_in(&self, catalog: &cohortdb_storage::Catalog) -> bool {
        catalog.data().tables.iter().any(|t| t == &self.def)
    }

    /// What an INSERT into this table does with its rows.
    pub fn insert_writer(&self) -> super::SinkFn {
        let store = self.store.clone();
        let def = self.def.clone();
        Arc::new(move |batches: Vec<RecordBatch>| {
            let (store, def) = (store.clone(), def.clone());
            Box::pin(async move {
                let mut ingest = UserRowIngest::new(store, def.clone());
                let mut n = 0;
                for b in &batches {
                    super::record_returning(b);
                    for r in 0..b.num_rows() {
                        n += 1;
                        let mut row = Vec::with_capacity(def.columns.len());
                        for (c, col) in def.columns.iter().enumerate() {
                            row.push(value_at(b.column(c).as_ref(), r, col.data_type).map_err(
                                |e| {
                                    SqlError::InvalidText(format!(
                                        "invalid value for column {} in row {n}: {e}",
                                        col.name
                                    ))
                                },
                            )?);
                        }
                        ingest.push(&row)?;
                    }
                }
                ingest.commit().await
            })
        })
    }
}

impl super::keyed::KeyedRead for UserTable {
    fn key_columns(&self) -> Vec<usize> {
        self.def.primary_key.iter().map(|c| *c as usize).collect()
    }

    fn read_keys(
        &self,
        keys: &[Vec<datafusion::common::ScalarValue>],
        _columns: &[usize],
    ) -> Result<RecordBatch> {
        let mut ids = Vec::with_capacity(keys.len());
        for k in keys {
            let [v] = k.as_slice() else {
                return Err(SqlError::InvalidValue(
                    "a user-table key lookup takes one value per key".into(),
                ));
            };
            match row_of_key(&self.store, &self.def, &self.schema, v)? {
                KeyRow::Found(Some(id)) => ids.push(id),
                KeyRow::Found(None) => {}
                KeyRow::Unusable | KeyRow::Scan => {
                    return Err(SqlError::InvalidValue(format!(
                        "key value {v} of table {} cannot be looked up",
                        self.def.name
                    )))
                }
            }
        }
        // a scan returns rows in row-id order, each once
        ids.sort_unstable();
        ids.dedup();
        table_batch(
            &self.store,
            &self.def,
            &self.schema,
            false,
            &self.tz,
            Rows::Keys(ids),
        )
    }
}

#[async_trait::async_trait]
impl TableProvider for UserTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        // Seen by `scan` for primary key lookups; DataFusion still applies them.
        Ok(vec![
            datafusion::logical_expr::TableProviderFilterPushDown::Inexact;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let which = rows_for(&self.store, &self.def, &self.schema, filters)?;
        let batch = table_batch(&self.store, &self.def, &self.schema, false, &self.tz, which)?;
        memory_exec(self.schema.clone(), vec![batch], projection)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        _op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let sink = IngestSink::new(
            self.def.name.clone(),
            self.schema.clone(),
            self.insert_writer(),
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
        let key_filters = Arc::new(filters.clone());
        let pred = physical_predicate(state, &self.schema, filters)?;
        let (store, def, schema) = (self.store.clone(), self.def.clone(), self.schema.clone());
        let tz = self.tz.clone();
        let sets = Arc::new(sets);
        Ok(DmlExec::new(
            format!("CohortUpdate: table={}", self.def.name),
            Arc::new(move || {
                let (store, def, schema, pred, tz, sets, key_filters) = (
                    store.clone(),
                    def.clone(),
                    schema.clone(),
                    pred.clone(),
                    tz.clone(),
                    sets.clone(),
                    key_filters.clone(),
                );
                Box::pin(async move {
                    let guard = USER_ROW_WRITES.lock().await;
                    let which = rows_for(&store, &def, &schema, &key_filters)?;
                    let full = table_batch(&store, &def, &schema, true, &tz, which)?;
                    let hit = filter_rows(&full, def.columns.len(), pred.as_ref())?;
                    let visible = hit.project(&(0..def.columns.len()).collect::<Vec<_>>())?;
                    let mut new_cols = Vec::with_capacity(sets.len());
                    for (idx, e) in sets.iter() {
                        new_cols
                            .push((*idx, e.evaluate(&visible)?.into_array(visible.num_rows())?));
                    }
                    let ids = row_ids(&hit, def.columns.len());
                    let mut batch = store.batch();
                    // primary keys the statement frees and takes
                    let mut freed: Vec<Vec<u8>> = Vec::new();
                    let mut taken: Vec<(Vec<u8>, u64, Vec<cohortdb_storage::Value>)> = Vec::new();
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
                        check_not_null(&def, &row)?;
                        if !def.primary_key.is_empty()
                            && sets
                                .iter()
                                .any(|(i, _)| def.primary_key.contains(&(*i as u32)))
                        {
                            let mut old = Vec::with_capacity(def.columns.len());
                            for (c, col) in def.columns.iter().enumerate() {
                                old.push(
                                    value_at(visible.column(c).as_ref(), r, col.data_type)
                                        .map_err(SqlError::InvalidText)?,
                                );
                            }
                            let (Some(before), Some(after)) =
                                (user_pk(&def, &old)?, user_pk(&def, &row)?)
                            else {
                                unreachable!("the table has a primary key")
                            };
                            if before != after {
                                freed.push(before);
                                taken.push((after, ids.value(r) as u64, row.clone()));
                            }
                        }
                        let bytes = encode_row(row.iter().enumerate().map(|(i, v)| (i as u32, v)));
                        batch.put_user_row(def.id, ids.value(r) as u64, &bytes);
                    }
                    for (i, (key, _, row)) in taken.iter().enumerate() {
                        let clash_in_statement = taken[..i].iter().any(|(k, _, _)| k == key);
                        let clash_stored =
                            !freed.contains(key) && store.get_user_pk(def.id, key)?.is_some();
                        if clash_in_statement || clash_stored {
                            return Err(duplicate_key(&def, row).into());
                        }
                    }
                    if super::RETURNING_ROWS.try_with(|_| ()).is_ok() {
                        let mut cols = visible.columns().to_vec();
                        for (i, a) in &new_cols {
                            cols[*i] =
                                datafusion::arrow::compute::cast(a, schema.field(*i).data_type())?;
                        }
                        super::record_returning(&RecordBatch::try_new(schema.clone(), cols)?);
                    }
                    for key in &freed {
                        batch.delete_user_pk(def.id, key);
                    }
                    for (key, id, _) in &taken {
                        batch.put_user_pk(def.id, key, *id);
                    }
                    // written under the lock, durable after it (group commit)
                    let pending = store.commit_applied(batch).await?;
                    drop(guard);
                    pending.durable().await?;
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
        let key_filters = Arc::new(filters.clone());
        let pred = physical_predicate(state, &self.schema, filters)?;
        let (store, def, schema) = (self.store.clone(), self.def.clone(), self.schema.clone());
        let tz = self.tz.clone();
        Ok(DmlExec::new(
            format!("CohortDelete: table={}", self.def.name),
            Arc::new(move || {
                let (store, def, schema, pred, tz, key_filters) = (
                    store.clone(),
                    def.clone(),
                    schema.clone(),
                    pred.clone(),
                    tz.clone(),
                    key_filters.clone(),
                );
                Box::pin(async move {
                    let guard = USER_ROW_WRITES.lock().await;
                    let which = rows_for(&store, &def, &schema, &key_filters)?;
                    let full = table_batch(&store, &def, &schema, true, &tz, which)?;
                    let hit = filter_rows(&full, def.columns.len(), pred.as_ref())?;
                    let ids = row_ids(&hit, def.columns.len());
                    super::record_returning(
                        &hit.project(&(0..def.columns.len()).collect::<Vec<_>>())?,
                    );
                    let mut batch = store.batch();
                    for (r, id) in ids.values().iter().enumerate() {
                        batch.delete_user_row(def.id, *id as u64);
                        if !def.primary_key.is_empty() {
                            let mut row = Vec::with_capacity(def.columns.len());
                            for (c, col) in def.columns.iter().enumerate() {
                                row.push(
                                    value_at(hit.column(c).as_ref(), r, col.data_type)
                                        .map_err(SqlError::InvalidText)?,
                                );
                            }
                            if let Some(key) = user_pk(&def, &row)? {
                                batch.delete_user_pk(def.id, &key);
                            }
                        }
                    }
                    let pending = store.commit_applied(batch).await?;
                    drop(guard);
                    pending.durable().await?;
                    Ok(ids.len() as u64)
                })
            }),
        ))
    }
}
