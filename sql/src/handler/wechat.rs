//! WeChat procedures (SPEC §7): `wechat_add_account`, the four sends and
//! `wechat_cancel_send`. A send resolves its audience into the outbox at
//! once (`cohortdb_storage::wechat`), each recipient `pending` or
//! `skipped` with the platform rule that stopped it; the sender actor
//! (`cohortdb-wechat`) delivers the pending ones.
//!
//! Rules, from the events of the account's channel: only followers (the
//! latest of `subscribe`/`unsubscribe`; else `not_follower`); a service
//! account's fan gets at most 4 mass messages per calendar month in the
//! server time zone (`monthly_limit`); customer-service messages only
//! within 48 hours of the fan's last inbound event (`outside_48h`);
//! subscribe messages only with an unused `subscribe_msg_accept` of that
//! template (`no_consent`; consents are used by sent messages and by
//! recipients still in flight).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cohortdb_storage::catalog::wechat::WechatAccountDef;
use cohortdb_storage::wechat::{RecipientRecord, SendRecord};
use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::Value as Json;

use crate::error::{Result, SqlError};
use crate::model::rows::now_ms;
use crate::runtime::{Reply, StatementContext};
use crate::statement::Procedure;

/// Mass message types (`msgtype` of `/cgi-bin/message/mass/send`).
const MASS_TYPES: &[&str] = &[
    "text", "image", "voice", "mpvideo", "mpnews", "news", "wxcard",
];
/// Customer-service message types (`/cgi-bin/message/custom/send`).
const CUSTOM_TYPES: &[&str] = &[
    "text",
    "image",
    "voice",
    "video",
    "music",
    "news",
    "mpnews",
    "mpnewsarticle",
    "msgmenu",
    "wxcard",
    "miniprogrampage",
];

/// The store setting holding the daily cap of recipients per account
/// (written from the server's `wechat_daily_cap` at start; 0 = none).
pub const DAILY_CAP_SETTING: &str = "wechat_daily_cap";

/// Result columns of the send procedures.
pub fn send_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "send_id",
        DataType::Int64,
        false,
    )]))
}

fn invalid(msg: String) -> SqlError {
    SqlError::InvalidValue(msg)
}

fn check_id(what: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(invalid(format!(
            "invalid {what} '{v}': use 1 to 64 letters, digits and underscores"
        )));
    }
    Ok(())
}

fn json_arg(what: &str, s: &str) -> Result<Json> {
    let v: Json =
        serde_json::from_str(s).map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(invalid(format!("{what} must be a JSON object")));
    }
    Ok(v)
}

/// `CALL wechat_add_account(account_id, app_id, kind, api_base_url, app_secret)`.
pub async fn add_account(ctx: &StatementContext, a: &[String]) -> Result<Reply> {
    let [account_id, app_id, kind, base, secret] = a else {
        return Err(invalid(
            "wechat_add_account takes five strings: (account_id, app_id, 'service'|'subscription', api_base_url, app_secret)".into(),
        ));
    };
    check_id("account_id", account_id)?;
    if app_id.is_empty() || secret.is_empty() {
        return Err(invalid("app_id and app_secret are required".into()));
    }
    if !matches!(kind.as_str(), "service" | "subscription") {
        return Err(invalid(format!(
            "invalid kind '{kind}': use 'service' or 'subscription'"
        )));
    }
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(invalid(format!(
            "invalid api_base_url '{base}': use http(s)://host[:port]"
        )));
    }
    let def = WechatAccountDef {
        account_id: account_id.clone(),
        app_id: app_id.clone(),
        kind: kind.clone(),
        api_base_url: base.trim_end_matches('/').to_string(),
        app_secret: secret.clone(),
        created_at: now_ms(),
    };
    ctx.store
        .update_catalog(|data, _| {
            if data
                .wechat_accounts
                .iter()
                .any(|x| x.account_id == def.account_id)
            {
                return Err(SqlError::DuplicateObject(format!(
                    "wechat account \"{}\" already exists",
                    def.account_id
                )));
            }
            data.wechat_accounts.push(def);
            Ok(())
        })
        .await?;
    Ok(Reply::command("CALL"))
}

