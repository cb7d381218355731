//! ATTRIBUTE: per-target reference, property tests and hand-written cases.

mod common;

use cohortdb_analytics::attribute::{AttrWindow, AttributeAcc, AttributeRow, AttributeSpec, Model};
use cohortdb_analytics::Event;
use common::*;

struct RefAcc {
    clicks: Vec<u64>,
    eff: Vec<u64>,
    conv: Vec<f64>,
    value: Vec<f64>,
    direct: f64,
    direct_value: f64,
}

fn touch_of(spec: &AttributeSpec, e: &Event) -> Option<usize> {
    (1..=spec.touches)
        .find(|&i| e.mask >> i & 1 != 0)
        .map(|i| i - 1)
}

fn ref_contact(spec: &AttributeSpec, evs: &[Event], acc: &mut RefAcc) {
    let n = match spec.window {
        AttrWindow::SameDay => 0,
        AttrWindow::Days(n) => n as i32,
    };
    for e in evs {
        if let Some(t) = touch_of(spec, e) {
            if e.day >= spec.from - n && e.day <= spec.to {
                acc.clicks[t] += 1;
            }
        }
    }
    // Targets in (ts, value: NULL first, ascending) order.
    let mut targets: Vec<&Event> = evs.iter().filter(|e| e.mask & 1 != 0).collect();
    targets.sort_by(|a, b| {
        a.ts.cmp(&b.ts).then_with(|| match (a.value, b.value) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, _) => std::cmp::Ordering::Less,
            (_, None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap(),
        })
    });
    for (k, g) in targets.iter().enumerate() {
        if g.day < spec.from || g.day > spec.to {
            continue;
        }
        let prev = if k == 0 { i64::MIN } else { targets[k - 1].ts };
        let credit: Vec<(i64, usize)> = evs
            .iter()
            .filter_map(|u| {
                let t = touch_of(spec, u)?;
                let in_window = match spec.window {
                    AttrWindow::SameDay => u.day == g.day,
                    AttrWindow::Days(n) => g.day - u.day <= n as i32,
                };
                (u.ts > prev && u.ts < g.ts && in_window).then_some((u.ts, t))
            })
            .collect();
        let v = g.value.unwrap_or(0.0);
        if credit.is_empty() {
            acc.direct += 1.0;
            acc.direct_value += v;
            continue;
        }
        let first = credit.iter().map(|c| c.0).min().unwrap();
        let last = credit.iter().map(|c| c.0).max().unwrap();
        let chosen: Vec<usize> = credit
            .iter()
            .filter(|c| match spec.model {
                Model::First => c.0 == first,
                Model::Last => c.0 == last,
                Model::Linear => true,
            })
            .map(|c| c.1)
            .collect();
        for c in &credit {
            acc.eff[c.1] += 1;
        }
        for &t in &chosen {
            acc.conv[t] += 1.0 / chosen.len() as f64;
            acc.value[t] += v / chosen.len() as f64;
        }
    }
}

fn ref_rows(spec: &AttributeSpec, contacts: &[Vec<Event>]) -> Vec<AttributeRow> {
    let t = spec.touches;
    let mut acc = RefAcc {
        clicks: vec![0; t],
        eff: vec![0; t],
        conv: vec![0.0; t],
        value: vec![0.0; t],
        direct: 0.0,
        direct_value: 0.0,
    };
    for evs in contacts {
        ref_contact(spec, evs, &mut acc);
    }
    let metric = |c: f64, v: f64| if spec.has_value { v } else { c };
    let total: f64 = (0..t)
        .map(|i| metric(acc.conv[i], acc.value[i]))
        .sum::<f64>()
        + if spec.include_direct {
            metric(acc.direct, acc.direct_value)
        } else {
            0.0
        };
    let contrib = |x: f64| if total == 0.0 { None } else { Some(x / total) };
    let mut rows: Vec<AttributeRow> = (0..t)
        .map(|i| AttributeRow {
            touch: Some(i),
            clicks: Some(acc.clicks[i]),
            effective_clicks: Some(acc.eff[i]),
            effective_rate: if acc.clicks[i] == 0 {
                None
            } else {
                Some(acc.eff[i] as f64 / acc.clicks[i] as f64)
            },
            conversions: acc.conv[i],
            value: spec.has_value.then_some(acc.value[i]),
            contribution: contrib(metric(acc.conv[i], acc.value[i])),
        })
        .collect();
    if spec.include_direct {
        rows.push(AttributeRow {
            touch: None,
            clicks: None,
            effective_clicks: None,
            effective_rate: None,
            conversions: acc.direct,
            value: spec.has_value.then_some(acc.direct_value),
            contribution: contrib(metric(acc.direct, acc.direct_value)),
        });
    }
    rows
}

