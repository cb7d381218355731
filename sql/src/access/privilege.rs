//! Privilege checks, before any side effect: one exhaustive match over
//! [`Statement`] (no `_` arm: a new statement kind must decide who may run
//! it), and one walk over a DataFusion plan — subqueries, joins, views and
//! DML targets included — for the relations a query reads and writes.
//! Both run again when a prepared statement executes, so a REVOKE between
//! Prepare and Execute counts. Denials are 42501. The matrix is in
//! docs/security.md.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::TableReference;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};

use crate::access::roles::{Role, RoleSet};
use crate::error::{Result, SqlError};
use crate::statement::procedure::Procedure;
use crate::statement::user::UserAction;
use crate::statement::Statement;

/// The append-only audit log: nobody writes it through SQL.
pub const AUDIT_LOG: &str = "audit_log";

fn denied(what: &str, needs: &[Role]) -> SqlError {
    let roles: Vec<&str> = needs.iter().map(|r| r.name()).collect();
    SqlError::InsufficientPrivilege(format!(
        "permission denied {what} (needs {})",
        roles.join(" or ")
    ))
}

fn need_admin(roles: RoleSet, what: &str) -> Result<()> {
    if roles.admin() {
        Ok(())
    } else {
        Err(denied(what, &[Role::Admin]))
    }
}

fn need_operate(roles: RoleSet, what: &str) -> Result<()> {
    if roles.operate() {
        Ok(())
    } else {
        Err(denied(what, &[Role::Operator, Role::Admin]))
    }
}

fn need_read(roles: RoleSet, what: &str) -> Result<()> {
    if roles.read() {
        Ok(())
    } else {
        Err(denied(what, &[Role::Analyst, Role::Operator, Role::Admin]))
    }
}

/// Checks that a user holding `roles`, logged in as `user`, may run `stmt`.
/// Relations a query touches are checked by [`check_plan`].
pub fn check_statement(stmt: &Statement, roles: RoleSet, user: &str) -> Result<()> {
    match stmt {
        // planned by DataFusion: the plan walk decides per relation
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_) => Ok(()),
        Statement::IdentityInsert(_) => need_operate(roles, "to insert contacts or events"),
        Statement::CreateTable(_) => need_admin(roles, "to create tables"),
        Statement::DropTable { .. } => need_admin(roles, "to drop tables"),
        Statement::CreateView { .. } | Statement::DropView { .. } => {
            need_operate(roles, "to create or drop views")
        }
        Statement::Truncate { names } => {
            if names.iter().any(|n| n == AUDIT_LOG) {
                return Err(SqlError::InsufficientPrivilege(
                    "permission denied for table audit_log: it is append-only".into(),
                ));
            }
            need_admin(roles, "to truncate tables")
        }
        Statement::AlterTable { .. } => need_admin(roles, "to alter tables"),
        Statement::Maintenance { .. } => need_operate(roles, "to vacuum or analyze tables"),
        Statement::Mask(_) => need_admin(roles, "to mask or unmask columns"),
        Statement::Copy(c) => {
            if c.to {
                need_read(roles, "to copy data out")
            } else {
                if copy_target(c).as_deref() == Some(AUDIT_LOG) {
                    return Err(SqlError::InsufficientPrivilege(
                        "permission denied for table audit_log: it is append-only".into(),
                    ));
                }
                need_operate(roles, "to import data")
            }
        }
        Statement::Set(_)
        | Statement::Show { .. }
        | Statement::SessionReset(_)
        | Statement::Discard
        | Statement::Begin
        | Statement::Commit
        | Statement::Rollback
        | Statement::Savepoint { .. }
        | Statement::Prepare { .. }
        | Statement::Execute { .. }
        | Statement::Deallocate { .. } => Ok(()),
        Statement::Call(call) => match call.procedure {
            Procedure::DropEventsBefore => need_admin(roles, "to drop events"),
            Procedure::AuditVerify => need_admin(roles, "to verify the audit log"),
            Procedure::ExportEvents => need_admin(roles, "to export events to server files"),
            Procedure::WechatAddAccount => need_admin(roles, "to add WeChat accounts"),
            Procedure::WechatMassSend
            | Procedure::WechatTemplateSend
            | Procedure::WechatCustomSend
            | Procedure::WechatSubscribeSend
            | Procedure::WechatCancelSend => need_operate(roles, "to send WeChat messages"),
            Procedure::WechatCreateQrcode => need_operate(roles, "to create WeChat QR codes"),
            Procedure::CreateJourney
            | Procedure::PublishJourney
            | Procedure::StopJourney
            | Procedure::DeleteJourney => need_operate(roles, "to manage journeys"),
            Procedure::SetDedupeRule => need_admin(roles, "to set the dedupe rule"),
            Procedure::CollectorAddApp | Procedure::CollectorSetWechatToken => {
                need_admin(roles, "to configure the collector")
            }
            Procedure::Identify
            | Procedure::MergeContacts
            | Procedure::DeleteContactData
            | Procedure::DedupeContacts => {
                need_operate(roles, &format!("to call {}", call.procedure.name()))
            }
        },
        Statement::User(u) => match &u.action {
            // anyone may change their own password
            UserAction::Alter if u.name == user && u.superuser.is_none() => Ok(()),
            UserAction::Create
            | UserAction::Alter
            | UserAction::Drop { .. }
            | UserAction::Grant { .. }
            | UserAction::Revoke { .. } => need_admin(roles, "to manage users and roles"),
        },
        Statement::Segment(_) => need_operate(roles, "to change groups and tags"),
        Statement::Analytics { .. } => need_read(roles, "to run analytics"),
    }
}

