//! The ingest writer actor: the single place that commits to RocksDB.
//!
//! Sessions send write batches through a bounded channel and wait for the
//! acknowledgement. The writer drains whatever is queued, writes each batch
//! (each stays atomic on its own), then syncs the WAL once for the whole group
//! (group commit) before acknowledging any of them.

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
    /// Commit a batch atomically.
    Batch {
        batch: WriteBatch,
        done: oneshot::Sender<Result<()>>,
    },
    /// Ingest sorted SST files into the events family, then commit `batch`.
    Ingest {
        files: Vec<PathBuf>,
        batch: WriteBatch,
        done: oneshot::Sender<Result<()>>,
    },
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
                let mut group = Vec::with_capacity(MAX_GROUP);
                while let Some(job) = rx.blocking_recv() {
                    group.push(job);
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(j) => group.push(j),
                            Err(_) => break,
                        }
                    }
                    commit_group(&db, policy, &mut group);
                }
            })
            .expect("spawn writer thread");
        (WriterHandle { tx }, thread)
    }

    /// Commits `batch` atomically; returns once it is durable per the sync policy.
    pub async fn write(&self, batch: WriteBatch) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(WriteJob::Batch { batch, done })
            .await
            .map_err(|_| StorageError::WriterClosed)?;
        rx.await.map_err(|_| StorageError::WriterClosed)?
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

fn commit_group(db: &DB, policy: SyncPolicy, group: &mut Vec<WriteJob>) {
    let mut wo = WriteOptions::default();
    wo.set_sync(false);
    let mut results: Vec<(oneshot::Sender<Result<()>>, Result<()>)> =
        Vec::with_capacity(group.len());
    let mut any_ok = false;
    for job in group.drain(..) {
        match job {
            WriteJob::Batch { batch, done } => {
                let r = db.write_opt(batch, &wo).map_err(StorageError::from);
                any_ok |= r.is_ok();
                results.push((done, r));
            }
            WriteJob::Ingest { files, batch, done } => {
                let r = ingest(db, &files, batch);
                any_ok |= r.is_ok();
                results.push((done, r));
            }
        }
    }
    if any_ok && policy == SyncPolicy::Statement {
        if let Err(e) = db.flush_wal(true) {
            let msg = e.to_string();
            for (done, _) in results {
                let _ = done.send(Err(StorageError::Corrupt(format!(
                    "WAL sync failed: {msg}"
                ))));
            }
            return;
        }
    }
    for (done, r) in results {
        let _ = done.send(r);
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
