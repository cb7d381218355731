//! FUNNEL (SPEC §5): ordered steps within a window of the step-1 event.
//!
//! Event mask bits: bit `i` (0-based) = step `i + 1`'s predicate matched.
//! `Event::key`: the `BY` event column's dictionary id (used from the chain's
//! step-1 event) unless a per-contact key is given.

use std::collections::HashMap;

use crate::{Day, Event};

/// The conversion window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Elapsed time from the step-1 event ≤ n hours.
    Hours(u32),
    /// Calendar days between the step-1 day and the step-k day ≤ n.
    Days(u32),
}

/// A FUNNEL statement's parameters.
#[derive(Debug, Clone)]
pub struct FunnelSpec {
    /// Number of steps (2..=8).
    pub steps: usize,
    /// Window.
    pub window: Window,
    /// First day of the step-1 range (inclusive).
    pub from: Day,
    /// Last day of the step-1 range (inclusive).
    pub to: Day,
    /// Every step must also fall inside `from..=to`.
    pub strict: bool,
}

/// Counters of one `BY` group.
#[derive(Debug, Clone, Default)]
pub struct FunnelGroup {
    /// `reached[k]`: contacts whose deepest step is ≥ k + 1.
    pub reached: Vec<u64>,
    /// `seconds[k]` (k ≥ 1): conversion times in seconds from step k to
    /// step k + 1 on each converting contact's chain.
    pub seconds: Vec<Vec<f64>>,
}

/// One output row.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelRow {
    /// Group key (0 without BY).
    pub key: u32,
    /// 1-based step.
    pub step: usize,
    /// Contacts that reached this step.
    pub contacts: u64,
    /// contacts / previous step's (1.0 for step 1; NULL when the denominator is 0).
    pub conversion_rate: Option<f64>,
    /// contacts / step 1's (NULL when 0).
    pub overall_rate: Option<f64>,
    /// Median seconds from the previous step (NULL for step 1 or no data).
    pub median_seconds: Option<f64>,
    /// Mean seconds from the previous step (NULL for step 1 or no data).
    pub avg_seconds: Option<f64>,
}

/// Accumulates contacts.
#[derive(Debug, Clone)]
pub struct FunnelAcc {
    spec: FunnelSpec,
    /// Per-key counters.
    pub groups: HashMap<u32, FunnelGroup>,
}

impl FunnelAcc {
    /// An empty accumulator.
    pub fn new(spec: FunnelSpec) -> Self {
        FunnelAcc {
            spec,
            groups: HashMap::new(),
        }
    }

    /// Adds one contact: `events` in time order (equal times in any order);
    /// `contact_key` overrides the group key (BY a contact column).
    pub fn add_contact(&mut self, events: &[Event], contact_key: Option<u32>) {
        todo!()
    }

    /// Merges an accumulator of other contacts.
    pub fn merge(&mut self, other: FunnelAcc) {
        todo!()
    }

    /// Output rows: for each key (ascending), steps 1..=steps. A key appears
    /// only when at least one contact reached step 1 in it; without BY and
    /// with no contacts, key 0 appears with zero counts.
    pub fn rows(&self, has_by: bool) -> Vec<FunnelRow> {
        todo!()
    }
}
