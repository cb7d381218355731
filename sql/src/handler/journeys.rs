//! Customer journeys (SPEC §7): the definition model and its validation,
//! and the procedures `create_journey`, `publish_journey`, `stop_journey`
//! and `delete_journey`. The engine that runs them is the `cohortdb-journeys`
//! crate; it reads definitions through [`Definition::parse`].

use std::collections::HashMap;

use cohortdb_storage::catalog::wechat::JourneyDef;
use cohortdb_storage::GroupKind;
use serde_json::Value as Json;

use crate::error::{Result, SqlError};
use crate::model::rows::now_ms;
use crate::runtime::{Reply, StatementContext};

/// What starts runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A committed event of this code (and matching `where` over event_view).
    Event {
        /// Event code.
        event: String,
        /// Predicate over `event_view` columns.
        predicate: Option<String>,
    },
    /// Every member of a group, once at a time.
    GroupAt {
        /// Group id.
        group: String,
        /// When (ms).
        at: i64,
    },
    /// Every member of a group, every day at a time of day (server zone).
    GroupDaily {
        /// Group id.
        group: String,
        /// Minutes after midnight.
        minute: u32,
    },
}

/// A branch condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// A predicate over `contact_view`.
    Where(String),
    /// Membership of a group.
    InGroup(String),
    /// The contact did this event within the last `days` days.
    DidEvent {
        /// Event code.
        event: String,
        /// Days.
        days: i64,
    },
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Waits a fixed time.
    Wait {
        /// Milliseconds.
        ms: i64,
    },
    /// Waits for an event (then `next`) or a timeout (then `timeout_next`).
    WaitEvent {
        /// Event code.
        event: String,
        /// Predicate over `event_view`.
        predicate: Option<String>,
        /// Milliseconds.
        timeout_ms: i64,
        /// Step after the timeout (else the run completes).
        timeout_next: Option<String>,
    },
    /// Goes to `then` or `else`.
    Branch {
        /// The condition.
        cond: Cond,
        /// Step when true.
        then: String,
        /// Step when false.
        otherwise: String,
    },
    /// Adds the contact to a static group.
    AddToGroup(String),
    /// Removes the contact from a static group.
    RemoveFromGroup(String),
    /// Sets a contact field (as an UPDATE of contacts).
    SetField {
        /// Column.
        field: String,
        /// Value.
        value: Json,
    },
    /// A WeChat message through the sender (`kind`: template, custom, subscribe).
    Wechat {
        /// `template`, `custom` or `subscribe`.
        kind: String,
        /// Account id.
        account: String,
        /// Template id or custom msg_type.
        what: String,
        /// Data or content.
        body: Json,
        /// Template link.
        url: Option<String>,
    },
    /// Ends the run.
    End,
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Id.
    pub id: String,
    /// Explicit next step.
    pub next: Option<String>,
    /// What it does.
    pub kind: StepKind,
}

/// A parsed, validated journey definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// Display name.
    pub name: String,
    /// The trigger.
    pub trigger: Trigger,
    /// True for `reentry: always`.
    pub reentry_always: bool,
    /// Steps; the first is the entry.
    pub steps: Vec<Step>,
}

fn bad(step: Option<&str>, msg: String) -> SqlError {
    match step {
        Some(s) => SqlError::InvalidValue(format!("journey step \"{s}\": {msg}")),
        None => SqlError::InvalidValue(format!("journey definition: {msg}")),
    }
}

fn unknown(step: Option<&str>, msg: String) -> SqlError {
    match step {
        Some(s) => SqlError::UndefinedObject(format!("journey step \"{s}\": {msg}")),
        None => SqlError::UndefinedObject(format!("journey definition: {msg}")),
    }
}

/// Parses `"10 minutes"` (seconds, minutes, hours, days; singular too).
pub fn parse_duration(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let n: i64 = it.next()?.parse().ok()?;
    let unit = it.next()?.trim_end_matches('s');
    if it.next().is_some() || n < 0 {
        return None;
    }
    let ms = match unit {
        "second" | "sec" => 1_000,
        "minute" | "min" => 60_000,
        "hour" => 3_600_000,
        "day" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

fn str_field<'a>(o: &'a serde_json::Map<String, Json>, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Json::as_str)
}

