//! `POST /wechat/{account_id}`: an official account's event push (plain
//! XML mode), verified as WeChat signs it — hex SHA-1 of the sorted,
//! concatenated token, timestamp and nonce — against the token of
//! `collector_set_wechat_token`. `GET` with `echostr` is WeChat's URL check.
//!
//! Mapping to the official-account events of the data model, on channel
//! `account_id` with the fan's `wechat.openid` identity:
//! `subscribe` (`s_qrcode_id` from `EventKey` `qrscene_<id>`),
//! `unsubscribe`, `SCAN` → `scan_qrcode`, `CLICK` / `VIEW` → `click_menu`
//! (`s_menu_key`), `subscribe_msg_popup_event` → `subscribe_msg_accept` /
//! `subscribe_msg_reject` (`s_template_id`), and messages (`MsgType` text,
//! image, voice, …) → `message` (`s_msg_type`, `s_msg_content`). Other
//! pushes (location reports, send-job reports) are acknowledged and not
//! stored. The message id is `MsgId` when present, else `FromUserName` +
//! `CreateTime` + event, so WeChat's retries are stored once.

use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::Value as Json;

use crate::ingest::{Action, Incoming};

/// True when `signature` is WeChat's signature of `timestamp` and `nonce`
/// with `token`.
pub fn signature_ok(token: &str, timestamp: &str, nonce: &str, signature: &str) -> bool {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    let joined = parts.concat();
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, joined.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    #[allow(deprecated)]
    let same = ring::constant_time::verify_slices_are_equal(
        hex.as_bytes(),
        signature.to_ascii_lowercase().as_bytes(),
    )
    .is_ok();
    same
}

/// The leaf elements of a push, in document order: `(name, text)`.
pub fn leaves(xml: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut reader = Reader::from_reader(xml);
    let mut out = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut saw_root = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.is_empty() {
                    if saw_root {
                        return Err("more than one root element".into());
                    }
                    saw_root = true;
                }
                stack.push(name);
                text.clear();
            }
            Ok(Event::End(_)) => {
                let name = stack.pop().ok_or("unbalanced end tag")?;
                if !stack.is_empty() {
                    out.push((name, std::mem::take(&mut text)));
                }
            }
            Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                out.push((name, String::new()));
            }
            Ok(Event::Text(t)) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Ok(Event::CData(t)) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Ok(Event::GeneralRef(r)) => {
                let ch = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c,
                    None => match r.decode().map_err(|e| e.to_string())?.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(format!("unknown entity &{other};")),
                    },
                };
                text.push(ch);
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "invalid XML at byte {}: {e}",
                    reader.error_position()
                ))
            }
        }
    }
    if !stack.is_empty() {
        return Err("the XML document is truncated".into());
    }
    if !saw_root {
        return Err("the body is not an XML document".into());
    }
    Ok(out)
}

