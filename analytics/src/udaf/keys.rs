//! Group keys of the statement aggregates (FUNNEL `BY`, LTV `GROUP BY`,
//! PATHS nodes): a key tuple's byte encoding (what the per-contact state and
//! the contributions carry), its decoding against the key's Arrow types, and
//! the one order of key tuples that the server and the aggregates share.
//!
//! Encoding, per value: a tag byte, then the value little-endian (`0` NULL,
//! `1` signed integer as i64, `2` unsigned as u64, `3` float as f64, `4` text
//! and `8` binary as u32 length + bytes, `5` boolean, `6` DATE32 as i32, `7`
//! timestamp as i64 in the column's unit, `9` DATE64 as i64, `10` DECIMAL128
//! as i128). Equal tuples have equal bytes, so bytes are the identity of a
//! key across executors; the order is read from the decoded values.

use std::cmp::Ordering;

use datafusion::arrow::array::{Array, ArrayRef, StructArray};
use datafusion::arrow::datatypes::{DataType as A, Fields};
use datafusion::common::{exec_datafusion_err, exec_err, Result as DfResult, ScalarValue};

/// The order of key tuples: element by element, NULLs last, values in
/// their type's order (`ORDER BY k1 NULLS LAST, k2 NULLS LAST, …`).
pub fn compare_tuples(a: &[ScalarValue], b: &[ScalarValue]) -> Ordering {
    for (x, y) in a.iter().zip(b.iter()) {
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Whether a key column of type `t` can be encoded.
pub fn supported(t: &A) -> bool {
    matches!(
        t,
        A::Null
            | A::Int8
            | A::Int16
            | A::Int32
            | A::Int64
            | A::UInt8
            | A::UInt16
            | A::UInt32
            | A::UInt64
            | A::Float32
            | A::Float64
            | A::Utf8
            | A::LargeUtf8
            | A::Utf8View
            | A::Binary
            | A::LargeBinary
            | A::BinaryView
            | A::Boolean
            | A::Date32
            | A::Date64
            | A::Timestamp(_, _)
            | A::Decimal128(_, _)
    )
}

/// Checks the fields of a key `STRUCT` argument.
pub fn check_fields(fields: &Fields, function: &str) -> DfResult<()> {
    for f in fields {
        if !supported(f.data_type()) {
            return exec_err!(
                "{function}: a key column of type {} is not supported (\"{}\")",
                f.data_type(),
                f.name()
            );
        }
    }
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn encode_value(v: &ScalarValue, out: &mut Vec<u8>) -> DfResult<()> {
    if v.is_null() {
        out.push(0);
        return Ok(());
    }
    let signed = |out: &mut Vec<u8>, x: i64| {
        out.push(1);
        out.extend_from_slice(&x.to_le_bytes());
    };
    let unsigned = |out: &mut Vec<u8>, x: u64| {
        out.push(2);
        out.extend_from_slice(&x.to_le_bytes());
    };
    let float = |out: &mut Vec<u8>, x: f64| {
        out.push(3);
        out.extend_from_slice(&x.to_le_bytes());
    };
    match v {
        ScalarValue::Int8(Some(x)) => signed(out, *x as i64),
        ScalarValue::Int16(Some(x)) => signed(out, *x as i64),
        ScalarValue::Int32(Some(x)) => signed(out, *x as i64),
        ScalarValue::Int64(Some(x)) => signed(out, *x),
        ScalarValue::UInt8(Some(x)) => unsigned(out, *x as u64),
        ScalarValue::UInt16(Some(x)) => unsigned(out, *x as u64),
        ScalarValue::UInt32(Some(x)) => unsigned(out, *x as u64),
        ScalarValue::UInt64(Some(x)) => unsigned(out, *x),
        ScalarValue::Float32(Some(x)) => float(out, *x as f64),
        ScalarValue::Float64(Some(x)) => float(out, *x),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => put_bytes(out, 4, s.as_bytes()),
        ScalarValue::Boolean(Some(b)) => {
            out.push(5);
            out.push(*b as u8);
        }
        ScalarValue::Date32(Some(d)) => {
            out.push(6);
            out.extend_from_slice(&d.to_le_bytes());
        }
        ScalarValue::TimestampSecond(Some(x), _)
        | ScalarValue::TimestampMillisecond(Some(x), _)
        | ScalarValue::TimestampMicrosecond(Some(x), _)
        | ScalarValue::TimestampNanosecond(Some(x), _) => {
            out.push(7);
            out.extend_from_slice(&x.to_le_bytes());
        }
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b)) => put_bytes(out, 8, b),
        ScalarValue::Date64(Some(d)) => {
            out.push(9);
            out.extend_from_slice(&d.to_le_bytes());
        }
        ScalarValue::Decimal128(Some(x), _, _) => {
            out.push(10);
            out.extend_from_slice(&x.to_le_bytes());
        }
        other => {
            return exec_err!(
                "analytics key: a value of type {} is not supported",
                other.data_type()
            )
        }
    }
    Ok(())
}

/// The encoded key tuple of row `r` of `key` (a `STRUCT` of the key columns).
pub fn encode_row(key: &ArrayRef, r: usize) -> DfResult<Vec<u8>> {
    let Some(s) = key.as_any().downcast_ref::<StructArray>() else {
        return exec_err!("analytics key: expected a STRUCT of the key columns");
    };
    let mut buf = Vec::with_capacity(16);
    for col in s.columns() {
        // a NULL struct row: every key column NULL
        if s.is_null(r) {
            buf.push(0);
        } else {
            encode_value(&ScalarValue::try_from_array(col, r)?, &mut buf)?;
        }
    }
    Ok(buf)
}

/// The name of a PATHS node from its key (event code[, BY value]): the
/// code, or `code:value` when the BY value is not NULL.
pub fn node_name(key: &[ScalarValue]) -> String {
    let text = |v: &ScalarValue| match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.clone(),
        other => other.to_string(),
    };
    match key {
        [code] => text(code),
        [code, v] if v.is_null() => text(code),
        [code, v] => format!("{}:{}", text(code), text(v)),
        _ => String::new(),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> DfResult<&'a [u8]> {
        if self.0.len() < n {
            return Err(exec_datafusion_err!("analytics key: truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> DfResult<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn bytes(&mut self) -> DfResult<&'a [u8]> {
        let n = u32::from_le_bytes(self.array::<4>()?) as usize;
        self.take(n)
    }
}

/// Decodes an encoded key tuple into values of the key `fields`' types.
pub fn decode(bytes: &[u8], fields: &Fields) -> DfResult<Vec<ScalarValue>> {
    let mut r = Reader(bytes);
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let t = f.data_type();
        let tag = r.array::<1>()?[0];
        let v = match tag {
            0 => ScalarValue::try_from(t)?,
            1 => ScalarValue::Int64(Some(i64::from_le_bytes(r.array()?))),
            2 => ScalarValue::UInt64(Some(u64::from_le_bytes(r.array()?))),
            3 => ScalarValue::Float64(Some(f64::from_le_bytes(r.array()?))),
            4 => {
                let s = std::str::from_utf8(r.bytes()?)
                    .map_err(|_| exec_datafusion_err!("analytics key: text is not UTF-8"))?;
                ScalarValue::Utf8(Some(s.to_string()))
            }
            5 => ScalarValue::Boolean(Some(r.array::<1>()?[0] != 0)),
            6 => ScalarValue::Date32(Some(i32::from_le_bytes(r.array()?))),
            7 => {
                let x = Some(i64::from_le_bytes(r.array()?));
                match t {
                    A::Timestamp(unit, tz) => {
                        use datafusion::arrow::datatypes::TimeUnit as U;
                        let tz = tz.clone();
                        match unit {
                            U::Second => ScalarValue::TimestampSecond(x, tz),
                            U::Millisecond => ScalarValue::TimestampMillisecond(x, tz),
                            U::Microsecond => ScalarValue::TimestampMicrosecond(x, tz),
                            U::Nanosecond => ScalarValue::TimestampNanosecond(x, tz),
                        }
                    }
                    _ => return exec_err!("analytics key: a timestamp for a {t} column"),
                }
            }
            8 => ScalarValue::Binary(Some(r.bytes()?.to_vec())),
            9 => ScalarValue::Date64(Some(i64::from_le_bytes(r.array()?))),
            10 => match t {
                A::Decimal128(p, s) => {
                    ScalarValue::Decimal128(Some(i128::from_le_bytes(r.array()?)), *p, *s)
                }
                _ => return exec_err!("analytics key: a decimal for a {t} column"),
            },
            _ => return exec_err!("analytics key: unknown value tag {tag}"),
        };
        out.push(if &v.data_type() == t {
            v
        } else {
            v.cast_to(t)?
        });
    }
    if !r.0.is_empty() {
        return exec_err!("analytics key: trailing bytes");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn keys_round_trip_and_order_with_nulls_last() {
        let fields = Fields::from(vec![
            Field::new("city", A::Utf8, true),
            Field::new("n", A::Int32, true),
        ]);
        let s: ArrayRef = Arc::new(StructArray::new(
            fields.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("b"),
                    None,
                    Some("a"),
                    Some("a"),
                ])),
                Arc::new(Int32Array::from(vec![Some(1), Some(2), None, Some(3)])),
            ],
            None,
        ));
        let enc: Vec<Vec<u8>> = (0..4).map(|r| encode_row(&s, r).unwrap()).collect();
        let mut dec: Vec<Vec<ScalarValue>> =
            enc.iter().map(|b| decode(b, &fields).unwrap()).collect();
        assert_eq!(dec[0][0], ScalarValue::Utf8(Some("b".into())));
        assert_eq!(dec[0][1], ScalarValue::Int32(Some(1)));
        assert_eq!(dec[1][0], ScalarValue::Utf8(None));
        dec.sort_by(|a, b| compare_tuples(a, b));
        let firsts: Vec<String> = dec.iter().map(|t| format!("{}/{}", t[0], t[1])).collect();
        assert_eq!(firsts, ["a/3", "a/NULL", "b/1", "NULL/2"]);
        for b in &enc {
            for cut in 0..b.len() {
                assert!(decode(&b[..cut], &fields).is_err(), "cut at {cut}");
            }
        }
    }
}
