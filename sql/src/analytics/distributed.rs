//! The SQL form of an analytics statement: the same statement as ordinary
//! SQL over `events` and `contacts` relations with the columns of the
//! exported Parquet (`cohortdb export`), using the aggregate functions of
//! `cohortdb_analytics::udaf`. Any DataFusion engine with those functions
//! registered (the server itself, plain DataFusion over the Parquet files,
//! a Ballista cluster) returns exactly the server's rows.
//!
//! Supported: FUNNEL (without BY), RETENTION, ATTRIBUTE and LTV (INITIAL
//! EVENT, without GROUP BY), with WHERE (a
//! `contact_view` predicate, read from `contacts`), IN GROUP (the group's
//! column in `contacts`) and AS OF. Predicates are copied as written, so
//! they may use any `events` column (not `event_alias`, which the export
//! leaves out).

use chrono_tz::Tz;
use cohortdb_analytics::attribute::{AttrWindow, Model};
use cohortdb_analytics::funnel::Window;
use cohortdb_analytics::Unit;

use super::parse::{self, AnalyticsStatement, Body, Piece};
use super::{frame, label_of};
use crate::error::{Result, SqlError};
use crate::model::convert::date_from_days;

fn day_text(d: i32) -> String {
    date_from_days(d).format("%Y-%m-%d").to_string()
}

fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The SQL form of the one analytics statement in `text` (session time zone `tz`).
pub fn sql_form_of_text(text: &str, tz: &Tz) -> Result<String> {
    let pieces = parse::split(text)?.unwrap_or_default();
    match pieces.as_slice() {
        [Piece::Analytics {
            explain: false,
            stmt,
        }] => sql_form(stmt, tz),
        _ => Err(SqlError::InvalidValue(
            "expected one FUNNEL, RETENTION, ATTRIBUTE, LTV or PATHS statement".into(),
        )),
    }
}

