//! Catalog entries of WeChat official accounts (`wechat_add_account`).

use serde::{Deserialize, Serialize};

/// An official account cohortdb sends through.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WechatAccountDef {
    /// The account id: the `channel_id` of its events and fans' openids.
    pub account_id: String,
    /// WeChat app id.
    pub app_id: String,
    /// `service` or `subscription`.
    pub kind: String,
    /// Base URL of the WeChat API (`https://api.weixin.qq.com`; a fake in tests).
    pub api_base_url: String,
    /// App secret (needed to fetch access tokens; never shown by SQL).
    pub app_secret: String,
    /// When it was added (ms).
    pub created_at: i64,
}
