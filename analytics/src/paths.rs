//! PATHS (SPEC §5, seed 003 §1.7.8): sessions of node events, links per level.
//!
//! Event mask bits: bit 0 = EVENTS (node) matched, bit 1 = START AT matched,
//! bit 2 = END AT matched. `Event::key`: the node's dictionary id (event
//! code, or `code:value` with BY).

use std::collections::HashMap;

use crate::{Day, Event};

/// Where paths are anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Every session is a path from its first node.
    None,
    /// START AT: from the session's first start event to its end.
    Start,
    /// END AT: up to the session's last end event, read backwards.
    End,
}

/// A PATHS statement's parameters.
#[derive(Debug, Clone)]
pub struct PathsSpec {
    /// Largest gap (ms) between consecutive nodes inside one session (equal stays).
    pub gap_ms: i64,
    /// First day of the range (inclusive), applied to every node.
    pub from: Day,
    /// Last day (inclusive).
    pub to: Day,
    /// Anchor.
    pub anchor: Anchor,
    /// Fold consecutive equal nodes (after trimming).
    pub merge_repeats: bool,
    /// Levels 1..=depth.
    pub depth: u32,
}

/// One output row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRow {
    /// 1-based level.
    pub level: u32,
    /// Node id.
    pub node: u32,
    /// Next node id; None where the path ends.
    pub next: Option<u32>,
    /// Paths with this link.
    pub sessions: u64,
}

/// Accumulates contacts.
#[derive(Debug, Clone)]
pub struct PathsAcc {
    spec: PathsSpec,
    /// Link counts by (level, node, next).
    pub links: HashMap<(u32, u32, Option<u32>), u64>,
}

impl PathsAcc {
    /// An empty accumulator.
    pub fn new(spec: PathsSpec) -> Self {
        PathsAcc {
            spec,
            links: HashMap::new(),
        }
    }

    /// Adds one contact's events (time order, equal times in any order).
    pub fn add_contact(&mut self, events: &[Event]) {
        todo!()
    }

    /// Merges an accumulator of other contacts.
    pub fn merge(&mut self, other: PathsAcc) {
        todo!()
    }

    /// Rows ordered by level, sessions descending, node, next (None last).
    pub fn rows(&self) -> Vec<PathRow> {
        todo!()
    }
}
