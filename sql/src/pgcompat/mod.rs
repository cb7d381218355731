//! PostgreSQL compatibility for clients and BI tools: `pg_catalog` and
//! `information_schema` additions, system functions (`current_setting`,
//! `format`, `version()`, …), rewrites of client catalog idioms DataFusion
//! cannot plan as written, `x::text` as PostgreSQL renders it, output types
//! of literals and parameters, and the origins of result columns.
//!
//! May use: `runtime`, `model`, `error`.

pub mod bi_functions;
pub mod bi_rewrite;
pub mod catalog_subqueries;
pub mod client_functions;
pub mod client_rewrite;
pub mod literals;
pub mod origins;
pub mod output_names;
pub mod params;
pub mod parser;
pub mod pg_catalog_ext;
pub mod pg_functions;
pub mod proc_functions;
pub mod rewrite;
pub mod sized_functions;
pub mod text_cast;
pub mod version;
