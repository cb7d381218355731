//! RETENTION: direct reference, property tests and hand-written cases.

mod common;

use std::collections::BTreeMap;

use cohortdb_analytics::calendar::{period_index, period_start};
use cohortdb_analytics::retention::{RetentionAcc, RetentionRow, RetentionSpec};
use cohortdb_analytics::{Event, Unit};
use common::*;

fn ref_rows(spec: &RetentionSpec, contacts: &[Vec<Event>]) -> Vec<RetentionRow> {
    let n = spec.periods as i32;
    let per = |e: &Event| period_index(spec.unit, e.day);
    let mut cohorts: BTreeMap<i32, (u64, Vec<u64>)> = BTreeMap::new();
    for evs in contacts {
        let initials: Vec<&Event> = evs
            .iter()
            .filter(|e| e.mask & 1 != 0 && e.day >= spec.from && e.day <= spec.to)
            .collect();
        let mut periods: Vec<i32> = initials.iter().map(|e| per(e)).collect();
        periods.sort();
        periods.dedup();
        for c in periods {
            let first = initials
                .iter()
                .filter(|e| per(e) == c)
                .map(|e| e.ts)
                .min()
                .unwrap();
            let returned = |q: i32, min_ts: i64| {
                evs.iter()
                    .any(|e| e.mask & 2 != 0 && per(e) == q && e.ts >= min_ts)
            };
            let entry = cohorts
                .entry(c)
                .or_insert_with(|| (0, vec![0; n as usize + 1]));
            entry.0 += 1;
            for p in 0..=n {
                let hit = if spec.churn {
                    p >= 1 && !(1..=p).any(|q| returned(c + q, i64::MIN))
                } else {
                    returned(c + p, if p == 0 { first } else { i64::MIN })
                };
                if hit {
                    entry.1[p as usize] += 1;
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (c, (contacts, counts)) in cohorts {
        for p in (if spec.churn { 1 } else { 0 })..=n {
            let shown = period_start(spec.unit, c + p) <= spec.as_of_day;
            let x = if shown {
                Some(counts[p as usize])
            } else {
                None
            };
            rows.push(RetentionRow {
                cohort: period_start(spec.unit, c),
                cohort_contacts: contacts,
                period: p as u32,
                contacts: x,
                rate: x.map(|x| x as f64 / contacts as f64),
            });
        }
    }
    rows
}

fn fast_rows(spec: &RetentionSpec, contacts: &[Vec<Event>]) -> Vec<RetentionRow> {
    let mut a = RetentionAcc::new(spec.clone());
    let mut b = RetentionAcc::new(spec.clone());
    for (i, evs) in contacts.iter().enumerate() {
        if i % 3 == 0 {
            b.add_contact(evs);
        } else {
            a.add_contact(evs);
        }
    }
    a.merge(b);
    a.rows()
}

#[test]
fn retention_matches_reference() {
    let mut rng = Rng::new(3);
    for case in 0..4000 {
        let tz = rng.pick(&[0, 8 * HOUR_MS]);
        let unit = rng.pick(&[Unit::Day, Unit::Week, Unit::Month]);
        let spread = match unit {
            Unit::Day => 5,
            Unit::Week => 25,
            Unit::Month => 100,
        };
        let d0 = 18_260; // 2019-12-30, a Monday
        let base = d0 as i64 * DAY_MS - tz;
        let from = d0 + rng.range(0, spread / 3) as i32;
        let spec = RetentionSpec {
            unit,
            periods: rng.range(0, 4) as u32,
            from,
            to: from + rng.range(0, spread / 2) as i32,
            churn: rng.chance(1, 3),
            as_of_day: d0 + rng.range(0, spread + 10) as i32,
        };
        let contacts: Vec<Vec<Event>> = (0..rng.range(1, 6))
            .map(|_| {
                let mut evs: Vec<Event> = (0..rng.range(0, 8))
                    .map(|_| {
                        ev(
                            rand_ts(&mut rng, base, spread),
                            tz,
                            rng.range(0, 3) as u32,
                            None,
                            0,
                        )
                    })
                    .filter(|e| e.day <= spec.as_of_day)
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

fn day_spec(churn: bool) -> RetentionSpec {
    RetentionSpec {
        unit: Unit::Day,
        periods: 2,
        from: 10,
        to: 11,
        churn,
        as_of_day: 100,
    }
}

#[test]
fn initial_equal_to_return_is_full_at_period_zero() {
    let mut acc = RetentionAcc::new(day_spec(false));
    acc.add_contact(&[ev(10 * DAY_MS + 5, 0, 0b11, None, 0)]);
    acc.add_contact(&[
        ev(11 * DAY_MS, 0, 0b11, None, 0),
        ev(11 * DAY_MS, 0, 0b11, None, 0),
    ]);
    let rows = acc.rows();
    assert_eq!(rows[0].period, 0);
    assert_eq!(rows[0].rate, Some(1.0));
    assert_eq!(rows[3].rate, Some(1.0));
}

#[test]
fn return_before_first_initial_of_the_day_does_not_count_at_zero() {
    let mut acc = RetentionAcc::new(day_spec(false));
    acc.add_contact(&[
        ev(10 * DAY_MS + 1000, 0, 0b10, None, 0),
        ev(10 * DAY_MS + 2000, 0, 0b01, None, 0),
        ev(11 * DAY_MS + 2000, 0, 0b10, None, 0),
    ]);
    let rows = acc.rows();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].contacts, Some(0));
    assert_eq!(rows[1].contacts, Some(1));
    assert_eq!(rows[2].contacts, Some(0));
}

#[test]
fn contact_in_several_cohorts_and_churn() {
    let mut acc = RetentionAcc::new(day_spec(true));
    // Initial on days 10 and 11, return on day 12 only.
    acc.add_contact(&[
        ev(10 * DAY_MS, 0, 1, None, 0),
        ev(11 * DAY_MS, 0, 1, None, 0),
        ev(12 * DAY_MS, 0, 2, None, 0),
    ]);
    let rows = acc.rows();
    // Cohort 10: period 1 (day 11) no return → churned; period 2 (day 12) returned.
    assert_eq!(
        rows.iter()
            .map(|r| (r.cohort, r.period, r.contacts))
            .collect::<Vec<_>>(),
        [
            (10, 1, Some(1)),
            (10, 2, Some(0)),
            (11, 1, Some(0)),
            (11, 2, Some(0)),
        ]
    );
}

#[test]
fn periods_after_as_of_are_null_and_weeks_align() {
    // Range Wednesday..Tuesday across two weeks; cohort is the week's Monday.
    let wed = 18_262; // 2020-01-01, Wednesday
    let spec = RetentionSpec {
        unit: Unit::Week,
        periods: 2,
        from: wed,
        to: wed + 6,
        churn: false,
        as_of_day: wed + 6,
    };
    let mut acc = RetentionAcc::new(spec);
    acc.add_contact(&[ev(wed as i64 * DAY_MS, 0, 3, None, 0)]);
    acc.add_contact(&[
        ev((wed as i64 + 1) * DAY_MS, 0, 1, None, 0),
        ev((wed as i64 + 5) * DAY_MS, 0, 2, None, 0),
    ]);
    let rows = acc.rows();
    assert_eq!(rows[0].cohort, wed - 2);
    assert_eq!(rows[0].cohort_contacts, 2);
    assert_eq!(rows[0].contacts, Some(1));
    assert_eq!(rows[1].contacts, Some(1));
    assert_eq!(rows[2].contacts, None);
    assert_eq!(rows[2].rate, None);
}
