//! RETENTION (SPEC §5): cohorts by INITIAL event period, returns per period.
//!
//! Event mask bits: bit 0 = INITIAL matched, bit 1 = RETURN matched.

use std::collections::BTreeMap;

use crate::{Day, Event, Unit};

/// A RETENTION statement's parameters.
#[derive(Debug, Clone)]
pub struct RetentionSpec {
    /// Period unit.
    pub unit: Unit,
    /// PERIODS n.
    pub periods: u32,
    /// First day of the INITIAL range (inclusive).
    pub from: Day,
    /// Last day of the INITIAL range (inclusive).
    pub to: Day,
    /// CHURN form.
    pub churn: bool,
    /// Local day of AS OF: periods starting after it are NULL. (Events
    /// after AS OF are already removed by the caller.)
    pub as_of_day: Day,
}

/// Counters of one cohort.
#[derive(Debug, Clone, Default)]
pub struct Cohort {
    /// Contacts in the cohort.
    pub contacts: u64,
    /// `counts[p]`: retained (or churned) contacts at period p (index 0 = period 0
    /// without CHURN; with CHURN index 0 is unused).
    pub counts: Vec<u64>,
}

/// One output row.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionRow {
    /// First day of the cohort's period.
    pub cohort: Day,
    /// Contacts in the cohort.
    pub cohort_contacts: u64,
    /// Period number (0..=n, or 1..=n with CHURN).
    pub period: u32,
    /// Retained (churned) contacts; NULL when the period starts after AS OF.
    pub contacts: Option<u64>,
    /// contacts / cohort_contacts; NULL when contacts is NULL or the denominator is 0.
    pub rate: Option<f64>,
}

/// Accumulates contacts.
#[derive(Debug, Clone)]
pub struct RetentionAcc {
    spec: RetentionSpec,
    /// Cohorts by period index.
    pub cohorts: BTreeMap<i32, Cohort>,
}

impl RetentionAcc {
    /// An empty accumulator.
    pub fn new(spec: RetentionSpec) -> Self {
        RetentionAcc {
            spec,
            cohorts: BTreeMap::new(),
        }
    }

    /// Adds one contact's events (time order, equal times in any order).
    pub fn add_contact(&mut self, events: &[Event]) {
        todo!()
    }

    /// Merges an accumulator of other contacts.
    pub fn merge(&mut self, other: RetentionAcc) {
        todo!()
    }

    /// Rows ordered by cohort, then period; empty cohorts left out.
    pub fn rows(&self) -> Vec<RetentionRow> {
        todo!()
    }
}
