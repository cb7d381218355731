//! `COPY ... FROM STDIN` (text and csv) into contacts, events and user
//! tables, and row formatting for `COPY ... TO STDOUT`.

use std::borrow::Cow;
use std::sync::Arc;

use chrono_tz::Tz;
use cohortdb_storage::{DataType, Store, Value};
use datafusion::arrow::array::RecordBatch;

use cohortdb_storage::catalog::EVENT_CHANNEL_FIELD;
use cohortdb_storage::codec::put_field;
use cohortdb_storage::ValueRef;

use crate::error::{Result, SqlError};
use crate::identity::resolve::IdentifiedContacts;
use crate::ingest::batch::{ContactIngest, EventIngest, UserRowIngest};
use crate::ingest::identity_insert::{
    CONTACT_IDENT as CONTACT_IDENT_COLS, EVENT_IDENT as EVENT_IDENT_COLS,
};
use crate::model::convert::{fast_timestamp_ms, parse_text};
use crate::model::layout::EventCol;
use crate::model::pgtext::format_cell;
use crate::model::rows::{contact_col_type, event_col_type, OnError, RowRef};

/// COPY data format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Tab-separated, `\N` for NULL, backslash escapes.
    Text,
    /// Comma-separated values with quoting.
    Csv,
}

/// Options of a COPY statement.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Data format.
    pub format: CopyFormat,
    /// Field delimiter.
    pub delimiter: u8,
    /// NULL marker.
    pub null: String,
    /// First line is a header (skipped on input, written on output).
    pub header: bool,
    /// CSV quote character.
    pub quote: u8,
    /// CSV escape character.
    pub escape: u8,
    /// What to do with bad rows.
    pub on_error: OnError,
    /// PostgreSQL's binary format (COPY TO; COPY FROM decodes it in [`CopyIn`]).
    pub binary: bool,
}

impl CopyOptions {
    /// Defaults for `format`.
    pub fn new(format: CopyFormat) -> Self {
        match format {
            CopyFormat::Text => CopyOptions {
                format,
                delimiter: b'\t',
                null: "\\N".into(),
                header: false,
                quote: b'"',
                escape: b'"',
                on_error: OnError::Stop,
                binary: false,
            },
            CopyFormat::Csv => CopyOptions {
                format,
                delimiter: b',',
                null: String::new(),
                header: false,
                quote: b'"',
                escape: b'"',
                on_error: OnError::Stop,
                binary: false,
            },
        }
    }
}

enum Target {
    Contacts(ContactIngest),
    /// Contacts identified by channel accounts (identity columns given).
    Identified(IdentifiedContacts),
    Events(EventIngest),
    User(UserRowIngest),
    Tag(crate::segments::tags::TagImport),
}

/// An active `COPY ... FROM STDIN`: fed with data chunks, committed at the end.
pub struct CopyIn {
    target: Target,
    /// For each input field: the layout column it fills.
    map: Vec<usize>,
    types: Vec<DataType>,
    names: Vec<String>,
    width: usize,
    opts: CopyOptions,
    tz: Tz,
    pending: Vec<u8>,
    line: u64,
    rows: u64,
    skipped: u64,
    first_error: Option<String>,
    contact_lock: Arc<tokio::sync::Mutex<()>>,
    /// For events: the layout column of each input field.
    event_cols: Vec<EventCol>,
    row_buf: Vec<u8>,
    /// For each input field: which identity column it is (`None` = a table column).
    ident_cols: Vec<Option<usize>>,
    has_ident: bool,
    /// Names of all columns of the target (layout, then identity columns).
    all_names: Vec<String>,
    /// Index of the first identity column in `all_names`.
    base_len: usize,
    /// Binary COPY: decodes tuples into CSV records first.
    binary: Option<crate::ingest::copy_binary::BinaryDecoder>,
    /// Number of columns the client sends.
    pub columns: usize,
}

