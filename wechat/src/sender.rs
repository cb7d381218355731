//! The sender actor: delivers the pending recipients of the outbox.
//!
//! At start every `sending` recipient becomes `unknown` (a crash may have
//! sent it). Then, in a loop: for each unfinished send that is due, take a
//! chunk of pending recipients, commit them `sending`, call the API, and
//! commit the result — `sent` together with the `wechat_*_sent` event on
//! the contact's timeline in one batch, `failed` with `errcode <n>`, or
//! back to `pending` with a later `not_before` for transient answers
//! (`-1`, `45011`, HTTP 5xx, refused connections: backoff; `45009`: the
//! next day). `40001`/`42001` refresh the access token once. An answer
//! that never came leaves the recipients `unknown`. Mass sends go up to
//! 10,000 openids a call with a `clientmsgid` kept on each recipient of
//! the call: a call whose answer was lost, or that a crash interrupted, is
//! made again with the same recipients and id, and WeChat's `45065`
//! (already sent) counts as sent. The others go one recipient a call,
//! several calls at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cohortdb_storage::catalog::wechat::WechatAccountDef;
use cohortdb_storage::codec::put_field;
use cohortdb_storage::time::utc_day;
use cohortdb_storage::wechat::{RecipientRecord, SendRecord};
use cohortdb_storage::{EventKey, Store, ValueRef};
use serde_json::{json, Value as Json};
use tokio::sync::Mutex;

use crate::client::{call, CallError};
use crate::limits::Bucket;
use crate::tokens::{shared as tokens, TokenError};

/// Settings of the sender.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// Recipients per minute per account (the platform's default limit).
    pub recipients_per_minute: u64,
    /// Calls in flight at once for per-recipient sends.
    pub concurrency: usize,
    /// Timeout of one API call.
    pub call_timeout: Duration,
    /// Transient failures tried before a recipient is `failed`.
    pub max_attempts: u32,
    /// How often the outbox is looked at when idle.
    pub poll: Duration,
}

impl Default for SenderSettings {
    fn default() -> Self {
        SenderSettings {
            recipients_per_minute: 30_000,
            concurrency: 8,
            call_timeout: Duration::from_secs(10),
            max_attempts: 5,
            poll: Duration::from_millis(200),
        }
    }
}

const MASS_CHUNK: usize = 10_000;

/// How an API answer classifies.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Sent,
    TokenExpired,
    Transient(String),
    NextDay,
    Failed(String),
    Unknown(String),
}

fn verdict(r: Result<Json, CallError>) -> Verdict {
    match r {
        Ok(v) => match v.get("errcode").and_then(Json::as_i64).unwrap_or(0) {
            0 | 45065 => Verdict::Sent,
            40001 | 42001 => Verdict::TokenExpired,
            -1 | 45011 => Verdict::Transient(format!("errcode {}", v["errcode"])),
            45009 => Verdict::NextDay,
            n => Verdict::Failed(format!("errcode {n}")),
        },
        Err(CallError::NotSent(e)) => Verdict::Transient(e),
        Err(CallError::Status(s)) if s >= 500 => Verdict::Transient(format!("HTTP {s}")),
        Err(CallError::Status(s)) => Verdict::Failed(format!("HTTP {s}")),
        Err(CallError::NoAnswer(e)) => Verdict::Unknown(e),
    }
}

struct State {
    store: Arc<Store>,
    settings: SenderSettings,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Per send, the contact the next scan for due recipients starts at
    /// (the ones before it were taken), so a turn does not read the whole
    /// outbox of a large send again.
    cursors: std::sync::Mutex<HashMap<u64, u64>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Starts the actor on the current runtime.
pub fn spawn(store: Arc<Store>, settings: SenderSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let st = Arc::new(State {
            store,
            settings,
            buckets: Mutex::new(HashMap::new()),
            cursors: std::sync::Mutex::new(HashMap::new()),
        });
        if let Err(e) = recover(&st.store).await {
            tracing::error!("WeChat sender: recovering the outbox failed: {e}");
        }
        loop {
            let worked = match step(&st).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!("WeChat sender: {e}");
                    false
                }
            };
            if !worked {
                tokio::time::sleep(st.settings.poll).await;
            }
        }
    })
}

