//! LTV (SPEC §5, seed 003 §1.7.11): cumulative revenue per cohort and period.
//!
//! Event mask bits: bit 0 = INITIAL EVENT matched, bit 1 = REVENUE matched.
//! `Event::value`: the revenue VALUE (None = NULL: not a payment).
//! `Event::key`: GROUP BY event columns' dictionary id (taken from the
//! initial event) unless a per-contact key is given.
//!
//! Caller guarantees: a contact's events arrive sorted by `ts` ascending
//! (equal `ts` in any order), events after AS OF are removed, and events
//! outside FROM..TO may be present. `Event::day` is the local day.
//!
//! Rules: the initial time is the first INITIAL event with its day in
//! FROM..TO (or the INITIAL ATTRIBUTE value, which must itself lie in
//! FROM..TO, else the contact is skipped); the cohort is the period holding
//! it. A revenue event (bit 1 with a non-NULL value) at or after the initial
//! time (`ts >=`) falls in period p = period(day) − period(initial day);
//! only 0 ≤ p ≤ n count. A contact pays when it has such an event; its
//! first one gives `new_payers`. A period is *reached* when its first day
//! is on or before AS OF's day; otherwise revenue, arpu, arppu and
//! new_payers are NULL. Cohort-NULL rows sum, for period p, only the
//! cohorts that reached p (revenue, new_payers, and the divisors of arpu /
//! arppu); a p no cohort reached is NULL. Several INITIAL events at the
//! first time: the group key is the smallest of their keys in the
//! accumulator's [`KeyOrder`] (the value order; storage order never
//! matters). Ratios with a zero divisor are NULL (so arppu is NULL before
//! anyone paid, where the seed's worked example prints 0).

use std::collections::BTreeMap;

use crate::calendar::{period_index, period_start};
use crate::{ratio, Day, Event, KeyOrder, Unit};

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
    key_order: KeyOrder,
}

impl LtvAcc {
    /// An empty accumulator.
    pub fn new(spec: LtvSpec) -> Self {
        LtvAcc {
            spec,
            cohorts: BTreeMap::new(),
            key_order: KeyOrder::ids(),
        }
    }

    /// Compares `GROUP BY` keys with `order` (see [`KeyOrder`]).
    pub fn with_key_order(mut self, order: KeyOrder) -> Self {
        self.key_order = order;
        self
    }

    /// The statement's parameters.
    pub fn spec(&self) -> &LtvSpec {
        &self.spec
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
        let spec = &self.spec;
        let in_range = |d: Day| d >= spec.from && d <= spec.to;
        let (init_ts, init_day, key) = match initial {
            Some((ts, day)) => {
                if !in_range(day) {
                    return;
                }
                (ts, day, contact_key.unwrap_or(0))
            }
            None => {
                let Some(i) = events
                    .iter()
                    .position(|e| e.mask & 1 != 0 && in_range(e.day))
                else {
                    return;
                };
                let e0 = events[i];
                let key = contact_key.unwrap_or_else(|| {
                    // Smallest key among the INITIAL events at the first time.
                    let mut lo = i;
                    while lo > 0 && events[lo - 1].ts == e0.ts {
                        lo -= 1;
                    }
                    events[lo..]
                        .iter()
                        .take_while(|e| e.ts == e0.ts)
                        .filter(|e| e.mask & 1 != 0)
                        .map(|e| e.key)
                        .min_by(|a, b| self.key_order.cmp(*a, *b))
                        .unwrap_or(e0.key)
                });
                (e0.ts, e0.day, key)
            }
        };
        let unit = spec.unit;
        let n = spec.periods as i32;
        let c = period_index(unit, init_day);
        let width = n as usize + 1;
        let cohort = self.cohorts.entry((key, c)).or_insert_with(|| LtvCohort {
            initial_contacts: 0,
            paying_contacts: 0,
            revenue: vec![0.0; width],
            new_payers: vec![0; width],
        });
        cohort.initial_contacts += 1;
        // Revenue events at or after the initial time; the slice is sorted, so
        // start at the first event with ts >= init_ts.
        let start = events.partition_point(|e| e.ts < init_ts);
        let mut paid = false;
        let mut last_day = Day::MIN;
        let mut p = 0;
        for e in &events[start..] {
            let Some(v) = e.value else { continue };
            if e.mask & 2 == 0 {
                continue;
            }
            if e.day != last_day {
                last_day = e.day;
                p = period_index(unit, e.day) - c;
            }
            if p > n {
                break;
            }
            if p < 0 {
                continue;
            }
            cohort.revenue[p as usize] += v;
            if !paid {
                paid = true;
                cohort.paying_contacts += 1;
                cohort.new_payers[p as usize] += 1;
            }
        }
    }

