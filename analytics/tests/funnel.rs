//! FUNNEL: brute-force reference, property tests and hand-written cases.

mod common;

use std::collections::BTreeMap;

use cohortdb_analytics::funnel::{FunnelAcc, FunnelRow, FunnelSpec, Window};
use cohortdb_analytics::Event;
use common::*;

/// Brute force for one contact: every chain (distinct events, step masks,
/// non-decreasing time, window, STRICT) is enumerated. Returns
/// `(depth, key, chain timestamps)` of the deepest chain, earliest start,
/// lexicographically earliest step times, smallest step-1 key.
fn ref_contact(spec: &FunnelSpec, evs: &[Event]) -> Option<(usize, u32, Vec<i64>)> {
    let in_range = |e: &Event| e.day >= spec.from && e.day <= spec.to;
    let mut best: Option<(usize, i64, Vec<i64>, u32)> = None;
    fn better(a: &(usize, i64, Vec<i64>, u32), b: &Option<(usize, i64, Vec<i64>, u32)>) -> bool {
        match b {
            None => true,
            Some(b) => {
                if a.0 != b.0 {
                    return a.0 > b.0;
                }
                if a.1 != b.1 {
                    return a.1 < b.1;
                }
                if a.2 != b.2 {
                    return a.2 < b.2;
                }
                a.3 < b.3
            }
        }
    }
    #[allow(clippy::too_many_arguments)]
    fn dfs(
        spec: &FunnelSpec,
        evs: &[Event],
        first: usize,
        used: &mut Vec<usize>,
        best: &mut Option<(usize, i64, Vec<i64>, u32)>,
    ) {
        let cand = (
            used.len(),
            evs[first].ts,
            used.iter().map(|&i| evs[i].ts).collect::<Vec<_>>(),
            evs[first].key,
        );
        if better(&cand, best) {
            *best = Some(cand);
        }
        let level = used.len();
        if level == spec.steps {
            return;
        }
        let prev = evs[*used.last().unwrap()].ts;
        for j in 0..evs.len() {
            let e = &evs[j];
            if used.contains(&j) || e.mask >> level & 1 == 0 || e.ts < prev {
                continue;
            }
            let ok_window = match spec.window {
                Window::Hours(n) => e.ts - evs[first].ts <= n as i64 * HOUR_MS,
                Window::Days(n) => e.day - evs[first].day <= n as i32,
            };
            if !ok_window || (spec.strict && !(e.day >= spec.from && e.day <= spec.to)) {
                continue;
            }
            used.push(j);
            dfs(spec, evs, first, used, best);
            used.pop();
        }
    }
    for i in 0..evs.len() {
        if evs[i].mask & 1 != 0 && in_range(&evs[i]) {
            let mut used = vec![i];
            dfs(spec, evs, i, &mut used, &mut best);
        }
    }
    best.map(|(d, _, ts, k)| (d, k, ts))
}

fn ref_rows(
    spec: &FunnelSpec,
    contacts: &[(Vec<Event>, Option<u32>)],
    has_by: bool,
) -> Vec<FunnelRow> {
    let mut groups: BTreeMap<u32, (Vec<u64>, Vec<Vec<f64>>)> = BTreeMap::new();
    for (evs, ck) in contacts {
        if let Some((depth, key, ts)) = ref_contact(spec, evs) {
            let key = ck.unwrap_or(key);
            let g = groups
                .entry(key)
                .or_insert_with(|| (vec![0; spec.steps], vec![Vec::new(); spec.steps]));
            for k in 0..depth {
                g.0[k] += 1;
            }
            for k in 1..depth {
                g.1[k].push((ts[k] - ts[k - 1]) as f64 / 1000.0);
            }
        }
    }
    if groups.is_empty() && !has_by {
        groups.insert(0, (vec![0; spec.steps], vec![Vec::new(); spec.steps]));
    }
    let mut rows = Vec::new();
    for (key, (reached, secs)) in groups {
        for k in 0..spec.steps {
            let prev = if k == 0 { reached[0] } else { reached[k - 1] };
            let div = |a: u64, b: u64| {
                if b == 0 {
                    None
                } else {
                    Some(a as f64 / b as f64)
                }
            };
            rows.push(FunnelRow {
                key,
                step: k + 1,
                contacts: reached[k],
                conversion_rate: div(reached[k], prev),
                overall_rate: div(reached[k], reached[0]),
                median_seconds: if k == 0 { None } else { ref_median(&secs[k]) },
                avg_seconds: if k == 0 || secs[k].is_empty() {
                    None
                } else {
                    Some(secs[k].iter().sum::<f64>() / secs[k].len() as f64)
                },
            });
        }
    }
    rows
}

