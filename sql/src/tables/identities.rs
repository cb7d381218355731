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
use crate::convert::{arrow_type, TS_TZ};

/// The identities table.
#[derive(Debug)]
pub struct IdentitiesTable {
    store: Arc<Store>,
}

impl IdentitiesTable {
    /// Provider over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        IdentitiesTable { store }
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("contact_id", A::Int64, false),
        Field::new("id_type", A::Utf8, false),
        Field::new("channel_id", A::Utf8, false),
        Field::new("id_value", A::Utf8, false),
        Field::new(
            "created_at",
            arrow_type(cohortdb_storage::DataType::Timestamptz),
            true,
        ),
    ]))
}

#[async_trait::async_trait]
impl TableProvider for IdentitiesTable {
    fn schema(&self) -> SchemaRef {
        schema()
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
        let (mut c, mut t, mut ch, mut v) = (
            Int64Builder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut ts = TimestampMillisecondBuilder::new().with_timezone(TS_TZ);
        self.store
            .scan_identities(&mut |id_type, channel, value, contact, created| {
                c.append_value(contact as i64);
                t.append_value(id_type);
                ch.append_value(channel);
                v.append_value(value);
                ts.append_value(created);
                true
            })
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(c.finish()),
                Arc::new(t.finish()),
                Arc::new(ch.finish()),
                Arc::new(v.finish()),
                Arc::new(ts.finish()),
            ],
        )?;
        memory_exec(schema(), vec![batch], projection)
    }
}
