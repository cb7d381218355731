//! cohortdb on an Apache DataFusion Ballista cluster: a scheduler and an
//! executor with the analytics aggregate functions of
//! `cohortdb_analytics::udaf` registered, and a client that runs a
//! statement's SQL form over exported Parquet (`cohortdb export`).
//!
//! [`files`] (always built) registers an export's `events` and `contacts`
//! in any DataFusion context; [`cluster`] (feature `ballista`; tonic and
//! arrow-flight are heavy, and the server never links this crate) has the
//! scheduler, executor and client setup.

#[cfg(feature = "ballista")]
pub mod cluster;
pub mod files;
