//! `event_types` and `event_properties`: metadata tables whose INSERT and
//! DELETE define and remove custom events and properties.

use std::sync::Arc;

use cohortdb_storage::catalog::{CatalogData, EventTypeDef, PropertyDef};
use cohortdb_storage::{DataType, EventScanSpec, Store, Value};
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::contacts::{apply_predicate, physical_predicate};
use super::{memory_exec, DmlExec, IngestSink};
use crate::error::{Result, SqlError};
use crate::model::convert::value_at;

/// Which metadata table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// `event_types`.
    EventTypes,
    /// `event_properties`.
    EventProperties,
}

/// A metadata table provider.
#[derive(Debug)]
pub struct MetaTable {
    store: Arc<Store>,
    kind: MetaKind,
}

impl MetaTable {
    /// Provider for `kind`.
    pub fn new(store: Arc<Store>, kind: MetaKind) -> Self {
        MetaTable { store, kind }
    }
}

fn schema_of(kind: MetaKind) -> SchemaRef {
    Arc::new(match kind {
        MetaKind::EventTypes => Schema::new(vec![
            Field::new("event", A::Utf8, false),
            Field::new("display_name", A::Utf8, true),
            Field::new("channel_id", A::Utf8, true),
            Field::new("preset", A::Boolean, true),
            Field::new("parent_event", A::Utf8, true),
        ]),
        MetaKind::EventProperties => Schema::new(vec![
            Field::new("property", A::Utf8, false),
            Field::new("display_name", A::Utf8, true),
            Field::new("data_type", A::Utf8, true),
            Field::new("preset", A::Boolean, true),
        ]),
    })
}

fn batch_of(kind: MetaKind, data: &CatalogData) -> Result<RecordBatch> {
    let schema = schema_of(kind);
    let cols: Vec<ArrayRef> = match kind {
        MetaKind::EventTypes => {
            let t = &data.event_types;
            vec![
                Arc::new(StringArray::from_iter_values(
                    t.iter().map(|e| e.event.as_str()),
                )),
                Arc::new(StringArray::from_iter(
                    t.iter().map(|e| e.display_name.as_deref()),
                )),
                Arc::new(StringArray::from_iter(
                    t.iter().map(|e| e.channel_id.as_deref()),
                )),
                Arc::new(BooleanArray::from_iter(t.iter().map(|e| Some(e.preset)))),
                Arc::new(StringArray::from_iter(
                    t.iter().map(|e| e.parent_event.as_deref()),
                )),
            ]
        }
        MetaKind::EventProperties => {
            let p = &data.event_properties;
            vec![
                Arc::new(StringArray::from_iter_values(
                    p.iter().map(|e| e.property.as_str()),
                )),
                Arc::new(StringArray::from_iter(
                    p.iter().map(|e| e.display_name.as_deref()),
                )),
                Arc::new(StringArray::from_iter_values(
                    p.iter().map(|e| e.data_type.sql_name()),
                )),
                Arc::new(BooleanArray::from_iter(p.iter().map(|e| Some(e.preset)))),
            ]
        }
    };
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// True for `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Columns of `events` that are not properties.
pub const EVENT_BUILTIN_COLUMNS: &[&str] = &[
    "contact_id",
    "event",
    "event_alias",
    "event_date",
    "event_day",
    "channel_id",
    "external_id",
    "openid",
    "unionid",
];

/// Validates and adds a custom event property to `data`.
pub fn define_property(
    data: &mut CatalogData,
    name: &str,
    display: Option<String>,
    t: DataType,
) -> Result<()> {
    if !is_identifier(name) {
        return Err(SqlError::InvalidName(format!(
            "invalid property id \"{name}\": use letters, digits and underscores, not starting with a digit"
        )));
    }
    if name.starts_with("s_") {
        return Err(SqlError::InvalidName(format!(
            "invalid property id \"{name}\": ids starting with s_ are reserved for system properties"
        )));
    }
    if data.event_properties.iter().any(|p| p.property == name)
        || EVENT_BUILTIN_COLUMNS.contains(&name)
    {
        return Err(SqlError::UniqueViolation(format!(
            "event property \"{name}\" already exists"
        )));
    }
    let id = data.next_property_id;
    data.next_property_id += 1;
    data.event_properties.push(PropertyDef {
        id,
        property: name.to_string(),
        display_name: display,
        data_type: t,
        preset: false,
    });
    Ok(())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    }
}

/// Whether any event uses the event type / property (stops at the first).
fn event_type_in_use(store: &Store, type_id: u32) -> Result<bool> {
    let mut used = false;
    store.scan_events(
        &EventScanSpec {
            event_types: Some(vec![type_id]),
            ..Default::default()
        },
        &mut |_, _| {
            used = true;
            false
        },
    )?;
    Ok(used)
}

fn property_in_use(store: &Store, prop_id: u32) -> Result<bool> {
    let mut used = false;
    store.scan_events(&EventScanSpec::default(), &mut |_, v| {
        used = cohortdb_storage::RowReader::new(v).any(|(id, _)| id == prop_id);
        !used
    })?;
    Ok(used)
}

