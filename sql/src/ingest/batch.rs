//! Row ingestion with validation: the one path every INSERT, COPY and
//! UPDATE of contacts, events and user tables goes through. Rows are checked
//! and encoded into one write batch; nothing is written until `commit`, so a
//! statement applies entirely or not at all.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cohortdb_storage::catalog::{Catalog, EVENT_CHANNEL_FIELD};
use cohortdb_storage::codec::put_field;
use cohortdb_storage::time::utc_day;
use cohortdb_storage::{Batch, DataType, EventBulk, EventKey, Store, UserTableDef, Value};

use crate::error::{Result, SqlError};
use crate::model::layout::{ContactCol, ContactLayout, EventCol, EventLayout};
use crate::model::rows::{
    contact_is_identified, encode_fields, now_ms, show, validate_contact_value, RowRef,
};

tokio::task_local! {
    /// Set by a statement that returns the contacts it writes (`INSERT …
    /// RETURNING`, `UPDATE contacts … RETURNING`): the ids of the rows
    /// committed in its task, in row order.
    pub static WRITTEN_CONTACTS: std::sync::Arc<std::sync::Mutex<Vec<u64>>>;
}

/// Accumulates new contacts (INSERT / COPY).
pub struct ContactIngest {
    store: Arc<Store>,
    catalog: Arc<Catalog>,
    layout: ContactLayout,
    batch: Batch,
    ids: HashSet<u64>,
    /// Ids in row order, kept only inside [`WRITTEN_CONTACTS`].
    order: Option<Vec<u64>>,
    max_id: u64,
    rows: u64,
    now: i64,
}

impl ContactIngest {
    /// Starts a statement.
    pub fn new(store: Arc<Store>) -> ContactIngest {
        let catalog = store.catalog();
        let layout = ContactLayout::new(&catalog);
        let batch = store.batch();
        ContactIngest {
            store,
            catalog,
            layout,
            batch,
            ids: HashSet::new(),
            order: WRITTEN_CONTACTS.try_with(|_| Vec::new()).ok(),
            max_id: 0,
            rows: 0,
            now: now_ms(),
        }
    }

    /// The layout rows are given in.
    pub fn layout(&self) -> &ContactLayout {
        &self.layout
    }

    /// Adds one row given in layout column order (NULL = not given).
    pub fn push(&mut self, mut row: Vec<Value>, at: RowRef) -> Result<()> {
        let mut fields = vec![Value::Null; self.layout.field_count];
        let mut id = None;
        for (i, (name, col)) in self.layout.cols.iter().enumerate() {
            let v = std::mem::replace(&mut row[i], Value::Null);
            match col {
                ContactCol::Id => {
                    if let Value::Int(x) = v {
                        if x <= 0 {
                            return Err(SqlError::InvalidValue(format!(
                                "invalid value for column id in {at}: {x} (ids are positive)"
                            )));
                        }
                        id = Some(x as u64);
                    }
                }
                ContactCol::IsIdentified => {
                    if !v.is_null() {
                        return Err(SqlError::Unsupported(format!(
                            "column is_identified is derived from name, mobile_phone and email and cannot be set ({at})"
                        )));
                    }
                }
                ContactCol::Field(fid, _) => {
                    let mut v = v;
                    validate_contact_value(name, &mut v, at)?;
                    fields[*fid as usize] = v;
                }
            }
        }
        let id = match id {
            Some(id) => {
                if !self.ids.insert(id) || self.store.get_contact(id)?.is_some() {
                    return Err(SqlError::UniqueViolation(format!(
                        "duplicate key value violates unique constraint \"contacts_pkey\": Key (id)=({id}) already exists ({at})"
                    )));
                }
                self.store.observe_contact_id(id);
                id
            }
            None => {
                let id = self.store.alloc_contact_ids(1);
                self.ids.insert(id);
                id
            }
        };
        self.max_id = self.max_id.max(id);
        if let Some(order) = &mut self.order {
            order.push(id);
        }
        let set_now = |fields: &mut Vec<Value>, name: &str, cat: &Catalog, now: i64| {
            if let Some((fid, _)) = cat.contact_field(name) {
                if fields[fid as usize].is_null() {
                    fields[fid as usize] = Value::Ts(now);
                }
            }
        };
        if contact_is_identified(&fields, &self.catalog) {
            set_now(&mut fields, "created_at", &self.catalog, self.now);
        }
        set_now(&mut fields, "first_seen_at", &self.catalog, self.now);
        if let Some((fid, _)) = self.catalog.contact_field("updated_at") {
            fields[fid as usize] = Value::Ts(self.now);
        }
        self.batch.put_contact(id, &encode_fields(&fields));
        self.rows += 1;
        if self.rows % 1024 == 0 {
            check_statement_size(&self.store, self.batch.size_in_bytes())?;
        }
        Ok(())
    }

