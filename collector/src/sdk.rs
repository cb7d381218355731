//! `POST /sdk/v1/track`: the mini-program SDK's events (seeds 001 and
//! 002). A body is one event, a JSON array of events, or `{"events":
//! [...]}`; each event is `{appid, appkey, event, time (ms), openid?,
//! unionid?, qid?, userID?, message_id?, properties{...}, chan{...}?}`.
//!
//! Mapping: `qid` is the anonymous id and `userID` the channel account id
//! (`external_id`) of the app's channel, so a later event with both joins
//! the anonymous history to the account; SDK presets (`$os`, `$ip`,
//! `$utm_*`, …) become the SDK columns without the `$`; `chan` fields
//! become the channel-tracking columns; the SDK's lifecycle names
//! (`appLaunch`, `pageShow`, …) become the preset codes of seed 002.

use serde_json::Value as Json;

use crate::ingest::{Action, Incoming};

/// Why a body cannot be read as SDK events.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SdkError {
    /// Not JSON, or not event-shaped.
    #[error("{0}")]
    Malformed(String),
    /// An event's appid/appkey is not a registered app.
    #[error("{0}")]
    Unauthorized(String),
}

/// The preset code an SDK lifecycle event name stands for.
pub fn preset_code(name: &str) -> &str {
    match name {
        "appLaunch" | "$app_launch" | "$MPLaunch" => "app_launch",
        "appShow" | "$app_show" | "$MPShow" => "app_show",
        "appHide" | "app_hide" | "$app_hide" | "$MPHide" => "exit_wxapp",
        "pageShow" | "page_show" | "$page_show" | "$MPViewScreen" => "browse_wxapp_page",
        "pageHide" | "page_hide" | "$page_hide" => "leave_wxapp_page",
        "pageShare" | "page_share" | "$page_share" | "$MPShare" => "page_share_app_message",
        other => other,
    }
}

/// The channel-tracking columns a `chan` object may set.
const CHAN_FIELDS: &[&str] = &[
    "chan_id",
    "chan_wxapp_scene",
    "guide_id",
    "room_id",
    "weixinadinfo",
    "chan_shop_id",
];

fn text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One event of a body: decoded, or refused with the reason.
pub type Message = Result<Incoming, String>;