impl CopyIn {
    /// Starts a COPY into `table` with the given column list (empty = all columns).
    pub fn begin(
        store: Arc<Store>,
        table: &str,
        columns: &[String],
        opts: CopyOptions,
        tz: Tz,
        contact_lock: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<CopyIn> {
        let mut event_layout_cols = Vec::new();
        let wants = |names: &[&str]| columns.iter().any(|c| names.contains(&c.as_str()));
        let mut base_len = usize::MAX;
        let (target, all): (Target, Vec<(String, DataType)>) = match table {
            "contacts" => {
                let ing = ContactIngest::new(store.clone());
                let mut cols: Vec<(String, DataType)> = ing.layout().cols.iter().map(|(n, c)| (n.clone(), contact_col_type(*c))).collect();
                if wants(CONTACT_IDENT_COLS) {
                    base_len = cols.len();
                    cols.extend(CONTACT_IDENT_COLS.iter().map(|n| (n.to_string(), DataType::Varchar)));
                    (Target::Identified(IdentifiedContacts::new(store)), cols)
                } else {
                    (Target::Contacts(ing), cols)
                }
            }
            "events" => {
                let ing = EventIngest::new(store);
                event_layout_cols = ing.layout().cols.iter().map(|(_, c)| *c).collect();
                let mut cols: Vec<(String, DataType)> = ing.layout().cols.iter().map(|(n, c)| (n.clone(), event_col_type(*c))).collect();
                if wants(EVENT_IDENT_COLS) {
                    base_len = cols.len();
                    cols.extend(EVENT_IDENT_COLS.iter().map(|n| (n.to_string(), DataType::Varchar)));
                    event_layout_cols.extend(EVENT_IDENT_COLS.iter().map(|_| EventCol::EventAlias));
                }
                (Target::Events(ing), cols)
            }
            "contact_view" | "event_view" | "event_types" | "event_properties" | "identities" => {
                return Err(SqlError::Unsupported(format!(
                    "COPY FROM is not supported for \"{table}\"; copy into contacts, events or a user table"
                )))
            }
            t if store.catalog().tag(t).is_some() => {
                let def = store.catalog().tag(t).cloned().expect("checked");
                let imp = crate::segments::tags::TagImport::begin(store, def, tz)?;
                (Target::Tag(imp), crate::segments::tags::TagImport::columns())
            }
            other => {
                let def = store
                    .catalog()
                    .table(other)
                    .cloned()
                    .ok_or_else(|| SqlError::UndefinedTable(format!("relation \"{other}\" does not exist")))?;
                let cols = def.columns.iter().map(|c| (c.name.clone(), c.data_type)).collect();
                (Target::User(UserRowIngest::new(store, def)), cols)
            }
        };
        let map: Vec<usize> = if columns.is_empty() {
            (0..all.len()).collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    all.iter().position(|(n, _)| n == c).ok_or_else(|| {
                        SqlError::UndefinedColumn(format!(
                            "column \"{c}\" of relation \"{table}\" does not exist"
                        ))
                    })
                })
                .collect::<Result<_>>()?
        };
        let types = map.iter().map(|i| all[*i].1).collect();
        let event_cols = if event_layout_cols.is_empty() {
            vec![]
        } else {
            map.iter().map(|i| event_layout_cols[*i]).collect()
        };
        let names = map.iter().map(|i| all[*i].0.clone()).collect();
        let ident_cols: Vec<Option<usize>> = map
            .iter()
            .map(|i| (*i >= base_len).then(|| i - base_len))
            .collect();
        let has_ident = ident_cols.iter().any(Option::is_some);
        Ok(CopyIn {
            target,
            columns: map.len(),
            map,
            types,
            names,
            width: all.len(),
            opts,
            tz,
            pending: Vec::new(),
            line: 0,
            rows: 0,
            skipped: 0,
            first_error: None,
            contact_lock,
            event_cols,
            row_buf: Vec::with_capacity(256),
            ident_cols,
            has_ident,
            all_names: all.iter().map(|(n, _)| n.clone()).collect(),
            base_len,
            binary: None,
        })
    }

    /// True when this COPY reads the binary format.
    pub fn is_binary(&self) -> bool {
        self.binary.is_some()
    }

    /// Makes this COPY read PostgreSQL's binary format (begin it with CSV options).
    pub fn into_binary(mut self) -> CopyIn {
        self.binary = Some(crate::ingest::copy_binary::BinaryDecoder::new(
            self.types.clone(),
        ));
        self
    }

    /// Feeds a chunk of COPY data.
    pub fn feed(&mut self, data: &[u8]) -> Result<()> {
        if let Some(mut b) = self.binary.take() {
            let mut csv = Vec::with_capacity(data.len() * 2);
            let r = b.feed(data, &mut csv);
            self.binary = Some(b);
            r?;
            self.pending.extend_from_slice(&csv);
        } else {
            self.pending.extend_from_slice(data);
        }
        let mut start = 0;
        let buf = std::mem::take(&mut self.pending);
        loop {
            match find_record_end(&buf[start..], &self.opts) {
                Some(len) => {
                    let rec = &buf[start..start + len];
                    start += len + 1;
                    self.record(rec)?;
                }
                None => break,
            }
        }
        self.pending = buf[start..].to_vec();
        Ok(())
    }

    fn record(&mut self, rec: &[u8]) -> Result<()> {
        self.line += 1;
        let rec = rec.strip_suffix(b"\r").unwrap_or(rec);
        if self.opts.format == CopyFormat::Text && rec == b"\\." {
            return Ok(());
        }
        if self.line == 1 && self.opts.header {
            return Ok(());
        }
        let at = RowRef {
            n: self.line,
            copy_line: true,
        };
        let res = if matches!(self.target, Target::Events(_)) {
            self.event_row(rec, at)
        } else {
            self.parse_row(rec, at).and_then(|row| self.push(row, at))
        };
        match res {
            Ok(()) => {
                self.rows += 1;
                Ok(())
            }
            Err(e) if self.opts.on_error == OnError::Ignore && is_data_error(&e) => {
                self.skipped += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.to_string());
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn split<'a>(&self, rec: &'a [u8], at: RowRef) -> Result<Vec<Option<Cow<'a, str>>>> {
        let text = std::str::from_utf8(rec)
            .map_err(|_| SqlError::BadCopyFile(format!("{at}: invalid UTF-8 in COPY data")))?;
        let fields = match self.opts.format {
            CopyFormat::Csv => split_csv(text, &self.opts),
            CopyFormat::Text => split_text(text, &self.opts),
        };
        if fields.len() != self.map.len() {
            return Err(SqlError::BadCopyFile(format!(
                "{at}: expected {} columns ({}), got {}",
                self.map.len(),
                self.names.join(", "),
                fields.len()
            )));
        }
        Ok(fields)
    }

    /// Events: parse each field straight into the stored encoding.
    fn event_row(&mut self, rec: &[u8], at: RowRef) -> Result<()> {
        let fields = self.split(rec, at)?;
        let Target::Events(ing) = &mut self.target else {
            unreachable!("checked by caller")
        };
        let (mut contact, mut event_type, mut ts) = (None, None, None);
        let mut channel: Option<&str> = None;
        let mut ids: [Option<&str>; 4] = [None; 4];
        self.row_buf.clear();
        for (i, f) in fields.iter().enumerate() {
            let Some(s) = f.as_deref() else { continue };
            if self.has_ident {
                if let Some(k) = self.ident_cols[i] {
                    ids[k] = Some(s);
                    continue;
                }
                if self.event_cols[i] == EventCol::ChannelId {
                    channel = Some(s);
                }
            }
            let bad =
                |e: String| SqlError::InvalidText(format!("{at}, column {}: {e}", self.names[i]));
            match self.event_cols[i] {
                EventCol::ContactId => match s.trim().parse::<i64>() {
                    Ok(c) if c > 0 => contact = Some(c as u64),
                    _ => return Err(bad(format!("invalid contact id \"{s}\""))),
                },
                EventCol::Event => event_type = Some(ing.event_type_id(s, at)?),
                EventCol::EventDate => {
                    ts = Some(match fast_timestamp_ms(s) {
                        Some(t) => t,
                        None => {
                            match parse_text(DataType::Timestamptz, s, &self.tz).map_err(bad)? {
                                Value::Ts(t) => t,
                                _ => unreachable!("timestamptz parses to Ts"),
                            }
                        }
                    })
                }
                EventCol::EventDay | EventCol::EventAlias => {}
                EventCol::ChannelId => {
                    put_field(&mut self.row_buf, EVENT_CHANNEL_FIELD, ValueRef::Str(s))
                }
                EventCol::Prop(fid, t) => {
                    let v = match t {
                        DataType::Varchar => ValueRef::Str(s),
                        DataType::Bigint => ValueRef::Int(s.trim().parse().map_err(|_| {
                            bad(format!("invalid input syntax for type bigint: \"{s}\""))
                        })?),
                        DataType::Double => match s.trim().parse::<f64>() {
                            Ok(v) => ValueRef::Float(v),
                            Err(_) => match parse_text(t, s, &self.tz).map_err(bad)? {
                                Value::Float(v) => ValueRef::Float(v),
                                _ => unreachable!("double parses to Float"),
                            },
                        },
                        other => match parse_text(other, s, &self.tz).map_err(bad)? {
                            Value::Bool(b) => ValueRef::Bool(b),
                            Value::Date(d) => ValueRef::Date(d),
                            Value::Ts(t) => ValueRef::Ts(t),
                            Value::Int(v) => ValueRef::Int(v),
                            _ => continue,
                        },
                    };
                    put_field(&mut self.row_buf, fid, v);
                }
            }
        }
        // only a row that will be kept names an identity (ON_ERROR ignore
        // must not create contacts for skipped rows)
        if self.has_ident && contact.is_none() && event_type.is_some() && ts.is_some() {
            contact = ing.identity_contact(channel, ids, at)?;
        }
        ing.finish_row(contact, event_type, ts, &self.row_buf, at)
    }

    fn parse_row(&self, rec: &[u8], at: RowRef) -> Result<Vec<Value>> {
        let fields = self.split(rec, at)?;
        let mut row = vec![Value::Null; self.width];
        for (i, f) in fields.into_iter().enumerate() {
            if let Some(s) = f {
                row[self.map[i]] =
                    parse_text(self.types[i], s.as_ref(), &self.tz).map_err(|e| {
                        SqlError::InvalidText(format!("{at}, column {}: {e}", self.names[i]))
                    })?;
            }
        }
        Ok(row)
    }

    fn push(&mut self, row: Vec<Value>, at: RowRef) -> Result<()> {
        match &mut self.target {
            Target::Contacts(i) => i.push(row, at),
            Target::Identified(i) => {
                let (mut fields, mut ident) = (Vec::new(), Vec::new());
                for (k, v) in row.into_iter().enumerate() {
                    match self.all_names.get(k) {
                        Some(n) if k >= self.base_len => ident.push((
                            n.clone(),
                            match v {
                                Value::Str(s) => Some(s),
                                _ => None,
                            },
                        )),
                        Some(n) => fields.push((n.clone(), v)),
                        None => {}
                    }
                }
                i.push(fields, &ident, at)
            }
            Target::Events(i) => i.push(&row, at),
            Target::User(i) => i.push(&row),
            Target::Tag(i) => i.push(&row),
        }
    }

    /// Ends the COPY: parses what is left and commits. Returns `(rows, skipped, first skipped error)`.
    pub async fn finish(mut self) -> Result<(u64, u64, Option<String>)> {
        if let Some(b) = &self.binary {
            b.finish()?;
        }
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            if find_record_end(&rest, &self.opts).is_none() && in_open_quote(&rest, &self.opts) {
                return Err(SqlError::BadCopyFile(format!(
                    "COPY line {}: unterminated CSV quoted field",
                    self.line + 1
                )));
            }
            self.record(&rest)?;
        }
        let rows = match self.target {
            Target::Contacts(i) => i.commit().await?,
            Target::Identified(i) => i.commit(&self.contact_lock).await?,
            Target::Events(i) => i.commit(&self.contact_lock).await?,
            Target::User(i) => i.commit().await?,
            Target::Tag(i) => i.commit().await?,
        };
        Ok((rows, self.skipped, self.first_error))
    }
}

