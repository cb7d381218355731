//! Group memberships and tag values in RocksDB: bitmaps per `(kind, object,
//! version)` in column family `bitmaps` (their encoding and merge operator
//! are in [`crate::bitmap`]) and tag values / tag history in column family
//! `tags`. The definitions themselves are catalog entries
//! ([`crate::catalog::segments`], re-exported here).
//!
//! A dynamic group's refresh writes a whole new version, then switches the
//! definition's `version` in the catalog in one atomic batch, so readers see
//! either the old or the new complete membership. Static groups edit their
//! single version with merge operands (`adds`, `removes`) that RocksDB
//! combines without a read-modify-write.

use roaring::{RoaringBitmap, RoaringTreemap};

use crate::bitmap::{assemble, decode_op, encode_op, shards};
pub use crate::catalog::segments::{
    GroupDef, GroupKind, JobStatus, RefreshPolicy, TagDef, TagType,
};
use crate::error::{Result, StorageError};
use crate::keys::{self, cf};
use crate::store::{cfh, Batch, Store};

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
}
