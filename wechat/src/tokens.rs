//! Access tokens of the official accounts, one cache for the whole
//! process: WeChat invalidates an account's previous token when a new one
//! is fetched, so the sender and the procedures that call the API (QR
//! codes) share it, and one fetch at a time runs per account.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cohortdb_storage::catalog::wechat::WechatAccountDef;
use serde_json::Value as Json;

use crate::client::call;

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// Worth trying again later (no answer, `-1`).
    #[error("token: {0}")]
    Transient(String),
    /// WeChat refused (wrong secret, IP not whitelisted, …).
    #[error("token errcode {0}")]
    Refused(i64),
}

type Slot = Arc<tokio::sync::Mutex<Option<(String, i64)>>>;

/// The per-account token cache.
#[derive(Default)]
pub struct Tokens {
    slots: std::sync::Mutex<HashMap<String, Slot>>,
}

/// The process's token cache.
pub fn shared() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(Tokens::default)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Tokens {
    fn slot(&self, account_id: &str) -> Slot {
        self.slots
            .lock()
            .expect("token slots")
            .entry(account_id.to_string())
            .or_default()
            .clone()
    }

    /// The cached token of `account`, fetched from `/cgi-bin/token` when
    /// missing or about to expire (a minute early). Concurrent callers of
    /// one account wait for one fetch.
    pub async fn get(
        &self,
        account: &WechatAccountDef,
        timeout: Duration,
    ) -> Result<String, TokenError> {
        let slot = self.slot(&account.account_id);
        let mut held = slot.lock().await;
        let now = now_ms();
        if let Some((t, until)) = held.as_ref() {
            if *until > now {
                return Ok(t.clone());
            }
        }
        let url = format!(
            "{}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
            account.api_base_url, account.app_id, account.app_secret
        );
        match call(&url, None, timeout).await {
            Ok(v) => match v.get("access_token").and_then(Json::as_str) {
                Some(t) => {
                    let secs = v.get("expires_in").and_then(Json::as_i64).unwrap_or(7200);
                    *held = Some((t.to_string(), now + (secs - 60).max(1) * 1000));
                    Ok(t.to_string())
                }
                None => match v.get("errcode").and_then(Json::as_i64) {
                    Some(-1) | None => Err(TokenError::Transient("no access_token".into())),
                    Some(n) => Err(TokenError::Refused(n)),
                },
            },
            Err(e) => Err(TokenError::Transient(e.to_string())),
        }
    }

    /// Forgets `token` of `account_id` (WeChat answered 40001/42001 to it);
    /// a newer token fetched meanwhile is kept.
    pub async fn invalidate(&self, account_id: &str, token: &str) {
        let slot = self.slot(account_id);
        let mut held = slot.lock().await;
        if held.as_ref().is_some_and(|(t, _)| t == token) {
            *held = None;
        }
    }

    /// Forgets every token of `account_id` (its secret or URL changed).
    pub async fn forget(&self, account_id: &str) {
        *self.slot(account_id).lock().await = None;
    }
}