    /// Writes everything atomically; returns the number of rows. Inside
    /// [`WRITTEN_CONTACTS`] the committed ids are appended there.
    pub async fn commit(mut self) -> Result<u64> {
        if self.rows > 0 {
            self.batch.note_contact_id(self.max_id);
            crate::runtime::audit::take_into(&self.store, &mut self.batch, Some(self.rows));
            self.store.commit(self.batch).await?;
        }
        if let Some(order) = &self.order {
            let _ = WRITTEN_CONTACTS.try_with(|ids| {
                ids.lock().expect("inserted ids").extend_from_slice(order);
            });
        }
        Ok(self.rows)
    }
}

/// Fails with 54000 when a statement has staged more than the configured
/// maximum, and with 53200 when the process is past the server memory
/// budget (`max_server_memory_mb`) while it stages.
fn check_statement_size(store: &Store, bytes: usize) -> Result<()> {
    let max = store.max_statement_bytes();
    if bytes > max {
        return Err(SqlError::ProgramLimit(format!(
            "statement too large: it staged more than {} MiB (max_statement_mb); split the COPY or INSERT into smaller statements, or raise max_statement_mb",
            max >> 20
        )));
    }
    crate::runtime::memory_budget::check_staging(bytes)?;
    Ok(())
}

/// Accumulates events (INSERT / COPY).
pub struct EventIngest {
    store: Arc<Store>,
    catalog: Arc<Catalog>,
    layout: EventLayout,
    batch: Batch,
    events: EventBulk,
    seq_next: u64,
    seq_end: u64,
    max_seq: u64,
    contacts: HashMap<u64, Option<i64>>,
    rows: u64,
    scratch: Vec<u8>,
    outbound_types: HashSet<u32>,
    /// Identity-keyed rows: identities → placeholder contact id, resolved at commit.
    ident_index: HashMap<Vec<u8>, u64>,
    ident_rows: Vec<Vec<crate::identity::resolve::IdentityRef>>,
    ident_key: Vec<u8>,
    /// Message ids committed with the events: `(scope, id)`, receive time,
    /// and whether to expire old days (HTTP collector retries).
    messages: Vec<(String, String)>,
    messages_at: i64,
    expire_messages: bool,
    /// The rows written, kept for RETURNING when asked ([`EventIngest::record_written`]).
    written: Option<Vec<WrittenEvent>>,
}

/// One event as a statement wrote it (for RETURNING): its type, its
/// contact (after identity resolution and merges, once committed), its
/// time and its encoded channel and properties.
#[derive(Debug, Clone)]
pub struct WrittenEvent {
    /// Event type id.
    pub event_type: u32,
    /// Contact id.
    pub contact: u64,
    /// Event time, ms.
    pub ts_ms: i64,
    /// Channel and properties, encoded as stored.
    pub props: Vec<u8>,
}

const SEQ_BLOCK: u64 = 4096;

/// Placeholder contact ids of identity-keyed rows carry this bit until commit.
const PLACEHOLDER: u64 = 1 << 63;

impl EventIngest {
    /// Starts a statement.
    pub fn new(store: Arc<Store>) -> EventIngest {
        let catalog = store.catalog();
        let layout = EventLayout::new(&catalog, false);
        let batch = store.batch();
        let outbound_types = catalog
            .data()
            .event_types
            .iter()
            .filter(|t| t.event.starts_with("wechat_") && t.event.ends_with("_sent"))
            .map(|t| t.id)
            .collect();
        EventIngest {
            store,
            catalog,
            layout,
            batch,
            events: EventBulk::new(),
            seq_next: 0,
            seq_end: 0,
            max_seq: 0,
            contacts: HashMap::new(),
            rows: 0,
            scratch: Vec::with_capacity(256),
            outbound_types,
            ident_index: HashMap::new(),
            ident_rows: Vec::new(),
            ident_key: Vec::with_capacity(64),
            messages: Vec::new(),
            messages_at: 0,
            expire_messages: false,
            written: None,
        }
    }