impl Definition {
    /// Parses a definition's JSON (shape only; [`validate`] checks names
    /// against the catalog).
    pub fn parse(text: &str) -> Result<Definition> {
        let doc: Json =
            serde_json::from_str(text).map_err(|e| bad(None, format!("not valid JSON: {e}")))?;
        let o = doc
            .as_object()
            .ok_or_else(|| bad(None, "must be a JSON object".into()))?;
        let name = str_field(o, "name").unwrap_or("").to_string();
        let t = o
            .get("trigger")
            .and_then(Json::as_object)
            .ok_or_else(|| bad(None, "\"trigger\" is required".into()))?;
        let trigger = if let Some(ev) = str_field(t, "event") {
            Trigger::Event {
                event: ev.to_string(),
                predicate: str_field(t, "where").map(str::to_string),
            }
        } else if let Some(g) = str_field(t, "group") {
            if let Some(at) = str_field(t, "at") {
                let at = crate::model::convert::parse_timestamp_ms(at, &chrono_tz::Tz::UTC)
                    .ok_or_else(|| {
                        bad(None, format!("trigger \"at\" '{at}' is not a timestamp"))
                    })?;
                Trigger::GroupAt {
                    group: g.to_string(),
                    at,
                }
            } else if let Some(d) = str_field(t, "daily") {
                let (h, m) = d
                    .split_once(':')
                    .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
                    .filter(|(h, m)| *h < 24 && *m < 60)
                    .ok_or_else(|| bad(None, format!("trigger \"daily\" '{d}' is not HH:MM")))?;
                Trigger::GroupDaily {
                    group: g.to_string(),
                    minute: h * 60 + m,
                }
            } else {
                return Err(bad(
                    None,
                    "a group trigger needs \"at\" or \"daily\"".into(),
                ));
            }
        } else {
            return Err(bad(None, "the trigger needs \"event\" or \"group\"".into()));
        };
        let reentry_always = match str_field(o, "reentry").unwrap_or("once") {
            "once" => false,
            "always" => true,
            other => return Err(bad(None, format!("reentry '{other}' (use once or always)"))),
        };
        let list = o
            .get("steps")
            .and_then(Json::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad(None, "\"steps\" must be a non-empty array".into()))?;
        let mut steps = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let s = s
                .as_object()
                .ok_or_else(|| bad(None, format!("step {} is not an object", i + 1)))?;
            let id = str_field(s, "id")
                .ok_or_else(|| bad(None, format!("step {} has no id", i + 1)))?
                .to_string();
            let sid = Some(id.as_str());
            let need = |k: &str| -> Result<String> {
                str_field(s, k)
                    .map(str::to_string)
                    .ok_or_else(|| bad(sid, format!("\"{k}\" is required")))
            };
            let kind = match str_field(s, "type").unwrap_or("") {
                "wait" => {
                    if let Some(ev) = str_field(s, "until_event") {
                        let timeout = need("timeout")?;
                        StepKind::WaitEvent {
                            event: ev.to_string(),
                            predicate: str_field(s, "where").map(str::to_string),
                            timeout_ms: parse_duration(&timeout).ok_or_else(|| {
                                bad(
                                    sid,
                                    format!(
                                        "timeout '{timeout}' is not a duration (e.g. '3 days')"
                                    ),
                                )
                            })?,
                            timeout_next: str_field(s, "timeout_next").map(str::to_string),
                        }
                    } else {
                        let d = need("duration")?;
                        StepKind::Wait {
                            ms: parse_duration(&d).ok_or_else(|| {
                                bad(
                                    sid,
                                    format!(
                                        "duration '{d}' is not '<n> seconds|minutes|hours|days'"
                                    ),
                                )
                            })?,
                        }
                    }
                }
                "branch" => {
                    let cond = if let Some(w) = str_field(s, "where") {
                        Cond::Where(w.to_string())
                    } else if let Some(g) = str_field(s, "in_group") {
                        Cond::InGroup(g.to_string())
                    } else if let Some(e) = str_field(s, "did_event") {
                        Cond::DidEvent {
                            event: e.to_string(),
                            days: s
                                .get("within_days")
                                .and_then(Json::as_i64)
                                .filter(|d| *d > 0)
                                .ok_or_else(|| {
                                    bad(sid, "\"within_days\" must be a positive integer".into())
                                })?,
                        }
                    } else {
                        return Err(bad(
                            sid,
                            "a branch needs \"where\", \"in_group\" or \"did_event\"".into(),
                        ));
                    };
                    StepKind::Branch {
                        cond,
                        then: need("then")?,
                        otherwise: need("else")?,
                    }
                }
                "add_to_group" => StepKind::AddToGroup(need("group")?),
                "remove_from_group" => StepKind::RemoveFromGroup(need("group")?),
                "set_field" => StepKind::SetField {
                    field: need("field")?,
                    value: s.get("value").cloned().unwrap_or(Json::Null),
                },
                "wechat_template" => StepKind::Wechat {
                    kind: "template".into(),
                    account: need("account")?,
                    what: need("template_id")?,
                    body: s
                        .get("data")
                        .cloned()
                        .unwrap_or(Json::Object(Default::default())),
                    url: str_field(s, "url").map(str::to_string),
                },
                "wechat_custom" => StepKind::Wechat {
                    kind: "custom".into(),
                    account: need("account")?,
                    what: need("msg_type")?,
                    body: s
                        .get("content")
                        .cloned()
                        .unwrap_or(Json::Object(Default::default())),
                    url: None,
                },
                "wechat_subscribe" => StepKind::Wechat {
                    kind: "subscribe".into(),
                    account: need("account")?,
                    what: need("template_id")?,
                    body: s
                        .get("data")
                        .cloned()
                        .unwrap_or(Json::Object(Default::default())),
                    url: None,
                },
                "end" => StepKind::End,
                other => return Err(bad(sid, format!("unknown step type '{other}'"))),
            };
            steps.push(Step {
                id,
                next: str_field(s, "next").map(str::to_string),
                kind,
            });
        }
        Ok(Definition {
            name,
            trigger,
            reentry_always,
            steps,
        })
    }

    /// The index of step `id`.
    pub fn index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// The step after step `i` when it simply goes on: its `next`, else the
    /// one after it in the list; `None` when the run completes.
    pub fn after(&self, i: usize) -> Option<usize> {
        match &self.steps[i].next {
            Some(n) => self.index(n),
            None => (i + 1 < self.steps.len()).then_some(i + 1),
        }
    }

    /// Every step a step can go to.
    fn successors(&self, i: usize) -> Vec<usize> {
        let s = &self.steps[i];
        let mut out = Vec::new();
        match &s.kind {
            StepKind::End => {}
            StepKind::Branch {
                then, otherwise, ..
            } => {
                out.extend(self.index(then));
                out.extend(self.index(otherwise));
            }
            StepKind::WaitEvent { timeout_next, .. } => {
                out.extend(self.after(i));
                if let Some(t) = timeout_next {
                    out.extend(self.index(t));
                }
            }
            _ => out.extend(self.after(i)),
        }
        out
    }
}

