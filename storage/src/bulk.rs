//! Bulk event loading: a statement's events are staged in one arena, and a
//! large statement is written as sorted SST files that RocksDB ingests
//! atomically (no WAL, no memtable, no flush or re-compaction of the data).

use std::path::{Path, PathBuf};

use rocksdb::{Options, SstFileWriter};

use crate::error::Result;
use crate::keys::{EventKey, EVENT_KEY_LEN};

/// Statements with at least this many events are ingested as SST files.
pub const SST_INGEST_MIN_EVENTS: usize = 50_000;
/// Largest SST file written by one ingest.
const SST_FILE_BYTES: u64 = 256 << 20;

/// Size of one arena chunk: values are appended to fixed chunks, so staging
/// never re-copies what it already holds.
const ARENA_CHUNK: usize = 64 << 20;

struct Entry {
    key: [u8; EVENT_KEY_LEN],
    chunk: u32,
    off: u32,
    len: u32,
}

/// Events of one statement, in arrival order.
#[derive(Default)]
pub struct EventBulk {
    index: Vec<Entry>,
    arena: Vec<Vec<u8>>,
    max_seq: u64,
}

impl EventBulk {
    /// An empty set.
    pub fn new() -> Self {
        EventBulk::default()
    }

    /// Stages one event.
    #[inline]
    pub fn push(&mut self, key: &EventKey, value: &[u8]) {
        let fits = self
            .arena
            .last()
            .is_some_and(|c| c.len() + value.len() <= c.capacity());
        if !fits {
            self.arena
                .push(Vec::with_capacity(ARENA_CHUNK.max(value.len())));
        }
        let chunk_no = (self.arena.len() - 1) as u32;
        let chunk = self.arena.last_mut().expect("a chunk");
        self.index.push(Entry {
            key: key.encode(),
            chunk: chunk_no,
            off: chunk.len() as u32,
            len: value.len() as u32,
        });
        chunk.extend_from_slice(value);
        self.max_seq = self.max_seq.max(key.seq);
    }

    /// Highest sequence number staged.
    pub fn max_seq(&self) -> u64 {
        self.max_seq
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.arena.iter().map(|c| c.len()).sum::<usize>()
            + self.index.len() * std::mem::size_of::<Entry>()
    }

    /// Visits the staged events in arrival order.
    pub fn for_each(&self, mut f: impl FnMut(&[u8; EVENT_KEY_LEN], &[u8])) {
        for e in &self.index {
            f(&e.key, self.value(e));
        }
    }

    fn value(&self, e: &Entry) -> &[u8] {
        &self.arena[e.chunk as usize][e.off as usize..e.off as usize + e.len as usize]
    }

    /// Rewrites the contact of staged events: `f(contact)` returns the new
    /// contact id, or `None` to keep it (identity-keyed ingest resolves
    /// placeholder ids at commit; merged contacts resolve to their target).
    pub fn remap_contacts(&mut self, mut f: impl FnMut(u64) -> Option<u64>) {
        for e in &mut self.index {
            let c = u64::from_be_bytes(e.key[8..16].try_into().expect("8 bytes"));
            if let Some(n) = f(c) {
                e.key[8..16].copy_from_slice(&n.to_be_bytes());
            }
        }
    }

    /// Sorts the events and writes them as SST files in `dir`.
    pub(crate) fn write_ssts(mut self, dir: &Path, opts: &Options) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        // Big-endian keys: comparing them as two u128 is byte order, without memcmp calls.
        self.index.sort_unstable_by_key(|e| {
            let (hi, lo) = e.key.split_at(16);
            (
                u128::from_be_bytes(hi.try_into().expect("16 bytes")),
                u128::from_be_bytes(lo.try_into().expect("16 bytes")),
            )
        });
        let mut files = Vec::new();
        let mut writer: Option<SstFileWriter> = None;
        for e in &self.index {
            if writer
                .as_ref()
                .is_some_and(|w| w.file_size() >= SST_FILE_BYTES)
            {
                if let Some(mut w) = writer.take() {
                    w.finish()?;
                }
            }
            if writer.is_none() {
                let path = dir.join(format!("events-{:04}.sst", files.len()));
                let w = SstFileWriter::create(opts);
                w.open(&path)?;
                files.push(path);
                writer = Some(w);
            }
            let v = self.value(e);
            writer.as_mut().expect("writer open").put(e.key, v)?;
        }
        if let Some(mut w) = writer.take() {
            w.finish()?;
        }
        Ok(files)
    }
}
