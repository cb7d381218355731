//! The catalog: contact fields, event types, event properties and user tables.
//!
//! Persisted as one JSON document (`meta/catalog`), rewritten atomically on
//! every definition change; readers hold an immutable [`Catalog`] snapshot.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::types::DataType;

pub mod collector;
pub mod segments;
pub mod wechat;

/// A contact field (fixed or custom `p_*`); its id is its position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FieldDef {
    /// Column name.
    pub name: String,
    /// Column type.
    pub data_type: DataType,
    /// True for `p_*` fields added with `ALTER TABLE contacts ADD COLUMN`.
    pub custom: bool,
    /// Masked for users without `cohort_unmasked` (`ALTER TABLE contacts
    /// ALTER COLUMN … SET MASKED`).
    #[serde(default)]
    pub masked: bool,
}

/// An event type (`event_types` row).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventTypeDef {
    /// Internal id used in event keys.
    pub id: u32,
    /// The event code users write (`app_launch`).
    pub event: String,
    /// Display name (`event_alias` in `event_view`).
    pub display_name: Option<String>,
    /// Channel kind the event comes from.
    pub channel_id: Option<String>,
    /// Created at first start; cannot be deleted.
    pub preset: bool,
    /// Optional parent event code.
    pub parent_event: Option<String>,
}

/// An event property (`event_properties` row); `id` is the field id in event values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PropertyDef {
    /// Field id inside encoded event values (0 is reserved for `channel_id`).
    pub id: u32,
    /// Property / column name.
    pub property: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Value type.
    pub data_type: DataType,
    /// Created at first start.
    pub preset: bool,
}

/// A column of a user table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Column type.
    pub data_type: DataType,
    /// `NOT NULL` (or a primary key column): a NULL is refused (23502).
    #[serde(default)]
    pub not_null: bool,
}

/// A user-created table (`CREATE TABLE`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserTableDef {
    /// Internal id (key prefix of its rows).
    pub id: u32,
    /// Table name.
    pub name: String,
    /// Columns in order; a column's field id is its position.
    pub columns: Vec<ColumnDef>,
    /// Positions of the primary key columns (empty: none), indexed in
    /// [`crate::keys::cf::USER_KEYS`].
    #[serde(default)]
    pub primary_key: Vec<u32>,
}

/// A stored view (`CREATE VIEW`): its query and its result columns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ViewDef {
    /// View name.
    pub name: String,
    /// The query, as SQL text (planned each time the view is read).
    pub sql: String,
    /// Its result columns as the SQL layer encodes them (opaque here).
    pub columns: Vec<u8>,
}

/// A SCRAM-SHA-256 secret: what authenticates a password without storing it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScramSecret {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Random salt.
    pub salt: Vec<u8>,
    /// PBKDF2-HMAC-SHA-256 of the password.
    pub salted_password: Vec<u8>,
}

/// The built-in roles a user may be granted (SPEC §8), in listing order.
pub const BUILTIN_ROLES: &[&str] = &[
    "cohort_admin",
    "cohort_operator",
    "cohort_analyst",
    "cohort_unmasked",
];