    /// Keeps every row pushed from now on, to be returned by
    /// [`EventIngest::commit_returning`] (INSERT … RETURNING).
    pub fn record_written(&mut self) {
        self.written = Some(Vec::new());
    }

    /// The contact of an identity-keyed row: a placeholder id resolved (or
    /// created) at commit, under the contact lock, in the statement's batch.
    /// Arguments are the row's `channel_id`, `external_id`, `openid`,
    /// `unionid`, `anonymous_id`; `None` when the row names no identity.
    pub fn identity_contact(
        &mut self,
        channel: Option<&str>,
        ids: [Option<&str>; 4],
        at: RowRef,
    ) -> Result<Option<u64>> {
        if ids.iter().all(|v| v.is_none_or(|s| s.is_empty())) {
            return Ok(None);
        }
        self.ident_key.clear();
        self.ident_key
            .extend_from_slice(channel.unwrap_or("").as_bytes());
        for v in ids {
            self.ident_key.push(0);
            if let Some(v) = v {
                self.ident_key.push(1);
                self.ident_key.extend_from_slice(v.as_bytes());
            }
        }
        if let Some(p) = self.ident_index.get(self.ident_key.as_slice()) {
            return Ok(Some(*p));
        }
        let refs =
            crate::identity::resolve::row_identities(channel, ids[0], ids[1], ids[2], ids[3], at)?;
        if refs.is_empty() {
            return Ok(None);
        }
        let p = PLACEHOLDER | self.ident_rows.len() as u64;
        self.ident_rows.push(refs);
        self.ident_index.insert(self.ident_key.clone(), p);
        Ok(Some(p))
    }

    /// Records message ids `(scope, id)` in the dedupe table in the same
    /// atomic write as the events, received at `now_ms`; `expire_old` also
    /// drops the days past the dedupe window.
    pub fn remember_messages(&mut self, ids: Vec<(String, String)>, now_ms: i64, expire_old: bool) {
        self.messages = ids;
        self.messages_at = now_ms;
        self.expire_messages = expire_old;
    }

    /// The layout rows are given in (the `events` table's columns).
    pub fn layout(&self) -> &EventLayout {
        &self.layout
    }

    /// Adds one row given in layout column order. On error nothing of the row is kept.
    pub fn push(&mut self, row: &[Value], at: RowRef) -> Result<()> {
        self.push_for(row, None, at)
    }

    /// Like [`EventIngest::push`], for `contact` when the row has no
    /// `contact_id` (identity-keyed rows: see [`EventIngest::identity_contact`]).
    pub fn push_for(
        &mut self,
        row: &[Value],
        contact_if_none: Option<u64>,
        at: RowRef,
    ) -> Result<()> {
        let mut contact = None;
        let mut event_type = None;
        let mut ts = None;
        self.scratch.clear();
        for (i, (name, col)) in self.layout.cols.iter().enumerate() {
            let v = &row[i];
            match col {
                EventCol::ContactId => match v {
                    Value::Int(c) if *c > 0 => contact = Some(*c as u64),
                    Value::Null => {}
                    other => {
                        return Err(SqlError::InvalidValue(format!(
                            "invalid value for column contact_id in {at}: {}",
                            show(other)
                        )))
                    }
                },
                EventCol::Event => match v {
                    Value::Str(code) => match self.catalog.event_type(code) {
                        Some(t) => event_type = Some(t.id),
                        None => {
                            return Err(SqlError::InvalidValue(format!(
                                "invalid value for column event in {at}: '{code}' is not a defined event type (define it with INSERT INTO event_types)"
                            )))
                        }
                    },
                    Value::Null => {}
                    other => {
                        return Err(SqlError::InvalidValue(format!(
                            "invalid value for column event in {at}: {}",
                            show(other)
                        )))
                    }
                },
                EventCol::EventDate => {
                    if let Value::Ts(t) = v {
                        ts = Some(*t)
                    }
                }
                EventCol::EventDay | EventCol::EventAlias => {}
                EventCol::ChannelId => {
                    if let Value::Str(s) = v {
                        put_field(&mut self.scratch, EVENT_CHANNEL_FIELD, cohortdb_storage::ValueRef::Str(s));
                    }
                }
                EventCol::Prop(fid, t) => {
                    let ok = matches!(
                        (v, t),
                        (Value::Null, _)
                            | (Value::Str(_), DataType::Varchar)
                            | (Value::Int(_), DataType::Bigint)
                            | (Value::Float(_), DataType::Double)
                            | (Value::Bool(_), DataType::Boolean)
                            | (Value::Date(_), DataType::Date)
                            | (Value::Ts(_), DataType::Timestamptz)
                    );
                    if !ok {
                        return Err(SqlError::InvalidText(format!(
                            "invalid value for property {name} in {at}: {} is not of type {}",
                            show(v),
                            t.sql_name()
                        )));
                    }
                    put_field(&mut self.scratch, *fid, v.as_ref());
                }
            }
        }
        let props = std::mem::take(&mut self.scratch);
        let contact = contact.or(contact_if_none);
        let r = self.finish_row(contact, event_type, ts, &props, at);
        self.scratch = props;
        r
    }

