//! Deterministic synthetic data of a WeChat mini-program shop — contacts and
//! their behavioural events — written as PostgreSQL `COPY ... (FORMAT csv)` text.
//!
//! Used by `cohortdb serve --demo` and by the `cohortdb-bench` benchmark. The
//! same [`DatasetSpec`] (including its seed) always yields byte-identical output
//! on every platform: the generator uses its own integer-only PRNG
//! (xoshiro256++ seeded by splitmix64) and its own civil-date arithmetic.
//!
//! Every contact is generated from two independent random streams keyed by
//! `(seed, contact id)`: a *profile* stream (name, city, device, activity
//! level, …) shared by [`write_contacts_csv`] and [`write_events_csv`], and an
//! *events* stream. Events are written contact by contact, in time order within
//! each contact, so memory use is bounded by one contact's events.
//!
//! CSV conventions: comma separated, no header line, a field containing a
//! comma, quote, CR or LF is quoted with `"` and `""` escaping, an empty
//! unquoted field is NULL, timestamps are `YYYY-MM-DD HH:MM:SS.mmm+00` (UTC),
//! dates `YYYY-MM-DD`. The period starts at UTC midnight of
//! [`DatasetSpec::start_day`]; hours of day follow a Chinese shopper's day
//! (evening peak) read on the UTC clock, so the data looks natural with the
//! server time zone at UTC.

mod events;
mod fmt;
mod rng;
mod tables;

use std::io::{self, Write};

use fmt::{
    days_from_civil, push_csv_text, push_date, push_padded, push_u64, TsFormatter, DAY_MS, HOUR_MS,
};
use rng::Rng;
use tables::*;

/// Version of the generated data: bumped whenever the output for a given
/// [`DatasetSpec`] changes, so cached CSV files can be invalidated.
pub const GENERATOR_VERSION: u32 = 1;

/// Parameters of a synthetic dataset. Equal specs give byte-identical CSV.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatasetSpec {
    /// Number of contacts; their ids are `1..=contacts`.
    pub contacts: u64,
    /// Length of the event period in days (events fall in
    /// `[start_day 00:00, start_day + days 00:00)` UTC).
    pub days: u32,
    /// Average number of events per contact over the whole period. Each
    /// contact gets a long-tailed activity level; the overall mean is this
    /// value (within a few percent; see [`event_count_estimate`] for the exact
    /// total).
    pub events_per_contact: u32,
    /// First day of the period as `(year, month, day)`.
    pub start_day: (i32, u32, u32),
    /// Seed of the pseudo-random generator.
    pub seed: u64,
}

impl DatasetSpec {
    /// The `--demo` dataset: 10 000 contacts, 30 days from 2025-06-01,
    /// ~60 events per contact (~600 000 events), seed 42.
    pub fn demo() -> Self {
        DatasetSpec {
            contacts: 10_000,
            days: 30,
            events_per_contact: 60,
            start_day: (2025, 6, 1),
            seed: 42,
        }
    }

    /// Start of the period in milliseconds since the Unix epoch.
    pub fn period_start_ms(&self) -> i64 {
        let (y, m, d) = self.start_day;
        days_from_civil(y, m, d) * DAY_MS
    }

    /// End (exclusive) of the period in milliseconds since the Unix epoch.
    pub fn period_end_ms(&self) -> i64 {
        self.period_start_ms() + self.days as i64 * DAY_MS
    }
}

/// Columns of the contacts CSV, in order (a subset of the `contacts` table).
pub const CONTACT_COLUMNS: &[&str] = &[
    "id",
    "name",
    "nickname",
    "gender",
    "birthday",
    "mobile_phone",
    "email",
    "country",
    "state",
    "city",
    "created_at",
    "first_seen_at",
    "utm_source",
    "utm_medium",
    "utm_campaign",
];

/// SQL types of [`CONTACT_COLUMNS`], position by position (names valid in both
/// PostgreSQL and cohortdb).
pub const CONTACT_COLUMN_TYPES: &[&str] = &[
    "BIGINT",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "DATE",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "TIMESTAMPTZ",
    "TIMESTAMPTZ",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
];

