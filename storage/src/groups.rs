//! Groups and tags in storage: their catalog definitions, membership as
//! sharded roaring bitmaps (column family `bitmaps`, merge operator
//! `bitmap_ops`) and tag values / tag history (column family `tags`).
//!
//! A bitmap is stored per `(kind, object, version)` in shards of 2^20
//! contact ids. A dynamic group's refresh writes a whole new version, then
//! switches the definition's `version` in the catalog in one atomic batch, so
//! readers see either the old or the new complete membership. Static groups
//! edit their single version with merge operands (`adds`, `removes`) that
//! RocksDB combines without a read-modify-write.

use std::io::Cursor;

use roaring::{RoaringBitmap, RoaringTreemap};
use rocksdb::MergeOperands;
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::{Result, StorageError};
use crate::keys::{self, cf};
use crate::store::{cfh, Batch, Store};

/// Contact ids per bitmap shard (as a power of two).
pub const SHARD_BITS: u32 = 20;

/// Dynamic (query-defined) or static (edited) group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// Membership is the result of a query, recomputed by refreshes.
    Dynamic,
    /// Membership is edited with `ALTER GROUP ... ADD|REMOVE CONTACTS`.
    Static,
}

impl GroupKind {
    /// Name shown in `groups.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Dynamic => "dynamic",
            GroupKind::Static => "static",
        }
    }
}

/// When a definition is recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefreshPolicy {
    /// Only on `REFRESH GROUP|TAG`.
    Manual,
    /// Every day at 02:00 server time (and on `REFRESH`).
    Daily,
}

impl RefreshPolicy {
    /// Name shown in `groups.refresh`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshPolicy::Manual => "manual",
            RefreshPolicy::Daily => "daily",
        }
    }
}

/// State of the last (or running) computation of a group or tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Queued for the scheduler.
    Pending,
    /// The query is running.
    Computing,
    /// The result is complete in memory.
    Computed,
    /// The new version is being written and switched in.
    Materializing,
    /// The current version is complete and visible.
    Done,
    /// The last computation failed (`error` says why); the previous version stands.
    Failed,
}

impl JobStatus {
    /// Name shown in `groups.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Computing => "computing",
            JobStatus::Computed => "computed",
            JobStatus::Materializing => "materializing",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    /// True while a job is queued or running.
    pub fn in_progress(self) -> bool {
        !matches!(self, JobStatus::Done | JobStatus::Failed)
    }
}

/// A group definition (catalog entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupDef {
    /// Internal id (bitmap key).
    pub id: u32,
    /// The group id users write (`group_vip`).
    pub name: String,
    /// `COMMENT '...'`.
    pub comment: Option<String>,
    /// Dynamic or static.
    pub kind: GroupKind,
    /// The defining query of a dynamic group.
    pub definition: Option<String>,
    /// Refresh policy.
    pub refresh: RefreshPolicy,
    /// Status of the last refresh.
    pub status: JobStatus,
    /// Members of the current version (static groups: at the last edit).
    pub members: u64,
    /// When the current version was computed (ms since the epoch).
    pub computed_at_ms: Option<i64>,
    /// Error of the last failed refresh.
    pub error: Option<String>,
    /// The visible bitmap version.
    pub version: u32,
    /// The last version handed out (versions are never reused).
    pub last_version: u32,
}

/// The value type of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagType {
    /// Text.
    Varchar,
    /// 64-bit integer.
    Bigint,
    /// 64-bit float.
    Double,
    /// Boolean.
    Boolean,
    /// Instant (ms).
    Timestamptz,
    /// Array of text (`VARCHAR[]`).
    VarcharArray,
}

impl TagType {
    /// The SQL name (`tags.type`).
    pub fn sql_name(self) -> &'static str {
        match self {
            TagType::Varchar => "VARCHAR",
            TagType::Bigint => "BIGINT",
            TagType::Double => "DOUBLE",
            TagType::Boolean => "BOOLEAN",
            TagType::Timestamptz => "TIMESTAMPTZ",
            TagType::VarcharArray => "VARCHAR[]",
        }
    }

    /// Parses a type as written in `CREATE TAG ... TYPE t`.
    pub fn parse(name: &str) -> Option<TagType> {
        let n = name.trim().to_ascii_uppercase().replace(' ', "");
        Some(match n.as_str() {
            "VARCHAR" | "TEXT" | "STRING" => TagType::Varchar,
            "BIGINT" | "INT8" | "INT" | "INTEGER" => TagType::Bigint,
            "DOUBLE" | "DOUBLEPRECISION" | "FLOAT8" | "FLOAT" => TagType::Double,
            "BOOLEAN" | "BOOL" => TagType::Boolean,
            "TIMESTAMPTZ" | "TIMESTAMP" | "TIMESTAMPWITHTIMEZONE" => TagType::Timestamptz,
            "VARCHAR[]" | "TEXT[]" | "STRING[]" => TagType::VarcharArray,
            _ => return None,
        })
    }
}