fn same(a: &[AttributeRow], b: &[AttributeRow]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.touch == y.touch
                && x.clicks == y.clicks
                && x.effective_clicks == y.effective_clicks
                && close_opt(x.effective_rate, y.effective_rate)
                && close(x.conversions, y.conversions)
                && close_opt(x.value, y.value)
                && close_opt(x.contribution, y.contribution)
        })
}

fn fast_rows(spec: &AttributeSpec, contacts: &[Vec<Event>]) -> Vec<AttributeRow> {
    let mut a = AttributeAcc::new(spec.clone());
    let mut b = AttributeAcc::new(spec.clone());
    for (i, evs) in contacts.iter().enumerate() {
        if i % 2 == 1 {
            b.add_contact(evs);
        } else {
            a.add_contact(evs);
        }
    }
    a.merge(b);
    a.rows()
}

#[test]
fn attribute_matches_reference() {
    let mut rng = Rng::new(4);
    for case in 0..5000 {
        let tz = rng.pick(&[0, 8 * HOUR_MS]);
        let d0 = 18_000;
        let base = d0 as i64 * DAY_MS - tz;
        let touches = rng.range(1, 3) as usize;
        let from = d0 + rng.range(0, 2) as i32;
        let spec = AttributeSpec {
            touches,
            window: if rng.chance(1, 3) {
                AttrWindow::SameDay
            } else {
                AttrWindow::Days(rng.range(0, 2) as u32)
            },
            model: rng.pick(&[Model::First, Model::Last, Model::Linear]),
            from,
            to: from + rng.range(0, 2) as i32,
            include_direct: rng.chance(1, 2),
            has_value: rng.chance(1, 2),
        };
        let contacts: Vec<Vec<Event>> = (0..rng.range(1, 5))
            .map(|_| {
                let mut evs: Vec<Event> = (0..rng.range(0, 10))
                    .map(|_| {
                        let mask = if rng.chance(1, 3) {
                            1 | if rng.chance(1, 6) { 2 } else { 0 }
                        } else {
                            (rng.below(1 << touches) as u32 + 1) << 1
                        };
                        let value = if spec.has_value && rng.chance(3, 4) {
                            Some(rng.range(1, 5) as f64)
                        } else {
                            None
                        };
                        ev(rand_ts(&mut rng, base, 4), tz, mask, value, 0)
                    })
                    .collect();
                sort_and_shuffle(&mut rng, &mut evs);
                evs
            })
            .collect();
        let want = ref_rows(&spec, &contacts);
        let got = fast_rows(&spec, &contacts);
        assert!(
            same(&got, &want),
            "case {case}: {spec:?}\n{contacts:#?}\ngot {got:#?}\nwant {want:#?}"
        );
        let mut shuffled = contacts.clone();
        for evs in shuffled.iter_mut() {
            shuffle_equal_ts(&mut rng, evs);
        }
        assert!(
            same(&fast_rows(&spec, &shuffled), &want),
            "case {case} (shuffled)"
        );
    }
}

fn spec(window: AttrWindow, model: Model) -> AttributeSpec {
    AttributeSpec {
        touches: 3,
        window,
        model,
        from: 10,
        to: 10,
        include_direct: true,
        has_value: true,
    }
}

const T: u32 = 1;
const B: u32 = 2;
const C: u32 = 4;
const D: u32 = 8;

