//! Static vocabularies of the synthetic shop: names, cities, devices, scenes,
//! campaigns and the sku catalogue.

use crate::fmt::{push_cents, push_u64};
use crate::rng::splitmix64;

pub(crate) const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁",
    "任", "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆", "汪", "范", "金", "石", "廖", "贾", "夏",
    "韦", "付", "方", "白", "邹", "孟", "熊", "秦", "邱", "江", "尹", "薛", "闫", "段", "雷", "侯",
    "龙", "史", "陶", "黎", "贺", "顾", "毛", "郝", "龚", "邵", "万", "钱", "严", "覃", "武", "戴",
    "莫", "孔", "向", "汤", "欧阳", "司马",
];

pub(crate) const GIVEN_MALE: &[&str] = &[
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "鹏", "华", "飞",
    "鑫", "波", "斌", "宇", "浩", "凯", "健", "俊", "帆", "帅", "旭", "宁", "龙", "林", "博", "文",
    "晨", "睿", "泽", "轩", "航", "峰", "诚", "毅",
];

pub(crate) const GIVEN_FEMALE: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "玲", "婷", "雪", "慧", "莹", "琳", "颖", "倩",
    "洁", "欣", "怡", "梅", "晶", "妍", "茜", "璐", "瑶", "佳", "悦", "萱", "雯", "菲", "嘉", "琪",
    "涵", "馨", "蕾", "薇", "月", "青", "桐", "宁",
];

pub(crate) const ENGLISH_NICKNAMES: &[&str] = &[
    "Amy", "Lucy", "Coco", "Sunny", "Vivian", "Cherry", "Kevin", "Jason", "Leo", "Tony", "Jack",
    "Eric", "Mia", "Luna", "Yoyo", "Momo", "Tom🐱", "Grace", "Ivy", "Alex",
];

/// WeChat-style nicknames, a few with characters that need CSV quoting.
pub(crate) const PHRASE_NICKNAMES: &[&str] = &[
    "快乐每一天",
    "岁月静好",
    "追风少年",
    "🌸花开",
    "🍀幸运草",
    "阳光明媚",
    "一只猫",
    "小太阳☀️",
    "Amy, 李",
    "阿\"强\"",
    "吃货一枚",
    "今天也要加油",
    "海边的风",
    "慢慢来",
    "草莓味的夏天",
    "木子李",
    "知足常乐",
    "A.小鱼",
    "Mr.王",
    "奶茶续命",
];

/// `(city, province, weight)`.
pub(crate) const CITIES: &[(&str, &str, u32)] = &[
    ("上海", "上海", 90),
    ("北京", "北京", 85),
    ("广州", "广东", 70),
    ("深圳", "广东", 75),
    ("杭州", "浙江", 60),
    ("成都", "四川", 60),
    ("重庆", "重庆", 50),
    ("武汉", "湖北", 45),
    ("南京", "江苏", 40),
    ("苏州", "江苏", 40),
    ("西安", "陕西", 35),
    ("天津", "天津", 30),
    ("长沙", "湖南", 30),
    ("郑州", "河南", 30),
    ("东莞", "广东", 25),
    ("青岛", "山东", 25),
    ("沈阳", "辽宁", 20),
    ("宁波", "浙江", 22),
    ("昆明", "云南", 18),
    ("合肥", "安徽", 20),
    ("福州", "福建", 16),
    ("厦门", "福建", 16),
    ("济南", "山东", 16),
    ("哈尔滨", "黑龙江", 14),
    ("大连", "辽宁", 12),
    ("佛山", "广东", 18),
    ("无锡", "江苏", 14),
    ("南昌", "江西", 12),
    ("石家庄", "河北", 12),
    ("贵阳", "贵州", 10),
    ("南宁", "广西", 10),
    ("长春", "吉林", 10),
    ("太原", "山西", 9),
    ("兰州", "甘肃", 6),
    ("海口", "海南", 5),
    ("乌鲁木齐", "新疆", 5),
    ("呼和浩特", "内蒙古", 4),
    ("拉萨", "西藏", 1),
];

pub(crate) const COUNTRY: &str = "中国";

