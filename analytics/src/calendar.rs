//! Calendar periods (day, Monday–Sunday week, month) over local day numbers.
//!
//! Plain proleptic-Gregorian integer arithmetic (no time-zone knowledge: the
//! caller has already turned timestamps into local day numbers).
//! 1970-01-01 (day 0) was a Thursday, so the Monday-based week holding day
//! `d` is `(d + 3).div_euclid(7)` and its Monday is `week * 7 - 3`.

use crate::{Day, Unit};

/// The index of the period holding `day` (monotonic, consecutive periods
/// differ by 1): DAY → the day itself, WEEK → Monday-based week number,
/// MONTH → `year * 12 + month0`.
pub fn period_index(unit: Unit, day: Day) -> i32 {
    match unit {
        Unit::Day => day,
        Unit::Week => (day + 3).div_euclid(7),
        Unit::Month => {
            let (y, m, _) = civil_from_days(day);
            y * 12 + (m as i32 - 1)
        }
    }
}

/// The first day of period `index` (inverse of [`period_index`]).
pub fn period_start(unit: Unit, index: i32) -> Day {
    match unit {
        Unit::Day => index,
        Unit::Week => index * 7 - 3,
        Unit::Month => days_from_civil(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1),
    }
}

/// Days since 1970-01-01 of the civil date `y-m-d` (`m` 1..=12, `d` 1..=31).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> Day {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (m as i32 + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d as i32 - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146097 + doe - 719468
}

/// The civil date `(year, month 1..=12, day 1..=31)` of a day number.
pub fn civil_from_days(z: Day) -> (i32, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_roundtrip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2020, 4, 1), 18353);
        assert_eq!(civil_from_days(18353), (2020, 4, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for d in -800_000..800_000 {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn weeks_are_monday_based() {
        // 2020-03-30 was a Monday, 2020-04-05 a Sunday.
        let mon = days_from_civil(2020, 3, 30);
        let sun = days_from_civil(2020, 4, 5);
        let w = period_index(Unit::Week, mon);
        assert_eq!(period_index(Unit::Week, sun), w);
        assert_eq!(period_index(Unit::Week, sun + 1), w + 1);
        assert_eq!(period_index(Unit::Week, mon - 1), w - 1);
        assert_eq!(period_start(Unit::Week, w), mon);
        // 1970-01-01 (Thursday) belongs to the week starting Monday 1969-12-29.
        assert_eq!(period_start(Unit::Week, period_index(Unit::Week, 0)), -3);
    }

    #[test]
    fn periods_invert() {
        for unit in [Unit::Day, Unit::Week, Unit::Month] {
            for d in -100_000..100_000 {
                let i = period_index(unit, d);
                let s = period_start(unit, i);
                assert!(s <= d);
                assert_eq!(period_index(unit, s), i);
                assert_eq!(period_index(unit, s - 1), i - 1);
            }
        }
        let feb = period_index(Unit::Month, days_from_civil(2020, 2, 29));
        assert_eq!(feb, 2020 * 12 + 1);
        assert_eq!(period_start(Unit::Month, feb), days_from_civil(2020, 2, 1));
        assert_eq!(
            period_start(Unit::Month, feb + 11),
            days_from_civil(2021, 1, 1)
        );
    }
}
