//! The one path every endpoint's events take: message-id dedupe, property
//! typing, identity resolution and the same staged write as COPY
//! (`cohortdb_sql::ingest::batch::EventIngest`), acknowledged only once the
//! write is durable.
//!
//! Dedupe is exact under concurrency: a request first claims its message
//! ids in an in-flight set (a concurrent retry waits for the first to
//! finish), then reads the dedupe table, and writes the ids it stores in
//! the same atomic write as their events.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use cohortdb_sql::identity::merge::ContactWork;
use cohortdb_sql::identity::resolve::{identify_in, parse_props, row_identities};
use cohortdb_sql::ingest::batch::EventIngest;
use cohortdb_sql::model::convert::{parse_date, parse_timestamp_ms};
use cohortdb_sql::model::layout::EventCol;
use cohortdb_sql::model::rows::{now_ms, RowRef};
use cohortdb_sql::Engine;
use cohortdb_storage::{DataType, Value};
use serde_json::Value as Json;
use tokio::sync::Notify;

use crate::settings::CollectorSettings;

/// What an incoming message asks for.
#[derive(Debug, Clone)]
pub enum Action {
    /// Store an event.
    Track {
        /// Event code (an `event_types` row).
        event: String,
        /// Event time, ms since the epoch.
        ts_ms: i64,
        /// Properties by column name, as sent.
        props: Vec<(String, Json)>,
    },
    /// Identify a contact by `external_id` with traits (as `CALL identify`).
    Identify {
        /// Contact fields (identify's `props_json`).
        traits: Json,
    },
}

/// One event or identify call as an endpoint decoded it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Sender scope of `message_id` (the app or account id).
    pub scope: String,
    /// The client's message id, when it sent one.
    pub message_id: Option<String>,
    /// Channel of the event and of its identities.
    pub channel: String,
    /// Channel account id (`userID`, `userId`).
    pub external_id: Option<String>,
    /// WeChat openid (of `channel`).
    pub openid: Option<String>,
    /// WeChat unionid.
    pub unionid: Option<String>,
    /// Anonymous id (`qid`, `anonymousId`).
    pub anonymous_id: Option<String>,
    /// What to do.
    pub action: Action,
}

/// What became of one incoming message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Stored; `warnings` name the properties that were dropped.
    Stored {
        /// Dropped properties and why.
        warnings: Vec<String>,
    },
    /// Its message id was stored before (a retry): not stored again.
    Duplicate,
    /// Refused, with the reason; nothing of it stored.
    Rejected(String),
}

/// Why a whole request failed (nothing of it stored).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The write failed.
    #[error("storing the events failed: {0}")]
    Write(#[from] cohortdb_sql::SqlError),
}

/// The shared ingest state of the collector.
pub struct Ingestor {
    engine: Arc<Engine>,
    settings: CollectorSettings,
    in_flight: Mutex<HashSet<(String, String)>>,
    released: Notify,
    expired_day: AtomicI64,
}

/// Removes claimed message ids from the in-flight set when the request ends.
struct Claim<'a> {
    ingestor: &'a Ingestor,
    keys: Vec<(String, String)>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut set = self.ingestor.in_flight.lock().expect("in-flight set");
        for k in &self.keys {
            set.remove(k);
        }
        drop(set);
        self.ingestor.released.notify_waiters();
    }
}

impl Ingestor {
    /// The ingest path over `engine`'s store, limited by `settings`.
    pub fn new(engine: Arc<Engine>, settings: CollectorSettings) -> Ingestor {
        Ingestor {
            engine,
            settings,
            in_flight: Mutex::new(HashSet::new()),
            released: Notify::new(),
            expired_day: AtomicI64::new(i64::MIN),
        }
    }

    /// The engine (store, catalog, time zone).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The limits.
    pub fn settings(&self) -> &CollectorSettings {
        &self.settings
    }

