//! The audit log table (`audit` column family): one row per audited
//! action, keyed by a sequence number, written in the same batch as the
//! change it records where the caller has that batch. Append-only: nothing
//! here deletes or rewrites a row.
//!
//! Tamper evidence: each stored row carries `hash = SHA-256(previous hash
//! ‖ seq ‖ row JSON)` (the first row's previous hash is all zeros), so
//! [`Store::verify_audit`] finds the first row that was changed, removed or
//! inserted out of sequence.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::keys::cf;
use crate::store::{cfh, Batch, Store};

/// One audit row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// When (ms since the epoch).
    pub ts: i64,
    /// Who.
    pub user_name: String,
    /// What (`login`, `login_failed`, `create_user`, `grant_role`, …).
    pub action: String,
    /// The kind of object (`user`, `contact`, `group`, …).
    pub object_type: String,
    /// Its id.
    pub object_id: String,
    /// Ids, counts and column names: never values or passwords.
    pub detail: String,
}

/// A stored row: the row and its chain hash (hex).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    row: AuditRow,
    hash: String,
}

/// The head of the chain: last sequence number and its hash.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Head {
    seq: u64,
    hash: [u8; 32],
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn link(prev: &[u8; 32], seq: u64, row: &AuditRow) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev);
    ctx.update(&seq.to_be_bytes());
    ctx.update(&serde_json::to_vec(row).expect("audit rows serialize"));
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The head of the log (zero when empty).
pub(crate) fn last_head(db: &rocksdb::DB) -> Result<Head> {
    let mut it = db.raw_iterator_cf(cfh(db, cf::AUDIT));
    it.seek_to_last();
    let head = match (it.key(), it.value()) {
        (Some(k), Some(v)) => {
            let seq = u64::from_be_bytes(
                k.try_into()
                    .map_err(|_| StorageError::Corrupt("audit key".into()))?,
            );
            let stored: Stored = serde_json::from_slice(v)?;
            let mut hash = [0u8; 32];
            for (i, h) in hash.iter_mut().enumerate() {
                *h = u8::from_str_radix(stored.hash.get(2 * i..2 * i + 2).unwrap_or("00"), 16)
                    .unwrap_or(0);
            }
            Head { seq, hash }
        }
        _ => Head::default(),
    };
    it.status()?;
    Ok(head)
}

/// The outcome of [`Store::verify_audit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheck {
    /// Rows checked.
    pub rows: u64,
    /// The first row whose link is broken (changed, missing before it, or
    /// out of sequence), if any.
    pub first_broken: Option<u64>,
}

impl Store {
    /// Visits the audit rows in order: `(seq, row)`; stop by returning false.
    pub fn scan_audit(&self, f: &mut dyn FnMut(u64, AuditRow) -> bool) -> Result<()> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf::AUDIT));
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let seq = u64::from_be_bytes(
                k.try_into()
                    .map_err(|_| StorageError::Corrupt("audit key".into()))?,
            );
            let stored: Stored = serde_json::from_slice(v)?;
            if !f(seq, stored.row) {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// Recomputes the hash chain from the first row.
    pub fn verify_audit(&self) -> Result<AuditCheck> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf::AUDIT));
        it.seek_to_first();
        let (mut prev, mut expect_seq, mut rows) = ([0u8; 32], 1u64, 0u64);
        let mut first_broken = None;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            rows += 1;
            let seq = u64::from_be_bytes(
                k.try_into()
                    .map_err(|_| StorageError::Corrupt("audit key".into()))?,
            );
            let ok = match serde_json::from_slice::<Stored>(v) {
                Ok(stored) => {
                    let h = link(&prev, seq, &stored.row);
                    let ok = seq == expect_seq && hex(&h) == stored.hash;
                    prev = h;
                    ok
                }
                Err(_) => false,
            };
            if !ok && first_broken.is_none() {
                first_broken = Some(seq);
            }
            expect_seq = seq + 1;
            it.next();
        }
        it.status()?;
        Ok(AuditCheck { rows, first_broken })
    }

    /// Appends `row` in a batch of its own (for actions that change nothing
    /// else, such as logins).
    pub async fn audit(&self, row: AuditRow) -> Result<()> {
        let mut b = self.batch();
        b.put_audit(self, &row);
        self.commit(b).await
    }
}

impl Batch {
    /// Adds `row` to this batch under the next sequence number of `store`.
    pub fn put_audit(&mut self, store: &Store, row: &AuditRow) {
        let mut head = store.audit_head.lock().expect("audit head");
        let cur = match *head {
            Some((seq, hash)) => Head { seq, hash },
            None => last_head(&store.db).unwrap_or_else(|e| {
                tracing::error!("reading the audit log's head failed ({e}): the chain restarts");
                Head::default()
            }),
        };
        let seq = cur.seq + 1;
        let hash = link(&cur.hash, seq, row);
        *head = Some((seq, hash));
        let stored = Stored {
            row: row.clone(),
            hash: hex(&hash),
        };
        self.wb.put_cf(
            cfh(&self.db, cf::AUDIT),
            seq.to_be_bytes(),
            serde_json::to_vec(&stored).expect("audit rows serialize"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn row(action: &str) -> AuditRow {
        AuditRow {
            ts: 1,
            user_name: "admin".into(),
            action: action.into(),
            object_type: "user".into(),
            object_id: "bob".into(),
            detail: String::new(),
        }
    }

    #[tokio::test]
    async fn appends_in_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            store.audit(row("a")).await.unwrap();
            let mut b = store.batch();
            b.put_audit(&store, &row("b"));
            b.put_audit(&store, &row("c"));
            store.commit(b).await.unwrap();
            store.shutdown().unwrap();
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.audit(row("d")).await.unwrap();
        let mut seen = vec![];
        store
            .scan_audit(&mut |seq, r| {
                seen.push((seq, r.action));
                true
            })
            .unwrap();
        let want: Vec<(u64, String)> = ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64 + 1, a.to_string()))
            .collect();
        assert_eq!(seen, want);
        assert_eq!(
            store.verify_audit().unwrap(),
            AuditCheck {
                rows: 4,
                first_broken: None
            }
        );
        // tamper with row 2: the check names it
        let k = 2u64.to_be_bytes();
        let v = store.db.get_cf(store.cf(cf::AUDIT), k).unwrap().unwrap();
        let forged = String::from_utf8(v.clone())
            .unwrap()
            .replace("\"b\"", "\"x\"");
        store.db.put_cf(store.cf(cf::AUDIT), k, forged).unwrap();
        assert_eq!(store.verify_audit().unwrap().first_broken, Some(2));
        // put it back, then remove row 3: row 4 is where the chain breaks
        store.db.put_cf(store.cf(cf::AUDIT), k, v).unwrap();
        assert_eq!(store.verify_audit().unwrap().first_broken, None);
        store
            .db
            .delete_cf(store.cf(cf::AUDIT), 3u64.to_be_bytes())
            .unwrap();
        assert_eq!(store.verify_audit().unwrap().first_broken, Some(4));
    }
}
