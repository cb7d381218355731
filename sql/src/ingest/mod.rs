//! Getting rows in (and out, for COPY TO): `COPY` in text, csv and binary,
//! statement-level validation and encoding into one write batch, and
//! identity-keyed ingest (`INSERT INTO events (openid, …)`).
//!
//! A COPY row's path: `copy.rs` (or `copy_binary.rs` → `copy.rs`) parses
//! and checks each field → `batch.rs` validates the row and stages it
//! (`EventIngest`/`ContactIngest`; identities resolved by
//! `identity::resolve`) → one storage write batch committed by the
//! storage writer.
//!
//! May use: `identity`, `segments` (tag import), `pgcompat`, `runtime`,
//! `model`, `error`.

pub mod batch;
pub mod copy;
pub mod copy_binary;
pub mod copy_binary_out;
pub mod identity_insert;
pub mod sources;