/// A tag definition (catalog entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagDef {
    /// Internal id (key prefix of values and history).
    pub id: u32,
    /// The tag id users write (`tag_level`).
    pub name: String,
    /// `COMMENT '...'`.
    pub comment: Option<String>,
    /// Value type.
    pub data_type: TagType,
    /// The defining query (`contact_id, value`) of a SQL tag.
    pub definition: Option<String>,
    /// Identity type of an external tag's rows (`wechat.openid`).
    pub external_id_type: Option<String>,
    /// Refresh policy.
    pub refresh: RefreshPolicy,
    /// Status of the last computation or import.
    pub status: JobStatus,
    /// Contacts with a value in the current version.
    pub members: u64,
    /// When the current version was computed (ms since the epoch).
    pub computed_at_ms: Option<i64>,
    /// Error of the last failed computation.
    pub error: Option<String>,
    /// The visible values version.
    pub version: u32,
    /// The last version handed out.
    pub last_version: u32,
}

impl Catalog {
    /// Group by id (`group_vip`).
    pub fn group(&self, name: &str) -> Option<&GroupDef> {
        self.data().groups.iter().find(|g| g.name == name)
    }

    /// Tag by id (`tag_level`).
    pub fn tag(&self, name: &str) -> Option<&TagDef> {
        self.data().tags.iter().find(|t| t.name == name)
    }
}

// ---------------------------------------------------------------------------
// Bitmap merge operator

/// Encodes a bitmap edit (also the stored value format: `removes` empty):
/// `len(adds): u32 LE | adds | removes`, each a portable roaring serialization.
pub fn encode_op(adds: &RoaringBitmap, removes: &RoaringBitmap) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + adds.serialized_size() + removes.serialized_size());
    out.extend_from_slice(&(adds.serialized_size() as u32).to_le_bytes());
    adds.serialize_into(&mut out).expect("write to Vec");
    removes.serialize_into(&mut out).expect("write to Vec");
    out
}

/// Decodes [`encode_op`] bytes into `(adds, removes)`.
pub fn decode_op(b: &[u8]) -> Option<(RoaringBitmap, RoaringBitmap)> {
    let n = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let adds = RoaringBitmap::deserialize_unchecked_from(Cursor::new(b.get(4..4 + n)?)).ok()?;
    let removes = RoaringBitmap::deserialize_unchecked_from(Cursor::new(b.get(4 + n..)?)).ok()?;
    Some((adds, removes))
}

/// Full merge: the stored bitmap with every edit applied in order.
pub fn bitmap_full_merge(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut cur = match existing {
        Some(b) => decode_op(b)?.0,
        None => RoaringBitmap::new(),
    };
    for op in operands {
        let (a, r) = decode_op(op)?;
        cur -= r;
        cur |= a;
    }
    Some(encode_op(&cur, &RoaringBitmap::new()))
}

/// Partial merge: several edits combined into one (later edits win).
pub fn bitmap_partial_merge(
    _key: &[u8],
    _existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut adds = RoaringBitmap::new();
    let mut removes = RoaringBitmap::new();
    for op in operands {
        let (a, r) = decode_op(op)?;
        adds -= &r;
        adds |= &a;
        removes -= &a;
        removes |= r;
    }
    Some(encode_op(&adds, &removes))
}

/// Splits a set of contact ids into shards: `(shard, bitmap of the ids' low 32 bits)`.
pub fn shards(set: &RoaringTreemap) -> Vec<(u32, RoaringBitmap)> {
    let mut out = Vec::new();
    let per_high = 1u32 << (32 - SHARD_BITS);
    for (high, bm) in set.bitmaps() {
        let (Some(min), Some(max)) = (bm.min(), bm.max()) else {
            continue;
        };
        for s in (min >> SHARD_BITS)..=(max >> SHARD_BITS) {
            let lo = s << SHARD_BITS;
            let hi = lo as u64 + (1u64 << SHARD_BITS);
            let mut range = RoaringBitmap::new();
            range.insert_range(lo..=(hi - 1) as u32);
            let part = bm & &range;
            if !part.is_empty() {
                out.push((high * per_high + s, part));
            }
        }
    }
    out
}

