//! `CALL` procedures: one arm per [`Procedure`]. `drop_events_before` runs
//! here; the identity procedures run in `identity::procedures`.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::{Expr, Value};

use crate::error::{Result, SqlError};
use crate::model::convert::parse_date;
use crate::runtime::{Reply, StatementContext};
use crate::statement::{Procedure, ProcedureCall};

fn string_arg(e: &Expr, what: &str) -> Result<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Ok(s.clone()),
            other => Err(SqlError::InvalidValue(format!(
                "{what} must be a string literal, got {other}"
            ))),
        },
        other => Err(SqlError::InvalidValue(format!(
            "{what} must be a string literal, got {other}"
        ))),
    }
}

/// Arguments given as string or number literals, as text.
fn text_args(a: &[&Expr]) -> Result<Vec<String>> {
    a.iter()
        .enumerate()
        .map(|(i, e)| match e {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => Ok(s.clone()),
                Value::Number(n, _) => Ok(n.to_string()),
                other => Err(SqlError::InvalidValue(format!(
                    "argument {} must be a string, got {other}",
                    i + 1
                ))),
            },
            Expr::TypedString(t) => Ok(t.value.to_string().trim_matches('\'').to_string()),
            other => Err(SqlError::InvalidValue(format!(
                "argument {} must be a string literal, got {other}",
                i + 1
            ))),
        })
        .collect()
}

/// The columns `CALL name(args)` will return, when it returns rows (the
/// server describes them before execution in the extended protocol).
pub fn result_schema(call: &ProcedureCall) -> Option<SchemaRef> {
    match call.procedure {
        Procedure::DropEventsBefore
        | Procedure::MergeContacts
        | Procedure::DeleteContactData
        | Procedure::SetDedupeRule
        | Procedure::CollectorAddApp
        | Procedure::CollectorSetWechatToken => None,
        Procedure::AuditVerify => Some(audit_verify_schema()),
        Procedure::ExportEvents => Some(super::export::result_schema()),
        Procedure::WechatMassSend
        | Procedure::WechatTemplateSend
        | Procedure::WechatCustomSend
        | Procedure::WechatSubscribeSend => Some(super::wechat::send_schema()),
        Procedure::WechatCreateQrcode => Some(super::wechat::qrcode_schema()),
        Procedure::WechatAddAccount
        | Procedure::WechatCancelSend
        | Procedure::CreateJourney
        | Procedure::PublishJourney
        | Procedure::StopJourney
        | Procedure::DeleteJourney => None,
        Procedure::Identify | Procedure::DedupeContacts => {
            crate::identity::procedures::result_schema(call.procedure.name(), &call.arg_refs())
        }
    }
}

fn audit_verify_schema() -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("ok", DataType::Boolean, false),
        Field::new("rows_checked", DataType::Int64, false),
        Field::new("first_broken_seq", DataType::Int64, true),
    ]))
}

/// Runs `CALL name(args)`.
pub async fn call(ctx: &StatementContext, call: &ProcedureCall) -> Result<Reply> {
    let a = call.arg_refs();
    match call.procedure {
        Procedure::DropEventsBefore => {
            if a.len() != 1 {
                return Err(SqlError::InvalidValue(
                    "drop_events_before takes one date: CALL drop_events_before('YYYY-MM-DD')"
                        .into(),
                ));
            }
            let s = string_arg(a[0], "the date")?;
            let day = parse_date(s.trim()).ok_or_else(|| {
                SqlError::InvalidValue(format!("invalid date '{s}' (expected YYYY-MM-DD)"))
            })?;
            let mut batch = ctx.store.batch();
            batch.drop_events_before(day);
            ctx.store.commit(batch).await?;
            Ok(Reply::command("CALL"))
        }
        Procedure::Identify
        | Procedure::MergeContacts
        | Procedure::DeleteContactData
        | Procedure::SetDedupeRule
        | Procedure::DedupeContacts => {
            crate::identity::procedures::call(ctx, call.procedure.name(), &a).await
        }
        Procedure::WechatAddAccount => {
            let args = text_args(&a)?;
            super::wechat::add_account(ctx, &args).await
        }
        Procedure::WechatMassSend
        | Procedure::WechatTemplateSend
        | Procedure::WechatCustomSend
        | Procedure::WechatSubscribeSend => {
            let (positional, client_send_id) = call.split_named("client_send_id")?;
            let args = text_args(&positional)?;
            let client_send_id = match client_send_id {
                Some(e) => text_args(&[e])?.pop(),
                None => None,
            };
            super::wechat::send(ctx, call.procedure, &args, client_send_id).await
        }
        Procedure::CreateJourney => super::journeys::create(ctx, &text_args(&a)?).await,
        Procedure::PublishJourney => {
            super::journeys::set_status(ctx, &text_args(&a)?, "publish").await
        }
        Procedure::StopJourney => super::journeys::set_status(ctx, &text_args(&a)?, "stop").await,
        Procedure::DeleteJourney => {
            super::journeys::set_status(ctx, &text_args(&a)?, "delete").await
        }
        Procedure::WechatCancelSend => {
            let args = text_args(&a)?;
            super::wechat::cancel(ctx, &args).await
        }
        Procedure::WechatCreateQrcode => {
            let args = text_args(&a)?;
            super::wechat::create_qrcode(ctx, &args).await
        }
        Procedure::AuditVerify => {
            use datafusion::arrow::array::{BooleanArray, Int64Array};
            if !a.is_empty() {
                return Err(SqlError::InvalidValue(
                    "audit_verify takes no arguments: CALL audit_verify()".into(),
                ));
            }
            let store = ctx.store.clone();
            let check = tokio::task::spawn_blocking(move || store.verify_audit())
                .await
                .map_err(|e| SqlError::Unsupported(format!("audit_verify failed: {e}")))??;
            let batch = datafusion::arrow::array::RecordBatch::try_new(
                audit_verify_schema(),
                vec![
                    std::sync::Arc::new(BooleanArray::from(vec![check.first_broken.is_none()])),
                    std::sync::Arc::new(Int64Array::from(vec![check.rows as i64])),
                    std::sync::Arc::new(Int64Array::from(vec![check
                        .first_broken
                        .map(|s| s as i64)])),
                ],
            )?;
            Ok(Reply::Batch(batch))
        }
        Procedure::ExportEvents => super::export::call(ctx, &text_args(&a)?).await,
        Procedure::CollectorAddApp => {
            if a.len() != 3 {
                return Err(SqlError::InvalidValue(
                    "collector_add_app takes three strings: CALL collector_add_app(app_id, app_key, channel_id)"
                        .into(),
                ));
            }
            let app = string_arg(a[0], "app_id")?;
            let key = string_arg(a[1], "app_key")?;
            let channel = string_arg(a[2], "channel_id")?;
            crate::ingest::sources::add_app(&ctx.store, &app, &key, &channel).await?;
            Ok(Reply::command("CALL"))
        }
        Procedure::CollectorSetWechatToken => {
            if a.len() != 2 {
                return Err(SqlError::InvalidValue(
                    "collector_set_wechat_token takes two strings: CALL collector_set_wechat_token(account_id, token)"
                        .into(),
                ));
            }
            let account = string_arg(a[0], "account_id")?;
            let token = string_arg(a[1], "token")?;
            crate::ingest::sources::set_wechat_token(&ctx.store, &account, &token).await?;
            Ok(Reply::command("CALL"))
        }
    }
}
