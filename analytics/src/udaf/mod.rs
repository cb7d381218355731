//! The analytics algorithms as DataFusion aggregate functions, so that any
//! DataFusion engine (the single server, plain DataFusion over exported
//! Parquet, a Ballista cluster) computes exactly the statements' answers.
//!
//! Two levels, both with order-free, mergeable state (no result depends on
//! how rows are split into partitions or in which order they arrive):
//!
//! ```sql
//! SELECT r['step'], r['contacts'], …
//! FROM (SELECT unnest(cohort_funnel_merge(spec, c)) AS r
//!       FROM (SELECT cohort_funnel(spec, event_date, step1, step2, …) AS c
//!             FROM events WHERE … GROUP BY contact_id))
//! ```
//!
//! - `cohort_<statement>(spec, event_date, [value,] [key,] [initial,] cond…)`,
//!   grouped by contact: the state is the contact's matching events as
//!   (time, condition bits[, VALUE][, key]) lists that merge by
//!   concatenation; `evaluate` sorts them by time, runs the statement's
//!   per-contact kernel and returns that contact's contribution as an
//!   encoded accumulator (BINARY, NULL when it contributes nothing).
//!   `value` (ATTRIBUTE, LTV) is the VALUE column; `key` a `STRUCT` of the
//!   grouping columns (FUNNEL `BY`, LTV `GROUP BY`, PATHS node as
//!   `STRUCT(event[, by])`), whose values travel as encoded tuples
//!   ([`keys`]) and are ranked in value order per contact, so "the
//!   smallest key" means the same as on the server; `initial` (LTV INITIAL
//!   ATTRIBUTE) the contact's initial time, which enrols the contact even
//!   without events. With a key the contribution is `STRUCT(state BINARY,
//!   key STRUCT)`, its `key` always NULL: it carries the key's types to the
//!   merge.
//! - `cohort_<statement>_merge(spec, contribution)`: the state is an encoded
//!   accumulator; partial states merge with the kernel's own `merge`;
//!   `evaluate` returns the statement's result rows as a list of structs
//!   (key columns first, in key order, NULLs last).
//!
//! `spec` is a JSON text constant with the statement's parameters (see
//! [`spec`]). A plan `GROUP BY contact_id` over hash-partitioned input
//! keeps every event of one contact in one accumulator, which is all
//! exactness needs. `composable` has `window_funnel` and `retention`.
//!
//! Implemented: all five statements with every clause (FUNNEL `BY`, LTV
//! `GROUP BY` and INITIAL ATTRIBUTE, PATHS with `BY`).

pub mod codec;
pub mod composable;
pub mod keys;
pub mod spec;
pub mod statement;

use datafusion::logical_expr::AggregateUDF;

/// Every aggregate function of this crate, ready to register.
pub fn aggregates() -> Vec<AggregateUDF> {
    let mut all = composable::aggregates();
    all.extend(statement::aggregates());
    all
}
