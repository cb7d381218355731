//! cohortdb storage: everything that lives in RocksDB — key encodings, the
//! catalog, contacts, identities, time-partitioned events, user tables and the
//! ingest writer actor that commits them.
//!
//! Layers above (the `sql` crate) see typed rows ([`Value`]) and scans; they
//! never build RocksDB keys themselves: every key layout is in [`keys`].

pub mod audit;
pub mod bitmap;
pub mod bulk;
pub mod catalog;
pub mod codec;
pub mod dedupe;
pub mod error;
pub mod groups;
pub mod journeys;
pub mod keys;
pub mod store;
pub mod time;
pub mod types;
pub mod wechat;
pub mod writer;

pub use bulk::EventBulk;
pub use catalog::{Catalog, ColumnDef, EventTypeDef, FieldDef, PropertyDef, UserTableDef, ViewDef};
pub use codec::{RowReader, Value, ValueRef};
pub use error::{Result, StorageError};
pub use groups::{GroupDef, GroupKind, RefreshPolicy, TagDef};
pub use keys::EventKey;
pub use store::{Batch, EventScanSpec, Store, StoreOptions};
pub use types::DataType;
