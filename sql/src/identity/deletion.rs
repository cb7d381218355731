//! `CALL delete_contact_data(channel_id, external_id)`: erase a contact's
//! data from one channel (seed 003 §2.2.6).
//!
//! In one atomic batch: the contact's identities on that channel
//! (`external_id` and `anonymous_id` accounts) and its events whose
//! `channel_id` is that channel are deleted; the contact leaves every group
//! ([`crate::identity::merge::on_contact_data_deleted`]); its fields are blanked except
//! `created_at`, `updated_at`, `first_seen_at`, `last_active_at`, and its name
//! becomes `已注销`. Identities and events of other channels stay. There is
//! no undo. Calling it for an unknown account does nothing.

use cohortdb_storage::catalog::EVENT_CHANNEL_FIELD;
use cohortdb_storage::keys::decode_identity_key;
use cohortdb_storage::{EventScanSpec, RowReader, Value, ValueRef};

use crate::error::Result;
use crate::identity::merge::{on_contact_data_deleted, ContactWork};
use crate::identity::resolve::{ANONYMOUS_ID, EXTERNAL_ID};
use crate::runtime::{Reply, StatementContext};

/// Name given to a contact whose data was deleted.
pub const DELETED_NAME: &str = "已注销";

/// Fields kept when a contact's data is deleted.
const KEPT_FIELDS: &[&str] = &[
    "created_at",
    "updated_at",
    "first_seen_at",
    "last_active_at",
];

/// Deletes the data of the contact owning `(external_id, channel, external_id)`.
/// Returns the contact id, or `None` when no such account exists.
pub async fn delete_contact_data(
    ctx: &StatementContext,
    channel: &str,
    external_id: &str,
) -> Result<Option<u64>> {
    let _g = ctx.contact_lock.lock().await;
    let store = ctx.store.clone();
    let mut work = ContactWork::new(store.clone());
    let Some(contact) = work.lookup(EXTERNAL_ID, channel, external_id)? else {
        return Ok(None);
    };
    for (k, _) in store.contact_identities(contact)? {
        if let Some((t, c, _)) = decode_identity_key(&k) {
            if c == channel && (t == EXTERNAL_ID || t == ANONYMOUS_ID) {
                work.batch.delete_identity(contact, &k);
            }
        }
    }
    let spec = EventScanSpec {
        contacts: Some(vec![contact]),
        ..Default::default()
    };
    let batch = &mut work.batch;
    store.scan_events(&spec, &mut |key, value| {
        let on_channel = RowReader::new(value)
            .find(|(id, _)| *id == EVENT_CHANNEL_FIELD)
            .is_some_and(|(_, v)| v == ValueRef::Str(channel));
        if on_channel {
            batch.delete_event(key);
        }
        true
    })?;
    on_contact_data_deleted(&store, &mut work.batch, contact)?;
    let kept: Vec<usize> = KEPT_FIELDS.iter().filter_map(|n| work.field(n)).collect();
    let (name, updated) = (work.field("name"), work.field("updated_at"));
    let now = work.now();
    if let Some(fields) = work.contact(contact)? {
        for (i, f) in fields.iter_mut().enumerate() {
            if !kept.contains(&i) {
                *f = Value::Null;
            }
        }
        if let Some(i) = name {
            fields[i] = Value::Str(DELETED_NAME.into());
        }
        if let Some(i) = updated {
            fields[i] = Value::Ts(now);
        }
    }
    work.commit().await?;
    tracing::info!(
        contact,
        channel,
        "delete_contact_data: channel account, its events and the contact's fields erased"
    );
    Ok(Some(contact))
}

/// The `CALL` outcome of a deletion.
pub fn outcome() -> Reply {
    Reply::command("CALL")
}
