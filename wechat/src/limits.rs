//! Per-account sending limits: a token bucket of recipients per minute.

use std::time::{Duration, Instant};

/// A token bucket refilled continuously at `per_minute`.
#[derive(Debug)]
pub struct Bucket {
    per_minute: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `per_minute` tokens.
    pub fn new(per_minute: u64) -> Bucket {
        Bucket {
            per_minute: per_minute.max(1) as f64,
            tokens: per_minute.max(1) as f64,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let add = now.duration_since(self.at).as_secs_f64() * self.per_minute / 60.0;
        self.tokens = (self.tokens + add).min(self.per_minute);
        self.at = now;
    }

    /// How long to wait before `n` recipients may be sent (zero: take them now).
    pub fn take(&mut self, n: u64) -> Duration {
        self.refill();
        let n = (n as f64).min(self.per_minute);
        if self.tokens >= n {
            self.tokens -= n;
            return Duration::ZERO;
        }
        Duration::from_secs_f64((n - self.tokens) * 60.0 / self.per_minute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_paces() {
        let mut b = Bucket::new(60); // one per second
        assert_eq!(b.take(60), Duration::ZERO);
        let wait = b.take(1);
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_millis(1000),
            "{wait:?}"
        );
    }
}