/// Checks `def` against the catalog and the SQL engine: targets, groups,
/// accounts, events, fields, predicates, cycles without a wait.
pub async fn validate(ctx: &StatementContext, def: &Definition) -> Result<()> {
    let catalog = ctx.store.catalog();
    let data = catalog.data();
    let event_ok = |step: Option<&str>, e: &str| -> Result<()> {
        if catalog.event_type(e).is_none() {
            return Err(unknown(
                step,
                format!("event \"{e}\" is not a defined event type"),
            ));
        }
        Ok(())
    };
    let group = |step: Option<&str>, g: &str, static_only: bool| -> Result<()> {
        match data.groups.iter().find(|x| x.name == g) {
            None => Err(unknown(step, format!("group \"{g}\" does not exist"))),
            Some(x) if static_only && x.kind != GroupKind::Static => Err(bad(
                step,
                format!("group \"{g}\" is dynamic: only static groups take add/remove"),
            )),
            Some(_) => Ok(()),
        }
    };
    let predicate = |step: Option<&str>, rel: &str, p: &str| {
        let sql = format!("SELECT count(*) FROM {rel} WHERE ({p})");
        let df = ctx.df.clone();
        let step = step.map(str::to_string);
        let p = p.to_string();
        async move {
            let plan = df.state().create_logical_plan(&sql).await;
            plan.map(|_| ())
                .map_err(|e| bad(step.as_deref(), format!("bad predicate \"{p}\": {e}")))
        }
    };
    match &def.trigger {
        Trigger::Event {
            event,
            predicate: p,
        } => {
            event_ok(None, event)?;
            if let Some(p) = p {
                predicate(None, "event_view", p).await?;
            }
        }
        Trigger::GroupAt { group: g, .. } | Trigger::GroupDaily { group: g, .. } => {
            group(None, g, false)?
        }
    }
    let mut seen = HashMap::new();
    for (i, s) in def.steps.iter().enumerate() {
        if seen.insert(s.id.clone(), i).is_some() {
            return Err(bad(Some(&s.id), "duplicate step id".into()));
        }
    }
    for s in &def.steps {
        let sid = Some(s.id.as_str());
        let target = |t: &str| -> Result<()> {
            if def.index(t).is_none() {
                return Err(unknown(sid, format!("target step \"{t}\" does not exist")));
            }
            Ok(())
        };
        if let Some(n) = &s.next {
            target(n)?;
        }
        match &s.kind {
            StepKind::Wait { .. } | StepKind::End => {}
            StepKind::WaitEvent {
                event,
                predicate: p,
                timeout_next,
                ..
            } => {
                event_ok(sid, event)?;
                if let Some(p) = p {
                    predicate(sid, "event_view", p).await?;
                }
                if let Some(t) = timeout_next {
                    target(t)?;
                }
            }
            StepKind::Branch {
                cond,
                then,
                otherwise,
            } => {
                target(then)?;
                target(otherwise)?;
                match cond {
                    Cond::Where(p) => predicate(sid, "contact_view", p).await?,
                    Cond::InGroup(g) => group(sid, g, false)?,
                    Cond::DidEvent { event, .. } => event_ok(sid, event)?,
                }
            }
            StepKind::AddToGroup(g) | StepKind::RemoveFromGroup(g) => group(sid, g, true)?,
            StepKind::SetField { field, .. } => {
                if catalog.contact_field(field).is_none()
                    || matches!(field.as_str(), "created_at" | "updated_at")
                {
                    return Err(bad(
                        sid,
                        format!("\"{field}\" is not a settable contact field"),
                    ));
                }
            }
            StepKind::Wechat {
                kind,
                account,
                what,
                ..
            } => {
                if !data
                    .wechat_accounts
                    .iter()
                    .any(|a| &a.account_id == account)
                {
                    return Err(unknown(
                        sid,
                        format!("wechat account \"{account}\" does not exist"),
                    ));
                }
                if what.is_empty() {
                    return Err(bad(
                        sid,
                        format!("the {kind} message needs its template or type"),
                    ));
                }
            }
        }
    }
    // a cycle must pass through a wait
    let n = def.steps.len();
    let mut state = vec![0u8; n]; // 0 new, 1 on stack, 2 done
    fn dfs(def: &Definition, i: usize, state: &mut [u8]) -> Option<usize> {
        state[i] = 1;
        for j in def.successors(i) {
            if matches!(
                def.steps[j].kind,
                StepKind::Wait { .. } | StepKind::WaitEvent { .. }
            ) {
                continue;
            }
            if state[j] == 1 {
                return Some(j);
            }
            if state[j] == 0 {
                if let Some(c) = dfs(def, j, state) {
                    return Some(c);
                }
            }
        }
        state[i] = 2;
        None
    }
    for i in 0..n {
        if state[i] == 0
            && !matches!(
                def.steps[i].kind,
                StepKind::Wait { .. } | StepKind::WaitEvent { .. }
            )
        {
            if let Some(c) = dfs(def, i, &mut state) {
                return Err(bad(
                    Some(&def.steps[c].id),
                    "is on a cycle without a wait step".into(),
                ));
            }
        }
    }
    Ok(())
}