/// A user (`CREATE USER`; `admin` is created at first start).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserDef {
    /// User name.
    pub name: String,
    /// Superuser (`admin`, or `CREATE USER ... SUPERUSER`).
    pub superuser: bool,
    /// Password secret; `None`: the user has no password and cannot log in
    /// when passwords are required.
    pub scram: Option<ScramSecret>,
    /// Built-in roles granted (`GRANT cohort_analyst TO …`).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The persisted catalog document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CatalogData {
    /// Document format version.
    pub format: u32,
    /// Contact fields; position = field id.
    pub contact_fields: Vec<FieldDef>,
    /// Event types.
    pub event_types: Vec<EventTypeDef>,
    /// Event properties.
    pub event_properties: Vec<PropertyDef>,
    /// User tables.
    pub tables: Vec<UserTableDef>,
    /// Stored views.
    #[serde(default)]
    pub views: Vec<ViewDef>,
    /// Next event type id.
    pub next_event_type_id: u32,
    /// Next property id.
    pub next_property_id: u32,
    /// Next user table id.
    pub next_table_id: u32,
    /// Groups (`CREATE GROUP`).
    #[serde(default)]
    pub groups: Vec<segments::GroupDef>,
    /// Tags (`CREATE TAG`).
    #[serde(default)]
    pub tags: Vec<segments::TagDef>,
    /// Group and tag ids that were dropped: never reused.
    #[serde(default)]
    pub retired_ids: Vec<String>,
    /// Next internal group / tag id.
    #[serde(default)]
    pub next_object_id: u32,
    /// Users.
    #[serde(default)]
    pub users: Vec<UserDef>,
    /// Apps of the HTTP collector.
    #[serde(default)]
    pub collector_apps: Vec<collector::CollectorAppDef>,
    /// Event-push tokens of official accounts.
    #[serde(default)]
    pub wechat_tokens: Vec<collector::WechatTokenDef>,
    /// Official accounts sends go through.
    #[serde(default)]
    pub wechat_accounts: Vec<wechat::WechatAccountDef>,
    /// QR codes of the official accounts.
    #[serde(default)]
    pub wechat_qrcodes: Vec<wechat::WechatQrCodeDef>,
    /// Customer journeys.
    #[serde(default)]
    pub journeys: Vec<wechat::JourneyDef>,
}

/// Field id of `channel_id` inside event values.
pub const EVENT_CHANNEL_FIELD: u32 = 0;

/// The fixed contact fields, in column order (after `id`).
pub const CONTACT_FIXED_FIELDS: &[(&str, DataType)] = &[
    ("name", DataType::Varchar),
    ("nickname", DataType::Varchar),
    ("gender", DataType::Varchar),
    ("birthday", DataType::Date),
    ("mobile_phone", DataType::Varchar),
    ("home_phone", DataType::Varchar),
    ("email", DataType::Varchar),
    ("id_card", DataType::Varchar),
    ("avatar", DataType::Varchar),
    ("company", DataType::Varchar),
    ("department", DataType::Varchar),
    ("title", DataType::Varchar),
    ("industry", DataType::Varchar),
    ("website", DataType::Varchar),
    ("country", DataType::Varchar),
    ("state", DataType::Varchar),
    ("city", DataType::Varchar),
    ("street", DataType::Varchar),
    ("postal_code", DataType::Varchar),
    ("comment", DataType::Varchar),
    ("created_at", DataType::Timestamptz),
    ("updated_at", DataType::Timestamptz),
    ("first_seen_at", DataType::Timestamptz),
    ("last_active_at", DataType::Timestamptz),
    ("utm_source", DataType::Varchar),
    ("utm_medium", DataType::Varchar),
    ("utm_campaign", DataType::Varchar),
    ("utm_content", DataType::Varchar),
    ("utm_term", DataType::Varchar),
];

/// Preset event types: `(code, display name, channel kind)`.
pub const PRESET_EVENT_TYPES: &[(&str, &str, &str)] = &[
    ("app_launch", "小程序启动", "wxapp"),
    ("app_show", "小程序显示", "wxapp"),
    ("exit_wxapp", "小程序隐藏", "wxapp"),
    ("browse_wxapp_page", "页面浏览", "wxapp"),
    ("leave_wxapp_page", "页面离开", "wxapp"),
    ("page_share_app_message", "页面分享", "wxapp"),
    ("page_pull_down_refresh", "页面下拉刷新", "wxapp"),
    ("page_reach_bottom", "页面上拉触底", "wxapp"),
    ("search", "搜索", "wxapp"),
    ("expose_sku_component", "商品卡曝光", "wxapp"),
    ("trigger_sku_component", "商品卡触发", "wxapp"),
    ("browse_sku_page", "商品页浏览", "wxapp"),
    ("add_to_cart", "商品加购", "wxapp"),
    ("custom_order", "购买商品", "wxapp"),
    ("subscribe", "关注公众号", "wechat"),
    ("unsubscribe", "取消关注公众号", "wechat"),
    ("scan_qrcode", "扫描二维码", "wechat"),
    ("click_menu", "点击菜单", "wechat"),
    ("message", "发送消息", "wechat"),
    ("subscribe_msg_accept", "接受订阅消息", "wechat"),
    ("subscribe_msg_reject", "拒绝订阅消息", "wechat"),
    ("wechat_mass_sent", "群发消息", "wechat"),
    ("wechat_template_sent", "模板消息", "wechat"),
    ("wechat_custom_sent", "客服消息", "wechat"),
    ("wechat_subscribe_sent", "订阅消息", "wechat"),
];