/// The account `id` (42704 when there is none).
fn account(ctx: &StatementContext, id: &str) -> Result<WechatAccountDef> {
    ctx.store
        .catalog()
        .data()
        .wechat_accounts
        .iter()
        .find(|x| x.account_id == id)
        .cloned()
        .ok_or_else(|| {
            SqlError::UndefinedObject(format!(
                "wechat account \"{id}\" does not exist (CALL wechat_add_account first)"
            ))
        })
}

/// `(contact, value)` pairs of a two-column query result.
async fn pairs(ctx: &StatementContext, sql: &str) -> Result<Vec<(u64, Option<i64>, String)>> {
    let batches: Vec<RecordBatch> = ctx.df.sql(sql).await?.collect().await?;
    let mut out = Vec::new();
    for b in batches {
        let c = b.column(0);
        let c = c
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| SqlError::Unsupported("contact ids are BIGINT".into()))?;
        let v = datafusion::arrow::compute::cast(b.column(1), &DataType::Utf8)?;
        let v = v.as_string::<i32>();
        for i in 0..b.num_rows() {
            if c.is_null(i) {
                continue;
            }
            out.push((c.value(i) as u64, None, v.value(i).to_string()));
        }
    }
    Ok(out)
}

fn sql_text(s: &str) -> String {
    s.replace('\'', "''")
}

/// Held while a send with a `client_send_id` looks for an earlier one and
/// commits, so two retries of one call create one send.
static CLIENT_SENDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn send_id_reply(send_id: u64) -> Result<Reply> {
    let b = RecordBatch::try_new(
        send_schema(),
        vec![Arc::new(Int64Array::from(vec![send_id as i64]))],
    )?;
    Ok(Reply::Batch(b))
}

