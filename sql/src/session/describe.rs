//! Parse/Describe for the extended protocol: a statement planned (or its
//! result columns found) without running it, and the origins of its result
//! columns.

use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::logical_expr::LogicalPlan;

use super::{Prepared, Session};
use crate::error::Result;
use crate::statement::Statement;

impl Session {
    /// Plans a statement for Parse/Describe (no side effects).
    pub async fn prepare(&self, stmt: Statement) -> Result<Prepared> {
        self.prepare_typed(stmt, &[]).await
    }

    /// Plans a statement for Parse/Describe, typing the `$n` parameters
    /// nothing in the statement types with `client_types` (the Parse
    /// message's OIDs; `None` = unspecified, then text).
    pub async fn prepare_typed(
        &self,
        stmt: Statement,
        client_types: &[Option<ArrowType>],
    ) -> Result<Prepared> {
        let schema = match &stmt {
            Statement::Execute { name, .. } => super::prepared::result_schema(self, name),
            Statement::Analytics { explain, stmt } => Some(
                crate::analytics::output_schema(&self.statement_context(), stmt, *explain).await?,
            ),
            Statement::Call(call) => crate::handler::procedures::result_schema(call),
            _ => None,
        };
        let Some(ast) = stmt.planned_by_datafusion() else {
            let catalog = self.engine.store().catalog();
            let bound_types =
                crate::statement::bind::parameter_types(&stmt, client_types, &|table, column| {
                    crate::ingest::identity_insert::column_type(&catalog, table, column)
                        .map(crate::statement::bind::arrow_type)
                });
            return Ok(Prepared {
                stmt,
                plan: None,
                schema,
                origins: vec![],
                bound_types,
            });
        };
        let is_query = matches!(ast, datafusion::sql::sqlparser::ast::Statement::Query(_));
        let schema = match crate::handler::query::returning_schema(&self.context(), ast).await? {
            Some(s) => Some(s),
            None => schema,
        };
        let plan = crate::handler::query::plan_untyped(&self.context(), ast).await?;
        let plan = if is_query {
            crate::pgcompat::literals::type_output_literals(
                crate::pgcompat::params::apply_client_types(plan, client_types)?,
            )?
        } else {
            plan
        };
        let origins = if is_query {
            self.column_origins(&plan).await
        } else {
            vec![]
        };
        Ok(Prepared {
            stmt,
            plan: Some(plan),
            schema,
            origins,
            bound_types: vec![],
        })
    }

    /// Table OID and column number of each output column of `plan` that is
    /// read straight from a relation (as RowDescription reports them).
    pub async fn column_origins(
        &self,
        plan: &LogicalPlan,
    ) -> Vec<crate::pgcompat::origins::Origin> {
        self.engine
            .relation_oids
            .origins(&self.context(), plan)
            .await
    }
}
