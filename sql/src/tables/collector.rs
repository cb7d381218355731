//! `collector_apps`: the apps the HTTP collector accepts events from
//! (`CALL collector_add_app`). The key is never shown; only its SHA-256 is
//! stored.

use std::sync::Arc;

use cohortdb_storage::Store;
use datafusion::arrow::array::{RecordBatch, StringBuilder, TimestampMillisecondBuilder};
use datafusion::arrow::datatypes::{DataType as A, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::memory_exec;
use crate::model::convert::arrow_type_in;

/// The collector_apps table.
#[derive(Debug)]
pub struct CollectorAppsTable {
    store: Arc<Store>,
    tz: Arc<str>,
}

impl CollectorAppsTable {
    /// Provider over `store`; `created_at` carries time zone `tz`.
    pub fn new(store: Arc<Store>, tz: Arc<str>) -> Self {
        CollectorAppsTable { store, tz }
    }
}

fn schema(tz: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("app_id", A::Utf8, false),
        Field::new("channel_id", A::Utf8, false),
        Field::new(
            "created_at",
            arrow_type_in(cohortdb_storage::DataType::Timestamptz, tz),
            false,
        ),
    ]))
}

#[async_trait::async_trait]
impl TableProvider for CollectorAppsTable {
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
        let (mut app, mut chan) = (StringBuilder::new(), StringBuilder::new());
        let mut ts = TimestampMillisecondBuilder::new().with_timezone(self.tz.as_ref());
        let catalog = self.store.catalog();
        for a in &catalog.data().collector_apps {
            app.append_value(&a.app_id);
            chan.append_value(&a.channel_id);
            ts.append_value(a.created_at);
        }
        let batch = RecordBatch::try_new(
            schema(&self.tz),
            vec![
                Arc::new(app.finish()),
                Arc::new(chan.finish()),
                Arc::new(ts.finish()),
            ],
        )?;
        memory_exec(schema(&self.tz), vec![batch], projection)
    }
}
