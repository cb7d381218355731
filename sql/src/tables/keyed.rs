//! Reads by key for the lookup fast path (`crate::lookup`): the rows a scan
//! filtered on the table's key would return, read with direct RocksDB gets
//! instead of a scan; and the check that a provider a prepared plan
//! captured still reads its table as the catalog defines it now.

use cohortdb_storage::Catalog;
use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableProvider;

use super::contacts::ContactsTable;
use super::identities::IdentitiesTable;
use super::user::UserTable;
use crate::error::Result;

/// A table whose rows can be read by key without a scan.
pub trait KeyedRead: Send + Sync + std::fmt::Debug {
    /// Positions, in the table's schema, of the key columns.
    fn key_columns(&self) -> Vec<usize>;

    /// The rows whose key is one of `keys` (tuples in key-column order,
    /// each value of its column's Arrow type, none NULL), in the table's
    /// schema and in the order a scan with the same filter returns them,
    /// masked as this session's scans mask them. Only `columns` (positions
    /// in the table's schema) need be read; others may be NULL.
    fn read_keys(&self, keys: &[Vec<ScalarValue>], columns: &[usize]) -> Result<RecordBatch>;
}

/// The keyed read of `provider`, when it has one: `contacts` and
/// `contact_view` (by `id`), a user table with a one-column primary key, `identities` (by `id_type`,
/// `channel_id`, `id_value`).
pub fn keyed(provider: &dyn TableProvider) -> Option<&dyn KeyedRead> {
    if let Some(t) = provider.downcast_ref::<ContactsTable>() {
        return t.keyed();
    }
    if let Some(t) = provider.downcast_ref::<UserTable>() {
        return t.keyed();
    }
    provider
        .downcast_ref::<IdentitiesTable>()
        .map(|t| t as &dyn KeyedRead)
}

/// Whether `provider`, built when a statement was planned, still reads its
/// table as `catalog` defines it (same columns, same types); `None` for
/// providers that cannot tell (a prepared plan reading one of those is
/// planned again whenever the catalog changed).
pub fn defined_as_in(provider: &dyn TableProvider, catalog: &Catalog) -> Option<bool> {
    if let Some(t) = provider.downcast_ref::<ContactsTable>() {
        return Some(t.defined_as_in(catalog));
    }
    if let Some(t) = provider.downcast_ref::<UserTable>() {
        return Some(t.defined_as_in(catalog));
    }
    // identities has a fixed schema
    provider.downcast_ref::<IdentitiesTable>().map(|_| true)
}