/// Preset event properties: `(name, display name, type)`.
pub const PRESET_EVENT_PROPERTIES: &[(&str, &str, DataType)] = &[
    // system properties
    ("s_page_path", "页面路径", DataType::Varchar),
    ("s_page_title", "页面标题", DataType::Varchar),
    ("s_referrer_path", "来源页面路径", DataType::Varchar),
    ("s_scene", "场景值", DataType::Varchar),
    ("s_origin_scene", "原始场景", DataType::Varchar),
    ("s_qrcode_id", "二维码ID", DataType::Varchar),
    ("s_qrcode_type", "二维码类型", DataType::Varchar),
    ("s_search_keyword", "搜索关键词", DataType::Varchar),
    ("s_sku_id", "商品ID", DataType::Varchar),
    ("s_sku_name", "商品名称", DataType::Varchar),
    ("s_sku_price", "商品价格", DataType::Double),
    ("s_sku_quantity", "商品数量", DataType::Bigint),
    ("s_order_id", "订单ID", DataType::Varchar),
    ("s_order_status", "订单状态", DataType::Varchar),
    ("s_order_amount", "订单金额", DataType::Double),
    ("s_menu_key", "菜单KEY", DataType::Varchar),
    ("s_msg_type", "消息类型", DataType::Varchar),
    ("s_msg_content", "消息内容", DataType::Varchar),
    ("s_template_id", "模板ID", DataType::Varchar),
    ("s_send_id", "发送ID", DataType::Varchar),
    ("s_duration", "停留时长(毫秒)", DataType::Bigint),
    // SDK properties
    ("os", "操作系统", DataType::Varchar),
    ("os_version", "操作系统版本", DataType::Varchar),
    ("platform", "平台", DataType::Varchar),
    ("browser", "浏览器", DataType::Varchar),
    ("browser_version", "浏览器版本", DataType::Varchar),
    ("app_version", "应用版本", DataType::Varchar),
    ("sdk_type", "SDK类型", DataType::Varchar),
    ("sdk_version", "SDK版本", DataType::Varchar),
    ("screen_width", "屏幕宽度", DataType::Bigint),
    ("screen_height", "屏幕高度", DataType::Bigint),
    ("network_type", "网络类型", DataType::Varchar),
    ("manufacturer", "设备制造商", DataType::Varchar),
    ("device_model", "设备型号", DataType::Varchar),
    ("ip", "IP", DataType::Varchar),
    ("country", "国家", DataType::Varchar),
    ("province", "省份", DataType::Varchar),
    ("city", "城市", DataType::Varchar),
    ("latitude", "纬度", DataType::Double),
    ("longitude", "经度", DataType::Double),
    ("debug_mode", "调试模式", DataType::Boolean),
    ("utm_source", "广告来源", DataType::Varchar),
    ("utm_medium", "广告媒介", DataType::Varchar),
    ("utm_campaign", "广告名称", DataType::Varchar),
    ("utm_content", "广告内容", DataType::Varchar),
    ("utm_term", "广告关键词", DataType::Varchar),
    // channel tracking
    ("chan_id", "渠道ID", DataType::Varchar),
    ("chan_wxapp_scene", "小程序场景", DataType::Varchar),
    ("guide_id", "导购ID", DataType::Varchar),
    ("room_id", "直播间ID", DataType::Varchar),
    ("weixinadinfo", "广告信息", DataType::Varchar),
    ("chan_shop_id", "门店ID", DataType::Varchar),
];

