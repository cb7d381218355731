//! The event stream of one contact: official-account events and mini-program
//! sessions placed on the period's timeline and rendered straight into a byte
//! buffer (no per-event allocation).

use crate::fmt::{
    push_cents, push_csv_text, push_padded, push_u64, weekday, TsFormatter, DAY_MS, HOUR_MS,
};
use crate::rng::Rng;
use crate::tables::*;
use crate::{DatasetSpec, Follow, Profile, MINI_PROGRAM_CHANNEL, OFFICIAL_ACCOUNT_CHANNEL};

/// Target mean number of events of a mini-program session.
const MEAN_SESSION_LEN: u64 = 14;

/// The 23 SDK, UTM and channel-tracking fields of an official-account event,
/// all NULL.
const EMPTY_SUFFIX: &[u8] = b",,,,,,,,,,,,,,,,,,,,,,,";

/// Relative activity per hour of day (evening peak).
const HOUR_WEIGHTS: [u32; 24] = [
    3, 2, 1, 1, 1, 1, 2, 4, 6, 6, 6, 7, 9, 8, 6, 6, 6, 7, 8, 10, 13, 14, 11, 6,
];

/// A planned piece of a contact's timeline.
#[derive(Clone, Copy)]
struct Slot {
    start: i64,
    /// Session length in events (1 for an official-account event).
    len: u32,
    oa: bool,
}

/// Mini-program pages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Index,
    Category(u8),
    Sku(u16),
    Search,
    Cart,
    Confirm,
    Result,
    Mine,
}

/// Free choices on an open page.
#[derive(Clone, Copy)]
enum Act {
    Expose,
    Trigger,
    ReachBottom,
    PullDown,
    Share,
    AddToCart,
    /// Go straight from a sku page to the order page with that sku.
    BuyNow,
    /// Go from the cart to the order page.
    Checkout,
    Nav,
}

/// Official-account event kinds.
#[derive(Clone, Copy)]
enum Oa {
    Subscribe,
    Unsubscribe,
    Other,
}

/// Values of the `s_*` columns (and `p_amount`) of one event; empty = NULL.
#[derive(Default, Clone, Copy)]
struct Props<'c> {
    page: &'c str,
    title: &'c str,
    referrer: &'c str,
    scene: &'c str,
    qrcode: u32,
    keyword: &'c str,
    sku: Option<&'c Sku>,
    qty: u32,
    /// Order sequence number of the contact (0 = none).
    order: u32,
    status: &'c str,
    menu_key: &'c str,
    msg_type: &'c str,
    template_id: &'c str,
    duration: Option<i64>,
    amount: Option<u64>,
}

fn page_info(cat: &Catalogue, page: Page) -> (&str, &'static str) {
    match page {
        Page::Index => ("pages/index/index", "首页"),
        Page::Category(_) => ("pages/category/index", "分类"),
        Page::Sku(i) => (&cat.skus[i as usize].path, "商品详情"),
        Page::Search => ("pages/search/index", "搜索"),
        Page::Cart => ("pages/cart/index", "购物车"),
        Page::Confirm => ("pages/order/confirm", "确认订单"),
        Page::Result => ("pages/order/result", "支付成功"),
        Page::Mine => ("pages/mine/index", "我的"),
    }
}

/// Appends `,` and a value known not to need quoting.
#[inline]
fn field(out: &mut Vec<u8>, s: &str) {
    out.push(b',');
    out.extend_from_slice(s.as_bytes());
}

