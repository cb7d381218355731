//! Shared helpers of the property tests: a small deterministic PRNG, event
//! construction and float comparison.
#![allow(dead_code)]

use cohortdb_analytics::{Day, Event};

/// Milliseconds per day.
pub const DAY_MS: i64 = 86_400_000;
/// Milliseconds per hour.
pub const HOUR_MS: i64 = 3_600_000;

/// SplitMix64.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    /// A random element.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// The local day of `ts` in a zone `tz_ms` ahead of UTC.
pub fn day_of(ts: i64, tz_ms: i64) -> Day {
    (ts + tz_ms).div_euclid(DAY_MS) as Day
}

/// An event.
pub fn ev(ts: i64, tz_ms: i64, mask: u32, value: Option<f64>, key: u32) -> Event {
    Event {
        ts,
        day: day_of(ts, tz_ms),
        mask,
        value,
        key,
    }
}

/// Sorts by `ts` (stable) and then shuffles every run of equal timestamps.
pub fn sort_and_shuffle(rng: &mut Rng, evs: &mut [Event]) {
    evs.sort_by_key(|e| e.ts);
    shuffle_equal_ts(rng, evs);
}

/// Shuffles every run of equal timestamps (the slice is sorted by `ts`).
pub fn shuffle_equal_ts(rng: &mut Rng, evs: &mut [Event]) {
    let mut i = 0;
    while i < evs.len() {
        let mut j = i + 1;
        while j < evs.len() && evs[j].ts == evs[i].ts {
            j += 1;
        }
        let run = &mut evs[i..j];
        for k in (1..run.len()).rev() {
            let r = rng.below(k as u64 + 1) as usize;
            run.swap(k, r);
        }
        i = j;
    }
}

/// Random timestamp near `base` (ms of local midnight of some day): a few
/// days around it on hour / half-hour / edge-of-day grid points, so equal
/// timestamps, exactly-24h gaps and day edges are frequent.
pub fn rand_ts(rng: &mut Rng, base: i64, days: i64) -> i64 {
    let d = rng.range(-1, days);
    let within = match rng.below(6) {
        0 => 0,
        1 => DAY_MS - 1,
        2 => rng.range(0, 23) * HOUR_MS,
        3 => rng.range(0, 47) * HOUR_MS / 2,
        4 => rng.range(0, 3) * 1000,
        _ => rng.pick(&[9 * HOUR_MS, 10 * HOUR_MS, 23 * HOUR_MS, HOUR_MS]),
    };
    base + d * DAY_MS + within
}

/// Float equality up to rounding.
pub fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

/// Optional float equality up to rounding.
pub fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => close(a, b),
        _ => false,
    }
}

/// `percentile_cont(0.5)` the slow way.
pub fn ref_median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}