/// Columns of the events CSV, in order. `p_amount` is a custom property
/// (`ALTER TABLE events ADD COLUMN p_amount DOUBLE`) set on `custom_order`.
pub const EVENT_COLUMNS: &[&str] = &[
    "contact_id",
    "event",
    "event_date",
    "channel_id",
    "s_page_path",
    "s_page_title",
    "s_referrer_path",
    "s_scene",
    "s_qrcode_id",
    "s_search_keyword",
    "s_sku_id",
    "s_sku_name",
    "s_sku_price",
    "s_sku_quantity",
    "s_order_id",
    "s_order_status",
    "s_menu_key",
    "s_msg_type",
    "s_template_id",
    "s_duration",
    "os",
    "os_version",
    "platform",
    "app_version",
    "sdk_type",
    "sdk_version",
    "screen_width",
    "screen_height",
    "network_type",
    "manufacturer",
    "device_model",
    "ip",
    "country",
    "province",
    "city",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "chan_id",
    "chan_wxapp_scene",
    "guide_id",
    "room_id",
    "chan_shop_id",
    "p_amount",
];

/// SQL types of [`EVENT_COLUMNS`], position by position (names valid in both
/// PostgreSQL and cohortdb).
pub const EVENT_COLUMN_TYPES: &[&str] = &[
    "BIGINT",
    "VARCHAR",
    "TIMESTAMPTZ",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "DOUBLE PRECISION",
    "BIGINT",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "BIGINT",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "BIGINT",
    "BIGINT",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "DOUBLE PRECISION",
];

/// Mini-program event codes that the generator produces.
pub const MINI_PROGRAM_EVENTS: &[&str] = &[
    "app_launch",
    "app_show",
    "exit_wxapp",
    "browse_wxapp_page",
    "leave_wxapp_page",
    "page_share_app_message",
    "page_pull_down_refresh",
    "page_reach_bottom",
    "search",
    "expose_sku_component",
    "trigger_sku_component",
    "browse_sku_page",
    "add_to_cart",
    "custom_order",
];

/// Official-account event codes that the generator produces.
pub const OFFICIAL_ACCOUNT_EVENTS: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "scan_qrcode",
    "click_menu",
    "message",
    "subscribe_msg_accept",
    "subscribe_msg_reject",
];

/// `channel_id` of mini-program events.
pub const MINI_PROGRAM_CHANNEL: &str = "wxapp_shop";
/// `channel_id` of official-account events.
pub const OFFICIAL_ACCOUNT_CHANNEL: &str = "wx_oa_main";

/// Flush the internal buffer to the caller's writer once it holds this much.
const FLUSH_AT: usize = 256 * 1024;

/// Official-account relationship of a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follow {
    /// Never follows the official account.
    None,
    /// Follows during the period (`subscribe` event), maybe unsubscribes later.
    During { unsubscribe: bool },
    /// Followed before the period, maybe unsubscribes during it.
    Before { unsubscribe: bool },
}

/// Long-tailed activity levels: `(multiplier in permille, weight)`; rescaled
/// by their mean so the average contact has exactly `events_per_contact`.
const ACTIVITY: &[(u64, u64)] = &[
    (100, 15),
    (250, 15),
    (500, 18),
    (750, 14),
    (1000, 11),
    (1300, 9),
    (1700, 7),
    (2200, 5),
    (3000, 3),
    (4500, 2),
    (7000, 1),
];

/// Per-mille chance that a contact was first seen before the period.
const PRE_EXISTING_PERMILLE: u32 = 600;

/// First-seen moment (without the random milliseconds within the hour) of a
/// contact that arrives during the period: day `span·u²` (early-biased, `u` in
/// 0..1000) at `hour`.
fn arrival_ms(spec: &DatasetSpec, u: u64, hour: u64) -> i64 {
    let span = spec.days.saturating_sub(1).max(1) as u64;
    let day = (span * u * u / 1_000_000) as i64;
    spec.period_start_ms() + day * DAY_MS + hour as i64 * HOUR_MS
}

/// Normalisation of the activity levels: a contact's event count is
/// proportional to the part of the period it is active (from `first_seen_at`),
/// divided by the mean of that part, `sum / count`, so the overall average is
/// still `events_per_contact`.
#[derive(Clone, Copy)]
struct Norm {
    sum: u128,
    count: u128,
}

impl Norm {
    fn new(spec: &DatasetSpec) -> Norm {
        let (ps, pe) = (spec.period_start_ms(), spec.period_end_ms());
        let period = (pe - ps).max(1) as u128;
        let mut arrivals = 0u128;
        for u in 0..1000 {
            for hour in 7..22 {
                let mid = arrival_ms(spec, u, hour) + HOUR_MS / 2;
                arrivals += (pe - mid).max(0) as u128;
            }
        }
        let pre = PRE_EXISTING_PERMILLE as u128;
        Norm {
            sum: pre * period * 15_000 + (1000 - pre) * arrivals,
            count: 1000 * 15_000,
        }
    }
}