fn same_rows(a: &[FunnelRow], b: &[FunnelRow]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.key == y.key
                && x.step == y.step
                && x.contacts == y.contacts
                && close_opt(x.conversion_rate, y.conversion_rate)
                && close_opt(x.overall_rate, y.overall_rate)
                && close_opt(x.median_seconds, y.median_seconds)
                && close_opt(x.avg_seconds, y.avg_seconds)
        })
}

fn fast_rows(
    spec: &FunnelSpec,
    contacts: &[(Vec<Event>, Option<u32>)],
    has_by: bool,
) -> Vec<FunnelRow> {
    // Two shards merged, to exercise merge().
    let mut a = FunnelAcc::new(spec.clone());
    let mut b = FunnelAcc::new(spec.clone());
    for (i, (evs, ck)) in contacts.iter().enumerate() {
        if i % 2 == 0 {
            a.add_contact(evs, *ck);
        } else {
            b.add_contact(evs, *ck);
        }
    }
    a.merge(b);
    a.rows(has_by)
}

#[test]
fn funnel_matches_reference() {
    let mut rng = Rng::new(1);
    for case in 0..4000 {
        let tz = rng.pick(&[0, 8 * HOUR_MS, -5 * HOUR_MS]);
        let base = 18_000 * DAY_MS - tz;
        let steps = rng.range(2, 4) as usize;
        let window = if rng.chance(1, 2) {
            Window::Hours(rng.pick(&[1, 24, 48]))
        } else {
            Window::Days(rng.pick(&[0, 1, 2]))
        };
        let from = 18_000 + rng.range(0, 1) as i32;
        let spec = FunnelSpec {
            steps,
            window,
            from,
            to: from + rng.range(0, 2) as i32,
            strict: rng.chance(1, 3),
        };
        let has_by = rng.chance(1, 2);
        let ncontacts = rng.range(1, 6);
        let mut contacts = Vec::new();
        for _ in 0..ncontacts {
            let n = rng.range(0, 8);
            let mut evs: Vec<Event> = (0..n)
                .map(|_| {
                    let mask =
                        rng.below(1 << steps) as u32 | if rng.chance(1, 4) { 1 << 20 } else { 0 };
                    let key = if has_by { rng.range(1, 3) as u32 } else { 0 };
                    ev(rand_ts(&mut rng, base, 3), tz, mask, None, key)
                })
                .collect();
            sort_and_shuffle(&mut rng, &mut evs);
            let ck = if has_by && rng.chance(1, 5) {
                Some(7)
            } else {
                None
            };
            contacts.push((evs, ck));
        }
        let want = ref_rows(&spec, &contacts, has_by);
        let got = fast_rows(&spec, &contacts, has_by);
        assert!(
            same_rows(&got, &want),
            "case {case}: {spec:?}\n{contacts:#?}\ngot {got:#?}\nwant {want:#?}"
        );
        // Storage order of equal-ts events does not matter.
        for (evs, _) in contacts.iter_mut() {
            shuffle_equal_ts(&mut rng, evs);
        }
        let again = fast_rows(&spec, &contacts, has_by);
        assert!(same_rows(&again, &want), "case {case} (shuffled)");
    }
}

