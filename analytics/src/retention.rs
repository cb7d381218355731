//! RETENTION (SPEC §5): cohorts by INITIAL event period, returns per period.
//!
//! Event mask bits: bit 0 = INITIAL matched, bit 1 = RETURN matched.
//!
//! Caller guarantees: a contact's events arrive sorted by `ts` ascending
//! (equal `ts` in any order), events after AS OF are removed, and events
//! outside FROM..TO may be present (RETURN events after TO count; INITIAL
//! events outside the range are ignored here). `Event::day` is the local day.
//!
//! Rules: a cohort is the period holding an in-range INITIAL event (a
//! contact with INITIAL events in several periods is in several cohorts).
//! Period p counts cohort contacts with a RETURN event in period cohort + p;
//! for p = 0 the RETURN must be at or after (`ts >=`) the contact's first
//! in-range INITIAL event of that period. CHURN: p = 1..n counts cohort
//! contacts with no RETURN in any of periods cohort + 1 ..= cohort + p.
//! A period whose first day is after AS OF's day is NULL. Only `ts`
//! comparisons and sets of periods are used, so equal-ts order is irrelevant.

use std::collections::BTreeMap;

use crate::calendar::{period_index, period_start};
use crate::{ratio, Day, Event, Unit};

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
    /// Scratch: (cohort period, first in-range INITIAL ts) of the contact.
    initial: Vec<(i32, i64)>,
    /// Scratch: (RETURN period, latest RETURN ts in it) of the contact.
    returns: Vec<(i32, i64)>,
}

impl RetentionAcc {
    /// An empty accumulator.
    pub fn new(spec: RetentionSpec) -> Self {
        RetentionAcc {
            spec,
            cohorts: BTreeMap::new(),
            initial: Vec::new(),
            returns: Vec::new(),
        }
    }

    /// The statement's parameters.
    pub fn spec(&self) -> &RetentionSpec {
        &self.spec
    }

    /// Adds one contact's events (time order, equal times in any order).
    pub fn add_contact(&mut self, events: &[Event]) {
        let spec = &self.spec;
        let unit = spec.unit;
        let n = spec.periods as i32;
        self.initial.clear();
        self.returns.clear();
        // Period indexes only change with the day: cache the last one.
        let mut last_day = Day::MIN;
        let mut last_period = 0;
        for e in events {
            if e.mask & 3 == 0 {
                continue;
            }
            if e.day != last_day {
                last_day = e.day;
                last_period = period_index(unit, e.day);
            }
            let p = last_period;
            if e.mask & 1 != 0 && e.day >= spec.from && e.day <= spec.to {
                match self.initial.last_mut() {
                    Some(l) if l.0 == p => l.1 = l.1.min(e.ts),
                    _ => self.initial.push((p, e.ts)),
                }
            }
            if e.mask & 2 != 0 {
                match self.returns.last_mut() {
                    Some(l) if l.0 == p => l.1 = l.1.max(e.ts),
                    _ => self.returns.push((p, e.ts)),
                }
            }
        }
        if self.initial.is_empty() {
            return;
        }
        let width = n as usize + 1;
        let mut lo = 0; // first return period >= cohort
        for &(c, first_ts) in &self.initial {
            let cohort = self.cohorts.entry(c).or_insert_with(|| Cohort {
                contacts: 0,
                counts: vec![0; width],
            });
            cohort.contacts += 1;
            while lo < self.returns.len() && self.returns[lo].0 < c {
                lo += 1;
            }
            if spec.churn {
                // First return period in c+1..=c+n.
                let first_back = self.returns[lo..]
                    .iter()
                    .map(|r| r.0)
                    .find(|&r| r > c)
                    .filter(|&r| r <= c + n);
                let last = match first_back {
                    Some(r) => r - c - 1,
                    None => n,
                };
                for x in &mut cohort.counts[1..=last as usize] {
                    *x += 1;
                }
            } else {
                for &(r, last_ts) in &self.returns[lo..] {
                    if r > c + n {
                        break;
                    }
                    if r == c && last_ts < first_ts {
                        continue;
                    }
                    cohort.counts[(r - c) as usize] += 1;
                }
            }
        }
    }

    /// Merges an accumulator of other contacts.
    pub fn merge(&mut self, other: RetentionAcc) {
        for (c, o) in other.cohorts {
            match self.cohorts.get_mut(&c) {
                None => {
                    self.cohorts.insert(c, o);
                }
                Some(x) => {
                    x.contacts += o.contacts;
                    for (a, b) in x.counts.iter_mut().zip(&o.counts) {
                        *a += b;
                    }
                }
            }
        }
    }

    /// Rows ordered by cohort, then period; empty cohorts left out.
    pub fn rows(&self) -> Vec<RetentionRow> {
        let spec = &self.spec;
        let mut rows = Vec::new();
        for (&c, cohort) in &self.cohorts {
            if cohort.contacts == 0 {
                continue;
            }
            let first = if spec.churn { 1 } else { 0 };
            for p in first..=spec.periods {
                let reached = period_start(spec.unit, c + p as i32) <= spec.as_of_day;
                let contacts = reached.then(|| cohort.counts[p as usize]);
                rows.push(RetentionRow {
                    cohort: period_start(spec.unit, c),
                    cohort_contacts: cohort.contacts,
                    period: p,
                    contacts,
                    rate: contacts.and_then(|x| ratio(x as f64, cohort.contacts as f64)),
                });
            }
        }
        rows
    }
}
