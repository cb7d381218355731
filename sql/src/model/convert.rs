//! Conversions between storage values, Arrow arrays and Postgres text.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use cohortdb_storage::{DataType, Value, ValueRef};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{
    DataType as ArrowType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt32Type, UInt64Type,
};

/// Time zone attached to every TIMESTAMPTZ column.
pub const TS_TZ: &str = "+00:00";

/// The Arrow type of a column type (timestamps tagged UTC).
pub fn arrow_type(t: DataType) -> ArrowType {
    arrow_type_in(t, TS_TZ)
}

/// The Arrow type of a column type; TIMESTAMPTZ carries `tz`, the session time
/// zone, so text without an offset is read in it (as Postgres does).
pub fn arrow_type_in(t: DataType, tz: &str) -> ArrowType {
    match t {
        DataType::Varchar => ArrowType::Utf8,
        DataType::Bigint => ArrowType::Int64,
        DataType::Double => ArrowType::Float64,
        DataType::Boolean => ArrowType::Boolean,
        DataType::Date => ArrowType::Date32,
        DataType::Timestamptz => ArrowType::Timestamp(TimeUnit::Millisecond, Some(tz.into())),
    }
}

/// Parses Postgres text input for a column of type `t`. `tz` interprets
/// timestamps written without an offset. The error says what was expected.
pub fn parse_text(t: DataType, s: &str, tz: &Tz) -> Result<Value, String> {
    let st = s.trim();
    match t {
        DataType::Varchar => Ok(Value::Str(s.to_string())),
        DataType::Bigint => st
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("invalid input syntax for type bigint: \"{s}\"")),
        DataType::Double => match st.parse::<f64>() {
            Ok(v) => Ok(Value::Float(v)),
            Err(_) => match st.to_ascii_lowercase().as_str() {
                "nan" => Ok(Value::Float(f64::NAN)),
                "infinity" | "inf" => Ok(Value::Float(f64::INFINITY)),
                "-infinity" | "-inf" => Ok(Value::Float(f64::NEG_INFINITY)),
                _ => Err(format!(
                    "invalid input syntax for type double precision: \"{s}\""
                )),
            },
        },
        DataType::Boolean => match st.to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "yes" | "y" | "on" => Ok(Value::Bool(true)),
            "f" | "false" | "0" | "no" | "n" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("invalid input syntax for type boolean: \"{s}\"")),
        },
        DataType::Date => parse_date(st)
            .map(Value::Date)
            .ok_or_else(|| format!("invalid input syntax for type date: \"{s}\"")),
        DataType::Timestamptz => fast_timestamp_ms(st)
            .or_else(|| parse_timestamp_ms(st, tz))
            .map(Value::Ts)
            .ok_or_else(|| {
                format!("invalid input syntax for type timestamp with time zone: \"{s}\"")
            }),
    }
}

/// Days since the epoch of `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<i32> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(days_from_date(d))
}

/// Days since 1970-01-01.
pub fn days_from_date(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// The date of a day number.
pub fn date_from_days(days: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(days as i64)
}

/// Parses a timestamp with optional offset (`Z`, `+08`, `+08:00`, `+0800`);
/// without one it is local time in `tz`. A bare date is midnight.
pub fn parse_timestamp_ms(s: &str, tz: &Tz) -> Option<i64> {
    let s = s.trim();
    let norm = if s.len() > 10 && s.as_bytes()[10] == b'T' {
        let mut v = s.to_string();
        v.replace_range(10..11, " ");
        v
    } else {
        s.to_string()
    };
    let norm = norm.trim_end_matches(" UTC").to_string();
    if let Some(stripped) = norm.strip_suffix('Z') {
        let ndt = parse_naive(stripped)?;
        return Some(ndt.and_utc().timestamp_millis());
    }
    // offset forms: +HH, +HH:MM, +HHMM at the end
    if norm.len() > 19 {
        let bytes = norm.as_bytes();
        if let Some(pos) = norm[19..].find(['+', '-']).map(|p| p + 19) {
            let (dt, off) = norm.split_at(pos);
            let _ = bytes;
            let off_full = match off.len() {
                3 => format!("{off}:00"),
                5 if !off.contains(':') => format!("{}:{}", &off[..3], &off[3..]),
                _ => off.to_string(),
            };
            let candidate = format!("{} {}", dt.trim(), off_full);
            for fmt in ["%Y-%m-%d %H:%M:%S%.f %:z", "%Y-%m-%d %H:%M:%S %:z"] {
                if let Ok(d) = DateTime::parse_from_str(&candidate, fmt) {
                    return Some(d.timestamp_millis());
                }
            }
            return None;
        }
    }
    let ndt = parse_naive(&norm)?;
    tz.from_local_datetime(&ndt)
        .earliest()
        .map(|d| d.timestamp_millis())
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(d);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[inline]
fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Fast path for `YYYY-MM-DD[ T]HH:MM:SS[.fff…](Z|±HH[[:]MM])`: milliseconds,
/// or `None` when the text has another shape or no offset (use [`parse_timestamp_ms`]).
pub fn fast_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b' ' && b[10] != b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, se) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&mo) || d == 0 || d > 31 || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &b[start..i];
        if frac.is_empty() {
            return None;
        }
        for (k, c) in frac.iter().take(3).enumerate() {
            ms += ((c - b'0') as i64) * [100, 10, 1][k];
        }
    }
    let off_secs: i64 = match b.get(i)? {
        b'Z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') => {
            let rest = &b[i + 1..];
            let (hh, mm) = match rest.len() {
                2 => (digits(rest)?, 0),
                4 => (digits(&rest[0..2])?, digits(&rest[2..4])?),
                5 if rest[2] == b':' => (digits(&rest[0..2])?, digits(&rest[3..5])?),
                _ => return None,
            };
            let v = (hh as i64) * 3600 + (mm as i64) * 60;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    if d > days_in_month(y as i64, mo) {
        return None;
    }
    let days = days_from_civil(y as i64, mo, d);
    let secs = days * 86_400 + (h as i64) * 3600 + (mi as i64) * 60 + se as i64 - off_secs;
    Some(secs * 1000 + ms)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// Formats a timestamp the way Postgres prints `timestamptz` in UTC.
pub fn format_ts_utc(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(d) => {
            if ms.rem_euclid(1000) == 0 {
                d.format("%Y-%m-%d %H:%M:%S+00").to_string()
            } else {
                d.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string()
            }
        }
        None => ms.to_string(),
    }
}

