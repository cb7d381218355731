//! Identity resolution: channel accounts (identities) → contacts.
//!
//! - `CALL identify(channel_id, external_id, props_json)`: find the contact of
//!   the channel account or create both; update fields from the props
//!   (seed 003 §2.1.1/§2.1.3 names, camelCase or snake_case), `props` →
//!   `p_*`, `utm` → creation UTM (only when the contact becomes identified),
//!   `weChatInfo {appId, openId, unionId}` → merge with that fan's contact,
//!   `anonymousId` → merge the anonymous contact and its events.
//! - Identity-keyed ingest: rows of `COPY/INSERT events` and `COPY/INSERT
//!   contacts` naming `external_id` + `channel_id`, `openid`, `unionid` or
//!   `anonymous_id` instead of `contact_id` resolve (or create) their contact
//!   in the same atomic statement (see [`IdentityRef`] and
//!   [`IdentifiedContacts`]).
//!
//! Identity types stored: `external_id` (channel = the connection),
//! `wechat.openid` (channel = the app id), `wechat.unionid` (channel `''`:
//! a unionid is global to the open platform), `anonymous_id` (channel = the
//! connection).

use std::sync::Arc;

use cohortdb_storage::{DataType, Store, Value};
use datafusion::arrow::array::{BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType as A, Field, Schema};
use serde_json::Value as Json;

use crate::error::{Result, SqlError};
use crate::identity::merge::ContactWork;
use crate::model::convert::{parse_date, parse_text};
use crate::model::rows::{contact_is_identified, validate_contact_value, RowRef};
use crate::runtime::{Reply, StatementContext};

/// `id_type` of a custom channel's user id.
pub const EXTERNAL_ID: &str = "external_id";
/// `id_type` of a WeChat official-account / mini-program openid.
pub const WECHAT_OPENID: &str = "wechat.openid";
/// `id_type` of a WeChat open-platform unionid.
pub const WECHAT_UNIONID: &str = "wechat.unionid";
/// `id_type` of an SDK anonymous (cookie) account.
pub const ANONYMOUS_ID: &str = "anonymous_id";
/// Channel of unionid identities (global to the open platform).
pub const UNIONID_CHANNEL: &str = "";

/// The identity columns ingest accepts instead of `contact_id`.
pub const IDENTITY_COLUMNS: &[&str] = &["external_id", "openid", "unionid", "anonymous_id"];

/// One identity: `(id_type, channel_id, id_value)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentityRef {
    /// Identity type (`external_id`, `wechat.openid`, ...).
    pub id_type: &'static str,
    /// Channel id (connection or app id).
    pub channel: String,
    /// The id value.
    pub value: String,
}

/// The identities an ingest row names, in resolution priority order
/// (`external_id`, `unionid`, `openid`, `anonymous_id`). `channel` is the
/// row's `channel_id` (required for `external_id`, `openid`, `anonymous_id`).
pub fn row_identities(
    channel: Option<&str>,
    external_id: Option<&str>,
    openid: Option<&str>,
    unionid: Option<&str>,
    anonymous_id: Option<&str>,
    at: RowRef,
) -> Result<Vec<IdentityRef>> {
    let mut out = Vec::new();
    let need_channel = |what: &str| {
        SqlError::NotNull(format!(
            "{at}: channel_id is required to identify a contact by {what}"
        ))
    };
    let nonempty = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(v) = nonempty(external_id) {
        let ch = channel
            .filter(|c| !c.is_empty())
            .ok_or_else(|| need_channel("external_id"))?;
        out.push(IdentityRef {
            id_type: EXTERNAL_ID,
            channel: ch.to_string(),
            value: v,
        });
    }
    if let Some(v) = nonempty(unionid) {
        out.push(IdentityRef {
            id_type: WECHAT_UNIONID,
            channel: UNIONID_CHANNEL.into(),
            value: v,
        });
    }
    if let Some(v) = nonempty(openid) {
        let ch = channel
            .filter(|c| !c.is_empty())
            .ok_or_else(|| need_channel("openid"))?;
        out.push(IdentityRef {
            id_type: WECHAT_OPENID,
            channel: ch.to_string(),
            value: v,
        });
    }
    if let Some(v) = nonempty(anonymous_id) {
        let ch = channel
            .filter(|c| !c.is_empty())
            .ok_or_else(|| need_channel("anonymous_id"))?;
        out.push(IdentityRef {
            id_type: ANONYMOUS_ID,
            channel: ch.to_string(),
            value: v,
        });
    }
    for i in &out {
        crate::identity::merge::check_identity_value(i.id_type, &i.channel, &i.value)?;
    }
    Ok(out)
}