impl CatalogData {
    /// The catalog of a new database: fixed contact fields and preset events.
    pub fn initial() -> CatalogData {
        let contact_fields = CONTACT_FIXED_FIELDS
            .iter()
            .map(|(n, t)| FieldDef {
                name: n.to_string(),
                data_type: *t,
                custom: false,
                masked: false,
            })
            .collect();
        let event_types: Vec<EventTypeDef> = PRESET_EVENT_TYPES
            .iter()
            .enumerate()
            .map(|(i, (code, name, chan))| EventTypeDef {
                id: i as u32 + 1,
                event: code.to_string(),
                display_name: Some(name.to_string()),
                channel_id: Some(chan.to_string()),
                preset: true,
                parent_event: None,
            })
            .collect();
        let event_properties: Vec<PropertyDef> = PRESET_EVENT_PROPERTIES
            .iter()
            .enumerate()
            .map(|(i, (n, d, t))| PropertyDef {
                id: i as u32 + 1,
                property: n.to_string(),
                display_name: Some(d.to_string()),
                data_type: *t,
                preset: true,
            })
            .collect();
        CatalogData {
            format: 1,
            contact_fields,
            next_event_type_id: event_types.len() as u32 + 1,
            next_property_id: event_properties.len() as u32 + 1,
            event_types,
            event_properties,
            tables: vec![],
            views: vec![],
            next_table_id: 1,
            groups: vec![],
            tags: vec![],
            retired_ids: vec![],
            next_object_id: 1,
            users: vec![],
            collector_apps: vec![],
            wechat_tokens: vec![],
            wechat_accounts: vec![],
            wechat_qrcodes: vec![],
            journeys: vec![],
        }
    }
}

/// An immutable catalog snapshot with lookup indexes.
#[derive(Debug, Clone)]
pub struct Catalog {
    data: CatalogData,
    type_by_code: HashMap<String, usize>,
    type_by_id: HashMap<u32, usize>,
    prop_by_name: HashMap<String, usize>,
    field_by_name: HashMap<String, usize>,
}

impl Catalog {
    /// Builds the indexes over `data`.
    pub fn new(data: CatalogData) -> Catalog {
        let type_by_code = data
            .event_types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.event.clone(), i))
            .collect();
        let type_by_id = data
            .event_types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id, i))
            .collect();
        let prop_by_name = data
            .event_properties
            .iter()
            .enumerate()
            .map(|(i, p)| (p.property.clone(), i))
            .collect();
        let field_by_name = data
            .contact_fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        Catalog {
            data,
            type_by_code,
            type_by_id,
            prop_by_name,
            field_by_name,
        }
    }

    /// The underlying document.
    pub fn data(&self) -> &CatalogData {
        &self.data
    }

    /// The user `name`, if it exists.
    pub fn user(&self, name: &str) -> Option<&UserDef> {
        self.data.users.iter().find(|u| u.name == name)
    }

    /// Event type by code.
    pub fn event_type(&self, code: &str) -> Option<&EventTypeDef> {
        self.type_by_code
            .get(code)
            .map(|i| &self.data.event_types[*i])
    }

    /// Event type by internal id.
    pub fn event_type_by_id(&self, id: u32) -> Option<&EventTypeDef> {
        self.type_by_id.get(&id).map(|i| &self.data.event_types[*i])
    }

    /// Event property by name.
    pub fn property(&self, name: &str) -> Option<&PropertyDef> {
        self.prop_by_name
            .get(name)
            .map(|i| &self.data.event_properties[*i])
    }

    /// Contact field id (position) by name.
    pub fn contact_field(&self, name: &str) -> Option<(u32, &FieldDef)> {
        self.field_by_name
            .get(name)
            .map(|i| (*i as u32, &self.data.contact_fields[*i]))
    }

    /// User table by name.
    pub fn table(&self, name: &str) -> Option<&UserTableDef> {
        self.data.tables.iter().find(|t| t.name == name)
    }

    /// A stored view by name.
    pub fn view(&self, name: &str) -> Option<&ViewDef> {
        self.data.views.iter().find(|v| v.name == name)
    }
}