/// The events of a body, in order. `authenticate(appid, appkey)` gives the
/// app's channel when the pair is valid; an event whose JSON is longer
/// than `max_event_bytes` is refused.
pub fn parse(
    body: &[u8],
    now_ms: i64,
    max_event_bytes: usize,
    authenticate: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<Vec<Message>, SdkError> {
    let doc: Json = serde_json::from_slice(body)
        .map_err(|e| SdkError::Malformed(format!("the body is not valid JSON: {e}")))?;
    let list = match doc {
        Json::Array(a) => a,
        Json::Object(mut o) => match o.remove("events") {
            Some(Json::Array(a)) => a,
            Some(_) => return Err(SdkError::Malformed("\"events\" must be an array".into())),
            None => vec![Json::Object(o)],
        },
        _ => {
            return Err(SdkError::Malformed(
                "the body must be an event object, an array of events or {\"events\": [...]}"
                    .into(),
            ))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, ev) in list.into_iter().enumerate() {
        let size = ev.to_string().len();
        if size > max_event_bytes {
            out.push(Err(format!(
                "the event is {size} bytes, over the limit of {max_event_bytes} (max_event_kb)"
            )));
            continue;
        }
        let Json::Object(mut o) = ev else {
            return Err(SdkError::Malformed(format!("event {i} is not an object")));
        };
        let appid = text(o.get("appid"))
            .ok_or_else(|| SdkError::Malformed(format!("event {i} has no appid")))?;
        let appkey = text(o.get("appkey")).unwrap_or_default();
        let channel = authenticate(&appid, &appkey).ok_or_else(|| {
            SdkError::Unauthorized(format!("event {i}: unknown appid or wrong appkey"))
        })?;
        let event = text(o.get("event"))
            .ok_or_else(|| SdkError::Malformed(format!("event {i} has no event name")))?;
        let ts_ms = match o.get("time") {
            None | Some(Json::Null) => now_ms,
            Some(Json::Number(n)) => n.as_i64().ok_or_else(|| {
                SdkError::Malformed(format!("event {i}: time must be milliseconds since 1970"))
            })?,
            Some(_) => {
                return Err(SdkError::Malformed(format!(
                    "event {i}: time must be milliseconds since 1970"
                )))
            }
        };
        let mut props = Vec::new();
        match o.remove("properties") {
            Some(Json::Object(p)) => {
                for (k, v) in p {
                    let name = k.strip_prefix('$').map(str::to_string).unwrap_or(k);
                    props.push((name, v));
                }
            }
            None | Some(Json::Null) => {}
            Some(_) => {
                return Err(SdkError::Malformed(format!(
                    "event {i}: properties must be an object"
                )))
            }
        }
        match o.remove("chan") {
            Some(Json::Object(c)) => {
                for (k, v) in c {
                    let name = if CHAN_FIELDS.contains(&k.as_str()) {
                        k
                    } else {
                        format!("chan.{k}")
                    };
                    // scene numbers arrive as numbers; the columns are text
                    let v = match v {
                        Json::Number(n) => Json::String(n.to_string()),
                        v => v,
                    };
                    props.push((name, v));
                }
            }
            None | Some(Json::Null) => {}
            Some(_) => {
                return Err(SdkError::Malformed(format!(
                    "event {i}: chan must be an object"
                )))
            }
        }
        out.push(Ok(Incoming {
            scope: appid,
            message_id: text(o.get("message_id")),
            channel,
            external_id: text(o.get("userID")).or_else(|| text(o.get("userId"))),
            openid: text(o.get("openid")),
            unionid: text(o.get("unionid")),
            anonymous_id: text(o.get("qid")),
            action: Action::Track {
                event: preset_code(&event).to_string(),
                ts_ms,
                props,
            },
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(app: &str, key: &str) -> Option<String> {
        (app == "mp1" && key == "secret-key").then(|| "wx_mp".to_string())
    }

    #[test]
    fn one_event_and_batches() {
        let one =
            br#"{"appid":"mp1","appkey":"secret-key","event":"appLaunch","time":1700000000000,
            "qid":"q1","message_id":"m1","properties":{"$os":"iOS","s_page_path":"pages/index"},
            "chan":{"chan_id":"c1","chan_wxapp_scene":1037}}"#;
        let v = parse(one, 0, 1 << 15, &auth).unwrap();
        assert_eq!(v.len(), 1);
        let e = v[0].as_ref().unwrap();
        assert_eq!(e.channel, "wx_mp");
        assert_eq!(e.anonymous_id.as_deref(), Some("q1"));
        let Action::Track {
            event,
            ts_ms,
            props,
        } = &e.action
        else {
            panic!()
        };
        assert_eq!(event, "app_launch");
        assert_eq!(*ts_ms, 1_700_000_000_000);
        let names: Vec<&str> = props.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["os", "s_page_path", "chan_id", "chan_wxapp_scene"]);
        assert_eq!(props[3].1, Json::String("1037".into()));
        let two = br#"{"events":[{"appid":"mp1","appkey":"secret-key","event":"search"},
            {"appid":"mp1","appkey":"secret-key","event":"add_to_cart","userID":"u1"}]}"#;
        let v = parse(two, 5, 1 << 15, &auth).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].as_ref().unwrap().external_id.as_deref(), Some("u1"));
        let arr = br#"[{"appid":"mp1","appkey":"secret-key","event":"search"}]"#;
        assert_eq!(parse(arr, 5, 1 << 15, &auth).unwrap().len(), 1);
        // an oversized event is refused on its own
        let v = parse(arr, 5, 10, &auth).unwrap();
        assert!(v[0].is_err());
    }

    #[test]
    fn bad_bodies() {
        assert!(matches!(
            parse(b"{", 0, 1 << 15, &auth),
            Err(SdkError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"3", 0, 1 << 15, &auth),
            Err(SdkError::Malformed(_))
        ));
        assert!(matches!(
            parse(
                br#"{"appid":"mp1","appkey":"nope","event":"x"}"#,
                0,
                1 << 15,
                &auth
            ),
            Err(SdkError::Unauthorized(_))
        ));
        assert!(matches!(
            parse(
                br#"{"appid":"mp1","appkey":"secret-key"}"#,
                0,
                1 << 15,
                &auth
            ),
            Err(SdkError::Malformed(_))
        ));
        assert!(matches!(
            parse(
                br#"{"appid":"mp1","appkey":"secret-key","event":"x","time":"soon"}"#,
                0,
                1 << 15,
                &auth
            ),
            Err(SdkError::Malformed(_))
        ));
    }
}