fn assemble(parts: Vec<(u32, RoaringBitmap)>) -> RoaringTreemap {
    let per_high = 1u32 << (32 - SHARD_BITS);
    let mut by_high: Vec<(u32, RoaringBitmap)> = Vec::new();
    for (shard, bm) in parts {
        let high = shard / per_high;
        match by_high.last_mut() {
            Some((h, acc)) if *h == high => *acc |= bm,
            _ => by_high.push((high, bm)),
        }
    }
    RoaringTreemap::from_bitmaps(by_high)
}

// ---------------------------------------------------------------------------
// Reads

impl Store {
    /// The set stored under `(kind, object, version)` (empty when absent).
    pub fn read_bitmap(&self, kind: u8, object: u32, version: u32) -> Result<RoaringTreemap> {
        let prefix = keys::bitmap_prefix(kind, object, version);
        let mut it = self.db.raw_iterator_cf(self.cf(cf::BITMAPS));
        it.seek(prefix);
        let mut parts = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) || k.len() != 13 {
                break;
            }
            let shard = u32::from_be_bytes(k[9..13].try_into().expect("13-byte key"));
            let (bm, _) = decode_op(v)
                .ok_or_else(|| StorageError::Corrupt(format!("bitmap shard {shard}")))?;
            parts.push((shard, bm));
            it.next();
        }
        it.status()?;
        Ok(assemble(parts))
    }

    /// Visits the values of one tag version in contact order; `f` returns false to stop.
    pub fn scan_tag_values(
        &self,
        tag: u32,
        version: u32,
        f: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<()> {
        let prefix = keys::tag_value_prefix(tag, version);
        let mut it = self.db.raw_iterator_cf(self.cf(cf::TAGS));
        it.seek(prefix);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) || k.len() != 17 {
                break;
            }
            let id = u64::from_be_bytes(k[9..17].try_into().expect("17-byte key"));
            if !f(id, v) {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// The values of one tag version for the given contacts.
    pub fn get_tag_values(
        &self,
        tag: u32,
        version: u32,
        ids: &[u64],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let keys: Vec<[u8; 17]> = ids
            .iter()
            .map(|i| keys::tag_value_key(tag, version, *i))
            .collect();
        self.db
            .batched_multi_get_cf(self.cf(cf::TAGS), keys.iter(), false)
            .into_iter()
            .map(|r| Ok(r?.map(|v| v.to_vec())))
            .collect()
    }

    /// Visits tag history entries `(tag_id, day, encoded counts)` in key order.
    pub fn scan_tag_history(&self, f: &mut dyn FnMut(u32, i32, &[u8]) -> bool) -> Result<()> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf::TAGS));
        it.seek([keys::TAG_HISTORY]);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let Some((tag, day)) = keys::decode_tag_history_key(k) else {
                break;
            };
            if !f(tag, day, v) {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Writes

impl Batch {
    /// Writes `set` as the complete content of `(kind, object, version)`
    /// (the version must be new: existing shards are not cleared).
    pub fn put_bitmap(&mut self, kind: u8, object: u32, version: u32, set: &RoaringTreemap) {
        let cfh = cfh(&self.db, cf::BITMAPS);
        let empty = RoaringBitmap::new();
        for (shard, bm) in shards(set) {
            self.wb.put_cf(
                cfh,
                keys::bitmap_key(kind, object, version, shard),
                encode_op(&bm, &empty),
            );
        }
    }

    /// Adds and removes contacts of `(kind, object, version)` through merge operands.
    pub fn edit_bitmap(
        &mut self,
        kind: u8,
        object: u32,
        version: u32,
        adds: &RoaringTreemap,
        removes: &RoaringTreemap,
    ) {
        let cfh = cfh(&self.db, cf::BITMAPS);
        let mut parts: std::collections::BTreeMap<u32, (RoaringBitmap, RoaringBitmap)> =
            Default::default();
        for (s, bm) in shards(adds) {
            parts.entry(s).or_default().0 = bm;
        }
        for (s, bm) in shards(removes) {
            parts.entry(s).or_default().1 = bm;
        }
        for (shard, (a, r)) in parts {
            self.wb.merge_cf(
                cfh,
                keys::bitmap_key(kind, object, version, shard),
                encode_op(&a, &r),
            );
        }
    }

    /// Deletes every shard of `(kind, object, version)`.
    pub fn delete_bitmap(&mut self, kind: u8, object: u32, version: u32) {
        let from = keys::bitmap_prefix(kind, object, version);
        let to = keys::prefix_successor(&from).expect("prefix has a successor");
        self.wb
            .delete_range_cf(cfh(&self.db, cf::BITMAPS), from.to_vec(), to);
    }

    /// Writes one contact's value of a tag version (encoded row, see `docs/storage-format.md`).
    pub fn put_tag_value(&mut self, tag: u32, version: u32, contact: u64, value: &[u8]) {
        self.wb.put_cf(
            cfh(&self.db, cf::TAGS),
            keys::tag_value_key(tag, version, contact),
            value,
        );
    }

    /// Deletes every value of a tag version.
    pub fn delete_tag_values(&mut self, tag: u32, version: u32) {
        let from = keys::tag_value_prefix(tag, version);
        let to = keys::prefix_successor(&from).expect("prefix has a successor");
        self.wb
            .delete_range_cf(cfh(&self.db, cf::TAGS), from.to_vec(), to);
    }

    /// Writes (replaces) a tag's per-value counts of one day.
    pub fn put_tag_history(&mut self, tag: u32, day: i32, counts: &[u8]) {
        self.wb.put_cf(
            cfh(&self.db, cf::TAGS),
            keys::tag_history_key(tag, day),
            counts,
        );
    }

    /// Deletes a tag's history days in `[from_day, to_day)`.
    pub fn delete_tag_history(&mut self, tag: u32, from_day: i32, to_day: i32) {
        self.wb.delete_range_cf(
            cfh(&self.db, cf::TAGS),
            keys::tag_history_key(tag, from_day),
            keys::tag_history_key(tag, to_day),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_round_trip() {
        let mut set = RoaringTreemap::new();
        set.insert(1);
        set.insert((1 << 20) - 1);
        set.insert(1 << 20);
        set.insert(5 << 20 | 7);
        set.insert((1u64 << 32) + 3);
        let parts = shards(&set);
        assert_eq!(parts.len(), 4);
        assert_eq!(assemble(parts), set);
    }

    #[test]
    fn static_edits_merge_in_rocksdb_and_versions_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let set = |v: &[u64]| v.iter().copied().collect::<RoaringTreemap>();
        rt.block_on(async {
            let mut b = store.batch();
            b.edit_bitmap(BITMAP, 7, 0, &set(&[1, 2, 3, 5 << 20]), &set(&[]));
            store.commit(b).await.unwrap();
            let mut b = store.batch();
            b.edit_bitmap(BITMAP, 7, 0, &set(&[4]), &set(&[2, 5 << 20]));
            b.edit_bitmap(BITMAP, 7, 0, &set(&[2]), &set(&[]));
            store.commit(b).await.unwrap();
            let mut b = store.batch();
            b.put_bitmap(BITMAP, 7, 1, &set(&[9]));
            store.commit(b).await.unwrap();
        });
        assert_eq!(store.read_bitmap(BITMAP, 7, 0).unwrap(), set(&[1, 2, 3, 4]));
        assert_eq!(store.read_bitmap(BITMAP, 7, 1).unwrap(), set(&[9]));
        rt.block_on(async {
            let mut b = store.batch();
            b.delete_bitmap(BITMAP, 7, 0);
            store.commit(b).await.unwrap();
        });
        assert!(store.read_bitmap(BITMAP, 7, 0).unwrap().is_empty());
        // compaction runs the full merge on what is left
        store.shutdown().unwrap();
        drop(store);
        let store = Store::open(dir.path(), Default::default()).unwrap();
        assert_eq!(store.read_bitmap(BITMAP, 7, 1).unwrap(), set(&[9]));
    }

    const BITMAP: u8 = keys::BITMAP_GROUP;

    #[test]
    fn merge_applies_edits_in_order() {
        let bm = |v: &[u32]| v.iter().copied().collect::<RoaringBitmap>();
        let a = encode_op(&bm(&[1, 2, 3]), &bm(&[]));
        let b = encode_op(&bm(&[4]), &bm(&[2]));
        let c = encode_op(&bm(&[2]), &bm(&[4]));
        // combine b and c partially, then apply to a
        let (mut adds, mut removes) = (RoaringBitmap::new(), RoaringBitmap::new());
        for op in [&b, &c] {
            let (x, r) = decode_op(op).unwrap();
            adds -= &r;
            adds |= &x;
            removes -= &x;
            removes |= r;
        }
        let mut cur = decode_op(&a).unwrap().0;
        cur -= removes;
        cur |= adds;
        assert_eq!(cur, bm(&[1, 2, 3]));
    }
}
