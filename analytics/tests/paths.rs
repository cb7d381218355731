//! PATHS: straightforward reference, property tests and hand-written cases.

mod common;

use std::collections::HashMap;

use cohortdb_analytics::paths::{Anchor, PathRow, PathsAcc, PathsSpec};
use cohortdb_analytics::Event;
use common::*;

fn ref_links(spec: &PathsSpec, contacts: &[Vec<Event>]) -> HashMap<(u32, u32, Option<u32>), u64> {
    let mut links = HashMap::new();
    for evs in contacts {
        let mut nodes: Vec<&Event> = evs
            .iter()
            .filter(|e| e.mask & 1 != 0 && e.day >= spec.from && e.day <= spec.to)
            .collect();
        // Equal times: by key; start nodes first, end nodes last.
        nodes.sort_by_key(|e| (e.ts, e.key, e.mask & 2 == 0, e.mask & 4 != 0));
        let mut sessions: Vec<Vec<&Event>> = Vec::new();
        for e in nodes {
            match sessions.last_mut() {
                Some(s) if e.ts - s.last().unwrap().ts <= spec.gap_ms => s.push(e),
                _ => sessions.push(vec![e]),
            }
        }
        for s in sessions {
            let path: Vec<&Event> = match spec.anchor {
                Anchor::None => s.clone(),
                Anchor::Start => match s.iter().position(|e| e.mask & 2 != 0) {
                    Some(i) => s[i..].to_vec(),
                    None => continue,
                },
                Anchor::End => match s.iter().rposition(|e| e.mask & 4 != 0) {
                    Some(j) => s[..=j].iter().rev().copied().collect(),
                    None => continue,
                },
            };
            let mut keys: Vec<u32> = path.iter().map(|e| e.key).collect();
            if spec.merge_repeats {
                keys.dedup();
            }
            for l in 0..keys.len().min(spec.depth as usize) {
                *links
                    .entry((l as u32 + 1, keys[l], keys.get(l + 1).copied()))
                    .or_insert(0) += 1;
            }
        }
    }
    links
}

fn ref_rows(spec: &PathsSpec, contacts: &[Vec<Event>]) -> Vec<PathRow> {
    let mut rows: Vec<PathRow> = ref_links(spec, contacts)
        .into_iter()
        .map(|((level, node, next), sessions)| PathRow {
            level,
            node,
            next,
            sessions,
        })
        .collect();
    rows.sort_by(|a, b| {
        a.level
            .cmp(&b.level)
            .then(b.sessions.cmp(&a.sessions))
            .then(a.node.cmp(&b.node))
            .then(match (a.next, b.next) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) => x.cmp(&y),
            })
    });
    rows
}

fn fast_rows(spec: &PathsSpec, contacts: &[Vec<Event>]) -> Vec<PathRow> {
    let mut a = PathsAcc::new(spec.clone());
    let mut b = PathsAcc::new(spec.clone());
    for (i, evs) in contacts.iter().enumerate() {
        if i % 2 == 0 {
            a.add_contact(evs);
        } else {
            b.add_contact(evs);
        }
    }
    a.merge(b);
    a.rows()
}

#[test]
fn paths_match_reference() {
    let mut rng = Rng::new(6);
    for case in 0..4000 {
        let tz = rng.pick(&[0, 8 * HOUR_MS]);
        let d0 = 18_000;
        let base = d0 as i64 * DAY_MS - tz;
        let from = d0 + rng.range(0, 1) as i32;
        let spec = PathsSpec {
            gap_ms: rng.pick(&[0, 1000, HOUR_MS, 2 * HOUR_MS, DAY_MS]),
            from,
            to: from + rng.range(0, 2) as i32,
            anchor: rng.pick(&[Anchor::None, Anchor::Start, Anchor::End]),
            merge_repeats: rng.chance(1, 2),
            depth: rng.range(1, 5) as u32,
        };
        let contacts: Vec<Vec<Event>> = (0..rng.range(1, 5))
            .map(|_| {
                let mut evs: Vec<Event> = (0..rng.range(0, 12))
                    .map(|_| {
                        let mask = rng.range(0, 7) as u32 | if rng.chance(3, 4) { 1 } else { 0 };
                        ev(
                            rand_ts(&mut rng, base, 3),
                            tz,
                            mask,
                            None,
                            rng.range(1, 3) as u32,
                        )
                    })
                    .collect();
                sort_and_shuffle(&mut rng, &mut evs);
                evs
            })
            .collect();
        let want = ref_rows(&spec, &contacts);
        let got = fast_rows(&spec, &contacts);
        assert_eq!(got, want, "case {case}: {spec:?}\n{contacts:#?}");
        let mut shuffled = contacts.clone();
        for evs in shuffled.iter_mut() {
            shuffle_equal_ts(&mut rng, evs);
        }
        assert_eq!(fast_rows(&spec, &shuffled), want, "case {case} (shuffled)");
    }
}