/// Reads row `i` of an Arrow array as a value of column type `t`.
/// Errors name what does not fit (the caller adds row and column).
pub fn value_at(array: &dyn Array, i: usize, t: DataType) -> Result<Value, String> {
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    let v = match array.data_type() {
        ArrowType::Utf8 => Value::Str(array.as_string::<i32>().value(i).to_string()),
        ArrowType::LargeUtf8 => Value::Str(array.as_string::<i64>().value(i).to_string()),
        ArrowType::Utf8View => Value::Str(array.as_string_view().value(i).to_string()),
        ArrowType::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(i)),
        ArrowType::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(i) as i64),
        ArrowType::Int16 => Value::Int(array.as_primitive::<Int16Type>().value(i) as i64),
        ArrowType::UInt32 => Value::Int(array.as_primitive::<UInt32Type>().value(i) as i64),
        ArrowType::UInt64 => Value::Int(array.as_primitive::<UInt64Type>().value(i) as i64),
        ArrowType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(i)),
        ArrowType::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(i) as f64),
        ArrowType::Boolean => Value::Bool(array.as_boolean().value(i)),
        ArrowType::Date32 => Value::Date(array.as_primitive::<Date32Type>().value(i)),
        ArrowType::Timestamp(unit, _) => Value::Ts(match unit {
            TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(i),
            TimeUnit::Microsecond => {
                array.as_primitive::<TimestampMicrosecondType>().value(i) / 1000
            }
            TimeUnit::Nanosecond => {
                array.as_primitive::<TimestampNanosecondType>().value(i) / 1_000_000
            }
            TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(i) * 1000,
        }),
        other => return Err(format!("values of type {other} are not supported here")),
    };
    coerce(v, t)
}

/// Converts a value to column type `t` (text is parsed; numbers widen).
pub fn coerce(v: Value, t: DataType) -> Result<Value, String> {
    Ok(match (v, t) {
        (Value::Null, _) => Value::Null,
        (Value::Str(s), DataType::Varchar) => Value::Str(s),
        (Value::Str(s), t) => return parse_text(t, &s, &Tz::UTC),
        (Value::Int(i), DataType::Bigint) => Value::Int(i),
        (Value::Int(i), DataType::Double) => Value::Float(i as f64),
        (Value::Float(f), DataType::Double) => Value::Float(f),
        (Value::Float(f), DataType::Bigint) if f.fract() == 0.0 => Value::Int(f as i64),
        (Value::Bool(b), DataType::Boolean) => Value::Bool(b),
        (Value::Date(d), DataType::Date) => Value::Date(d),
        (Value::Date(d), DataType::Timestamptz) => Value::Ts(d as i64 * 86_400_000),
        (Value::Ts(t), DataType::Timestamptz) => Value::Ts(t),
        (Value::Ts(t), DataType::Date) => Value::Date(t.div_euclid(86_400_000) as i32),
        (Value::Int(i), DataType::Varchar) => Value::Str(i.to_string()),
        (Value::Float(f), DataType::Varchar) => Value::Str(f.to_string()),
        (Value::Bool(b), DataType::Varchar) => Value::Str(b.to_string()),
        (v, t) => return Err(format!("a value {v:?} does not fit type {}", t.sql_name())),
    })
}

