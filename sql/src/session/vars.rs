//! Session variables: `SET` (including `SET TIME ZONE`, which rebuilds the
//! session's DataFusion context) and `SHOW`.

use std::sync::Arc;

use chrono_tz::Tz;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Set, Value as SqlValue};

use super::{Outcome, Session};
use crate::error::{Result, SqlError};

impl Session {
    /// `SHOW name`: one text column named as the setting.
    pub(super) fn show(&self, name: &str) -> Result<Outcome> {
        let lname = crate::runtime::settings::normalize(name);
        if lname == "all" {
            return Err(SqlError::Unsupported(
                "SHOW ALL is not supported; query pg_settings".into(),
            ));
        }
        let value = self.setting(&lname).ok_or_else(|| {
            SqlError::UndefinedObject(format!("unrecognized configuration parameter \"{name}\""))
        })?;
        let df = self
            .context()
            .read_batch(single_text_batch(&lname, &value)?)?;
        Ok(Outcome::Rows(df))
    }

    /// `SET`: session settings, the time zone (which rebuilds the session's
    /// DataFusion context), and the ones clients track (ParameterStatus).
    pub(super) fn set(&self, set: &Set) -> Result<Outcome> {
        let (name, value) = match set {
            Set::SetTimeZone { value, .. } => ("timezone".to_string(), sql_value_text(value)),
            Set::SingleAssignment {
                variable, values, ..
            } => (
                variable.to_string().to_ascii_lowercase(),
                values
                    .iter()
                    .map(sql_value_text)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Set::SetNames { charset_name, .. } => {
                ("client_encoding".into(), charset_name.value.clone())
            }
            Set::SetTransaction { .. } | Set::SetSessionParam(_) | Set::SetRole { .. } => {
                return Ok(Outcome::Command {
                    tag: "SET".into(),
                    rows: None,
                })
            }
            other => {
                return Err(SqlError::Unsupported(format!(
                    "unsupported SET form: {other}"
                )))
            }
        };
        let name = if name == "time zone" {
            "timezone".to_string()
        } else {
            name
        };
        if name == "timezone" {
            let v = if value.eq_ignore_ascii_case("local") || value.eq_ignore_ascii_case("default")
            {
                self.engine.timezone().name().to_string()
            } else {
                value.clone()
            };
            let tz: Tz = parse_tz(&v).ok_or_else(|| {
                SqlError::InvalidValue(format!("invalid value for parameter \"TimeZone\": \"{v}\" (use an IANA name such as Asia/Shanghai or UTC)"))
            })?;
            *self.tz.lock().expect("tz") = tz;
            *self.ctx.write().expect("context lock") =
                self.engine
                    .session_context(tz, &self.settings, &self.interrupt, &self.mask);
            crate::pgcompat::bi_functions::register_user(&self.context(), &self.user());
            return Ok(Outcome::ParameterChanged {
                tag: "SET".into(),
                name: "TimeZone".into(),
                value: tz.name().to_string(),
            });
        }
        validate_setting(&name, &value)?;
        self.settings
            .lock()
            .expect("settings")
            .insert(name.clone(), value.clone());
        let reported = match name.as_str() {
            "application_name" => Some("application_name"),
            "datestyle" => Some("DateStyle"),
            "client_encoding" => Some("client_encoding"),
            "intervalstyle" => Some("IntervalStyle"),
            _ => None,
        };
        Ok(match reported {
            Some(n) => Outcome::ParameterChanged {
                tag: "SET".into(),
                name: n.into(),
                value,
            },
            None => Outcome::Command {
                tag: "SET".into(),
                rows: None,
            },
        })
    }
}

/// Refuses a value cohortdb cannot apply for a setting it interprets (22023).
fn validate_setting(name: &str, value: &str) -> Result<()> {
    let ok = match name {
        "statement_timeout" | "client_connection_check_interval" => {
            value.trim_matches('\'').trim() == "0"
                || crate::runtime::interrupt::parse_timeout(value).is_some()
        }
        "max_query_memory" => crate::runtime::limits::parse_memory(value).is_some(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(SqlError::InvalidValue(format!(
            "invalid value for parameter \"{name}\": \"{value}\" ({})",
            match name {
                "statement_timeout" | "client_connection_check_interval" => {
                    "use milliseconds or a number with ms, s, min, h or d"
                }
                _ => "use MB, or a number with kB, MB, GB or TB; 0 means no limit",
            }
        )))
    }
}

fn sql_value_text(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        SqlExpr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

fn parse_tz(v: &str) -> Option<Tz> {
    let t = v.trim();
    if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("gmt") || t == "Z" {
        return Some(Tz::UTC);
    }
    t.parse::<Tz>().ok()
}

fn single_text_batch(name: &str, value: &str) -> Result<datafusion::arrow::array::RecordBatch> {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{DataType as A, Field, Schema};
    let schema = Arc::new(Schema::new(vec![Field::new(name, A::Utf8, false)]));
    Ok(datafusion::arrow::array::RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(vec![value]))],
    )?)
}
