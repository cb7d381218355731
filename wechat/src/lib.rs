//! cohortdb's WeChat sender (SPEC §7): the HTTP client of the WeChat API
//! (`client`), the process's access-token cache (`tokens`), calls made for
//! a statement such as QR codes (`api`), the rate limit (`limits`), and the
//! actor that delivers the outbox the `wechat_*_send` procedures fill
//! (`sender`). Storage only through `cohortdb-storage`; no SQL.
//!
//! Delivery is at most once per recipient: a recipient is committed as
//! `sending` (WAL synced) before its API call; after a crash, `sending`
//! becomes `unknown` and is never called again.

pub mod api;
pub mod client;
pub mod limits;
pub mod sender;
pub mod tokens;

pub use sender::{spawn, SenderSettings};
