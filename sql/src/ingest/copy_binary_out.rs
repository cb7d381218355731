//! `COPY ... TO STDOUT (FORMAT binary)`: encodes Arrow record batches as
//! PostgreSQL's binary COPY stream (signature and header, one tuple of
//! length-prefixed binary values per row, trailer), each value in the binary
//! form of the column's PostgreSQL type (`bool`, `int2/4/8`, `float4/8`,
//! `text`, `date`, `timestamp[tz]`, one-dimensional arrays of those).

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{Result, SqlError};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds between the Unix epoch and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between the Unix epoch and 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// The header every binary COPY stream starts with.
pub fn header() -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
    out.extend_from_slice(&0i32.to_be_bytes()); // no header extension
    out
}

/// The trailer that ends a binary COPY stream (the server's protocol layer
/// may append it itself).
pub fn trailer() -> Vec<u8> {
    (-1i16).to_be_bytes().to_vec()
}

/// PostgreSQL type OID of the binary form written for an element type.
fn element_oid(t: &DataType) -> Option<u32> {
    Some(match t {
        DataType::Boolean => 16,
        DataType::Int16 => 21,
        DataType::Int32 => 23,
        DataType::Int64 => 20,
        DataType::Float32 => 700,
        DataType::Float64 => 701,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 25,
        DataType::Date32 => 1082,
        DataType::Timestamp(_, None) => 1114,
        DataType::Timestamp(_, Some(_)) => 1184,
        _ => return None,
    })
}

fn supported(t: &DataType) -> bool {
    match t {
        DataType::List(f) | DataType::LargeList(f) => element_oid(f.data_type()).is_some(),
        other => element_oid(other).is_some(),
    }
}

/// Checks that every column has a binary encoding here; the error names the
/// first that does not and says what to do (SQLSTATE 0A000).
pub fn check_schema(schema: &Schema) -> Result<()> {
    match schema.fields().iter().find(|f| !supported(f.data_type())) {
        None => Ok(()),
        Some(f) => Err(unsupported(f)),
    }
}

fn unsupported(f: &Field) -> SqlError {
    SqlError::Unsupported(format!(
        "COPY TO in binary format does not support column \"{}\" of type {}; cast it (e.g. to text or double precision) in a COPY (SELECT ...) TO STDOUT, or use FORMAT text/csv",
        f.name(),
        f.data_type()
    ))
}

/// Appends one tuple per row of `batch` to `out`.
pub fn encode_batch(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
    for row in 0..batch.num_rows() {
        encode_row(batch, row, out)?;
    }
    Ok(())
}

