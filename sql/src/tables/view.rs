//! Stored views (`CREATE VIEW`): the provider that plans a view's query in
//! the reading session each time the view is scanned (so the session's time
//! zone, masking and functions apply), and the encoding of a view's result
//! columns in the catalog (an Arrow IPC schema message).

use std::sync::Arc;

use cohortdb_storage::ViewDef;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{col, Expr, ExprSchemable};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::error::{Result, SqlError};

/// Encodes a view's result columns for the catalog.
pub fn encode_columns(schema: &SchemaRef) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut out, schema)?;
        w.write(&RecordBatch::new_empty(schema.clone()))?;
        w.finish()?;
    }
    Ok(out)
}

/// Decodes what [`encode_columns`] wrote.
pub fn decode_columns(bytes: &[u8]) -> Result<SchemaRef> {
    let r = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(r.schema())
}

/// A stored view.
#[derive(Debug)]
pub struct ViewTable {
    def: ViewDef,
    schema: SchemaRef,
}

impl ViewTable {
    /// The provider of `def` (an undecodable column list is 22P02, never a panic).
    pub fn new(def: ViewDef) -> Result<Self> {
        let schema = decode_columns(&def.columns).map_err(|e| {
            SqlError::InvalidText(format!("view \"{}\" has unreadable columns: {e}", def.name))
        })?;
        Ok(ViewTable { def, schema })
    }
}

#[async_trait::async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(state) = state.as_any().downcast_ref::<SessionState>() else {
            return Err(DataFusionError::Plan(format!(
                "view \"{}\" needs a cohortdb session",
                self.def.name
            )));
        };
        let ctx = SessionContext::new_with_state(state.clone());
        let df = ctx.sql(&self.def.sql).await.map_err(|e| {
            DataFusionError::Plan(format!(
                "view \"{}\" cannot be read: {e} (drop and re-create it)",
                self.def.name
            ))
        })?;
        let got = df.schema().fields().len();
        if got != self.schema.fields().len() {
            return Err(DataFusionError::Plan(format!(
                "view \"{}\" now has {got} columns instead of {}: drop and re-create it",
                self.def.name,
                self.schema.fields().len()
            )));
        }
        // the view's column names and types, by position
        let exprs: Vec<Expr> = df
            .schema()
            .columns()
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                col(c)
                    .cast_to(f.data_type(), df.schema())
                    .map(|e| e.alias(f.name()))
            })
            .collect::<DfResult<_>>()?;
        let mut df = df.select(exprs)?;
        if let Some(p) = projection {
            let names: Vec<Expr> = p
                .iter()
                .map(|&i| {
                    Expr::Column(datafusion::common::Column::from_name(
                        self.schema.field(i).name(),
                    ))
                })
                .collect();
            df = df.select(names)?;
        }
        if let Some(n) = limit {
            df = df.limit(0, Some(n))?;
        }
        df.create_physical_plan().await
    }
}