/// Generates and renders the events of one contact after another.
pub(crate) struct EventGen<'c> {
    seed: u64,
    cat: &'c Catalogue,
    ps: i64,
    pe: i64,
    /// Rendered rows not yet handed to the caller's writer.
    pub(crate) out: Vec<u8>,
    rng: Rng,
    ts: TsFormatter,
    contact_id: u64,
    /// `"<contact_id>,"`.
    prefix: Vec<u8>,
    /// `,os,os_version,platform,app_version,sdk_type,sdk_version,screen_width,screen_height`.
    sdk_a: Vec<u8>,
    /// `,manufacturer,device_model,ip,country,province,city`.
    sdk_b: Vec<u8>,
    /// The 23 per-session fields after `s_duration`, each with its leading comma.
    suffix: Vec<u8>,
    slots: Vec<Slot>,
    lens: Vec<u32>,
    /// `(sku, quantity)`; survives across sessions until ordered.
    cart: Vec<(u16, u32)>,
    /// Time of the last event written (ms), `i64::MIN` before the first.
    prev: i64,
    /// Events of the current contact still to write.
    remaining: u64,
    orders: u32,
}

impl<'c> EventGen<'c> {
    pub(crate) fn new(spec: &DatasetSpec, cat: &'c Catalogue) -> EventGen<'c> {
        EventGen {
            seed: spec.seed,
            cat,
            ps: spec.period_start_ms(),
            pe: spec.period_end_ms(),
            out: Vec::with_capacity(crate::FLUSH_AT + 64 * 1024),
            rng: Rng::new(spec.seed, 0, 2),
            ts: TsFormatter::new(),
            contact_id: 0,
            prefix: Vec::new(),
            sdk_a: Vec::new(),
            sdk_b: Vec::new(),
            suffix: Vec::new(),
            slots: Vec::new(),
            lens: Vec::new(),
            cart: Vec::new(),
            prev: i64::MIN,
            remaining: 0,
            orders: 0,
        }
    }

    /// Appends all events of contact `p` to `self.out`; returns how many.
    pub(crate) fn contact(&mut self, p: &Profile) -> u64 {
        if p.events == 0 {
            return 0;
        }
        self.rng = Rng::new(self.seed, p.id, 2);
        self.contact_id = p.id;
        self.prefix.clear();
        push_u64(&mut self.prefix, p.id);
        self.prefix.push(b',');
        self.render_device(p);
        self.cart.clear();
        self.orders = 0;
        self.prev = i64::MIN;
        self.remaining = p.events;

        // Official-account events take a small share of the contact's budget;
        // at least two events are left for one mini-program session.
        let cap = p.events - 2;
        let (mut sub, mut unsub) = match p.follow {
            Follow::None => (0u64, 0u64),
            Follow::During { unsubscribe } => (1, unsubscribe as u64),
            Follow::Before { unsubscribe } => (0, unsubscribe as u64),
        };
        let extras = if p.follow == Follow::None {
            0
        } else {
            self.rng.dither(p.events as u128 * 5, 100)
        };
        if sub + unsub > cap {
            unsub = 0;
        }
        if sub > cap {
            sub = 0;
        }
        let extras = extras.min(cap - sub - unsub);
        let oa = sub + unsub + extras;
        let mp = p.events - oa;

        // Mini-program sessions: lengths sum exactly to `mp`, each at least 2.
        let sessions = ((mp + MEAN_SESSION_LEN / 2) / MEAN_SESSION_LEN).clamp(1, mp / 2);
        self.split_lengths(mp, sessions);

        // Place everything on the timeline. A contact first seen inside the
        // period starts with a session exactly at `first_seen_at`.
        let in_period = p.first_seen_ms >= self.ps;
        let lo = if in_period {
            p.first_seen_ms + 1
        } else {
            self.ps
        };
        let hi = (self.pe - 10 * 60_000).max(lo + 1);
        self.slots.clear();
        for i in 0..sessions as usize {
            let start = if i == 0 && in_period {
                p.first_seen_ms
            } else {
                self.sample_time(lo, hi)
            };
            let len = self.lens[i];
            self.slots.push(Slot {
                start,
                len,
                oa: false,
            });
        }
        for _ in 0..oa {
            let start = self.sample_time(lo, hi);
            self.slots.push(Slot {
                start,
                len: 1,
                oa: true,
            });
        }
        self.slots.sort_unstable_by_key(|s| (s.start, s.oa, s.len));

        let (mut oa_seen, mut mp_seen) = (0u64, 0u64);
        for i in 0..self.slots.len() {
            let slot = self.slots[i];
            let start = if self.prev == i64::MIN {
                slot.start
            } else {
                slot.start
                    .max(self.prev + 20_000 + self.rng.below(300_000) as i64)
            };
            if slot.oa {
                let kind = if oa_seen == 0 && sub == 1 {
                    Oa::Subscribe
                } else if oa_seen + 1 == oa && unsub == 1 {
                    Oa::Unsubscribe
                } else {
                    Oa::Other
                };
                self.oa_event(kind, start);
                oa_seen += 1;
            } else {
                self.session(p, slot.len, start, mp_seen == 0);
                mp_seen += 1;
            }
        }
        debug_assert_eq!(self.remaining, 0);
        p.events
    }

    /// Splits `total` events into `n` session lengths (each ≥ 2) into `self.lens`.
    fn split_lengths(&mut self, total: u64, n: u64) {
        self.lens.clear();
        let mut sum = 0u64;
        for _ in 0..n {
            let mut w = 20 + self.rng.below(1000);
            if self.rng.chance(150) {
                w += self.rng.below(3000); // an occasional long browse
            }
            self.lens.push(w as u32);
            sum += w;
        }
        let extra = total - 2 * n;
        let (mut cum, mut prev_b) = (0u64, 0u64);
        for l in self.lens.iter_mut() {
            cum += *l as u64;
            let b = (extra as u128 * cum as u128 / sum as u128) as u64;
            *l = (2 + b - prev_b) as u32;
            prev_b = b;
        }
    }

    /// A plausible moment in `[lo, hi)`: a random day (weekends a little
    /// busier) at an hour drawn from [`HOUR_WEIGHTS`].
    fn sample_time(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo < hi);
        let first_day = (lo - self.ps).div_euclid(DAY_MS).max(0);
        let last_day = (hi - 1 - self.ps).div_euclid(DAY_MS);
        if last_day >= first_day {
            for _ in 0..8 {
                let day = first_day + self.rng.below((last_day - first_day + 1) as u64) as i64;
                let wd = weekday(self.ps.div_euclid(DAY_MS) + day);
                if wd != 0 && wd != 6 && self.rng.chance(150) {
                    continue;
                }
                let hour = self.rng.weighted(&HOUR_WEIGHTS, |&w| w) as i64;
                let t =
                    self.ps + day * DAY_MS + hour * HOUR_MS + self.rng.below(HOUR_MS as u64) as i64;
                if t >= lo && t < hi {
                    return t;
                }
            }
        }
        lo + self.rng.below((hi - lo) as u64) as i64
    }

