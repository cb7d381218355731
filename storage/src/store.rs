//! The store: opens RocksDB, owns the catalog snapshot and id counters, and
//! offers scans and write batches to the SQL layer.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, MergeOperands, Options,
    ReadOptions, WriteBatch, DB,
};

use crate::bulk::{EventBulk, SST_INGEST_MIN_EVENTS};
use crate::catalog::{Catalog, CatalogData};
use crate::error::{Result, StorageError};
use crate::keys::{self, cf, EventKey};
pub use crate::writer::SyncPolicy;
use crate::writer::WriterHandle;

/// Options for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// WAL durability of acknowledged statements.
    pub sync: SyncPolicy,
    /// Capacity of the writer's queue (batches).
    pub writer_queue: usize,
    /// Shared block cache size in bytes.
    pub block_cache_bytes: usize,
    /// Most memory one statement may stage before it is committed (a larger
    /// INSERT/COPY fails with SQLSTATE 54000 instead of exhausting memory).
    pub max_statement_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync: SyncPolicy::Statement,
            writer_queue: 256,
            block_cache_bytes: 256 << 20,
            max_statement_bytes: 4 << 30,
        }
    }
}

/// Which events a scan reads.
#[derive(Debug, Clone, Default)]
pub struct EventScanSpec {
    /// Inclusive UTC day range; `None` = every day.
    pub days: Option<(i32, i32)>,
    /// Event type ids (sorted, deduplicated); `None` = every type.
    pub event_types: Option<Vec<u32>>,
    /// Contact ids (sorted, deduplicated); `None` = every contact.
    pub contacts: Option<Vec<u64>>,
}

/// The open database.
pub struct Store {
    pub(crate) db: Arc<DB>,
    catalog: RwLock<Arc<Catalog>>,
    writer: Mutex<Option<WriterHandle>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Serialises catalog (DDL) changes.
    ddl_lock: tokio::sync::Mutex<()>,
    contact_id: AtomicU64,
    max_statement_bytes: usize,
    event_seq: AtomicU64,
    user_row: AtomicU64,
    /// Head of the audit chain `(seq, hash)`, read from disk on first use
    /// by the audit table.
    pub(crate) audit_head: Mutex<Option<(u64, [u8; 32])>>,
    /// Last send id, read on first use by the WeChat outbox table.
    pub(crate) wechat_send: std::sync::OnceLock<AtomicU64>,
    /// Last run id, read on first use by the journeys table.
    pub(crate) journey_run: std::sync::OnceLock<AtomicU64>,
    /// Keys of events committed by ingest, for whoever listens (journeys).
    committed_events: tokio::sync::broadcast::Sender<Arc<Vec<EventKey>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

/// Staging directory (inside the data directory) for SST files being ingested.
const INGEST_DIR: &str = "ingest-staging";

/// Options of a column family (also used to write SST files for ingestion).
fn cf_options(name: &str, cache: Option<&Cache>) -> Options {
    let table_opts = |bloom: bool, whole_key: bool| {
        let mut t = BlockBasedOptions::default();
        if let Some(cache) = cache {
            t.set_block_cache(cache);
        }
        t.set_cache_index_and_filter_blocks(true);
        t.set_pin_l0_filter_and_index_blocks_in_cache(true);
        if bloom {
            t.set_bloom_filter(10.0, false);
            t.set_whole_key_filtering(whole_key);
        }
        t
    };
    let mut o = Options::default();
    o.set_compression_type(DBCompressionType::Lz4);
    o.set_bottommost_compression_type(DBCompressionType::Zstd);
    match name {
        cf::META => {
            o.set_merge_operator_associative("max_u64", max_u64_merge);
            o.set_block_based_table_factory(&table_opts(true, true));
        }
        cf::BITMAPS => {
            o.set_merge_operator(
                "bitmap_ops",
                crate::bitmap::bitmap_full_merge,
                crate::bitmap::bitmap_partial_merge,
            );
            o.set_block_based_table_factory(&table_opts(true, true));
        }
        cf::EVENTS => {
            o.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(8));
            // Analytics seek once per (day, type, contact shard): index and
            // filter blocks stay in the table readers (a few MiB per GiB of
            // events) instead of being evicted from the block cache and
            // decompressed again on every seek; 16 KiB data blocks halve the
            // index and compress better for long scans.
            let mut t = table_opts(true, false);
            t.set_cache_index_and_filter_blocks(false);
            t.set_block_size(16 << 10);
            o.set_block_based_table_factory(&t);
            o.set_write_buffer_size(128 << 20);
            o.set_max_write_buffer_number(4);
            o.set_target_file_size_base(128 << 20);
        }
        _ => o.set_block_based_table_factory(&table_opts(true, true)),
    }
    o
}

