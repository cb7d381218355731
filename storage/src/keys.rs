//! Every RocksDB key encoding of cohortdb, in one place.
//!
//! All integers are fixed-width big-endian so that byte order equals numeric
//! order; signed integers have their sign bit flipped first. Strings inside
//! composite keys are terminated by `0x00` (NUL is rejected in identity
//! values). `docs/storage-format.md` documents each column family.

/// Column family names.
pub mod cf {
    /// Catalog document and monotonic counters.
    pub const META: &str = "meta";
    /// Contacts: `contact_id` → encoded row.
    pub const CONTACTS: &str = "contacts";
    /// Identity → contact: `id_type 0 channel_id 0 id_value` → contact id + created_at.
    pub const IDENTITIES: &str = "identities";
    /// Contact → identities: `contact_id | id_type 0 channel_id 0 id_value` → created_at.
    pub const CONTACT_IDENTITIES: &str = "contact_identities";
    /// Events, day × event-type major: see [`super::EventKey`].
    pub const EVENTS: &str = "events";
    /// Rows of user-created tables: `table_id | row_id` → encoded row.
    pub const USER_ROWS: &str = "user_rows";
    /// Primary keys of user tables: `table_id | encoded key values` → row id (u64 BE).
    pub const USER_KEYS: &str = "user_keys";
    /// Roaring bitmaps (group membership, tag values), merged by `bitmap_ops`: see [`super::bitmap_key`].
    pub const BITMAPS: &str = "bitmaps";
    /// Tag values per contact and tag history: see [`super::tag_value_key`], [`super::tag_history_key`].
    pub const TAGS: &str = "tags";
    /// Message ids the HTTP collector has stored, by day received: see [`super::dedupe_key`].
    pub const DEDUPE: &str = "dedupe";
    /// The audit log: `seq: u64 BE` → JSON row (append-only).
    pub const AUDIT: &str = "audit";
    /// The WeChat outbox: sends and recipients (see `crate::wechat`).
    pub const WECHAT: &str = "wechat";
    /// Journey runs and step statistics (see `crate::journeys`).
    pub const JOURNEYS: &str = "journeys";

    /// All column families, in open order.
    pub const ALL: &[&str] = &[
        META,
        CONTACTS,
        IDENTITIES,
        CONTACT_IDENTITIES,
        EVENTS,
        USER_ROWS,
        USER_KEYS,
        BITMAPS,
        TAGS,
        DEDUPE,
        AUDIT,
        WECHAT,
        JOURNEYS,
    ];
}

/// Key of the catalog document in `meta`.
pub const META_CATALOG: &[u8] = b"catalog";
/// Counter keys in `meta` (values: u64 little-endian, merged with `max`).
pub const COUNTER_CONTACT_ID: &[u8] = b"counter/contact_id";
/// Highest event sequence number handed out.
pub const COUNTER_EVENT_SEQ: &[u8] = b"counter/event_seq";
/// Highest user-table row id handed out.
pub const COUNTER_USER_ROW: &[u8] = b"counter/user_row";
/// Prefix of contact aliases in `meta`: `alias/ | source_id u64 BE` → target id (u64 LE).
pub const META_ALIAS_PREFIX: &[u8] = b"alias/";
/// Prefix of named settings in `meta` (`setting/<name>` → JSON document).
pub const META_SETTING_PREFIX: &[u8] = b"setting/";

/// Key of the alias of a merged (retired) contact id: `alias/ | source`.
pub fn alias_key(source: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(META_ALIAS_PREFIX.len() + 8);
    k.extend_from_slice(META_ALIAS_PREFIX);
    k.extend_from_slice(&source.to_be_bytes());
    k
}