fn copy_target(c: &crate::statement::CopyStatement) -> Option<String> {
    match &c.source {
        datafusion::sql::sqlparser::ast::CopySource::Table { table_name, .. } => table_name
            .0
            .last()
            .map(|p| p.to_string().trim_matches('"').to_string()),
        datafusion::sql::sqlparser::ast::CopySource::Query(_) => None,
    }
}

fn system_schema(t: &TableReference) -> bool {
    matches!(t.schema(), Some("pg_catalog" | "information_schema"))
}

fn check_read(t: &TableReference, roles: RoleSet) -> Result<()> {
    if system_schema(t) {
        return Ok(());
    }
    match t.table() {
        AUDIT_LOG | "collector_apps" => need_admin(roles, &format!("for table {}", t.table())),
        other => need_read(roles, &format!("for table {other}")),
    }
}

fn check_write(t: &TableReference, op: &WriteOp, roles: RoleSet) -> Result<()> {
    let table = t.table();
    if system_schema(t) || table == AUDIT_LOG {
        return Err(SqlError::InsufficientPrivilege(format!(
            "permission denied for table {table}{}",
            if table == AUDIT_LOG {
                ": it is append-only"
            } else {
                ""
            }
        )));
    }
    let what = format!("to {} table {table}", op.name().to_ascii_lowercase());
    match table {
        "event_types" | "event_properties" => need_admin(roles, &what),
        _ => need_operate(roles, &what),
    }
}

/// Checks every relation `plan` reads or writes (subqueries included).
pub fn check_plan(plan: &LogicalPlan, roles: RoleSet) -> Result<()> {
    if roles.admin() {
        // admins read everything; only audit_log writes are refused
        let mut out = Ok(());
        plan.apply_with_subqueries(|p| {
            if let LogicalPlan::Dml(DmlStatement { table_name, .. }) = p {
                if table_name.table() == AUDIT_LOG {
                    out = Err(SqlError::InsufficientPrivilege(
                        "permission denied for table audit_log: it is append-only".into(),
                    ));
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        return out;
    }
    let mut out = Ok(());
    plan.apply_with_subqueries(|p| {
        let r = match p {
            LogicalPlan::TableScan(s) => check_read(&s.table_name, roles),
            LogicalPlan::Dml(d) => check_write(&d.table_name, &d.op, roles),
            _ => Ok(()),
        };
        match r {
            Ok(()) => Ok(TreeNodeRecursion::Continue),
            Err(e) => {
                out = Err(e);
                Ok(TreeNodeRecursion::Stop)
            }
        }
    })?;
    out
}