fn max_u64_merge(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut max = existing.and_then(read_u64).unwrap_or(0);
    for op in operands {
        max = max.max(read_u64(op).unwrap_or(0));
    }
    Some(max.to_le_bytes().to_vec())
}

fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

impl Store {
    /// Opens (creating if needed) the database in `path`.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Arc<Store>> {
        std::fs::create_dir_all(path)?;
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(5);

        let descriptors: Vec<ColumnFamilyDescriptor> = cf::ALL
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n, Some(&cache))))
            .collect();
        let _ = std::fs::remove_dir_all(path.join(INGEST_DIR));
        let db = Arc::new(DB::open_cf_descriptors(&db_opts, path, descriptors)?);

        let meta = db.cf_handle(cf::META).expect("meta cf");
        let catalog_data = match db.get_cf(meta, keys::META_CATALOG)? {
            Some(bytes) => serde_json::from_slice::<CatalogData>(&bytes)?,
            None => {
                let data = CatalogData::initial();
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                let mut b = WriteBatch::default();
                b.put_cf(meta, keys::META_CATALOG, serde_json::to_vec(&data)?);
                db.write_opt(b, &wo)?;
                data
            }
        };
        let counter = |k: &[u8]| -> Result<u64> {
            Ok(db
                .get_cf(meta, k)?
                .as_deref()
                .and_then(read_u64)
                .unwrap_or(0))
        };
        let contact_id = counter(keys::COUNTER_CONTACT_ID)?;
        let event_seq = counter(keys::COUNTER_EVENT_SEQ)?;
        let user_row = counter(keys::COUNTER_USER_ROW)?;
        let (writer, thread) = WriterHandle::spawn(db.clone(), opts.sync, opts.writer_queue);
        Ok(Arc::new(Store {
            db,
            catalog: RwLock::new(Arc::new(Catalog::new(catalog_data))),
            writer: Mutex::new(Some(writer)),
            writer_thread: Mutex::new(Some(thread)),
            ddl_lock: tokio::sync::Mutex::new(()),
            contact_id: AtomicU64::new(contact_id),
            max_statement_bytes: opts.max_statement_bytes,
            event_seq: AtomicU64::new(event_seq),
            user_row: AtomicU64::new(user_row),
            audit_head: Mutex::new(None),
            wechat_send: std::sync::OnceLock::new(),
            journey_run: std::sync::OnceLock::new(),
            committed_events: tokio::sync::broadcast::channel(4096).0,
        }))
    }

    /// The current catalog snapshot.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// Applies a catalog change atomically: `f` edits a copy, which is written
    /// together with `extra` (a batch of data changes) and then published.
    /// Changes are serialised; `f` may reject the change with its own error.
    pub async fn update_catalog<E, T>(
        &self,
        f: impl FnOnce(&mut CatalogData, &mut Batch) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<StorageError>,
    {
        let _guard = self.ddl_lock.lock().await;
        let mut data = self.catalog().data().clone();
        let mut batch = self.batch();
        let out = f(&mut data, &mut batch)?;
        let bytes = serde_json::to_vec(&data).map_err(StorageError::from)?;
        batch
            .wb
            .put_cf(self.cf(cf::META), keys::META_CATALOG, bytes);
        self.commit(batch).await?;
        *self.catalog.write().expect("catalog lock") = Arc::new(Catalog::new(data));
        Ok(out)
    }

    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        cfh(&self.db, name)
    }

    fn writer(&self) -> Result<WriterHandle> {
        self.writer
            .lock()
            .expect("writer lock")
            .clone()
            .ok_or(StorageError::WriterClosed)
    }

    /// A new empty write batch.
    pub fn batch(&self) -> Batch {
        Batch {
            wb: WriteBatch::default(),
            db: self.db.clone(),
        }
    }

    /// Commits a batch atomically through the writer actor.
    pub async fn commit(&self, batch: Batch) -> Result<()> {
        if batch.wb.is_empty() {
            return Ok(());
        }
        self.writer()?.write(batch.wb).await
    }

    /// Commits a batch atomically and returns once it is written (readers
    /// see it), before it is durable: release the lock a read-then-write
    /// holds, then wait on [`Pending::durable`] before acknowledging.
    pub async fn commit_applied(&self, batch: Batch) -> Result<crate::writer::Pending> {
        if batch.wb.is_empty() {
            return Ok(crate::writer::Pending::nothing());
        }
        self.writer()?.write_applied(batch.wb).await
    }

    /// Commits a statement's events together with `batch` (contact updates,
    /// counters). Large sets are written as sorted SST files and ingested.
    pub async fn commit_events(&self, events: EventBulk, batch: Batch) -> Result<()> {
        let keys = (self.committed_events.receiver_count() > 0).then(|| {
            let mut keys = Vec::with_capacity(events.len());
            events.for_each(|k, _| keys.extend(EventKey::decode(k)));
            Arc::new(keys)
        });
        let r = self.commit_events_inner(events, batch).await;
        if let (Ok(()), Some(keys)) = (&r, keys) {
            let _ = self.committed_events.send(keys);
        }
        r
    }

    /// Events committed by ingest (INSERT, COPY, the collector) from now
    /// on, announced after they are durable.
    pub fn subscribe_committed_events(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<Vec<EventKey>>> {
        self.committed_events.subscribe()
    }

    async fn commit_events_inner(&self, events: EventBulk, mut batch: Batch) -> Result<()> {
        if events.len() < SST_INGEST_MIN_EVENTS {
            let events_cf = self.cf(cf::EVENTS);
            events.for_each(|k, v| batch.wb.put_cf(events_cf, k, v));
            return self.commit(batch).await;
        }
        // The sequence counter goes first: after a crash between the steps it
        // is never below a sequence number present in the events family.
        let mut pre = self.batch();
        pre.note_event_seq(events.max_seq());
        self.commit(pre).await?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = self.db.path().join(INGEST_DIR).join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let staging = dir.clone();
        let files = tokio::task::spawn_blocking(move || {
            // LZ4 for freshly ingested files: fast to write; compaction
            // recompresses the bottommost level with zstd later.
            let mut opts = cf_options(cf::EVENTS, None);
            opts.set_bottommost_compression_type(DBCompressionType::Lz4);
            events.write_ssts(&staging, &opts)
        })
        .await
        .map_err(|e| StorageError::Corrupt(format!("SST writer task failed: {e}")))??;
        let r = self.writer()?.ingest(files, batch.wb).await;
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    /// Most bytes one statement may stage (see [`StoreOptions::max_statement_bytes`]).
    pub fn max_statement_bytes(&self) -> usize {
        self.max_statement_bytes
    }

    /// Reserves `n` new contact ids; the batch that uses them must call
    /// [`Batch::note_contact_id`] with the highest.
    pub fn alloc_contact_ids(&self, n: u64) -> u64 {
        self.contact_id.fetch_add(n, Ordering::SeqCst) + 1
    }

    /// Makes sure later allocations are above `id` (explicit ids on insert).
    pub fn observe_contact_id(&self, id: u64) {
        self.contact_id.fetch_max(id, Ordering::SeqCst);
    }

    /// Reserves `n` event sequence numbers; returns the first.
    pub fn alloc_event_seqs(&self, n: u64) -> u64 {
        self.event_seq.fetch_add(n, Ordering::SeqCst) + 1
    }

    /// Reserves `n` user-table row ids; returns the first.
    pub fn alloc_user_rows(&self, n: u64) -> u64 {
        self.user_row.fetch_add(n, Ordering::SeqCst) + 1
    }

    /// Reads one contact row.
    pub fn get_contact(&self, id: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_cf(self.cf(cf::CONTACTS), keys::contact_key(id))?)
    }

    /// Visits contacts in id order (all, or the given sorted ids); `f` returns false to stop.
    pub fn scan_contacts(
        &self,
        ids: Option<&[u64]>,
        f: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<()> {
        let cfh = self.cf(cf::CONTACTS);
        match ids {
            Some(ids) => {
                let keys: Vec<[u8; 8]> = ids.iter().map(|i| keys::contact_key(*i)).collect();
                let values = self.db.batched_multi_get_cf(cfh, keys.iter(), true);
                for (id, v) in ids.iter().zip(values) {
                    if let Some(v) = v? {
                        if !f(*id, &v) {
                            break;
                        }
                    }
                }
            }
            None => {
                let mut it = self.db.raw_iterator_cf(cfh);
                it.seek_to_first();
                while let (Some(k), Some(v)) = (it.key(), it.value()) {
                    let id = keys::decode_contact_key(k)
                        .ok_or_else(|| StorageError::Corrupt("contact key".into()))?;
                    if !f(id, v) {
                        break;
                    }
                    it.next();
                }
                it.status()?;
            }
        }
        Ok(())
    }

    /// The first and last UTC day holding events, if any.
    pub fn event_day_bounds(&self) -> Result<Option<(i32, i32)>> {
        let cfh = self.cf(cf::EVENTS);
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        let mut it = self.db.raw_iterator_cf_opt(cfh, ro);
        it.seek_to_first();
        let first = match it.key().and_then(EventKey::decode) {
            Some(k) => k.day,
            None => return Ok(None),
        };
        it.seek_to_last();
        let last = it
            .key()
            .and_then(EventKey::decode)
            .map(|k| k.day)
            .unwrap_or(first);
        it.status()?;
        Ok(Some((first, last)))
    }

    /// Visits the events selected by `spec`. Within one `(day, event type)`
    /// run, events come ordered by contact then time. `f` returns false to stop.
    pub fn scan_events(
        &self,
        spec: &EventScanSpec,
        f: &mut dyn FnMut(&EventKey, &[u8]) -> bool,
    ) -> Result<()> {
        let Some((mut lo, mut hi)) = self.event_day_bounds()? else {
            return Ok(());
        };
        if let Some((a, b)) = spec.days {
            lo = lo.max(a);
            hi = hi.min(b);
        }
        if lo > hi {
            return Ok(());
        }
        let cfh = self.cf(cf::EVENTS);
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        ro.set_iterate_lower_bound(keys::event_day_prefix(lo).to_vec());
        if let Some(up) = keys::prefix_successor(&keys::event_day_prefix(hi)) {
            ro.set_iterate_upper_bound(up);
        }
        let mut it = self.db.raw_iterator_cf_opt(cfh, ro);
        let mut visit_prefix = |it: &mut rocksdb::DBRawIterator, prefix: &[u8]| -> Result<bool> {
            it.seek(prefix);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !k.starts_with(prefix) {
                    break;
                }
                let key =
                    EventKey::decode(k).ok_or_else(|| StorageError::Corrupt("event key".into()))?;
                if !f(&key, v) {
                    return Ok(false);
                }
                it.next();
            }
            it.status()?;
            Ok(true)
        };
        let all_types;
        let types: Option<&[u32]> = match (&spec.event_types, &spec.contacts) {
            (Some(t), _) => Some(t),
            (None, Some(_)) => {
                let mut t: Vec<u32> = self
                    .catalog()
                    .data()
                    .event_types
                    .iter()
                    .map(|t| t.id)
                    .collect();
                t.sort_unstable();
                all_types = t;
                Some(&all_types)
            }
            (None, None) => None,
        };
        for day in lo..=hi {
            match types {
                None => {
                    if !visit_prefix(&mut it, &keys::event_day_prefix(day))? {
                        return Ok(());
                    }
                }
                Some(types) => {
                    for et in types {
                        match &spec.contacts {
                            None => {
                                if !visit_prefix(&mut it, &keys::event_day_type_prefix(day, *et))? {
                                    return Ok(());
                                }
                            }
                            Some(contacts) => {
                                for c in contacts {
                                    let p = keys::event_day_type_contact_prefix(day, *et, *c);
                                    if !visit_prefix(&mut it, &p)? {
                                        return Ok(());
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The highest contact id allocated so far (0 when none).
    pub fn max_contact_id(&self) -> u64 {
        self.contact_id.load(Ordering::SeqCst)
    }

    /// Visits the events of contacts `contacts.0 <= id < contacts.1` on the
    /// given UTC days and event types, one `(day, event type)` run after
    /// another; within a run, events come ordered by contact then time.
    /// One iterator seek per run. `f` returns false to stop.
    pub fn scan_event_runs(
        &self,
        days: (i32, i32),
        event_types: &[u32],
        contacts: (u64, u64),
        f: &mut dyn FnMut(&EventKey, &[u8]) -> bool,
    ) -> Result<()> {
        let (lo, hi) = days;
        if lo > hi || contacts.0 >= contacts.1 {
            return Ok(());
        }
        let cfh = self.cf(cf::EVENTS);
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        ro.fill_cache(true);
        ro.set_iterate_lower_bound(keys::event_day_prefix(lo).to_vec());
        if let Some(up) = keys::prefix_successor(&keys::event_day_prefix(hi)) {
            ro.set_iterate_upper_bound(up);
        }
        let mut it = self.db.raw_iterator_cf_opt(cfh, ro);
        for day in lo..=hi {
            for &et in event_types {
                let start = keys::event_day_type_contact_prefix(day, et, contacts.0);
                let end = keys::event_day_type_contact_prefix(day, et, contacts.1);
                it.seek(start);
                while let (Some(k), Some(v)) = (it.key(), it.value()) {
                    if k >= &end[..] {
                        break;
                    }
                    let key = EventKey::decode(k)
                        .ok_or_else(|| StorageError::Corrupt("event key".into()))?;
                    if !f(&key, v) {
                        return Ok(());
                    }
                    it.next();
                }
                it.status()?;
            }
        }
        Ok(())
    }

    /// Visits identity rows: `(id_type, channel_id, id_value, contact, created_at_ms)`.
    pub fn scan_identities(
        &self,
        f: &mut dyn FnMut(&str, &str, &str, u64, i64) -> bool,
    ) -> Result<()> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf::IDENTITIES));
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (t, c, val) = keys::decode_identity_key(k)
                .ok_or_else(|| StorageError::Corrupt("identity key".into()))?;
            let (contact, created) = decode_identity_value(v)?;
            if !f(&t, &c, &val, contact, created) {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// The identity keys linked to a contact.
    pub fn contact_identity_keys(&self, contact: u64) -> Result<Vec<Vec<u8>>> {
        let prefix = keys::contact_key(contact);
        let mut it = self.db.raw_iterator_cf(self.cf(cf::CONTACT_IDENTITIES));
        it.seek(prefix);
        let mut out = Vec::new();
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(k[8..].to_vec());
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The identities linked to a contact: `(identity key, created_at_ms)`.
    pub fn contact_identities(&self, contact: u64) -> Result<Vec<(Vec<u8>, i64)>> {
        let prefix = keys::contact_key(contact);
        let mut it = self.db.raw_iterator_cf(self.cf(cf::CONTACT_IDENTITIES));
        it.seek(prefix);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            let created = v
                .get(0..8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_le_bytes)
                .unwrap_or(0);
            out.push((k[8..].to_vec(), created));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Finds the contact owning an identity.
    pub fn lookup_identity(
        &self,
        id_type: &str,
        channel_id: &str,
        id_value: &str,
    ) -> Result<Option<u64>> {
        let k = keys::identity_key(id_type, channel_id, id_value);
        match self.db.get_pinned_cf(self.cf(cf::IDENTITIES), k)? {
            Some(v) => Ok(Some(decode_identity_value(&v)?.0)),
            None => Ok(None),
        }
    }

    /// One identity row by its key: `(contact, created_at_ms)`.
    pub fn get_identity(
        &self,
        id_type: &str,
        channel_id: &str,
        id_value: &str,
    ) -> Result<Option<(u64, i64)>> {
        let k = keys::identity_key(id_type, channel_id, id_value);
        match self.db.get_pinned_cf(self.cf(cf::IDENTITIES), k)? {
            Some(v) => Ok(Some(decode_identity_value(&v)?)),
            None => Ok(None),
        }
    }

    /// The contact a merged (retired) contact id now resolves to, following
    /// chains of merges; `None` when `id` was never merged away.
    pub fn resolve_alias(&self, id: u64) -> Result<Option<u64>> {
        let meta = self.cf(cf::META);
        let mut cur = id;
        let mut found = None;
        for _ in 0..64 {
            match self.db.get_pinned_cf(meta, keys::alias_key(cur))? {
                Some(v) => {
                    cur =
                        read_u64(&v).ok_or_else(|| StorageError::Corrupt("alias value".into()))?;
                    found = Some(cur);
                }
                None => break,
            }
        }
        Ok(found)
    }

    /// Reads a named setting (`setting/<name>` in `meta`).
    pub fn get_setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf::META), keys::setting_key(name))?)
    }

    /// Visits the rows of a user table in insertion order.
    pub fn scan_user_rows(
        &self,
        table_id: u32,
        f: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<()> {
        let prefix = keys::user_table_prefix(table_id);
        let mut it = self.db.raw_iterator_cf(self.cf(cf::USER_ROWS));
        it.seek(prefix);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) || k.len() != 12 {
                break;
            }
            let row = u64::from_be_bytes(k[4..12].try_into().expect("12-byte key"));
            if !f(row, v) {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// The row id a user table's primary key `key` names.
    pub fn get_user_pk(&self, table_id: u32, key: &[u8]) -> Result<Option<u64>> {
        Ok(self
            .db
            .get_cf(self.cf(cf::USER_KEYS), keys::user_pk_key(table_id, key))?
            .and_then(|v| Some(u64::from_be_bytes(v.as_slice().try_into().ok()?))))
    }

    /// One user-table row.
    pub fn get_user_row(&self, table_id: u32, row_id: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_cf(self.cf(cf::USER_ROWS), keys::user_row_key(table_id, row_id))?)
    }

    /// Stops the writer (after the queued batches) and flushes memtables.
    pub fn shutdown(&self) -> Result<()> {
        self.writer.lock().expect("writer lock").take();
        if let Some(t) = self
            .writer_thread
            .lock()
            .expect("writer thread lock")
            .take()
        {
            let _ = t.join();
        }
        self.db.flush_wal(true)?;
        for name in cf::ALL {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }
}

impl Drop for Store {
    /// Stops the writer and waits for it: its threads hold the database,
    /// which must close here, before the store's directory can go away
    /// and before the process exits (RocksDB torn down by a detached
    /// thread during exit aborts the process).
    fn drop(&mut self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        let thread = self.writer_thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

fn decode_identity_value(v: &[u8]) -> Result<(u64, i64)> {
    if v.len() != 16 {
        return Err(StorageError::Corrupt("identity value".into()));
    }
    Ok((
        u64::from_le_bytes(v[0..8].try_into().expect("8 bytes")),
        i64::from_le_bytes(v[8..16].try_into().expect("8 bytes")),
    ))
}

pub(crate) fn cfh<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family opened at start")
}

/// A set of changes committed atomically by [`Store::commit`].
pub struct Batch {
    pub(crate) wb: WriteBatch,
    pub(crate) db: Arc<DB>,
}

impl Batch {
    /// Writes a contact row.
    pub fn put_contact(&mut self, id: u64, row: &[u8]) {
        self.wb
            .put_cf(cfh(&self.db, cf::CONTACTS), keys::contact_key(id), row);
    }

    /// Deletes a contact row.
    pub fn delete_contact(&mut self, id: u64) {
        self.wb
            .delete_cf(cfh(&self.db, cf::CONTACTS), keys::contact_key(id));
    }

    /// Records that contact ids up to `id` are used.
    pub fn note_contact_id(&mut self, id: u64) {
        self.wb.merge_cf(
            cfh(&self.db, cf::META),
            keys::COUNTER_CONTACT_ID,
            id.to_le_bytes(),
        );
    }

    /// Records that event sequence numbers up to `seq` are used.
    pub fn note_event_seq(&mut self, seq: u64) {
        self.wb.merge_cf(
            cfh(&self.db, cf::META),
            keys::COUNTER_EVENT_SEQ,
            seq.to_le_bytes(),
        );
    }

    /// Records that user row ids up to `row` are used.
    pub fn note_user_row(&mut self, row: u64) {
        self.wb.merge_cf(
            cfh(&self.db, cf::META),
            keys::COUNTER_USER_ROW,
            row.to_le_bytes(),
        );
    }

    /// Writes an event.
    pub fn put_event(&mut self, key: &EventKey, value: &[u8]) {
        self.wb
            .put_cf(cfh(&self.db, cf::EVENTS), key.encode(), value);
    }

    /// Writes many events (one column-family lookup).
    pub fn put_events<'a>(&mut self, events: impl IntoIterator<Item = (EventKey, &'a [u8])>) {
        let events_cf = cfh(&self.db, cf::EVENTS);
        for (k, v) in events {
            self.wb.put_cf(events_cf, k.encode(), v);
        }
    }

    /// Links an identity to a contact (both directions).
    pub fn put_identity(
        &mut self,
        id_type: &str,
        channel_id: &str,
        id_value: &str,
        contact: u64,
        created_ms: i64,
    ) {
        let k = keys::identity_key(id_type, channel_id, id_value);
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&contact.to_le_bytes());
        v.extend_from_slice(&created_ms.to_le_bytes());
        self.wb.put_cf(cfh(&self.db, cf::IDENTITIES), &k, &v);
        self.wb.put_cf(
            cfh(&self.db, cf::CONTACT_IDENTITIES),
            keys::contact_identity_key(contact, &k),
            created_ms.to_le_bytes(),
        );
    }

    /// Deletes one event.
    pub fn delete_event(&mut self, key: &EventKey) {
        self.wb.delete_cf(cfh(&self.db, cf::EVENTS), key.encode());
    }

    /// Unlinks an identity (both directions) from `contact`.
    pub fn delete_identity(&mut self, contact: u64, identity_key: &[u8]) {
        self.wb
            .delete_cf(cfh(&self.db, cf::IDENTITIES), identity_key);
        self.wb.delete_cf(
            cfh(&self.db, cf::CONTACT_IDENTITIES),
            keys::contact_identity_key(contact, identity_key),
        );
    }

    /// Writes a user-table row.
    pub fn put_user_row(&mut self, table_id: u32, row_id: u64, row: &[u8]) {
        self.wb.put_cf(
            cfh(&self.db, cf::USER_ROWS),
            keys::user_row_key(table_id, row_id),
            row,
        );
    }

    /// Deletes one user-table row.
    pub fn delete_user_row(&mut self, table_id: u32, row_id: u64) {
        self.wb.delete_cf(
            cfh(&self.db, cf::USER_ROWS),
            keys::user_row_key(table_id, row_id),
        );
    }

    /// Deletes every row of a user table, and its primary key entries (range deletion).
    pub fn drop_user_table_rows(&mut self, table_id: u32) {
        let from = keys::user_table_prefix(table_id);
        let to = (table_id as u64 + 1).min(u32::MAX as u64) as u32;
        self.wb
            .delete_range_cf(cfh(&self.db, cf::USER_ROWS), from, to.to_be_bytes());
        self.drop_user_pks(table_id);
    }

    /// Deletes every primary key entry of a user table (range deletion).
    pub fn drop_user_pks(&mut self, table_id: u32) {
        let from = keys::user_table_prefix(table_id);
        let to = (table_id as u64 + 1).min(u32::MAX as u64) as u32;
        self.wb
            .delete_range_cf(cfh(&self.db, cf::USER_KEYS), from, to.to_be_bytes());
    }

    /// Points a user table's primary key `key` at `row_id`.
    pub fn put_user_pk(&mut self, table_id: u32, key: &[u8], row_id: u64) {
        self.wb.put_cf(
            cfh(&self.db, cf::USER_KEYS),
            keys::user_pk_key(table_id, key),
            row_id.to_be_bytes(),
        );
    }

    /// Removes a user table's primary key entry.
    pub fn delete_user_pk(&mut self, table_id: u32, key: &[u8]) {
        self.wb.delete_cf(
            cfh(&self.db, cf::USER_KEYS),
            keys::user_pk_key(table_id, key),
        );
    }

    /// Deletes every event of UTC days before `day` (range deletion).
    pub fn drop_events_before(&mut self, day: i32) {
        self.wb.delete_range_cf(
            cfh(&self.db, cf::EVENTS),
            keys::event_day_prefix(i32::MIN),
            keys::event_day_prefix(day),
        );
    }

    /// Records that contact `source` was merged into `target`.
    pub fn put_alias(&mut self, source: u64, target: u64) {
        self.wb.put_cf(
            cfh(&self.db, cf::META),
            keys::alias_key(source),
            target.to_le_bytes(),
        );
    }

    /// Writes a named setting (`setting/<name>` in `meta`).
    pub fn put_setting(&mut self, name: &str, value: &[u8]) {
        self.wb
            .put_cf(cfh(&self.db, cf::META), keys::setting_key(name), value);
    }

    /// Number of operations in the batch.
    pub fn len(&self) -> usize {
        self.wb.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.wb.is_empty()
    }

    /// Approximate memory of the batch.
    pub fn size_in_bytes(&self) -> usize {
        self.wb.size_in_bytes()
    }
}
