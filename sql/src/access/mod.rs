//! Who may do what: users and their SCRAM secrets (`users.rs`), the
//! built-in roles (`roles.rs`) and the privilege checks every statement
//! and plan passes before it runs (`privilege.rs`). Masking rules are in
//! `model::masking`, applied by the contacts scan.
//!
//! May use: `statement`, `runtime`, `model`, `error`.

pub mod audit;
pub mod lockout;
pub mod privilege;
pub mod roles;
pub mod users;