fn is_data_error(e: &SqlError) -> bool {
    !matches!(
        e,
        SqlError::Storage(_) | SqlError::DataFusion(_) | SqlError::ProgramLimit(_)
    )
}

fn in_open_quote(buf: &[u8], opts: &CopyOptions) -> bool {
    if opts.format != CopyFormat::Csv {
        return false;
    }
    let mut inq = false;
    for &b in buf {
        if b == opts.quote {
            inq = !inq;
        }
    }
    inq
}

/// Length of the first complete record in `buf` (excluding its newline).
fn find_record_end(buf: &[u8], opts: &CopyOptions) -> Option<usize> {
    match opts.format {
        CopyFormat::Text => memchr_newline(buf),
        CopyFormat::Csv => {
            let mut inq = false;
            let mut i = 0;
            while i < buf.len() {
                let b = buf[i];
                if inq {
                    if b == opts.escape
                        && opts.escape != opts.quote
                        && i + 1 < buf.len()
                        && buf[i + 1] == opts.quote
                    {
                        i += 2;
                        continue;
                    }
                    if b == opts.quote {
                        inq = false;
                    }
                } else if b == opts.quote {
                    inq = true;
                } else if b == b'\n' {
                    return Some(i);
                }
                i += 1;
            }
            None
        }
    }
}

