//! The SQL form of an analytics statement: the same statement as ordinary
//! SQL over `events` and `contacts` relations with the columns of the
//! exported Parquet (`cohortdb export`), using the aggregate functions of
//! `cohortdb_analytics::udaf`. Any DataFusion engine with those functions
//! registered (the server itself, plain DataFusion over the Parquet files,
//! a Ballista cluster) returns exactly the server's rows.
//!
//! Every statement and clause: FUNNEL (with `BY`), RETENTION, ATTRIBUTE,
//! LTV (`GROUP BY`, INITIAL EVENT or ATTRIBUTE), PATHS (with `BY`), WHERE
//! (a `contact_view` predicate, read from `contacts`), IN GROUP (the
//! group's column in `contacts`) and AS OF. Predicates are copied as
//! written, so they may use any `events` column (not `event_alias`, which
//! the export leaves out).
//!
//! `BY` / `GROUP BY` columns resolve as on the server (an `events` column
//! first, else a `contacts` column; `contact.x` only `contacts`) when the
//! export's columns are given ([`export_columns`]); without them a bare
//! name is an `events` column. Contact columns reach the events through a
//! `LEFT JOIN` of `contacts` under private names (`__by_N`), so they never
//! shadow an event column a predicate reads.

use chrono_tz::Tz;
use cohortdb_analytics::attribute::{AttrWindow, Model};
use cohortdb_analytics::funnel::Window;
use cohortdb_analytics::Unit;

use std::path::Path;

use cohortdb_analytics::paths::Anchor;

use super::parse::{self, AnalyticsStatement, Body, ByColumn, Piece};
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

/// Column names of an export's `events` and `contacts` tables (to resolve
/// `BY` columns as the server does).
#[derive(Debug, Clone, Default)]
pub struct Columns {
    /// `events` columns.
    pub events: Vec<String>,
    /// `contacts` columns.
    pub contacts: Vec<String>,
}

fn parquet_columns(file: &Path) -> Result<Vec<String>> {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let f = std::fs::File::open(file)
        .map_err(|e| SqlError::Io(format!("cannot open {}: {e}", file.display())))?;
    let r = SerializedFileReader::new(f)
        .map_err(|e| SqlError::Io(format!("cannot read {}: {e}", file.display())))?;
    let schema = r.metadata().file_metadata().schema_descr();
    Ok(schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect())
}

/// The columns of the export in `dir` (`cohortdb export`): read from the
/// Parquet footers of `contacts/` and one day of `events/`.
pub fn export_columns(dir: &Path) -> Result<Columns> {
    let contacts = parquet_columns(&dir.join("contacts").join("part-0.parquet"))?;
    let days = std::fs::read_dir(dir.join("events"))
        .map_err(|e| SqlError::Io(format!("cannot read {}/events: {e}", dir.display())))?;
    let mut events = None;
    for d in days.flatten() {
        let f = d.path().join("part-0.parquet");
        if f.is_file() {
            events = Some(parquet_columns(&f)?);
            break;
        }
    }
    let Some(events) = events else {
        return Err(SqlError::InvalidValue(format!(
            "{} holds no exported day of events",
            dir.display()
        )));
    };
    Ok(Columns { events, contacts })
}

/// Where a `BY` column is read.
enum BySide {
    Event,
    Contact,
}

fn resolve_by(b: &ByColumn, columns: Option<&Columns>, event_allowed: bool) -> Result<BySide> {
    if b.contact || !event_allowed {
        if let Some(c) = columns {
            if !c.contacts.iter().any(|n| n == &b.name) {
                return Err(SqlError::UndefinedColumn(format!(
                    "column \"{}\" does not exist in contact_view",
                    b.name
                )));
            }
        }
        return Ok(BySide::Contact);
    }
    match columns {
        None => Ok(BySide::Event),
        Some(c) if c.events.iter().any(|n| n == &b.name) => Ok(BySide::Event),
        Some(c) if c.contacts.iter().any(|n| n == &b.name) => Ok(BySide::Contact),
        Some(_) => Err(SqlError::UndefinedColumn(format!(
            "column \"{}\" does not exist in event_view or contact_view",
            b.name
        ))),
    }
}