/// Resolves the identities of one ingest row to a contact inside `work`:
/// the first identity already known names the contact, otherwise a new
/// contact is created; identities not yet linked are linked to it, and a
/// known anonymous id of another contact is merged into it.
/// Returns `(contact, created)`.
pub fn resolve_row(work: &mut ContactWork, idents: &[IdentityRef]) -> Result<(u64, bool)> {
    let mut found = None;
    for i in idents {
        if let Some(c) = work.lookup(i.id_type, &i.channel, &i.value)? {
            found = Some(c);
            break;
        }
    }
    let (id, created) = match found {
        Some(c) => (c, false),
        None => (work.create(), true),
    };
    for i in idents {
        match work.lookup(i.id_type, &i.channel, &i.value)? {
            None => work.link(i.id_type, &i.channel, &i.value, id)?,
            // An anonymous history joins the contact a stronger identity
            // names, as `identify` merges it.
            Some(anon) if i.id_type == ANONYMOUS_ID => {
                if let Some(cur) = work.current_id(anon)? {
                    if cur != id {
                        work.merge(id, cur)?;
                    }
                }
            }
            Some(_) => {}
        }
    }
    Ok((id, created))
}

/// What an identify call (or an identity-keyed contacts row) asks for.
#[derive(Debug, Clone, Default)]
pub struct IdentifyRequest {
    /// Channel (connection) id.
    pub channel: String,
    /// The channel account id (`external_id`); `None` for rows identified
    /// only by openid/unionid/anonymous id.
    pub external_id: Option<String>,
    /// Field updates: `(field id, value)`, already validated.
    pub fields: Vec<(usize, Value)>,
    /// Creation UTM: `(field id, value)`, applied when the contact becomes identified.
    pub utm: Vec<(usize, Value)>,
    /// `weChatInfo`: `(app_id, openid, unionid)`.
    pub wechat: Option<(Option<String>, Option<String>, Option<String>)>,
    /// `anonymousId`.
    pub anonymous_id: Option<String>,
}

