//! Contact merging and the staged contact/identity work every identity
//! statement shares (`identify`, identity-keyed ingest, `merge_contacts`,
//! `dedupe_contacts`, `delete_contact_data`).
//!
//! A [`ContactWork`] reads contacts and identities from the store, stages
//! every change (new contacts, identity links, merges, field updates) and
//! turns them into ONE write batch: a merge is committed atomically together
//! with the statement that caused it, so after `kill -9` it is either
//! complete (events re-keyed, identities moved, source row deleted, alias
//! written) or absent. Callers hold the engine's contact lock from the first
//! read until the batch is committed, so identity lookups and merges are
//! serialised (two concurrent `identify` calls for one external id create
//! one contact).
//!
//! Merge rules: identities, events, group memberships and tag values of the
//! source move to the target; for each field the value of the contact
//! updated most recently wins when it is non-empty, the other contact's
//! value fills the gaps; `created_at`/`first_seen_at` keep the earliest,
//! `last_active_at` the latest; the source id is retired with an alias
//! record (`meta` `alias/<id>`) so ingest that still names it lands on the
//! target.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cohortdb_storage::catalog::Catalog;
use cohortdb_storage::keys::{decode_identity_key, identity_key};
use cohortdb_storage::{Batch, EventKey, EventScanSpec, Store, Value};

use crate::error::{Result, SqlError};
use crate::model::layout::ContactLayout;
use crate::model::rows::{contact_is_identified, decode_contact, encode_contact, now_ms};
use crate::runtime::{Reply, StatementContext};

/// Called for every merge, inside the merge's write batch: `source`'s group
/// memberships move to `target` (tag values are recomputed by their next
/// refresh).
pub fn on_contacts_merged(
    store: &Store,
    batch: &mut Batch,
    target: u64,
    source: u64,
) -> Result<()> {
    crate::segments::membership::move_memberships(store, batch, target, source)
}

/// Called by `delete_contact_data`, inside its write batch: the contact
/// leaves every group (static memberships and dynamic results).
pub fn on_contact_data_deleted(store: &Store, batch: &mut Batch, contact: u64) -> Result<()> {
    crate::segments::membership::leave_all_groups(store, batch, contact);
    Ok(())
}

/// Staged changes to contacts and identities, committed as one batch.
pub struct ContactWork {
    store: Arc<Store>,
    catalog: Arc<Catalog>,
    layout: ContactLayout,
    /// The batch everything is written into (callers may add more).
    pub batch: Batch,
    /// Staged contact rows: `None` = deleted (merged away).
    staged: BTreeMap<u64, Option<Vec<Value>>>,
    /// Staged identity links: identity key → (contact, created_at_ms).
    idents: HashMap<Vec<u8>, (u64, i64)>,
    /// Merges done in this work: source → target.
    merged: HashMap<u64, u64>,
    max_new_id: u64,
    now: i64,
}

