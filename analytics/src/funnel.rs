//! FUNNEL (SPEC §5): ordered steps within a window of the step-1 event.
//!
//! Event mask bits: bit `i` (0-based) = step `i + 1`'s predicate matched.
//! `Event::key`: the `BY` event column's dictionary id (used from the chain's
//! step-1 event) unless a per-contact key is given.
//!
//! Caller guarantees: a contact's events arrive sorted by `ts` ascending
//! (events with equal `ts` in any order), events after AS OF are removed,
//! and the caller may pass events outside FROM..TO (they can still be later
//! steps); `Event::day` is the local day of `ts` and is non-decreasing
//! along the slice.
//!
//! Algorithm. Events sharing a timestamp form a *group*, handled as a set
//! (so the result never depends on the order of equal-ts events). For a
//! chain starting at a group, the greedy "fill as many consecutive steps as
//! possible at the earliest group that can take the next step" is optimal
//! and gives every step its earliest possible time; inside a group the
//! steps are assigned to distinct events by bipartite matching (one event
//! fills at most one step; an event matching several steps goes where it is
//! needed). A table `next[g][j]` (first group at or after `g` holding a
//! step-`j` event) makes each start cost O(steps), so a contact costs
//! O(events × steps). The deepest chain wins; among chains of that depth the
//! earliest start. With several step-1 events at the start time, the `BY`
//! key is the smallest key (in the accumulator's [`KeyOrder`]: the value
//! order) of a step-1 event that can start that chain.
//!
//! Decision: `conversion_rate` of step 1 is 1.0 when step 1 has contacts and
//! NULL when it has none (denominator-0 rule); `overall_rate` likewise.

use std::collections::HashMap;

use crate::{Day, Event, KeyOrder};

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

/// One set of equal-timestamp events that match at least one step.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// Range `lo..hi` of the contact's slice (may include non-matching events).
    lo: u32,
    hi: u32,
    /// Matching events in the range.
    n: u32,
    ts: i64,
    day: Day,
    /// OR of the events' step masks.
    mask: u32,
}

/// Reused per-contact buffers.
#[derive(Debug, Clone, Default)]
struct Scratch {
    groups: Vec<Group>,
    next: Vec<u32>,
    ev_step: Vec<u8>,
    visited: Vec<bool>,
    cands: Vec<(u32, u32)>,
    /// `memo[g * steps + s]`: steps filled at group g from step s (multi-event
    /// groups; `u8::MAX` = not computed yet).
    memo: Vec<u8>,
}

const NONE: u8 = u8::MAX;

impl Scratch {
    /// Augmenting path for `step` inside `evs` (Kuhn), never using `exclude`.
    fn augment(&mut self, evs: &[Event], step: u32, exclude: usize) -> bool {
        for i in 0..evs.len() {
            if i == exclude || self.visited[i] || evs[i].mask >> step & 1 == 0 {
                continue;
            }
            self.visited[i] = true;
            let cur = self.ev_step[i];
            if cur == NONE || self.augment(evs, cur as u32, exclude) {
                self.ev_step[i] = step as u8;
                return true;
            }
        }
        false
    }

    /// The largest m such that steps `s..s+m` (0-based, `< steps`) can be
    /// given distinct events of `evs` (excluding index `exclude`).
    fn fill(&mut self, evs: &[Event], s: usize, steps: usize, exclude: usize) -> usize {
        self.ev_step.clear();
        self.ev_step.resize(evs.len(), NONE);
        let mut m = 0;
        for j in s..steps {
            self.visited.clear();
            self.visited.resize(evs.len(), false);
            if !self.augment(evs, j as u32, exclude) {
                break;
            }
            m += 1;
        }
        m
    }
}

/// Accumulates contacts.
#[derive(Debug, Clone)]
pub struct FunnelAcc {
    spec: FunnelSpec,
    /// Per-key counters.
    pub groups: HashMap<u32, FunnelGroup>,
    scratch: Scratch,
    key_order: KeyOrder,
}

impl FunnelAcc {
    /// An empty accumulator.
    pub fn new(spec: FunnelSpec) -> Self {
        assert!((1..=31).contains(&spec.steps), "FUNNEL takes 2 to 8 steps");
        FunnelAcc {
            spec,
            groups: HashMap::new(),
            scratch: Scratch::default(),
            key_order: KeyOrder::ids(),
        }
    }