    async fn claim(&self, keys: Vec<(String, String)>) -> Claim<'_> {
        loop {
            let released = self.released.notified();
            {
                let mut set = self.in_flight.lock().expect("in-flight set");
                if !keys.iter().any(|k| set.contains(k)) {
                    for k in &keys {
                        set.insert(k.clone());
                    }
                    return Claim {
                        ingestor: self,
                        keys,
                    };
                }
            }
            released.await;
        }
    }

    /// Stores `messages` (identify calls first, then events, each group in
    /// one atomic write) and returns one outcome per message, in order.
    pub async fn store(&self, messages: Vec<Incoming>) -> Result<Vec<Outcome>, IngestError> {
        let now = now_ms();
        let store = self.engine.store().clone();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; messages.len()];
        // message ids: duplicates inside the request, then claims
        let mut seen = HashSet::new();
        let mut keys = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if let Some(id) = &m.message_id {
                let k = (m.scope.clone(), id.clone());
                if !seen.insert(k.clone()) {
                    outcomes[i] = Some(Outcome::Duplicate);
                } else {
                    keys.push(k);
                }
            }
        }
        let _claim = self.claim(keys).await;
        let window = self.settings.dedupe_window_ms();
        for (i, m) in messages.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            if let Some(id) = &m.message_id {
                if store
                    .dedupe_seen(&m.scope, id, now, window)
                    .map_err(cohortdb_sql::SqlError::from)?
                {
                    outcomes[i] = Some(Outcome::Duplicate);
                }
            }
        }
        let lock = self.engine.contact_lock();
        // identify calls
        let identifies: Vec<usize> = (0..messages.len())
            .filter(|&i| {
                outcomes[i].is_none() && matches!(messages[i].action, Action::Identify { .. })
            })
            .collect();
        if !identifies.is_empty() {
            let _g = lock.lock().await;
            let mut work = ContactWork::new(store.clone());
            let mut ids = Vec::new();
            for &i in &identifies {
                let m = &messages[i];
                let Action::Identify { traits } = &m.action else {
                    continue;
                };
                match identify_one(&mut work, m, traits) {
                    Ok(()) => {
                        outcomes[i] = Some(Outcome::Stored { warnings: vec![] });
                        if let Some(id) = &m.message_id {
                            ids.push((m.scope.clone(), id.clone()));
                        }
                    }
                    Err(e) => outcomes[i] = Some(Outcome::Rejected(e)),
                }
            }
            let mut batch = work.finish();
            for (scope, id) in &ids {
                batch.put_dedupe(scope, id, now);
            }
            store
                .commit(batch)
                .await
                .map_err(cohortdb_sql::SqlError::from)?;
        }
        // events
        let mut ing = EventIngest::new(store.clone());
        let layout = ing.layout().clone();
        let tz = self.engine.timezone();
        let mut ids = Vec::new();
        let mut staged = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            let Action::Track {
                event,
                ts_ms,
                props,
            } = &m.action
            else {
                continue;
            };
            let at = RowRef {
                n: i as u64 + 1,
                copy_line: false,
            };
            let mut row = vec![Value::Null; layout.cols.len()];
            let mut warnings = Vec::new();
            let mut put = |name: &str, v: Value| {
                if let Some(c) = layout.index_of(name) {
                    row[c] = v;
                }
            };
            put("event", Value::Str(event.clone()));
            put("event_date", Value::Ts(*ts_ms));
            put("channel_id", Value::Str(m.channel.clone()));
            for (name, v) in props {
                if v.is_null() {
                    continue;
                }
                let col = layout
                    .index_of(name)
                    .map(|c| layout.cols[c].1)
                    .filter(|c| matches!(c, EventCol::Prop(..)));
                let Some(EventCol::Prop(_, t)) = col else {
                    warnings.push(format!(
                        "property {name} dropped: not a defined event property (define it with INSERT INTO event_properties)"
                    ));
                    continue;
                };
                match json_value(v, t, &tz) {
                    Ok(v) => put(name, v),
                    Err(got) => warnings.push(format!(
                        "property {name} dropped: expected {}, got {got}",
                        t.sql_name()
                    )),
                }
            }
            let ids4 = [
                m.external_id.as_deref(),
                m.openid.as_deref(),
                m.unionid.as_deref(),
                m.anonymous_id.as_deref(),
            ];
            let staged_ok = ing
                .event_type_id(event, at)
                .and_then(|_| {
                    row_identities(Some(&m.channel), ids4[0], ids4[1], ids4[2], ids4[3], at)
                })
                .and_then(|refs| {
                    if refs.is_empty() {
                        return Err(cohortdb_sql::SqlError::NotNull(
                            "the event names no user: send an openid, unionid, anonymous id or user id"
                                .into(),
                        ));
                    }
                    ing.identity_contact(Some(&m.channel), ids4, at)
                })
                .and_then(|contact| ing.push_for(&row, contact, at));
            match staged_ok {
                Ok(()) => {
                    if let Some(id) = &m.message_id {
                        ids.push((m.scope.clone(), id.clone()));
                    }
                    staged.push(i);
                    outcomes[i] = Some(Outcome::Stored { warnings });
                }
                Err(e) => outcomes[i] = Some(Outcome::Rejected(reason(&e))),
            }
        }
        if !staged.is_empty() {
            let day = now.div_euclid(86_400_000);
            let expire = self.expired_day.swap(day, Ordering::Relaxed) != day;
            ing.remember_messages(ids, now, expire);
            ing.commit(&lock).await?;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Rejected("not processed".into())))
            .collect())
    }
}