    /// Timestamp of the next event: at least `proposed`, strictly after the
    /// previous event, and early enough that the contact's remaining events
    /// still fit before the end of the period.
    #[inline]
    fn next_ts(&mut self, proposed: i64) -> i64 {
        debug_assert!(self.remaining > 0);
        let cap = self.pe - self.remaining as i64;
        let t = proposed.max(self.prev.saturating_add(1)).min(cap);
        self.prev = t;
        self.remaining -= 1;
        t
    }

    /// Timestamp of the next event, a gap of `lo..=hi` ms (skewed short) after
    /// the previous one.
    #[inline]
    fn tick(&mut self, lo: u64, hi: u64) -> i64 {
        let span = hi - lo + 1;
        let gap = lo + self.rng.below(span).min(self.rng.below(span));
        self.next_ts(self.prev + gap as i64)
    }

    fn render_device(&mut self, p: &Profile) {
        let d = &DEVICES[p.device as usize];
        let a = &mut self.sdk_a;
        a.clear();
        field(a, d.os);
        field(a, d.os_versions[p.os_version as usize]);
        field(a, d.platform);
        field(a, WECHAT_VERSIONS[p.app_version as usize]);
        field(a, SDK_TYPE);
        field(a, SDK_VERSIONS[p.sdk_version as usize]);
        a.push(b',');
        push_u64(a, d.width as u64);
        a.push(b',');
        push_u64(a, d.height as u64);

        let b = &mut self.sdk_b;
        b.clear();
        field(b, d.manufacturer);
        field(b, d.model);
        b.push(b',');
        for (i, octet) in p.ip.iter().enumerate() {
            if i > 0 {
                b.push(b'.');
            }
            push_u64(b, *octet as u64);
        }
        let (city, province, _) = CITIES[p.city as usize];
        field(b, COUNTRY);
        field(b, province);
        field(b, city);
    }

