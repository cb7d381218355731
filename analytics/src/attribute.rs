//! ATTRIBUTE (SPEC §5): touches credit later target events.
//!
//! Event mask bits: bit 0 = TARGET matched; bit `i` (1..=touches) = TOUCH `i`
//! matched (an event matching several touches belongs to the first).
//! `Event::value`: the target's VALUE (None = NULL or no VALUE clause).

use crate::{Day, Event};

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
}

impl AttributeAcc {
    /// An empty accumulator.
    pub fn new(spec: AttributeSpec) -> Self {
        let n = spec.touches;
        AttributeAcc {
            spec,
            touches: vec![TouchCounts::default(); n],
            direct_conversions: 0.0,
            direct_value: 0.0,
        }
    }

    /// Adds one contact's events (time order, equal times in any order).
    pub fn add_contact(&mut self, events: &[Event]) {
        todo!()
    }

    /// Merges an accumulator of other contacts.
    pub fn merge(&mut self, other: AttributeAcc) {
        todo!()
    }

    /// Rows: one per touch in order, then `direct` when included.
    pub fn rows(&self) -> Vec<AttributeRow> {
        todo!()
    }
}
