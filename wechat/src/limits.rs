//! Per-account sending limits: a token bucket of recipients per minute.
//!
//! The bucket holds at most one second's worth of tokens (`per_minute /
//! 60`), so the rate over any minute stays within the limit plus one
//! second's burst. A call may take more tokens than the bucket holds (a
//! mass call of 10,000 openids): it waits until the bucket is full, takes
//! them all and leaves the bucket in debt, which the calls after it wait
//! out.

use std::time::{Duration, Instant};

/// A token bucket refilled continuously at `per_minute`.
#[derive(Debug)]
pub struct Bucket {
    /// Tokens per second.
    rate: f64,
    /// At most this many tokens.
    capacity: f64,
    /// Negative: in debt.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket for `per_minute` recipients a minute.
    pub fn new(per_minute: u64) -> Bucket {
        let rate = per_minute.max(1) as f64 / 60.0;
        let capacity = rate.max(1.0);
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let add = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + add).min(self.capacity);
        self.at = now;
    }

    /// How long to wait before `n` recipients may be sent (zero: they are
    /// taken now).
    pub fn take(&mut self, n: u64) -> Duration {
        self.refill();
        let need = (n as f64).min(self.capacity);
        if self.tokens >= need {
            self.tokens -= n as f64;
            return Duration::ZERO;
        }
        Duration::from_secs_f64((need - self.tokens) / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_paces() {
        let mut b = Bucket::new(60); // one per second
        assert_eq!(b.take(1), Duration::ZERO);
        let wait = b.take(1);
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_millis(1000),
            "{wait:?}"
        );
    }

    #[test]
    fn a_large_call_leaves_a_debt() {
        let mut b = Bucket::new(600); // ten per second
        assert_eq!(b.take(100), Duration::ZERO);
        // 90 in debt, then one more needs 9.1 s of refill
        let wait = b.take(1);
        assert!(
            wait > Duration::from_millis(9_000) && wait <= Duration::from_millis(9_100),
            "{wait:?}"
        );
    }

    #[test]
    fn a_minute_holds_the_limit() {
        let mut b = Bucket::new(30_000);
        let mut taken = 0;
        while b.take(1) == Duration::ZERO {
            taken += 1;
        }
        // one second's worth at once, not a minute's
        assert_eq!(taken, 500);
    }
}
