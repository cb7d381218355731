//! Value encoding of rows (contacts, event properties, user-table rows).
//!
//! A row is a sequence of `(field_id varint, tag u8, payload)` for its
//! non-NULL fields. Field ids come from the catalog and never change meaning,
//! so adding a column never rewrites existing rows.

/// An owned, typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Boolean.
    Bool(bool),
    /// 64-bit integer.
    Int(i64),
    /// 64-bit float.
    Float(f64),
    /// Text.
    Str(String),
    /// Days since 1970-01-01.
    Date(i32),
    /// Milliseconds since the epoch, UTC.
    Ts(i64),
}

impl Value {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Borrowed view of this value.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Int(i) => ValueRef::Int(*i),
            Value::Float(f) => ValueRef::Float(*f),
            Value::Str(s) => ValueRef::Str(s),
            Value::Date(d) => ValueRef::Date(*d),
            Value::Ts(t) => ValueRef::Ts(*t),
        }
    }
}

/// A value borrowed from encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// SQL NULL (never stored; used by callers).
    Null,
    /// Boolean.
    Bool(bool),
    /// 64-bit integer.
    Int(i64),
    /// 64-bit float.
    Float(f64),
    /// Text.
    Str(&'a str),
    /// Days since 1970-01-01.
    Date(i32),
    /// Milliseconds since the epoch, UTC.
    Ts(i64),
}

impl ValueRef<'_> {
    /// Owned copy.
    pub fn to_owned(&self) -> Value {
        match *self {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Float(f) => Value::Float(f),
            ValueRef::Str(s) => Value::Str(s.to_string()),
            ValueRef::Date(d) => Value::Date(d),
            ValueRef::Ts(t) => Value::Ts(t),
        }
    }
}

const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_STR: u8 = 5;
const TAG_DATE: u8 = 6;
const TAG_TS: u8 = 7;

/// Appends an unsigned LEB128 varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut result = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        result |= ((b & 0x7F) as u64) << shift;
        if b < 0x80 {
            return Some(result);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}
#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends one field; NULL values are skipped (absence means NULL).
#[inline]
pub fn put_field(out: &mut Vec<u8>, field_id: u32, v: ValueRef<'_>) {
    if matches!(v, ValueRef::Null) {
        return;
    }
    put_varint(out, field_id as u64);
    match v {
        ValueRef::Null => {}
        ValueRef::Bool(false) => out.push(TAG_FALSE),
        ValueRef::Bool(true) => out.push(TAG_TRUE),
        ValueRef::Int(i) => {
            out.push(TAG_INT);
            put_varint(out, zigzag(i));
        }
        ValueRef::Float(f) => {
            out.push(TAG_FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        ValueRef::Str(s) => {
            out.push(TAG_STR);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        ValueRef::Date(d) => {
            out.push(TAG_DATE);
            put_varint(out, zigzag(d as i64));
        }
        ValueRef::Ts(t) => {
            out.push(TAG_TS);
            put_varint(out, zigzag(t));
        }
    }
}

/// Encodes a whole row from `(field_id, value)` pairs.
pub fn encode_row<'a>(fields: impl IntoIterator<Item = (u32, &'a Value)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for (id, v) in fields {
        put_field(&mut out, id, v.as_ref());
    }
    out
}

/// Iterates the fields of an encoded row. Stops (and sets `error`) on corrupt bytes.
pub struct RowReader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Set when the bytes could not be decoded.
    pub error: bool,
}

impl<'a> RowReader<'a> {
    /// Reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        RowReader {
            buf,
            pos: 0,
            error: false,
        }
    }

    fn next_field(&mut self) -> Option<(u32, ValueRef<'a>)> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let id = get_varint(self.buf, &mut self.pos)? as u32;
        let tag = *self.buf.get(self.pos)?;
        self.pos += 1;
        let v = match tag {
            TAG_FALSE => ValueRef::Bool(false),
            TAG_TRUE => ValueRef::Bool(true),
            TAG_INT => ValueRef::Int(unzigzag(get_varint(self.buf, &mut self.pos)?)),
            TAG_FLOAT => {
                let b = self.buf.get(self.pos..self.pos + 8)?;
                self.pos += 8;
                ValueRef::Float(f64::from_le_bytes(b.try_into().ok()?))
            }
            TAG_STR => {
                let len = get_varint(self.buf, &mut self.pos)? as usize;
                let b = self.buf.get(self.pos..self.pos + len)?;
                self.pos += len;
                ValueRef::Str(std::str::from_utf8(b).ok()?)
            }
            TAG_DATE => ValueRef::Date(unzigzag(get_varint(self.buf, &mut self.pos)?) as i32),
            TAG_TS => ValueRef::Ts(unzigzag(get_varint(self.buf, &mut self.pos)?)),
            _ => return None,
        };
        Some((id, v))
    }
}

impl<'a> Iterator for RowReader<'a> {
    type Item = (u32, ValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.error {
            return None;
        }
        let start = self.pos;
        match self.next_field() {
            Some(f) => Some(f),
            None => {
                if start < self.buf.len() {
                    self.error = true;
                }
                None
            }
        }
    }
}

/// Decodes a row into a vector indexed by field id (missing fields are NULL).
pub fn decode_row(buf: &[u8], width: usize) -> Vec<Value> {
    let mut out = vec![Value::Null; width];
    for (id, v) in RowReader::new(buf) {
        if let Some(slot) = out.get_mut(id as usize) {
            *slot = v.to_owned();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let vals = vec![
            Value::Int(-42),
            Value::Null,
            Value::Str("张三".into()),
            Value::Float(1.25),
            Value::Bool(true),
            Value::Date(-3),
            Value::Ts(1_700_000_000_123),
        ];
        let buf = encode_row(vals.iter().enumerate().map(|(i, v)| (i as u32, v)));
        assert_eq!(decode_row(&buf, vals.len()), vals);
        let mut r = RowReader::new(&buf[..buf.len() - 1]);
        while r.next().is_some() {}
        assert!(r.error);
    }
}
