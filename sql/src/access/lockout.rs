//! Login lockout (SPEC §8): `max_failures` failed logins within `window`
//! lock that user name for `lock` (defaults 5, 5 minutes, 5 minutes). The
//! state is kept per user name — known or not, so a locked name and an
//! unknown one answer alike — and persisted in the `lockout` setting, so a
//! restart does not unlock. The clock is passed in (`now_ms`), which makes
//! the rules testable without waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cohortdb_storage::Store;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Name of the persisted setting.
const SETTING: &str = "lockout";

/// The lockout rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutRules {
    /// Failures that lock (0 turns lockout off).
    pub max_failures: usize,
    /// Window the failures are counted in, ms.
    pub window_ms: i64,
    /// How long a lock lasts, ms.
    pub lock_ms: i64,
}

impl Default for LockoutRules {
    fn default() -> Self {
        LockoutRules {
            max_failures: 5,
            window_ms: 5 * 60_000,
            lock_ms: 5 * 60_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Entry {
    /// Times of recent failures (ms).
    failures: Vec<i64>,
    /// Locked until (ms), 0 = not locked.
    locked_until: i64,
}

/// Failed-login bookkeeping of the server.
#[derive(Debug)]
pub struct Lockout {
    store: Arc<Store>,
    rules: LockoutRules,
    users: Mutex<HashMap<String, Entry>>,
}

/// What a failed login did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted.
    Counted,
    /// This failure locked the user.
    Locked,
}

impl Lockout {
    /// Loads the persisted state from `store`.
    pub fn open(store: Arc<Store>, rules: LockoutRules) -> Result<Lockout> {
        let users = match store.get_setting(SETTING)? {
            Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
            None => HashMap::new(),
        };
        Ok(Lockout {
            store,
            rules,
            users: Mutex::new(users),
        })
    }

    /// True when `user` is locked at `now_ms`.
    pub fn is_locked(&self, user: &str, now_ms: i64) -> bool {
        self.users
            .lock()
            .expect("lockout")
            .get(user)
            .is_some_and(|e| e.locked_until > now_ms)
    }

    /// Records a failed login of `user` at `now_ms`.
    pub async fn failed(&self, user: &str, now_ms: i64) -> Result<Failure> {
        if self.rules.max_failures == 0 {
            return Ok(Failure::Counted);
        }
        let (out, doc) = {
            let mut users = self.users.lock().expect("lockout");
            let e = users.entry(user.to_string()).or_default();
            e.failures.retain(|t| now_ms - t < self.rules.window_ms);
            e.failures.push(now_ms);
            let out = if e.locked_until <= now_ms && e.failures.len() >= self.rules.max_failures {
                e.locked_until = now_ms + self.rules.lock_ms;
                e.failures.clear();
                Failure::Locked
            } else {
                Failure::Counted
            };
            // forget what no longer matters
            users.retain(|_, e| !e.failures.is_empty() || e.locked_until > now_ms);
            (
                out,
                serde_json::to_vec(&*users).expect("lockout state serializes"),
            )
        };
        self.persist(doc).await?;
        Ok(out)
    }

    /// Records a successful login: the failure count starts again.
    pub async fn succeeded(&self, user: &str) -> Result<()> {
        let doc = {
            let mut users = self.users.lock().expect("lockout");
            if users.remove(user).is_none() {
                return Ok(());
            }
            serde_json::to_vec(&*users).expect("lockout state serializes")
        };
        self.persist(doc).await
    }

    async fn persist(&self, doc: Vec<u8>) -> Result<()> {
        let mut b = self.store.batch();
        b.put_setting(SETTING, &doc);
        self.store.commit(b).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[tokio::test]
    async fn five_failures_in_five_minutes_lock_for_five_minutes_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_000_000_000;
        {
            let store = Store::open(dir.path(), Default::default()).unwrap();
            let l = Lockout::open(store.clone(), LockoutRules::default()).unwrap();
            // spread over more than the window: no lock
            for i in 0..5 {
                assert_eq!(
                    l.failed("bob", t0 + i * 2 * MIN).await.unwrap(),
                    Failure::Counted
                );
            }
            assert!(!l.is_locked("bob", t0 + 8 * MIN));
            // a success resets
            l.succeeded("bob").await.unwrap();
            for i in 0..4 {
                l.failed("bob", t0 + 10 * MIN + i).await.unwrap();
            }
            assert!(!l.is_locked("bob", t0 + 10 * MIN + 5));
            assert_eq!(
                l.failed("bob", t0 + 10 * MIN + 5).await.unwrap(),
                Failure::Locked
            );
            assert!(l.is_locked("bob", t0 + 11 * MIN));
            assert!(!l.is_locked("alice", t0 + 11 * MIN));
            store.shutdown().unwrap();
        }
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let l = Lockout::open(store, LockoutRules::default()).unwrap();
        assert!(l.is_locked("bob", t0 + 14 * MIN));
        assert!(!l.is_locked("bob", t0 + 15 * MIN + 6));
    }
}
