//! The statement router: one exhaustive `match` over [`Statement`] (no `_`
//! arm), so a new statement kind does not compile until it is routed. Each
//! arm hands the statement to its handler with the session's
//! [`StatementContext`](crate::runtime::StatementContext), or changes
//! session state (SET, PREPARE, …) here.

use datafusion::common::ParamValues;

use super::{Outcome, Prepared, Session};
use crate::error::Result;
use crate::handler;
use crate::statement::Statement;

impl Session {
    /// Executes a prepared statement with bound parameters.
    pub async fn execute_prepared(
        &self,
        p: &Prepared,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        match (&p.plan, p.stmt.planned_by_datafusion()) {
            (Some(plan), Some(ast)) => {
                let plan = match params {
                    Some(v) => plan.clone().replace_params_with_values(&v)?,
                    None => plan.clone(),
                };
                let reply = handler::query::run_plan(&self.query_context()?, ast, plan).await?;
                Ok(reply.into())
            }
            (None, _) => match params {
                Some(v) => {
                    self.execute(crate::statement::bind::bind(p.stmt.clone(), &v)?)
                        .await
                }
                None => self.execute(p.stmt.clone()).await,
            },
            (Some(_), None) => self.execute(p.stmt.clone()).await,
        }
    }

    /// Executes one statement.
    pub async fn execute(&self, stmt: Statement) -> Result<Outcome> {
        let ctx = self.statement_context();
        let store = &ctx.store;
        Ok(match stmt {
            Statement::Query(ast)
            | Statement::Insert(ast)
            | Statement::Update(ast)
            | Statement::Delete(ast) => {
                let plan = handler::query::plan(&ctx.df, &ast).await?;
                handler::query::run_plan(&self.query_context()?, &ast, plan)
                    .await?
                    .into()
            }
            Statement::IdentityInsert(ast) => crate::ingest::identity_insert::run(&ctx, &ast)
                .await?
                .into(),
            Statement::CreateTable(ct) => handler::ddl::create_table(store, &ct).await?.into(),
            Statement::DropTable { names, if_exists } => {
                handler::ddl::drop_table(store, &names, if_exists)
                    .await?
                    .into()
            }
            Statement::Truncate { names } => handler::ddl::truncate(store, &names).await?.into(),
            Statement::AlterTable { table, operations } => {
                handler::ddl::alter_table(store, &table, &operations)
                    .await?
                    .into()
            }
            Statement::Copy(copy) => {
                handler::copy::copy(&ctx, &self.query_context()?, &copy).await?
            }
            Statement::Set(set) => self.set(&set)?,
            Statement::Show { name } => self.show(&name)?,
            Statement::SessionReset(ast) => {
                crate::runtime::settings::session_statement(&self.settings, &ast)?.into()
            }
            Statement::Discard => {
                crate::runtime::settings::reset_all(&self.settings);
                self.prepared.clear();
                Outcome::command("DISCARD ALL")
            }
            Statement::Begin => Outcome::command("BEGIN"),
            Statement::Commit => Outcome::command("COMMIT"),
            Statement::Rollback => Outcome::command("ROLLBACK"),
            Statement::Prepare {
                name,
                data_types,
                statement,
            } => super::prepared::prepare(self, &name, &data_types, &statement).await?,
            Statement::Execute { name, parameters } => {
                Box::pin(super::prepared::execute(self, &name, &parameters)).await?
            }
            Statement::Deallocate { name } => super::prepared::deallocate(self, &name)?,
            Statement::Call(call) => handler::procedures::call(&ctx, &call).await?.into(),
            Statement::User(user) => crate::access::users::execute(store, &user, &ctx.user)
                .await?
                .into(),
            Statement::Segment(g) => {
                crate::segments::groups::execute(&ctx, self.engine.scheduler(), *g)
                    .await?
                    .into()
            }
            Statement::Analytics { explain, stmt } => {
                let batch = crate::analytics::execute(&ctx, &stmt, explain).await?;
                Outcome::Rows(ctx.df.read_batch(batch)?)
            }
        })
    }
}