/// Everything about one contact that both writers need; derived only from
/// `(spec.seed, id)`.
struct Profile {
    id: u64,
    /// 0 male, 1 female, 2 unknown.
    gender: u8,
    /// `(surname, given name characters, how many of them)`, or `None`.
    name: Option<(u16, [u16; 2], u8)>,
    /// A given-name character for nicknames (also of contacts without a name).
    nick_char: u16,
    /// `(kind, index)`: 0 "小"+char, 1 English, 2 the name, 3 phrase, 4 doubled char.
    nickname: Option<(u8, u16)>,
    birthday: Option<i64>,
    phone: bool,
    email: bool,
    city: u16,
    show_city: bool,
    first_seen_ms: i64,
    created_ms: Option<i64>,
    utm: Option<u16>,
    device: u16,
    os_version: u16,
    app_version: u16,
    sdk_version: u16,
    ip: [u8; 4],
    /// Exact number of events of this contact.
    events: u64,
    follow: Follow,
    /// Probability (‰) that a cart visit turns into an order; 0 = never buys.
    buyer_permille: u32,
}

impl Profile {
    fn new(spec: &DatasetSpec, norm: Norm, id: u64) -> Profile {
        let ps = spec.period_start_ms();
        let pe = spec.period_end_ms();
        let mut r = Rng::new(spec.seed, id, 1);

        let anonymous = r.chance(200);
        let gender = if anonymous {
            if r.chance(850) {
                2
            } else {
                r.below(2) as u8
            }
        } else {
            match r.below(100) {
                0..=53 => 1,
                54..=91 => 0,
                _ => 2,
            }
        };
        // Given-name characters are encoded as index | 0x8000 for the female list.
        let given_char = |r: &mut Rng| -> u16 {
            let female = match gender {
                0 => false,
                1 => true,
                _ => r.chance(500),
            };
            let list = if female { GIVEN_FEMALE } else { GIVEN_MALE };
            r.below(list.len() as u64) as u16 | if female { 0x8000 } else { 0 }
        };
        let given = [given_char(&mut r), given_char(&mut r)];
        let given_len = if r.chance(650) { 2 } else { 1 };
        let surname = r.below(SURNAMES.len() as u64) as u16;

        let (mut has_name, mut phone, mut email) = (false, false, false);
        if !anonymous {
            has_name = r.chance(900);
            phone = r.chance(850);
            email = r.chance(750);
            if !has_name && !phone && !email {
                phone = true;
            }
        }
        let name = has_name.then_some((surname, given, given_len));
        let nick_char = given[0];
        let nickname = if !anonymous && r.chance(850) {
            let kind = r.below(5) as u8;
            let idx = match kind {
                1 => r.below(ENGLISH_NICKNAMES.len() as u64),
                3 => r.below(PHRASE_NICKNAMES.len() as u64),
                _ => 0,
            } as u16;
            // Kind 2 (the real name) needs a name.
            Some((if kind == 2 && !has_name { 0 } else { kind }, idx))
        } else {
            None
        };
        let birthday = (!anonymous && r.chance(700)).then(|| {
            let lo = days_from_civil(1960, 1, 1);
            let hi = days_from_civil(2005, 12, 31);
            lo + r.below((hi - lo + 1) as u64) as i64
        });
        let city = r.weighted(CITIES, |c| c.2) as u16;
        let show_city = if anonymous {
            r.chance(500)
        } else {
            r.chance(880)
        };

        // First seen: 60% before the period (up to 60 days), else early-biased
        // inside it, on a day that leaves room for the contact's events.
        let pre_existing = spec.days == 0 || r.chance(PRE_EXISTING_PERMILLE);
        let first_seen_ms = if pre_existing {
            ps - 1 - r.below(60 * DAY_MS as u64) as i64
        } else {
            let u = r.below(1000);
            let hour = 7 + r.below(15); // 07:00–21:59
            arrival_ms(spec, u, hour) + r.below(HOUR_MS as u64) as i64
        };
        let created_ms = (!anonymous).then(|| {
            let delay = if r.chance(400) {
                r.range(5_000, 900_000)
            } else {
                r.below(7 * DAY_MS as u64)
            };
            let c = first_seen_ms + delay as i64;
            if spec.days > 0 {
                c.min(pe - 1).max(first_seen_ms)
            } else {
                c.min(ps - 1).max(first_seen_ms)
            }
        });
        let utm = (!anonymous).then(|| r.weighted(UTMS, |u| u.3) as u16);

        let device = r.weighted(DEVICES, |d| d.weight) as u16;
        let os_version = r.below(DEVICES[device as usize].os_versions.len() as u64) as u16;
        let app_version = r.below(WECHAT_VERSIONS.len() as u64) as u16;
        let sdk_version = r.below(SDK_VERSIONS.len() as u64) as u16;
        let ip = [
            *r.pick(IP_FIRST_OCTETS),
            r.below(256) as u8,
            r.below(256) as u8,
            r.range(1, 254) as u8,
        ];

        // Activity: a long-tailed multiplier with mean exactly 1, jitter with
        // mean 1, anonymous visitors half as active (identified ×9/8 so the
        // overall mean stays 1), times the active part of the period over its
        // mean (see `Norm`).
        let (w_sum, m_sum) = ACTIVITY.iter().fold((0u128, 0u128), |(w, m), &(mult, wt)| {
            (w + wt as u128, m + (mult * wt) as u128)
        });
        let bucket = r.weighted(ACTIVITY, |a| a.1 as u32);
        let jitter = r.range(900, 1100) as u128;
        let factor: u128 = if anonymous { 4 } else { 9 };
        let active = (pe - first_seen_ms.max(ps)).max(0) as u128;
        let num = spec.events_per_contact as u128
            * ACTIVITY[bucket].0 as u128
            * w_sum
            * jitter
            * factor
            * active
            * norm.count;
        let den = m_sum * 1000 * 8 * norm.sum;
        let dithered = r.dither(num, den);
        let events = if spec.events_per_contact == 0 || spec.days == 0 {
            0
        } else {
            dithered.max(2)
        };

        let follow = if !anonymous && r.chance(300) {
            let unsubscribe = r.chance(200);
            if pre_existing && r.chance(500) {
                Follow::Before { unsubscribe }
            } else {
                Follow::During { unsubscribe }
            }
        } else {
            Follow::None
        };
        let buyer_permille = if r.chance(550) {
            r.range(150, 600) as u32
        } else {
            0
        };

        Profile {
            id,
            gender,
            name,
            nick_char,
            nickname,
            birthday,
            phone,
            email,
            city,
            show_city,
            first_seen_ms,
            created_ms,
            utm,
            device,
            os_version,
            app_version,
            sdk_version,
            ip,
            events,
            follow,
            buyer_permille,
        }
    }