    /// Renders the per-session columns: device, network, UTM and channel tracking.
    fn render_suffix(&mut self, p: &Profile, scene: &str, first: bool) {
        let s = &mut self.suffix;
        s.clear();
        s.extend_from_slice(&self.sdk_a);
        let net = self.rng.weighted(NETWORKS, |n| n.1);
        field(s, NETWORKS[net].0);
        s.extend_from_slice(&self.sdk_b);
        let utm = if first && p.utm.is_some() {
            p.utm
        } else if self.rng.chance(200) {
            Some(self.rng.weighted(UTMS, |u| u.3) as u16)
        } else {
            None
        };
        match utm {
            Some(u) => {
                let (source, medium, campaign, _) = UTMS[u as usize];
                field(s, source);
                field(s, medium);
                field(s, campaign);
            }
            None => s.extend_from_slice(b",,,"),
        }
        if self.rng.chance(300) {
            let chan = self.rng.pick(&self.cat.chan_ids);
            field(s, chan);
            field(s, scene);
        } else {
            s.extend_from_slice(b",,");
        }
        s.push(b',');
        if self.rng.chance(60) {
            s.extend_from_slice(b"100014");
            push_padded(s, self.rng.below(1000), 3);
        }
        s.push(b',');
        if scene == LIVE_SCENE {
            s.push(b'2');
            push_padded(s, self.rng.below(100), 2);
        }
        s.push(b',');
        if self.rng.chance(100) {
            s.extend_from_slice(b"shop_");
            push_padded(s, 1 + self.rng.below(40), 3);
        }
    }

    /// Appends one event row.
    fn emit(&mut self, ts: i64, code: &str, p: &Props, mini_program: bool) {
        let out = &mut self.out;
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(code.as_bytes());
        out.push(b',');
        self.ts.push(out, ts);
        field(
            out,
            if mini_program {
                MINI_PROGRAM_CHANNEL
            } else {
                OFFICIAL_ACCOUNT_CHANNEL
            },
        );
        field(out, p.page);
        field(out, p.title);
        field(out, p.referrer);
        field(out, p.scene);
        out.push(b',');
        if p.qrcode > 0 {
            out.extend_from_slice(b"qr_");
            push_u64(out, p.qrcode as u64);
        }
        out.push(b',');
        push_csv_text(out, p.keyword);
        match p.sku {
            Some(s) => {
                field(out, &s.id);
                field(out, &s.name);
                field(out, &s.price);
            }
            None => out.extend_from_slice(b",,,"),
        }
        out.push(b',');
        if p.qty > 0 {
            push_u64(out, p.qty as u64);
        }
        out.push(b',');
        if p.order > 0 {
            out.extend_from_slice(b"SO");
            push_u64(out, self.contact_id);
            out.push(b'-');
            push_u64(out, p.order as u64);
        }
        field(out, p.status);
        field(out, p.menu_key);
        field(out, p.msg_type);
        field(out, p.template_id);
        out.push(b',');
        if let Some(d) = p.duration {
            push_u64(out, d.max(0) as u64);
        }
        out.extend_from_slice(if mini_program {
            &self.suffix
        } else {
            EMPTY_SUFFIX
        });
        out.push(b',');
        if let Some(a) = p.amount {
            push_cents(out, a);
        }
        out.push(b'\n');
    }