/// Runs one identify inside `work` (the caller holds the contact lock and
/// commits). Returns `(contact_id, created)`.
pub fn identify_in(work: &mut ContactWork, req: &IdentifyRequest) -> Result<(u64, bool)> {
    let ext = match &req.external_id {
        Some(e) => {
            crate::identity::merge::check_identity_value(EXTERNAL_ID, &req.channel, e)?;
            work.lookup(EXTERNAL_ID, &req.channel, e)?
        }
        None => None,
    };
    let mut wechat_ids: Vec<(&'static str, String, String)> = Vec::new();
    if let Some((app, open, union)) = &req.wechat {
        if let Some(u) = union.as_deref().filter(|s| !s.is_empty()) {
            wechat_ids.push((WECHAT_UNIONID, UNIONID_CHANNEL.into(), u.to_string()));
        }
        if let Some(o) = open.as_deref().filter(|s| !s.is_empty()) {
            let app = app
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(req.channel.as_str());
            wechat_ids.push((WECHAT_OPENID, app.to_string(), o.to_string()));
        }
    }
    let mut fans = Vec::new();
    for (t, c, v) in &wechat_ids {
        crate::identity::merge::check_identity_value(t, c, v)?;
        if let Some(f) = work.lookup(t, c, v)? {
            if !fans.contains(&f) {
                fans.push(f);
            }
        }
    }
    // the fan's contact wins: the channel account joins it
    let anon_only = match (
        &req.external_id,
        fans.is_empty(),
        req.anonymous_id.as_deref(),
    ) {
        (None, true, Some(a)) if !a.is_empty() => work.lookup(ANONYMOUS_ID, &req.channel, a)?,
        _ => None,
    };
    let (id, created) = match (fans.first(), ext, anon_only) {
        (Some(f), _, _) => (*f, false),
        (None, Some(c), _) => (c, false),
        (None, None, Some(a)) => (a, false),
        (None, None, None) => (work.create(), true),
    };
    let mut others: Vec<u64> = fans.iter().skip(1).copied().collect();
    if let Some(c) = ext {
        others.push(c);
    }
    for o in others {
        if let Some(cur) = work.current_id(o)? {
            if cur != id {
                work.merge(id, cur)?;
            }
        }
    }
    if let Some(e) = &req.external_id {
        work.link(EXTERNAL_ID, &req.channel, e, id)?;
    }
    for (t, c, v) in &wechat_ids {
        if work.lookup(t, c, v)? != Some(id) {
            work.link(t, c, v, id)?;
        }
    }
    if let Some(a) = req.anonymous_id.as_deref().filter(|s| !s.is_empty()) {
        crate::identity::merge::check_identity_value(ANONYMOUS_ID, &req.channel, a)?;
        match work.lookup(ANONYMOUS_ID, &req.channel, a)? {
            Some(anon) if anon != id => work.merge(id, anon)?,
            Some(_) => {}
            None => work.link(ANONYMOUS_ID, &req.channel, a, id)?,
        }
    }
    let catalog = work.catalog().clone();
    let (created_f, updated_f) = (work.field("created_at"), work.field("updated_at"));
    let now = work.now();
    let fields = work
        .contact(id)?
        .ok_or_else(|| SqlError::UndefinedObject(format!("contact {id} does not exist")))?;
    let was_identified = contact_is_identified(fields, &catalog);
    for (fid, v) in &req.fields {
        fields[*fid] = v.clone();
    }
    if !was_identified && contact_is_identified(fields, &catalog) {
        if let Some(i) = created_f {
            if fields[i].is_null() {
                fields[i] = Value::Ts(now);
            }
        }
        for (fid, v) in &req.utm {
            fields[*fid] = v.clone();
        }
    }
    if let Some(i) = updated_f {
        fields[i] = Value::Ts(now);
    }
    Ok((id, created))
}

/// Contact field names accepted in identify props (camelCase and snake_case).
fn system_field(key: &str) -> Option<&'static str> {
    Some(match key {
        "name" => "name",
        "nickname" | "nickName" | "nick_name" => "nickname",
        "gender" => "gender",
        "birthday" | "dateOfBirthday" | "date_of_birthday" | "dateOfBirth" | "date_of_birth" => {
            "birthday"
        }
        "mobilePhone" | "mobile_phone" | "mobile" => "mobile_phone",
        "homePhone" | "home_phone" => "home_phone",
        "email" => "email",
        "idCard" | "id_card" => "id_card",
        "avatar" => "avatar",
        "company" => "company",
        "department" => "department",
        "title" => "title",
        "industry" => "industry",
        "website" => "website",
        "country" => "country",
        "state" | "province" => "state",
        "city" => "city",
        "street" => "street",
        "postalCode" | "postal_code" => "postal_code",
        "comment" => "comment",
        _ => return None,
    })
}

fn json_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn obj<'a>(v: &'a Json, what: &str) -> Result<&'a serde_json::Map<String, Json>> {
    v.as_object()
        .ok_or_else(|| SqlError::InvalidValue(format!("identify: {what} must be a JSON object")))
}