fn memchr_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n')
}

/// True when `f` is the NULL marker (checked by length first: most fields are not).
#[inline]
fn is_null_marker(f: &str, null: &str) -> bool {
    f.len() == null.len() && (f.is_empty() || f == null)
}

fn split_csv<'a>(line: &'a str, opts: &CopyOptions) -> Vec<Option<Cow<'a, str>>> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let (d, q, esc) = (opts.delimiter, opts.quote, opts.escape);
    let mut i = 0;
    loop {
        let start = i;
        let stop = bytes[i..]
            .iter()
            .position(|b| *b == d || *b == q)
            .map_or(bytes.len(), |p| i + p);
        if stop == bytes.len() || bytes[stop] == d {
            // unquoted field: borrow it
            let end = stop;
            let f = &line[start..end];
            out.push(if is_null_marker(f, &opts.null) {
                None
            } else {
                Some(Cow::Borrowed(f))
            });
            i = end;
            if i >= bytes.len() {
                break;
            }
            i += 1;
            continue;
        }
        let mut field = Vec::new();
        let mut quoted = false;
        while i < bytes.len() && bytes[i] != d {
            if bytes[i] == q {
                quoted = true;
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == esc && i + 1 < bytes.len() && bytes[i + 1] == q {
                        field.push(q);
                        i += 2;
                    } else if bytes[i] == q {
                        i += 1;
                        break;
                    } else {
                        field.push(bytes[i]);
                        i += 1;
                    }
                }
            } else {
                field.push(bytes[i]);
                i += 1;
            }
        }
        let s = String::from_utf8_lossy(&field).into_owned();
        out.push(if !quoted && s == opts.null {
            None
        } else {
            Some(Cow::Owned(s))
        });
        if i >= bytes.len() {
            break;
        }
        i += 1;
    }
    out
}