    fn oa_event(&mut self, kind: Oa, start: i64) {
        let t = self.next_ts(start);
        let mut pr = Props::default();
        let code = match kind {
            Oa::Subscribe => {
                let (scene, _, qr) = SUBSCRIBE_SCENES[self.rng.weighted(SUBSCRIBE_SCENES, |s| s.1)];
                pr.scene = scene;
                if qr {
                    pr.qrcode = 1001 + self.rng.below(30) as u32;
                }
                "subscribe"
            }
            Oa::Unsubscribe => "unsubscribe",
            Oa::Other => match self.rng.below(100) {
                0..=34 => {
                    pr.menu_key = *self.rng.pick(MENU_KEYS);
                    "click_menu"
                }
                35..=54 => {
                    pr.msg_type = MSG_TYPES[self.rng.weighted(MSG_TYPES, |m| m.1)].0;
                    "message"
                }
                55..=69 => {
                    pr.qrcode = 1001 + self.rng.below(30) as u32;
                    "scan_qrcode"
                }
                70..=89 => {
                    pr.template_id = *self.rng.pick(TEMPLATE_IDS);
                    "subscribe_msg_accept"
                }
                _ => {
                    pr.template_id = *self.rng.pick(TEMPLATE_IDS);
                    "subscribe_msg_reject"
                }
            },
        };
        self.emit(t, code, &pr, false);
    }

    /// A sku drawn by popularity (a few best sellers, a long tail).
    fn popular_sku(&mut self) -> u16 {
        let n = self.cat.skus.len() as u64;
        let rank = self.rng.below(n) * self.rng.below(n) / n;
        ((rank * 37 + 11) % n) as u16
    }

    fn category_sku(&mut self, c: u8) -> u16 {
        (c as usize * SKUS_PER_CATEGORY + self.rng.below(SKUS_PER_CATEGORY as u64) as usize) as u16
    }

