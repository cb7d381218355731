//! Calendar periods (day, Monday–Sunday week, month) over local day numbers.

use crate::{Day, Unit};

/// The index of the period holding `day` (monotonic, consecutive periods
/// differ by 1): DAY → the day itself, WEEK → Monday-based week number,
/// MONTH → `year * 12 + month0`.
pub fn period_index(unit: Unit, day: Day) -> i32 {
    todo!()
}

/// The first day of period `index` (inverse of [`period_index`]).
pub fn period_start(unit: Unit, index: i32) -> Day {
    todo!()
}
