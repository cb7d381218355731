//! Journey runs and step statistics (`journeys` column family).
//!
//! Keys: `'R' | run_id: u64` → [`RunRecord`] (JSON);
//! `'C' | journey_id | 0x00 | contact_id: u64` → the contact's latest run
//! id (u64 BE), for the re-entry rules; `'S' | journey_id | 0x00 | step`
//! → [`StepStats`] (JSON). A run and the statistics of its transition are
//! written in one batch.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::keys::cf;
use crate::store::{cfh, Batch, Store};

/// One run of a journey for one contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub run_id: u64,
    /// Journey id.
    pub journey_id: String,
    /// Definition version the run started on.
    pub version: u32,
    /// Contact.
    pub contact_id: u64,
    /// `active`, `waiting`, `completed` or `failed`.
    pub status: String,
    /// Current step id.
    pub step: String,
    /// Started (ms).
    pub started_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
    /// When a waiting run wakes (ms).
    pub wake_at: Option<i64>,
    /// Set while the current step's action runs: after a crash the action
    /// is not run again (at most once) and the run moves on.
    #[serde(default)]
    pub acting: bool,
}

/// Counts of one step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Runs that reached it.
    pub entered: u64,
    /// Runs that finished it.
    pub completed: u64,
    /// Runs whose action failed there.
    pub failed: u64,
}

fn run_key(id: u64) -> [u8; 9] {
    let mut k = [b'R'; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn contact_key(journey: &str, contact: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(journey.len() + 10);
    k.push(b'C');
    k.extend_from_slice(journey.as_bytes());
    k.push(0);
    k.extend_from_slice(&contact.to_be_bytes());
    k
}

fn stats_prefix(journey: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(journey.len() + 2);
    k.push(b'S');
    k.extend_from_slice(journey.as_bytes());
    k.push(0);
    k
}

/// The highest run id stored (0 when none).
pub(crate) fn last_run_id(db: &rocksdb::DB) -> Result<u64> {
    let mut it = db.raw_iterator_cf(cfh(db, cf::JOURNEYS));
    it.seek_for_prev(run_key(u64::MAX));
    let id = match it.key() {
        Some(k) if k.len() == 9 && k[0] == b'R' => {
            u64::from_be_bytes(k[1..].try_into().expect("8 bytes"))
        }
        _ => 0,
    };
    it.status()?;
    Ok(id)
}

impl Store {
    /// A new run id.
    pub fn alloc_run_id(&self) -> u64 {
        self.journey_run
            .get_or_init(|| {
                std::sync::atomic::AtomicU64::new(last_run_id(&self.db).unwrap_or_else(|e| {
                    tracing::error!("reading the last run id failed: {e}");
                    0
                }))
            })
            .fetch_add(1, Ordering::SeqCst)
            + 1
    }

    /// Every run, oldest first.
    pub fn scan_runs(&self) -> Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf(cf::JOURNEYS));
        it.seek([b'R']);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if k.first() != Some(&b'R') {
                break;
            }
            out.push(serde_json::from_slice(v)?);
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// One run.
    pub fn get_run(&self, id: u64) -> Result<Option<RunRecord>> {
        match self.db.get_cf(self.cf(cf::JOURNEYS), run_key(id))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// The latest run of `contact` in `journey`.
    pub fn latest_run(&self, journey: &str, contact: u64) -> Result<Option<RunRecord>> {
        match self
            .db
            .get_cf(self.cf(cf::JOURNEYS), contact_key(journey, contact))?
        {
            Some(v) if v.len() == 8 => self.get_run(u64::from_be_bytes(
                v.as_slice().try_into().expect("8 bytes"),
            )),
            _ => Ok(None),
        }
    }

    /// The step statistics of `journey`: `(step, stats)`.
    pub fn step_stats(&self, journey: &str) -> Result<Vec<(String, StepStats)>> {
        let prefix = stats_prefix(journey);
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf(cf::JOURNEYS));
        it.seek(&prefix);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            let step = String::from_utf8_lossy(&k[prefix.len()..]).to_string();
            out.push((step, serde_json::from_slice(v)?));
            it.next();
        }
        it.status()?;
        Ok(out)
    }
}

impl Batch {
    /// Writes a run (and makes it the contact's latest run of its journey).
    pub fn put_run(&mut self, r: &RunRecord) {
        let c = cfh(&self.db, cf::JOURNEYS);
        self.wb.put_cf(
            c,
            run_key(r.run_id),
            serde_json::to_vec(r).expect("runs serialize"),
        );
        self.wb.put_cf(
            c,
            contact_key(&r.journey_id, r.contact_id),
            r.run_id.to_be_bytes(),
        );
    }

    /// Writes the statistics of one step.
    pub fn put_step_stats(&mut self, journey: &str, step: &str, s: &StepStats) {
        let mut k = stats_prefix(journey);
        k.extend_from_slice(step.as_bytes());
        self.wb.put_cf(
            cfh(&self.db, cf::JOURNEYS),
            k,
            serde_json::to_vec(s).expect("stats serialize"),
        );
    }

    /// Deletes everything of `journey` (runs are kept out of scans by the
    /// caller; their index and statistics go).
    pub fn delete_journey_data(&mut self, journey: &str) {
        let c = cfh(&self.db, cf::JOURNEYS);
        for tag in [b'C', b'S'] {
            let mut from = vec![tag];
            from.extend_from_slice(journey.as_bytes());
            from.push(0);
            let mut to = vec![tag];
            to.extend_from_slice(journey.as_bytes());
            to.push(1);
            self.wb.delete_range_cf(c, from, to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[tokio::test]
    async fn runs_latest_and_stats_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut b = store.batch();
        for c in [5u64, 5, 9] {
            let id = store.alloc_run_id();
            b.put_run(&RunRecord {
                run_id: id,
                journey_id: "j_a".into(),
                version: 1,
                contact_id: c,
                status: "waiting".into(),
                step: "wait1".into(),
                started_at: 1,
                updated_at: 1,
                wake_at: Some(10),
                acting: false,
            });
        }
        b.put_step_stats(
            "j_a",
            "wait1",
            &StepStats {
                entered: 3,
                completed: 0,
                failed: 0,
            },
        );
        b.put_step_stats("j_ab", "x", &StepStats::default());
        store.commit(b).await.unwrap();
        assert_eq!(store.scan_runs().unwrap().len(), 3);
        assert_eq!(store.latest_run("j_a", 5).unwrap().unwrap().run_id, 2);
        assert!(store.latest_run("j_a", 6).unwrap().is_none());
        let s = store.step_stats("j_a").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].1.entered, 3);
        let mut b = store.batch();
        b.delete_journey_data("j_a");
        store.commit(b).await.unwrap();
        assert!(store.step_stats("j_a").unwrap().is_empty());
        assert_eq!(store.step_stats("j_ab").unwrap().len(), 1);
        assert_eq!(last_run_id(&store.db).unwrap(), 3);
    }
}
