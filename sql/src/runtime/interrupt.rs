//! Interrupting a session's running statement: a cancel request from another
//! connection, or `statement_timeout`. Execution checks the flag between
//! batches (and `pg_sleep` while it sleeps); waiting code selects on
//! [`Interrupt::interrupted`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::SqlError;

/// Why a statement was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// A CancelRequest with this session's key.
    UserRequest = 1,
    /// `statement_timeout` elapsed.
    Timeout = 2,
    /// The client closed its connection (`client_connection_check_interval`).
    ClientGone = 3,
}

/// A session's interrupt flag for the statement it runs.
#[derive(Debug, Default)]
pub struct Interrupt {
    generation: AtomicU64,
    set: AtomicBool,
    reason: AtomicU8,
    notify: Notify,
}

impl Interrupt {
    /// Marks the start of a statement; returns its generation.
    pub fn begin(&self) -> u64 {
        self.set.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Interrupts the running statement (`generation` `None`), or statement
    /// `generation` if it is still the current one.
    pub fn interrupt(&self, generation: Option<u64>, reason: Reason) {
        if let Some(g) = generation {
            if self.generation.load(Ordering::SeqCst) != g {
                return;
            }
        }
        self.reason.store(reason as u8, Ordering::SeqCst);
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// The error the interrupted statement fails with (SQLSTATE 57014).
    pub fn error(&self) -> SqlError {
        let reason = self.reason.load(Ordering::SeqCst);
        SqlError::Cancelled(
            if reason == Reason::Timeout as u8 {
                "canceling statement due to statement timeout"
            } else if reason == Reason::ClientGone as u8 {
                "canceling statement: the client closed the connection"
            } else {
                "canceling statement due to user request"
            }
            .into(),
        )
    }

    /// `Err` once the current statement is interrupted.
    pub fn check(&self) -> Result<(), SqlError> {
        if self.set.load(Ordering::SeqCst) {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    /// Resolves when the current statement is interrupted.
    pub async fn interrupted(&self) {
        loop {
            let n = self.notify.notified();
            if self.set.load(Ordering::SeqCst) {
                return;
            }
            n.await;
        }
    }

    /// Sleeps `d` (for `pg_sleep`), returning early with an error when interrupted.
    pub fn sleep(&self, d: Duration) -> Result<(), SqlError> {
        let end = std::time::Instant::now() + d;
        let step = || loop {
            self.check()?;
            let now = std::time::Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(step)
            }
            _ => step(),
        }
    }
}

/// Parses a `statement_timeout` value: milliseconds, or with a unit
/// (`ms`, `s`, `min`, `h`); `0` disables it.
pub fn parse_timeout(v: &str) -> Option<Duration> {
    let v = v.trim().trim_matches('\'').trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => n,
        "s" => n * 1000.0,
        "min" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        "d" => n * 86_400_000.0,
        _ => return None,
    };
    (ms > 0.0).then(|| Duration::from_micros((ms * 1000.0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("0"), None);
        assert_eq!(parse_timeout("150"), Some(Duration::from_millis(150)));
        assert_eq!(parse_timeout("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("'1min'"), Some(Duration::from_secs(60)));
    }

    #[test]
    fn interrupt_only_the_current_statement() {
        let i = Interrupt::default();
        let g = i.begin();
        i.begin();
        i.interrupt(Some(g), Reason::Timeout);
        assert!(i.check().is_ok());
        i.interrupt(None, Reason::UserRequest);
        assert!(i.check().is_err());
        i.begin();
        assert!(i.check().is_ok());
    }
}
