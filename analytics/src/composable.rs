//! The ClickHouse-compatible aggregates `window_funnel` and `retention`
//! (default mode), as pure functions over one group's rows.

/// `window_funnel(window, ts, cond1..condN)`: the deepest level reached by a
/// chain cond1 → cond2 → … in time order whose events all lie within
/// `window_ms` of the chain's cond1 event (ClickHouse `windowFunnel` default
/// mode). `rows`: `(ts_ms, mask)` with bit i = cond i+1, in any order.
pub fn window_funnel(window_ms: i64, conds: usize, rows: &mut [(i64, u32)]) -> u32 {
    todo!()
}

/// `retention(cond1..condN)`: element 0 = some row matched cond1; element i
/// = some row matched cond1 and some row matched cond i+1 (ClickHouse
/// `retention`). `any`: OR of the rows' masks.
pub fn retention(conds: usize, any: u32) -> Vec<bool> {
    todo!()
}
