//! `window_funnel` against a literal transcription of ClickHouse's
//! `windowFunnel` default mode (one entry per matched condition, stable
//! sort by (timestamp, condition), single scan).

mod common;

use cohortdb_analytics::composable::{retention, window_funnel};
use common::*;

fn clickhouse_window_funnel(window: i64, conds: usize, rows: &[(i64, u32)]) -> u32 {
    let mut entries: Vec<(i64, usize)> = Vec::new();
    for &(ts, mask) in rows {
        for i in (1..=conds).rev() {
            if mask >> (i - 1) & 1 != 0 {
                entries.push((ts, i));
            }
        }
    }
    if entries.is_empty() {
        return 0;
    }
    entries.sort(); // lexicographic, as std::stable_sort on std::pair
    let mut ev: Vec<Option<(i64, i64)>> = vec![None; conds];
    for (ts, level) in entries {
        let idx = level - 1;
        if idx == 0 {
            ev[0] = Some((ts, ts));
        } else if let Some((first, _)) = ev[idx - 1] {
            if ts <= first + window {
                ev[idx] = Some((first, ts));
                if idx + 1 == conds {
                    return conds as u32;
                }
            }
        }
    }
    (0..conds)
        .rev()
        .find(|&k| ev[k].is_some())
        .map_or(0, |k| k as u32 + 1)
}

#[test]
fn window_funnel_matches_clickhouse_transcription() {
    let mut rng = Rng::new(7);
    for case in 0..20_000 {
        let conds = rng.range(1, 5) as usize;
        let window = rng.pick(&[0, 1, 5, 10, 100]);
        let mut rows: Vec<(i64, u32)> = (0..rng.range(0, 10))
            .map(|_| (rng.range(0, 30), rng.below(1 << conds) as u32))
            .collect();
        let want = clickhouse_window_funnel(window, conds, &rows);
        let got = window_funnel(window, conds, &mut rows);
        assert_eq!(
            got, want,
            "case {case}: window {window} conds {conds} rows {rows:?}"
        );
    }
}

#[test]
fn retention_matches_definition() {
    for conds in 1..6 {
        for any in 0..64u32 {
            let r = retention(conds, any);
            assert_eq!(r.len(), conds);
            for (i, &x) in r.iter().enumerate() {
                assert_eq!(x, any & 1 != 0 && any >> i & 1 != 0);
            }
        }
    }
}
