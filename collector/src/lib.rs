//! cohortdb's HTTP collector (SPEC §12): mini-program SDK batches
//! (`POST /sdk/v1/track`), Segment-shaped server batches (`POST
//! /v1/batch`) and official-account event pushes (`/wechat/{account_id}`),
//! all into the same durable ingest path as COPY; `GET /healthz`, `GET
//! /metrics`.
//!
//! Layers, top to bottom (arrows point down only):
//! - `http`: routes, admission (503 + `Retry-After` past `max_inflight`),
//!   body limits (413), timeouts (408), gzip, answers;
//! - `sdk`, `segment`, `wechat_push`: decode one endpoint's body into
//!   [`ingest::Incoming`] messages;
//! - `ingest`: message-id dedupe, property typing, identity resolution and
//!   the staged write of `cohortdb_sql::ingest`;
//! - `settings`, `metrics`: limits and counters.
//!
//! Uses `cohortdb-sql` (the ingest path, identity resolution, the app and
//! token registry) and `cohortdb-storage` (the dedupe table); the server
//! starts it next to the Postgres listener.

pub mod http;
pub mod ingest;
pub mod metrics;
pub mod sdk;
pub mod segment;
pub mod settings;
pub mod wechat_push;

pub use http::{router, serve, Collector};
pub use settings::CollectorSettings;
