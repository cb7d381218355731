//! The SQL form of an analytics statement: the same statement as ordinary
//! SQL over `events` and `contacts` relations with the columns of the
//! exported Parquet (`cohortdb export`), using the aggregate functions of
//! `cohortdb_analytics::udaf`. Any DataFusion engine with those functions
//! registered (the server itself, plain DataFusion over the Parquet files,
//! a Ballista cluster) returns exactly the server's rows.
//!
//! Supported: FUNNEL (without BY) and RETENTION, with WHERE (a
//! `contact_view` predicate, read from `contacts`), IN GROUP (the group's
//! column in `contacts`) and AS OF. Predicates are copied as written, so
//! they may use any `events` column (not `event_alias`, which the export
//! leaves out).

use chrono_tz::Tz;
use cohortdb_analytics::funnel::Window;
use cohortdb_analytics::Unit;

use super::parse::{self, AnalyticsStatement, Body, Kind, Piece};
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
            let u = match unit {
                Unit::Day => "day",
                Unit::Week => "week",
                Unit::Month => "month",
            };
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
        Body::Attribute { .. } | Body::Ltv { .. } | Body::Paths { .. } => {
            return Err(SqlError::Unsupported(format!(
                "the SQL form of {} is not available yet; run it on the server",
                stmt.kind.name()
            )))
        }
    };
    let name = match stmt.kind {
        Kind::Funnel => "funnel",
        Kind::Retention => "retention",
        Kind::Attribute | Kind::Ltv | Kind::Paths => unreachable!("refused above"),
    };
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
    Ok(format!(
        "{outer} FROM (SELECT unnest(cohort_{name}_merge({spec}, c)) AS r FROM (\
         SELECT cohort_{name}({spec}, event_date, {conds}) AS c FROM events \
         WHERE {filter} GROUP BY contact_id)) ORDER BY {order}",
        conds = conds.join(", ")
    ))
}
