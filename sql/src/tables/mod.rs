//! The `cohortdb` catalog as DataFusion sees it (`catalog.rs`), its table
//! providers over cohortdb storage, and the execution nodes they share
//! (in-memory scans, DML nodes, ingest sinks).
//!
//! May use: `ingest` (INSERT/UPDATE/DELETE go through its batches),
//! `segments` (membership columns of `contact_view`, the groups/tags
//! tables), `pgcompat`, `runtime`, `model`, `error`.

pub mod audit;
pub mod catalog;
pub mod collector;
pub mod contacts;
pub mod events;
pub mod groups;
pub mod identities;
pub mod journeys;
pub mod keyed;
pub mod meta;
pub mod user;
pub mod view;
pub mod wechat;

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::future::BoxFuture;
use futures::StreamExt;

use crate::error::SqlError;

tokio::task_local! {
    /// Set by a statement with RETURNING: the rows its DML wrote (INSERT,
    /// UPDATE: the new values) or removed (DELETE: the old values), in the
    /// table's schema.
    pub static RETURNING_ROWS: Arc<std::sync::Mutex<Vec<RecordBatch>>>;
}

/// Records rows for RETURNING when the running statement asked for them.
pub fn record_returning(rows: &RecordBatch) {
    let _ = RETURNING_ROWS.try_with(|v| v.lock().expect("returning rows").push(rows.clone()));
}

/// A scan over batches built in memory.
pub fn memory_exec(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    projection: Option<&Vec<usize>>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    Ok(MemorySourceConfig::try_new_exec(
        &[batches],
        schema,
        projection.cloned(),
    )?)
}

/// A read-only relation whose rows are built in memory from storage at
/// each scan (the WeChat and journey tables).
pub trait RowSource: std::fmt::Debug + Send + Sync {
    /// The columns.
    fn row_schema(&self) -> SchemaRef;
    /// The rows, column by column, in `row_schema` order.
    fn columns(&self) -> cohortdb_storage::Result<Vec<ArrayRef>>;
}

/// The table provider of a [`RowSource`].
#[derive(Debug)]
pub struct RowsTable<T: RowSource>(pub T);

#[async_trait::async_trait]
impl<T: RowSource + 'static> datafusion::datasource::TableProvider for RowsTable<T> {
    fn schema(&self) -> SchemaRef {
        self.0.row_schema()
    }
    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }
    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let cols = self
            .0
            .columns()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let batch = RecordBatch::try_new(self.0.row_schema(), cols)?;
        memory_exec(self.0.row_schema(), vec![batch], projection)
    }
}

/// Schema of DML results: one `count` column.
pub fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        ArrowType::UInt64,
        false,
    )]))
}

type DmlFn = Arc<dyn Fn() -> BoxFuture<'static, Result<u64, SqlError>> + Send + Sync>;

/// A DML statement (UPDATE / DELETE) that runs when executed and returns its row count.
pub struct DmlExec {
    name: String,
    run: DmlFn,
    props: Arc<PlanProperties>,
}

impl DmlExec {
    /// A node named `name` (shown by EXPLAIN) running `run`.
    pub fn new(name: impl Into<String>, run: DmlFn) -> Arc<DmlExec> {
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Arc::new(DmlExec {
            name: name.into(),
            run,
            props,
        })
    }
}

impl fmt::Debug for DmlExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmlExec({})", self.name)
    }
}

impl DisplayAs for DmlExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}

impl ExecutionPlan for DmlExec {
    fn name(&self) -> &str {
        "DmlExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
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
        _partition: usize,
        _ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let run = self.run.clone();
        let fut = async move {
            let n = run().await.map_err(DataFusionError::from)?;
            let col: ArrayRef = Arc::new(UInt64Array::from(vec![n]));
            Ok(RecordBatch::try_new(count_schema(), vec![col])?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            count_schema(),
            futures::stream::once(fut),
        )))
    }
}

/// What an INSERT into a table does with its rows (in the table's schema):
/// validates and commits them atomically, returning the row count. The
/// planned INSERT (`IngestSink`) and the one-row fast path
/// (`handler::row_insert`) call the same function.
pub type SinkFn =
    Arc<dyn Fn(Vec<RecordBatch>) -> BoxFuture<'static, Result<u64, SqlError>> + Send + Sync>;

/// The insert function of `provider`, when rows can be written to it
/// without a DataFusion plan: `contacts` and user tables.
pub fn direct_insert(provider: &dyn datafusion::datasource::TableProvider) -> Option<SinkFn> {
    if let Some(t) = provider.downcast_ref::<contacts::ContactsTable>() {
        return t.insert_writer();
    }
    provider
        .downcast_ref::<user::UserTable>()
        .map(|t| t.insert_writer())
}

/// An INSERT target: collects the input batches, then hands them to `write`,
/// which validates and commits them atomically.
pub struct IngestSink {
    name: String,
    schema: SchemaRef,
    write: SinkFn,
}

impl IngestSink {
    /// A sink for `schema` named `name`.
    pub fn new(name: impl Into<String>, schema: SchemaRef, write: SinkFn) -> Arc<IngestSink> {
        Arc::new(IngestSink {
            name: name.into(),
            schema,
            write,
        })
    }
}

impl fmt::Debug for IngestSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IngestSink({})", self.name)
    }
}

impl DisplayAs for IngestSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CohortInsert: table={}", self.name)
    }
}

#[async_trait::async_trait]
impl DataSink for IngestSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _ctx: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let mut batches = Vec::new();
        while let Some(b) = data.next().await {
            batches.push(b?);
        }
        (self.write)(batches).await.map_err(DataFusionError::from)
    }
}