/// Creates a send of `procedure` with its arguments (already strings).
/// With `client_send_id`, a call repeated with the same key and arguments
/// answers the first call's send instead of creating another.
pub async fn send(
    ctx: &StatementContext,
    procedure: Procedure,
    a: &[String],
    client_send_id: Option<String>,
) -> Result<Reply> {
    let (kind, min, max, usage) = match procedure {
        Procedure::WechatMassSend => (
            "mass",
            4,
            5,
            "wechat_mass_send(account_id, audience, msg_type, content_json [, scheduled_at])",
        ),
        Procedure::WechatTemplateSend => (
            "template",
            4,
            5,
            "wechat_template_send(account_id, audience, template_id, data_json [, url])",
        ),
        Procedure::WechatCustomSend => (
            "custom",
            4,
            4,
            "wechat_custom_send(account_id, audience, msg_type, content_json)",
        ),
        _ => (
            "subscribe",
            4,
            4,
            "wechat_subscribe_send(account_id, audience, template_id, data_json)",
        ),
    };
    if a.len() < min || a.len() > max {
        return Err(invalid(format!("usage: CALL {usage}")));
    }
    let catalog = ctx.store.catalog();
    let account = account(ctx, &a[0])?;
    let audience = a[1].clone();
    // `contact:<id>`: one contact (journeys send this way)
    let single: Option<u64> = audience
        .strip_prefix("contact:")
        .and_then(|s| s.parse().ok());
    if audience != "all"
        && single.is_none()
        && !catalog.data().groups.iter().any(|g| g.name == audience)
    {
        return Err(SqlError::UndefinedObject(format!(
            "group \"{audience}\" does not exist (audience is 'all' or a group id)"
        )));
    }
    let content = json_arg(
        if matches!(kind, "mass" | "custom") {
            "content_json"
        } else {
            "data_json"
        },
        &a[3],
    )?;
    let (mut msg_type, mut template_id, mut url, mut scheduled_at) = (None, None, None, None);
    match kind {
        "mass" | "custom" => {
            let allowed = if kind == "mass" {
                MASS_TYPES
            } else {
                CUSTOM_TYPES
            };
            if !allowed.contains(&a[2].as_str()) {
                return Err(invalid(format!(
                    "invalid msg_type '{}' for a {kind} send (use one of: {})",
                    a[2],
                    allowed.join(", ")
                )));
            }
            msg_type = Some(a[2].clone());
            if kind == "mass" && a.len() == 5 && !a[4].is_empty() {
                scheduled_at = Some(
                    crate::model::convert::parse_timestamp_ms(&a[4], &ctx.tz).ok_or_else(|| {
                        SqlError::InvalidDatetime(format!(
                            "invalid scheduled_at '{}' (use a timestamp)",
                            a[4]
                        ))
                    })?,
                );
            }
        }
        _ => {
            if a[2].is_empty() || a[2].len() > 128 {
                return Err(invalid("template_id is required".into()));
            }
            template_id = Some(a[2].clone());
            if kind == "template" && a.len() == 5 && !a[4].is_empty() {
                url = Some(a[4].clone());
            }
        }
    }
    let acct = &account.account_id;
    let _one_at_a_time = match &client_send_id {
        Some(k) => {
            if k.is_empty() || k.len() > 128 || k.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "invalid client_send_id '{k}': use 1 to 128 printable characters"
                )));
            }
            let guard = CLIENT_SENDS.lock().await;
            if let Some(id) = ctx.store.send_by_client_id(k)? {
                let first = ctx.store.get_send(id)?;
                let same = first.as_ref().is_some_and(|f| {
                    f.account_id == *acct
                        && f.kind == kind
                        && f.msg_type == msg_type
                        && f.template_id == template_id
                        && f.content == content
                        && f.url == url
                        && f.audience == audience
                        && f.scheduled_at == scheduled_at
                });
                if !same {
                    return Err(SqlError::DuplicateObject(format!(
                        "client_send_id '{k}' already created send {id} with other arguments"
                    )));
                }
                return send_id_reply(id);
            }
            Some(guard)
        }
        None => None,
    };
    // fans of the account: contact → openid
    let mut openids: HashMap<u64, String> = HashMap::new();
    ctx.store.scan_identities(&mut |t, c, v, contact, _| {
        if t == crate::identity::resolve::WECHAT_OPENID && c == acct {
            openids.entry(contact).or_insert_with(|| v.to_string());
        }
        true
    })?;
    let mut audience_ids: Vec<u64> = if let Some(c) = single {
        vec![c]
    } else if audience == "all" {
        openids.keys().copied().collect()
    } else {
        pairs(
            ctx,
            &format!("SELECT id, id AS same_id FROM contact_view WHERE \"{audience}\""),
        )
        .await?
        .into_iter()
        .map(|(c, _, _)| c)
        .collect()
    };
    audience_ids.sort_unstable();
    audience_ids.dedup();
    // following: the latest subscribe/unsubscribe wins
    let mut following: HashMap<u64, bool> = HashMap::new();
    for (c, _, ev) in pairs(
        ctx,
        &format!(
            "SELECT contact_id, event FROM event_view WHERE channel_id = '{acct}' \
             AND event IN ('subscribe', 'unsubscribe') ORDER BY event_date, event = 'unsubscribe'"
        ),
    )
    .await?
    {
        following.insert(c, ev == "subscribe");
    }
    let now = now_ms();
    let mut limited: HashSet<u64> = HashSet::new();
    let mut window_ok: HashSet<u64> = HashSet::new();
    let mut consents: HashMap<u64, i64> = HashMap::new();
    match kind {
        "mass" if account.kind == "service" => {
            let month = rfc3339(month_start(now, &ctx.tz));
            for (c, _, n) in pairs(
                ctx,
                &format!(
                    "SELECT contact_id, count(*) FROM event_view WHERE channel_id = '{acct}' \
                     AND event = 'wechat_mass_sent' AND event_date >= '{month}' \
                     GROUP BY contact_id"
                ),
            )
            .await?
            {
                if n.parse::<i64>().unwrap_or(0) >= 4 {
                    limited.insert(c);
                }
            }
        }
        "custom" => {
            let since = rfc3339(now - 48 * 3_600_000);
            for (c, _, _) in pairs(
                ctx,
                &format!(
                    "SELECT contact_id, max(event_date) FROM event_view WHERE channel_id = '{acct}' \
                     AND event NOT IN ('wechat_mass_sent', 'wechat_template_sent', 'wechat_custom_sent', 'wechat_subscribe_sent') \
                     GROUP BY contact_id HAVING max(event_date) >= '{since}'"
                ),
            )
            .await?
            {
                window_ok.insert(c);
            }
        }
        "subscribe" => {
            let t = sql_text(template_id.as_deref().unwrap_or(""));
            for (c, _, n) in pairs(
                ctx,
                &format!(
                    "SELECT contact_id, sum(CASE WHEN event = 'subscribe_msg_accept' THEN 1 ELSE -1 END) \
                     FROM event_view WHERE channel_id = '{acct}' AND s_template_id = '{t}' \
                     AND event IN ('subscribe_msg_accept', 'wechat_subscribe_sent') GROUP BY contact_id"
                ),
            )
            .await?
            {
                consents.insert(c, n.parse().unwrap_or(0));
            }
            // recipients of unfinished sends of this template hold a consent too
            for s in ctx.store.scan_sends()? {
                if s.kind == "subscribe"
                    && s.account_id == *acct
                    && s.template_id == template_id
                    && s.finished_at.is_none()
                {
                    ctx.store.scan_recipients(s.send_id, &mut |c, r| {
                        if matches!(r.status.as_str(), "pending" | "sending" | "unknown") {
                            *consents.entry(c).or_insert(0) -= 1;
                        }
                        true
                    })?;
                }
            }
        }
        _ => {}
    }
    // daily cap: recipients per account and UTC day, counting what was sent
    // today and what is still queued
    let cap: i64 = ctx
        .store
        .get_setting(DAILY_CAP_SETTING)?
        .and_then(|v| String::from_utf8_lossy(&v).trim().parse().ok())
        .unwrap_or(0);
    let mut room = i64::MAX;
    if cap > 0 {
        let today = rfc3339(now - now.rem_euclid(86_400_000));
        let sent = pairs(
            ctx,
            &format!(
                "SELECT count(*) AS n, count(*) AS m FROM event_view WHERE channel_id = '{acct}' AND event_date >= '{today}' \
                 AND event IN ('wechat_mass_sent', 'wechat_template_sent', 'wechat_custom_sent', 'wechat_subscribe_sent')"
            ),
        )
        .await?
        .first()
        .map(|(n, _, _)| *n as i64)
        .unwrap_or(0);
        let mut queued = 0i64;
        for s in ctx.store.scan_sends()? {
            if s.account_id == *acct && s.finished_at.is_none() {
                ctx.store.scan_recipients(s.send_id, &mut |_, r| {
                    if matches!(r.status.as_str(), "pending" | "sending") {
                        queued += 1;
                    }
                    true
                })?;
            }
        }
        room = (cap - sent - queued).max(0);
    }
    let send_id = ctx.store.alloc_send_id();
    let mut batch = ctx.store.batch();
    batch.put_send(&SendRecord {
        send_id,
        account_id: acct.clone(),
        kind: kind.to_string(),
        msg_type,
        template_id,
        content,
        url,
        audience,
        status: "pending".into(),
        created_at: now,
        scheduled_at,
        finished_at: None,
        created_by: ctx.user.clone(),
        client_send_id: client_send_id.clone(),
        final_counts: None,
    });
    if let Some(k) = &client_send_id {
        batch.put_client_send_id(k, send_id);
    }
    for c in audience_ids {
        let openid = openids.get(&c).cloned();
        let reason = match (&openid, following.get(&c)) {
            (None, _) | (_, None) | (_, Some(false)) => Some("not_follower"),
            _ if limited.contains(&c) => Some("monthly_limit"),
            _ if kind == "custom" && !window_ok.contains(&c) => Some("outside_48h"),
            _ if kind == "subscribe" && consents.get(&c).copied().unwrap_or(0) <= 0 => {
                Some("no_consent")
            }
            _ if room <= 0 => Some("daily_cap"),
            _ => {
                room -= 1;
                None
            }
        };
        batch.put_recipient(
            send_id,
            c,
            &RecipientRecord {
                openid: openid.unwrap_or_default(),
                status: if reason.is_some() {
                    "skipped"
                } else {
                    "pending"
                }
                .into(),
                reason: reason.map(str::to_string),
                updated_at: now,
                attempts: 0,
                not_before: 0,
                clientmsgid: None,
            },
        );
    }
    ctx.store.commit(batch).await?;
    send_id_reply(send_id)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The first instant of the current calendar month in `tz` (ms).