#[test]
fn seed_models_b_e_c_d_a() {
    // B → E (not a touch) → C → D → A, all on day 10.
    let evs = |v| {
        vec![
            ev(10 * DAY_MS + HOUR_MS, 0, B, None, 0),
            ev(10 * DAY_MS + 2 * HOUR_MS, 0, 0, None, 0),
            ev(10 * DAY_MS + 3 * HOUR_MS, 0, C, None, 0),
            ev(10 * DAY_MS + 4 * HOUR_MS, 0, D, None, 0),
            ev(10 * DAY_MS + 5 * HOUR_MS, 0, T, v, 0),
        ]
    };
    for (model, conv) in [
        (Model::First, [1.0, 0.0, 0.0]),
        (Model::Last, [0.0, 0.0, 1.0]),
        (Model::Linear, [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]),
    ] {
        let mut acc = AttributeAcc::new(spec(AttrWindow::SameDay, model));
        acc.add_contact(&evs(Some(30.0)));
        let rows = acc.rows();
        for i in 0..3 {
            assert!(close(rows[i].conversions, conv[i]));
            assert!(close(rows[i].value.unwrap(), conv[i] * 30.0));
            assert_eq!(rows[i].effective_clicks, Some(1));
            assert_eq!(rows[i].effective_rate, Some(1.0));
        }
        assert_eq!(rows[3].conversions, 0.0);
        assert_eq!(rows[3].clicks, None);
    }
}

#[test]
fn seed_direct_conversion_example() {
    // Same day: A on day 9 10:00 direct, B day 10 10:00, A day 10 12:00 credited.
    let mut s = spec(AttrWindow::SameDay, Model::Last);
    s.from = 9;
    s.has_value = false;
    let mut acc = AttributeAcc::new(s);
    acc.add_contact(&[
        ev(9 * DAY_MS + 10 * HOUR_MS, 0, T, None, 0),
        ev(10 * DAY_MS + 10 * HOUR_MS, 0, B, None, 0),
        ev(10 * DAY_MS + 12 * HOUR_MS, 0, T, None, 0),
    ]);
    let rows = acc.rows();
    assert_eq!(rows[0].conversions, 1.0);
    assert_eq!(rows[3].conversions, 1.0);
    assert_eq!(rows[0].contribution, Some(0.5));
    assert_eq!(rows[3].contribution, Some(0.5));
    assert_eq!(rows[0].value, None);
}

#[test]
fn same_millisecond_touch_does_not_credit() {
    let mut acc = AttributeAcc::new(spec(AttrWindow::Days(1), Model::Linear));
    acc.add_contact(&[
        ev(10 * DAY_MS, 0, B, None, 0),
        ev(10 * DAY_MS, 0, T, Some(5.0), 0),
    ]);
    let rows = acc.rows();
    assert_eq!(rows[0].clicks, Some(1));
    assert_eq!(rows[0].effective_clicks, Some(0));
    assert_eq!(rows[0].conversions, 0.0);
    assert_eq!(rows[3].conversions, 1.0);
    assert_eq!(rows[3].value, Some(5.0));
}

#[test]
fn window_days_and_previous_target_before_from() {
    let mut acc = AttributeAcc::new(spec(AttrWindow::Days(2), Model::First));
    acc.add_contact(&[
        ev(7 * DAY_MS, 0, C, None, 0), // before the window: no click, no credit
        ev(8 * DAY_MS, 0, B, None, 0), // consumed by the day-9 target
        ev(9 * DAY_MS, 0, T, Some(1.0), 0), // previous target, before FROM
        ev(9 * DAY_MS + 1, 0, D, None, 0), // credits the day-10 target
        ev(10 * DAY_MS + 5, 0, T, None, 0), // in range, NULL value
    ]);
    let rows = acc.rows();
    assert_eq!(rows[0].clicks, Some(1)); // day 8 = from - 2
    assert_eq!(rows[0].effective_clicks, Some(0));
    assert_eq!(rows[1].clicks, Some(0));
    assert_eq!(rows[1].effective_rate, None);
    assert_eq!(rows[2].effective_clicks, Some(1));
    assert_eq!(rows[2].conversions, 1.0);
    assert_eq!(rows[2].value, Some(0.0));
    assert_eq!(rows[3].conversions, 0.0);
    // Total value is 0: contributions are NULL.
    assert_eq!(rows[2].contribution, None);
}

#[test]
fn touch_matching_several_predicates_belongs_to_the_first() {
    let mut acc = AttributeAcc::new(spec(AttrWindow::SameDay, Model::First));
    acc.add_contact(&[
        ev(10 * DAY_MS, 0, C | D, None, 0),
        ev(10 * DAY_MS + 1, 0, T, Some(2.0), 0),
    ]);
    let rows = acc.rows();
    assert_eq!(rows[1].conversions, 1.0);
    assert_eq!(rows[2].clicks, Some(0));
    assert_eq!(rows[1].contribution, Some(1.0));
}