/// `sending` recipients of unfinished sends become `unknown`, except those
/// of a mass call, which is made again with its `clientmsgid`.
async fn recover(store: &Store) -> cohortdb_storage::Result<()> {
    let now = now_ms();
    let mut batch = store.batch();
    for s in store.scan_sends()? {
        if s.finished_at.is_some() {
            continue;
        }
        store.scan_recipients(s.send_id, &mut |c, mut r| {
            if r.status == "sending" {
                if r.clientmsgid.is_some() {
                    r.status = "pending".into();
                    r.reason = None;
                } else {
                    r.status = "unknown".into();
                    r.reason = Some("interrupted during the API call (not retried)".into());
                }
                r.updated_at = now;
                batch.put_recipient(s.send_id, c, &r);
            }
            true
        })?;
    }
    store.commit(batch).await
}

async fn step(st: &Arc<State>) -> Result<bool, String> {
    let now = now_ms();
    let store = &st.store;
    let mut worked = false;
    for s in store.scan_sends().map_err(|e| e.to_string())? {
        if s.finished_at.is_some() || s.status == "cancelled" {
            continue;
        }
        if s.scheduled_at.is_some_and(|t| t > now) {
            continue;
        }
        let limit = if s.kind == "mass" {
            MASS_CHUNK
        } else {
            st.settings.concurrency * 4
        };
        // `again`: the recipients of one earlier mass call, sent again
        // together under its clientmsgid
        let (mut fresh, mut again, mut waiting) = (Vec::new(), Vec::new(), false);
        let mut resumed: Option<String> = None;
        let from = st
            .cursors
            .lock()
            .expect("cursors")
            .get(&s.send_id)
            .copied()
            .unwrap_or(0);
        store
            .scan_recipients_from(s.send_id, from, &mut |c, r| {
                if r.status == "pending" {
                    if r.not_before > now {
                        waiting = true;
                    } else if let Some(cm) = r.clientmsgid.clone() {
                        if resumed.is_none() {
                            resumed = Some(cm.clone());
                        }
                        if resumed.as_deref() == Some(cm.as_str()) {
                            again.push((c, r));
                        } else {
                            waiting = true;
                        }
                    } else if fresh.len() < limit {
                        fresh.push((c, r));
                    } else {
                        waiting = true;
                    }
                } else if r.status == "sending" {
                    waiting = true;
                }
                // a full chunk is enough (the rest waits for the next
                // turn), unless a resumed call's recipients may follow
                resumed.is_some() || fresh.len() < limit
            })
            .map_err(|e| e.to_string())?;
        let due = if again.is_empty() { fresh } else { again };
        {
            let mut cursors = st.cursors.lock().expect("cursors");
            match due.last() {
                Some((c, _)) => {
                    cursors.insert(s.send_id, c + 1);
                }
                // the end was reached: the next turn starts over, for
                // recipients that came back (retries) before the cursor
                None => {
                    cursors.remove(&s.send_id);
                }
            }
        }
        if due.is_empty() {
            if from > 0 {
                continue;
            }
            if !waiting {
                let mut done = s.clone();
                done.status = "done".into();
                done.finished_at = Some(now);
                done.final_counts = Some(
                    store
                        .recipient_counts(s.send_id)
                        .map_err(|e| e.to_string())?
                        .counts,
                );
                let mut b = store.batch();
                b.put_send(&done);
                store.commit(b).await.map_err(|e| e.to_string())?;
            }
            continue;
        }
        let Some(account) = store
            .catalog()
            .data()
            .wechat_accounts
            .iter()
            .find(|a| a.account_id == s.account_id)
            .cloned()
        else {
            let gone = Verdict::Failed("account removed".into());
            finish(st, &s, due.into_iter().map(|m| (m, gone.clone())).collect()).await?;
            continue;
        };
        worked = true;
        deliver(st, &account, &s, due).await?;
    }
    Ok(worked)
}

