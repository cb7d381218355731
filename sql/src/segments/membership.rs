//! Group memberships as the rest of the SQL layer reads and edits them:
//! the current members of a group (cached for `in_group`), removing deleted
//! contacts, moving a merged contact's memberships, and contact ids out of
//! query results.

use std::collections::HashMap;
use std::sync::Arc;

use cohortdb_storage::keys::BITMAP_GROUP;
use cohortdb_storage::Store;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType as A;
use roaring::RoaringTreemap;

use crate::error::{Result, SqlError};

/// The current complete membership of a group (42704 when there is no such group).
pub fn group_members(store: &Store, name: &str) -> Result<RoaringTreemap> {
    let cat = store.catalog();
    let g = cat.group(name).ok_or_else(|| no_group(name))?;
    Ok(store.read_bitmap(BITMAP_GROUP, g.id, g.version)?)
}

/// Bumped by every edit of a static group's bitmap (ALTER GROUP, contact deletion).
static EDITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

type MemberCache = HashMap<String, (u32, u32, u64, Arc<RoaringTreemap>)>;
static CACHE: std::sync::LazyLock<std::sync::Mutex<MemberCache>> =
    std::sync::LazyLock::new(Default::default);

/// [`group_members`], cached while the group's version (and, for static
/// groups, the edit counter) is unchanged: repeated `in_group` calls over
/// many batches read the bitmap once.
pub fn cached_members(store: &Store, name: &str) -> Result<Arc<RoaringTreemap>> {
    let cat = store.catalog();
    let g = cat.group(name).ok_or_else(|| no_group(name))?;
    let edits = EDITS.load(std::sync::atomic::Ordering::SeqCst);
    if let Some((id, v, e, set)) = CACHE.lock().expect("cache").get(name) {
        if *id == g.id && *v == g.version && *e == edits {
            return Ok(set.clone());
        }
    }
    let set = Arc::new(store.read_bitmap(BITMAP_GROUP, g.id, g.version)?);
    let mut c = CACHE.lock().expect("cache");
    if c.len() > 256 {
        c.clear();
    }
    c.insert(name.to_string(), (g.id, g.version, edits, set.clone()));
    Ok(set)
}

/// Invalidates cached memberships after a static group's bitmap was edited.
pub fn note_edit() {
    EDITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

pub(crate) fn no_group(name: &str) -> SqlError {
    SqlError::UndefinedObject(format!("group \"{name}\" does not exist"))
}

pub(crate) fn no_tag(name: &str) -> SqlError {
    SqlError::UndefinedObject(format!("tag \"{name}\" does not exist"))
}

/// Contact ids in the first column of query results.
pub(crate) fn ids_of(batches: &[datafusion::arrow::array::RecordBatch]) -> Result<RoaringTreemap> {
    let mut set = RoaringTreemap::new();
    for b in batches {
        if b.num_columns() == 0 {
            continue;
        }
        let col = datafusion::arrow::compute::cast(b.column(0), &A::Int64).map_err(|_| {
            SqlError::DatatypeMismatch(format!(
                "the query must return one column of contact ids (BIGINT), not {}",
                b.column(0).data_type()
            ))
        })?;
        let col = col.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for i in 0..col.len() {
            if col.is_valid(i) && col.value(i) > 0 {
                set.insert(col.value(i) as u64);
            }
        }
    }
    Ok(set)
}

/// Removes deleted contacts from every group (called with the DELETE's batch).
pub fn forget_contacts(store: &Arc<Store>, batch: &mut cohortdb_storage::Batch, ids: &[u64]) {
    if ids.is_empty() {
        return;
    }
    let set: RoaringTreemap = ids.iter().copied().collect();
    let empty = RoaringTreemap::new();
    for g in &store.catalog().data().groups {
        batch.edit_bitmap(BITMAP_GROUP, g.id, g.version, &empty, &set);
    }
    note_edit();
}

/// Moves `source`'s group memberships to `target` (merge_contacts, inside its batch).
pub fn move_memberships(
    store: &Store,
    batch: &mut cohortdb_storage::Batch,
    target: u64,
    source: u64,
) -> Result<()> {
    let (mut add, mut remove) = (RoaringTreemap::new(), RoaringTreemap::new());
    add.insert(target);
    remove.insert(source);
    for g in &store.catalog().data().groups {
        if store
            .read_bitmap(BITMAP_GROUP, g.id, g.version)?
            .contains(source)
        {
            batch.edit_bitmap(BITMAP_GROUP, g.id, g.version, &add, &remove);
        }
    }
    note_edit();
    Ok(())
}

/// Removes one contact from every group (delete_contact_data, inside its batch).
pub fn leave_all_groups(store: &Store, batch: &mut cohortdb_storage::Batch, contact: u64) {
    let mut remove = RoaringTreemap::new();
    remove.insert(contact);
    let empty = RoaringTreemap::new();
    for g in &store.catalog().data().groups {
        batch.edit_bitmap(BITMAP_GROUP, g.id, g.version, &empty, &remove);
    }
    note_edit();
}
