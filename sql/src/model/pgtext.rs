//! Postgres text output of Arrow values: what psql and text-format clients
//! see (`t`/`f`, shortest floats, `2025-06-01 10:00:00+08` in the session time
//! zone, `{a,b}` arrays). Used for query results and `COPY ... TO`.

use chrono::{DateTime, Offset};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType as A, Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type, Float64Type,
    Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};

use crate::model::convert::date_from_days;

/// True when [`format_cell`] renders this type itself (otherwise callers fall back).
pub fn supports(t: &A) -> bool {
    match t {
        A::Null
        | A::Boolean
        | A::Int8
        | A::Int16
        | A::Int32
        | A::Int64
        | A::UInt8
        | A::UInt16
        | A::UInt32
        | A::UInt64
        | A::Float16
        | A::Float32
        | A::Float64
        | A::Utf8
        | A::LargeUtf8
        | A::Utf8View
        | A::Date32
        | A::Date64
        | A::Timestamp(_, _)
        | A::Decimal128(_, _) => true,
        A::List(f) | A::LargeList(f) => {
            supports(f.data_type()) && !matches!(f.data_type(), A::List(_))
        }
        _ => false,
    }
}

/// Formats a float the way Postgres does with `extra_float_digits = 1`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let a = v.abs();
    if v != 0.0 && !(1e-4..1e15).contains(&a) {
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mant}e{sign}{digits:0>2}");
    }
    format!("{v}")
}

fn format_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let s = secs.abs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if sec != 0 {
        format!("{sign}{h:02}:{m:02}:{sec:02}")
    } else if m != 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}")
    }
}

/// Formats an instant (microseconds since the epoch) as `timestamptz` text in `tz`.
pub fn format_timestamptz(micros: i64, tz: &Tz) -> String {
    let Some(utc) = DateTime::from_timestamp_micros(micros) else {
        return micros.to_string();
    };
    let local = utc.with_timezone(tz);
    let off = local.offset().fix().local_minus_utc();
    format!(
        "{}{}",
        format_naive(local.naive_local(), micros),
        format_offset(off)
    )
}

fn format_naive(n: chrono::NaiveDateTime, micros: i64) -> String {
    let frac = micros.rem_euclid(1_000_000);
    if frac == 0 {
        n.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        let f = format!("{frac:06}");
        format!(
            "{}.{}",
            n.format("%Y-%m-%d %H:%M:%S"),
            f.trim_end_matches('0')
        )
    }
}

fn quote_array_elem(s: &str) -> String {
    if s.is_empty()
        || s.eq_ignore_ascii_case("null")
        || s.chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace())
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_string()
    }
}

/// Formats row `i` of `a` as Postgres text; `None` is NULL.
pub fn format_cell(a: &dyn Array, i: usize, tz: &Tz) -> Option<String> {
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        A::Null => return None,
        A::Utf8 => a.as_string::<i32>().value(i).to_string(),
        A::LargeUtf8 => a.as_string::<i64>().value(i).to_string(),
        A::Utf8View => a.as_string_view().value(i).to_string(),
        A::Boolean => if a.as_boolean().value(i) { "t" } else { "f" }.to_string(),
        A::Int8 => a.as_primitive::<Int8Type>().value(i).to_string(),
        A::Int16 => a.as_primitive::<Int16Type>().value(i).to_string(),
        A::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
        A::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        A::UInt8 => a.as_primitive::<UInt8Type>().value(i).to_string(),
        A::UInt16 => a.as_primitive::<UInt16Type>().value(i).to_string(),
        A::UInt32 => a.as_primitive::<UInt32Type>().value(i).to_string(),
        A::UInt64 => a.as_primitive::<UInt64Type>().value(i).to_string(),
        A::Float16 => format_float(a.as_primitive::<Float16Type>().value(i).to_f64()),
        A::Float32 => {
            let v = a.as_primitive::<Float32Type>().value(i);
            // shortest text of the f32, not of its f64 widening
            let s = format!("{v}");
            s.parse::<f64>().map(format_float).unwrap_or(s)
        }
        A::Float64 => format_float(a.as_primitive::<Float64Type>().value(i)),
        A::Decimal128(_, scale) => {
            let v = a.as_primitive::<Decimal128Type>().value(i);
            format_decimal(v, *scale)
        }
        A::Date32 => date_from_days(a.as_primitive::<Date32Type>().value(i)).to_string(),
        A::Date64 => date_from_days((a.as_primitive::<Date64Type>().value(i) / 86_400_000) as i32)
            .to_string(),
        A::Timestamp(unit, zone) => {
            let micros = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i) * 1_000_000,
                TimeUnit::Millisecond => {
                    a.as_primitive::<TimestampMillisecondType>().value(i) * 1000
                }
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i) / 1000,
            };
            match zone {
                Some(_) => format_timestamptz(micros, tz),
                None => match DateTime::from_timestamp_micros(micros) {
                    Some(d) => format_naive(d.naive_utc(), micros),
                    None => micros.to_string(),
                },
            }
        }
        A::List(_) | A::LargeList(_) => {
            let inner = match a.data_type() {
                A::List(_) => a.as_list::<i32>().value(i),
                _ => a.as_list::<i64>().value(i),
            };
            let parts: Vec<String> = (0..inner.len())
                .map(|j| match format_cell(inner.as_ref(), j, tz) {
                    None => "NULL".to_string(),
                    Some(s) => quote_array_elem(&s),
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        _ => datafusion::arrow::util::display::array_value_to_string(a, i).unwrap_or_default(),
    })
}