    /// Looks up an event code (fast ingest path).
    pub fn event_type_id(&self, code: &str, at: RowRef) -> Result<u32> {
        match self.catalog.event_type(code) {
            Some(t) => Ok(t.id),
            None => Err(SqlError::InvalidValue(format!(
                "invalid value for column event in {at}: '{code}' is not a defined event type (define it with INSERT INTO event_types)"
            ))),
        }
    }

    /// Adds a row whose channel and properties are already encoded in `props`
    /// (fast ingest path: COPY parses straight into the encoding).
    pub fn finish_row(
        &mut self,
        contact: Option<u64>,
        event_type: Option<u32>,
        ts: Option<i64>,
        props: &[u8],
        at: RowRef,
    ) -> Result<()> {
        let contact = contact
            .ok_or_else(|| SqlError::NotNull(format!("{at}: contact_id is required for events")))?;
        let event_type = event_type
            .ok_or_else(|| SqlError::NotNull(format!("{at}: event is required for events")))?;
        let ts = ts
            .ok_or_else(|| SqlError::NotNull(format!("{at}: event_date is required for events")))?;
        let known = contact & PLACEHOLDER != 0
            || match self.contacts.get(&contact) {
                Some(_) => true,
                None => self.store.get_contact(contact)?.is_some(),
            };
        let contact = if known {
            contact
        } else {
            // a contact merged into another: its events go to the target
            match self.store.resolve_alias(contact)? {
                Some(t) if self.store.get_contact(t)?.is_some() => t,
                _ => {
                    return Err(SqlError::ForeignKey(format!(
                        "{at}: contact_id {contact} does not exist (insert the contact first, or identify it by external_id/openid)"
                    )))
                }
            }
        };
        let entry = self.contacts.entry(contact).or_insert(None);
        if !self.outbound_types.contains(&event_type) {
            *entry = Some(entry.map_or(ts, |m| m.max(ts)));
        }
        if self.seq_next == self.seq_end {
            self.seq_next = self.store.alloc_event_seqs(SEQ_BLOCK);
            self.seq_end = self.seq_next + SEQ_BLOCK;
        }
        let seq = self.seq_next;
        self.seq_next += 1;
        self.max_seq = seq;
        let key = EventKey {
            day: utc_day(ts),
            event_type,
            contact,
            ts_ms: ts,
            seq,
        };
        self.events.push(&key, props);
        if let Some(w) = &mut self.written {
            w.push(WrittenEvent {
                event_type,
                contact,
                ts_ms: ts,
                props: props.to_vec(),
            });
        }
        self.rows += 1;
        if self.rows % 4096 == 0 {
            check_statement_size(
                &self.store,
                self.events.bytes() + self.batch.size_in_bytes(),
            )?;
        }
        Ok(())
    }

    /// Updates the contacts' `last_active_at` / `first_seen_at` and writes
    /// everything atomically; returns the number of events.
    pub async fn commit(self, contact_lock: &tokio::sync::Mutex<()>) -> Result<u64> {
        Ok(self.commit_returning(contact_lock).await?.0)
    }