    /// Compares `BY` keys with `order` (see [`KeyOrder`]).
    pub fn with_key_order(mut self, order: KeyOrder) -> Self {
        self.key_order = order;
        self
    }

    /// The statement's parameters.
    pub fn spec(&self) -> &FunnelSpec {
        &self.spec
    }

    #[inline]
    fn in_range(&self, day: Day) -> bool {
        day >= self.spec.from && day <= self.spec.to
    }

    /// May `g` hold a step of the chain starting at `start`?
    #[inline]
    fn reachable(&self, start: &Group, g: &Group) -> bool {
        let in_window = match self.spec.window {
            Window::Hours(n) => g.ts - start.ts <= n as i64 * 3_600_000,
            Window::Days(n) => (g.day as i64 - start.day as i64) <= n as i64,
        };
        in_window && (!self.spec.strict || self.in_range(g.day))
    }

    /// Steps filled at group `gi` from step `s` on (memoized per contact).
    #[inline]
    fn fill(scratch: &mut Scratch, events: &[Event], gi: usize, s: usize, steps: usize) -> usize {
        let g = scratch.groups[gi];
        if g.n == 1 {
            return 1;
        }
        let slot = gi * steps + s;
        if scratch.memo[slot] == u8::MAX {
            let m = scratch.fill(&events[g.lo as usize..g.hi as usize], s, steps, usize::MAX);
            scratch.memo[slot] = m as u8;
        }
        scratch.memo[slot] as usize
    }