/// Key of a named setting in `meta`: `setting/<name>`.
pub fn setting_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(META_SETTING_PREFIX.len() + name.len());
    k.extend_from_slice(META_SETTING_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Key of a message id seen by the collector on UTC day `day` (days since
/// 1970-01-01): `day(i32, order-preserving) | scope | 0 | message_id`. The
/// scope is the sender (app id or write key) so two apps' ids never collide;
/// whole days are dropped with one range delete of [`dedupe_day_prefix`].
pub fn dedupe_key(day: i32, scope: &str, message_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + scope.len() + message_id.len());
    k.extend_from_slice(&flip_i32(day).to_be_bytes());
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.extend_from_slice(message_id.as_bytes());
    k
}

/// The first key of day `day` in the dedupe table.
pub fn dedupe_day_prefix(day: i32) -> [u8; 4] {
    flip_i32(day).to_be_bytes()
}

#[inline]
fn flip_i32(v: i32) -> u32 {
    (v as u32) ^ 0x8000_0000
}
#[inline]
fn unflip_i32(v: u32) -> i32 {
    (v ^ 0x8000_0000) as i32
}
#[inline]
fn flip_i64(v: i64) -> u64 {
    (v as u64) ^ 0x8000_0000_0000_0000
}
#[inline]
fn unflip_i64(v: u64) -> i64 {
    (v ^ 0x8000_0000_0000_0000) as i64
}

/// Key of a contact row.
pub fn contact_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Decodes a contact key.
pub fn decode_contact_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Length of an event key.
pub const EVENT_KEY_LEN: usize = 32;

/// The key of one event: `day(i32) | event_type(u32) | contact(u64) | ts_ms(i64) | seq(u64)`.
///
/// A scan of one `(day, event_type)` prefix yields events ordered by contact,
/// then time: a funnel over k event types and d days is a k·d-way merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventKey {
    /// UTC day number of `ts_ms`.
    pub day: i32,
    /// Event type id from the catalog.
    pub event_type: u32,
    /// Contact id.
    pub contact: u64,
    /// Event time, milliseconds since the epoch (UTC).
    pub ts_ms: i64,
    /// Unique sequence number (makes equal-time events distinct keys).
    pub seq: u64,
}

impl EventKey {
    /// Encodes the key.
    pub fn encode(&self) -> [u8; EVENT_KEY_LEN] {
        let mut k = [0u8; EVENT_KEY_LEN];
        k[0..4].copy_from_slice(&flip_i32(self.day).to_be_bytes());
        k[4..8].copy_from_slice(&self.event_type.to_be_bytes());
        k[8..16].copy_from_slice(&self.contact.to_be_bytes());
        k[16..24].copy_from_slice(&flip_i64(self.ts_ms).to_be_bytes());
        k[24..32].copy_from_slice(&self.seq.to_be_bytes());
        k
    }

    /// Decodes a key; `None` when it is not 32 bytes.
    pub fn decode(k: &[u8]) -> Option<EventKey> {
        if k.len() != EVENT_KEY_LEN {
            return None;
        }
        Some(EventKey {
            day: unflip_i32(u32::from_be_bytes(k[0..4].try_into().ok()?)),
            event_type: u32::from_be_bytes(k[4..8].try_into().ok()?),
            contact: u64::from_be_bytes(k[8..16].try_into().ok()?),
            ts_ms: unflip_i64(u64::from_be_bytes(k[16..24].try_into().ok()?)),
            seq: u64::from_be_bytes(k[24..32].try_into().ok()?),
        })
    }
}

/// Prefix of all events of one day.
pub fn event_day_prefix(day: i32) -> [u8; 4] {
    flip_i32(day).to_be_bytes()
}

/// Prefix of all events of one type on one day.
pub fn event_day_type_prefix(day: i32, event_type: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[0..4].copy_from_slice(&flip_i32(day).to_be_bytes());
    k[4..8].copy_from_slice(&event_type.to_be_bytes());
    k
}

/// Prefix of one contact's events of one type on one day.
pub fn event_day_type_contact_prefix(day: i32, event_type: u32, contact: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[0..8].copy_from_slice(&event_day_type_prefix(day, event_type));
    k[8..16].copy_from_slice(&contact.to_be_bytes());
    k
}

/// Key of an identity: `id_type 0 channel_id 0 id_value`.
pub fn identity_key(id_type: &str, channel_id: &str, id_value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id_type.len() + channel_id.len() + id_value.len() + 2);
    k.extend_from_slice(id_type.as_bytes());
    k.push(0);
    k.extend_from_slice(channel_id.as_bytes());
    k.push(0);
    k.extend_from_slice(id_value.as_bytes());
    k
}

/// Splits an identity key into `(id_type, channel_id, id_value)`.
pub fn decode_identity_key(k: &[u8]) -> Option<(String, String, String)> {
    let mut parts = k.splitn(3, |b| *b == 0);
    let t = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let c = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let v = std::str::from_utf8(parts.next()?).ok()?.to_string();
    Some((t, c, v))
}

/// Key of a contact → identity link: `contact_id | identity_key`.
pub fn contact_identity_key(contact: u64, identity: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + identity.len());
    k.extend_from_slice(&contact.to_be_bytes());
    k.extend_from_slice(identity);
    k
}

/// Key of a user-table row: `table_id | row_id`.
pub fn user_row_key(table_id: u32, row_id: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[0..4].copy_from_slice(&table_id.to_be_bytes());
    k[4..12].copy_from_slice(&row_id.to_be_bytes());
    k
}