    /// [`EventIngest::commit`], also returning the rows written when
    /// [`EventIngest::record_written`] was called (empty otherwise), with
    /// their final contact ids.
    pub async fn commit_returning(
        mut self,
        contact_lock: &tokio::sync::Mutex<()>,
    ) -> Result<(u64, Vec<WrittenEvent>)> {
        if self.rows == 0 {
            return Ok((0, Vec::new()));
        }
        let _guard = contact_lock.lock().await;
        let mut work = crate::identity::merge::ContactWork::new(self.store.clone());
        // Resolve identity placeholders (creating contacts and identities), and
        // contacts merged away while the statement was staged.
        let mut remap: HashMap<u64, u64> = HashMap::new();
        for (i, refs) in self.ident_rows.iter().enumerate() {
            let (id, _) = crate::identity::resolve::resolve_row(&mut work, refs)?;
            remap.insert(PLACEHOLDER | i as u64, id);
        }
        // a later row may have merged an earlier row's contact away
        for id in remap.values_mut() {
            if let Some(cur) = work.current_id(*id)? {
                *id = cur;
            }
        }
        let mut staged: Vec<(u64, Option<i64>)> =
            self.contacts.iter().map(|(c, t)| (*c, *t)).collect();
        staged.sort_unstable();
        for (c, _) in &staged {
            if c & PLACEHOLDER == 0 && !work.exists(*c)? {
                let t = work.current_id(*c)?.ok_or_else(|| {
                    SqlError::ForeignKey(format!(
                        "contact_id {c} was deleted while the statement ran"
                    ))
                })?;
                remap.insert(*c, t);
            }
        }
        if !remap.is_empty() {
            self.events.remap_contacts(|c| remap.get(&c).copied());
        }
        let mut written = self.written.take().unwrap_or_default();
        for w in &mut written {
            if let Some(c) = remap.get(&w.contact) {
                w.contact = *c;
            }
        }
        let mut latest: HashMap<u64, Option<i64>> = HashMap::new();
        for (c, t) in staged {
            let c = remap.get(&c).copied().unwrap_or(c);
            let e = latest.entry(c).or_insert(None);
            if let Some(t) = t {
                *e = Some(e.map_or(t, |m| m.max(t)));
            }
        }
        let last = self
            .catalog
            .contact_field("last_active_at")
            .map(|(i, _)| i as usize);
        let first = self
            .catalog
            .contact_field("first_seen_at")
            .map(|(i, _)| i as usize);
        let mut ids: Vec<(u64, i64)> = latest
            .iter()
            .filter_map(|(c, t)| t.map(|t| (*c, t)))
            .collect();
        ids.sort_unstable();
        for (id, ts) in ids {
            let Some(mut fields) = work.get(id)? else {
                continue;
            };
            let mut changed = false;
            if let Some(i) = last {
                if !matches!(fields[i], Value::Ts(t) if t >= ts) {
                    fields[i] = Value::Ts(ts);
                    changed = true;
                }
            }
            if let Some(i) = first {
                if !matches!(fields[i], Value::Ts(t) if t <= ts) {
                    fields[i] = Value::Ts(ts);
                    changed = true;
                }
            }
            if changed {
                work.set(id, fields);
            }
        }
        let mut batch = work.finish();
        batch.note_event_seq(self.max_seq);
        for (scope, id) in &self.messages {
            batch.put_dedupe(scope, id, self.messages_at);
        }
        if self.expire_messages {
            batch.expire_dedupe(self.messages_at);
        }
        self.store.commit_events(self.events, batch).await?;
        Ok((self.rows, written))
    }
}

/// Accumulates rows of a user table.
pub struct UserRowIngest {
    store: Arc<Store>,
    table: UserTableDef,
    batch: Batch,
    rows: u64,
    max_row: u64,
    /// Primary keys of the rows pushed, with their row ids.
    keys: Vec<(Vec<u8>, u64)>,
}

/// Serialises writes of user-table rows that read before they write
/// (UPDATE, and INSERT/COPY/DELETE of a table with a primary key), so two
/// concurrent `SET x = x + 1` never lose an increment and two inserts of
/// one key never both succeed.
pub static USER_ROW_WRITES: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(Default::default);

