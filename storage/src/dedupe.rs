//! The dedupe table: message ids the HTTP collector has stored, so that a
//! retried request stores its events once. One key per `(scope,
//! message_id)` under the UTC day it was received (see
//! [`crate::keys::dedupe_key`]); the value is the receive time (ms, i64 LE).
//! A lookup reads today's and yesterday's key and honours the exact window;
//! days past the window go with one range delete.

use crate::error::Result;
use crate::keys::{self, cf};
use crate::store::{cfh, Batch, Store};

const DAY_MS: i64 = 86_400_000;

fn utc_day(ms: i64) -> i32 {
    ms.div_euclid(DAY_MS) as i32
}

impl Store {
    /// True when `message_id` of `scope` was stored within `window_ms`
    /// before `now_ms` (the window is at most one day).
    pub fn dedupe_seen(
        &self,
        scope: &str,
        message_id: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<bool> {
        let today = utc_day(now_ms);
        for day in [today, today - 1] {
            let k = keys::dedupe_key(day, scope, message_id);
            if let Some(v) = self.db.get_cf(self.cf(cf::DEDUPE), k)? {
                let at = v
                    .as_slice()
                    .try_into()
                    .map(i64::from_le_bytes)
                    .unwrap_or(i64::MIN);
                if now_ms.saturating_sub(at) < window_ms {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

impl Batch {
    /// Records `message_id` of `scope` as stored at `now_ms`.
    pub fn put_dedupe(&mut self, scope: &str, message_id: &str, now_ms: i64) {
        self.wb.put_cf(
            cfh(&self.db, cf::DEDUPE),
            keys::dedupe_key(utc_day(now_ms), scope, message_id),
            now_ms.to_le_bytes(),
        );
    }

    /// Forgets every message id received before the UTC day of `now_ms`
    /// minus one (outside any window of at most a day).
    pub fn expire_dedupe(&mut self, now_ms: i64) {
        self.wb.delete_range_cf(
            cfh(&self.db, cf::DEDUPE),
            keys::dedupe_day_prefix(i32::MIN),
            keys::dedupe_day_prefix(utc_day(now_ms) - 1),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreOptions};

    const H: i64 = 3_600_000;

    #[tokio::test]
    async fn window_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let t0 = 20_000 * 24 * H + 23 * H; // late on a day
        let mut b = store.batch();
        b.put_dedupe("app1", "m-1", t0);
        store.commit(b).await.unwrap();
        // across midnight, inside the window
        assert!(store
            .dedupe_seen("app1", "m-1", t0 + 2 * H, 24 * H)
            .unwrap());
        // another scope, another id
        assert!(!store.dedupe_seen("app2", "m-1", t0, 24 * H).unwrap());
        assert!(!store.dedupe_seen("app1", "m-2", t0, 24 * H).unwrap());
        // past the window
        assert!(!store
            .dedupe_seen("app1", "m-1", t0 + 25 * H, 24 * H)
            .unwrap());
        // expiry two days later drops it; an id of the current day stays
        let t2 = t0 + 48 * H;
        let mut b = store.batch();
        b.put_dedupe("app1", "m-3", t2);
        b.expire_dedupe(t2);
        store.commit(b).await.unwrap();
        assert!(store.dedupe_seen("app1", "m-3", t2, 24 * H).unwrap());
        let k = crate::keys::dedupe_key(20_000, "app1", "m-1");
        assert!(store
            .db
            .get_cf(store.cf(crate::keys::cf::DEDUPE), k)
            .unwrap()
            .is_none());
    }
}