fn month_start(now_ms: i64, tz: &chrono_tz::Tz) -> i64 {
    use chrono::{Datelike, TimeZone};
    let local = tz
        .timestamp_millis_opt(now_ms)
        .single()
        .unwrap_or_else(|| tz.timestamp_millis_opt(0).single().expect("epoch exists"));
    tz.with_ymd_and_hms(local.year(), local.month(), 1, 0, 0, 0)
        .earliest()
        .map(|t| t.timestamp_millis())
        .unwrap_or(now_ms)
}

/// `CALL wechat_cancel_send(send_id)`: stops the pending recipients.
pub async fn cancel(ctx: &StatementContext, a: &[String]) -> Result<Reply> {
    let [id] = a else {
        return Err(invalid("usage: CALL wechat_cancel_send(send_id)".into()));
    };
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| invalid(format!("invalid send_id '{id}'")))?;
    let mut send = ctx
        .store
        .get_send(id)?
        .ok_or_else(|| SqlError::UndefinedObject(format!("send {id} does not exist")))?;
    if send.finished_at.is_some() {
        return Ok(Reply::command("CALL"));
    }
    let now = now_ms();
    let mut batch = ctx.store.batch();
    let mut counts = cohortdb_storage::wechat::RecipientCounts::default();
    ctx.store.scan_recipients(id, &mut |c, mut r| {
        if r.status == "pending" {
            r.status = "skipped".into();
            r.reason = Some("cancelled".into());
            r.updated_at = now;
            batch.put_recipient(id, c, &r);
        }
        counts.add(&r);
        true
    })?;
    send.status = "cancelled".into();
    send.finished_at = Some(now);
    // calls in flight still change their recipients
    send.final_counts = (!counts.in_flight).then_some(counts.counts);
    batch.put_send(&send);
    ctx.store.commit(batch).await?;
    Ok(Reply::command("CALL"))
}

