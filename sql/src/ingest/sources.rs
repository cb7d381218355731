//! The senders the HTTP collector accepts: apps with their keys
//! (`CALL collector_add_app(app_id, app_key, channel_id)`) and the tokens
//! that official accounts sign their event pushes with (`CALL
//! collector_set_wechat_token(account_id, token)`). Keys are kept as
//! SHA-256 digests and compared in constant time.

use cohortdb_storage::catalog::collector::{CollectorAppDef, WechatTokenDef};
use cohortdb_storage::Store;

use crate::error::{Result, SqlError};
use crate::model::rows::now_ms;

/// Shortest app key accepted.
pub const MIN_APP_KEY_LEN: usize = 8;

fn key_digest(key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn check_id(what: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(SqlError::InvalidValue(format!(
            "invalid {what} '{v}': use 1 to 64 letters, digits and underscores"
        )));
    }
    Ok(())
}

/// Registers an app; 42710 when `app_id` exists.
pub async fn add_app(store: &Store, app_id: &str, app_key: &str, channel_id: &str) -> Result<()> {
    check_id("app_id", app_id)?;
    check_id("channel_id", channel_id)?;
    if app_key.chars().count() < MIN_APP_KEY_LEN {
        return Err(SqlError::InvalidValue(format!(
            "app_key is too short: use at least {MIN_APP_KEY_LEN} characters"
        )));
    }
    let def = CollectorAppDef {
        app_id: app_id.to_string(),
        key_sha256: key_digest(app_key),
        channel_id: channel_id.to_string(),
        created_at: now_ms(),
    };
    store
        .update_catalog(|data, _| {
            if data.collector_apps.iter().any(|a| a.app_id == def.app_id) {
                return Err(SqlError::DuplicateObject(format!(
                    "collector app \"{}\" already exists",
                    def.app_id
                )));
            }
            data.collector_apps.push(def);
            Ok(())
        })
        .await
}

/// Sets (or replaces) the event-push token of an official account.
pub async fn set_wechat_token(store: &Store, account_id: &str, token: &str) -> Result<()> {
    check_id("account_id", account_id)?;
    // WeChat accepts 3 to 32 letters and digits as the server token.
    if !(3..=32).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(SqlError::InvalidValue(
            "invalid token: WeChat tokens are 3 to 32 letters and digits".into(),
        ));
    }
    store
        .update_catalog(|data, _| {
            data.wechat_tokens.retain(|t| t.account_id != account_id);
            data.wechat_tokens.push(WechatTokenDef {
                account_id: account_id.to_string(),
                token: token.to_string(),
            });
            Ok::<_, SqlError>(())
        })
        .await
}

/// The app `app_id` when `app_key` is its key.
pub fn authenticate_app(store: &Store, app_id: &str, app_key: &str) -> Option<CollectorAppDef> {
    let catalog = store.catalog();
    let app = catalog
        .data()
        .collector_apps
        .iter()
        .find(|a| a.app_id == app_id)?;
    let given = key_digest(app_key);
    #[allow(deprecated)]
    let same =
        ring::constant_time::verify_slices_are_equal(given.as_bytes(), app.key_sha256.as_bytes())
            .is_ok();
    same.then(|| app.clone())
}

/// The event-push token of `account_id`, when one is set.
pub fn wechat_token(store: &Store, account_id: &str) -> Option<String> {
    store
        .catalog()
        .data()
        .wechat_tokens
        .iter()
        .find(|t| t.account_id == account_id)
        .map(|t| t.token.clone())
}

/// The app whose key is `app_key` (write-key authentication, where the
/// client sends only the key).
pub fn authenticate_key(store: &Store, app_key: &str) -> Option<CollectorAppDef> {
    let catalog = store.catalog();
    let given = key_digest(app_key);
    catalog
        .data()
        .collector_apps
        .iter()
        .find(|a| {
            #[allow(deprecated)]
            let same = ring::constant_time::verify_slices_are_equal(
                given.as_bytes(),
                a.key_sha256.as_bytes(),
            )
            .is_ok();
            same
        })
        .cloned()
}