/// Commits `recipients` as `sending` in one batch, calls the API (one
/// mass call, or one call per recipient with `concurrency` in flight) and
/// commits every outcome in one batch.
async fn deliver(
    st: &Arc<State>,
    account: &WechatAccountDef,
    s: &SendRecord,
    recipients: Vec<(u64, RecipientRecord)>,
) -> Result<(), String> {
    let store = &st.store;
    // the send may have been cancelled since the scan
    if store
        .get_send(s.send_id)
        .map_err(|e| e.to_string())?
        .is_some_and(|x| x.finished_at.is_some())
    {
        return Ok(());
    }
    let now = now_ms();
    let mut b = store.batch();
    let mut marked = Vec::with_capacity(recipients.len());
    // a mass call's id: kept by its recipients for any retry of the call
    let clientmsgid = (s.kind == "mass").then(|| {
        recipients
            .iter()
            .find_map(|(_, r)| r.clientmsgid.clone())
            .unwrap_or_else(|| {
                format!(
                    "cohortdb-{}-{}-{now}",
                    s.send_id,
                    recipients.first().map(|m| m.0).unwrap_or(0)
                )
            })
    });
    for (c, mut r) in recipients {
        r.clientmsgid = clientmsgid.clone();
        r.status = "sending".into();
        r.attempts += 1;
        r.updated_at = now;
        b.put_recipient(s.send_id, c, &r);
        marked.push((c, r));
    }
    store.commit(b).await.map_err(|e| e.to_string())?;
    let outcomes: Vec<((u64, RecipientRecord), Verdict)> = if s.kind == "mass" {
        pace(st, &account.account_id, marked.len() as u64).await;
        let v = call_with_token(st, account, s, &marked).await;
        marked.into_iter().map(|m| (m, v.clone())).collect()
    } else {
        let permits = Arc::new(tokio::sync::Semaphore::new(st.settings.concurrency.max(1)));
        let mut calls = tokio::task::JoinSet::new();
        for (k, one) in marked.into_iter().enumerate() {
            let (st, account, s, permits) =
                (st.clone(), account.clone(), s.clone(), permits.clone());
            calls.spawn(async move {
                let _permit = permits.acquire_owned().await;
                pace(&st, &account.account_id, 1).await;
                let v = call_with_token(&st, &account, &s, std::slice::from_ref(&one)).await;
                (k, one, v)
            });
        }
        let mut out = Vec::with_capacity(calls.len());
        while let Some(done) = calls.join_next().await {
            out.push(done.map_err(|e| e.to_string())?);
        }
        out.sort_by_key(|x| x.0);
        out.into_iter().map(|(_, m, v)| (m, v)).collect()
    };
    finish(st, s, outcomes).await
}

