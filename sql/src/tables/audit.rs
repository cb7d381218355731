//! `audit_log(ts, user_name, action, object_type, object_id, detail, seq)`:
//! the audit rows in order (readable by `cohort_admin` only: see
//! `access::privilege`; no statement writes it).

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

/// The audit_log table.
#[derive(Debug)]
pub struct AuditLogTable {
    store: Arc<Store>,
    tz: Arc<str>,
}

impl AuditLogTable {
    /// Provider over `store`; `ts` carries time zone `tz`.
    pub fn new(store: Arc<Store>, tz: Arc<str>) -> Self {
        AuditLogTable { store, tz }
    }
}

fn schema(tz: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            arrow_type_in(cohortdb_storage::DataType::Timestamptz, tz),
            false,
        ),
        Field::new("user_name", A::Utf8, false),
        Field::new("action", A::Utf8, false),
        Field::new("object_type", A::Utf8, false),
        Field::new("object_id", A::Utf8, false),
        Field::new("detail", A::Utf8, false),
        Field::new("seq", A::Int64, false),
    ]))
}

#[async_trait::async_trait]
impl TableProvider for AuditLogTable {
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
        let mut ts = TimestampMillisecondBuilder::new().with_timezone(self.tz.as_ref());
        let (mut user, mut action, mut otype, mut oid, mut detail) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut seqs = Int64Builder::new();
        self.store
            .scan_audit(&mut |seq, r| {
                ts.append_value(r.ts);
                user.append_value(&r.user_name);
                action.append_value(&r.action);
                otype.append_value(&r.object_type);
                oid.append_value(&r.object_id);
                detail.append_value(&r.detail);
                seqs.append_value(seq as i64);
                true
            })
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let batch = RecordBatch::try_new(
            schema(&self.tz),
            vec![
                Arc::new(ts.finish()),
                Arc::new(user.finish()),
                Arc::new(action.finish()),
                Arc::new(otype.finish()),
                Arc::new(oid.finish()),
                Arc::new(detail.finish()),
                Arc::new(seqs.finish()),
            ],
        )?;
        memory_exec(schema(&self.tz), vec![batch], projection)
    }
}
