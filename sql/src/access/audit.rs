//! Which statements leave an audit row, and as what: one exhaustive match
//! over [`Statement`] (no `_` arm). User, role and masking changes write
//! their rows in their own batch (`users.rs`, `handler::ddl`); the
//! statements here are audited right after they succeed; DML planned by
//! DataFusion is audited by its target (`dml`).

use crate::statement::procedure::Procedure;
use crate::statement::Statement;

/// An audit entry to write once the statement succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    /// Action.
    pub action: String,
    /// Object kind.
    pub object_type: &'static str,
    /// Object id.
    pub object_id: String,
}

fn entry(action: &str, object_type: &'static str, object_id: &str) -> Option<Audited> {
    Some(Audited {
        action: action.to_string(),
        object_type,
        object_id: object_id.to_string(),
    })
}

/// The entry of a DataFusion DML statement writing `table` (`op` is
/// `insert`, `update` or `delete`): contact writes only.
pub fn dml(op: &str, table: &str) -> Option<Audited> {
    match (op, table) {
        ("insert", "contacts") => entry("contact_create", "contact", ""),
        ("update", "contacts") => entry("contact_update", "contact", ""),
        ("delete", "contacts") => entry("contact_delete", "contact", ""),
        _ => None,
    }
}

/// The first argument of a call as written (a journey id), without quotes.
fn first_arg(call: &crate::statement::ProcedureCall) -> String {
    call.args
        .first()
        .map(|e| e.to_string().trim_matches('\'').to_string())
        .unwrap_or_default()
}

/// The entry `stmt` leaves after it succeeds, if any.
pub fn audited(stmt: &Statement) -> Option<Audited> {
    match stmt {
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_) => None,
        Statement::IdentityInsert(ast) => match ast.as_ref() {
            datafusion::sql::sqlparser::ast::Statement::Insert(ins)
                if crate::ingest::identity_insert::target(ins).as_deref() == Some("contacts") =>
            {
                entry("contact_create", "contact", "")
            }
            _ => None,
        },
        Statement::CreateTable(ct) => entry("create_table", "table", &ct.name.to_string()),
        Statement::DropTable { names, .. } => entry("drop_table", "table", &names.join(",")),
        Statement::CreateView { name, .. } => entry("create_view", "view", name),
        Statement::DropView { names, .. } => entry("drop_view", "view", &names.join(",")),
        Statement::Truncate { names } => entry("truncate_table", "table", &names.join(",")),
        Statement::AlterTable { table, .. } => entry("alter_table", "table", table),
        Statement::Copy(c) => {
            let table = match &c.source {
                datafusion::sql::sqlparser::ast::CopySource::Table { table_name, .. } => {
                    table_name.to_string().trim_matches('"').to_string()
                }
                datafusion::sql::sqlparser::ast::CopySource::Query(_) => "query".to_string(),
            };
            match (c.to, table.as_str()) {
                (false, "contacts") => entry("contact_import", "contact", ""),
                (true, "contacts" | "contact_view") => entry("contact_export", "contact", ""),
                (true, "query") => entry("export", "query", ""),
                _ => None,
            }
        }
        Statement::Set(_)
        | Statement::Maintenance { .. }
        | Statement::Show { .. }
        | Statement::SessionReset(_)
        | Statement::Discard
        | Statement::Begin
        | Statement::Commit
        | Statement::Rollback
        | Statement::Savepoint { .. }
        | Statement::Prepare { .. }
        | Statement::Execute { .. }
        | Statement::Deallocate { .. }
        | Statement::Analytics { .. } => None,
        // written in the change's own batch
        Statement::User(_) | Statement::Mask(_) => None,
        Statement::Call(call) => match call.procedure {
            Procedure::Identify => entry("contact_update", "contact", "identify"),
            Procedure::MergeContacts => entry("contact_merge", "contact", ""),
            Procedure::DeleteContactData => {
                entry("contact_delete", "contact", "delete_contact_data")
            }
            Procedure::DedupeContacts => entry("contact_merge", "contact", "dedupe_contacts"),
            Procedure::SetDedupeRule => entry("set_dedupe_rule", "setting", "dedupe_rule"),
            Procedure::DropEventsBefore => entry("drop_events", "events", ""),
            Procedure::AuditVerify => None,
            Procedure::ExportEvents => entry("export_events", "events", &first_arg(call)),
            Procedure::WechatAddAccount => entry("wechat_add_account", "wechat_account", ""),
            Procedure::WechatMassSend
            | Procedure::WechatTemplateSend
            | Procedure::WechatCustomSend
            | Procedure::WechatSubscribeSend => entry(call.procedure.name(), "wechat_send", ""),
            Procedure::WechatCancelSend => entry("wechat_cancel_send", "wechat_send", ""),
            Procedure::WechatCreateQrcode => entry("wechat_create_qrcode", "wechat_qrcode", ""),
            Procedure::CreateJourney => entry("journey_create", "journey", &first_arg(call)),
            Procedure::PublishJourney => entry("journey_publish", "journey", &first_arg(call)),
            Procedure::StopJourney => entry("journey_stop", "journey", &first_arg(call)),
            Procedure::DeleteJourney => entry("journey_delete", "journey", &first_arg(call)),
            Procedure::CollectorAddApp => entry("collector_add_app", "collector_app", ""),
            Procedure::CollectorSetWechatToken => {
                entry("collector_set_wechat_token", "wechat_account", "")
            }
        },
        Statement::Segment(g) => {
            let kind = if g.tag().ends_with("TAG") {
                "tag"
            } else {
                "group"
            };
            entry(
                &g.tag().to_ascii_lowercase().replace(' ', "_"),
                kind,
                g.object_name(),
            )
        }
    }
}
