//! `CALL` procedures by name: the one list of procedures cohortdb has. A
//! `CALL` naming anything else fails when it is parsed.

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
};

use crate::error::{Result, SqlError};

/// A procedure cohortdb provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Procedure {
    /// `drop_events_before('YYYY-MM-DD')`.
    DropEventsBefore,
    /// `identify(channel_id, external_id [, props_json])`.
    Identify,
    /// `merge_contacts(target_id, source_id)`.
    MergeContacts,
    /// `delete_contact_data(channel_id, external_id)`.
    DeleteContactData,
    /// `set_dedupe_rule(mode [, fields [, placeholders]])`.
    SetDedupeRule,
    /// `dedupe_contacts([dry_run])`.
    DedupeContacts,
    /// `collector_add_app(app_id, app_key, channel_id)`.
    CollectorAddApp,
    /// `collector_set_wechat_token(account_id, token)`.
    CollectorSetWechatToken,
    /// `audit_verify()`: checks the audit log's hash chain.
    AuditVerify,
    /// `wechat_add_account(account_id, app_id, kind, api_base_url, app_secret)`.
    WechatAddAccount,
    /// `wechat_mass_send(account_id, audience, msg_type, content_json [, scheduled_at])`.
    WechatMassSend,
    /// `wechat_template_send(account_id, audience, template_id, data_json [, url])`.
    WechatTemplateSend,
    /// `wechat_custom_send(account_id, audience, msg_type, content_json)`.
    WechatCustomSend,
    /// `wechat_subscribe_send(account_id, audience, template_id, data_json)`.
    WechatSubscribeSend,
    /// `wechat_cancel_send(send_id)`.
    WechatCancelSend,
    /// `wechat_create_qrcode(account_id, qr_id, kind [, expire_seconds [, options_json]])`.
    WechatCreateQrcode,
    /// `create_journey(journey_id, definition_json)`.
    CreateJourney,
    /// `publish_journey(journey_id)`.
    PublishJourney,
    /// `stop_journey(journey_id)`.
    StopJourney,
    /// `delete_journey(journey_id)`.
    DeleteJourney,
    /// `export_events(directory [, from_day [, to_day]])`: Hive-partitioned Parquet.
    ExportEvents,
}

impl Procedure {
    /// Every procedure, in the order error messages list them.
    pub const ALL: &'static [Procedure] = &[
        Procedure::DropEventsBefore,
        Procedure::Identify,
        Procedure::MergeContacts,
        Procedure::DeleteContactData,
        Procedure::SetDedupeRule,
        Procedure::DedupeContacts,
        Procedure::CollectorAddApp,
        Procedure::CollectorSetWechatToken,
        Procedure::AuditVerify,
        Procedure::WechatAddAccount,
        Procedure::WechatMassSend,
        Procedure::WechatTemplateSend,
        Procedure::WechatCustomSend,
        Procedure::WechatSubscribeSend,
        Procedure::WechatCancelSend,
        Procedure::WechatCreateQrcode,
        Procedure::CreateJourney,
        Procedure::PublishJourney,
        Procedure::StopJourney,
        Procedure::DeleteJourney,
        Procedure::ExportEvents,
    ];

    /// The name `CALL` uses.
    pub fn name(self) -> &'static str {
        match self {
            Procedure::DropEventsBefore => "drop_events_before",
            Procedure::Identify => "identify",
            Procedure::MergeContacts => "merge_contacts",
            Procedure::DeleteContactData => "delete_contact_data",
            Procedure::SetDedupeRule => "set_dedupe_rule",
            Procedure::DedupeContacts => "dedupe_contacts",
            Procedure::CollectorAddApp => "collector_add_app",
            Procedure::CollectorSetWechatToken => "collector_set_wechat_token",
            Procedure::AuditVerify => "audit_verify",
            Procedure::WechatAddAccount => "wechat_add_account",
            Procedure::WechatMassSend => "wechat_mass_send",
            Procedure::WechatTemplateSend => "wechat_template_send",
            Procedure::WechatCustomSend => "wechat_custom_send",
            Procedure::WechatSubscribeSend => "wechat_subscribe_send",
            Procedure::WechatCancelSend => "wechat_cancel_send",
            Procedure::WechatCreateQrcode => "wechat_create_qrcode",
            Procedure::CreateJourney => "create_journey",
            Procedure::PublishJourney => "publish_journey",
            Procedure::StopJourney => "stop_journey",
            Procedure::DeleteJourney => "delete_journey",
            Procedure::ExportEvents => "export_events",
        }
    }

    /// The procedure called `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Procedure> {
        let name = name.to_ascii_lowercase();
        Procedure::ALL.iter().copied().find(|p| p.name() == name)
    }
}

/// A `CALL` of a known procedure with its argument expressions.
#[derive(Debug, Clone)]
pub struct ProcedureCall {
    /// The procedure.
    pub procedure: Procedure,
    /// Its arguments as written (named arguments by position).
    pub args: Vec<Expr>,
    /// The name of each argument given in named notation (`name => value`).
    pub names: Vec<Option<String>>,
}

impl ProcedureCall {
    /// Types a parsed `CALL name(args)` (42704 for an unknown procedure).
    pub fn from_function(f: &Function) -> Result<ProcedureCall> {
        let name = f.name.to_string();
        let procedure = Procedure::from_name(&name).ok_or_else(|| {
            SqlError::UndefinedObject(format!(
                "procedure {} does not exist (available: {})",
                name.to_ascii_lowercase(),
                Procedure::ALL
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let (args, names) = match &f.args {
            FunctionArguments::List(l) => l
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some((e.clone(), None)),
                    FunctionArg::Named {
                        name,
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    }
                    | FunctionArg::ExprNamed {
                        name: Expr::Identifier(name),
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    } => Some((e.clone(), Some(name.value.to_ascii_lowercase()))),
                    _ => None,
                })
                .unzip(),
            _ => (vec![], vec![]),
        };
        Ok(ProcedureCall {
            procedure,
            args,
            names,
        })
    }

    /// The positional arguments and the one named `name` (`name => value`);
    /// 42883 when another argument is named or `name` is not last.
    pub fn split_named(&self, name: &str) -> Result<(Vec<&Expr>, Option<&Expr>)> {
        let mut positional = Vec::new();
        let mut named = None;
        for (e, n) in self.args.iter().zip(&self.names) {
            match n.as_deref() {
                None if named.is_none() => positional.push(e),
                None => {
                    return Err(SqlError::InvalidValue(format!(
                        "positional arguments of {} cannot follow the named argument {name}",
                        self.procedure.name()
                    )))
                }
                Some(n) if n == name => named = Some(e),
                Some(n) => {
                    return Err(SqlError::UndefinedFunction(format!(
                        "procedure {} has no argument named {n} (named arguments: {name})",
                        self.procedure.name()
                    )))
                }
            }
        }
        Ok((positional, named))
    }

    /// The arguments by reference.
    pub fn arg_refs(&self) -> Vec<&Expr> {
        self.args.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Procedure::ALL {
            assert_eq!(Procedure::from_name(p.name()), Some(*p));
            assert_eq!(Procedure::from_name(&p.name().to_uppercase()), Some(*p));
        }
        assert_eq!(Procedure::from_name("nope"), None);
    }
}
