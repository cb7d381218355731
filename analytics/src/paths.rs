//! PATHS (SPEC §5, seed 003 §1.7.8): sessions of node events, links per level.
//!
//! Event mask bits: bit 0 = EVENTS (node) matched, bit 1 = START AT matched,
//! bit 2 = END AT matched. `Event::key`: the node's dictionary id (event
//! code, or `code:value` with BY).
//!
//! Caller guarantees: a contact's events arrive sorted by `ts` ascending
//! (equal `ts` in any order), events after AS OF are removed, and events
//! outside FROM..TO may be present (they are not nodes). `Event::day` is the
//! local day.
//!
//! Rules: node events (bit 0) with day in FROM..TO, ordered by time; a gap
//! larger than `gap_ms` between consecutive nodes starts a new session
//! (a gap equal to it stays). START AT: the path runs from the session's
//! first start node to its end; END AT: from the session's start to its
//! last end node, read backwards (level 1 = the end node); sessions
//! without such a node give no path. MERGE REPEATS folds consecutive equal
//! nodes after trimming. Each path adds 1 to the links (level, node, next)
//! for levels 1..=depth; the level-`depth` link's `next` is the real next
//! node (None only where the path ends).
//!
//! Decision (storage order never matters): nodes with equal `ts` are
//! ordered by node key in the accumulator's [`KeyOrder`] (the node's
//! value: event code, then BY value), and among equal (ts, key) events those matching
//! START AT come first and those matching END AT come last (so a start or
//! end node never cuts off an identical node of the same millisecond).

use std::collections::HashMap;

use crate::{Day, Event, KeyOrder};

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
    /// Scratch: the contact's nodes in range, `(ts, key, start, end)`.
    nodes: Vec<(i64, u32, bool, bool)>,
    /// Scratch: one path's nodes (at most depth + 1).
    path: Vec<u32>,
    key_order: KeyOrder,
}

impl PathsAcc {
    /// An empty accumulator.
    pub fn new(spec: PathsSpec) -> Self {
        PathsAcc {
            spec,
            links: HashMap::new(),
            nodes: Vec::new(),
            path: Vec::new(),
            key_order: KeyOrder::ids(),
        }
    }

    /// Orders node keys of one millisecond with `order` (see [`KeyOrder`]).
    pub fn with_key_order(mut self, order: KeyOrder) -> Self {
        self.key_order = order;
        self
    }

    /// The statement's parameters.
    pub fn spec(&self) -> &PathsSpec {
        &self.spec
    }

    /// Adds one contact's events (time order, equal times in any order).
    pub fn add_contact(&mut self, events: &[Event]) {
        let spec = &self.spec;
        let nodes = &mut self.nodes;
        nodes.clear();
        let mut tie = false;
        for e in events {
            if e.mask & 1 == 0 || e.day < spec.from || e.day > spec.to {
                continue;
            }
            if let Some(l) = nodes.last() {
                tie |= l.0 == e.ts;
            }
            nodes.push((e.ts, e.key, e.mask & 2 != 0, e.mask & 4 != 0));
        }
        if nodes.is_empty() {
            return;
        }
        if tie {
            // (ts, key, start first, end last).
            let order = &self.key_order;
            nodes.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(order.cmp(a.1, b.1))
                    .then((!a.2, a.3).cmp(&(!b.2, b.3)))
            });
        }
        let want = spec.depth as usize + 1;
        let mut lo = 0;
        while lo < nodes.len() {
            let mut hi = lo + 1;
            while hi < nodes.len() && nodes[hi].0 - nodes[hi - 1].0 <= spec.gap_ms {
                hi += 1;
            }
            let session = &nodes[lo..hi];
            lo = hi;
            let path = &mut self.path;
            path.clear();
            let mut push = |k: u32| -> bool {
                if !(spec.merge_repeats && path.last() == Some(&k)) {
                    path.push(k);
                }
                path.len() < want
            };
            match spec.anchor {
                Anchor::None => {
                    for n in session {
                        if !push(n.1) {
                            break;
                        }
                    }
                }
                Anchor::Start => {
                    let Some(i) = session.iter().position(|n| n.2) else {
                        continue;
                    };
                    for n in &session[i..] {
                        if !push(n.1) {
                            break;
                        }
                    }
                }
                Anchor::End => {
                    let Some(j) = session.iter().rposition(|n| n.3) else {
                        continue;
                    };
                    for n in session[..=j].iter().rev() {
                        if !push(n.1) {
                            break;
                        }
                    }
                }
            }
            let levels = path.len().min(spec.depth as usize);
            for l in 0..levels {
                *self
                    .links
                    .entry((l as u32 + 1, path[l], path.get(l + 1).copied()))
                    .or_insert(0) += 1;
            }
        }
    }

    /// Merges an accumulator of other contacts.
    pub fn merge(&mut self, other: PathsAcc) {
        for (k, v) in other.links {
            *self.links.entry(k).or_insert(0) += v;
        }
    }

    /// Rows ordered by level, sessions descending, node, next (None last).
    pub fn rows(&self) -> Vec<PathRow> {
        let mut rows: Vec<PathRow> = self
            .links
            .iter()
            .map(|(&(level, node, next), &sessions)| PathRow {
                level,
                node,
                next,
                sessions,
            })
            .collect();
        rows.sort_unstable_by_key(|r| {
            (
                r.level,
                std::cmp::Reverse(r.sessions),
                r.node,
                r.next.is_none(),
                r.next.unwrap_or(0),
            )
        });
        rows
    }
}