/// Result columns of `wechat_create_qrcode`.
pub fn qrcode_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("qr_id", DataType::Utf8, false),
        Field::new("ticket", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
        Field::new("expire_seconds", DataType::Int64, true),
    ]))
}

/// Temporary QR codes live 7 days unless told otherwise.
const DEFAULT_QR_EXPIRE_SECONDS: i64 = 604_800;

/// The options of a QR code, checked: `reply` is a customer-service message
/// (`{"msg_type", "content"}`), `add_to_group` a static group.
fn qr_options(ctx: &StatementContext, text: &str) -> Result<Json> {
    let v = json_arg("options_json", text)?;
    for (k, x) in v.as_object().expect("an object") {
        match k.as_str() {
            "reply" => {
                let msg_type = x.get("msg_type").and_then(Json::as_str).ok_or_else(|| {
                    invalid("options_json.reply needs \"msg_type\" (a customer-service message type such as \"text\")".into())
                })?;
                if !CUSTOM_TYPES.contains(&msg_type) {
                    return Err(invalid(format!(
                        "invalid options_json.reply.msg_type '{msg_type}' (use one of: {})",
                        CUSTOM_TYPES.join(", ")
                    )));
                }
                if !x.get("content").is_some_and(Json::is_object) {
                    return Err(invalid(
                        "options_json.reply needs \"content\", a JSON object (for text: {\"content\": \"…\"})".into(),
                    ));
                }
                if let Some(extra) = x.as_object().and_then(|o| {
                    o.keys()
                        .find(|k| !matches!(k.as_str(), "msg_type" | "content"))
                }) {
                    return Err(invalid(format!(
                        "unknown field options_json.reply.{extra} (reply takes msg_type and content)"
                    )));
                }
            }
            "add_to_group" => {
                let g = x.as_str().ok_or_else(|| {
                    invalid("options_json.add_to_group must be a group id (a string)".into())
                })?;
                let catalog = ctx.store.catalog();
                match catalog.data().groups.iter().find(|d| d.name == g) {
                    None => {
                        return Err(SqlError::UndefinedObject(format!(
                            "group \"{g}\" does not exist (options_json.add_to_group)"
                        )))
                    }
                    Some(d)
                        if d.kind != cohortdb_storage::catalog::segments::GroupKind::Static =>
                    {
                        return Err(invalid(format!(
                            "group \"{g}\" is dynamic: options_json.add_to_group needs a static group"
                        )))
                    }
                    Some(_) => {}
                }
            }
            other => {
                return Err(invalid(format!(
                    "unknown field options_json.{other} (use reply, add_to_group)"
                )))
            }
        }
    }
    Ok(v)
}