/// Appends the tuple of one row of `batch` to `out`.
pub fn encode_row(batch: &RecordBatch, row: usize, out: &mut Vec<u8>) -> Result<()> {
    check_schema(&batch.schema())?;
    let columns = batch.columns();
    {
        out.extend_from_slice(&(columns.len() as i16).to_be_bytes());
        for col in columns {
            if col.is_null(row) {
                out.extend_from_slice(&(-1i32).to_be_bytes());
            } else {
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                encode_value(col, row, out)?;
                let len = (out.len() - at - 4) as i32;
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
    }
    Ok(())
}

fn micros(unit: &TimeUnit, v: i64) -> i64 {
    match unit {
        TimeUnit::Second => v * 1_000_000,
        TimeUnit::Millisecond => v * 1_000,
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v.div_euclid(1_000),
    }
}

/// Writes the binary form of a non-null value.
fn encode_value(col: &ArrayRef, row: usize, out: &mut Vec<u8>) -> Result<()> {
    match col.data_type() {
        DataType::Boolean => {
            let a = col.as_any().downcast_ref::<BooleanArray>().expect("bool");
            out.push(a.value(row) as u8);
        }
        DataType::Int16 => out.extend_from_slice(
            &col.as_any()
                .downcast_ref::<Int16Array>()
                .expect("i16")
                .value(row)
                .to_be_bytes(),
        ),
        DataType::Int32 => out.extend_from_slice(
            &col.as_any()
                .downcast_ref::<Int32Array>()
                .expect("i32")
                .value(row)
                .to_be_bytes(),
        ),
        DataType::Int64 => out.extend_from_slice(
            &col.as_any()
                .downcast_ref::<Int64Array>()
                .expect("i64")
                .value(row)
                .to_be_bytes(),
        ),
        DataType::Float32 => out.extend_from_slice(
            &col.as_any()
                .downcast_ref::<Float32Array>()
                .expect("f32")
                .value(row)
                .to_be_bytes(),
        ),
        DataType::Float64 => out.extend_from_slice(
            &col.as_any()
                .downcast_ref::<Float64Array>()
                .expect("f64")
                .value(row)
                .to_be_bytes(),
        ),
        DataType::Utf8 => out.extend_from_slice(col.as_string::<i32>().value(row).as_bytes()),
        DataType::LargeUtf8 => out.extend_from_slice(col.as_string::<i64>().value(row).as_bytes()),
        DataType::Utf8View => out.extend_from_slice(col.as_string_view().value(row).as_bytes()),
        DataType::Date32 => {
            let d = col
                .as_any()
                .downcast_ref::<Date32Array>()
                .expect("date")
                .value(row);
            out.extend_from_slice(&(d - PG_EPOCH_DAYS).to_be_bytes());
        }
        DataType::Timestamp(unit, _) => {
            use datafusion::arrow::datatypes::{
                TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
                TimestampSecondType,
            };
            let v = match unit {
                TimeUnit::Second => col.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => col.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => col.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => col.as_primitive::<TimestampNanosecondType>().value(row),
            };
            out.extend_from_slice(&(micros(unit, v) - PG_EPOCH_MICROS).to_be_bytes());
        }
        DataType::List(f) => {
            let values = col.as_list::<i32>().value(row);
            encode_array(f, &values, out)?;
        }
        DataType::LargeList(f) => {
            let values = col.as_list::<i64>().value(row);
            encode_array(f, &values, out)?;
        }
        _ => return Err(unsupported(&Field::new("?", col.data_type().clone(), true))),
    }
    Ok(())
}

/// A one-dimensional array: ndim, has-nulls flag, element OID, then the
/// dimension (length, lower bound 1) and each element length-prefixed.
fn encode_array(f: &Field, values: &ArrayRef, out: &mut Vec<u8>) -> Result<()> {
    let oid = element_oid(f.data_type()).ok_or_else(|| unsupported(f))?;
    let ndim: i32 = if values.is_empty() { 0 } else { 1 };
    out.extend_from_slice(&ndim.to_be_bytes());
    out.extend_from_slice(&((values.null_count() > 0) as i32).to_be_bytes());
    out.extend_from_slice(&oid.to_be_bytes());
    if ndim == 0 {
        return Ok(());
    }
    out.extend_from_slice(&(values.len() as i32).to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    for i in 0..values.len() {
        if values.is_null(i) {
            out.extend_from_slice(&(-1i32).to_be_bytes());
        } else {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            encode_value(values, i, out)?;
            let len = (out.len() - at - 4) as i32;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        ListBuilder, StringArray, StringBuilder, TimestampMicrosecondArray,
    };
    use std::sync::Arc;

    #[test]
    fn encodes_postgres_binary_forms() {
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("vip");
        tags.values().append_null();
        tags.append(true);
        tags.append(false);
        let batch = RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from(vec!["张", "b"])) as ArrayRef,
            ),
            (
                "ok",
                Arc::new(BooleanArray::from(vec![true, false])) as ArrayRef,
            ),
            (
                "d",
                Arc::new(Date32Array::from(vec![PG_EPOCH_DAYS + 1, 0])) as ArrayRef,
            ),
            (
                "ts",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![PG_EPOCH_MICROS + 5, 0])
                        .with_timezone("UTC"),
                ) as ArrayRef,
            ),
            ("tags", Arc::new(tags.finish()) as ArrayRef),
        ])
        .unwrap();
        let mut out = header();
        encode_batch(&batch, &mut out).unwrap();
        out.extend(trailer());
        assert!(out.starts_with(SIGNATURE));
        let body = &out[19..];
        // row 1: 6 fields; id = 1
        assert_eq!(&body[..2], &6i16.to_be_bytes());
        assert_eq!(&body[2..6], &8i32.to_be_bytes());
        assert_eq!(&body[6..14], &1i64.to_be_bytes());
        // name: 3 UTF-8 bytes
        assert_eq!(&body[14..18], &3i32.to_be_bytes());
        assert_eq!(&body[18..21], "张".as_bytes());
        assert_eq!(&body[21..26], &[0, 0, 0, 1, 1]);
        assert_eq!(&body[26..34], &[0, 0, 0, 4, 0, 0, 0, 1]);
        assert_eq!(&body[34..38], &8i32.to_be_bytes());
        assert_eq!(&body[38..46], &5i64.to_be_bytes());
        // tags: {vip,NULL}: ndim 1, has nulls, text, dim 2 lbound 1, "vip", NULL
        let arr_len = i32::from_be_bytes(body[46..50].try_into().unwrap()) as usize;
        let arr = &body[50..50 + arr_len];
        assert_eq!(&arr[..12], &[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 25]);
        assert_eq!(&arr[12..20], &[0, 0, 0, 2, 0, 0, 0, 1]);
        assert_eq!(&arr[20..27], &[0, 0, 0, 3, b'v', b'i', b'p']);
        assert_eq!(&arr[27..31], &(-1i32).to_be_bytes());
        // row 2 starts with a NULL id; the stream ends with the trailer
        let row2 = &body[50 + arr_len..];
        assert_eq!(&row2[..6], &[0, 6, 0xff, 0xff, 0xff, 0xff]);
        assert!(out.ends_with(&[0xff, 0xff]));
    }

    #[test]
    fn unsupported_types_are_named() {
        let schema = Schema::new(vec![Field::new(
            "amount",
            DataType::Decimal128(10, 2),
            true,
        )]);
        let err = check_schema(&schema).unwrap_err().to_string();
        assert!(err.contains("\"amount\""), "{err}");
    }
}
