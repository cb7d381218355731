//! cohortdb's journey engine (SPEC §7): starts runs from committed events
//! (announced by the store after each durable ingest commit) and from
//! group schedules, advances them step by step, and wakes waiting runs.
//! Definitions and their validation are in `cohortdb_sql::handler::journeys`;
//! run state is the `journeys` table of `cohortdb-storage`.
//!
//! Each step's action runs at most once per run: the run is committed with
//! `acting` set before the action; a run found acting after a restart moves
//! on without running it again.

pub mod engine;

pub use engine::spawn;