/// `CALL wechat_create_qrcode(account_id, qr_id, 'temporary'|'permanent'
/// [, expire_seconds [, options_json]])`: asks WeChat for a QR code of
/// scene `qr_id` and keeps it (again for the same `qr_id`: a new code
/// replaces it). A fan's `subscribe`/`scan_qrcode` event carrying that
/// `s_qrcode_id` runs the options once (the journey engine does).
pub async fn create_qrcode(ctx: &StatementContext, a: &[String]) -> Result<Reply> {
    if a.len() < 3 || a.len() > 5 {
        return Err(invalid(
            "usage: CALL wechat_create_qrcode(account_id, qr_id, 'temporary'|'permanent' [, expire_seconds [, options_json]])".into(),
        ));
    }
    let account = account(ctx, &a[0])?;
    check_id("qr_id", &a[1])?;
    let permanent = match a[2].as_str() {
        "temporary" => false,
        "permanent" => true,
        other => {
            return Err(invalid(format!(
                "invalid kind '{other}': use 'temporary' or 'permanent'"
            )))
        }
    };
    let expire = match a.get(3).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => DEFAULT_QR_EXPIRE_SECONDS,
        Some(_) if permanent => {
            return Err(invalid(
                "expire_seconds is for temporary QR codes; give '' for a permanent one".into(),
            ))
        }
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (60..=cohortdb_wechat::api::MAX_QR_EXPIRE_SECONDS).contains(&n) => n,
            _ => {
                return Err(invalid(format!(
                    "invalid expire_seconds '{s}': use 60 to {} (30 days)",
                    cohortdb_wechat::api::MAX_QR_EXPIRE_SECONDS
                )))
            }
        },
    };
    let options = match a.get(4) {
        Some(t) if !t.trim().is_empty() => qr_options(ctx, t)?,
        _ => Json::Object(Default::default()),
    };
    let made = cohortdb_wechat::api::create_qrcode(
        &account,
        &a[1],
        permanent,
        expire,
        std::time::Duration::from_secs(10),
    )
    .await
    .map_err(|e| SqlError::External(format!("creating QR code '{}': {e}", a[1])))?;
    let now = now_ms();
    let def = cohortdb_storage::catalog::wechat::WechatQrCodeDef {
        account_id: account.account_id.clone(),
        qr_id: a[1].clone(),
        kind: if permanent { "permanent" } else { "temporary" }.into(),
        ticket: made.ticket.clone(),
        url: made.url.clone(),
        expire_at: (!permanent).then(|| now + made.expire_seconds.unwrap_or(expire) * 1000),
        options,
        created_at: now,
    };
    ctx.store
        .update_catalog(|data, _| {
            data.wechat_qrcodes
                .retain(|q| !(q.account_id == def.account_id && q.qr_id == def.qr_id));
            data.wechat_qrcodes.push(def.clone());
            Ok::<_, SqlError>(())
        })
        .await?;
    let b = RecordBatch::try_new(
        qrcode_schema(),
        vec![
            Arc::new(datafusion::arrow::array::StringArray::from(vec![
                a[1].clone()
            ])),
            Arc::new(datafusion::arrow::array::StringArray::from(vec![
                made.ticket,
            ])),
            Arc::new(datafusion::arrow::array::StringArray::from(vec![made.url])),
            Arc::new(Int64Array::from(vec![
                (!permanent).then(|| made.expire_seconds.unwrap_or(expire))
            ])),
        ],
    )?;
    Ok(Reply::Batch(b))
}