/// Parses identify props into a request for `channel` / `external_id`.
pub fn parse_props(
    work: &ContactWork,
    channel: &str,
    external_id: &str,
    props: &Json,
) -> Result<IdentifyRequest> {
    let cat = work.catalog().clone();
    let at = RowRef {
        n: 1,
        copy_line: false,
    };
    let mut req = IdentifyRequest {
        channel: channel.to_string(),
        external_id: Some(external_id.to_string()),
        ..Default::default()
    };
    if props.is_null() {
        return Ok(req);
    }
    for (key, v) in obj(props, "props_json")? {
        if v.is_null() {
            continue;
        }
        if let Some(name) = system_field(key) {
            let (fid, def) = cat.contact_field(name).ok_or_else(|| {
                SqlError::UndefinedColumn(format!("contact field {name} does not exist"))
            })?;
            let text = json_text(v).ok_or_else(|| {
                SqlError::DatatypeMismatch(format!("identify: {key} must be a string, got {v}"))
            })?;
            if text.trim().is_empty() {
                continue;
            }
            let mut val = if def.data_type == DataType::Date {
                Value::Date(parse_date(text.trim()).ok_or_else(|| {
                    SqlError::InvalidDatetime(format!(
                        "identify: {key} '{text}' is not a date (expected YYYY-MM-DD)"
                    ))
                })?)
            } else {
                Value::Str(text)
            };
            validate_contact_value(name, &mut val, at)?;
            req.fields.push((fid as usize, val));
            continue;
        }
        match key.as_str() {
            "externalId" | "external_id" | "channel" | "channelId" | "channel_id" => {}
            "utm" => {
                for (k, uv) in obj(v, "utm")? {
                    let col = match k.as_str() {
                        "source" | "utm_source" | "utmSource" => "utm_source",
                        "medium" | "utm_medium" | "utmMedium" => "utm_medium",
                        "campaign" | "utm_campaign" | "utmCampaign" => "utm_campaign",
                        "content" | "utm_content" | "utmContent" => "utm_content",
                        "term" | "utm_term" | "utmTerm" => "utm_term",
                        other => {
                            return Err(SqlError::UndefinedColumn(format!(
                                "identify: unknown utm field \"{other}\" (use source, medium, campaign, content, term)"
                            )))
                        }
                    };
                    if let (Some(t), Some((fid, _))) = (json_text(uv), cat.contact_field(col)) {
                        if !t.trim().is_empty() {
                            req.utm.push((fid as usize, Value::Str(t)));
                        }
                    }
                }
            }
            "props" => {
                for (k, pv) in obj(v, "props")? {
                    if pv.is_null() {
                        continue;
                    }
                    let name = if k.starts_with("p_") { k.clone() } else { format!("p_{k}") };
                    let (fid, def) = cat.contact_field(&name).filter(|(_, d)| d.custom).ok_or_else(|| {
                        SqlError::UndefinedColumn(format!(
                            "identify: custom field \"{name}\" does not exist (add it with ALTER TABLE contacts ADD COLUMN {name} <type>)"
                        ))
                    })?;
                    let mismatch = || {
                        SqlError::DatatypeMismatch(format!(
                            "identify: props.{k} = {pv} does not fit custom field {name} of type {}",
                            def.data_type.sql_name()
                        ))
                    };
                    let val = match (def.data_type, pv) {
                        (DataType::Varchar, Json::String(s)) => Value::Str(s.clone()),
                        (DataType::Bigint, Json::Number(n)) => {
                            Value::Int(n.as_i64().ok_or_else(mismatch)?)
                        }
                        (DataType::Double, Json::Number(n)) => {
                            Value::Float(n.as_f64().ok_or_else(mismatch)?)
                        }
                        (DataType::Date | DataType::Timestamptz, Json::String(s)) => {
                            parse_text(def.data_type, s, &chrono_tz::Tz::UTC).map_err(|e| {
                                SqlError::DatatypeMismatch(format!("identify: props.{k}: {e}"))
                            })?
                        }
                        _ => return Err(mismatch()),
                    };
                    req.fields.push((fid as usize, val));
                }
            }
            "weChatInfo" | "wechatInfo" | "WeChatInfo" | "wechat_info" | "we_chat_info" => {
                let o = obj(v, "weChatInfo")?;
                let get = |names: &[&str]| {
                    names
                        .iter()
                        .find_map(|n| o.get(*n).and_then(json_text))
                        .filter(|s| !s.trim().is_empty())
                };
                req.wechat = Some((
                    get(&["appId", "app_id", "appid"]),
                    get(&["openId", "open_id", "openid"]),
                    get(&["unionId", "union_id", "unionid"]),
                ));
            }
            "anonymousId" | "anonymous_id" => {
                req.anonymous_id = json_text(v).filter(|s| !s.trim().is_empty());
            }
            other => {
                return Err(SqlError::UndefinedColumn(format!(
                    "identify: unknown field \"{other}\" (contact fields as in the identify API, props, utm, weChatInfo, anonymousId)"
                )))
            }
        }
    }
    Ok(req)
}

/// The result columns of `identify`: `contact_id BIGINT, created BOOLEAN`.
pub fn identify_schema() -> datafusion::arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("contact_id", A::Int64, false),
        Field::new("created", A::Boolean, false),
    ]))
}