/// 23502 when `row` (values in column order) has a NULL in a NOT NULL
/// column of `table`.
pub fn check_not_null(table: &UserTableDef, row: &[Value]) -> Result<()> {
    for (i, c) in table.columns.iter().enumerate() {
        if c.not_null && matches!(row.get(i), None | Some(Value::Null)) {
            return Err(SqlError::NotNull(format!(
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                c.name, table.name
            )));
        }
    }
    Ok(())
}

/// The encoded primary key of `row` (values in column order); `None` for a
/// table without one. A NULL key column is 23502.
pub fn user_pk(table: &UserTableDef, row: &[Value]) -> Result<Option<Vec<u8>>> {
    if table.primary_key.is_empty() {
        return Ok(None);
    }
    for &i in &table.primary_key {
        if matches!(row.get(i as usize), None | Some(Value::Null)) {
            return Err(SqlError::NotNull(format!(
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                table.columns[i as usize].name, table.name
            )));
        }
    }
    Ok(Some(cohortdb_storage::codec::encode_row(
        table
            .primary_key
            .iter()
            .enumerate()
            .map(|(k, &i)| (k as u32, &row[i as usize])),
    )))
}

/// 23505 for `key` of `table`, naming the key's values as written in `row`.
pub fn duplicate_key(table: &UserTableDef, row: &[Value]) -> SqlError {
    let cols: Vec<&str> = table
        .primary_key
        .iter()
        .map(|&i| table.columns[i as usize].name.as_str())
        .collect();
    let vals: Vec<String> = table
        .primary_key
        .iter()
        .map(|&i| match &row[i as usize] {
            Value::Int(n) => n.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
            Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            other => crate::model::rows::show(other),
        })
        .collect();
    SqlError::UniqueViolation(format!(
        "duplicate key value violates unique constraint \"{}_pkey\": Key ({})=({}) already exists",
        table.name,
        cols.join(", "),
        vals.join(", ")
    ))
}

impl UserRowIngest {
    /// Starts a statement on `table`.
    pub fn new(store: Arc<Store>, table: UserTableDef) -> UserRowIngest {
        let batch = store.batch();
        UserRowIngest {
            store,
            table,
            batch,
            rows: 0,
            max_row: 0,
            keys: Vec::new(),
        }
    }

    /// Adds one row in column order.
    pub fn push(&mut self, row: &[Value]) -> Result<()> {
        check_not_null(&self.table, row)?;
        let id = self.store.alloc_user_rows(1);
        if let Some(key) = user_pk(&self.table, row)? {
            if self.keys.iter().any(|(k, _)| *k == key) {
                return Err(duplicate_key(&self.table, row));
            }
            self.keys.push((key, id));
        }
        self.max_row = id;
        self.batch
            .put_user_row(self.table.id, id, &encode_fields(row));
        self.rows += 1;
        if self.rows % 1024 == 0 {
            check_statement_size(&self.store, self.batch.size_in_bytes())?;
        }
        Ok(())
    }

    /// Writes atomically; with a primary key, only when no key exists yet.
    pub async fn commit(mut self) -> Result<u64> {
        if self.rows == 0 {
            return Ok(0);
        }
        self.batch.note_user_row(self.max_row);
        if self.keys.is_empty() {
            self.store.commit(self.batch).await?;
            return Ok(self.rows);
        }
        let guard = USER_ROW_WRITES.lock().await;
        for (key, id) in &self.keys {
            if self.store.get_user_pk(self.table.id, key)?.is_some() {
                let row = self
                    .store
                    .get_user_row(self.table.id, *id)
                    .ok()
                    .flatten()
                    .map(|b| cohortdb_storage::codec::decode_row(&b, self.table.columns.len()));
                // the row is not written yet: name the key from its encoding
                let vals = row.unwrap_or_else(|| {
                    let mut v = vec![Value::Null; self.table.columns.len()];
                    let k = cohortdb_storage::codec::decode_row(key, self.table.primary_key.len());
                    for (j, &i) in self.table.primary_key.iter().enumerate() {
                        v[i as usize] = k[j].clone();
                    }
                    v
                });
                return Err(duplicate_key(&self.table, &vals));
            }
            self.batch.put_user_pk(self.table.id, key, *id);
        }
        // written under the lock, durable after it (group commit)
        let pending = self.store.commit_applied(self.batch).await?;
        drop(guard);
        pending.durable().await?;
        Ok(self.rows)
    }
}