const M: i64 = 60_000;

fn node(ts: i64, key: u32, extra: u32) -> Event {
    ev(ts, 0, 1 | extra, None, key)
}

fn spec(anchor: Anchor, merge: bool, depth: u32) -> PathsSpec {
    PathsSpec {
        gap_ms: 2 * M,
        from: 0,
        to: 0,
        anchor,
        merge_repeats: merge,
        depth,
    }
}

fn links(rows: &[PathRow]) -> Vec<(u32, u32, Option<u32>, u64)> {
    rows.iter()
        .map(|r| (r.level, r.node, r.next, r.sessions))
        .collect()
}

#[test]
fn seed_gap_example_and_equal_gap_stays() {
    // Scan (1) → 1 min later subscribe (2) → 3 min later click menu (3): two sessions.
    let mut acc = PathsAcc::new(spec(Anchor::None, false, 5));
    acc.add_contact(&[node(0, 1, 0), node(M, 2, 0), node(4 * M, 3, 0)]);
    assert_eq!(
        links(&acc.rows()),
        [(1, 1, Some(2), 1), (1, 3, None, 1), (2, 2, None, 1)]
    );
    // A gap exactly at the limit stays in the session.
    let mut acc = PathsAcc::new(spec(Anchor::None, false, 5));
    acc.add_contact(&[node(0, 1, 0), node(2 * M, 2, 0)]);
    assert_eq!(links(&acc.rows()), [(1, 1, Some(2), 1), (2, 2, None, 1)]);
}

#[test]
fn start_end_merge_and_depth() {
    // Session: 5 1 1 2 1 3 ; start at the first 1, end at the last 1.
    let evs = [
        node(0, 5, 0),
        node(M, 1, 2),
        node(2 * M, 1, 2 | 4),
        node(3 * M, 2, 0),
        node(4 * M, 1, 4),
        node(5 * M, 3, 0),
    ];
    let mut acc = PathsAcc::new(spec(Anchor::Start, true, 2));
    acc.add_contact(&evs);
    // Path 1 2 1 3 (merged); depth 2: the level-2 link shows the real next.
    assert_eq!(links(&acc.rows()), [(1, 1, Some(2), 1), (2, 2, Some(1), 1)]);
    let mut acc = PathsAcc::new(spec(Anchor::End, false, 5));
    acc.add_contact(&evs);
    // Backwards from the last end node: 1 2 1 1 5.
    assert_eq!(
        links(&acc.rows()),
        [
            (1, 1, Some(2), 1),
            (2, 2, Some(1), 1),
            (3, 1, Some(1), 1),
            (4, 1, Some(5), 1),
            (5, 5, None, 1)
        ]
    );
    // No start node in the session: nothing.
    let mut acc = PathsAcc::new(spec(Anchor::Start, false, 5));
    acc.add_contact(&[node(0, 1, 0), node(M, 2, 4)]);
    assert!(acc.rows().is_empty());
}

#[test]
fn nodes_outside_the_range_are_not_nodes() {
    let mut acc = PathsAcc::new(PathsSpec {
        gap_ms: DAY_MS,
        ..spec(Anchor::None, false, 3)
    });
    acc.add_contact(&[node(-M, 9, 0), node(M, 1, 0), node(DAY_MS + M, 2, 0)]);
    assert_eq!(links(&acc.rows()), [(1, 1, None, 1)]);
}

#[test]
fn rows_are_ordered_by_level_then_sessions() {
    let mut acc = PathsAcc::new(spec(Anchor::None, false, 1));
    acc.add_contact(&[node(0, 2, 0)]);
    acc.add_contact(&[node(0, 1, 0), node(M, 2, 0)]);
    acc.add_contact(&[node(0, 1, 0), node(M, 2, 0)]);
    acc.add_contact(&[node(0, 1, 0)]);
    assert_eq!(
        links(&acc.rows()),
        [(1, 1, Some(2), 2), (1, 1, None, 1), (1, 2, None, 1)]
    );
}