#[async_trait::async_trait]
impl TableProvider for MetaTable {
    fn schema(&self) -> SchemaRef {
        schema_of(self.kind)
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
        let batch = batch_of(self.kind, self.store.catalog().data())?;
        memory_exec(schema_of(self.kind), vec![batch], projection)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        _op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let store = self.store.clone();
        let kind = self.kind;
        let sink = IngestSink::new(
            match kind {
                MetaKind::EventTypes => "event_types",
                MetaKind::EventProperties => "event_properties",
            },
            schema_of(kind),
            Arc::new(move |batches: Vec<RecordBatch>| {
                let store = store.clone();
                Box::pin(async move {
                    let mut rows = Vec::new();
                    for b in &batches {
                        for r in 0..b.num_rows() {
                            let mut row = Vec::new();
                            for c in 0..b.num_columns() {
                                let t = if b.schema().field(c).data_type() == &A::Boolean {
                                    DataType::Boolean
                                } else {
                                    DataType::Varchar
                                };
                                row.push(
                                    value_at(b.column(c).as_ref(), r, t)
                                        .map_err(SqlError::InvalidText)?,
                                );
                            }
                            rows.push(row);
                        }
                    }
                    let n = rows.len() as u64;
                    store
                        .update_catalog(|data, _batch| -> Result<()> {
                            for (i, row) in rows.iter().enumerate() {
                                let at = i + 1;
                                if matches!(row[3], Value::Bool(true)) {
                                    return Err(SqlError::InvalidValue(format!(
                                        "row {at}: preset definitions are created by the server; insert with preset = false"
                                    )));
                                }
                                let id = text(&row[0]).unwrap_or_default();
                                match kind {
                                    MetaKind::EventTypes => {
                                        if !is_identifier(&id) {
                                            return Err(SqlError::InvalidName(format!(
                                                "invalid event id \"{id}\" in row {at}: use letters, digits and underscores, not starting with a digit"
                                            )));
                                        }
                                        if data.event_types.iter().any(|e| e.event == id) {
                                            return Err(SqlError::UniqueViolation(format!(
                                                "event type \"{id}\" already exists (row {at})"
                                            )));
                                        }
                                        let parent = text(&row[4]);
                                        if let Some(p) = &parent {
                                            if !data.event_types.iter().any(|e| &e.event == p) {
                                                return Err(SqlError::InvalidValue(format!(
                                                    "row {at}: parent_event \"{p}\" is not a defined event type"
                                                )));
                                            }
                                        }
                                        let tid = data.next_event_type_id;
                                        data.next_event_type_id += 1;
                                        data.event_types.push(EventTypeDef {
                                            id: tid,
                                            event: id,
                                            display_name: text(&row[1]),
                                            channel_id: text(&row[2]),
                                            preset: false,
                                            parent_event: parent,
                                        });
                                    }
                                    MetaKind::EventProperties => {
                                        let tname = text(&row[2]).unwrap_or_else(|| "VARCHAR".into());
                                        let t = DataType::parse(&tname).ok_or_else(|| {
                                            SqlError::InvalidValue(format!(
                                                "row {at}: unsupported data_type \"{tname}\" (use VARCHAR, BIGINT, DOUBLE, BOOLEAN, DATE or TIMESTAMPTZ)"
                                            ))
                                        })?;
                                        define_property(data, &id, text(&row[1]), t)?;
                                    }
                                }
                            }
                            Ok(())
                        })
                        .await?;
                    Ok(n)
                })
            }),
        );
        Ok(Arc::new(DataSinkExec::new(input, sink, None)))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let pred = physical_predicate(state, &schema_of(self.kind), filters)?;
        let store = self.store.clone();
        let kind = self.kind;
        Ok(DmlExec::new(
            "CohortDelete: metadata",
            Arc::new(move || {
                let (store, pred) = (store.clone(), pred.clone());
                Box::pin(async move {
                    let batch = batch_of(kind, store.catalog().data())?;
                    let hit = apply_predicate(&batch, &pred)?;
                    let names = hit
                        .column(0)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .cloned();
                    let names: Vec<String> = names
                        .iter()
                        .flat_map(|a| a.iter().flatten().map(String::from))
                        .collect();
                    let cat = store.catalog();
                    for n in &names {
                        match kind {
                            MetaKind::EventTypes => {
                                let t = cat.event_type(n).expect("listed");
                                if t.preset {
                                    return Err(SqlError::DependentObjects(format!(
                                        "event type \"{n}\" is preset and cannot be deleted"
                                    )));
                                }
                                if event_type_in_use(&store, t.id)? {
                                    return Err(SqlError::DependentObjects(format!(
                                        "event type \"{n}\" cannot be deleted: events of this type exist"
                                    )));
                                }
                            }
                            MetaKind::EventProperties => {
                                let p = cat.property(n).expect("listed");
                                if p.preset {
                                    return Err(SqlError::DependentObjects(format!(
                                        "event property \"{n}\" is preset and cannot be deleted"
                                    )));
                                }
                                if property_in_use(&store, p.id)? {
                                    return Err(SqlError::DependentObjects(format!(
                                        "event property \"{n}\" cannot be deleted: events carry this property"
                                    )));
                                }
                            }
                        }
                    }
                    let count = names.len() as u64;
                    store
                        .update_catalog(|data, _| -> Result<()> {
                            match kind {
                                MetaKind::EventTypes => {
                                    data.event_types.retain(|t| !names.contains(&t.event))
                                }
                                MetaKind::EventProperties => data
                                    .event_properties
                                    .retain(|p| !names.contains(&p.property)),
                            }
                            Ok(())
                        })
                        .await?;
                    Ok(count)
                })
            }),
        ))
    }
}
