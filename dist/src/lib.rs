//! cohortdb on an Apache DataFusion Ballista cluster: a scheduler and an
//! executor with the analytics aggregate functions of
//! `cohortdb_analytics::udaf` registered, and a client that runs a
//! statement's SQL form over exported Parquet (`cohortdb export`).
//!
//! Built only with the `ballista` feature (tonic and arrow-flight are heavy;
//! the server never links this crate).