    fn given_char(code: u16) -> &'static str {
        let list = if code & 0x8000 == 0 {
            GIVEN_MALE
        } else {
            GIVEN_FEMALE
        };
        list[(code & 0x7fff) as usize]
    }

    fn push_name(&self, out: &mut Vec<u8>) {
        if let Some((s, given, len)) = self.name {
            out.extend_from_slice(SURNAMES[s as usize].as_bytes());
            for &g in &given[..len as usize] {
                out.extend_from_slice(Self::given_char(g).as_bytes());
            }
        }
    }

    fn push_nickname(&self, out: &mut Vec<u8>) {
        let Some((kind, idx)) = self.nickname else {
            return;
        };
        let first = self.nick_char;
        match kind {
            0 => {
                out.extend_from_slice("小".as_bytes());
                out.extend_from_slice(Self::given_char(first).as_bytes());
            }
            1 => push_csv_text(out, ENGLISH_NICKNAMES[idx as usize]),
            2 => self.push_name(out),
            3 => push_csv_text(out, PHRASE_NICKNAMES[idx as usize]),
            _ => {
                let c = Self::given_char(first).as_bytes();
                out.extend_from_slice(c);
                out.extend_from_slice(c);
            }
        }
    }
}

/// Appends the unique 11-digit mobile number of contact `id`: a prefix from
/// [`PHONE_PREFIXES`] and 8 digits that are a Feistel permutation of
/// `id mod 10^8`; the prefix differs for ids with equal low digits (unique up
/// to 3.6 billion contacts).
fn push_phone(out: &mut Vec<u8>, seed: u64, id: u64) {
    let n = PHONE_PREFIXES.len() as u64;
    let (high, low) = (id / 100_000_000, id % 100_000_000);
    let (mut l, mut r) = (low / 10_000, low % 10_000);
    for round in 0..4u64 {
        let mut x = seed ^ (r << 8) ^ round;
        let f = rng::splitmix64(&mut x) % 10_000;
        (l, r) = (r, (l + f) % 10_000);
    }
    let mut x = seed ^ low.wrapping_mul(0x9E37_79B9) ^ 0xC0FF_EE00;
    let prefix = (high + rng::splitmix64(&mut x) % n) % n;
    out.extend_from_slice(PHONE_PREFIXES[prefix as usize].as_bytes());
    push_padded(out, l * 10_000 + r, 8);
}

