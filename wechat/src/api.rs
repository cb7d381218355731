//! WeChat API calls made on behalf of a statement (not through the
//! outbox): one call with the account's cached token, refreshed once on
//! `40001`/`42001`. QR codes (`/cgi-bin/qrcode/create`) use it.

use std::time::Duration;

use cohortdb_storage::catalog::wechat::WechatAccountDef;
use serde_json::{json, Value as Json};

use crate::client::{call, CallError};
use crate::tokens::{shared, TokenError};

/// Why a call gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No access token.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The HTTP call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// WeChat answered an error code.
    #[error("WeChat answered errcode {code}: {message}")]
    Errcode {
        /// `errcode`.
        code: i64,
        /// `errmsg`.
        message: String,
    },
}

/// `POST {api_base_url}{path}?access_token=…` with `body`; the answer when
/// its `errcode` is 0 or absent.
pub async fn post(
    account: &WechatAccountDef,
    path: &str,
    body: &Json,
    timeout: Duration,
) -> Result<Json, ApiError> {
    let mut refreshed = false;
    loop {
        let token = shared().get(account, timeout).await?;
        let v = call(
            &format!("{}{path}?access_token={token}", account.api_base_url),
            Some(body),
            timeout,
        )
        .await?;
        let code = v.get("errcode").and_then(Json::as_i64).unwrap_or(0);
        if matches!(code, 40001 | 42001) && !refreshed {
            refreshed = true;
            shared().invalidate(&account.account_id, &token).await;
            continue;
        }
        if code != 0 {
            return Err(ApiError::Errcode {
                code,
                message: v
                    .get("errmsg")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        return Ok(v);
    }
}

/// A QR code WeChat made.
#[derive(Debug, Clone, PartialEq)]
pub struct QrTicket {
    /// The ticket (`/cgi-bin/showqrcode?ticket=` shows the image).
    pub ticket: String,
    /// The URL the QR code encodes.
    pub url: String,
    /// Seconds until it expires (temporary codes).
    pub expire_seconds: Option<i64>,
}

/// Temporary codes live at most 30 days.
pub const MAX_QR_EXPIRE_SECONDS: i64 = 2_592_000;

/// `/cgi-bin/qrcode/create` for scene `scene`: a temporary code
/// (`QR_STR_SCENE`, `expire_seconds`) or a permanent one
/// (`QR_LIMIT_STR_SCENE`).
pub async fn create_qrcode(
    account: &WechatAccountDef,
    scene: &str,
    permanent: bool,
    expire_seconds: i64,
    timeout: Duration,
) -> Result<QrTicket, ApiError> {
    let body = if permanent {
        json!({
            "action_name": "QR_LIMIT_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene}},
        })
    } else {
        json!({
            "expire_seconds": expire_seconds,
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene}},
        })
    };
    let v = post(account, "/cgi-bin/qrcode/create", &body, timeout).await?;
    let text = |k: &str| v.get(k).and_then(Json::as_str).map(str::to_string);
    let ticket = text("ticket").ok_or_else(|| ApiError::Errcode {
        code: 0,
        message: format!("no ticket in the answer {v}"),
    })?;
    Ok(QrTicket {
        ticket,
        url: text("url").unwrap_or_default(),
        expire_seconds: v.get("expire_seconds").and_then(Json::as_i64),
    })
}