#[test]
fn funnel_dense_equal_timestamps() {
    // Few distinct timestamps, many events each: the matching inside groups.
    let mut rng = Rng::new(2);
    for case in 0..3000 {
        let steps = rng.range(2, 4) as usize;
        let spec = FunnelSpec {
            steps,
            window: Window::Hours(1),
            from: 0,
            to: 0,
            strict: false,
        };
        let n = rng.range(1, 7);
        let mut evs: Vec<Event> = (0..n)
            .map(|_| {
                let ts = rng.pick(&[0, 0, 1000, 2000, HOUR_MS, HOUR_MS + 1]);
                ev(
                    ts,
                    0,
                    rng.below(1 << steps) as u32,
                    None,
                    rng.range(1, 4) as u32,
                )
            })
            .collect();
        sort_and_shuffle(&mut rng, &mut evs);
        let contacts = vec![(evs, None)];
        let want = ref_rows(&spec, &contacts, true);
        let got = fast_rows(&spec, &contacts, true);
        assert!(
            same_rows(&got, &want),
            "case {case}: {contacts:#?}\ngot {got:#?}\nwant {want:#?}"
        );
    }
}

fn spec2(window: Window) -> FunnelSpec {
    FunnelSpec {
        steps: 2,
        window,
        from: 0,
        to: 10,
        strict: false,
    }
}

fn run(spec: &FunnelSpec, evs: &[Event]) -> Vec<FunnelRow> {
    let mut acc = FunnelAcc::new(spec.clone());
    acc.add_contact(evs, None);
    acc.rows(false)
}

#[test]
fn one_day_is_calendar_but_24_hours_is_elapsed() {
    // Step 1 at 9:00 on day 1, step 2 at 10:00 on day 2.
    let evs = [
        ev(DAY_MS + 9 * HOUR_MS, 0, 1, None, 0),
        ev(2 * DAY_MS + 10 * HOUR_MS, 0, 2, None, 0),
    ];
    let days = run(&spec2(Window::Days(1)), &evs);
    assert_eq!(days[1].contacts, 1);
    assert_eq!(days[1].median_seconds, Some(25.0 * 3600.0));
    let hours = run(&spec2(Window::Hours(24)), &evs);
    assert_eq!(hours[0].contacts, 1);
    assert_eq!(hours[1].contacts, 0);
    assert_eq!(hours[1].conversion_rate, Some(0.0));
    assert_eq!(hours[1].median_seconds, None);
    // Exactly 24 hours converts.
    let evs = [
        ev(DAY_MS + 9 * HOUR_MS, 0, 1, None, 0),
        ev(2 * DAY_MS + 9 * HOUR_MS, 0, 2, None, 0),
    ];
    assert_eq!(run(&spec2(Window::Hours(24)), &evs)[1].contacts, 1);
}

#[test]
fn strict_keeps_steps_in_range() {
    // Seed example: A step 1 on day 1, step 2 on day 7; B step 2 on day 8;
    // range days 1..=7, window 7 days.
    let spec = FunnelSpec {
        steps: 2,
        window: Window::Days(7),
        from: 1,
        to: 7,
        strict: false,
    };
    let a = [ev(DAY_MS, 0, 1, None, 0), ev(7 * DAY_MS, 0, 2, None, 0)];
    let b = [ev(DAY_MS, 0, 1, None, 0), ev(8 * DAY_MS, 0, 2, None, 0)];
    let mut acc = FunnelAcc::new(spec.clone());
    acc.add_contact(&a, None);
    acc.add_contact(&b, None);
    assert_eq!(acc.rows(false)[1].contacts, 2);
    let mut acc = FunnelAcc::new(FunnelSpec {
        strict: true,
        ..spec
    });
    acc.add_contact(&a, None);
    acc.add_contact(&b, None);
    assert_eq!(acc.rows(false)[1].contacts, 1);
}

