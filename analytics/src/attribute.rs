//! ATTRIBUTE (SPEC §5): touches credit later target events.
//!
//! Event mask bits: bit 0 = TARGET matched; bit `i` (1..=touches) = TOUCH `i`
//! matched (an event matching several touches belongs to the first).
//! `Event::value`: the target's VALUE (None = NULL or no VALUE clause).
//!
//! Caller guarantees: a contact's events arrive sorted by `ts` ascending
//! (equal `ts` in any order), events after AS OF are removed, and the scan
//! reaches far enough back that the target preceding the first in-range
//! target is present (it consumes the touches before it) along with the
//! touches from `from − n` days. `Event::day` is the local day.
//!
//! Rules: a touch credits the target of the same contact that follows it:
//! strictly before the target (`ts <`), strictly after the previous target
//! (`ts >`), and within the window (same local day, or target day − touch
//! day ≤ n). Each touch thus credits at most one target; touches at the
//! same millisecond as a target credit nothing (not before it, and not
//! after it for the next one). A target in FROM..TO with no crediting
//! touch is a direct conversion.
//!
//! Decisions where SPEC leaves a tie open (so that storage order never
//! matters): several targets at the same millisecond are ordered by VALUE
//! (NULL first, then ascending), so the first of them takes the touches and
//! the others are direct conversions; with FIRST (LAST), several crediting
//! touches sharing the earliest (latest) time share the weight equally.
//! An event matching TARGET and a TOUCH is both (as a touch it can never
//! credit: it is not before its own target nor after it for the next).

use crate::{ratio, Day, Event};

/// Attribution window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrWindow {
    /// Touch on the target's calendar day.
    SameDay,
    /// Touch at most n calendar days before the target's day.
    Days(u32),
}

/// Credit model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Earliest crediting touch gets 1.
    First,
    /// Latest crediting touch gets 1.
    Last,
    /// Each of k crediting touches gets 1/k.
    Linear,
}

/// An ATTRIBUTE statement's parameters.
#[derive(Debug, Clone)]
pub struct AttributeSpec {
    /// Number of TOUCH predicates.
    pub touches: usize,
    /// Window.
    pub window: AttrWindow,
    /// Model.
    pub model: Model,
    /// First day of the target range (inclusive).
    pub from: Day,
    /// Last day of the target range (inclusive).
    pub to: Day,
    /// Show the `direct` row.
    pub include_direct: bool,
    /// A VALUE column was given.
    pub has_value: bool,
}

/// Counters of one touch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TouchCounts {
    /// Touch events in the target range widened back by the window.
    pub clicks: u64,
    /// Touches that could credit a target.
    pub effective_clicks: u64,
    /// Sum of weights.
    pub conversions: f64,
    /// Sum of weight × target value.
    pub value: f64,
}

/// One output row.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeRow {
    /// Touch index (0-based), or None for the `direct` row.
    pub touch: Option<usize>,
    /// NULL on the direct row.
    pub clicks: Option<u64>,
    /// NULL on the direct row.
    pub effective_clicks: Option<u64>,
    /// effective_clicks / clicks; NULL on the direct row or when clicks = 0.
    pub effective_rate: Option<f64>,
    /// Sum of weights (direct: number of direct conversions).
    pub conversions: f64,
    /// Sum of weight × value; NULL without VALUE.
    pub value: Option<f64>,
    /// This row's value (or conversions without VALUE) over the sum of all rows shown; NULL when that sum is 0.
    pub contribution: Option<f64>,
}

/// Accumulates contacts.
#[derive(Debug, Clone)]
pub struct AttributeAcc {
    spec: AttributeSpec,
    /// Per touch.
    pub touches: Vec<TouchCounts>,
    /// Direct conversions.
    pub direct_conversions: f64,
    /// Value of direct conversions.
    pub direct_value: f64,
    /// Scratch: touches since the last target, `(ts, day, touch index)`.
    pending: Vec<(i64, Day, u32)>,
    /// Scratch: values of the targets of one timestamp.
    targets: Vec<Option<f64>>,
}

/// Orders target values: NULL first, then ascending.
fn value_order(a: &Option<f64>, b: &Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.total_cmp(y),
    }
}

