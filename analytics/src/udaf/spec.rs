//! The `spec` argument of the statement aggregates: a JSON object with the
//! statement's parameters, parsed once per accumulator.
//!
//! ```json
//! {"statement": "funnel", "steps": 3, "window_hours": 24, "strict": false,
//!  "from": "2026-01-01", "to": "2026-01-31",
//!  "scan_from": "2026-01-01", "scan_to": "2026-02-02",
//!  "as_of_ms": 1767225600000, "time_zone": "Asia/Shanghai"}
//! {"statement": "retention", "unit": "week", "periods": 4, "churn": false, …}
//! {"statement": "attribute", "touches": 3, "window_days": 1, "model": "linear",
//!  "include_direct": true, "has_value": true, …}
//! {"statement": "ltv", "unit": "day", "periods": 7, …}
//! {"statement": "paths", "gap_ms": 1800000, "anchor": "start",
//!  "merge_repeats": false, "depth": 5, …}
//! ```
//!
//! `"same_day": true` replaces `window_days` for ATTRIBUTE `WITHIN SAME DAY`.
//!
//! `window_days` replaces `window_hours` for a DAYS window. `scan_from` /
//! `scan_to` are the local days whose events the statement reads (the
//! single server's scan range) and `as_of_ms` drops later events, so the
//! aggregate sees exactly the events the server's scan hands its kernel.

use chrono::TimeZone;
use chrono_tz::Tz;
use datafusion::common::{plan_datafusion_err, Result as DfResult};
use serde_json::Value;

use crate::attribute::{AttrWindow, AttributeSpec, Model};
use crate::calendar::days_from_civil;
use crate::funnel::{FunnelSpec, Window};
use crate::ltv::LtvSpec;
use crate::paths::{Anchor, PathsSpec};
use crate::retention::RetentionSpec;
use crate::{Day, Unit};

/// What every statement's spec carries besides its own parameters.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Session time zone: defines `Event::day`.
    pub tz: Tz,
    /// Local days read (inclusive).
    pub scan: (Day, Day),
    /// Events after this time are ignored (AS OF).
    pub as_of_ms: i64,
}

impl Frame {
    /// The local calendar day of `ms`.
    pub fn day(&self, ms: i64) -> Day {
        match self.tz.timestamp_millis_opt(ms).single() {
            Some(t) => {
                use chrono::Datelike;
                let d = t.date_naive();
                days_from_civil(d.year(), d.month(), d.day())
            }
            None => ms.div_euclid(86_400_000) as Day,
        }
    }
}

/// A parsed statement spec.
#[derive(Debug, Clone)]
pub enum Spec {
    /// FUNNEL.
    Funnel(FunnelSpec, Frame),
    /// RETENTION.
    Retention(RetentionSpec, Frame),
    /// ATTRIBUTE.
    Attribute(AttributeSpec, Frame),
    /// LTV.
    Ltv(LtvSpec, Frame),
    /// PATHS.
    Paths(PathsSpec, Frame),
}

impl Spec {
    /// The frame.
    pub fn frame(&self) -> &Frame {
        match self {
            Spec::Funnel(_, f)
            | Spec::Retention(_, f)
            | Spec::Attribute(_, f)
            | Spec::Ltv(_, f)
            | Spec::Paths(_, f) => f,
        }
    }
}

fn field<'a>(v: &'a Value, name: &str) -> DfResult<&'a Value> {
    v.get(name)
        .ok_or_else(|| plan_datafusion_err!("analytics spec: missing \"{name}\""))
}

fn int(v: &Value, name: &str) -> DfResult<i64> {
    field(v, name)?
        .as_i64()
        .ok_or_else(|| plan_datafusion_err!("analytics spec: \"{name}\" must be an integer"))
}

fn text<'a>(v: &'a Value, name: &str) -> DfResult<&'a str> {
    field(v, name)?
        .as_str()
        .ok_or_else(|| plan_datafusion_err!("analytics spec: \"{name}\" must be a string"))
}

fn boolean(v: &Value, name: &str) -> DfResult<bool> {
    Ok(v.get(name).and_then(Value::as_bool).unwrap_or(false))
}

fn day(v: &Value, name: &str) -> DfResult<Day> {
    let s = text(v, name)?;
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        plan_datafusion_err!("analytics spec: \"{name}\" must be a date YYYY-MM-DD, got {s}")
    })?;
    use chrono::Datelike;
    Ok(days_from_civil(d.year(), d.month(), d.day()))
}

