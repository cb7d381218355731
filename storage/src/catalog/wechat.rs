//! Catalog entries of WeChat official accounts (`wechat_add_account`),
//! their QR codes (`wechat_create_qrcode`) and customer journeys
//! (`create_journey`), which send through them.

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

/// A QR code of an official account (`wechat_create_qrcode`): its scene
/// id comes back as `s_qrcode_id` on the `subscribe`/`scan_qrcode` events
/// of fans who scan it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WechatQrCodeDef {
    /// The account (channel) id.
    pub account_id: String,
    /// The scene id (`scene_str`).
    pub qr_id: String,
    /// `temporary` or `permanent`.
    pub kind: String,
    /// WeChat's ticket (shows the image).
    pub ticket: String,
    /// The URL the code encodes.
    pub url: String,
    /// When a temporary code expires (ms).
    pub expire_at: Option<i64>,
    /// What a scan does: `{"reply": {"msg_type", "content"}, "add_to_group": group}`.
    pub options: serde_json::Value,
    /// Created (ms).
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
