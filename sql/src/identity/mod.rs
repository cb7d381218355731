//! Identity: channel accounts → contacts. Resolution of identities while
//! rows are ingested, the staged contact work every identity statement
//! shares, and the procedures `identify`, `merge_contacts`,
//! `delete_contact_data`, `set_dedupe_rule`, `dedupe_contacts`
//! (docs/identity.md).
//!
//! May use: `segments` (memberships move with merged contacts), `runtime`,
//! `model`, `error`.

pub mod dedupe;
pub mod deletion;
pub mod merge;
pub mod procedures;
pub mod resolve;