fn get<'a>(l: &'a [(String, String)], name: &str) -> Option<&'a str> {
    l.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The events of a push for `account_id` (none for pushes that are not
/// stored). Errors are malformed pushes.
pub fn parse(xml: &[u8], account_id: &str) -> Result<Vec<Incoming>, String> {
    let l = leaves(xml)?;
    let openid = get(&l, "FromUserName").ok_or("the push has no FromUserName")?;
    let created = get(&l, "CreateTime")
        .ok_or("the push has no CreateTime")?
        .trim()
        .parse::<i64>()
        .map_err(|_| "CreateTime is not a number")?;
    let msg_type = get(&l, "MsgType").ok_or("the push has no MsgType")?;
    let event = get(&l, "Event").unwrap_or("");
    let key = get(&l, "EventKey");
    let mk = |code: &str, props: Vec<(&str, &str)>, id_suffix: &str| Incoming {
        scope: account_id.to_string(),
        message_id: Some(match get(&l, "MsgId").or_else(|| get(&l, "MsgID")) {
            Some(m) => format!("msg:{m}{id_suffix}"),
            None => format!(
                "{openid}:{created}:{event}:{}{id_suffix}",
                key.unwrap_or("")
            ),
        }),
        channel: account_id.to_string(),
        external_id: None,
        openid: Some(openid.to_string()),
        unionid: None,
        anonymous_id: None,
        action: Action::Track {
            event: code.to_string(),
            ts_ms: created * 1000,
            props: props
                .into_iter()
                .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
                .collect(),
        },
    };
    let out = if msg_type == "event" {
        match event {
            "subscribe" => {
                let mut props = vec![];
                if let Some(scene) = key.and_then(|k| k.strip_prefix("qrscene_")) {
                    props.push(("s_qrcode_id", scene));
                }
                vec![mk("subscribe", props, "")]
            }
            "unsubscribe" => vec![mk("unsubscribe", vec![], "")],
            "SCAN" => vec![mk(
                "scan_qrcode",
                key.map(|k| vec![("s_qrcode_id", k)]).unwrap_or_default(),
                "",
            )],
            "CLICK" | "VIEW" => vec![mk(
                "click_menu",
                key.map(|k| vec![("s_menu_key", k)]).unwrap_or_default(),
                "",
            )],
            "subscribe_msg_popup_event" | "subscribe_msg_change_event" => {
                // pairs of TemplateId and SubscribeStatusString, one per List
                let mut out = Vec::new();
                let mut template: Option<&str> = None;
                for (n, v) in &l {
                    match n.as_str() {
                        "TemplateId" => template = Some(v.as_str()),
                        "SubscribeStatusString" => {
                            if let Some(t) = template.take() {
                                let code = if v == "accept" {
                                    "subscribe_msg_accept"
                                } else {
                                    "subscribe_msg_reject"
                                };
                                let suffix = format!(":{t}");
                                out.push(mk(code, vec![("s_template_id", t)], &suffix));
                            }
                        }
                        _ => {}
                    }
                }
                out
            }
            _ => vec![],
        }
    } else {
        let content = get(&l, "Content")
            .or_else(|| get(&l, "PicUrl"))
            .or_else(|| get(&l, "MediaId"))
            .or_else(|| get(&l, "Url"))
            .unwrap_or("");
        vec![mk(
            "message",
            vec![("s_msg_type", msg_type), ("s_msg_content", content)],
            "",
        )]
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_wechat() {
        // sorted: "1409304348", "token", "xxxxxx" → sha1 of the concatenation
        let joined = "1409304348tokenxxxxxx";
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, joined.as_bytes());
        let sig: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert!(signature_ok("token", "1409304348", "xxxxxx", &sig));
        assert!(signature_ok(
            "token",
            "1409304348",
            "xxxxxx",
            &sig.to_uppercase()
        ));
        assert!(!signature_ok("token2", "1409304348", "xxxxxx", &sig));
        assert!(!signature_ok("token", "1409304348", "xxxxxx", ""));
    }

    #[test]
    fn subscribe_via_qr_and_messages() {
        let x = br#"<xml><ToUserName><![CDATA[gh_1]]></ToUserName>
            <FromUserName><![CDATA[o_fan1]]></FromUserName><CreateTime>1700000000</CreateTime>
            <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>
            <EventKey><![CDATA[qrscene_42]]></EventKey><Ticket><![CDATA[t]]></Ticket></xml>"#;
        let v = parse(x, "wx_oa").unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].openid.as_deref(), Some("o_fan1"));
        let Action::Track {
            event,
            ts_ms,
            props,
        } = &v[0].action
        else {
            panic!()
        };
        assert_eq!((event.as_str(), *ts_ms), ("subscribe", 1_700_000_000_000));
        assert_eq!(props[0], ("s_qrcode_id".into(), Json::String("42".into())));
        let again = parse(x, "wx_oa").unwrap();
        assert_eq!(v[0].message_id, again[0].message_id);

        let t = br#"<xml><FromUserName>o_fan1</FromUserName><CreateTime>1700000001</CreateTime>
            <MsgType>text</MsgType><Content>a &amp; b</Content><MsgId>99</MsgId></xml>"#;
        let v = parse(t, "wx_oa").unwrap();
        let Action::Track { event, props, .. } = &v[0].action else {
            panic!()
        };
        assert_eq!(event, "message");
        assert_eq!(props[1].1, Json::String("a & b".into()));
        assert_eq!(v[0].message_id.as_deref(), Some("msg:99"));
    }

    #[test]
    fn popup_events_and_bad_xml() {
        let x = br#"<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>
            <MsgType>event</MsgType><Event>subscribe_msg_popup_event</Event>
            <SubscribeMsgPopupEvent><List><TemplateId>T1</TemplateId>
            <SubscribeStatusString>accept</SubscribeStatusString></List>
            <List><TemplateId>T2</TemplateId><SubscribeStatusString>reject</SubscribeStatusString>
            </List></SubscribeMsgPopupEvent></xml>"#;
        let v = parse(x, "wx").unwrap();
        assert_eq!(v.len(), 2);
        assert!(
            matches!(&v[0].action, Action::Track { event, .. } if event == "subscribe_msg_accept")
        );
        assert!(
            matches!(&v[1].action, Action::Track { event, .. } if event == "subscribe_msg_reject")
        );
        assert_ne!(v[0].message_id, v[1].message_id);
        assert!(parse(b"<xml><FromUserName>o1</FromUserName>", "wx").is_err());
        assert!(parse(b"not xml", "wx").is_err());
        assert!(parse(b"<xml></xml>", "wx").is_err());
        let loc = br#"<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>
            <MsgType>event</MsgType><Event>LOCATION</Event></xml>"#;
        assert!(parse(loc, "wx").unwrap().is_empty());
    }
}
