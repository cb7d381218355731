//! Column layouts of the built-in relations, derived from the catalog:
//! which column is stored where, and the Arrow schema clients see.

use std::sync::Arc;

use cohortdb_storage::catalog::Catalog;
use cohortdb_storage::DataType;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};

use crate::model::convert::arrow_type_in;

/// Where a `contacts` column lives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ContactCol {
    /// The row key.
    Id,
    /// A stored field: `(field id, type)`.
    Field(u32, DataType),
    /// Derived: name, mobile_phone or email set.
    IsIdentified,
}

/// Layout of `contacts` / `contact_view`.
#[derive(Debug, Clone)]
pub struct ContactLayout {
    /// Columns in order.
    pub cols: Vec<(String, ContactCol)>,
    /// Number of stored fields (width of decoded rows).
    pub field_count: usize,
    /// Arrow schema.
    pub schema: SchemaRef,
    /// Time zone carried by TIMESTAMPTZ columns.
    pub tz: String,
}

impl ContactLayout {
    /// Builds the layout from the catalog (timestamps tagged UTC).
    pub fn new(cat: &Catalog) -> ContactLayout {
        Self::new_in(cat, crate::model::convert::TS_TZ)
    }

    /// Builds the layout; TIMESTAMPTZ columns carry time zone `tz`.
    pub fn new_in(cat: &Catalog, tz: &str) -> ContactLayout {
        let fields = &cat.data().contact_fields;
        let mut cols = vec![("id".to_string(), ContactCol::Id)];
        for (i, f) in fields.iter().enumerate().filter(|(_, f)| !f.custom) {
            cols.push((f.name.clone(), ContactCol::Field(i as u32, f.data_type)));
        }
        cols.push(("is_identified".to_string(), ContactCol::IsIdentified));
        for (i, f) in fields.iter().enumerate().filter(|(_, f)| f.custom) {
            cols.push((f.name.clone(), ContactCol::Field(i as u32, f.data_type)));
        }
        let schema = Arc::new(Schema::new(
            cols.iter()
                .map(|(n, c)| {
                    let t = match c {
                        ContactCol::Id => datafusion::arrow::datatypes::DataType::Int64,
                        ContactCol::Field(_, t) => arrow_type_in(*t, tz),
                        ContactCol::IsIdentified => datafusion::arrow::datatypes::DataType::Boolean,
                    };
                    Field::new(n, t, true)
                })
                .collect::<Vec<_>>(),
        ));
        ContactLayout {
            cols,
            field_count: fields.len(),
            schema,
            tz: tz.to_string(),
        }
    }

    /// Index of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.cols.iter().position(|(n, _)| n == name)
    }
}

/// Where an `events` / `event_view` column comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventCol {
    /// From the key.
    ContactId,
    /// Event code (from the key's type id).
    Event,
    /// Display name of the event type (views only).
    EventAlias,
    /// Event time (from the key).
    EventDate,
    /// Day of the event in the server time zone (derived).
    EventDay,
    /// Stored field 0.
    ChannelId,
    /// A property: `(field id, type)`.
    Prop(u32, DataType),
}

/// Layout of `events` / `event_view`.
#[derive(Debug, Clone)]
pub struct EventLayout {
    /// Columns in order.
    pub cols: Vec<(String, EventCol)>,
    /// Arrow schema.
    pub schema: SchemaRef,
    /// True for `event_view`.
    pub view: bool,
    /// Time zone carried by TIMESTAMPTZ columns.
    pub tz: String,
}

impl EventLayout {
    /// Builds the layout; `view` adds `event_alias` (timestamps tagged UTC).
    pub fn new(cat: &Catalog, view: bool) -> EventLayout {
        Self::new_in(cat, view, crate::model::convert::TS_TZ)
    }

    /// Builds the layout; TIMESTAMPTZ columns carry time zone `tz`.
    pub fn new_in(cat: &Catalog, view: bool, tz: &str) -> EventLayout {
        use datafusion::arrow::datatypes::DataType as A;
        let mut cols = vec![
            ("contact_id".to_string(), EventCol::ContactId),
            ("event".to_string(), EventCol::Event),
        ];
        if view {
            cols.push(("event_alias".to_string(), EventCol::EventAlias));
        }
        cols.push(("event_date".to_string(), EventCol::EventDate));
        cols.push(("event_day".to_string(), EventCol::EventDay));
        cols.push(("channel_id".to_string(), EventCol::ChannelId));
        for p in &cat.data().event_properties {
            cols.push((p.property.clone(), EventCol::Prop(p.id, p.data_type)));
        }
        let schema = Arc::new(Schema::new(
            cols.iter()
                .map(|(n, c)| {
                    let t = match c {
                        EventCol::ContactId => A::Int64,
                        EventCol::Event | EventCol::EventAlias | EventCol::ChannelId => A::Utf8,
                        EventCol::EventDate => arrow_type_in(DataType::Timestamptz, tz),
                        EventCol::EventDay => A::Date32,
                        EventCol::Prop(_, t) => arrow_type_in(*t, tz),
                    };
                    Field::new(n, t, true)
                })
                .collect::<Vec<_>>(),
        ));
        EventLayout {
            cols,
            schema,
            view,
            tz: tz.to_string(),
        }
    }

    /// Index of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.cols.iter().position(|(n, _)| n == name)
    }
}

/// Arrow schema of a user table; TIMESTAMPTZ columns carry time zone `tz`.
pub fn user_table_schema(cols: &[cohortdb_storage::ColumnDef], tz: &str) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(&c.name, arrow_type_in(c.data_type, tz), true))
            .collect::<Vec<_>>(),
    ))
}