/// Mobile number prefixes (3 digits); the remaining 8 digits are a bijection
/// of the contact id, so numbers are unique.
pub(crate) const PHONE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "166", "176", "177", "178", "180", "181", "182",
    "183", "184", "185", "186", "187", "188", "189", "191", "198", "199",
];

/// `(utm_source, utm_medium, utm_campaign, weight)`; empty = NULL.
pub(crate) const UTMS: &[(&str, &str, &str, u32)] = &[
    ("direct", "", "", 30),
    ("wechat", "social", "summer_sale", 12),
    ("wechat", "social", "new_user_gift", 10),
    ("wechat", "article", "618_promo", 8),
    ("douyin", "cpc", "618_promo", 10),
    ("douyin", "live", "summer_sale", 6),
    ("baidu", "cpc", "brand_search", 6),
    ("baidu", "organic", "", 5),
    ("xiaohongshu", "social", "summer_sale", 6),
    ("weibo", "social", "member_day", 3),
    ("kuaishou", "cpc", "new_user_gift", 4),
];

/// A phone model: `(manufacturer, model, os, os versions, width, height, weight)`.
pub(crate) struct Device {
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub os: &'static str,
    pub platform: &'static str,
    pub os_versions: &'static [&'static str],
    pub width: u32,
    pub height: u32,
    pub weight: u32,
}

const IOS: &[&str] = &["16.7.8", "17.5.1", "17.6.1", "18.1", "18.3.2"];

const fn apple(model: &'static str, width: u32, height: u32, weight: u32) -> Device {
    Device {
        manufacturer: "Apple",
        model,
        os: "iOS",
        platform: "ios",
        os_versions: IOS,
        width,
        height,
        weight,
    }
}

const fn android(
    manufacturer: &'static str,
    model: &'static str,
    os_versions: &'static [&'static str],
    width: u32,
    height: u32,
    weight: u32,
) -> Device {
    Device {
        manufacturer,
        model,
        os: "Android",
        platform: "android",
        os_versions,
        width,
        height,
        weight,
    }
}

pub(crate) const DEVICES: &[Device] = &[
    apple("iPhone 15 Pro", 393, 852, 10),
    apple("iPhone 15 Pro Max", 430, 932, 6),
    apple("iPhone 14", 390, 844, 8),
    apple("iPhone 13", 390, 844, 9),
    apple("iPhone 12", 390, 844, 5),
    apple("iPhone 11", 414, 896, 5),
    apple("iPhone XR", 414, 896, 2),
    android("HUAWEI", "Mate 60 Pro", &["12"], 412, 915, 7),
    android("HUAWEI", "nova 12", &["12"], 393, 873, 4),
    android("HONOR", "HONOR 90", &["13"], 412, 915, 4),
    android("Xiaomi", "Xiaomi 14", &["14"], 393, 873, 6),
    android("Xiaomi", "Redmi K70", &["14"], 393, 873, 5),
    android("Xiaomi", "Redmi Note 13", &["13", "14"], 393, 873, 5),
    android("OPPO", "Reno11", &["14"], 412, 915, 5),
    android("OPPO", "A2", &["13"], 360, 800, 3),
    android("vivo", "X100", &["14"], 412, 915, 5),
    android("vivo", "Y78", &["13"], 360, 800, 3),
    android("OnePlus", "OnePlus 12", &["14"], 412, 919, 2),
    android("samsung", "SM-S9210", &["14"], 384, 832, 2),
];

/// WeChat client versions (`app_version`).
pub(crate) const WECHAT_VERSIONS: &[&str] = &["8.0.47", "8.0.49", "8.0.50", "8.0.53", "8.0.56"];
/// Tracking SDK type and versions.
pub(crate) const SDK_TYPE: &str = "wxapp";
pub(crate) const SDK_VERSIONS: &[&str] = &["2.0.3", "2.1.0", "2.1.0", "2.1.0"];
/// First octets of mainland mobile/broadband address blocks.
pub(crate) const IP_FIRST_OCTETS: &[u8] = &[
    36, 39, 42, 58, 59, 60, 61, 101, 106, 110, 111, 112, 113, 114, 115, 116, 117, 119, 120, 121,
    122, 123, 124, 125, 180, 182, 183, 218, 219, 220, 221, 222, 223,
];

