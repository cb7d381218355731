//! `POST /v1/batch`: server and app batches in Segment's shape —
//! `{"batch": [{"type": "track"|"identify", "event", "userId" |
//! "anonymousId", "channel_id"?, "messageId", "timestamp", "properties" |
//! "traits"}], "sentAt"?}`. The write key comes as the HTTP Basic user (or
//! `app_id:app_key` as user and password) or in `X-Write-Key`.
//!
//! Clock skew: a batch's `sentAt` is compared with the receive time; only
//! when they differ by more than `clock_skew_secs` are its timestamps
//! shifted by the difference (correcting smaller gaps would add transit
//! delay to every event and reorder funnels).

use serde_json::Value as Json;

use crate::ingest::{Action, Incoming};

/// A batch that cannot be read (nothing of it is stored).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct BatchError(pub String);

/// One message of a batch: decoded, or refused with the reason.
pub type Message = Result<Incoming, String>;

fn text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn timestamp(v: Option<&Json>) -> Result<Option<i64>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| "timestamp must be ISO 8601 or milliseconds".into()),
        Some(Json::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| format!("timestamp \"{s}\" is not ISO 8601 (e.g. 2024-05-01T10:00:00Z)")),
        Some(_) => Err("timestamp must be ISO 8601 or milliseconds".into()),
    }
}

/// Decodes a batch for the app `app_id` whose events default to
/// `channel`; per-message problems are returned in place of the message.
pub fn parse(
    body: &[u8],
    app_id: &str,
    channel: &str,
    now_ms: i64,
    skew_ms: i64,
    max_event_bytes: usize,
) -> Result<Vec<Message>, BatchError> {
    let doc: Json = serde_json::from_slice(body)
        .map_err(|e| BatchError(format!("the body is not valid JSON: {e}")))?;
    let Json::Object(mut doc) = doc else {
        return Err(BatchError("the body must be {\"batch\": [...]}".into()));
    };
    let Some(Json::Array(batch)) = doc.remove("batch") else {
        return Err(BatchError("the body must be {\"batch\": [...]}".into()));
    };
    let shift = match timestamp(doc.get("sentAt")).map_err(BatchError)? {
        Some(sent) if (now_ms - sent).abs() > skew_ms => now_ms - sent,
        _ => 0,
    };
    Ok(batch
        .into_iter()
        .map(|m| {
            let size = m.to_string().len();
            if size > max_event_bytes {
                return Err(format!(
                    "the message is {size} bytes, over the limit of {max_event_bytes} (max_event_kb)"
                ));
            }
            message(m, app_id, channel, now_ms, shift)
        })
        .collect())
}

fn message(m: Json, app_id: &str, channel: &str, now_ms: i64, shift: i64) -> Message {
    let Json::Object(mut o) = m else {
        return Err("a batch entry must be an object".into());
    };
    let kind = text(o.get("type")).unwrap_or_else(|| "track".into());
    let external_id = text(o.get("userId"));
    let anonymous_id = text(o.get("anonymousId"));
    if external_id.is_none() && anonymous_id.is_none() {
        return Err("userId or anonymousId is required".into());
    }
    let channel = text(o.get("channel_id")).unwrap_or_else(|| channel.to_string());
    let message_id = text(o.get("messageId"));
    let action = match kind.as_str() {
        "track" => {
            let event = text(o.get("event")).ok_or("a track message needs an event")?;
            let ts_ms = timestamp(o.get("timestamp"))?.map_or(now_ms, |t| t + shift);
            let props = match o.remove("properties") {
                Some(Json::Object(p)) => p.into_iter().collect(),
                None | Some(Json::Null) => vec![],
                Some(_) => return Err("properties must be an object".into()),
            };
            Action::Track {
                event,
                ts_ms,
                props,
            }
        }
        "identify" => {
            let traits = match o.remove("traits") {
                Some(t @ Json::Object(_)) => t,
                None | Some(Json::Null) => Json::Null,
                Some(_) => return Err("traits must be an object".into()),
            };
            Action::Identify { traits }
        }
        other => {
            return Err(format!(
                "message type \"{other}\" is not supported (use track or identify)"
            ))
        }
    };
    Ok(Incoming {
        scope: app_id.to_string(),
        message_id,
        channel,
        external_id,
        openid: None,
        unionid: None,
        anonymous_id,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_identify_and_refusals() {
        let body = br#"{"batch":[
            {"type":"track","event":"custom_order","userId":"u1","messageId":"m1",
             "timestamp":"2024-05-01T10:00:00Z","properties":{"s_order_amount":12.5}},
            {"type":"identify","userId":"u1","traits":{"name":"Li"}},
            {"type":"page","userId":"u1"},
            {"type":"track","event":"x"}
        ]}"#;
        let v = parse(body, "app", "shop", 0, 300_000, 1 << 15).unwrap();
        assert_eq!(v.len(), 4);
        let t = v[0].as_ref().unwrap();
        assert_eq!(t.channel, "shop");
        assert!(matches!(&t.action, Action::Track { ts_ms, .. } if *ts_ms == 1_714_557_600_000));
        assert!(matches!(
            &v[1].as_ref().unwrap().action,
            Action::Identify { .. }
        ));
        assert!(v[2].is_err());
        assert!(v[3].is_err());
        assert!(parse(b"[]", "app", "shop", 0, 0, 1 << 15).is_err());
        assert!(parse(b"{\"batch\":", "app", "shop", 0, 0, 1 << 15).is_err());
    }

    #[test]
    fn skew_is_corrected_only_beyond_the_threshold() {
        let at = |sent: &str, now: i64| {
            let body = format!(
                r#"{{"sentAt":"{sent}","batch":[{{"event":"search","userId":"u","timestamp":"2024-05-01T10:00:00Z"}}]}}"#
            );
            let v = parse(body.as_bytes(), "a", "c", now, 300_000, 1 << 15).unwrap();
            match &v[0].as_ref().unwrap().action {
                Action::Track { ts_ms, .. } => *ts_ms,
                _ => panic!(),
            }
        };
        let sent = 1_714_557_660_000; // 10:01:00Z
        assert_eq!(at("2024-05-01T10:01:00Z", sent + 2_000), 1_714_557_600_000);
        // client clock an hour behind: shifted by an hour
        assert_eq!(
            at("2024-05-01T10:01:00Z", sent + 3_600_000),
            1_714_557_600_000 + 3_600_000
        );
    }
}
