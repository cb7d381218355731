//! LTV (SPEC §5, seed 003 §1.7.11): cumulative revenue per cohort and period.
//!
//! Event mask bits: bit 0 = INITIAL EVENT matched, bit 1 = REVENUE matched.
//! `Event::value`: the revenue VALUE (None = NULL: not a payment).
//! `Event::key`: GROUP BY event columns' dictionary id (taken from the
//! initial event) unless a per-contact key is given.

use std::collections::BTreeMap;

use crate::{Day, Event, Unit};

/// An LTV statement's parameters.
#[derive(Debug, Clone)]
pub struct LtvSpec {
    /// Period unit.
    pub unit: Unit,
    /// PERIODS n.
    pub periods: u32,
    /// First day of the initial-time range (inclusive).
    pub from: Day,
    /// Last day of the initial-time range (inclusive).
    pub to: Day,
    /// Local day of AS OF: periods starting after it are NULL (events after
    /// AS OF are already removed by the caller).
    pub as_of_day: Day,
}

/// Counters of one (group, cohort).
#[derive(Debug, Clone, Default)]
pub struct LtvCohort {
    /// Contacts whose initial time falls in the cohort.
    pub initial_contacts: u64,
    /// Contacts with a payment in periods 0..=n.
    pub paying_contacts: u64,
    /// `revenue[p]`: revenue in period p (not cumulative).
    pub revenue: Vec<f64>,
    /// `new_payers[p]`: contacts whose first payment is in period p.
    pub new_payers: Vec<u64>,
}

/// One output row.
#[derive(Debug, Clone, PartialEq)]
pub struct LtvRow {
    /// Group key (0 without GROUP BY).
    pub key: u32,
    /// First day of the cohort's period; None for the whole-group rows.
    pub cohort: Option<Day>,
    /// Initial contacts of the cohort (whole group on cohort-NULL rows).
    pub initial_contacts: u64,
    /// Paying contacts of the cohort (whole group on cohort-NULL rows).
    pub paying_contacts: u64,
    /// Period 0..=n.
    pub period: u32,
    /// Cumulative revenue to p; NULL when the period is not reached (starts after AS OF).
    pub revenue: Option<f64>,
    /// revenue / initial contacts (of the cohorts that reached p on cohort-NULL rows).
    pub arpu: Option<f64>,
    /// revenue / contacts that paid by p (of the cohorts that reached p).
    pub arppu: Option<f64>,
    /// Contacts whose first payment is in p; NULL when not reached.
    pub new_payers: Option<u64>,
}

/// Accumulates contacts.
#[derive(Debug, Clone)]
pub struct LtvAcc {
    spec: LtvSpec,
    /// Per (group key, cohort period index).
    pub cohorts: BTreeMap<(u32, i32), LtvCohort>,
}

impl LtvAcc {
    /// An empty accumulator.
    pub fn new(spec: LtvSpec) -> Self {
        LtvAcc {
            spec,
            cohorts: BTreeMap::new(),
        }
    }

    /// Adds one contact. `initial`: for INITIAL ATTRIBUTE, the attribute's
    /// time as `(ts_ms, local day)` (None = take the first INITIAL EVENT in
    /// range from `events`; with INITIAL ATTRIBUTE a None attribute means
    /// the caller skips the contact). `contact_key` overrides the group key.
    pub fn add_contact(
        &mut self,
        events: &[Event],
        initial: Option<(i64, Day)>,
        contact_key: Option<u32>,
    ) {
        todo!()
    }

    /// Merges an accumulator of other contacts.
    pub fn merge(&mut self, other: LtvAcc) {
        todo!()
    }

    /// Rows: per key ascending, the cohort rows (cohort ascending, period
    /// 0..=n) then the cohort-NULL rows (period 0..=n).
    pub fn rows(&self) -> Vec<LtvRow> {
        todo!()
    }
}
