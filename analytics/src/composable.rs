//! The ClickHouse-compatible aggregates `window_funnel` and `retention`
//! (default mode), as pure functions over one group's rows.
//!
//! `window_funnel` follows ClickHouse's `windowFunnel(window)` default
//! mode: every row contributes one entry `(ts, level)` per condition it
//! matches; entries are sorted by `(ts, level)`; scanning them, a level-1
//! entry (re)starts a chain at its time, and a level-k entry extends the
//! chain that reached level k − 1 when `ts ≤ chain start + window`, keeping
//! that chain's start. The result is the highest level reached (0 when no
//! row matched condition 1). As in ClickHouse, one row matching several
//! conditions may advance several levels at once, and the window is
//! inclusive.

/// `window_funnel(window, ts, cond1..condN)`: the deepest level reached by a
/// chain cond1 → cond2 → … in time order whose events all lie within
/// `window_ms` of the chain's cond1 event (ClickHouse `windowFunnel` default
/// mode). `rows`: `(ts_ms, mask)` with bit i = cond i+1, in any order.
pub fn window_funnel(window_ms: i64, conds: usize, rows: &mut [(i64, u32)]) -> u32 {
    let conds = conds.min(32);
    if conds == 0 {
        return 0;
    }
    rows.sort_unstable_by_key(|r| r.0);
    // start[k]: start time of the chain that reached level k + 1.
    let mut start: [Option<i64>; 32] = [None; 32];
    let mut i = 0;
    while i < rows.len() {
        let ts = rows[i].0;
        let mut mask = 0u32;
        while i < rows.len() && rows[i].0 == ts {
            mask |= rows[i].1;
            i += 1;
        }
        // Entries of equal ts in level order; duplicates are idempotent.
        for k in 0..conds {
            if mask >> k & 1 == 0 {
                continue;
            }
            if k == 0 {
                start[0] = Some(ts);
            } else if let Some(s) = start[k - 1] {
                if (ts as i128) <= s as i128 + window_ms as i128 {
                    start[k] = Some(s);
                    if k + 1 == conds {
                        return conds as u32;
                    }
                }
            }
        }
    }
    (0..conds)
        .rev()
        .find(|&k| start[k].is_some())
        .map_or(0, |k| k as u32 + 1)
}

/// `retention(cond1..condN)`: element 0 = some row matched cond1; element i
/// = some row matched cond1 and some row matched cond i+1 (ClickHouse
/// `retention`). `any`: OR of the rows' masks.
pub fn retention(conds: usize, any: u32) -> Vec<bool> {
    let first = any & 1 != 0;
    (0..conds)
        .map(|i| first && i < 32 && any >> i & 1 != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_conditions_do_not_count() {
        // Conditions (A, B, C, D); rows A, C, B, D: C comes before B and D
        // needs C after B, so the level is 2.
        let t = |d: i64| d * 86_400_000;
        let mut rows = vec![
            (t(1), 0b0001),
            (t(2), 0b0100),
            (t(3), 0b0010),
            (t(4), 0b1000),
        ];
        assert_eq!(window_funnel(i64::MAX / 2, 4, &mut rows), 2);
    }

    #[test]
    fn window_is_inclusive_and_restarts_keep_the_latest_start() {
        let mut rows = vec![(0, 1), (10, 1), (15, 2), (21, 4)];
        // Chain from 10: 15 (≤ 20), 21 > 20: level 2; from 0 nothing better.
        assert_eq!(window_funnel(10, 3, &mut rows), 2);
        let mut rows = vec![(0, 1), (10, 2), (10, 4)];
        assert_eq!(window_funnel(10, 3, &mut rows), 3);
        assert_eq!(window_funnel(9, 3, &mut rows), 1);
        // One row matching every condition reaches the last level.
        assert_eq!(window_funnel(0, 3, &mut [(5, 7)]), 3);
        assert_eq!(window_funnel(10, 3, &mut [(5, 2)]), 0);
        assert_eq!(window_funnel(10, 3, &mut []), 0);
        // Order of input rows does not matter.
        let mut rows = vec![(21, 4), (15, 2), (10, 1), (0, 1)];
        assert_eq!(window_funnel(10, 3, &mut rows), 2);
    }

    #[test]
    fn retention_array() {
        assert_eq!(retention(3, 0b101), vec![true, false, true]);
        assert_eq!(retention(3, 0b110), vec![false, false, false]);
        assert_eq!(retention(1, 1), vec![true]);
    }
}
