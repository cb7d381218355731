//! Parse/Describe for the extended protocol: a statement planned (or its
//! result columns found) without running it, and the origins of its result
//! columns.

use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::logical_expr::LogicalPlan;

use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;

use super::{CurrentPlan, PlannedIn, Prepared, Session};
use crate::error::{Result, SqlError};
use crate::handler::lookup::KeyLookup;
use crate::handler::row_insert::RowInsert;
use crate::statement::Statement;

/// Whether every table `plan` reads is still defined as in `catalog`
/// (providers that cannot tell count as changed).
pub(super) fn reads_current_tables(
    plan: &LogicalPlan,
    catalog: &cohortdb_storage::Catalog,
) -> bool {
    let mut current = true;
    let _ = plan.apply_with_subqueries(|p| {
        let source = match p {
            LogicalPlan::TableScan(scan) => &scan.source,
            LogicalPlan::Dml(dml) => &dml.target,
            _ => return Ok(TreeNodeRecursion::Continue),
        };
        let same = datafusion::datasource::source_as_provider(source)
            .ok()
            .and_then(|t| crate::tables::keyed::defined_as_in(t.as_ref(), catalog));
        if same != Some(true) {
            current = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    current
}

/// Whether two plans return the same columns (names and types).
fn same_columns(a: &LogicalPlan, b: &LogicalPlan) -> bool {
    let (a, b) = (a.schema().as_arrow(), b.schema().as_arrow());
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

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
            Statement::IdentityInsert(ast) => {
                crate::handler::query::returning_schema(&self.context(), ast).await?
            }
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
                lookup: None,
                insert: None,
                planned_in: None,
            });
        };
        let is_query = matches!(ast, datafusion::sql::sqlparser::ast::Statement::Query(_));
        let catalog = self.engine.store().catalog();
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
        let lookup = if is_query {
            KeyLookup::recognize(&plan).map(Arc::new)
        } else {
            None
        };
        let insert = if matches!(ast, datafusion::sql::sqlparser::ast::Statement::Insert(_)) {
            self.row_insert(&plan, ast).await
        } else {
            None
        };
        let bound_types = crate::pgcompat::params::parameter_types(&plan)?;
        Ok(Prepared {
            stmt,
            plan: Some(plan),
            schema,
            origins,
            bound_types,
            lookup,
            insert,
            planned_in: Some(PlannedIn {
                catalog,
                client_types: client_types.to_vec(),
                current: Default::default(),
            }),
        })
    }

    /// The plan (and key lookup) a prepared statement runs now, when not
    /// its own (`None`): its own while the catalog is the one it was
    /// planned in; a kept one while the tables it reads are defined as then;
    /// otherwise the statement planned again, which must keep its result
    /// columns and parameter types (as PostgreSQL, 0A000 "cached plan must
    /// not change result type" when a column was added to a `SELECT *`).
    pub(super) async fn current_plan(
        &self,
        p: &Prepared,
        plan: &LogicalPlan,
    ) -> Result<Option<(LogicalPlan, Option<Arc<KeyLookup>>, Option<Arc<RowInsert>>)>> {
        let Some(planned_in) = &p.planned_in else {
            return Ok(None);
        };
        let now = self.engine.store().catalog();
        if Arc::ptr_eq(&now, &planned_in.catalog) {
            return Ok(None);
        }
        if let Some(c) = planned_in.current.lock().expect("current plan").as_ref() {
            if Arc::ptr_eq(&now, &c.catalog) {
                return Ok(Some((c.plan.clone(), c.lookup.clone(), c.insert.clone())));
            }
        }
        let current = if reads_current_tables(plan, &now) {
            CurrentPlan {
                catalog: now,
                plan: plan.clone(),
                lookup: p.lookup.clone(),
                insert: p.insert.clone(),
            }
        } else {
            let fresh =
                Box::pin(self.prepare_typed(p.stmt.clone(), &planned_in.client_types)).await?;
            let Some(fresh_plan) = fresh.plan else {
                return Err(SqlError::Unsupported(
                    "cached plan must not change result type".into(),
                ));
            };
            if !p.stmt.is_dml() && !same_columns(plan, &fresh_plan) {
                return Err(SqlError::Unsupported(
                    "cached plan must not change result type (a table it reads was altered since it was prepared; prepare it again)".into(),
                ));
            }
            if crate::pgcompat::params::parameter_types(plan)?
                != crate::pgcompat::params::parameter_types(&fresh_plan)?
            {
                return Err(SqlError::Unsupported(
                    "cached plan must not change parameter types (a table it reads was altered since it was prepared; prepare it again)".into(),
                ));
            }
            CurrentPlan {
                catalog: now,
                plan: fresh_plan,
                lookup: fresh.lookup,
                insert: fresh.insert,
            }
        };
        let out = (
            current.plan.clone(),
            current.lookup.clone(),
            current.insert.clone(),
        );
        *planned_in.current.lock().expect("current plan") = Some(current);
        Ok(Some(out))
    }

    /// The row-insert fast path of an INSERT planned as `plan`, when it is
    /// one; with RETURNING only for one contact, read back by a key lookup.
    async fn row_insert(
        &self,
        plan: &LogicalPlan,
        ast: &datafusion::sql::sqlparser::ast::Statement,
    ) -> Option<Arc<RowInsert>> {
        let insert = RowInsert::recognize(plan)?;
        let Some(items) = crate::handler::query::returning(ast) else {
            return Some(Arc::new(insert));
        };
        if insert.table() != "contacts" || insert.row_count() != 1 {
            return None;
        }
        let text = format!(
            "SELECT {} FROM contacts WHERE id = $1",
            crate::handler::query::returning_list(items)
        );
        let read_back = self
            .context()
            .state()
            .create_logical_plan(&text)
            .await
            .ok()?;
        let lookup = KeyLookup::recognize(&read_back)?;
        insert.with_returning(lookup).map(Arc::new)
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
