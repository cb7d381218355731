//! Rendering of result values as the text PostgreSQL prints for them.
//!
//! The extended protocol returns values in binary; to compare them with the
//! same expected output as the simple protocol (where the server sends text),
//! each value is decoded from its binary wire form and formatted the way
//! Postgres' output functions do (`DateStyle=ISO`, `TimeZone=UTC`,
//! `IntervalStyle=postgres`, `extra_float_digits=1`):
//!
//! | type | text |
//! |---|---|
//! | `bool` | `t` / `f` |
//! | `int2/int4/int8/oid` | decimal |
//! | `float4/float8` | shortest round-trip; exponent form outside 1e-4 ≤ \|x\| < 1e15 (1e6 for float4): `1.5`, `3`, `1e+20` |
//! | `numeric` | exact digits with the value's scale |
//! | text types, `json`, `jsonb` | the string |
//! | `date` | `2025-06-01` |
//! | `timestamp` | `2025-06-01 10:00:00`, fractional seconds without trailing zeros |
//! | `timestamptz` | `2025-06-01 10:00:00+00` (always UTC) |
//! | `time` | `10:00:00` |
//! | `interval` | `1 year 2 mons 3 days 04:05:06` |
//! | `uuid`, `bytea` | `8-4-4-4-12` hex, `\x…` hex |
//! | arrays | `{a,b,NULL,"x y"}` |
//!
//! In both protocols NULL is shown as `NULL` and the empty string as `(empty)`
//! (sqllogictest's conventions). Other types are an error naming the type.

use std::fmt::Write;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use sqllogictest::DefaultColumnType;
use tokio_postgres::types::{FromSql, Kind, Type};
use tokio_postgres::Row;

/// Any value, as its raw binary wire bytes.
pub struct RawValue<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<RawValue<'a>, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// sqllogictest's display of a text value: `NULL` for NULL, `(empty)` for
/// the empty string, else the string itself.
pub fn display_text(value: Option<&str>) -> String {
    match value {
        None => "NULL".to_string(),
        Some("") => "(empty)".to_string(),
        Some(s) => s.to_string(),
    }
}