    /// Adds one contact: `events` in time order (equal times in any order);
    /// `contact_key` overrides the group key (BY a contact column).
    pub fn add_contact(&mut self, events: &[Event], contact_key: Option<u32>) {
        let steps = self.spec.steps;
        let full: u32 = if steps >= 32 {
            u32::MAX
        } else {
            (1u32 << steps) - 1
        };
        // First step-1 event in range; nothing before its timestamp matters.
        let Some(first) = events
            .iter()
            .position(|e| e.mask & 1 != 0 && self.in_range(e.day))
        else {
            return;
        };
        let mut begin = first;
        while begin > 0 && events[begin - 1].ts == events[first].ts {
            begin -= 1;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let groups = &mut scratch.groups;
        groups.clear();
        for (i, e) in events.iter().enumerate().skip(begin) {
            let m = e.mask & full;
            if m == 0 {
                continue;
            }
            match groups.last_mut() {
                Some(g) if g.ts == e.ts => {
                    g.hi = i as u32 + 1;
                    g.n += 1;
                    g.mask |= m;
                }
                _ => groups.push(Group {
                    lo: i as u32,
                    hi: i as u32 + 1,
                    n: 1,
                    ts: e.ts,
                    day: e.day,
                    mask: m,
                }),
            }
        }
        let ng = groups.len();
        scratch.memo.clear();
        scratch.memo.resize(ng * steps, u8::MAX);
        let next = &mut scratch.next;
        next.clear();
        next.resize((ng + 1) * steps, ng as u32);
        for g in (0..ng).rev() {
            let mask = groups[g].mask;
            for j in 1..steps {
                next[g * steps + j] = if mask >> j & 1 != 0 {
                    g as u32
                } else {
                    next[(g + 1) * steps + j]
                };
            }
        }

        let mut best_depth = 0usize;
        let mut best_start = 0usize;
        let mut best_ts = [0i64; 32];
        let mut best_first_fill = 0usize;
        let mut chain_ts = [0i64; 32];
        for g0 in 0..ng {
            let start = scratch.groups[g0];
            if start.mask & 1 == 0 || !self.in_range(start.day) {
                continue;
            }
            let m0 = Self::fill(&mut scratch, events, g0, 0, steps);
            debug_assert!(m0 >= 1);
            chain_ts[..m0].fill(start.ts);
            let mut s = m0;
            let mut g = g0;
            while s < steps {
                let g2 = scratch.next[(g + 1) * steps + s] as usize;
                if g2 >= ng {
                    break;
                }
                let grp = scratch.groups[g2];
                if !self.reachable(&start, &grp) {
                    break;
                }
                let m = Self::fill(&mut scratch, events, g2, s, steps);
                chain_ts[s..s + m].fill(grp.ts);
                s += m;
                g = g2;
            }
            if s > best_depth {
                best_depth = s;
                best_start = g0;
                best_first_fill = m0;
                best_ts[..s].copy_from_slice(&chain_ts[..s]);
                if s == steps {
                    break;
                }
            }
        }
        debug_assert!(best_depth >= 1);

        let key = match contact_key {
            Some(k) => k,
            None => {
                let start = scratch.groups[best_start];
                let evs = &events[start.lo as usize..start.hi as usize];
                if start.n == 1 {
                    evs.iter().find(|e| e.mask & full != 0).map_or(0, |e| e.key)
                } else {
                    // Smallest key of a step-1 event that can start this chain
                    // (steps 2..m0 still fillable by the other events). Tried in
                    // key order: only events every maximum matching of steps
                    // 2..m0 needs can fail, and there are fewer than `steps`.
                    let mut cands = std::mem::take(&mut scratch.cands);
                    cands.clear();
                    cands.extend(
                        evs.iter()
                            .enumerate()
                            .filter(|(_, e)| e.mask & 1 != 0)
                            .map(|(c, e)| (e.key, c as u32)),
                    );
                    let order = &self.key_order;
                    cands.sort_unstable_by(|a, b| order.cmp(a.0, b.0).then(a.1.cmp(&b.1)));
                    let key = cands
                        .iter()
                        .find(|&&(_, c)| {
                            best_first_fill == 1
                                || scratch.fill(evs, 1, steps, c as usize) >= best_first_fill - 1
                        })
                        .map_or(0, |&(k, _)| k);
                    scratch.cands = cands;
                    key
                }
            }
        };
        self.scratch = scratch;

        let grp = self.groups.entry(key).or_insert_with(|| FunnelGroup {
            reached: vec![0; steps],
            seconds: vec![Vec::new(); steps],
        });
        for r in &mut grp.reached[..best_depth] {
            *r += 1;
        }
        for k in 1..best_depth {
            grp.seconds[k].push((best_ts[k] - best_ts[k - 1]) as f64 / 1000.0);
        }
    }

    /// Merges an accumulator of other contacts.
    pub fn merge(&mut self, other: FunnelAcc) {
        for (key, o) in other.groups {
            match self.groups.get_mut(&key) {
                None => {
                    self.groups.insert(key, o);
                }
                Some(g) => {
                    for (a, b) in g.reached.iter_mut().zip(&o.reached) {
                        *a += b;
                    }
                    for (a, b) in g.seconds.iter_mut().zip(o.seconds) {
                        a.extend(b);
                    }
                }
            }
        }
    }

    /// Output rows: for each key (ascending), steps 1..=steps. A key appears
    /// only when at least one contact reached step 1 in it; without BY and
    /// with no contacts, key 0 appears with zero counts.
    pub fn rows(&self, has_by: bool) -> Vec<FunnelRow> {
        let steps = self.spec.steps;
        let mut keys: Vec<u32> = self.groups.keys().copied().collect();
        keys.sort_unstable();
        let empty = FunnelGroup {
            reached: vec![0; steps],
            seconds: vec![Vec::new(); steps],
        };
        if keys.is_empty() && !has_by {
            keys.push(0);
        }
        let mut rows = Vec::with_capacity(keys.len() * steps);
        for key in keys {
            let g = self.groups.get(&key).unwrap_or(&empty);
            let first = g.reached[0];
            for k in 0..steps {
                let contacts = g.reached[k];
                let prev = if k == 0 { first } else { g.reached[k - 1] };
                let (median_seconds, avg_seconds) = if k == 0 {
                    (None, None)
                } else {
                    // Sorted first: the mean's sum then runs in one order
                    // whatever order shards or executors merged in.
                    let mut v = g.seconds[k].clone();
                    v.sort_unstable_by(f64::total_cmp);
                    (crate::median(&mut v), crate::mean(&v))
                };
                rows.push(FunnelRow {
                    key,
                    step: k + 1,
                    contacts,
                    conversion_rate: crate::ratio(contacts as f64, prev as f64),
                    overall_rate: crate::ratio(contacts as f64, first as f64),
                    median_seconds,
                    avg_seconds,
                });
            }
        }
        rows
    }
}