/// The SQL form of the one analytics statement in `text` (session time
/// zone `tz`; `columns`: the export's, to resolve `BY` columns).
pub fn sql_form_of_text(text: &str, tz: &Tz, columns: Option<&Columns>) -> Result<String> {
    let pieces = parse::split(text)?.unwrap_or_default();
    match pieces.as_slice() {
        [Piece::Analytics {
            explain: false,
            stmt,
        }] => sql_form(stmt, tz, columns),
        _ => Err(SqlError::InvalidValue(
            "expected one FUNNEL, RETENTION, ATTRIBUTE, LTV or PATHS statement".into(),
        )),
    }
}

/// The SQL form of `stmt` in time zone `tz` (`columns`: the export's, to
/// resolve `BY` columns; see the module docs).
pub fn sql_form(stmt: &AnalyticsStatement, tz: &Tz, columns: Option<&Columns>) -> Result<String> {
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
    // Arguments before the conditions: VALUE, the key STRUCT, the initial time.
    let mut value_arg: Option<String> = None;
    // BY columns: (output name, expression), in BY order.
    let mut key: Vec<(String, String)> = Vec::new();
    // Contact columns joined under private names.
    let mut joined: Vec<String> = Vec::new();
    let mut initial_attr: Option<String> = None;
    let mut add_by = |bys: &[ByColumn], event_allowed: bool| -> Result<()> {
        for b in bys {
            let expr = match resolve_by(b, columns, event_allowed)? {
                BySide::Event => quote_ident(&b.name),
                BySide::Contact => {
                    joined.push(b.name.clone());
                    quote_ident(&format!("__by_{}", joined.len()))
                }
            };
            key.push((b.name.clone(), expr));
        }
        Ok(())
    };
    let (conds, outer, order) = match &stmt.body {
        Body::Funnel {
            steps,
            window,
            strict,
            by,
        } => {
            add_by(by.as_slice(), true)?;
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
                "r['step'] AS step, CASE r['step']{labels} END AS step_name, \
                 r['contacts'] AS contacts, r['conversion_rate'] AS conversion_rate, \
                 r['overall_rate'] AS overall_rate, r['median_seconds'] AS median_seconds, \
                 r['avg_seconds'] AS avg_seconds"
            );
            (conds, outer, "step".to_string())
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
            let outer = "r['cohort'] AS cohort, r['cohort_contacts'] AS cohort_contacts, \
                 r['period'] AS period, r['contacts'] AS contacts, r['rate'] AS rate"
                .to_string();
            (
                vec![format!("({initial})"), format!("({ret})")],
                outer,
                "cohort, period".to_string(),
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
                "CASE r['touch']{labels} ELSE 'direct' END AS touch, r['clicks'] AS clicks, \
                 r['effective_clicks'] AS effective_clicks, r['effective_rate'] AS effective_rate, \
                 r['conversions'] AS conversions, r['value'] AS value, r['contribution'] AS contribution, \
                 coalesce(r['touch'], 2147483647) AS touch_order"
            );
            let mut conds = vec![format!("({target})")];
            conds.extend(touches.iter().map(|t| format!("({})", t.expr)));
            (conds, outer, "touch_order".to_string())
        }
        Body::Ltv {
            initial,
            revenue,
            value,
            unit,
            periods,
            group_by,
        } => {
            let initial_cond = match initial {
                parse::LtvInitial::Event(e) => {
                    add_by(group_by, true)?;
                    format!("({e})")
                }
                parse::LtvInitial::Attribute(a) => {
                    // GROUP BY contact columns only, as on the server
                    add_by(group_by, false)?;
                    initial_attr = Some(a.clone());
                    "FALSE".to_string()
                }
            };
            spec = format!(
                "{{\"statement\": \"ltv\", \"unit\": \"{}\", \"periods\": {periods}, {spec}}}",
                unit_name(unit)
            );
            value_arg = Some(format!("({value})"));
            let outer = "r['cohort'] AS cohort, r['initial_contacts'] AS initial_contacts, \
                 r['paying_contacts'] AS paying_contacts, r['period'] AS period, \
                 r['revenue'] AS revenue, r['arpu'] AS arpu, r['arppu'] AS arppu, \
                 r['new_payers'] AS new_payers"
                .to_string();
            (
                vec![initial_cond, format!("({revenue})")],
                outer,
                "cohort NULLS LAST, period".to_string(),
            )
        }
        Body::Paths {
            events,
            anchor,
            anchor_expr,
            gap_ms,
            by,
            merge_repeats,
            depth,
        } => {
            let a = match anchor {
                Anchor::None => "none",
                Anchor::Start => "start",
                Anchor::End => "end",
            };
            spec = format!(
                "{{\"statement\": \"paths\", \"gap_ms\": {gap_ms}, \"anchor\": \"{a}\", \"merge_repeats\": {merge_repeats}, \"depth\": {depth}, {spec}}}"
            );
            // The node: the event code, with BY its value too.
            key.push(("event".into(), "event".into()));
            if let Some(b) = by {
                key.push(("by".into(), quote_ident(b)));
            }
            let anchored = |want: Anchor| match (anchor_expr, *anchor == want) {
                (Some(e), true) => format!("({e})"),
                _ => "FALSE".to_string(),
            };
            let conds = vec![
                format!("({events})"),
                anchored(Anchor::Start),
                anchored(Anchor::End),
            ];
            let outer = "r['level'] AS level, r['node'] AS node, r['next_node'] AS next_node, \
                 r['sessions'] AS sessions"
                .to_string();
            (
                conds,
                outer,
                "level, sessions DESC, node, next_node NULLS LAST".to_string(),
            )
        }
    };
    let paths = matches!(stmt.body, Body::Paths { .. });
    let name = stmt.kind.name().to_ascii_lowercase();
    let spec = quote_str(&spec);
    // event_day is the server's calendar day; a day of any session time
    // zone lies within one day of it.
    let days = format!(
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
    // The aggregate's arguments.
    let mut args = vec![spec.clone(), "event_date".to_string()];
    args.extend(value_arg);
    if !key.is_empty() {
        let fields: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, (_, e))| format!("'k{}', {e}", i + 1))
            .collect();
        args.push(format!("named_struct({})", fields.join(", ")));
    }
    if initial_attr.is_some() {
        args.push("\"__initial\"".to_string());
    }
    args.extend(conds);
    let contact_cols: String = joined
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                ", {} AS {}",
                quote_ident(c),
                quote_ident(&format!("__by_{}", i + 1))
            )
        })
        .collect();
    let source = match &initial_attr {
        // INITIAL ATTRIBUTE: every contact with the attribute, with or without events.
        Some(a) => {
            let mut preds = vec![format!("{} IS NOT NULL", quote_ident(a))];
            preds.extend(contact_preds);
            format!(
                "(SELECT id AS \"__contact_id\", {} AS \"__initial\"{contact_cols} FROM contacts WHERE {}) AS \"__by\" \
                 LEFT JOIN events ON events.contact_id = \"__by\".\"__contact_id\" AND events.{days} \
                 GROUP BY \"__by\".\"__contact_id\"",
                quote_ident(a),
                preds.join(" AND ")
            )
        }
        None => {
            let join = if joined.is_empty() {
                String::new()
            } else {
                format!(
                    " LEFT JOIN (SELECT id AS \"__contact_id\"{contact_cols} FROM contacts) AS \"__by\" \
                     ON \"__by\".\"__contact_id\" = events.contact_id"
                )
            };
            let mut filter = days;
            if !contact_preds.is_empty() {
                filter.push_str(&format!(
                    " AND contact_id IN (SELECT id FROM contacts WHERE {})",
                    contact_preds.join(" AND ")
                ));
            }
            format!("events{join} WHERE {filter} GROUP BY contact_id")
        }
    };
    let (key_out, key_order) = if paths {
        (String::new(), String::new())
    } else {
        (
            key.iter()
                .enumerate()
                .map(|(i, (n, _))| format!("r['k{}'] AS {}, ", i + 1, quote_ident(n)))
                .collect::<String>(),
            key.iter()
                .map(|(n, _)| format!("{} NULLS LAST, ", quote_ident(n)))
                .collect::<String>(),
        )
    };
    let sql = format!(
        "SELECT {key_out}{outer} FROM (SELECT unnest(cohort_{name}_merge({spec}, c)) AS r FROM (\
         SELECT cohort_{name}({}) AS c FROM {source}))",
        args.join(", ")
    );
    // ATTRIBUTE orders by a helper column that the result leaves out.
    Ok(if order == "touch_order" {
        format!(
            "SELECT touch, clicks, effective_clicks, effective_rate, conversions, value, contribution \
             FROM ({sql}) ORDER BY touch_order"
        )
    } else {
        format!("{sql} ORDER BY {key_order}{order}")
    })
}