fn format_decimal(v: i128, scale: i8) -> String {
    if scale <= 0 {
        return (v * 10i128.pow((-scale) as u32)).to_string();
    }
    let s = v.abs().to_string();
    let scale = scale as usize;
    let padded = format!("{s:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

/// Separates the shown name from the position in an alias that
/// `pgcompat::output_names` gives to output columns whose names collide.
pub const DUPLICATE_MARK: char = '\u{1}';

/// The column name Postgres would show for an unaliased expression that
/// DataFusion names after its text: `count(*)` → `count`,
/// `sum(events.p_amount)` → `sum`, `t.city` → `city`. Other names are kept.
pub fn pg_column_name(name: &str) -> String {
    if let Some(i) = name.find(DUPLICATE_MARK) {
        return name[..i].to_string();
    }
    let ident = |s: &str| {
        let mut c = s.chars();
        matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
    };
    if let Some(open) = name.find('(') {
        let func = &name[..open];
        if name.ends_with(')') && ident(func) {
            // the first '(' must close at the very end
            let mut depth = 0i32;
            for (i, ch) in name.char_indices().skip(open) {
                match ch {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 && i != name.len() - 1 {
                            return name.to_string();
                        }
                    }
                    _ => {}
                }
            }
            // DataFusion names a literal after its Arrow type: `Int64(1)`
            return match func {
                "Boolean" => "bool".into(),
                "Int8"
                | "Int16"
                | "Int32"
                | "Int64"
                | "UInt8"
                | "UInt16"
                | "UInt32"
                | "UInt64"
                | "Float16"
                | "Float32"
                | "Float64"
                | "Utf8"
                | "LargeUtf8"
                | "Utf8View"
                | "Decimal128"
                | "Date32"
                | "IntervalMonthDayNano" => "?column?".into(),
                _ => func.to_ascii_lowercase(),
            };
        }
        return name.to_string();
    }
    if name == "NULL" {
        return "?column?".into();
    }
    match name.rsplit_once('.') {
        Some((q, col)) if ident(col) && q.split('.').all(ident) => col.to_string(),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn column_names_follow_postgres() {
        use super::pg_column_name as n;
        assert_eq!(n("count(*)"), "count");
        assert_eq!(n("sum(events.p_amount)"), "sum");
        assert_eq!(n("round(sum(e.p_amount),Int64(2))"), "round");
        assert_eq!(n("max(x) + min(y)"), "max(x) + min(y)");
        assert_eq!(n("e.city"), "city");
        assert_eq!(n("revenue"), "revenue");
        assert_eq!(n("Int64(1)"), "?column?");
        assert_eq!(n("Utf8(\"x\")"), "?column?");
        assert_eq!(n("Boolean(true)"), "bool");
        assert_eq!(n("NULL"), "?column?");
    }

    use super::*;

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float(1e20), "1e+20");
        assert_eq!(format_float(1.5e-5), "1.5e-05");
        assert_eq!(format_float(-2.5), "-2.5");
        assert_eq!(format_float(f64::INFINITY), "Infinity");
    }

    #[test]
    fn timestamps_print_in_the_session_zone() {
        let ms =
            crate::model::convert::parse_timestamp_ms("2025-06-01 10:00:00+00", &Tz::UTC).unwrap();
        assert_eq!(
            format_timestamptz(ms * 1000, &Tz::UTC),
            "2025-06-01 10:00:00+00"
        );
        let sh: Tz = "Asia/Shanghai".parse().unwrap();
        assert_eq!(
            format_timestamptz(ms * 1000 + 250_000, &sh),
            "2025-06-01 18:00:00.25+08"
        );
        let kol: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            format_timestamptz(ms * 1000, &kol),
            "2025-06-01 15:30:00+05:30"
        );
        assert_eq!(format_decimal(-12345, 2), "-123.45");
        assert_eq!(format_decimal(5, 3), "0.005");
    }
}
