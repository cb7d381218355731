//! The data model every layer shares: the column layouts of the built-in
//! relations, conversions between storage values, Arrow arrays and text,
//! contact/event row validation and encoding, and PostgreSQL's text form
//! of values.
//!
//! May use: `error` (and the storage crate). Nothing else in this crate.

pub mod convert;
pub mod layout;
pub mod masking;
pub mod pgtext;
pub mod rows;
