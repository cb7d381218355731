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
//! - `cohort_<statement>(spec, event_date, cond…)`, grouped by contact: the
//!   state is the contact's matching events as (time, condition bits)
//!   lists that merge by concatenation; `evaluate` sorts them by time, runs
//!   the statement's per-contact kernel and returns that contact's
//!   contribution as an encoded accumulator (BINARY, NULL when it
//!   contributes nothing).
//! - `cohort_<statement>_merge(spec, contribution)`: the state is an encoded
//!   accumulator; partial states merge with the kernel's own `merge`;
//!   `evaluate` returns the statement's result rows as a list of structs.
//!
//! `spec` is a JSON text constant with the statement's parameters (see
//! [`spec`]). A plan `GROUP BY contact_id` over hash-partitioned input
//! keeps every event of one contact in one accumulator, which is all
//! exactness needs. `composable` has `window_funnel` and `retention`.
//!
//! Implemented: FUNNEL (without BY), RETENTION, ATTRIBUTE, LTV (INITIAL
//! EVENT, without GROUP BY). FUNNEL BY, LTV GROUP BY / INITIAL ATTRIBUTE
//! and PATHS key their groups by interned ids and run on the single server
//! only, for now.

pub mod codec;
pub mod composable;
pub mod spec;
pub mod statement;

use datafusion::logical_expr::AggregateUDF;

/// Every aggregate function of this crate, ready to register.
pub fn aggregates() -> Vec<AggregateUDF> {
    let mut all = composable::aggregates();
    all.extend(statement::aggregates());
    all
}
