//! `identities`: channel accounts linked to contacts (read-only here; written by ingest and identify).

use std::sync::Arc;

use cohortdb_storage::Store;
use datafusion::arrow::array::{
    Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::memory_exec;
use crate::model::convert::arrow_type_in;

/// The identities table.
#[derive(Debug)]
pub struct IdentitiesTable {
    store: Arc<Store>,
    tz: Arc<str>,
}

impl IdentitiesTable {
    /// Provider over `store`; `created_at` carries time zone `tz`.
    pub fn new(store: Arc<Store>, tz: Arc<str>) -> Self {
        IdentitiesTable { store, tz }
    }
}

fn schema(tz: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("contact_id", A::Int64, false),
        Field::new("id_type", A::Utf8, false),
        Field::new("channel_id", A::Utf8, false),
        Field::new("id_value", A::Utf8, false),
        Field::new(
            "created_at",
            arrow_type_in(cohortdb_storage::DataType::Timestamptz, tz),
            true,
        ),
    ]))
}

/// Identity rows being built into a batch of the table's schema.
struct IdentityRows {
    contact: Int64Builder,
    id_type: StringBuilder,
    channel: StringBuilder,
    value: StringBuilder,
    created: TimestampMillisecondBuilder,
    tz: Arc<str>,
}

impl IdentityRows {
    fn new(tz: &Arc<str>) -> Self {
        IdentityRows {
            contact: Int64Builder::new(),
            id_type: StringBuilder::new(),
            channel: StringBuilder::new(),
            value: StringBuilder::new(),
            created: TimestampMillisecondBuilder::new().with_timezone(tz.as_ref()),
            tz: tz.clone(),
        }
    }

    fn push(&mut self, id_type: &str, channel: &str, value: &str, contact: u64, created: i64) {
        self.contact.append_value(contact as i64);
        self.id_type.append_value(id_type);
        self.channel.append_value(channel);
        self.value.append_value(value);
        self.created.append_value(created);
    }

    fn finish(mut self) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError> {
        RecordBatch::try_new(
            schema(&self.tz),
            vec![
                Arc::new(self.contact.finish()),
                Arc::new(self.id_type.finish()),
                Arc::new(self.channel.finish()),
                Arc::new(self.value.finish()),
                Arc::new(self.created.finish()),
            ],
        )
    }
}

#[async_trait::async_trait]
impl TableProvider for IdentitiesTable {
    fn schema(&self) -> SchemaRef {
        schema(&self.tz)
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
        let mut rows = IdentityRows::new(&self.tz);
        self.store
            .scan_identities(&mut |id_type, channel, value, contact, created| {
                rows.push(id_type, channel, value, contact, created);
                true
            })
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let batch = rows.finish()?;
        memory_exec(schema(&self.tz), vec![batch], projection)
    }
}

impl super::keyed::KeyedRead for IdentitiesTable {
    fn key_columns(&self) -> Vec<usize> {
        vec![1, 2, 3]
    }

    fn read_keys(
        &self,
        keys: &[Vec<datafusion::common::ScalarValue>],
        _columns: &[usize],
    ) -> crate::error::Result<RecordBatch> {
        use datafusion::common::ScalarValue as S;
        let mut rows = IdentityRows::new(&self.tz);
        for key in keys {
            let [S::Utf8(Some(id_type)), S::Utf8(Some(channel)), S::Utf8(Some(value))] =
                key.as_slice()
            else {
                return Err(crate::error::SqlError::InvalidValue(
                    "an identities key lookup takes id_type, channel_id and id_value as text"
                        .into(),
                ));
            };
            if let Some((contact, created)) = self.store.get_identity(id_type, channel, value)? {
                rows.push(id_type, channel, value, contact, created);
            }
        }
        Ok(rows.finish()?)
    }
}
