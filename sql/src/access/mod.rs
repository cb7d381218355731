//! Who may do what: users, their SCRAM secrets and the user statements.
//! Roles, privileges and masking land here too: one exhaustive check over
//! [`crate::statement::Statement`] that every statement passes before the
//! session dispatches it (docs/architecture.md).
//!
//! May use: `statement`, `runtime`, `model`, `error`.

pub mod users;
