//! The stored form of contact sets: roaring bitmaps in shards of 2^20
//! contact ids, the edit encoding (`adds`, `removes`) and the RocksDB merge
//! operator `bitmap_ops` that applies edits without a read-modify-write.

use std::io::Cursor;

use roaring::{RoaringBitmap, RoaringTreemap};
use rocksdb::MergeOperands;

/// Contact ids per bitmap shard (as a power of two).
pub const SHARD_BITS: u32 = 20;

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

/// Joins shards back into one set (the inverse of [`shards`]).
pub fn assemble(parts: Vec<(u32, RoaringBitmap)>) -> RoaringTreemap {
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
