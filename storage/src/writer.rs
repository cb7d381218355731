//! The ingest writer actor: the single place that commits to RocksDB.
//!
//! Sessions send write batches through a bounded channel and wait for the
//! acknowledgement. The writer thread drains whatever is queued and writes
//! each batch (each stays atomic on its own); a second thread syncs the WAL
//! once for everything written since its last sync (group commit) and then
//! acknowledges those batches. Writing goes on while a sync is under way,
//! so the next group forms during the sync. A writer that holds a
//! lock for read-then-write can release it once its batch is written and
//! wait for the sync afterwards ([`Pending`]), so such writers batch too.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StorageError};

/// How durable an acknowledged write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncPolicy {
    /// fsync the WAL before acknowledging a statement (survives power loss).
    #[default]
    Statement,
    /// Write the WAL to the OS only (survives a process crash, not power loss).
    Os,
}

/// One unit of work for the writer.
pub(crate) enum WriteJob {
    /// Commit a batch atomically; `applied` hears once it is written
    /// (readable), before the WAL sync.
    Batch {
        batch: WriteBatch,
        applied: Option<oneshot::Sender<()>>,
        done: oneshot::Sender<Result<()>>,
    },
    /// Ingest sorted SST files into the events family, then commit `batch`.
    Ingest {
        files: Vec<PathBuf>,
        batch: WriteBatch,
        done: oneshot::Sender<Result<()>>,
    },
}

/// A commit that is written (readers see it) and whose WAL sync is still
/// to come: what a writer holding a lock for read-then-write waits on after
/// releasing it, so writers that serialise on a lock still share one WAL
/// sync (group commit). The writer applies batches in order and a sync
/// covers every batch written before it, so a commit that read this one's
/// effects is never durable without it.
#[must_use = "a commit is acknowledged only once durable"]
pub struct Pending {
    done: Option<oneshot::Receiver<Result<()>>>,
}

impl Pending {
    /// A commit of nothing (already durable).
    pub fn nothing() -> Pending {
        Pending { done: None }
    }

    /// Waits until the commit is durable per the sync policy.
    pub async fn durable(self) -> Result<()> {
        match self.done {
            None => Ok(()),
            Some(rx) => rx.await.map_err(|_| StorageError::WriterClosed)?,
        }
    }
}

/// Handle used by sessions to submit writes.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<WriteJob>,
}

/// Most batches written before one WAL sync.
const MAX_GROUP: usize = 128;

impl WriterHandle {
    /// Starts the writer thread.
    pub(crate) fn spawn(
        db: Arc<DB>,
        policy: SyncPolicy,
        queue: usize,
    ) -> (WriterHandle, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<WriteJob>(queue.max(1));
        let thread = std::thread::Builder::new()
            .name("cohortdb-writer".into())
            .spawn(move || {
                // the WAL sync runs on its own thread, so batches keep being
                // written (and lock holders released) while a sync is under way
                let (sync_tx, sync_rx) = std::sync::mpsc::channel::<Written>();
                let sync_db = db.clone();
                let syncer = std::thread::Builder::new()
                    .name("cohortdb-wal-sync".into())
                    .spawn(move || sync_loop(&sync_db, policy, sync_rx))
                    .expect("spawn WAL sync thread");
                let mut group = Vec::with_capacity(MAX_GROUP);
                while let Some(job) = rx.blocking_recv() {
                    group.push(job);
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(j) => group.push(j),
                            Err(_) => break,
                        }
                    }
                    if sync_tx.send(write_group(&db, &mut group)).is_err() {
                        break;
                    }
                }
                drop(sync_tx);
                let _ = syncer.join();
            })
            .expect("spawn writer thread");
        (WriterHandle { tx }, thread)
    }

    /// Commits `batch` atomically; returns once it is durable per the sync policy.
    pub async fn write(&self, batch: WriteBatch) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(WriteJob::Batch {
                batch,
                applied: None,
                done,
            })
            .await
            .map_err(|_| StorageError::WriterClosed)?;
        rx.await.map_err(|_| StorageError::WriterClosed)?
    }

    /// Commits `batch` atomically; returns once it is written and readable,
    /// with the wait for its durability (see [`Pending`]).
    pub async fn write_applied(&self, batch: WriteBatch) -> Result<Pending> {
        let (applied, applied_rx) = oneshot::channel();
        let (done, rx) = oneshot::channel();
        self.tx
            .send(WriteJob::Batch {
                batch,
                applied: Some(applied),
                done,
            })
            .await
            .map_err(|_| StorageError::WriterClosed)?;
        match applied_rx.await {
            Ok(()) => Ok(Pending { done: Some(rx) }),
            // not written: the outcome says why
            Err(_) => Err(match rx.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) | Err(_) => StorageError::WriterClosed,
            }),
        }
    }

    /// Ingests SST files of events (atomically), then commits `batch`.
    pub(crate) async fn ingest(&self, files: Vec<PathBuf>, batch: WriteBatch) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(WriteJob::Ingest { files, batch, done })
            .await
            .map_err(|_| StorageError::WriterClosed)?;
        rx.await.map_err(|_| StorageError::WriterClosed)?
    }
}

/// Written batches waiting for a WAL sync: who to tell, and how its write went.
type Written = Vec<(oneshot::Sender<Result<()>>, Result<()>)>;

/// Writes a group of jobs (each atomic on its own), telling each waiter
/// for `applied` as soon as its batch is written; no WAL sync.
fn write_group(db: &DB, group: &mut Vec<WriteJob>) -> Written {
    let mut wo = WriteOptions::default();
    wo.set_sync(false);
    let mut results = Vec::with_capacity(group.len());
    for job in group.drain(..) {
        match job {
            WriteJob::Batch {
                batch,
                applied,
                done,
            } => {
                let r = db.write_opt(batch, &wo).map_err(StorageError::from);
                if let (Ok(()), Some(applied)) = (&r, applied) {
                    let _ = applied.send(());
                }
                results.push((done, r));
            }
            WriteJob::Ingest { files, batch, done } => {
                let r = ingest(db, &files, batch);
                results.push((done, r));
            }
        }
    }
    results
}

/// The WAL sync thread: takes every written group waiting, syncs the WAL
/// once for all of them (a sync covers every batch written before it), then
/// acknowledges them (group commit).
fn sync_loop(db: &DB, policy: SyncPolicy, rx: std::sync::mpsc::Receiver<Written>) {
    while let Ok(mut results) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            results.extend(more);
        }
        let any_ok = results.iter().any(|(_, r)| r.is_ok());
        if any_ok && policy == SyncPolicy::Statement {
            if let Err(e) = db.flush_wal(true) {
                let msg = e.to_string();
                for (done, _) in results {
                    let _ = done.send(Err(StorageError::Corrupt(format!(
                        "WAL sync failed: {msg}"
                    ))));
                }
                continue;
            }
        }
        for (done, r) in results {
            let _ = done.send(r);
        }
    }
}

fn ingest(db: &DB, files: &[PathBuf], batch: WriteBatch) -> Result<()> {
    let cf = db
        .cf_handle(crate::keys::cf::EVENTS)
        .ok_or_else(|| StorageError::Corrupt("events column family missing".into()))?;
    let mut opts = rocksdb::IngestExternalFileOptions::default();
    opts.set_move_files(true);
    db.ingest_external_file_cf_opts(cf, &opts, files.to_vec())?;
    let mut wo = WriteOptions::default();
    wo.set_sync(false);
    db.write_opt(batch, &wo)?;
    Ok(())
}