/// Key of a user-table primary key entry: `table_id | key` (the key
/// values encoded with [`crate::codec::encode_row`]).
pub fn user_pk_key(table_id: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&table_id.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Prefix of all rows of a user table.
pub fn user_table_prefix(table_id: u32) -> [u8; 4] {
    table_id.to_be_bytes()
}

/// Bitmap kind byte: membership of a group.
pub const BITMAP_GROUP: u8 = b'G';

/// Key of one shard of a versioned bitmap: `kind | object_id | version | shard` (13 bytes).
///
/// A shard holds the contacts whose id satisfies `id >> 20 == shard`, as a
/// 32-bit roaring bitmap of the ids' low 32 bits.
pub fn bitmap_key(kind: u8, object: u32, version: u32, shard: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..9].copy_from_slice(&bitmap_prefix(kind, object, version));
    k[9..13].copy_from_slice(&shard.to_be_bytes());
    k
}

/// Prefix of every shard of one version of a bitmap: `kind | object_id | version`.
pub fn bitmap_prefix(kind: u8, object: u32, version: u32) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = kind;
    k[1..5].copy_from_slice(&object.to_be_bytes());
    k[5..9].copy_from_slice(&version.to_be_bytes());
    k
}

/// Key prefix byte of tag values in the `tags` family.
pub const TAG_VALUE: u8 = b'V';
/// Key prefix byte of tag history in the `tags` family.
pub const TAG_HISTORY: u8 = b'H';

/// Key of one contact's value of a tag version: `'V' | tag_id | version | contact_id` (17 bytes).
pub fn tag_value_key(tag: u32, version: u32, contact: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&tag_value_prefix(tag, version));
    k[9..17].copy_from_slice(&contact.to_be_bytes());
    k
}

/// Prefix of all values of one tag version: `'V' | tag_id | version`.
pub fn tag_value_prefix(tag: u32, version: u32) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = TAG_VALUE;
    k[1..5].copy_from_slice(&tag.to_be_bytes());
    k[5..9].copy_from_slice(&version.to_be_bytes());
    k
}

/// Key of a tag's per-value counts of one day: `'H' | tag_id | day (i32, flipped)` (9 bytes).
pub fn tag_history_key(tag: u32, day: i32) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = TAG_HISTORY;
    k[1..5].copy_from_slice(&tag.to_be_bytes());
    k[5..9].copy_from_slice(&flip_i32(day).to_be_bytes());
    k
}

/// Decodes a tag history key into `(tag_id, day)`.
pub fn decode_tag_history_key(k: &[u8]) -> Option<(u32, i32)> {
    if k.len() != 9 || k[0] != TAG_HISTORY {
        return None;
    }
    Some((
        u32::from_be_bytes(k[1..5].try_into().ok()?),
        unflip_i32(u32::from_be_bytes(k[5..9].try_into().ok()?)),
    ))
}

/// The smallest key greater than every key starting with `prefix`
/// (`None` when the prefix is all `0xFF`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut v = prefix.to_vec();
    while let Some(last) = v.pop() {
        if last != 0xFF {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_pk_keys_stay_inside_their_table_range() {
        let k = user_pk_key(7, b"abc");
        assert!(k.starts_with(&user_table_prefix(7)));
        assert!(k.as_slice() < user_table_prefix(8).as_slice());
        assert_eq!(&k[4..], b"abc");
    }

    #[test]
    fn event_keys_sort_by_day_type_contact_time() {
        let a = EventKey {
            day: -1,
            event_type: 9,
            contact: 9,
            ts_ms: -5,
            seq: 9,
        };
        let b = EventKey {
            day: 0,
            event_type: 1,
            contact: 1,
            ts_ms: 0,
            seq: 0,
        };
        let c = EventKey {
            day: 0,
            event_type: 1,
            contact: 1,
            ts_ms: 1,
            seq: 0,
        };
        let d = EventKey {
            day: 0,
            event_type: 1,
            contact: 2,
            ts_ms: -100,
            seq: 0,
        };
        let keys = [a, b, c, d];
        for w in keys.windows(2) {
            assert!(w[0].encode() < w[1].encode());
            assert!(w[0] < w[1]);
        }
        for k in keys {
            assert_eq!(EventKey::decode(&k.encode()), Some(k));
        }
    }

    #[test]
    fn identity_keys_round_trip() {
        let k = identity_key("wechat.openid", "wx_oa", "o123");
        assert_eq!(
            decode_identity_key(&k),
            Some(("wechat.openid".into(), "wx_oa".into(), "o123".into()))
        );
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
    }
}