impl AttributeAcc {
    /// An empty accumulator.
    pub fn new(spec: AttributeSpec) -> Self {
        assert!(spec.touches <= 31, "at most 31 TOUCH predicates");
        let n = spec.touches;
        AttributeAcc {
            spec,
            touches: vec![TouchCounts::default(); n],
            direct_conversions: 0.0,
            direct_value: 0.0,
            pending: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// The statement's parameters.
    pub fn spec(&self) -> &AttributeSpec {
        &self.spec
    }

    /// Adds one contact's events (time order, equal times in any order).
    pub fn add_contact(&mut self, events: &[Event]) {
        let spec = &self.spec;
        let touch_bits: u32 = (((1u64 << spec.touches) - 1) << 1) as u32;
        let n = match spec.window {
            AttrWindow::SameDay => 0,
            AttrWindow::Days(n) => n as i64,
        };
        let click_from = spec.from as i64 - n;
        let (from, to) = (spec.from, spec.to);
        let pending = &mut self.pending;
        let targets = &mut self.targets;
        pending.clear();
        let mut i = 0;
        while i < events.len() {
            let ts = events[i].ts;
            let day = events[i].day;
            let mut j = i;
            targets.clear();
            let mut any_touch = false;
            while j < events.len() && events[j].ts == ts {
                let e = &events[j];
                let t = e.mask & touch_bits;
                if t != 0 {
                    any_touch = true;
                    if (e.day as i64) >= click_from && e.day <= to {
                        self.touches[t.trailing_zeros() as usize - 1].clicks += 1;
                    }
                }
                if e.mask & 1 != 0 {
                    targets.push(e.value);
                }
                j += 1;
            }
            if targets.is_empty() {
                if pending.len() >= 4096 {
                    // Touches older than the window of any later target.
                    let min_day = day as i64 - n;
                    pending.retain(|p| p.1 as i64 >= min_day);
                }
                if any_touch {
                    for e in &events[i..j] {
                        let t = e.mask & touch_bits;
                        if t != 0 {
                            pending.push((ts, day, t.trailing_zeros() - 1));
                        }
                    }
                }
            } else {
                if day >= from && day <= to {
                    let mut first = 0;
                    for k in 1..targets.len() {
                        if value_order(&targets[k], &targets[first]).is_lt() {
                            first = k;
                        }
                    }
                    for (k, v) in targets.iter().enumerate() {
                        if k != first {
                            self.direct_conversions += 1.0;
                            self.direct_value += v.unwrap_or(0.0);
                        }
                    }
                    let value = targets[first].unwrap_or(0.0);
                    // Crediting touches: the pending ones within the window
                    // (a suffix, days being non-decreasing with time).
                    let min_day = day as i64 - n;
                    let lo = pending.partition_point(|p| (p.1 as i64) < min_day);
                    let credit = &pending[lo..];
                    if credit.is_empty() {
                        self.direct_conversions += 1.0;
                        self.direct_value += value;
                    } else {
                        for p in credit {
                            self.touches[p.2 as usize].effective_clicks += 1;
                        }
                        let weighted = match spec.model {
                            Model::Linear => credit,
                            Model::First => {
                                let t0 = credit[0].0;
                                &credit[..credit.partition_point(|p| p.0 == t0)]
                            }
                            Model::Last => {
                                let t1 = credit[credit.len() - 1].0;
                                &credit[credit.partition_point(|p| p.0 < t1)..]
                            }
                        };
                        let w = 1.0 / weighted.len() as f64;
                        for p in weighted {
                            let c = &mut self.touches[p.2 as usize];
                            c.conversions += w;
                            c.value += w * value;
                        }
                    }
                }
                // Touches up to this target (and at its millisecond) are used up.
                pending.clear();
            }
            i = j;
        }
    }

    /// Merges an accumulator of other contacts.
    pub fn merge(&mut self, other: AttributeAcc) {
        for (a, b) in self.touches.iter_mut().zip(&other.touches) {
            a.clicks += b.clicks;
            a.effective_clicks += b.effective_clicks;
            a.conversions += b.conversions;
            a.value += b.value;
        }
        self.direct_conversions += other.direct_conversions;
        self.direct_value += other.direct_value;
    }

    /// Rows: one per touch in order, then `direct` when included.
    pub fn rows(&self) -> Vec<AttributeRow> {
        let spec = &self.spec;
        let metric =
            |conversions: f64, value: f64| if spec.has_value { value } else { conversions };
        let mut total: f64 = self
            .touches
            .iter()
            .map(|t| metric(t.conversions, t.value))
            .sum();
        if spec.include_direct {
            total += metric(self.direct_conversions, self.direct_value);
        }
        let mut rows: Vec<AttributeRow> = self
            .touches
            .iter()
            .enumerate()
            .map(|(i, t)| AttributeRow {
                touch: Some(i),
                clicks: Some(t.clicks),
                effective_clicks: Some(t.effective_clicks),
                effective_rate: ratio(t.effective_clicks as f64, t.clicks as f64),
                conversions: t.conversions,
                value: spec.has_value.then_some(t.value),
                contribution: ratio(metric(t.conversions, t.value), total),
            })
            .collect();
        if spec.include_direct {
            rows.push(AttributeRow {
                touch: None,
                clicks: None,
                effective_clicks: None,
                effective_rate: None,
                conversions: self.direct_conversions,
                value: spec.has_value.then_some(self.direct_value),
                contribution: ratio(metric(self.direct_conversions, self.direct_value), total),
            });
        }
        rows
    }
}
