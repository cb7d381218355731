//! Catalog entries of WeChat official accounts (`wechat_add_account`) and
//! of customer journeys (`create_journey`), which send through them.

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

/// A customer journey (`create_journey`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JourneyDef {
    /// Id (`j_…`).
    pub id: String,
    /// Name from the definition.
    pub name: String,
    /// `draft`, `published` or `stopped`.
    pub status: String,
    /// Incremented when a draft is replaced.
    pub version: u32,
    /// The definition (JSON text, as validated).
    pub definition: String,
    /// Created (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
}