fn unit(v: &Value) -> DfResult<Unit> {
    match text(v, "unit")? {
        "day" => Ok(Unit::Day),
        "week" => Ok(Unit::Week),
        "month" => Ok(Unit::Month),
        u => Err(plan_datafusion_err!("analytics spec: unknown unit {u}")),
    }
}

/// Parses a spec's JSON text.
pub fn parse(json: &str) -> DfResult<Spec> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| plan_datafusion_err!("analytics spec is not valid JSON: {e}"))?;
    let tz_name = text(&v, "time_zone")?;
    let tz: Tz = if tz_name.eq_ignore_ascii_case("utc") {
        Tz::UTC
    } else {
        tz_name
            .parse()
            .map_err(|_| plan_datafusion_err!("analytics spec: unknown time zone {tz_name}"))?
    };
    let frame = Frame {
        tz,
        scan: (day(&v, "scan_from")?, day(&v, "scan_to")?),
        as_of_ms: int(&v, "as_of_ms")?,
    };
    let (from, to) = (day(&v, "from")?, day(&v, "to")?);
    match text(&v, "statement")? {
        "funnel" => {
            let steps = int(&v, "steps")?;
            if !(1..=31).contains(&steps) {
                return Err(plan_datafusion_err!(
                    "analytics spec: \"steps\" must be 1 to 31, got {steps}"
                ));
            }
            let window = match (v.get("window_hours"), v.get("window_days")) {
                (Some(h), None) => Window::Hours(h.as_u64().unwrap_or(0) as u32),
                (None, Some(d)) => Window::Days(d.as_u64().unwrap_or(0) as u32),
                _ => {
                    return Err(plan_datafusion_err!(
                        "analytics spec: a funnel needs one of \"window_hours\", \"window_days\""
                    ))
                }
            };
            Ok(Spec::Funnel(
                FunnelSpec {
                    steps: steps as usize,
                    window,
                    from,
                    to,
                    strict: boolean(&v, "strict")?,
                },
                frame,
            ))
        }
        "retention" => Ok(Spec::Retention(
            RetentionSpec {
                unit: unit(&v)?,
                periods: int(&v, "periods")? as u32,
                from,
                to,
                churn: boolean(&v, "churn")?,
                as_of_day: frame.day(frame.as_of_ms),
            },
            frame,
        )),
        "ltv" => Ok(Spec::Ltv(
            LtvSpec {
                unit: unit(&v)?,
                periods: int(&v, "periods")? as u32,
                from,
                to,
                as_of_day: frame.day(frame.as_of_ms),
            },
            frame,
        )),
        "attribute" => {
            let touches = int(&v, "touches")?;
            if !(1..=31).contains(&touches) {
                return Err(plan_datafusion_err!(
                    "analytics spec: \"touches\" must be 1 to 31, got {touches}"
                ));
            }
            let window = if boolean(&v, "same_day")? {
                AttrWindow::SameDay
            } else {
                AttrWindow::Days(int(&v, "window_days")? as u32)
            };
            let model = match text(&v, "model")? {
                "first" => Model::First,
                "last" => Model::Last,
                "linear" => Model::Linear,
                m => return Err(plan_datafusion_err!("analytics spec: unknown model {m}")),
            };
            Ok(Spec::Attribute(
                AttributeSpec {
                    touches: touches as usize,
                    window,
                    model,
                    from,
                    to,
                    include_direct: boolean(&v, "include_direct")?,
                    has_value: boolean(&v, "has_value")?,
                },
                frame,
            ))
        }
        "paths" => {
            let anchor = match text(&v, "anchor")? {
                "none" => Anchor::None,
                "start" => Anchor::Start,
                "end" => Anchor::End,
                a => return Err(plan_datafusion_err!("analytics spec: unknown anchor {a}")),
            };
            let depth = int(&v, "depth")?;
            if !(1..=100).contains(&depth) {
                return Err(plan_datafusion_err!(
                    "analytics spec: \"depth\" must be 1 to 100, got {depth}"
                ));
            }
            Ok(Spec::Paths(
                PathsSpec {
                    gap_ms: int(&v, "gap_ms")?,
                    from,
                    to,
                    anchor,
                    merge_repeats: boolean(&v, "merge_repeats")?,
                    depth: depth as u32,
                },
                frame,
            ))
        }
        other => Err(plan_datafusion_err!(
            "analytics spec: unknown statement {other} (expected funnel, retention, attribute, ltv or paths)"
        )),
    }
}
