//! Tags: typed values per contact, computed by a query (`CREATE TAG ... AS`)
//! or imported (`CREATE TAG ... EXTERNAL ID TYPE` + `COPY tag FROM STDIN`),
//! and their history (per-value counts per day, last 50 days).
//!
//! A tag's values live under a version like a group's membership: a refresh
//! or an import writes a complete new version and switches to it atomically.

use std::collections::HashMap;
use std::sync::Arc;

use chrono_tz::Tz;
use cohortdb_storage::codec::{encode_row, RowReader};
use cohortdb_storage::groups::{JobStatus, TagType};
use cohortdb_storage::{Store, TagDef, Value, ValueRef};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder,
    RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType as A, Field, TimeUnit};

use crate::error::{Result, SqlError};
use crate::runtime::StatementContext;
use crate::segments::membership::no_tag;
use crate::segments::scheduler::{set_status, Target};

/// Days of history kept per tag.
pub const HISTORY_DAYS: i32 = 50;
/// Values kept per tag and day in the history (the most frequent).
pub const HISTORY_TOP_VALUES: usize = 100;

/// Identity types an external tag can be keyed by (SPEC §3 identities).
pub const ID_TYPES: &[&str] = &[
    "external_id",
    "wechat.openid",
    "wechat.unionid",
    "wecom.external_userid",
    "youzan.fans_id",
    "mudu.uid",
    "weimob.member_id",
    "ele.user_id",
    "qlchat.user_name",
    "douyin.openid",
    "anonymous_id",
    "contact_id",
];

/// Checks the identity type of an external tag.
pub fn check_id_type(t: &str) -> Result<()> {
    if ID_TYPES.contains(&t) {
        Ok(())
    } else {
        Err(SqlError::InvalidValue(format!(
            "unknown identity type \"{t}\" (use one of {})",
            ID_TYPES.join(", ")
        )))
    }
}

/// One contact's tag value.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    /// A scalar (never NULL: contacts without a value have no entry).
    Scalar(Value),
    /// A `VARCHAR[]` value.
    Array(Vec<String>),
}