#[test]
fn equal_timestamps_fill_consecutive_steps_with_distinct_events() {
    let spec = FunnelSpec {
        steps: 3,
        window: Window::Hours(1),
        from: 0,
        to: 0,
        strict: false,
    };
    // One event matching steps 1 and 2 alone reaches step 1 only.
    let rows = run(&spec, &[ev(1000, 0, 0b011, None, 0)]);
    assert_eq!(
        rows.iter().map(|r| r.contacts).collect::<Vec<_>>(),
        [1, 0, 0]
    );
    // Two equal-ts events: {1,2} and {1}: the second is step 1, the first step 2,
    // whatever the storage order.
    for evs in [
        [ev(1000, 0, 0b011, None, 0), ev(1000, 0, 0b001, None, 0)],
        [ev(1000, 0, 0b001, None, 0), ev(1000, 0, 0b011, None, 0)],
    ] {
        let rows = run(&spec, &evs);
        assert_eq!(
            rows.iter().map(|r| r.contacts).collect::<Vec<_>>(),
            [1, 1, 0]
        );
        assert_eq!(rows[1].median_seconds, Some(0.0));
    }
    // An event matching steps 2 and 3 is used for whichever is needed.
    let evs = [
        ev(0, 0, 0b001, None, 0),
        ev(1000, 0, 0b010, None, 0),
        ev(1000, 0, 0b110, None, 0),
    ];
    assert_eq!(run(&spec, &evs)[2].contacts, 1);
}

#[test]
fn earliest_start_reaching_the_deepest_step_gives_times() {
    let spec = FunnelSpec {
        steps: 3,
        window: Window::Hours(1),
        from: 0,
        to: 0,
        strict: false,
    };
    let m = 60_000;
    // Start at 0 reaches step 2 only (step 3 comes too late); the start at
    // 50 min reaches step 3: its chain is 50 → 55 → 70 min.
    let evs = [
        ev(0, 0, 0b001, None, 1),
        ev(10 * m, 0, 0b010, None, 0),
        ev(50 * m, 0, 0b001, None, 2),
        ev(55 * m, 0, 0b010, None, 0),
        ev(70 * m, 0, 0b100, None, 0),
        ev(75 * m, 0, 0b010, None, 0),
    ];
    let mut acc = FunnelAcc::new(spec);
    acc.add_contact(&evs, None);
    let rows = acc.rows(true);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].key, 2);
    assert_eq!(rows[1].median_seconds, Some(300.0));
    assert_eq!(rows[2].median_seconds, Some(900.0));
}

#[test]
fn empty_funnel_has_null_rates() {
    let rows = run(&spec2(Window::Days(1)), &[]);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].contacts, 0);
    assert_eq!(rows[0].conversion_rate, None);
    assert_eq!(rows[1].overall_rate, None);
    let mut acc = FunnelAcc::new(spec2(Window::Days(1)));
    acc.add_contact(&[], None);
    assert!(acc.rows(true).is_empty());
}

#[test]
fn medians_are_percentile_cont() {
    let mut acc = FunnelAcc::new(spec2(Window::Days(1)));
    for secs in [10, 20, 40, 80] {
        acc.add_contact(
            &[
                ev(DAY_MS, 0, 1, None, 0),
                ev(DAY_MS + secs * 1000, 0, 2, None, 0),
            ],
            None,
        );
    }
    let rows = acc.rows(false);
    assert_eq!(rows[0].conversion_rate, Some(1.0));
    assert_eq!(rows[1].median_seconds, Some(30.0));
    assert_eq!(rows[1].avg_seconds, Some(37.5));
}

#[test]
fn large_equal_timestamp_groups_stay_fast() {
    // 2000 step-1 events, then 3000 events at one millisecond matching steps
    // 1–3, then 2000 more step-1 events at one millisecond: each start reaches
    // the big group, whose matching is computed once per contact.
    let spec = FunnelSpec {
        steps: 4,
        window: Window::Days(30),
        from: 0,
        to: 10,
        strict: false,
    };
    let mut evs: Vec<Event> = (0..2000).map(|i| ev(i * 1000, 0, 1, None, 5)).collect();
    evs.extend((0..3000).map(|i| ev(DAY_MS, 0, 0b0111, None, 1 + (i % 7) as u32)));
    evs.extend((0..2000).map(|_| ev(2 * DAY_MS, 0, 0b0001, None, 9)));
    let t = std::time::Instant::now();
    let mut acc = FunnelAcc::new(spec);
    acc.add_contact(&evs, None);
    let rows = acc.rows(true);
    assert_eq!(
        rows.iter().map(|r| r.contacts).collect::<Vec<_>>(),
        [1, 1, 1, 0]
    );
    assert_eq!(rows[0].key, 5);
    assert!(t.elapsed().as_secs_f64() < 5.0);
}