fn check_journey_id(id: &str) -> Result<()> {
    let ok = id.starts_with("j_")
        && id.len() > 2
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(SqlError::InvalidName(format!(
            "invalid journey id \"{id}\": ids are identifiers starting with j_"
        )));
    }
    Ok(())
}

/// `CALL create_journey(id, definition_json)`: stores a draft (or replaces one).
pub async fn create(ctx: &StatementContext, a: &[String]) -> Result<Reply> {
    let [id, text] = a else {
        return Err(SqlError::InvalidValue(
            "usage: CALL create_journey(journey_id, definition_json)".into(),
        ));
    };
    check_journey_id(id)?;
    let def = Definition::parse(text)?;
    validate(ctx, &def).await?;
    let now = now_ms();
    let name = if def.name.is_empty() {
        id.clone()
    } else {
        def.name.clone()
    };
    ctx.store
        .update_catalog(|data, _| {
            match data.journeys.iter_mut().find(|j| &j.id == id) {
                Some(j) if j.status != "draft" => {
                    return Err(SqlError::ObjectState(format!(
                        "journey \"{id}\" is {}: only draft journeys can be edited (create a new journey)",
                        j.status
                    )))
                }
                Some(j) => {
                    j.name = name;
                    j.definition = text.clone();
                    j.version += 1;
                    j.updated_at = now;
                }
                None => data.journeys.push(JourneyDef {
                    id: id.clone(),
                    name,
                    status: "draft".into(),
                    version: 1,
                    definition: text.clone(),
                    created_at: now,
                    updated_at: now,
                }),
            }
            Ok(())
        })
        .await?;
    Ok(Reply::command("CALL"))
}