/// `(network_type, weight)`.
pub(crate) const NETWORKS: &[(&str, u32)] = &[
    ("wifi", 55),
    ("5g", 20),
    ("4g", 22),
    ("3g", 1),
    ("unknown", 2),
];

/// Where a session lands first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Landing {
    Index,
    Sku,
    Mine,
}

/// Mini-program entry scenes: `(scene value, weight, landing page)`.
pub(crate) const SCENES: &[(&str, u32, Landing)] = &[
    ("1001", 18, Landing::Index), // 发现栏小程序主入口
    ("1089", 14, Landing::Index), // 聊天主界面下拉
    ("1256", 8, Landing::Mine),   // 我的小程序
    ("1007", 8, Landing::Sku),    // 单人聊天会话中的小程序消息卡片
    ("1008", 8, Landing::Sku),    // 群聊会话中的小程序消息卡片
    ("1011", 3, Landing::Index),  // 扫描二维码
    ("1047", 5, Landing::Index),  // 扫描小程序码
    ("1035", 4, Landing::Index),  // 公众号自定义菜单
    ("1043", 2, Landing::Mine),   // 公众号模板消息
    ("1058", 3, Landing::Sku),    // 公众号文章
    ("1053", 6, Landing::Index),  // 搜一搜的结果页
    ("1037", 3, Landing::Index),  // 小程序打开小程序
    ("1154", 3, Landing::Sku),    // 朋友圈内打开“单页模式”
    ("1095", 3, Landing::Sku),    // 小程序广告组件
    ("1177", 3, Landing::Sku),    // 视频号直播间
];

/// The live-room scene (sessions from it carry `room_id`).
pub(crate) const LIVE_SCENE: &str = "1177";

/// Official-account follow scenes: `(s_scene, weight, carries a qrcode id)`.
pub(crate) const SUBSCRIBE_SCENES: &[(&str, u32, bool)] = &[
    ("ADD_SCENE_QR_CODE", 40, true),
    ("ADD_SCENE_SEARCH", 20, false),
    ("ADD_SCENE_PROFILE_CARD", 15, false),
    ("ADD_SCENE_WECHAT_ADVERTISEMENT", 8, false),
    ("ADD_SCENE_CHANNELS", 7, false),
    ("ADD_SCENE_OTHERS", 10, false),
];

pub(crate) const MENU_KEYS: &[&str] = &[
    "MENU_SHOP",
    "MENU_MEMBER",
    "MENU_COUPON",
    "MENU_ORDERS",
    "MENU_SERVICE",
];
pub(crate) const MSG_TYPES: &[(&str, u32)] = &[
    ("text", 70),
    ("image", 15),
    ("voice", 8),
    ("video", 3),
    ("location", 4),
];
pub(crate) const TEMPLATE_IDS: &[&str] = &[
    "tmpl_order_shipped",
    "tmpl_price_drop",
    "tmpl_coupon_expiring",
    "tmpl_event_start",
];

/// Search keywords and the category their results come from.
pub(crate) const KEYWORDS: &[(&str, Option<u8>)] = &[
    ("连衣裙", Some(0)),
    ("T恤, 短袖", Some(1)),
    ("牛仔裤", Some(2)),
    ("跑鞋", Some(3)),
    ("面霜", Some(4)),
    ("口红", Some(5)),
    ("洗发水", Some(6)),
    ("保温杯", Some(7)),
    ("耳机", Some(8)),
    ("充电宝", Some(9)),
    ("零食", Some(10)),
    ("咖啡", Some(11)),
    ("茶叶", Some(12)),
    ("四件套", Some(13)),
    ("双肩包", Some(15)),
    ("手表", Some(17)),
    ("猫粮", Some(19)),
    ("618", None),
    ("新品", None),
    ("包邮", None),
    ("礼物", None),
    ("爆款\"推荐\"", None),
];