/// `CALL identify(channel_id, external_id, props_json)` → `contact_id, created`.
pub async fn identify(
    ctx: &StatementContext,
    channel: &str,
    external_id: &str,
    props_json: Option<&str>,
) -> Result<Reply> {
    if channel.trim().is_empty() {
        return Err(SqlError::NotNull("identify: channel_id is required".into()));
    }
    if external_id.trim().is_empty() {
        return Err(SqlError::NotNull(
            "identify: external_id is required".into(),
        ));
    }
    let props: Json = match props_json {
        Some(s) if !s.trim().is_empty() => serde_json::from_str(s).map_err(|e| {
            SqlError::InvalidText(format!("identify: props_json is not valid JSON: {e}"))
        })?,
        _ => Json::Null,
    };
    let ((id, created), pending) = {
        let _g = ctx.contact_lock.lock().await;
        let mut work = ContactWork::new(ctx.store.clone());
        let req = parse_props(&work, channel, external_id, &props)?;
        let out = identify_in(&mut work, &req)?;
        (out, work.commit_applied().await?)
    };
    // durable after the lock is released (group commit)
    pending.durable().await?;
    let batch = RecordBatch::try_new(
        identify_schema(),
        vec![
            Arc::new(Int64Array::from(vec![id as i64])),
            Arc::new(BooleanArray::from(vec![created])),
        ],
    )?;
    Ok(Reply::Batch(batch))
}

/// Identity-keyed contact rows (`COPY/INSERT contacts` with `external_id`,
/// `channel_id`, `openid`, `unionid`, `anonymous_id`, `app_id` columns): rows
/// are staged, then identified one by one under the contact lock and
/// committed in one batch.
pub struct IdentifiedContacts {
    store: Arc<Store>,
    rows: Vec<IdentifyRequest>,
}

impl IdentifiedContacts {
    /// Starts a statement.
    pub fn new(store: Arc<Store>) -> Self {
        IdentifiedContacts {
            store,
            rows: Vec::new(),
        }
    }

    /// Stages one row: `fields` are `(contacts column name, value)` pairs of
    /// the contacts layout, `ident` the identity columns by name.
    pub fn push(
        &mut self,
        fields: Vec<(String, Value)>,
        ident: &[(String, Option<String>)],
        at: RowRef,
    ) -> Result<()> {
        let cat = self.store.catalog();
        let get = |n: &str| {
            ident
                .iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| v.clone())
                .filter(|s| !s.trim().is_empty())
        };
        let channel = get("channel_id").unwrap_or_default();
        let external_id = get("external_id");
        let (openid, unionid, app_id) = (get("openid"), get("unionid"), get("app_id"));
        let anonymous_id = get("anonymous_id");
        if external_id.is_some() && channel.is_empty() {
            return Err(SqlError::NotNull(format!(
                "{at}: channel_id is required with external_id"
            )));
        }
        if external_id.is_none() && openid.is_none() && unionid.is_none() && anonymous_id.is_none()
        {
            return Err(SqlError::NotNull(format!(
                "{at}: an identity is required (external_id with channel_id, openid, unionid or anonymous_id)"
            )));
        }
        let mut req = IdentifyRequest {
            channel: channel.clone(),
            external_id,
            anonymous_id,
            ..Default::default()
        };
        if openid.is_some() || unionid.is_some() {
            req.wechat = Some((app_id.or(Some(channel)), openid, unionid));
        }
        for (name, mut v) in fields {
            if v.is_null() {
                continue;
            }
            match name.as_str() {
                "id" => {
                    return Err(SqlError::Unsupported(format!(
                        "{at}: give either id or identity columns, not both"
                    )))
                }
                "is_identified" => {
                    return Err(SqlError::Unsupported(format!(
                        "{at}: column is_identified is derived and cannot be set"
                    )))
                }
                _ => {}
            }
            let Some((fid, _)) = cat.contact_field(&name) else {
                continue;
            };
            validate_contact_value(&name, &mut v, at)?;
            if matches!(&v, Value::Str(s) if s.is_empty()) || v.is_null() {
                continue;
            }
            if name.starts_with("utm_") {
                req.utm.push((fid as usize, v));
            } else {
                req.fields.push((fid as usize, v));
            }
        }
        self.rows.push(req);
        Ok(())
    }

    /// Identifies every staged row and commits atomically; returns the number of rows.
    pub async fn commit(self, contact_lock: &tokio::sync::Mutex<()>) -> Result<u64> {
        if self.rows.is_empty() {
            return Ok(0);
        }
        let pending = {
            let _g = contact_lock.lock().await;
            let mut work = ContactWork::new(self.store.clone());
            for r in &self.rows {
                identify_in(&mut work, r)?;
            }
            work.commit_applied().await?
        };
        // durable after the lock is released (group commit)
        pending.durable().await?;
        Ok(self.rows.len() as u64)
    }
}