    /// Props of an event on `page` (path and title).
    fn on_page(&self, page: Page) -> Props<'c> {
        let cat: &'c Catalogue = self.cat;
        let (path, title) = page_info(cat, page);
        Props {
            page: path,
            title,
            ..Props::default()
        }
    }

    fn sku(&self, i: u16) -> &'c Sku {
        let cat: &'c Catalogue = self.cat;
        &cat.skus[i as usize]
    }

    fn browse(&mut self, t: i64, to: Page, from: Option<Page>) {
        let mut pr = self.on_page(to);
        if let Some(from) = from {
            pr.referrer = page_info(self.cat, from).0;
        }
        self.emit(t, "browse_wxapp_page", &pr, true);
    }

    fn leave(&mut self, t: i64, page: Page, since: i64) {
        let mut pr = self.on_page(page);
        pr.duration = Some(t - since);
        self.emit(t, "leave_wxapp_page", &pr, true);
    }

    /// `leave_wxapp_page` of `from` and `browse_wxapp_page` of `to`; returns
    /// the time the new page was opened.
    fn navigate(&mut self, from: Page, to: Page, since: i64) -> i64 {
        let t = self.tick(1_000, 40_000);
        self.leave(t, from, since);
        let t = self.tick(50, 600);
        self.browse(t, to, Some(from));
        t
    }

    /// Picks the next free action on `page` given `spare` events to use
    /// before the session must close.
    fn choose(&mut self, page: Page, spare: u32, buyer: u32, added: bool) -> Act {
        let nav = spare >= 2;
        let deep = spare >= 3;
        let cart = !self.cart.is_empty();
        let mut opts: [(Act, u32); 8] = [(Act::ReachBottom, 0); 8];
        let mut n = 0;
        let mut add = |act: Act, w: u32, ok: bool| {
            if ok && w > 0 {
                opts[n] = (act, w);
                n += 1;
            }
        };
        match page {
            Page::Index => {
                add(Act::Expose, 40, true);
                add(Act::Trigger, 12, deep);
                add(Act::ReachBottom, 5, true);
                add(Act::PullDown, 3, true);
                add(Act::Share, 1, true);
                add(Act::Nav, 12, nav);
            }
            Page::Category(_) => {
                add(Act::Expose, 45, true);
                add(Act::Trigger, 14, deep);
                add(Act::ReachBottom, 6, true);
                add(Act::PullDown, 1, true);
                add(Act::Share, 1, true);
                add(Act::Nav, 10, nav);
            }
            Page::Search => {
                add(Act::Expose, 45, true);
                add(Act::Trigger, 18, deep);
                add(Act::ReachBottom, 4, true);
                add(Act::Nav, 8, nav);
            }
            Page::Sku(_) => {
                add(Act::AddToCart, if buyer > 0 { 22 } else { 6 }, !added);
                add(Act::Expose, 15, true);
                add(Act::Trigger, 8, deep);
                add(Act::Share, 3, true);
                add(Act::ReachBottom, 6, true);
                add(Act::Nav, 22, nav);
                add(Act::BuyNow, buyer / 40, deep);
            }
            Page::Cart => {
                add(Act::Checkout, buyer / 8, deep && cart);
                add(Act::Expose, 25, true);
                add(Act::Trigger, 8, deep);
                add(Act::PullDown, 2, true);
                add(Act::ReachBottom, 3, true);
                add(Act::Nav, 20, nav);
            }
            Page::Confirm => {
                add(Act::Nav, 80, nav);
                add(Act::ReachBottom, 20, true);
            }
            Page::Result => {
                add(Act::Expose, 40, true);
                add(Act::Trigger, 10, deep);
                add(Act::ReachBottom, 5, true);
                add(Act::Nav, 30, nav);
            }
            Page::Mine => {
                add(Act::PullDown, 10, true);
                add(Act::Expose, 10, true);
                add(Act::ReachBottom, 5, true);
                add(Act::Share, 1, true);
                add(Act::Nav, 30, nav);
            }
        }
        let i = self.rng.weighted(&opts[..n], |o| o.1);
        opts[i].0
    }

    /// Where a plain navigation from `page` goes.
    fn nav_target(&mut self, page: Page) -> Page {
        let cart = !self.cart.is_empty();
        let cart_w = |with: u32, without: u32| if cart { with } else { without };
        let options: &[(u8, u32)] = match page {
            // (target code, weight): 0 Index, 1 Category, 2 Search, 3 Cart, 4 Mine, 5 Result, 6 same category
            Page::Index => &[(1, 40), (2, 25), (4, 10), (3, cart_w(25, 3))],
            Page::Category(_) => &[(0, 30), (1, 30), (2, 20), (3, cart_w(20, 2))],
            Page::Search => &[(2, 30), (0, 40), (1, 15), (3, cart_w(20, 2))],
            Page::Sku(_) => &[(0, 30), (6, 30), (3, cart_w(30, 3)), (2, 10)],
            Page::Cart => &[(0, 50), (1, 30), (4, 20)],
            Page::Confirm => &[(5, 1)],
            Page::Result => &[(0, 50), (4, 50)],
            Page::Mine => &[(0, 40), (3, cart_w(30, 5)), (1, 30)],
        };
        let code = options[self.rng.weighted(options, |o| o.1)].0;
        match code {
            0 => Page::Index,
            1 => Page::Category(self.rng.below(self.cat.categories() as u64) as u8),
            2 => Page::Search,
            3 => Page::Cart,
            4 => Page::Mine,
            5 => Page::Result,
            _ => match page {
                Page::Sku(s) => Page::Category(self.cat.skus[s as usize].category),
                _ => Page::Index,
            },
        }
    }

    /// One mini-program session of exactly `len` (≥ 2) events starting at `start`.
    fn session(&mut self, p: &Profile, len: u32, start: i64, first: bool) {
        let (scene, _, landing) = SCENES[self.rng.weighted(SCENES, |s| s.1)];
        self.render_suffix(p, scene, first);
        let at_scene = Props {
            scene,
            ..Props::default()
        };

        let mut left = len;
        let session_start = self.next_ts(start);
        // app_launch only on a cold start; lengths 3 and 4 fix the choice so
        // that the budget works out (2: show+exit, 3: launch+show+exit,
        // 4: show+browse+leave+exit).
        let cold = len == 3 || (len >= 5 && self.rng.chance(600));
        if cold {
            self.emit(session_start, "app_launch", &at_scene, true);
            left -= 1;
            let t = self.tick(150, 1_200);
            self.emit(t, "app_show", &at_scene, true);
        } else {
            self.emit(session_start, "app_show", &at_scene, true);
        }
        left -= 1;

        let mut page: Option<Page> = None;
        let mut page_t = session_start;
        // The page's mandatory first action (sku view, search, order) is done.
        let mut done = false;
        let mut added = false;
        let mut force: Option<Page> = None;
        let mut last_exposed: Option<u16> = None;
        let mut search_cat: Option<u8> = None;
        let mut buy_now: Option<(u16, u32)> = None;
        loop {
            let closing = if page.is_some() { 2 } else { 1 };
            if left <= closing {
                break;
            }
            let spare = left - closing;
            let Some(cur) = page else {
                let target = match landing {
                    Landing::Index => Page::Index,
                    Landing::Mine => Page::Mine,
                    Landing::Sku => Page::Sku(self.popular_sku()),
                };
                let t = self.tick(100, 1_500);
                self.browse(t, target, None);
                page = Some(target);
                page_t = t;
                done = false;
                added = false;
                left -= 1;
                continue;
            };
            if let Some(to) = force.take() {
                page_t = self.navigate(cur, to, page_t);
                page = Some(to);
                done = false;
                added = false;
                left -= 2;
                continue;
            }
            if !done {
                done = true;
                match cur {
                    Page::Sku(s) => {
                        let t = self.tick(100, 600);
                        let mut pr = self.on_page(cur);
                        pr.sku = Some(self.sku(s));
                        self.emit(t, "browse_sku_page", &pr, true);
                        left -= 1;
                        continue;
                    }
                    Page::Search => {
                        let (kw, c) = *self.rng.pick(KEYWORDS);
                        search_cat = c;
                        let t = self.tick(2_000, 12_000);
                        let mut pr = self.on_page(cur);
                        pr.keyword = kw;
                        self.emit(t, "search", &pr, true);
                        left -= 1;
                        continue;
                    }
                    Page::Confirm => {
                        self.order(cur, buy_now.take());
                        left -= 1;
                        continue;
                    }
                    _ => {}
                }
            }
            // Navigation (leave + browse) requested by the action, if any.
            let mut nav_to: Option<Page> = None;
            match self.choose(cur, spare, p.buyer_permille, added) {
                Act::Expose => {
                    let s = match cur {
                        Page::Category(c) => self.category_sku(c),
                        Page::Search => match search_cat {
                            Some(c) => self.category_sku(c),
                            None => self.popular_sku(),
                        },
                        Page::Sku(s) if self.rng.chance(700) => {
                            self.category_sku(self.cat.skus[s as usize].category)
                        }
                        _ => self.popular_sku(),
                    };
                    last_exposed = Some(s);
                    let t = self.tick(200, 4_000);
                    let mut pr = self.on_page(cur);
                    pr.sku = Some(self.sku(s));
                    self.emit(t, "expose_sku_component", &pr, true);
                    left -= 1;
                }
                Act::Trigger => {
                    let s = match last_exposed {
                        Some(s) => s,
                        None => self.popular_sku(),
                    };
                    let t = self.tick(500, 8_000);
                    let mut pr = self.on_page(cur);
                    pr.sku = Some(self.sku(s));
                    self.emit(t, "trigger_sku_component", &pr, true);
                    force = Some(Page::Sku(s));
                    left -= 1;
                }
                Act::ReachBottom => {
                    let t = self.tick(2_000, 20_000);
                    let pr = self.on_page(cur);
                    self.emit(t, "page_reach_bottom", &pr, true);
                    left -= 1;
                }
                Act::PullDown => {
                    let t = self.tick(1_000, 10_000);
                    let pr = self.on_page(cur);
                    self.emit(t, "page_pull_down_refresh", &pr, true);
                    left -= 1;
                }
                Act::Share => {
                    let t = self.tick(3_000, 30_000);
                    let mut pr = self.on_page(cur);
                    if let Page::Sku(s) = cur {
                        pr.sku = Some(self.sku(s));
                    }
                    self.emit(t, "page_share_app_message", &pr, true);
                    left -= 1;
                }
                Act::AddToCart => {
                    let s = match cur {
                        Page::Sku(s) => s,
                        _ => self.popular_sku(),
                    };
                    let qty = match self.rng.below(100) {
                        0..=79 => 1,
                        80..=94 => 2,
                        _ => 3,
                    };
                    if let Some(item) = self.cart.iter_mut().find(|item| item.0 == s) {
                        item.1 += qty;
                    } else if self.cart.len() < 10 {
                        self.cart.push((s, qty));
                    }
                    let t = self.tick(3_000, 60_000);
                    let mut pr = self.on_page(cur);
                    pr.sku = Some(self.sku(s));
                    pr.qty = qty;
                    self.emit(t, "add_to_cart", &pr, true);
                    added = true;
                    left -= 1;
                }
                Act::BuyNow => {
                    if let Page::Sku(s) = cur {
                        buy_now = Some((s, if self.rng.chance(850) { 1 } else { 2 }));
                    }
                    nav_to = Some(Page::Confirm);
                }
                Act::Checkout => {
                    buy_now = None;
                    nav_to = Some(Page::Confirm);
                }
                Act::Nav => nav_to = Some(self.nav_target(cur)),
            }
            if let Some(to) = nav_to {
                page_t = self.navigate(cur, to, page_t);
                page = Some(to);
                done = false;
                added = false;
                left -= 2;
            }
        }
        if let Some(cur) = page {
            let t = self.tick(1_000, 40_000);
            self.leave(t, cur, page_t);
        }
        let t = self.tick(500, 20_000);
        let mut pr = at_scene;
        pr.duration = Some(t - session_start);
        self.emit(t, "exit_wxapp", &pr, true);
    }

    /// The `custom_order` on the order page: the "buy now" item, or else the
    /// whole cart (which is then emptied). Carries the first item's sku, the
    /// total quantity, `s_order_id`, `s_order_status = 'paid'` and `p_amount`.
    fn order(&mut self, page: Page, buy_now: Option<(u16, u32)>) {
        let (first, qty, amount) = match buy_now {
            Some((s, q)) => (s, q, self.sku(s).price_cents * q as u64),
            None if !self.cart.is_empty() => {
                let qty = self.cart.iter().map(|i| i.1).sum();
                let amount = self
                    .cart
                    .iter()
                    .map(|i| self.cat.skus[i.0 as usize].price_cents * i.1 as u64)
                    .sum();
                let first = self.cart[0].0;
                self.cart.clear();
                (first, qty, amount)
            }
            None => {
                // Unreachable by construction (checkout needs a cart); keep
                // the event budget anyway.
                let t = self.tick(2_000, 20_000);
                let pr = self.on_page(page);
                self.emit(t, "page_reach_bottom", &pr, true);
                return;
            }
        };
        self.orders += 1;
        let t = self.tick(5_000, 90_000);
        let mut pr = self.on_page(page);
        pr.sku = Some(self.sku(first));
        pr.qty = qty;
        pr.order = self.orders;
        pr.status = "paid";
        pr.amount = Some(amount);
        self.emit(t, "custom_order", &pr, true);
    }
}