/// `publish_journey` / `stop_journey` / `delete_journey`.
pub async fn set_status(ctx: &StatementContext, a: &[String], action: &str) -> Result<Reply> {
    let [id] = a else {
        return Err(SqlError::InvalidValue(format!(
            "usage: CALL {action}_journey(journey_id)"
        )));
    };
    let now = now_ms();
    let delete = action == "delete";
    ctx.store
        .update_catalog(|data, batch| {
            let i = data
                .journeys
                .iter()
                .position(|j| &j.id == id)
                .ok_or_else(|| {
                    SqlError::UndefinedObject(format!("journey \"{id}\" does not exist"))
                })?;
            let j = &mut data.journeys[i];
            match action {
                "publish" => {
                    if j.status == "published" {
                        return Err(SqlError::ObjectState(format!(
                            "journey \"{id}\" is already published"
                        )));
                    }
                    j.status = "published".into();
                }
                "stop" => {
                    if j.status == "draft" {
                        return Err(SqlError::ObjectState(format!(
                            "journey \"{id}\" is a draft: publish it first"
                        )));
                    }
                    j.status = "stopped".into();
                }
                _ => {
                    if j.status == "published" {
                        return Err(SqlError::ObjectState(format!(
                            "journey \"{id}\" is published: stop it before deleting it"
                        )));
                    }
                    data.journeys.remove(i);
                    batch.delete_journey_data(id);
                    return Ok(());
                }
            }
            j.updated_at = now;
            Ok(())
        })
        .await?;
    let _ = delete;
    Ok(Reply::command("CALL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"{ "name": "Welcome",
      "trigger": {"event": "app_launch", "where": "s_page_path = 'pages/index'"},
      "reentry": "once",
      "steps": [
        {"id": "wait1",  "type": "wait", "duration": "10 minutes"},
        {"id": "bought", "type": "branch", "did_event": "custom_order", "within_days": 3,
                         "then": "done", "else": "nudge"},
        {"id": "nudge",  "type": "wechat_template", "account": "wx_oa_main",
                         "template_id": "TPL_CART", "data": {"first": {"value": "Hi"}}, "next": "tag"},
        {"id": "tag",    "type": "add_to_group", "group": "group_nudged"},
        {"id": "done",   "type": "end"} ] }"#;

    #[test]
    fn spec_example_parses() {
        let d = Definition::parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(d.steps.len(), 5);
        assert_eq!(d.steps[0].kind, StepKind::Wait { ms: 600_000 });
        assert_eq!(d.after(0), Some(1));
        assert_eq!(d.after(2), Some(3));
        assert_eq!(d.after(3), Some(4));
        assert!(!d.reentry_always);
        assert_eq!(parse_duration("1 day"), Some(86_400_000));
        assert_eq!(parse_duration("3 fortnights"), None);
    }

    #[test]
    fn shape_errors_name_the_step() {
        let e = Definition::parse(
            r#"{"trigger":{"event":"x"},"steps":[{"id":"a","type":"teleport"}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("\"a\"") && e.to_string().contains("teleport"),
            "{e}"
        );
        assert!(Definition::parse(r#"{"trigger":{},"steps":[]}"#).is_err());
    }
}
