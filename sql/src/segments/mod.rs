//! Segments: groups (dynamic and static) and tags — their statements
//! (`CREATE [STATIC] GROUP`, `ALTER GROUP`, `CREATE TAG`, `REFRESH`,
//! `DROP`), the refresh scheduler, membership reads and edits for the rest
//! of the crate, and the `in_group` function.
//!
//! May use: `pgcompat`, `runtime`, `model`, `error`.

pub mod functions;
pub mod groups;
pub mod membership;
pub mod scheduler;
pub mod tags;
