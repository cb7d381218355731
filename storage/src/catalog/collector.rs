//! Catalog entries of the HTTP collector: the apps that may send events
//! (`collector_add_app`) and the tokens official accounts sign their event
//! pushes with (`collector_set_wechat_token`).

use serde::{Deserialize, Serialize};

/// An app allowed to send events (`collector_apps` row; the key itself is
/// never stored, only its SHA-256).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectorAppDef {
    /// The app id the SDK sends as `appid` (and the write key's user part).
    pub app_id: String,
    /// Hex SHA-256 of the app key.
    pub key_sha256: String,
    /// The channel its events and identities belong to.
    pub channel_id: String,
    /// When it was added (ms since the epoch).
    pub created_at: i64,
}

/// The token of an official account's event push (the account's server
/// configuration in the WeChat console).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WechatTokenDef {
    /// The account id (`channel_id` of its events).
    pub account_id: String,
    /// The token WeChat signs pushes with (it must be known to verify them).
    pub token: String,
}