/// Writes the contacts CSV (no header line, columns [`CONTACT_COLUMNS`]) and
/// returns the number of rows, which is `spec.contacts`.
///
/// About 20% of contacts are anonymous visitors (no name, phone, email,
/// `created_at` or UTM); about 60% have an email `u<id>@example.com`; mobile
/// numbers are 11 digits and unique.
pub fn write_contacts_csv<W: Write>(spec: &DatasetSpec, w: &mut W) -> io::Result<u64> {
    let mut out = Vec::with_capacity(FLUSH_AT + 4096);
    let mut ts = TsFormatter::new();
    let norm = Norm::new(spec);
    for id in 1..=spec.contacts {
        let p = Profile::new(spec, norm, id);
        push_u64(&mut out, id);
        out.push(b',');
        p.push_name(&mut out);
        out.push(b',');
        p.push_nickname(&mut out);
        out.push(b',');
        out.extend_from_slice(["male", "female", "unknown"][p.gender as usize].as_bytes());
        out.push(b',');
        if let Some(b) = p.birthday {
            push_date(&mut out, b);
        }
        out.push(b',');
        if p.phone {
            push_phone(&mut out, spec.seed, id);
        }
        out.push(b',');
        if p.email {
            out.push(b'u');
            push_u64(&mut out, id);
            out.extend_from_slice(b"@example.com");
        }
        out.push(b',');
        if p.show_city {
            let (city, prov, _) = CITIES[p.city as usize];
            out.extend_from_slice(COUNTRY.as_bytes());
            out.push(b',');
            out.extend_from_slice(prov.as_bytes());
            out.push(b',');
            out.extend_from_slice(city.as_bytes());
        } else {
            out.extend_from_slice(b",,");
        }
        out.push(b',');
        if let Some(c) = p.created_ms {
            ts.push(&mut out, c);
        }
        out.push(b',');
        ts.push(&mut out, p.first_seen_ms);
        out.push(b',');
        match p.utm {
            Some(u) => {
                let (s, m, c, _) = UTMS[u as usize];
                out.extend_from_slice(s.as_bytes());
                out.push(b',');
                out.extend_from_slice(m.as_bytes());
                out.push(b',');
                out.extend_from_slice(c.as_bytes());
            }
            None => out.extend_from_slice(b",,"),
        }
        out.push(b'\n');
        if out.len() >= FLUSH_AT {
            w.write_all(&out)?;
            out.clear();
        }
    }
    w.write_all(&out)?;
    Ok(spec.contacts)
}

/// Writes the events CSV (no header line, columns [`EVENT_COLUMNS`]) and
/// returns the number of rows, which equals [`event_count_estimate`].
///
/// Streams contact by contact (ids ascending), each contact's events in
/// strictly increasing time: mini-program sessions (`app_launch` → `app_show`
/// → page views, sku exposure, searches, sku pages, cart, sometimes a paid
/// `custom_order` with `p_amount` → `exit_wxapp`) and official-account events
/// (`subscribe`, `scan_qrcode`, `click_menu`, `message`,
/// `subscribe_msg_accept`/`_reject`, `unsubscribe`). A contact whose
/// `first_seen_at` falls inside the period has its first event exactly then.
pub fn write_events_csv<W: Write>(spec: &DatasetSpec, w: &mut W) -> io::Result<u64> {
    let catalogue = tables::Catalogue::new();
    let mut gen = events::EventGen::new(spec, &catalogue);
    let mut rows = 0;
    let norm = Norm::new(spec);
    for id in 1..=spec.contacts {
        let p = Profile::new(spec, norm, id);
        rows += gen.contact(&p);
        if gen.out.len() >= FLUSH_AT {
            w.write_all(&gen.out)?;
            gen.out.clear();
        }
    }
    w.write_all(&gen.out)?;
    gen.out.clear();
    Ok(rows)
}

/// Number of event rows [`write_events_csv`] writes for `spec` — exact, and
/// computed from the contact profiles alone (cheap: no events are generated).
pub fn event_count_estimate(spec: &DatasetSpec) -> u64 {
    let norm = Norm::new(spec);
    (1..=spec.contacts)
        .map(|id| Profile::new(spec, norm, id).events)
        .sum()
}

#[cfg(test)]
mod tests;
