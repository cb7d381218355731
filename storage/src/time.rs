//! Day arithmetic used by the storage layout: events are partitioned by UTC day.

/// Milliseconds in one day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// The UTC day number (days since 1970-01-01) holding the instant `ts_ms`.
pub fn utc_day(ts_ms: i64) -> i32 {
    ts_ms.div_euclid(MS_PER_DAY) as i32
}