/// The reason text of an error (the message without the SQLSTATE class).
fn reason(e: &cohortdb_sql::SqlError) -> String {
    e.to_string()
}

fn identify_one(work: &mut ContactWork, m: &Incoming, traits: &Json) -> Result<(), String> {
    let ext = m
        .external_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or("identify needs a userId (the channel account id)")?;
    let mut req = parse_props(work, &m.channel, ext, traits).map_err(|e| reason(&e))?;
    if let Some(a) = m.anonymous_id.as_deref().filter(|s| !s.is_empty()) {
        req.anonymous_id = Some(a.to_string());
    }
    if m.openid.is_some() || m.unionid.is_some() {
        req.wechat = Some((None, m.openid.clone(), m.unionid.clone()));
    }
    identify_in(work, &req).map(|_| ()).map_err(|e| reason(&e))
}

/// Types a JSON property value for a column of type `t`; `Err` names what
/// was sent instead.
pub fn json_value(v: &Json, t: DataType, tz: &chrono_tz::Tz) -> Result<Value, String> {
    let kind = || match v {
        Json::Null => "null".to_string(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) => format!("string \"{}\"", s.chars().take(40).collect::<String>()),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    };
    match (t, v) {
        (DataType::Varchar, Json::String(s)) => Ok(Value::Str(s.clone())),
        (DataType::Bigint, Json::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Value::Int(i)),
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::Int(f as i64)),
                _ => Err(kind()),
            },
        },
        (DataType::Double, Json::Number(n)) => n.as_f64().map(Value::Float).ok_or_else(kind),
        (DataType::Boolean, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (DataType::Date, Json::String(s)) => parse_date(s.trim()).map(Value::Date).ok_or_else(kind),
        (DataType::Timestamptz, Json::String(s)) => parse_timestamp_ms(s.trim(), tz)
            .map(Value::Ts)
            .ok_or_else(kind),
        (DataType::Timestamptz, Json::Number(n)) => n.as_i64().map(Value::Ts).ok_or_else(kind),
        _ => Err(kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn property_types() {
        let tz = chrono_tz::Tz::UTC;
        assert_eq!(
            json_value(&json!("a"), DataType::Varchar, &tz),
            Ok(Value::Str("a".into()))
        );
        assert!(json_value(&json!(1), DataType::Varchar, &tz).is_err());
        assert_eq!(
            json_value(&json!(3), DataType::Bigint, &tz),
            Ok(Value::Int(3))
        );
        assert_eq!(
            json_value(&json!(3.0), DataType::Bigint, &tz),
            Ok(Value::Int(3))
        );
        assert!(json_value(&json!(3.5), DataType::Bigint, &tz).is_err());
        assert!(json_value(&json!("3"), DataType::Bigint, &tz).is_err());
        assert_eq!(
            json_value(&json!(2), DataType::Double, &tz),
            Ok(Value::Float(2.0))
        );
        assert_eq!(
            json_value(&json!(true), DataType::Boolean, &tz),
            Ok(Value::Bool(true))
        );
        assert!(json_value(&json!("yes"), DataType::Boolean, &tz).is_err());
        assert!(json_value(&json!("2024-01-02"), DataType::Date, &tz).is_ok());
        assert!(json_value(&json!("2024-13-02"), DataType::Date, &tz).is_err());
        assert_eq!(
            json_value(&json!(1_700_000_000_000i64), DataType::Timestamptz, &tz),
            Ok(Value::Ts(1_700_000_000_000))
        );
        assert!(json_value(&json!("2024-01-02 03:04:05"), DataType::Timestamptz, &tz).is_ok());
    }
}
