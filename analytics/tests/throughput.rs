//! Throughput check (ignored by default; run with
//! `cargo test -p cohortdb-analytics --release --test throughput -- --ignored --nocapture`).

mod common;

use std::time::Instant;

use cohortdb_analytics::attribute::{AttrWindow, AttributeAcc, AttributeSpec, Model};
use cohortdb_analytics::funnel::{FunnelAcc, FunnelSpec, Window};
use cohortdb_analytics::ltv::{LtvAcc, LtvSpec};
use cohortdb_analytics::paths::{Anchor, PathsAcc, PathsSpec};
use cohortdb_analytics::retention::{RetentionAcc, RetentionSpec};
use cohortdb_analytics::{Event, Unit};
use common::*;

fn data() -> Vec<Vec<Event>> {
    let mut rng = Rng::new(9);
    (0..100_000)
        .map(|_| {
            let n = rng.range(1, 200);
            let mut ts = 18_000 * DAY_MS + rng.range(0, DAY_MS);
            let mut v: Vec<Event> = (0..n)
                .map(|_| {
                    ts += rng.range(0, 6 * HOUR_MS);
                    ev(
                        ts,
                        0,
                        rng.below(16) as u32,
                        Some(1.0),
                        rng.range(0, 5) as u32,
                    )
                })
                .collect();
            v.sort_by_key(|e| e.ts);
            v
        })
        .collect()
}

fn report(name: &str, events: usize, t: Instant) {
    let s = t.elapsed().as_secs_f64();
    println!("{name}: {:.1} M events/s", events as f64 / s / 1e6);
}

// A measurement, not a check: it prints events/s per accumulator and asserts
// no timing (timings do not belong in tests). It stays ignored so CI's debug
// run does not spend a minute on it; run it in release when changing the
// algorithms, and compare with the figures in docs/benchmark.md. The
// end-to-end figures come from `cohortdb-bench analytics`.
#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn throughput() {
    let contacts = data();
    let total: usize = contacts.iter().map(|c| c.len()).sum();
    let (from, to) = (18_000, 18_030);

    let t = Instant::now();
    let mut f = FunnelAcc::new(FunnelSpec {
        steps: 4,
        window: Window::Days(7),
        from,
        to,
        strict: false,
    });
    for c in &contacts {
        f.add_contact(c, None);
    }
    report("funnel", total, t);

    let t = Instant::now();
    let mut r = RetentionAcc::new(RetentionSpec {
        unit: Unit::Day,
        periods: 7,
        from,
        to,
        churn: false,
        as_of_day: 19_000,
    });
    for c in &contacts {
        r.add_contact(c);
    }
    report("retention", total, t);

    let t = Instant::now();
    let mut a = AttributeAcc::new(AttributeSpec {
        touches: 3,
        window: AttrWindow::Days(3),
        model: Model::Linear,
        from,
        to,
        include_direct: true,
        has_value: true,
    });
    for c in &contacts {
        a.add_contact(c);
    }
    report("attribute", total, t);

    let t = Instant::now();
    let mut l = LtvAcc::new(LtvSpec {
        unit: Unit::Week,
        periods: 8,
        from,
        to,
        as_of_day: 19_000,
    });
    for c in &contacts {
        l.add_contact(c, None, None);
    }
    report("ltv", total, t);

    let t = Instant::now();
    let mut p = PathsAcc::new(PathsSpec {
        gap_ms: HOUR_MS,
        from,
        to,
        anchor: Anchor::None,
        merge_repeats: true,
        depth: 5,
    });
    for c in &contacts {
        p.add_contact(c);
    }
    report("paths", total, t);
    assert!(!f.rows(false).is_empty() && !r.rows().is_empty() && !a.rows().is_empty());
    assert!(!l.rows().is_empty() && !p.rows().is_empty());
}