impl TagValue {
    /// Stored encoding: a row with field 0 = the scalar, or field 0 = the
    /// array length and fields 1..=n = the elements.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            TagValue::Scalar(v) => encode_row([(0u32, v)]),
            TagValue::Array(items) => {
                let len = Value::Int(items.len() as i64);
                let vals: Vec<Value> = items.iter().map(|s| Value::Str(s.clone())).collect();
                encode_row(
                    std::iter::once((0u32, &len))
                        .chain(vals.iter().enumerate().map(|(i, v)| (i as u32 + 1, v))),
                )
            }
        }
    }

    /// Decodes [`TagValue::encode`] bytes of a tag of type `t`.
    pub fn decode(b: &[u8], t: TagType) -> Option<TagValue> {
        let mut r = RowReader::new(b);
        if t == TagType::VarcharArray {
            r.next()?;
            let items = r
                .filter_map(|(_, v)| match v {
                    ValueRef::Str(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect();
            Some(TagValue::Array(items))
        } else {
            Some(TagValue::Scalar(r.next()?.1.to_owned()))
        }
    }

    /// The values counted in the history (array elements count one by one).
    fn history_keys(&self) -> Vec<String> {
        match self {
            TagValue::Array(items) => items.clone(),
            TagValue::Scalar(v) => vec![match v {
                Value::Str(s) => s.clone(),
                Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Ts(ms) => chrono::DateTime::from_timestamp_millis(*ms)
                    .map(|d| d.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string())
                    .unwrap_or_default(),
                Value::Date(d) => d.to_string(),
                Value::Null => String::new(),
            }],
        }
    }
}

/// The Arrow type of a tag column in `contact_view`.
pub fn arrow_type(t: TagType, tz: &str) -> A {
    match t {
        TagType::Varchar => A::Utf8,
        TagType::Bigint => A::Int64,
        TagType::Double => A::Float64,
        TagType::Boolean => A::Boolean,
        TagType::Timestamptz => A::Timestamp(TimeUnit::Millisecond, Some(tz.into())),
        TagType::VarcharArray => A::List(Arc::new(Field::new("item", A::Utf8, true))),
    }
}

/// Builds a tag's column for the given contacts (NULL where no value).
pub fn tag_column(store: &Store, tag: &TagDef, ids: &[u64], tz: &str) -> Result<ArrayRef> {
    let values = store.get_tag_values(tag.id, tag.version, ids)?;
    let decoded = values.iter().map(|v| {
        v.as_deref()
            .and_then(|b| TagValue::decode(b, tag.data_type))
    });
    Ok(match tag.data_type {
        TagType::VarcharArray => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for v in decoded {
                match v {
                    Some(TagValue::Array(items)) => {
                        for s in items {
                            b.values().append_value(s);
                        }
                        b.append(true);
                    }
                    _ => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
        TagType::Varchar => {
            let mut b = StringBuilder::new();
            for v in decoded {
                match v {
                    Some(TagValue::Scalar(Value::Str(s))) => b.append_value(s),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        TagType::Bigint => {
            let mut b = Int64Builder::new();
            for v in decoded {
                match v {
                    Some(TagValue::Scalar(Value::Int(i))) => b.append_value(i),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        TagType::Double => {
            let mut b = Float64Builder::new();
            for v in decoded {
                match v {
                    Some(TagValue::Scalar(Value::Float(f))) => b.append_value(f),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        TagType::Boolean => {
            let mut b = BooleanBuilder::new();
            for v in decoded {
                match v {
                    Some(TagValue::Scalar(Value::Bool(x))) => b.append_value(x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        TagType::Timestamptz => {
            let mut b = TimestampMillisecondBuilder::new().with_timezone(tz);
            for v in decoded {
                match v {
                    Some(TagValue::Scalar(Value::Ts(ms))) => b.append_value(ms),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    })
}

fn mismatch(t: TagType, got: &A) -> SqlError {
    SqlError::DatatypeMismatch(format!(
        "the tag's value column is {got}, which does not fit its type {}",
        t.sql_name()
    ))
}

/// Checks that a value column of Arrow type `got` fits tag type `t`.
pub fn check_type(t: TagType, got: &A) -> Result<()> {
    let ok = matches!(got, A::Null)
        || match t {
            TagType::Varchar => matches!(
                got,
                A::Utf8 | A::LargeUtf8 | A::Utf8View | A::Dictionary(..)
            ),
            TagType::Bigint | TagType::Double => got.is_numeric() || *got == A::Boolean,
            TagType::Boolean => *got == A::Boolean || got.is_integer(),
            TagType::Timestamptz => matches!(got, A::Timestamp(..) | A::Date32 | A::Date64),
            TagType::VarcharArray => matches!(
                got,
                A::List(_) | A::LargeList(_) | A::FixedSizeList(..) | A::ListView(_)
            ),
        };
    if ok {
        Ok(())
    } else {
        Err(mismatch(t, got))
    }
}

/// `(contact_id, value)` pairs of a tag query's result.
pub fn values_of(batches: &[RecordBatch], t: TagType) -> Result<Vec<(u64, TagValue)>> {
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
    let mut out = Vec::new();
    for b in batches {
        if b.num_columns() < 2 {
            return Err(SqlError::DatatypeMismatch(
                "a tag's query must return contact_id and value".into(),
            ));
        }
        let ids = cast(b.column(0), &A::Int64).map_err(|_| mismatch(t, b.column(0).data_type()))?;
        let ids = ids.as_primitive::<Int64Type>();
        let src = b.column(1);
        let push = |out: &mut Vec<(u64, TagValue)>, i: usize, v: TagValue| {
            if ids.is_valid(i) && ids.value(i) > 0 {
                out.push((ids.value(i) as u64, v));
            }
        };
        match t {
            TagType::VarcharArray => {
                let target = A::List(Arc::new(Field::new("item", A::Utf8, true)));
                let col = cast(src, &target).map_err(|_| mismatch(t, src.data_type()))?;
                let list = col.as_list::<i32>();
                for i in 0..list.len() {
                    if list.is_null(i) {
                        continue;
                    }
                    let items = list.value(i);
                    let items = items.as_string::<i32>();
                    let v: Vec<String> = (0..items.len())
                        .filter(|j| items.is_valid(*j))
                        .map(|j| items.value(j).to_string())
                        .collect();
                    push(&mut out, i, TagValue::Array(v));
                }
            }
            TagType::Varchar => {
                if !matches!(
                    src.data_type(),
                    A::Utf8 | A::LargeUtf8 | A::Utf8View | A::Dictionary(..)
                ) {
                    return Err(mismatch(t, src.data_type()));
                }
                let col = cast(src, &A::Utf8).map_err(|_| mismatch(t, src.data_type()))?;
                let col = col.as_string::<i32>();
                for i in 0..col.len() {
                    if col.is_valid(i) {
                        push(
                            &mut out,
                            i,
                            TagValue::Scalar(Value::Str(col.value(i).into())),
                        );
                    }
                }
            }
            TagType::Bigint | TagType::Double => {
                let ok = src.data_type().is_numeric() || *src.data_type() == A::Boolean;
                if !ok {
                    return Err(mismatch(t, src.data_type()));
                }
                if t == TagType::Bigint {
                    let col = cast(src, &A::Int64).map_err(|_| mismatch(t, src.data_type()))?;
                    let col = col.as_primitive::<Int64Type>();
                    for i in 0..col.len() {
                        if col.is_valid(i) {
                            push(&mut out, i, TagValue::Scalar(Value::Int(col.value(i))));
                        }
                    }
                } else {
                    let col = cast(src, &A::Float64).map_err(|_| mismatch(t, src.data_type()))?;
                    let col = col.as_primitive::<Float64Type>();
                    for i in 0..col.len() {
                        if col.is_valid(i) {
                            push(&mut out, i, TagValue::Scalar(Value::Float(col.value(i))));
                        }
                    }
                }
            }
            TagType::Boolean => {
                let col = cast(src, &A::Boolean).map_err(|_| mismatch(t, src.data_type()))?;
                let col = col.as_boolean();
                for i in 0..col.len() {
                    if col.is_valid(i) {
                        push(&mut out, i, TagValue::Scalar(Value::Bool(col.value(i))));
                    }
                }
            }
            TagType::Timestamptz => {
                if !matches!(src.data_type(), A::Timestamp(..) | A::Date32 | A::Date64) {
                    return Err(mismatch(t, src.data_type()));
                }
                let target = A::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()));
                let col = cast(src, &target).map_err(|_| mismatch(t, src.data_type()))?;
                let col = col.as_primitive::<TimestampMillisecondType>();
                for i in 0..col.len() {
                    if col.is_valid(i) {
                        push(&mut out, i, TagValue::Scalar(Value::Ts(col.value(i))));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Today's day number (days since 1970-01-01) in `tz`.
pub fn today(tz: Tz) -> i32 {
    let d = chrono::Utc::now().with_timezone(&tz).date_naive();
    (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// Writes `values` as a new complete version of tag `name` (merged over the
/// current version when `merge`), records today's history, switches.
pub async fn materialize(
    store: &Arc<Store>,
    tz: Tz,
    name: &str,
    mut values: Vec<(u64, TagValue)>,
    merge: bool,
) -> Result<u64> {
    let store = store.clone();
    let tag = store
        .catalog()
        .tag(name)
        .cloned()
        .ok_or_else(|| no_tag(name))?;
    values.sort_by_key(|(id, _)| *id);
    for w in values.windows(2) {
        if w[0].0 == w[1].0 && !merge {
            return Err(SqlError::UniqueViolation(format!(
                "contact {} has more than one value for tag \"{name}\" (the query must return one row per contact)",
                w[0].0
            )));
        }
    }
    let mut all: Vec<(u64, TagValue)> = if merge {
        let mut map: std::collections::BTreeMap<u64, TagValue> = Default::default();
        let t = tag.data_type;
        let s2 = store.clone();
        let (tid, ver) = (tag.id, tag.version);
        let old = tokio::task::spawn_blocking(move || -> Result<Vec<(u64, TagValue)>> {
            let mut v = Vec::new();
            s2.scan_tag_values(tid, ver, &mut |id, b| {
                if let Some(x) = TagValue::decode(b, t) {
                    v.push((id, x));
                }
                true
            })?;
            Ok(v)
        })
        .await
        .map_err(|e| SqlError::Storage(cohortdb_storage::StorageError::Corrupt(e.to_string())))??;
        map.extend(old);
        map.extend(values);
        map.into_iter().collect()
    } else {
        std::mem::take(&mut values)
    };
    all.dedup_by_key(|(id, _)| *id);
    let members = all.len() as u64;
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (_, v) in &all {
        for k in v.history_keys() {
            *counts.entry(k).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(HISTORY_TOP_VALUES);
    let history = serde_json::to_vec(&counts).map_err(cohortdb_storage::StorageError::from)?;
    let day = today(tz);
    store
        .update_catalog(|data, batch| -> Result<()> {
            let t = data
                .tags
                .iter_mut()
                .find(|t| t.name == name)
                .ok_or_else(|| no_tag(name))?;
            let new = t.last_version + 1;
            for (id, v) in &all {
                batch.put_tag_value(t.id, new, *id, &v.encode());
            }
            if t.version > 0 {
                batch.delete_tag_values(t.id, t.version - 1);
            }
            batch.put_tag_history(t.id, day, &history);
            batch.delete_tag_history(t.id, i32::MIN, day - HISTORY_DAYS + 1);
            t.version = new;
            t.last_version = new;
            t.members = members;
            t.computed_at_ms = Some(crate::model::rows::now_ms());
            t.status = JobStatus::Done;
            t.error = None;
            Ok(())
        })
        .await?;
    Ok(members)
}

/// Runs one refresh of a SQL tag (called by the scheduler).
pub async fn run_tag(ctx: &StatementContext, name: &str) -> Result<()> {
    let target = Target::Tag(name.to_string());
    let tag = ctx
        .store
        .catalog()
        .tag(name)
        .cloned()
        .ok_or_else(|| no_tag(name))?;
    let Some(query) = tag.definition.clone() else {
        return Err(SqlError::Unsupported(format!(
            "\"{name}\" is an external tag"
        )));
    };
    set_status(&ctx.store, &target, JobStatus::Computing, None).await?;
    let batches = ctx.df.sql(&query).await?.collect().await?;
    let values = values_of(&batches, tag.data_type)?;
    set_status(&ctx.store, &target, JobStatus::Computed, None).await?;
    set_status(&ctx.store, &target, JobStatus::Materializing, None).await?;
    materialize(&ctx.store, ctx.tz, name, values, false).await?;
    Ok(())
}

/// Parses an imported text value of an external tag.
pub fn parse_value(t: TagType, s: &str, tz: &Tz) -> Result<TagValue> {
    let st = s.trim();
    Ok(match t {
        TagType::VarcharArray => {
            let inner = st
                .strip_prefix('{')
                .and_then(|x| x.strip_suffix('}'))
                .unwrap_or(st);
            TagValue::Array(
                inner
                    .split([',', '，'])
                    .map(|x| x.trim().trim_matches('"').to_string())
                    .filter(|x| !x.is_empty())
                    .collect(),
            )
        }
        TagType::Varchar => TagValue::Scalar(Value::Str(s.to_string())),
        TagType::Bigint => TagValue::Scalar(
            crate::model::convert::parse_text(cohortdb_storage::DataType::Bigint, st, tz)
                .map_err(SqlError::InvalidText)?,
        ),
        TagType::Double => TagValue::Scalar(
            crate::model::convert::parse_text(cohortdb_storage::DataType::Double, st, tz)
                .map_err(SqlError::InvalidText)?,
        ),
        TagType::Boolean => TagValue::Scalar(
            crate::model::convert::parse_text(cohortdb_storage::DataType::Boolean, st, tz)
                .map_err(SqlError::InvalidText)?,
        ),
        TagType::Timestamptz => match st.parse::<i64>() {
            // the product's files carry millisecond timestamps
            Ok(ms) => TagValue::Scalar(Value::Ts(ms)),
            Err(_) => TagValue::Scalar(
                crate::model::convert::parse_text(cohortdb_storage::DataType::Timestamptz, st, tz)
                    .map_err(SqlError::InvalidDatetime)?,
            ),
        },
    })
}

/// A `COPY tag FROM STDIN` into an external tag: rows `id_value, value`.
pub struct TagImport {
    store: Arc<Store>,
    tag: TagDef,
    tz: Tz,
    rows: Vec<(String, TagValue)>,
}

impl TagImport {
    /// Starts an import into `tag` (which must be external).
    pub fn begin(store: Arc<Store>, tag: TagDef, tz: Tz) -> Result<TagImport> {
        if tag.external_id_type.is_none() {
            return Err(SqlError::Unsupported(format!(
                "\"{}\" is computed by its query; only EXTERNAL tags are loaded with COPY",
                tag.name
            )));
        }
        Ok(TagImport {
            store,
            tag,
            tz,
            rows: Vec::new(),
        })
    }

    /// The two input columns.
    pub fn columns() -> Vec<(String, cohortdb_storage::DataType)> {
        vec![
            ("id_value".into(), cohortdb_storage::DataType::Varchar),
            ("value".into(), cohortdb_storage::DataType::Varchar),
        ]
    }

    /// Adds one parsed row (`id_value`, `value` as text).
    pub fn push(&mut self, row: &[Value]) -> Result<()> {
        let id = match row.first() {
            Some(Value::Str(s)) if !s.is_empty() => s.clone(),
            _ => return Err(SqlError::NotNull("id_value must not be empty".into())),
        };
        match row.get(1) {
            Some(Value::Str(s)) => {
                let v = parse_value(self.tag.data_type, s, &self.tz)?;
                self.rows.push((id, v));
            }
            _ => {} // no value: nothing to set
        }
        Ok(())
    }

    /// Resolves the identities and writes the new version. Returns rows applied.
    pub async fn commit(self) -> Result<u64> {
        let id_type = self.tag.external_id_type.clone().unwrap_or_default();
        let store = self.store.clone();
        let rows = self.rows;
        let resolved = tokio::task::spawn_blocking(move || -> Result<Vec<(u64, TagValue)>> {
            if id_type == "contact_id" {
                let rows: Vec<(u64, TagValue)> = rows
                    .into_iter()
                    .filter_map(|(k, v)| k.trim().parse::<u64>().ok().map(|id| (id, v)))
                    .collect();
                let mut ids: Vec<u64> = rows.iter().map(|(i, _)| *i).collect();
                ids.sort_unstable();
                ids.dedup();
                let mut found = std::collections::HashSet::new();
                store.scan_contacts(Some(&ids), &mut |id, _| {
                    found.insert(id);
                    true
                })?;
                return Ok(rows
                    .into_iter()
                    .filter(|(i, _)| found.contains(i))
                    .collect());
            }
            let mut map: HashMap<String, u64> = HashMap::new();
            store.scan_identities(&mut |t, _chan, val, contact, _| {
                if t == id_type {
                    map.insert(val.to_string(), contact);
                }
                true
            })?;
            Ok(rows
                .into_iter()
                .filter_map(|(k, v)| map.get(&k).map(|c| (*c, v)))
                .collect())
        })
        .await
        .map_err(|e| SqlError::Storage(cohortdb_storage::StorageError::Corrupt(e.to_string())))??;
        let n = resolved.len() as u64;
        materialize(&self.store, self.tz, &self.tag.name, resolved, true).await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohortdb_storage::groups::{JobStatus, TagType};
    use cohortdb_storage::RefreshPolicy;

    #[test]
    fn values_round_trip() {
        for (t, v) in [
            (
                TagType::VarcharArray,
                TagValue::Array(vec!["足球".into(), "篮球".into()]),
            ),
            (TagType::VarcharArray, TagValue::Array(vec![])),
            (TagType::Double, TagValue::Scalar(Value::Float(356.2))),
            (
                TagType::Varchar,
                TagValue::Scalar(Value::Str("钻石".into())),
            ),
        ] {
            assert_eq!(TagValue::decode(&v.encode(), t), Some(v));
        }
        assert_eq!(
            parse_value(TagType::VarcharArray, "足球,篮球,乒乓球", &Tz::UTC).unwrap(),
            TagValue::Array(vec!["足球".into(), "篮球".into(), "乒乓球".into()])
        );
    }

    /// An external tag keyed by openid: identities map rows to contacts,
    /// unknown openids are skipped, the history counts array elements.
    #[tokio::test]
    async fn external_import_resolves_openids() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let mut b = store.batch();
        b.put_identity("wechat.openid", "wx_oa", "o-alice", 1, 0);
        b.put_identity("wechat.openid", "wx_oa", "o-bob", 2, 0);
        b.put_identity("wechat.unionid", "", "o-carol", 3, 0);
        store.commit(b).await.unwrap();
        store
            .update_catalog(|data, _| -> Result<()> {
                data.tags.push(TagDef {
                    id: 1,
                    name: "tag_sports".into(),
                    comment: None,
                    data_type: TagType::VarcharArray,
                    definition: None,
                    external_id_type: Some("wechat.openid".into()),
                    refresh: RefreshPolicy::Manual,
                    status: JobStatus::Done,
                    members: 0,
                    computed_at_ms: None,
                    error: None,
                    version: 0,
                    last_version: 0,
                });
                Ok(())
            })
            .await
            .unwrap();
        let tag = store.catalog().tag("tag_sports").cloned().unwrap();
        let mut imp = TagImport::begin(store.clone(), tag, Tz::UTC).unwrap();
        for (k, v) in [
            ("o-alice", "football,basketball"),
            ("o-bob", "tennis"),
            ("o-carol", "golf"),
        ] {
            imp.push(&[Value::Str(k.into()), Value::Str(v.into())])
                .unwrap();
        }
        assert_eq!(imp.commit().await.unwrap(), 2);
        let tag = store.catalog().tag("tag_sports").cloned().unwrap();
        assert_eq!(tag.members, 2);
        let col = tag_column(&store, &tag, &[1, 2, 3], "+00:00").unwrap();
        assert_eq!(col.null_count(), 1);
        let mut hist = Vec::new();
        store
            .scan_tag_history(&mut |_, _, v| {
                hist = serde_json::from_slice::<Vec<(String, u64)>>(v).unwrap();
                true
            })
            .unwrap();
        assert_eq!(hist.len(), 3);
    }
}
