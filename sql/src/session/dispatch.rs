//! The statement router: one exhaustive `match` over [`Statement`] (no `_`
//! arm), so a new statement kind does not compile until it is routed. Each
//! arm hands the statement to its handler with the session's
//! [`StatementContext`](crate::runtime::StatementContext), or changes
//! session state (SET, PREPARE, …) here.

use datafusion::common::tree_node::TreeNode;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;

use super::{Outcome, Prepared, Session};
use crate::access::privilege;
use crate::access::roles::RoleSet;
use crate::error::Result;
use crate::handler;
use crate::handler::lookup::KeyLookup;
use crate::statement::Statement;

impl Session {
    /// The user's roles now, with the session's masking set from them.
    pub(super) fn authorize(&self) -> RoleSet {
        let roles = RoleSet::of_name(self.engine.store(), &self.user());
        self.mask.set(!roles.unmasked());
        roles
    }

    /// Executes a prepared statement with bound parameters (privileges are
    /// checked again: a REVOKE since Prepare counts).
    pub async fn execute_prepared(
        &self,
        p: &Prepared,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        match (&p.plan, p.stmt.planned_by_datafusion()) {
            (Some(plan), Some(ast)) => {
                let roles = self.authorize();
                privilege::check_statement(&p.stmt, roles, &self.user())?;
                let current = self.current_plan(p, plan).await?;
                let (plan, lookup, insert) = match &current {
                    Some((plan, lookup, insert)) => (plan, lookup, insert),
                    None => (plan, &p.lookup, &p.insert),
                };
                privilege::check_plan(plan, roles)?;
                if params.is_none() && matches!(plan, LogicalPlan::Explain(_)) {
                    if let Some(out) = self.key_lookup(plan).await? {
                        return Ok(out);
                    }
                }
                if let Some(lookup) = lookup {
                    if let Some(batch) = lookup.run(params.as_ref()).await? {
                        return Ok(Outcome::Batch {
                            batch,
                            origins: p.origins.clone(),
                        });
                    }
                }
                let audit = dml_audit(plan);
                if let Some(insert) = insert {
                    let params = params.as_ref();
                    let done = self
                        .audited(audit.clone(), async {
                            Ok(if insert.returns_rows() {
                                insert
                                    .run_returning(params)
                                    .await?
                                    .map(|batch| Outcome::Batch {
                                        batch,
                                        origins: vec![],
                                    })
                            } else {
                                insert.run(params).await?.map(|n| Outcome::Command {
                                    tag: "INSERT".into(),
                                    rows: Some(n),
                                })
                            })
                        })
                        .await?;
                    if let Some(out) = done {
                        return Ok(out);
                    }
                }
                let plan = match params {
                    Some(v) => plan.clone().replace_params_with_values(&v)?,
                    None => plan.clone(),
                };
                let qctx = self.query_context()?;
                let out = self
                    .audited(audit, async {
                        Ok(Some(
                            handler::query::run_plan(&qctx, ast, plan).await?.into(),
                        ))
                    })
                    .await?;
                Ok(out.expect("a planned statement has an outcome"))
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

    /// A query that reads rows by key, answered by `handler::lookup`
    /// (`None`: not one; run the plan). `EXPLAIN` of one runs as usual and
    /// shows the lookup as its physical plan.
    async fn key_lookup(&self, plan: &LogicalPlan) -> Result<Option<Outcome>> {
        if let LogicalPlan::Explain(e) = plan {
            let described = match KeyLookup::recognize(&e.plan) {
                Some(lookup) => lookup.describe(),
                None => match crate::handler::row_insert::RowInsert::recognize(&e.plan) {
                    Some(insert) => insert.describe(),
                    None => return Ok(None),
                },
            };
            let df = self
                .query_context()?
                .execute_logical_plan(plan.clone())
                .await?;
            let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
            let batch = datafusion::arrow::compute::concat_batches(&schema, &df.collect().await?)?;
            return Ok(Some(Outcome::Batch {
                batch: explained_as_lookup(&batch, &described)?,
                origins: vec![],
            }));
        }
        let Some(lookup) = KeyLookup::recognize(plan) else {
            return Ok(None);
        };
        let Some(batch) = lookup.run(None).await? else {
            return Ok(None);
        };
        let origins = self.column_origins(plan).await;
        Ok(Some(Outcome::Batch { batch, origins }))
    }

    /// Executes one statement: privileges first, then the statement, then
    /// its audit row.
    pub async fn execute(&self, stmt: Statement) -> Result<Outcome> {
        if !matches!(
            stmt,
            Statement::Query(_)
                | Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
                | Statement::Call(_)
        ) {
            // settings and definitions shape plans (a kept plan is checked
            // against the catalog when used; procedures define no tables)
            self.query_cache.clear();
        }
        let roles = self.authorize();
        privilege::check_statement(&stmt, roles, &self.user())?;
        let Some(a) = crate::access::audit::audited(&stmt) else {
            return self.run(stmt, roles).await;
        };
        // the change's own commit takes the row where it can (atomic);
        // otherwise it is written right after
        let row = self.audit_row(&a, String::new());
        let (out, left) = crate::runtime::audit::scope(row, self.run(stmt, roles)).await;
        let out = out?;
        if left.is_some() {
            let detail = audit_detail(&out);
            self.write_audit(a, detail).await;
        }
        Ok(out)
    }

    /// Appends the audit row of a statement that succeeded.
    fn audit_row(
        &self,
        a: &crate::access::audit::Audited,
        detail: String,
    ) -> cohortdb_storage::audit::AuditRow {
        crate::runtime::audit::row(
            &self.user(),
            &a.action,
            a.object_type,
            &a.object_id,
            &detail,
        )
    }

    /// Runs `f`, a change, with the audit row `a` it leaves (if any): its
    /// commit takes the row where it can (atomic), otherwise the row is
    /// written right after. `f` returning `None` changed nothing and
    /// leaves no row.
    pub(super) async fn audited<F>(
        &self,
        a: Option<crate::access::audit::Audited>,
        f: F,
    ) -> Result<Option<Outcome>>
    where
        F: std::future::Future<Output = Result<Option<Outcome>>>,
    {
        let Some(a) = a else {
            return f.await;
        };
        let row = self.audit_row(&a, String::new());
        let (out, left) = crate::runtime::audit::scope(row, f).await;
        let out = out?;
        let detail = match (&out, left) {
            (Some(o), Some(_)) => Some(audit_detail(o)),
            _ => None,
        };
        if let Some(detail) = detail {
            self.write_audit(a, detail).await;
        }
        Ok(out)
    }

    async fn write_audit(&self, a: crate::access::audit::Audited, detail: String) {
        let row = self.audit_row(&a, detail);
        if let Err(e) = self.engine.store().audit(row).await {
            tracing::warn!("writing the audit row of {} failed: {e}", a.action);
        }
    }

    async fn run(&self, stmt: Statement, roles: RoleSet) -> Result<Outcome> {
        let ctx = self.statement_context();
        let store = &ctx.store;
        Ok(match stmt {
            Statement::Query(ast)
            | Statement::Insert(ast)
            | Statement::Update(ast)
            | Statement::Delete(ast) => {
                let plan = handler::query::plan(&ctx.df, &ast).await?;
                privilege::check_plan(&plan, roles)?;
                if let Some(out) = self.key_lookup(&plan).await? {
                    return Ok(out);
                }
                let audit = dml_audit(&plan);
                let qctx = self.query_context()?;
                self.audited(audit, async {
                    Ok(Some(
                        handler::query::run_plan(&qctx, &ast, plan).await?.into(),
                    ))
                })
                .await?
                .expect("a planned statement has an outcome")
            }
            Statement::IdentityInsert(ast) => handler::query::identity_insert_returning(&ctx, &ast)
                .await?
                .into(),
            Statement::CreateTable(ct) => match &ct.query {
                Some(q) => handler::views::create_table_as(&ctx.df, store, &ct, q)
                    .await?
                    .into(),
                None => handler::ddl::create_table(store, &ct).await?.into(),
            },
            Statement::CreateView {
                name,
                columns,
                query,
                or_replace,
                if_not_exists,
            } => handler::views::create_view(
                &ctx.df,
                store,
                &name,
                &columns,
                &query,
                or_replace,
                if_not_exists,
            )
            .await?
            .into(),
            Statement::DropView { names, if_exists } => {
                handler::views::drop_view(store, &names, if_exists)
                    .await?
                    .into()
            }
            Statement::DropTable { names, if_exists } => {
                handler::ddl::drop_table(store, &names, if_exists)
                    .await?
                    .into()
            }
            Statement::Truncate { names } => handler::ddl::truncate(store, &names).await?.into(),
            Statement::Maintenance { kind, tables } => {
                handler::ddl::maintenance(&ctx.df, kind, &tables)
                    .await?
                    .into()
            }
            Statement::AlterTable { table, operations } => {
                handler::ddl::alter_table(store, &table, &operations)
                    .await?
                    .into()
            }
            Statement::Copy(copy) => {
                let out = handler::copy::copy(&ctx, &self.query_context()?, &copy).await?;
                if let Outcome::CopyOut { df, .. } = &out {
                    privilege::check_plan(df.logical_plan(), roles)?;
                    if self.mask.on() {
                        crate::tables::contacts::refuse_masked_export(df.logical_plan(), store)?;
                    }
                }
                out
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
            Statement::Savepoint { action, .. } => Outcome::command(match action {
                crate::statement::SavepointAction::Create => "SAVEPOINT",
                crate::statement::SavepointAction::Release => "RELEASE",
                crate::statement::SavepointAction::RollbackTo => "ROLLBACK TO",
            }),
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
            Statement::Mask(m) => handler::ddl::set_masked(store, &m, &ctx.user).await?.into(),
            Statement::Segment(g) => {
                if self.mask.on() {
                    refuse_masked_definition(store, &g)?;
                }
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

/// An EXPLAIN result with its physical plan replaced by `lookup` (the
/// rows of `plan_type` `physical_plan`).
fn explained_as_lookup(
    batch: &datafusion::arrow::array::RecordBatch,
    lookup: &str,
) -> Result<datafusion::arrow::array::RecordBatch> {
    use datafusion::arrow::array::{Array, AsArray, StringArray};
    if batch.num_columns() != 2 {
        return Ok(batch.clone());
    }
    let kinds = batch.column(0).as_string::<i32>();
    let plans = batch.column(1).as_string::<i32>();
    let replaced: StringArray = (0..batch.num_rows())
        .map(|r| {
            if kinds.value(r) == "physical_plan" {
                Some(lookup.to_string())
            } else {
                plans.is_valid(r).then(|| plans.value(r).to_string())
            }
        })
        .collect();
    Ok(datafusion::arrow::array::RecordBatch::try_new(
        batch.schema(),
        vec![batch.column(0).clone(), std::sync::Arc::new(replaced)],
    )?)
}

/// The audit entry a planned INSERT, UPDATE or DELETE leaves (contacts).
pub(super) fn dml_audit(plan: &LogicalPlan) -> Option<crate::access::audit::Audited> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::logical_expr::WriteOp;
    let mut audit = None;
    let _ = plan.apply(|p| {
        let LogicalPlan::Dml(d) = p else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let op = match &d.op {
            WriteOp::Insert(_) => "insert",
            WriteOp::Update => "update",
            WriteOp::Delete => "delete",
            _ => "other",
        };
        audit = crate::access::audit::dml(op, d.table_name.table());
        Ok(TreeNodeRecursion::Stop)
    });
    audit
}

/// The detail of a statement's audit row: its row count, if any.
fn audit_detail(out: &Outcome) -> String {
    match out {
        Outcome::Command { rows: Some(n), .. } => format!("rows={n}"),
        Outcome::CopyIn(_) => "copy from stdin started".to_string(),
        _ => String::new(),
    }
}

/// A group or tag definition of a user who sees masked columns masked may
/// not name a masked column: definitions are refreshed later without the
/// user's masking, and their memberships would reveal the hidden values.
fn refuse_masked_definition(
    store: &cohortdb_storage::Store,
    g: &crate::segments::groups::GroupStatement,
) -> Result<()> {
    use crate::segments::groups::{GroupStatement as G, TagSource};
    let text = match g {
        G::CreateGroup { query, .. } => query.as_str(),
        G::CreateTag {
            source: TagSource::Query(q),
            ..
        } => q.as_str(),
        _ => return Ok(()),
    };
    let catalog = store.catalog();
    let words: std::collections::HashSet<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map(|w| w.to_ascii_lowercase())
        .collect();
    if let Some(f) = catalog
        .data()
        .contact_fields
        .iter()
        .find(|f| f.masked && words.contains(&f.name))
    {
        return Err(crate::error::SqlError::InsufficientPrivilege(format!(
            "permission denied to define a group or tag on masked column {} (needs cohort_unmasked)",
            f.name
        )));
    }
    Ok(())
}
