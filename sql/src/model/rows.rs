//! Contact and event rows as stored: per-value validation and normalisation
//! (email, phones, gender), contact row encoding, column types for parsing
//! text input, and the row references error messages use.

use cohortdb_storage::catalog::Catalog;
use cohortdb_storage::codec::{decode_row, encode_row};
use cohortdb_storage::{DataType, Value};

use crate::error::{Result, SqlError};
use crate::model::layout::{ContactCol, ContactLayout, EventCol};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How a statement treats bad rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The first bad row fails the statement (default).
    Stop,
    /// Bad rows are skipped and counted (`COPY ... (ON_ERROR ignore)`).
    Ignore,
}

/// Describes a row for error messages: "row 3" or "line 3" for COPY.
#[derive(Debug, Clone, Copy)]
pub struct RowRef {
    /// 1-based row or line number.
    pub n: u64,
    /// True when rows are COPY lines.
    pub copy_line: bool,
}

impl std::fmt::Display for RowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.copy_line {
            write!(f, "COPY line {}", self.n)
        } else {
            write!(f, "row {}", self.n)
        }
    }
}

/// A value as error messages quote it.
pub fn show(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("'{s}'"),
        Value::Null => "NULL".into(),
        other => format!("{other:?}"),
    }
}

/// Checks and normalises a contact field value (email, phones, gender).
pub fn validate_contact_value(col: &str, v: &mut Value, at: RowRef) -> Result<()> {
    let Value::Str(s) = v else { return Ok(()) };
    match col {
        "email" => {
            let t = s.trim();
            if t.is_empty() {
                *v = Value::Null;
                return Ok(());
            }
            let ok = t.split_once('@').is_some_and(|(user, dom)| {
                !user.is_empty()
                    && dom.contains('.')
                    && !dom.starts_with('.')
                    && !dom.ends_with('.')
                    && !dom.contains('@')
                    && !t.chars().any(char::is_whitespace)
            });
            if !ok {
                return Err(SqlError::InvalidValue(format!(
                    "invalid value for column email in {at}: '{s}' is not an email address (expected name@domain.tld)"
                )));
            }
            *s = t.to_string();
        }
        "mobile_phone" | "home_phone" => {
            let t = s.trim();
            if t.is_empty() {
                *v = Value::Null;
                return Ok(());
            }
            let (plus, rest) = match t.strip_prefix('+') {
                Some(r) => (true, r),
                None => (false, t),
            };
            let digits: String = rest.chars().filter(|c| *c != ' ' && *c != '-').collect();
            if !digits.chars().all(|c| c.is_ascii_digit()) || !(6..=15).contains(&digits.len()) {
                return Err(SqlError::InvalidValue(format!(
                    "invalid value for column {col} in {at}: '{s}' is not a phone number (6 to 15 digits, optional leading +, spaces and dashes allowed)"
                )));
            }
            *s = if plus { format!("+{digits}") } else { digits };
        }
        "gender" => {
            let t = s.trim().to_ascii_lowercase();
            if !matches!(t.as_str(), "male" | "female" | "unknown") {
                return Err(SqlError::InvalidValue(format!(
                    "invalid value for column gender in {at}: '{s}' (allowed: male, female, unknown)"
                )));
            }
            *s = t;
        }
        _ => {}
    }
    Ok(())
}

fn field_is_set(fields: &[Value], cat: &Catalog, name: &str) -> bool {
    cat.contact_field(name)
        .map(|(id, _)| matches!(&fields[id as usize], Value::Str(s) if !s.is_empty()))
        .unwrap_or(false)
}

/// True when the contact is identified: name, mobile_phone or email set.
pub fn contact_is_identified(fields: &[Value], cat: &Catalog) -> bool {
    ["name", "mobile_phone", "email"]
        .iter()
        .any(|n| field_is_set(fields, cat, n))
}

/// Encodes a full-width field vector (a contact or a user-table row).
pub fn encode_fields(fields: &[Value]) -> Vec<u8> {
    encode_row(fields.iter().enumerate().map(|(i, v)| (i as u32, v)))
}

/// Decodes a stored contact into a full-width field vector.
pub fn decode_contact(bytes: &[u8], layout: &ContactLayout) -> Vec<Value> {
    decode_row(bytes, layout.field_count)
}

/// Encodes a contact's fields.
pub fn encode_contact(fields: &[Value]) -> Vec<u8> {
    encode_fields(fields)
}

/// Column types of the `events` layout, for parsing text input.
pub fn event_col_type(col: EventCol) -> DataType {
    match col {
        EventCol::ContactId => DataType::Bigint,
        EventCol::EventDate => DataType::Timestamptz,
        EventCol::EventDay => DataType::Date,
        EventCol::Event | EventCol::EventAlias | EventCol::ChannelId => DataType::Varchar,
        EventCol::Prop(_, t) => t,
    }
}

/// Column types of the contacts layout, for parsing text input.
pub fn contact_col_type(col: ContactCol) -> DataType {
    match col {
        ContactCol::Id => DataType::Bigint,
        ContactCol::Field(_, t) => t,
        ContactCol::IsIdentified => DataType::Boolean,
    }
}