/// Sku categories: `(name, base price in cents)`.
const CATEGORIES: &[(&str, u64)] = &[
    ("连衣裙", 19_900),
    ("T恤", 7_900),
    ("牛仔裤", 15_900),
    ("运动鞋", 39_900),
    ("面霜", 26_800),
    ("口红", 18_900),
    ("洗发水", 5_900),
    ("保温杯", 8_900),
    ("蓝牙耳机", 29_900),
    ("充电宝", 12_900),
    ("零食礼盒", 8_800),
    ("咖啡豆", 7_900),
    ("茶叶", 16_800),
    ("床品四件套", 35_900),
    ("毛巾", 3_900),
    ("双肩包", 25_900),
    ("太阳镜", 19_900),
    ("智能手表", 89_900),
    ("积木玩具", 12_900),
    ("猫粮", 13_900),
];

/// Sku variants: `(name, price percent of the category base)`.
const VARIANTS: &[(&str, u64)] = &[
    ("经典款", 100),
    ("夏季新款", 115),
    ("轻薄款", 90),
    ("加厚款", 120),
    ("限定版", 160),
    ("礼盒装", 140),
    ("大容量", 125),
    ("迷你款", 70),
    ("升级版", 130),
    ("联名款", 180),
];

const BRANDS: &[&str] = &["悦然", "轻野", "禾木", "星屿", "简至", "初見", "森屿"];

/// Skus per category; sku `i` belongs to category `i / SKUS_PER_CATEGORY`.
pub(crate) const SKUS_PER_CATEGORY: usize = 10;

/// One catalogue entry, with every string already CSV-safe.
pub(crate) struct Sku {
    pub id: String,
    pub name: String,
    pub price_cents: u64,
    pub price: String,
    pub path: String,
    pub category: u8,
}

/// The sku catalogue and other pre-rendered per-run strings.
pub(crate) struct Catalogue {
    pub skus: Vec<Sku>,
    pub chan_ids: Vec<String>,
}

impl Catalogue {
    /// The fixed catalogue (independent of the dataset seed): 200 skus.
    pub(crate) fn new() -> Catalogue {
        let mut skus = Vec::with_capacity(CATEGORIES.len() * VARIANTS.len());
        for (c, &(cat, base)) in CATEGORIES.iter().enumerate() {
            for (v, &(variant, pct)) in VARIANTS.iter().enumerate() {
                let i = c * SKUS_PER_CATEGORY + v;
                let id = (1001 + i).to_string();
                let brand = BRANDS[(c * 3 + v) % BRANDS.len()];
                let name = format!("{brand} {variant}{cat}");
                let raw = base * pct / 100;
                let price_cents = (raw / 100).max(1) * 100 - 10; // x.90 pricing
                let mut price = Vec::new();
                push_cents(&mut price, price_cents);
                let mut path = b"pages/sku/detail?id=".to_vec();
                push_u64(&mut path, 1001 + i as u64);
                skus.push(Sku {
                    id,
                    name,
                    price_cents,
                    price: String::from_utf8(price).unwrap(),
                    path: String::from_utf8(path).unwrap(),
                    category: c as u8,
                });
            }
        }
        let mut x = 0x00C0_4047_DB00_5EEDu64;
        let chan_ids = (0..24)
            .map(|_| format!("8_{:016x}", splitmix64(&mut x)))
            .collect();
        Catalogue { skus, chan_ids }
    }

    /// Number of categories.
    pub(crate) fn categories(&self) -> usize {
        CATEGORIES.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_sane() {
        let cat = Catalogue::new();
        assert_eq!(cat.skus.len(), 200);
        assert_eq!(cat.skus.len(), cat.categories() * SKUS_PER_CATEGORY);
        for s in &cat.skus {
            assert!(s.price_cents > 0);
            for text in [&s.id, &s.name, &s.price, &s.path] {
                assert!(!text.contains([',', '"', '\n', '\r']), "{text}");
            }
        }
        for &(city, prov, _) in CITIES {
            assert!(!city.contains(',') && !prov.contains(','));
        }
        for &(_, c) in KEYWORDS {
            if let Some(c) = c {
                assert!((c as usize) < cat.categories());
            }
        }
    }
}
