//! `COPY ... FROM STDIN (FORMAT binary)`: decodes PostgreSQL's binary COPY
//! stream (signature, header, tuples of length-prefixed binary values,
//! trailer) into CSV records that the text/CSV COPY path then validates and
//! ingests, so both formats share one ingest path.

use chrono::{DateTime, Duration, NaiveDate};
use cohortdb_storage::DataType;

use crate::error::{Result, SqlError};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Incremental decoder of one binary COPY stream.
#[derive(Debug)]
pub struct BinaryDecoder {
    types: Vec<DataType>,
    buf: Vec<u8>,
    header_done: bool,
    done: bool,
    tuple: u64,
}

fn bad(msg: String) -> SqlError {
    SqlError::BadCopyFile(msg)
}

impl BinaryDecoder {
    /// A decoder for input fields of `types`.
    pub fn new(types: Vec<DataType>) -> Self {
        BinaryDecoder {
            types,
            buf: Vec::new(),
            header_done: false,
            done: false,
            tuple: 0,
        }
    }

    /// Decodes the complete tuples in `data` (plus earlier leftovers),
    /// appending one CSV record per tuple to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        if !self.header_done {
            if self.buf.len() < SIGNATURE.len() + 8 {
                return Ok(());
            }
            if &self.buf[..SIGNATURE.len()] != SIGNATURE {
                return Err(bad("COPY file signature not recognized".into()));
            }
            pos = SIGNATURE.len() + 4;
            let ext = i32::from_be_bytes(self.buf[pos..pos + 4].try_into().expect("4")) as usize;
            pos += 4;
            if self.buf.len() < pos + ext {
                return Ok(());
            }
            pos += ext;
            self.header_done = true;
        }
        while !self.done {
            let Some((len, fields)) = self.tuple_at(pos)? else {
                break;
            };
            match fields {
                None => self.done = true,
                Some(fields) => {
                    self.tuple += 1;
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        if let Some((s, e)) = f {
                            let t = self.types[i];
                            let v = decode(t, &self.buf[pos + s..pos + e]).map_err(|m| {
                                bad(format!(
                                    "COPY binary tuple {}, field {}: {m}",
                                    self.tuple,
                                    i + 1
                                ))
                            })?;
                            csv_field(&v, out);
                        }
                    }
                    out.push(b'\n');
                }
            }
            pos += len;
        }
        self.buf.drain(..pos);
        Ok(())
    }

    /// Ends the stream; fails on a partial tuple or a missing header.
    pub fn finish(&self) -> Result<()> {
        if !self.header_done || (!self.done && !self.buf.is_empty()) {
            return Err(bad("unexpected end of COPY binary data".into()));
        }
        Ok(())
    }

    /// A complete tuple at `pos`: its byte length and field ranges (relative
    /// to `pos`), `None` fields for the trailer; `None` if incomplete.
    #[allow(clippy::type_complexity)]
    fn tuple_at(&self, pos: usize) -> Result<Option<(usize, Option<Vec<Option<(usize, usize)>>>)>> {
        let b = &self.buf[pos..];
        if b.len() < 2 {
            return Ok(None);
        }
        let n = i16::from_be_bytes([b[0], b[1]]);
        if n == -1 {
            return Ok(Some((2, None)));
        }
        if n as usize != self.types.len() {
            return Err(bad(format!(
                "row field count is {n}, expected {}",
                self.types.len()
            )));
        }
        let mut at = 2;
        let mut fields = Vec::with_capacity(n as usize);
        for _ in 0..n {
            if b.len() < at + 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes(b[at..at + 4].try_into().expect("4"));
            at += 4;
            if len < 0 {
                fields.push(None);
                continue;
            }
            let len = len as usize;
            if b.len() < at + len {
                return Ok(None);
            }
            fields.push(Some((at, at + len)));
            at += len;
        }
        Ok(Some((at, Some(fields))))
    }
}

fn pg_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("date")
}

fn decode(t: DataType, v: &[u8]) -> std::result::Result<String, String> {
    let int = || -> std::result::Result<i64, String> {
        Ok(match v.len() {
            2 => i16::from_be_bytes([v[0], v[1]]) as i64,
            4 => i32::from_be_bytes(v.try_into().expect("4")) as i64,
            8 => i64::from_be_bytes(v.try_into().expect("8")),
            n => return Err(format!("integer of {n} bytes")),
        })
    };
    Ok(match t {
        DataType::Varchar => std::str::from_utf8(v)
            .map_err(|_| "invalid UTF-8".to_string())?
            .to_string(),
        DataType::Bigint => int()?.to_string(),
        DataType::Double => match v.len() {
            4 => (f32::from_be_bytes(v.try_into().expect("4")) as f64).to_string(),
            8 => f64::from_be_bytes(v.try_into().expect("8")).to_string(),
            n => return Err(format!("float of {n} bytes")),
        },
        DataType::Boolean => match v {
            [0] => "f".into(),
            [1] => "t".into(),
            _ => return Err("invalid boolean".into()),
        },
        DataType::Date => {
            let days = int()?;
            (pg_epoch() + Duration::days(days))
                .format("%Y-%m-%d")
                .to_string()
        }
        DataType::Timestamptz => {
            let micros = int()?;
            let base = pg_epoch().and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            let ts: DateTime<chrono::Utc> = base + Duration::microseconds(micros);
            ts.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
        }
    })
}

fn csv_field(v: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in v.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_tuples_across_chunks() {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&3i16.to_be_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&42i64.to_be_bytes());
        data.extend_from_slice(&3i32.to_be_bytes());
        data.extend_from_slice(b"a\"b");
        data.extend_from_slice(&(-1i32).to_be_bytes());
        data.extend_from_slice(&(-1i16).to_be_bytes());
        let mut d = BinaryDecoder::new(vec![DataType::Bigint, DataType::Varchar, DataType::Date]);
        let mut out = Vec::new();
        for chunk in data.chunks(5) {
            d.feed(chunk, &mut out).expect("feed");
        }
        d.finish().expect("finish");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "\"42\",\"a\"\"b\",\n"
        );
    }
}