    /// Merges an accumulator of other contacts.
    pub fn merge(&mut self, other: LtvAcc) {
        for (k, o) in other.cohorts {
            match self.cohorts.get_mut(&k) {
                None => {
                    self.cohorts.insert(k, o);
                }
                Some(x) => {
                    x.initial_contacts += o.initial_contacts;
                    x.paying_contacts += o.paying_contacts;
                    for (a, b) in x.revenue.iter_mut().zip(&o.revenue) {
                        *a += b;
                    }
                    for (a, b) in x.new_payers.iter_mut().zip(&o.new_payers) {
                        *a += b;
                    }
                }
            }
        }
    }

    /// Rows: per key ascending, the cohort rows (cohort ascending, period
    /// 0..=n) then the cohort-NULL rows (period 0..=n).
    pub fn rows(&self) -> Vec<LtvRow> {
        let spec = &self.spec;
        let width = spec.periods as usize + 1;
        let mut rows = Vec::new();
        let mut it = self.cohorts.iter().peekable();
        // Per key: the whole-group sums for period p over cohorts reaching p.
        let mut sum_rev = vec![0.0; width];
        let mut sum_init = vec![0u64; width];
        let mut sum_payers = vec![0u64; width];
        let mut sum_new = vec![0u64; width];
        let mut reached_any = vec![false; width];
        while let Some(&(&(key, _), _)) = it.peek() {
            sum_rev.fill(0.0);
            sum_init.fill(0);
            sum_payers.fill(0);
            sum_new.fill(0);
            reached_any.fill(false);
            let mut all_init = 0;
            let mut all_paying = 0;
            while let Some(&(&(k, c), cohort)) = it.peek() {
                if k != key {
                    break;
                }
                it.next();
                if cohort.initial_contacts == 0 {
                    continue;
                }
                all_init += cohort.initial_contacts;
                all_paying += cohort.paying_contacts;
                let mut revenue = 0.0;
                let mut payers = 0;
                for p in 0..width {
                    revenue += cohort.revenue[p];
                    payers += cohort.new_payers[p];
                    let reached = period_start(spec.unit, c + p as i32) <= spec.as_of_day;
                    if reached {
                        reached_any[p] = true;
                        sum_rev[p] += revenue;
                        sum_init[p] += cohort.initial_contacts;
                        sum_payers[p] += payers;
                        sum_new[p] += cohort.new_payers[p];
                    }
                    rows.push(LtvRow {
                        key,
                        cohort: Some(period_start(spec.unit, c)),
                        initial_contacts: cohort.initial_contacts,
                        paying_contacts: cohort.paying_contacts,
                        period: p as u32,
                        revenue: reached.then_some(revenue),
                        arpu: if reached {
                            ratio(revenue, cohort.initial_contacts as f64)
                        } else {
                            None
                        },
                        arppu: if reached {
                            ratio(revenue, payers as f64)
                        } else {
                            None
                        },
                        new_payers: reached.then_some(cohort.new_payers[p]),
                    });
                }
            }
            if all_init == 0 {
                continue;
            }
            for p in 0..width {
                let r = reached_any[p];
                rows.push(LtvRow {
                    key,
                    cohort: None,
                    initial_contacts: all_init,
                    paying_contacts: all_paying,
                    period: p as u32,
                    revenue: r.then_some(sum_rev[p]),
                    arpu: if r {
                        ratio(sum_rev[p], sum_init[p] as f64)
                    } else {
                        None
                    },
                    arppu: if r {
                        ratio(sum_rev[p], sum_payers[p] as f64)
                    } else {
                        None
                    },
                    new_payers: r.then_some(sum_new[p]),
                });
            }
        }
        rows
    }
}
