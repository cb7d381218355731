//! The audit log table (`audit` column family): one row per audited
//! action, keyed by a sequence number, written in the same batch as the
//! change it records where the caller has that batch. Append-only: nothing
//! here deletes or rewrites a row.

use std::sync::atomic::Ordering;

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

/// The highest sequence number in the log (0 when empty).
pub(crate) fn last_seq(db: &rocksdb::DB) -> Result<u64> {
    let mut it = db.raw_iterator_cf(cfh(db, cf::AUDIT));
    it.seek_to_last();
    let seq = match it.key() {
        Some(k) => u64::from_be_bytes(
            k.try_into()
                .map_err(|_| StorageError::Corrupt("audit key".into()))?,
        ),
        None => 0,
    };
    it.status()?;
    Ok(seq)
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
            let row: AuditRow = serde_json::from_slice(v)?;
            if !f(seq, row) {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(())
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
        let seq = store.audit_seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.wb.put_cf(
            cfh(&self.db, cf::AUDIT),
            seq.to_be_bytes(),
            serde_json::to_vec(row).expect("audit rows serialize"),
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
    }
}