/// The SQL form of `stmt` in time zone `tz`.
pub fn sql_form(stmt: &AnalyticsStatement, tz: &Tz) -> Result<String> {
    if stmt.from_param.is_some() || stmt.to_param.is_some() {
        return Err(SqlError::Unsupported(
            "the SQL form needs FROM and TO as dates, not parameters".into(),
        ));
    }
    if stmt.tail.is_some() {
        return Err(SqlError::Unsupported(
            "the SQL form does not take a trailing ORDER BY / LIMIT; add it around the form".into(),
        ));
    }
    let fr = frame(stmt, tz)?;
    let mut spec = format!(
        "\"from\": \"{}\", \"to\": \"{}\", \"scan_from\": \"{}\", \"scan_to\": \"{}\", \"as_of_ms\": {}, \"time_zone\": \"{}\"",
        day_text(fr.from),
        day_text(fr.to),
        day_text(fr.scan.0),
        day_text(fr.scan.1),
        fr.as_of_ms,
        tz.name()
    );
    let unit_name = |u: &Unit| match u {
        Unit::Day => "day",
        Unit::Week => "week",
        Unit::Month => "month",
    };
    // ATTRIBUTE and LTV pass VALUE before the conditions.
    let mut value_arg: Option<String> = None;
    let (conds, outer) = match &stmt.body {
        Body::Funnel {
            steps,
            window,
            strict,
            by,
        } => {
            if by.is_some() {
                return Err(SqlError::Unsupported(
                    "the SQL form of FUNNEL … BY is not available yet; run it on the server".into(),
                ));
            }
            let w = match window {
                Window::Hours(h) => format!("\"window_hours\": {h}"),
                Window::Days(d) => format!("\"window_days\": {d}"),
            };
            spec = format!(
                "{{\"statement\": \"funnel\", \"steps\": {}, {w}, \"strict\": {strict}, {spec}}}",
                steps.len()
            );
            let labels: String = steps
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    format!(
                        " WHEN {} THEN {}",
                        k + 1,
                        quote_str(&label_of(s, "step", k + 1))
                    )
                })
                .collect();
            let conds: Vec<String> = steps.iter().map(|s| format!("({})", s.expr)).collect();
            let outer = format!(
                "SELECT r['step'] AS step, CASE r['step']{labels} END AS step_name, \
                 r['contacts'] AS contacts, r['conversion_rate'] AS conversion_rate, \
                 r['overall_rate'] AS overall_rate, r['median_seconds'] AS median_seconds, \
                 r['avg_seconds'] AS avg_seconds"
            );
            (conds, (outer, "step"))
        }
        Body::Retention {
            initial,
            ret,
            unit,
            periods,
            churn,
        } => {
            let u = unit_name(unit);
            spec = format!(
                "{{\"statement\": \"retention\", \"unit\": \"{u}\", \"periods\": {periods}, \"churn\": {churn}, {spec}}}"
            );
            let outer = "SELECT r['cohort'] AS cohort, r['cohort_contacts'] AS cohort_contacts, \
                 r['period'] AS period, r['contacts'] AS contacts, r['rate'] AS rate"
                .to_string();
            (
                vec![format!("({initial})"), format!("({ret})")],
                (outer, "cohort, period"),
            )
        }
        Body::Attribute {
            target,
            value,
            touches,
            window,
            model,
            include_direct,
        } => {
            let w = match window {
                AttrWindow::SameDay => "\"same_day\": true".to_string(),
                AttrWindow::Days(n) => format!("\"window_days\": {n}"),
            };
            let m = match model {
                Model::First => "first",
                Model::Last => "last",
                Model::Linear => "linear",
            };
            spec = format!(
                "{{\"statement\": \"attribute\", \"touches\": {}, {w}, \"model\": \"{m}\", \"include_direct\": {include_direct}, \"has_value\": {}, {spec}}}",
                touches.len(),
                value.is_some()
            );
            value_arg = Some(match value {
                Some(v) => format!("({v})"),
                None => "CAST(NULL AS DOUBLE)".to_string(),
            });
            let labels: String = touches
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    format!(
                        " WHEN {} THEN {}",
                        k + 1,
                        quote_str(&label_of(t, "touch", k + 1))
                    )
                })
                .collect();
            let outer = format!(
                "SELECT CASE r['touch']{labels} ELSE 'direct' END AS touch, r['clicks'] AS clicks, \
                 r['effective_clicks'] AS effective_clicks, r['effective_rate'] AS effective_rate, \
                 r['conversions'] AS conversions, r['value'] AS value, r['contribution'] AS contribution, \
                 coalesce(r['touch'], 2147483647) AS touch_order"
            );
            let mut conds = vec![format!("({target})")];
            conds.extend(touches.iter().map(|t| format!("({})", t.expr)));
            (conds, (outer, "touch_order"))
        }
        Body::Ltv {
            initial,
            revenue,
            value,
            unit,
            periods,
            group_by,
        } => {
            let parse::LtvInitial::Event(initial) = initial else {
                return Err(SqlError::Unsupported(
                    "the SQL form of LTV INITIAL ATTRIBUTE is not available yet; run it on the server"
                        .into(),
                ));
            };
            if !group_by.is_empty() {
                return Err(SqlError::Unsupported(
                    "the SQL form of LTV … GROUP BY is not available yet; run it on the server"
                        .into(),
                ));
            }
            spec = format!(
                "{{\"statement\": \"ltv\", \"unit\": \"{}\", \"periods\": {periods}, {spec}}}",
                unit_name(unit)
            );
            value_arg = Some(format!("({value})"));
            let outer = "SELECT r['cohort'] AS cohort, r['initial_contacts'] AS initial_contacts, \
                 r['paying_contacts'] AS paying_contacts, r['period'] AS period, \
                 r['revenue'] AS revenue, r['arpu'] AS arpu, r['arppu'] AS arppu, \
                 r['new_payers'] AS new_payers"
                .to_string();
            (
                vec![format!("({initial})"), format!("({revenue})")],
                (outer, "cohort NULLS LAST, period"),
            )
        }
        Body::Paths { .. } => {
            return Err(SqlError::Unsupported(
                "the SQL form of PATHS is not available yet; run it on the server".into(),
            ))
        }
    };
    let name = stmt.kind.name().to_ascii_lowercase();
    let spec = quote_str(&spec);
    // event_day is the server's calendar day; a day of any session time
    // zone lies within one day of it.
    let mut filter = format!(
        "event_day BETWEEN DATE '{}' AND DATE '{}'",
        day_text(fr.scan.0 - 1),
        day_text(fr.scan.1 + 1)
    );
    let mut contact_preds: Vec<String> = Vec::new();
    if let Some(w) = &stmt.filter {
        contact_preds.push(format!("({w})"));
    }
    if let Some(g) = &stmt.group {
        contact_preds.push(format!("{} IS TRUE", quote_ident(g)));
    }
    if !contact_preds.is_empty() {
        filter.push_str(&format!(
            " AND contact_id IN (SELECT id FROM contacts WHERE {})",
            contact_preds.join(" AND ")
        ));
    }
    let (outer, order) = outer;
    let args = match value_arg {
        Some(v) => format!("{v}, {}", conds.join(", ")),
        None => conds.join(", "),
    };
    let sql = format!(
        "{outer} FROM (SELECT unnest(cohort_{name}_merge({spec}, c)) AS r FROM (\
         SELECT cohort_{name}({spec}, event_date, {args}) AS c FROM events \
         WHERE {filter} GROUP BY contact_id))"
    );
    // ATTRIBUTE orders by a helper column that the result leaves out.
    Ok(if order == "touch_order" {
        format!(
            "SELECT touch, clicks, effective_clicks, effective_rate, conversions, value, contribution \
             FROM ({sql}) ORDER BY touch_order"
        )
    } else {
        format!("{sql} ORDER BY {order}")
    })
}