/// The sqllogictest column type letter for a Postgres type: `I` for
/// integers, `R` for floats and numeric, `T` for text, `?` otherwise.
pub fn column_type(ty: &Type) -> DefaultColumnType {
    match ty.oid() {
        20 | 21 | 23 | 26 => DefaultColumnType::Integer,
        700 | 701 | 1700 => DefaultColumnType::FloatingPoint,
        18 | 19 | 25 | 705 | 1042 | 1043 => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

/// Renders column `idx` of a row received in binary format (what
/// tokio-postgres' `query` returns) as sqllogictest text.
pub fn render_cell(row: &Row, idx: usize) -> Result<String, String> {
    let ty = row.columns()[idx].type_();
    let raw: Option<RawValue<'_>> = row
        .try_get(idx)
        .map_err(|e| format!("cannot read column {idx}: {e}"))?;
    match raw {
        None => Ok("NULL".to_string()),
        Some(RawValue(bytes)) => {
            let text = render_binary(ty, bytes)?;
            Ok(display_text(Some(&text)))
        }
    }
}

/// Renders one non-NULL value of type `ty` from its binary wire form as the
/// text Postgres would send for it.
pub fn render_binary(ty: &Type, raw: &[u8]) -> Result<String, String> {
    match ty.kind() {
        Kind::Array(elem) => return render_array(elem, raw),
        Kind::Domain(inner) => return render_binary(inner, raw),
        Kind::Enum(_) => return utf8(raw),
        _ => {}
    }
    let mut r = Reader::new(raw, ty.name());
    let text = match ty.oid() {
        16 => match r.take(1)?[0] {
            0 => "f".to_string(),
            _ => "t".to_string(),
        },
        17 => {
            let mut s = String::with_capacity(2 + raw.len() * 2);
            s.push_str("\\x");
            for b in raw {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
        18 => String::from_utf8_lossy(raw).into_owned(),
        19 | 25 | 114 | 705 | 1042 | 1043 => utf8(raw)?,
        3802 => {
            // jsonb: version byte (1), then the JSON text.
            let version = r.take(1)?[0];
            if version != 1 {
                return Err(format!("unsupported jsonb binary version {version}"));
            }
            utf8(&raw[1..])?
        }
        20 => r.i64()?.to_string(),
        21 => r.i16()?.to_string(),
        23 => r.i32()?.to_string(),
        26 => r.u32()?.to_string(),
        700 => format_float4(f32::from_bits(r.u32()?)),
        701 => format_float8(f64::from_bits(r.i64()? as u64)),
        1700 => format_numeric(raw)?,
        1082 => format_date(r.i32()?),
        1083 => format_time(r.i64()?),
        1114 => format_timestamp(r.i64()?, false),
        1184 => format_timestamp(r.i64()?, true),
        1186 => {
            let micros = r.i64()?;
            let days = r.i32()?;
            let months = r.i32()?;
            format_interval(micros, days, months)
        }
        2950 => {
            let b = r.take(16)?;
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            )
        }
        _ => {
            return Err(format!(
                "the test engine cannot render values of type {} (oid {}) in the extended protocol",
                ty.name(),
                ty.oid()
            ))
        }
    };
    Ok(text)
}

fn utf8(raw: &[u8]) -> Result<String, String> {
    String::from_utf8(raw.to_vec()).map_err(|e| format!("text value is not UTF-8: {e}"))
}

/// A cursor over binary wire bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Type name, for error messages.
    what: &'a str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'a str) -> Reader<'a> {
        Reader { buf, pos: 0, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.pos + n > self.buf.len() {
            return Err(format!(
                "truncated binary value of type {}: need {} bytes at offset {}, have {}",
                self.what,
                n,
                self.pos,
                self.buf.len()
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
}

/// Formats a float8 like Postgres (shortest round-trip digits; exponent
/// form when the decimal exponent is < -4 or >= 15).
pub fn format_float8(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    float_text(format!("{v:e}"), format!("{v}"), 15)
}

/// Formats a float4 like Postgres (shortest round-trip digits; exponent
/// form when the decimal exponent is < -4 or >= 6).
pub fn format_float4(v: f32) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    float_text(format!("{v:e}"), format!("{v}"), 6)
}

/// Chooses between fixed (`fixed`, Rust's shortest fixed notation) and
/// exponent notation (from `sci`, Rust's shortest `{:e}`, e.g. `1.5e-5`).
fn float_text(sci: String, fixed: String, max_exp: i32) -> String {
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return fixed;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return fixed;
    };
    if (-4..max_exp).contains(&exp) {
        fixed
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

/// Formats a numeric from its binary form (ndigits, weight, sign, dscale,
/// base-10000 digits).
pub fn format_numeric(raw: &[u8]) -> Result<String, String> {
    let mut r = Reader::new(raw, "numeric");
    let ndigits = r.i16()?.max(0) as usize;
    let weight = r.i16()? as i32;
    let sign = r.i16()? as u16;
    let dscale = r.i16()?.max(0) as usize;
    match sign {
        0xC000 => return Ok("NaN".to_string()),
        0xD000 => return Ok("Infinity".to_string()),
        0xF000 => return Ok("-Infinity".to_string()),
        _ => {}
    }
    let mut digits = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        digits.push(r.i16()? as i32);
    }
    let digit_at = |i: i32| -> i32 {
        if i >= 0 && (i as usize) < digits.len() {
            digits[i as usize]
        } else {
            0
        }
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = digit_at(i);
            if i == 0 {
                let _ = write!(out, "{d}");
            } else {
                let _ = write!(out, "{d:04}");
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut frac = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit_at(i));
            i += 1;
        }
        frac.truncate(dscale);
        out.push_str(&frac);
    }
    Ok(out)
}

fn epoch_2000() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("valid date")
        .and_hms_opt(0, 0, 0)
        .expect("valid time")
}

/// Formats a date given as days since 2000-01-01: `2025-06-01`.
pub fn format_date(days: i32) -> String {
    match days {
        i32::MAX => return "infinity".to_string(),
        i32::MIN => return "-infinity".to_string(),
        _ => {}
    }
    match epoch_2000()
        .date()
        .checked_add_signed(TimeDelta::days(days as i64))
    {
        Some(date) => date.format("%Y-%m-%d").to_string(),
        None => format!("<date out of range: {days} days from 2000-01-01>"),
    }
}

/// Formats a timestamp given as microseconds since 2000-01-01 00:00:00:
/// `2025-06-01 10:00:00[.fff]`, with `+00` appended when `with_tz` (the value
/// is UTC and the session time zone is UTC).
pub fn format_timestamp(micros: i64, with_tz: bool) -> String {
    match micros {
        i64::MAX => return "infinity".to_string(),
        i64::MIN => return "-infinity".to_string(),
        _ => {}
    }
    let Some(ts) = epoch_2000().checked_add_signed(TimeDelta::microseconds(micros)) else {
        return format!("<timestamp out of range: {micros} µs from 2000-01-01>");
    };
    let mut out = ts.format("%Y-%m-%d %H:%M:%S").to_string();
    push_fraction(&mut out, micros.rem_euclid(1_000_000) as u64);
    if with_tz {
        out.push_str("+00");
    }
    out
}

/// Formats a time of day given as microseconds since midnight: `10:00:00[.fff]`.
pub fn format_time(micros: i64) -> String {
    let mut out = String::new();
    push_hms(&mut out, micros.unsigned_abs());
    out
}

/// `HH:MM:SS[.ffffff]` of a non-negative duration (hours may exceed 23).
fn push_hms(out: &mut String, micros: u64) {
    let hours = micros / 3_600_000_000;
    let minutes = (micros / 60_000_000) % 60;
    let seconds = (micros / 1_000_000) % 60;
    let _ = write!(out, "{hours:02}:{minutes:02}:{seconds:02}");
    push_fraction(out, micros % 1_000_000);
}

/// Appends `.ffffff` without trailing zeros, nothing for zero.
fn push_fraction(out: &mut String, frac_micros: u64) {
    if frac_micros != 0 {
        let frac = format!("{frac_micros:06}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
}

/// Formats an interval in Postgres' default `IntervalStyle=postgres`:
/// `1 year 2 mons -3 days +04:05:06`.
pub fn format_interval(micros: i64, days: i32, months: i32) -> String {
    let mut out = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    let mut add_part = |value: i64, unit: &str, out: &mut String| {
        if value == 0 {
            return;
        }
        let _ = write!(
            out,
            "{}{}{} {}{}",
            if is_zero { "" } else { " " },
            if is_before && value > 0 { "+" } else { "" },
            value,
            unit,
            if value != 1 { "s" } else { "" }
        );
        is_before = value < 0;
        is_zero = false;
    };
    add_part((months / 12) as i64, "year", &mut out);
    add_part((months % 12) as i64, "mon", &mut out);
    add_part(days as i64, "day", &mut out);
    if micros != 0 || is_zero {
        if !is_zero {
            out.push(' ');
        }
        if micros < 0 {
            out.push('-');
        } else if is_before {
            out.push('+');
        }
        push_hms(&mut out, micros.unsigned_abs());
    }
    out
}

/// Renders a binary array as Postgres' `{…}` text.
fn render_array(elem: &Type, raw: &[u8]) -> Result<String, String> {
    let mut r = Reader::new(raw, elem.name());
    let ndim = r.i32()?;
    let _has_nulls = r.i32()?;
    let _elem_oid = r.u32()?;
    if ndim <= 0 {
        return Ok("{}".to_string());
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    for _ in 0..ndim {
        let len = r.i32()?;
        let _lower_bound = r.i32()?;
        dims.push(len.max(0) as usize);
    }
    let total: usize = dims.iter().product();
    let mut elems = Vec::with_capacity(total);
    for _ in 0..total {
        let len = r.i32()?;
        if len < 0 {
            elems.push(None);
        } else {
            let bytes = r.take(len as usize)?;
            elems.push(Some(quote_array_element(&render_binary(elem, bytes)?)));
        }
    }
    let mut out = String::new();
    let mut next = 0;
    write_array_dim(&mut out, &dims, 0, &elems, &mut next);
    Ok(out)
}

fn write_array_dim(
    out: &mut String,
    dims: &[usize],
    dim: usize,
    elems: &[Option<String>],
    next: &mut usize,
) {
    out.push('{');
    for i in 0..dims[dim] {
        if i > 0 {
            out.push(',');
        }
        if dim + 1 == dims.len() {
            match &elems[*next] {
                None => out.push_str("NULL"),
                Some(s) => out.push_str(s),
            }
            *next += 1;
        } else {
            write_array_dim(out, dims, dim + 1, elems, next);
        }
    }
    out.push('}');
}

/// Quotes an array element the way `array_out` does.
fn quote_array_element(s: &str) -> String {
    let needs_quotes = s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.chars().any(|c| {
            matches!(c, '"' | '\\' | '{' | '}' | ',')
                || matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
        });
    if !needs_quotes {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_postgres() {
        assert_eq!(format_float8(1.5), "1.5");
        assert_eq!(format_float8(0.25), "0.25");
        assert_eq!(format_float8(3.0), "3");
        assert_eq!(format_float8(-2.0), "-2");
        assert_eq!(format_float8(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float8(1e20), "1e+20");
        assert_eq!(format_float8(1.5e-5), "1.5e-05");
        assert_eq!(format_float8(123456789012345.0), "123456789012345");
        assert_eq!(format_float8(1e15), "1e+15");
        assert_eq!(format_float8(0.0001), "0.0001");
        assert_eq!(format_float4(1.5), "1.5");
        assert_eq!(format_float4(1e6), "1e+06");
        assert_eq!(format_float4(123456.0), "123456");
    }

    #[test]
    fn numerics() {
        // 12.50: ndigits 2, weight 0, sign +, dscale 2, digits [12, 5000]
        let raw = [0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x13, 0x88];
        assert_eq!(format_numeric(&raw).unwrap(), "12.50");
        // -0.0005: ndigits 1, weight -1, dscale 4, digits [5]
        let raw = [0, 1, 0xff, 0xff, 0x40, 0, 0, 4, 0, 5];
        assert_eq!(format_numeric(&raw).unwrap(), "-0.0005");
        // 10000: ndigits 1, weight 1, dscale 0, digits [1]
        let raw = [0, 1, 0, 1, 0, 0, 0, 0, 0, 1];
        assert_eq!(format_numeric(&raw).unwrap(), "10000");
        // 0: no digits
        let raw = [0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(format_numeric(&raw).unwrap(), "0");
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(format_date(0), "2000-01-01");
        assert_eq!(format_date(9283), "2025-06-01");
        let ten_am = 10 * 3_600_000_000i64;
        let day = 86_400_000_000i64;
        assert_eq!(
            format_timestamp(9283 * day + ten_am, true),
            "2025-06-01 10:00:00+00"
        );
        assert_eq!(
            format_timestamp(9283 * day + ten_am + 123_000, false),
            "2025-06-01 10:00:00.123"
        );
        assert_eq!(format_timestamp(-1, false), "1999-12-31 23:59:59.999999");
        assert_eq!(format_time(ten_am + 500_000), "10:00:00.5");
        assert_eq!(format_interval(0, 0, 0), "00:00:00");
        assert_eq!(
            format_interval(ten_am, 1, 14),
            "1 year 2 mons 1 day 10:00:00"
        );
        assert_eq!(format_interval(ten_am, -1, 0), "-1 days +10:00:00");
        assert_eq!(format_interval(0, 3, 0), "3 days");
        assert_eq!(format_interval(-ten_am, 0, 0), "-10:00:00");
    }

    #[test]
    fn array_quoting() {
        assert_eq!(quote_array_element("abc"), "abc");
        assert_eq!(quote_array_element("a b"), "\"a b\"");
        assert_eq!(quote_array_element(""), "\"\"");
        assert_eq!(quote_array_element("null"), "\"null\"");
        assert_eq!(quote_array_element("a\"b"), "\"a\\\"b\"");
    }
}