/// Waits until the account's rate limit lets `n` recipients go.
async fn pace(st: &State, account_id: &str, n: u64) {
    loop {
        let wait = st
            .buckets
            .lock()
            .await
            .entry(account_id.to_string())
            .or_insert_with(|| Bucket::new(st.settings.recipients_per_minute))
            .take(n);
        if wait.is_zero() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// One API call for `marked` with the account's token, refreshed once on
/// `40001`/`42001`.
async fn call_with_token(
    st: &State,
    account: &WechatAccountDef,
    s: &SendRecord,
    marked: &[(u64, RecipientRecord)],
) -> Verdict {
    let mut refreshed = false;
    loop {
        let token = match tokens().get(account, st.settings.call_timeout).await {
            Ok(t) => t,
            // no token request reached WeChat's send API: nothing was sent
            Err(TokenError::Transient(e)) => return Verdict::Transient(format!("token: {e}")),
            Err(TokenError::Refused(n)) => return Verdict::Failed(format!("token errcode {n}")),
        };
        let v = verdict(api_call(st, account, s, marked, &token).await);
        if v == Verdict::TokenExpired && !refreshed {
            refreshed = true;
            tokens().invalidate(&account.account_id, &token).await;
            continue;
        }
        return v;
    }
}

async fn api_call(
    st: &State,
    account: &WechatAccountDef,
    s: &SendRecord,
    marked: &[(u64, RecipientRecord)],
    token: &str,
) -> Result<Json, CallError> {
    let base = &account.api_base_url;
    let msg_type = s.msg_type.clone().unwrap_or_default();
    let (path, body) = match s.kind.as_str() {
        "mass" => (
            "/cgi-bin/message/mass/send",
            json!({
                "touser": marked.iter().map(|(_, r)| r.openid.clone()).collect::<Vec<_>>(),
                "msgtype": msg_type,
                msg_type.clone(): s.content,
                "send_ignore_reprint": 0,
                "clientmsgid": marked.first().and_then(|m| m.1.clientmsgid.clone()).unwrap_or_default(),
            }),
        ),
        "template" => {
            let mut b = json!({
                "touser": marked[0].1.openid,
                "template_id": s.template_id,
                "data": s.content,
            });
            if let Some(u) = &s.url {
                b["url"] = json!(u);
            }
            ("/cgi-bin/message/template/send", b)
        }
        "custom" => (
            "/cgi-bin/message/custom/send",
            json!({
                "touser": marked[0].1.openid,
                "msgtype": msg_type,
                msg_type.clone(): s.content,
            }),
        ),
        _ => (
            "/cgi-bin/message/subscribe/bizsend",
            json!({
                "touser": marked[0].1.openid,
                "template_id": s.template_id,
                "data": s.content,
            }),
        ),
    };
    call(
        &format!("{base}{path}?access_token={token}"),
        Some(&body),
        st.settings.call_timeout,
    )
    .await
}

/// Commits the outcome of each recipient in one batch (with the timeline
/// events of the sent ones).
async fn finish(
    st: &State,
    s: &SendRecord,
    outcomes: Vec<((u64, RecipientRecord), Verdict)>,
) -> Result<(), String> {
    let store = &st.store;
    let now = now_ms();
    let mut b = store.batch();
    let catalog = store.catalog();
    let event = format!("wechat_{}_sent", s.kind);
    let event_type = catalog.event_type(&event).map(|t| t.id);
    let prop = |n: &str| catalog.property(n).map(|p| p.id);
    let (send_prop, template_prop) = (prop("s_send_id"), prop("s_template_id"));
    let mut max_seq = 0;
    for ((c, mut r), v) in outcomes {
        let c = &c;
        r.updated_at = now;
        match v {
            Verdict::Sent => {
                r.status = "sent".into();
                r.reason = None;
                if let Some(et) = event_type {
                    let mut value = Vec::new();
                    put_field(
                        &mut value,
                        cohortdb_storage::catalog::EVENT_CHANNEL_FIELD,
                        ValueRef::Str(&s.account_id),
                    );
                    let mut fields: Vec<(u32, String)> = Vec::new();
                    if let Some(p) = send_prop {
                        fields.push((p, s.send_id.to_string()));
                    }
                    if let (Some(p), Some(t)) = (template_prop, &s.template_id) {
                        fields.push((p, t.clone()));
                    }
                    fields.sort();
                    for (p, v) in &fields {
                        put_field(&mut value, *p, ValueRef::Str(v));
                    }
                    let seq = store.alloc_event_seqs(1);
                    max_seq = max_seq.max(seq);
                    b.put_event(
                        &EventKey {
                            day: utc_day(now),
                            event_type: et,
                            contact: *c,
                            ts_ms: now,
                            seq,
                        },
                        &value,
                    );
                }
            }
            Verdict::Failed(reason) => {
                r.status = "failed".into();
                r.reason = Some(reason.clone());
            }
            // a mass call is made again under its clientmsgid
            Verdict::Unknown(_)
                if r.clientmsgid.is_some() && r.attempts < st.settings.max_attempts =>
            {
                r.status = "pending".into();
                r.not_before = now + 500 * (1i64 << r.attempts.min(10));
            }
            Verdict::Unknown(reason) => {
                r.status = "unknown".into();
                r.reason = Some(format!("no answer from WeChat: {reason}"));
            }
            Verdict::Transient(_) | Verdict::TokenExpired
                if r.attempts >= st.settings.max_attempts =>
            {
                r.status = "failed".into();
                r.reason = Some(format!("gave up after {} attempts", r.attempts));
            }
            Verdict::Transient(_) | Verdict::TokenExpired => {
                r.status = "pending".into();
                r.not_before = now + 500 * (1i64 << r.attempts.min(10));
            }
            Verdict::NextDay => {
                r.status = "pending".into();
                r.not_before = (now.div_euclid(86_400_000) + 1) * 86_400_000;
            }
        }
        b.put_recipient(s.send_id, *c, &r);
    }
    if max_seq > 0 {
        b.note_event_seq(max_seq);
    }
    store.commit(b).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_classify() {
        assert_eq!(verdict(Ok(json!({"errcode": 0}))), Verdict::Sent);
        assert_eq!(verdict(Ok(json!({"errcode": 45065}))), Verdict::Sent);
        assert_eq!(
            verdict(Ok(json!({"errcode": 40001}))),
            Verdict::TokenExpired
        );
        assert!(matches!(
            verdict(Ok(json!({"errcode": -1}))),
            Verdict::Transient(_)
        ));
        assert!(matches!(
            verdict(Ok(json!({"errcode": 45011}))),
            Verdict::Transient(_)
        ));
        assert_eq!(verdict(Ok(json!({"errcode": 45009}))), Verdict::NextDay);
        assert_eq!(
            verdict(Ok(json!({"errcode": 43004}))),
            Verdict::Failed("errcode 43004".into())
        );
        assert!(matches!(
            verdict(Err(CallError::Status(502))),
            Verdict::Transient(_)
        ));
        assert!(matches!(
            verdict(Err(CallError::NoAnswer("x".into()))),
            Verdict::Unknown(_)
        ));
        assert!(matches!(
            verdict(Err(CallError::NotSent("x".into()))),
            Verdict::Transient(_)
        ));
    }
}