impl ContactWork {
    /// Starts work over the current catalog.
    pub fn new(store: Arc<Store>) -> ContactWork {
        let catalog = store.catalog();
        let layout = ContactLayout::new(&catalog);
        let batch = store.batch();
        ContactWork {
            store,
            catalog,
            layout,
            batch,
            staged: BTreeMap::new(),
            idents: HashMap::new(),
            merged: HashMap::new(),
            max_new_id: 0,
            now: now_ms(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The catalog snapshot this work uses.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The contacts layout (field count).
    pub fn layout(&self) -> &ContactLayout {
        &self.layout
    }

    /// The time of this statement (ms since the epoch).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Field id of a contact field by name.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.catalog.contact_field(name).map(|(i, _)| i as usize)
    }

    /// The current id of `id`: itself, or its merge target (in this work or earlier).
    pub fn current_id(&self, id: u64) -> Result<Option<u64>> {
        let mut cur = id;
        while let Some(t) = self.merged.get(&cur) {
            cur = *t;
        }
        if self.exists(cur)? {
            return Ok(Some(cur));
        }
        match self.store.resolve_alias(cur)? {
            Some(t) => {
                let mut t = t;
                while let Some(n) = self.merged.get(&t) {
                    t = *n;
                }
                Ok(if self.exists(t)? { Some(t) } else { None })
            }
            None => Ok(None),
        }
    }

    /// True when contact `id` exists (staged or stored).
    pub fn exists(&self, id: u64) -> Result<bool> {
        match self.staged.get(&id) {
            Some(s) => Ok(s.is_some()),
            None => Ok(self.store.get_contact(id)?.is_some()),
        }
    }

    /// The staged fields of contact `id` (loaded on first use); `None` when it does not exist.
    pub fn contact(&mut self, id: u64) -> Result<Option<&mut Vec<Value>>> {
        if !self.staged.contains_key(&id) {
            let row = self
                .store
                .get_contact(id)?
                .map(|b| decode_contact(&b, &self.layout));
            match row {
                Some(f) => {
                    self.staged.insert(id, Some(f));
                }
                None => return Ok(None),
            }
        }
        Ok(self.staged.get_mut(&id).and_then(|s| s.as_mut()))
    }

    /// A copy of the fields of contact `id` (staged or stored), without staging it.
    pub fn get(&self, id: u64) -> Result<Option<Vec<Value>>> {
        match self.staged.get(&id) {
            Some(s) => Ok(s.clone()),
            None => Ok(self
                .store
                .get_contact(id)?
                .map(|b| decode_contact(&b, &self.layout))),
        }
    }

    /// Stages new fields for contact `id`.
    pub fn set(&mut self, id: u64, fields: Vec<Value>) {
        self.staged.insert(id, Some(fields));
    }

    /// Creates a new contact (`first_seen_at` = now); returns its id.
    pub fn create(&mut self) -> u64 {
        let id = self.store.alloc_contact_ids(1);
        self.max_new_id = self.max_new_id.max(id);
        let mut fields = vec![Value::Null; self.layout.field_count];
        if let Some(i) = self.field("first_seen_at") {
            fields[i] = Value::Ts(self.now);
        }
        if let Some(i) = self.field("updated_at") {
            fields[i] = Value::Ts(self.now);
        }
        self.staged.insert(id, Some(fields));
        id
    }

    /// The contact owning an identity (staged links first, then the store;
    /// merged contacts resolve to their target).
    pub fn lookup(&self, id_type: &str, channel: &str, value: &str) -> Result<Option<u64>> {
        let k = identity_key(id_type, channel, value);
        let found = match self.idents.get(&k) {
            Some((c, _)) => Some(*c),
            None => self.store.lookup_identity(id_type, channel, value)?,
        };
        match found {
            Some(c) => self.current_id(c),
            None => Ok(None),
        }
    }

    /// Links an identity to `contact` (replacing any previous link of it).
    pub fn link(&mut self, id_type: &str, channel: &str, value: &str, contact: u64) -> Result<()> {
        check_identity_value(id_type, channel, value)?;
        let k = identity_key(id_type, channel, value);
        let prev = match self.idents.get(&k) {
            Some((c, _)) => Some(*c),
            None => self.store.lookup_identity(id_type, channel, value)?,
        };
        if prev == Some(contact) {
            return Ok(());
        }
        if let Some(p) = prev {
            self.batch.delete_identity(p, &k);
        }
        self.batch
            .put_identity(id_type, channel, value, contact, self.now);
        self.idents.insert(k, (contact, self.now));
        Ok(())
    }

    /// Merges contact `source` into `target` (see the module documentation).
    /// Both must exist; merging a contact into itself is an error.
    pub fn merge(&mut self, target: u64, source: u64) -> Result<()> {
        if target == source {
            return Err(SqlError::InvalidValue(format!(
                "cannot merge contact {target} into itself"
            )));
        }
        let src = self
            .contact(source)?
            .map(|f| f.clone())
            .ok_or_else(|| SqlError::UndefinedObject(format!("contact {source} does not exist")))?;
        let catalog = self.catalog.clone();
        let (upd, created, first, last) = (
            self.field("updated_at"),
            self.field("created_at"),
            self.field("first_seen_at"),
            self.field("last_active_at"),
        );
        let now = self.now;
        let tgt = self
            .contact(target)?
            .ok_or_else(|| SqlError::UndefinedObject(format!("contact {target} does not exist")))?;
        let ts = |f: &Vec<Value>, i: Option<usize>| match i.map(|i| &f[i]) {
            Some(Value::Ts(t)) => Some(*t),
            _ => None,
        };
        let source_newer = ts(&src, upd).unwrap_or(i64::MIN) > ts(tgt, upd).unwrap_or(i64::MIN);
        for (i, sv) in src.iter().enumerate() {
            if Some(i) == upd || Some(i) == created || Some(i) == first || Some(i) == last {
                continue;
            }
            let empty = |v: &Value| {
                matches!(v, Value::Null) || matches!(v, Value::Str(s) if s.trim().is_empty())
            };
            if !empty(sv) && (source_newer || empty(&tgt[i])) {
                tgt[i] = sv.clone();
            }
        }
        for (i, keep_min) in [(created, true), (first, true), (last, false)] {
            let Some(i) = i else { continue };
            let v = match (ts(tgt, Some(i)), ts(&src, Some(i))) {
                (Some(a), Some(b)) => Some(if keep_min { a.min(b) } else { a.max(b) }),
                (a, b) => a.or(b),
            };
            if let Some(v) = v {
                tgt[i] = Value::Ts(v);
            }
        }
        if created.is_some_and(|i| tgt[i].is_null()) && contact_is_identified(tgt, &catalog) {
            tgt[created.expect("checked")] = Value::Ts(now);
        }
        if let Some(i) = upd {
            tgt[i] = Value::Ts(now);
        }
        // identities: stored links of the source, and links staged in this work
        for (k, created_ms) in self.store.contact_identities(source)? {
            if self.idents.contains_key(&k) {
                continue;
            }
            let (t, c, v) = decode_identity_key(&k).ok_or_else(|| {
                SqlError::Storage(cohortdb_storage::StorageError::Corrupt(
                    "identity key".into(),
                ))
            })?;
            self.batch.delete_identity(source, &k);
            self.batch.put_identity(&t, &c, &v, target, created_ms);
            self.idents.insert(k, (target, created_ms));
        }
        let staged: Vec<(Vec<u8>, i64)> = self
            .idents
            .iter()
            .filter(|(_, (c, _))| *c == source)
            .map(|(k, (_, t))| (k.clone(), *t))
            .collect();
        for (k, created_ms) in staged {
            let (t, c, v) = decode_identity_key(&k).expect("staged identity key");
            self.batch.delete_identity(source, &k);
            self.batch.put_identity(&t, &c, &v, target, created_ms);
            self.idents.insert(k, (target, created_ms));
        }
        // events: re-key every stored event of the source
        let spec = EventScanSpec {
            contacts: Some(vec![source]),
            ..Default::default()
        };
        let batch = &mut self.batch;
        self.store.scan_events(&spec, &mut |key, value| {
            batch.delete_event(key);
            let moved = EventKey {
                contact: target,
                ..*key
            };
            batch.put_event(&moved, value);
            true
        })?;
        on_contacts_merged(&self.store, &mut self.batch, target, source)?;
        self.batch.put_alias(source, target);
        self.staged.insert(source, None);
        self.merged.insert(source, target);
        Ok(())
    }

    /// Writes the staged contact rows into the batch and returns it.
    pub fn finish(mut self) -> Batch {
        crate::runtime::audit::take_into(&self.store, &mut self.batch, None);
        for (id, row) in &self.staged {
            match row {
                Some(f) => self.batch.put_contact(*id, &encode_contact(f)),
                None => self.batch.delete_contact(*id),
            }
        }
        if self.max_new_id > 0 {
            self.batch.note_contact_id(self.max_new_id);
        }
        self.batch
    }

    /// Commits everything atomically.
    pub async fn commit(self) -> Result<()> {
        let store = self.store.clone();
        store.commit(self.finish()).await?;
        Ok(())
    }

    /// Writes everything atomically and returns before it is durable: the
    /// caller releases the contact lock, then waits on the [`Pending`]
    /// (group commit across writers that take the lock).
    ///
    /// [`Pending`]: cohortdb_storage::writer::Pending
    pub async fn commit_applied(self) -> Result<cohortdb_storage::writer::Pending> {
        let store = self.store.clone();
        Ok(store.commit_applied(self.finish()).await?)
    }
}

/// Identity values may not contain NUL (the key separator) and may not be empty.
pub fn check_identity_value(id_type: &str, channel: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(SqlError::NotNull(format!(
            "{id_type}: the identity value is empty"
        )));
    }
    if id_type.contains('\0') || channel.contains('\0') || value.contains('\0') {
        return Err(SqlError::InvalidValue(
            "identity values cannot contain the NUL character".into(),
        ));
    }
    Ok(())
}

/// `CALL merge_contacts(target_id, source_id)`.
pub async fn merge_contacts(ctx: &StatementContext, target: u64, source: u64) -> Result<Reply> {
    let _g = ctx.contact_lock.lock().await;
    let mut work = ContactWork::new(ctx.store.clone());
    let t = work
        .current_id(target)?
        .ok_or_else(|| SqlError::UndefinedObject(format!("contact {target} does not exist")))?;
    let s = work
        .current_id(source)?
        .ok_or_else(|| SqlError::UndefinedObject(format!("contact {source} does not exist")))?;
    if t == s {
        return Err(SqlError::InvalidValue(format!(
            "contacts {target} and {source} are already one contact ({t})"
        )));
    }
    work.merge(t, s)?;
    work.commit().await?;
    Ok(Reply::command("CALL"))
}