/// An Arrow array builder for one column type.
pub enum ColumnBuilder {
    /// Text.
    Str(StringBuilder),
    /// BIGINT.
    Int(Int64Builder),
    /// DOUBLE.
    Float(Float64Builder),
    /// BOOLEAN.
    Bool(BooleanBuilder),
    /// DATE.
    Date(Date32Builder),
    /// TIMESTAMPTZ.
    Ts(TimestampMillisecondBuilder),
}

impl ColumnBuilder {
    /// A builder for `t` with room for `cap` rows (timestamps tagged UTC).
    pub fn new(t: DataType, cap: usize) -> ColumnBuilder {
        Self::new_in(t, cap, TS_TZ)
    }

    /// A builder whose timestamps carry time zone `tz`.
    pub fn new_in(t: DataType, cap: usize, tz: &str) -> ColumnBuilder {
        match t {
            DataType::Varchar => ColumnBuilder::Str(StringBuilder::with_capacity(cap, cap * 8)),
            DataType::Bigint => ColumnBuilder::Int(Int64Builder::with_capacity(cap)),
            DataType::Double => ColumnBuilder::Float(Float64Builder::with_capacity(cap)),
            DataType::Boolean => ColumnBuilder::Bool(BooleanBuilder::with_capacity(cap)),
            DataType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(cap)),
            DataType::Timestamptz => {
                ColumnBuilder::Ts(TimestampMillisecondBuilder::with_capacity(cap).with_timezone(tz))
            }
        }
    }

    /// Appends a value; a value of another kind is appended as NULL.
    #[inline]
    pub fn append(&mut self, v: ValueRef<'_>) {
        match (self, v) {
            (ColumnBuilder::Str(b), ValueRef::Str(s)) => b.append_value(s),
            (ColumnBuilder::Int(b), ValueRef::Int(i)) => b.append_value(i),
            (ColumnBuilder::Float(b), ValueRef::Float(f)) => b.append_value(f),
            (ColumnBuilder::Float(b), ValueRef::Int(i)) => b.append_value(i as f64),
            (ColumnBuilder::Bool(b), ValueRef::Bool(x)) => b.append_value(x),
            (ColumnBuilder::Date(b), ValueRef::Date(d)) => b.append_value(d),
            (ColumnBuilder::Ts(b), ValueRef::Ts(t)) => b.append_value(t),
            (s, _) => s.append_null(),
        }
    }

    /// Appends NULL.
    #[inline]
    pub fn append_null(&mut self) {
        match self {
            ColumnBuilder::Str(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Ts(b) => b.append_null(),
        }
    }

    /// Finishes the array.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Str(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Ts(b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_and_without_offsets() {
        let utc = Tz::UTC;
        let base = parse_timestamp_ms("2025-06-01 10:00:00", &utc).unwrap();
        assert_eq!(
            parse_timestamp_ms("2025-06-01 10:00:00+00", &utc),
            Some(base)
        );
        assert_eq!(parse_timestamp_ms("2025-06-01T10:00:00Z", &utc), Some(base));
        assert_eq!(
            parse_timestamp_ms("2025-06-01 18:00:00+08:00", &utc),
            Some(base)
        );
        assert_eq!(
            parse_timestamp_ms("2025-06-01 18:00:00+0800", &utc),
            Some(base)
        );
        assert_eq!(
            parse_timestamp_ms("2025-06-01 10:00:00.250+00", &utc),
            Some(base + 250)
        );
        let sh: Tz = "Asia/Shanghai".parse().unwrap();
        assert_eq!(parse_timestamp_ms("2025-06-01 18:00:00", &sh), Some(base));
        assert_eq!(format_ts_utc(base + 250), "2025-06-01 10:00:00.250+00");
        assert!(parse_timestamp_ms("yesterday", &utc).is_none());
        for t in [
            "2025-06-01 10:00:00+00",
            "2025-06-01T18:00:00.250+08:00",
            "2024-02-29 23:59:59.9Z",
            "1969-12-31 23:00:00-0130",
            "2025-06-01 10:00:00.123456+00",
        ] {
            assert_eq!(fast_timestamp_ms(t), parse_timestamp_ms(t, &utc), "{t}");
        }
        assert_eq!(fast_timestamp_ms("2025-02-30 10:00:00+00"), None);
        assert_eq!(fast_timestamp_ms("2025-06-01 10:00:00"), None);
    }
}