fn split_text<'a>(line: &'a str, opts: &CopyOptions) -> Vec<Option<Cow<'a, str>>> {
    line.split(opts.delimiter as char)
        .map(|raw| {
            if is_null_marker(raw, &opts.null) {
                return None;
            }
            if !raw.contains('\\') {
                return Some(Cow::Borrowed(raw));
            }
            let mut s = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    s.push(c);
                    continue;
                }
                match chars.next() {
                    Some('t') => s.push('\t'),
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some('b') => s.push('\u{8}'),
                    Some('f') => s.push('\u{c}'),
                    Some('v') => s.push('\u{b}'),
                    Some(o) => s.push(o),
                    None => s.push('\\'),
                }
            }
            Some(Cow::Owned(s))
        })
        .collect()
}

/// Appends row `r` of `batch` as one COPY text or csv line.
pub fn format_row(out: &mut Vec<u8>, batch: &RecordBatch, r: usize, opts: &CopyOptions, tz: &Tz) {
    for c in 0..batch.num_columns() {
        if c > 0 {
            out.push(opts.delimiter);
        }
        let cell = format_cell(batch.column(c).as_ref(), r, tz);
        write_field(out, cell.as_deref(), opts);
    }
    out.push(b'\n');
}

/// The header line of a COPY TO with `HEADER`.
pub fn format_header<'a>(names: impl IntoIterator<Item = &'a str>, opts: &CopyOptions) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            out.push(opts.delimiter);
        }
        write_field(&mut out, Some(name), opts);
    }
    out.push(b'\n');
    out
}

/// Writes one field, escaped for the format.
pub fn write_field(out: &mut Vec<u8>, cell: Option<&str>, opts: &CopyOptions) {
    match (cell, opts.format) {
        (None, _) => out.extend_from_slice(opts.null.as_bytes()),
        (Some(s), CopyFormat::Text) => {
            for ch in s.bytes() {
                match ch {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    c => out.push(c),
                }
            }
        }
        (Some(s), CopyFormat::Csv) => {
            let needs = s.is_empty()
                || s.bytes()
                    .any(|b| b == opts.delimiter || b == opts.quote || b == b'\n' || b == b'\r')
                || s == opts.null;
            if needs {
                out.push(opts.quote);
                for b in s.bytes() {
                    if b == opts.quote {
                        out.push(opts.escape);
                    }
                    out.push(b);
                }
                out.push(opts.quote);
            } else {
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_split_with_quotes_and_nulls() {
        let o = CopyOptions::new(CopyFormat::Csv);
        assert_eq!(
            split_csv("1,\"a,b\",,\"\",\"x\"\"y\"", &o),
            vec![
                Some("1".into()),
                Some("a,b".into()),
                None,
                Some("".into()),
                Some("x\"y".into())
            ]
        );
        assert_eq!(find_record_end(b"1,\"a\nb\"\n2", &o), Some(7));
        let t = CopyOptions::new(CopyFormat::Text);
        assert_eq!(
            split_text("a\\tb\t\\N\tc", &t),
            vec![Some("a\tb".into()), None, Some("c".into())]
        );
    }
}
