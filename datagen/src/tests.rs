//! Tests of the public writers: determinism, counts, CSV shape, event mix,
//! timeline invariants.

use super::*;
use std::collections::{HashMap, HashSet};

fn small() -> DatasetSpec {
    DatasetSpec {
        contacts: 300,
        days: 10,
        events_per_contact: 40,
        start_day: (2025, 6, 1),
        seed: 7,
    }
}

fn contacts_bytes(spec: &DatasetSpec) -> (u64, Vec<u8>) {
    let mut v = Vec::new();
    let n = write_contacts_csv(spec, &mut v).unwrap();
    (n, v)
}

fn events_bytes(spec: &DatasetSpec) -> (u64, Vec<u8>) {
    let mut v = Vec::new();
    let n = write_events_csv(spec, &mut v).unwrap();
    (n, v)
}

/// Parses `COPY ... (FORMAT csv)` text: `None` is NULL (empty unquoted).
fn parse_csv(data: &[u8]) -> Vec<Vec<Option<String>>> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut cur = Vec::new();
    let (mut in_quotes, mut quoted, mut quote_pending) = (false, false, false);
    let end_field = |cur: &mut Vec<u8>, quoted: &mut bool, fields: &mut Vec<Option<String>>| {
        let v = if *quoted || !cur.is_empty() {
            Some(String::from_utf8(std::mem::take(cur)).unwrap())
        } else {
            None
        };
        *quoted = false;
        fields.push(v);
    };
    for &b in data {
        if in_quotes {
            if quote_pending {
                quote_pending = false;
                if b == b'"' {
                    cur.push(b'"');
                    continue;
                }
                in_quotes = false;
            } else {
                if b == b'"' {
                    quote_pending = true;
                } else {
                    cur.push(b);
                }
                continue;
            }
        }
        match b {
            b'"' => {
                assert!(cur.is_empty(), "quote inside an unquoted field");
                in_quotes = true;
                quoted = true;
            }
            b',' => end_field(&mut cur, &mut quoted, &mut fields),
            b'\n' => {
                end_field(&mut cur, &mut quoted, &mut fields);
                records.push(std::mem::take(&mut fields));
            }
            _ => cur.push(b),
        }
    }
    assert!(
        !in_quotes && cur.is_empty() && fields.is_empty(),
        "data must end with a complete record"
    );
    records
}

/// Milliseconds since the epoch of `YYYY-MM-DD HH:MM:SS.mmm+00`.
fn parse_ts(s: &str) -> i64 {
    let b = s.as_bytes();
    assert_eq!(b.len(), 26, "{s}");
    assert_eq!(
        (b[4], b[7], b[10], b[13], b[16], b[19]),
        (b'-', b'-', b' ', b':', b':', b'.'),
        "{s}"
    );
    assert_eq!(&s[23..], "+00", "{s}");
    let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let day = fmt::days_from_civil(num(0..4) as i32, num(5..7) as u32, num(8..10) as u32);
    day * DAY_MS + num(11..13) * HOUR_MS + num(14..16) * 60_000 + num(17..19) * 1000 + num(20..23)
}

fn col(name: &str) -> usize {
    EVENT_COLUMNS.iter().position(|c| *c == name).unwrap()
}

fn ccol(name: &str) -> usize {
    CONTACT_COLUMNS.iter().position(|c| *c == name).unwrap()
}

#[test]
fn column_lists_are_consistent() {
    assert_eq!(CONTACT_COLUMNS.len(), 15);
    assert_eq!(CONTACT_COLUMNS.len(), CONTACT_COLUMN_TYPES.len());
    assert_eq!(EVENT_COLUMNS.len(), 44);
    assert_eq!(EVENT_COLUMNS.len(), EVENT_COLUMN_TYPES.len());
    let unique: HashSet<_> = EVENT_COLUMNS.iter().collect();
    assert_eq!(unique.len(), EVENT_COLUMNS.len());
    for (c, t) in EVENT_COLUMNS.iter().zip(EVENT_COLUMN_TYPES) {
        let expected = match *c {
            "contact_id" | "s_sku_quantity" | "s_duration" | "screen_width" | "screen_height" => {
                "BIGINT"
            }
            "event_date" => "TIMESTAMPTZ",
            "s_sku_price" | "p_amount" => "DOUBLE PRECISION",
            _ => "VARCHAR",
        };
        assert_eq!(*t, expected, "{c}");
    }
}

#[test]
fn deterministic() {
    let spec = small();
    assert_eq!(contacts_bytes(&spec), contacts_bytes(&spec));
    assert_eq!(events_bytes(&spec), events_bytes(&spec));
    let other = DatasetSpec { seed: 8, ..small() };
    assert_ne!(contacts_bytes(&spec).1, contacts_bytes(&other).1);
    assert_ne!(events_bytes(&spec).1, events_bytes(&other).1);
    // A smaller dataset is a prefix of a larger one with the same seed.
    let fewer = DatasetSpec {
        contacts: 100,
        ..small()
    };
    assert!(events_bytes(&spec).1.starts_with(&events_bytes(&fewer).1));
}

#[test]
fn row_and_field_counts() {
    let spec = small();
    let (n, data) = contacts_bytes(&spec);
    assert_eq!(n, spec.contacts);
    let recs = parse_csv(&data);
    assert_eq!(recs.len() as u64, n);
    assert!(recs.iter().all(|r| r.len() == CONTACT_COLUMNS.len()));

    let (n, data) = events_bytes(&spec);
    assert_eq!(n, event_count_estimate(&spec));
    let recs = parse_csv(&data);
    assert_eq!(recs.len() as u64, n);
    assert!(recs.iter().all(|r| r.len() == EVENT_COLUMNS.len()));
    assert_eq!(
        data.iter().filter(|&&b| b == b'\n').count() as u64,
        n,
        "no newline inside fields"
    );
}

#[test]
fn average_events_per_contact_is_on_target() {
    for epc in [10u32, 20, 60, 100, 300] {
        let spec = DatasetSpec {
            contacts: 20_000,
            days: 30,
            events_per_contact: epc,
            start_day: (2025, 6, 1),
            seed: 42,
        };
        let avg = event_count_estimate(&spec) as f64 / spec.contacts as f64;
        assert!(
            (avg / epc as f64 - 1.0).abs() < 0.05,
            "epc {epc}: average {avg}"
        );
    }
    let none = DatasetSpec {
        events_per_contact: 0,
        ..small()
    };
    assert_eq!(event_count_estimate(&none), 0);
    assert_eq!(events_bytes(&none), (0, Vec::new()));
    let no_days = DatasetSpec { days: 0, ..small() };
    assert_eq!(events_bytes(&no_days), (0, Vec::new()));
    assert_eq!(contacts_bytes(&no_days).0, no_days.contacts);
}

/// Counts event codes while streaming, without keeping the data.
struct CodeCounter {
    partial: Vec<u8>,
    counts: HashMap<String, u64>,
    rows: u64,
}

impl CodeCounter {
    fn line(&mut self, line: &[u8]) {
        let mut it = line.splitn(3, |&b| b == b',');
        it.next();
        let code = std::str::from_utf8(it.next().unwrap()).unwrap();
        match self.counts.get_mut(code) {
            Some(c) => *c += 1,
            None => {
                self.counts.insert(code.to_string(), 1);
            }
        }
        self.rows += 1;
    }
}

impl Write for CodeCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut start = 0;
        for (i, &b) in buf.iter().enumerate() {
            if b == b'\n' {
                if self.partial.is_empty() {
                    self.line(&buf[start..i]);
                } else {
                    let mut whole = std::mem::take(&mut self.partial);
                    whole.extend_from_slice(&buf[start..i]);
                    self.line(&whole);
                }
                start = i + 1;
            }
        }
        self.partial.extend_from_slice(&buf[start..]);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn demo_has_every_event_code() {
    let spec = DatasetSpec::demo();
    let mut sink = CodeCounter {
        partial: Vec::new(),
        counts: HashMap::new(),
        rows: 0,
    };
    let n = write_events_csv(&spec, &mut sink).unwrap();
    assert!(sink.partial.is_empty());
    assert_eq!(n, sink.rows);
    assert_eq!(n, event_count_estimate(&spec));
    let avg = n as f64 / spec.contacts as f64;
    assert!((54.0..=66.0).contains(&avg), "{avg}");
    let mut shares: Vec<_> = sink.counts.iter().collect();
    shares.sort_by(|a, b| b.1.cmp(a.1));
    for (code, c) in &shares {
        eprintln!("{code:24} {c:8} {:6.2}%", **c as f64 * 100.0 / n as f64);
    }
    for code in MINI_PROGRAM_EVENTS.iter().chain(OFFICIAL_ACCOUNT_EVENTS) {
        assert!(
            sink.counts.get(*code).copied().unwrap_or(0) > 0,
            "{code} missing"
        );
    }
    assert_eq!(
        sink.counts.len(),
        MINI_PROGRAM_EVENTS.len() + OFFICIAL_ACCOUNT_EVENTS.len()
    );
}

#[test]
fn event_values_and_timeline() {
    let spec = DatasetSpec {
        contacts: 1500,
        days: 30,
        events_per_contact: 60,
        ..small()
    };
    let (ps, pe) = (spec.period_start_ms(), spec.period_end_ms());
    let contacts = parse_csv(&contacts_bytes(&spec).1);
    let (_, data) = events_bytes(&spec);
    let recs = parse_csv(&data);
    let codes: HashSet<&str> = MINI_PROGRAM_EVENTS
        .iter()
        .chain(OFFICIAL_ACCOUNT_EVENTS)
        .copied()
        .collect();
    let get = |r: &Vec<Option<String>>, c: &str| r[col(c)].clone();

    let mut last: Option<(u64, i64)> = None;
    let mut first_ts: HashMap<u64, i64> = HashMap::new();
    let mut per_contact: HashMap<u64, Vec<String>> = HashMap::new();
    let mut saw_quoted_keyword = false;
    let mut orders = HashSet::new();
    for r in &recs {
        let id: u64 = get(r, "contact_id").unwrap().parse().unwrap();
        assert!((1..=spec.contacts).contains(&id));
        let code = get(r, "event").unwrap();
        assert!(codes.contains(code.as_str()), "{code}");
        let ts = parse_ts(&get(r, "event_date").unwrap());
        assert!(ts >= ps && ts < pe, "{ts} outside the period");
        if let Some((pid, pts)) = last {
            assert!(id >= pid, "contacts must be ascending");
            if id == pid {
                assert!(ts > pts, "contact {id}: time must increase");
            }
        }
        last = Some((id, ts));
        first_ts.entry(id).or_insert(ts);
        per_contact.entry(id).or_default().push(code.clone());

        let channel = get(r, "channel_id").unwrap();
        let oa = OFFICIAL_ACCOUNT_EVENTS.contains(&code.as_str());
        assert_eq!(
            channel,
            if oa {
                OFFICIAL_ACCOUNT_CHANNEL
            } else {
                MINI_PROGRAM_CHANNEL
            }
        );
        if oa {
            assert!(get(r, "os").is_none() && get(r, "screen_width").is_none());
        } else {
            assert!(get(r, "os").is_some() && get(r, "device_model").is_some());
            let w: u64 = get(r, "screen_width").unwrap().parse().unwrap();
            let h: u64 = get(r, "screen_height").unwrap().parse().unwrap();
            assert!(w > 300 && h > w);
            assert_eq!(get(r, "country").as_deref(), Some("中国"));
        }
        if let Some(p) = get(r, "s_sku_price") {
            assert!(p.parse::<f64>().unwrap() > 0.0);
            assert!(get(r, "s_sku_id").is_some() && get(r, "s_sku_name").is_some());
        }
        if let Some(d) = get(r, "s_duration") {
            d.parse::<u64>().unwrap();
        }
        if let Some(k) = get(r, "s_search_keyword") {
            assert_eq!(code, "search");
            saw_quoted_keyword |= k.contains(',') || k.contains('"');
        }
        match code.as_str() {
            "custom_order" => {
                let amount = get(r, "p_amount").unwrap();
                let (_, cents) = amount.split_once('.').unwrap();
                assert_eq!(cents.len(), 2);
                assert!(amount.parse::<f64>().unwrap() > 0.0);
                assert_eq!(get(r, "s_order_status").as_deref(), Some("paid"));
                assert!(
                    orders.insert(get(r, "s_order_id").unwrap()),
                    "order ids are unique"
                );
                assert!(get(r, "s_sku_quantity").unwrap().parse::<u64>().unwrap() >= 1);
            }
            "add_to_cart" => {
                assert!(get(r, "s_sku_quantity").unwrap().parse::<u64>().unwrap() >= 1)
            }
            "scan_qrcode" => assert!(get(r, "s_qrcode_id").unwrap().starts_with("qr_")),
            "browse_wxapp_page" | "leave_wxapp_page" => {
                assert!(get(r, "s_page_path").unwrap().starts_with("pages/"))
            }
            "app_launch" | "app_show" => assert!(get(r, "s_scene").is_some()),
            "click_menu" => assert!(get(r, "s_menu_key").is_some()),
            "message" => assert!(get(r, "s_msg_type").is_some()),
            "subscribe_msg_accept" | "subscribe_msg_reject" => {
                assert!(get(r, "s_template_id").is_some())
            }
            _ => {}
        }
        if code != "custom_order" {
            assert!(get(r, "p_amount").is_none());
        }
    }
    assert!(
        saw_quoted_keyword,
        "a keyword needing CSV quoting should appear"
    );
    assert!(!orders.is_empty());

    // Session structure per contact.
    let mut never_ordered = 0;
    for (id, codes) in &per_contact {
        let count = |c: &str| codes.iter().filter(|x| x.as_str() == c).count();
        assert_eq!(count("app_show"), count("exit_wxapp"), "contact {id}");
        assert_eq!(
            count("browse_wxapp_page"),
            count("leave_wxapp_page"),
            "contact {id}"
        );
        assert!(count("subscribe") <= 1 && count("unsubscribe") <= 1);
        if let (Some(s), Some(u)) = (
            codes.iter().position(|c| c == "subscribe"),
            codes.iter().position(|c| c == "unsubscribe"),
        ) {
            assert!(s < u, "contact {id}: unsubscribe before subscribe");
        }
        never_ordered += (count("custom_order") == 0) as u32;
    }
    assert!(never_ordered > 0);

    // Contacts vs events: first_seen_at is never after the first event, and
    // equals it for contacts first seen inside the period.
    for c in &contacts {
        let id: u64 = c[ccol("id")].as_ref().unwrap().parse().unwrap();
        let seen = parse_ts(c[ccol("first_seen_at")].as_ref().unwrap());
        if let Some(&first) = first_ts.get(&id) {
            assert!(seen <= first, "contact {id}");
            if seen >= ps {
                assert_eq!(seen, first, "contact {id}");
            }
        }
    }
}

#[test]
fn contact_values() {
    let spec = DatasetSpec {
        contacts: 5000,
        ..small()
    };
    let (ps, pe) = (spec.period_start_ms(), spec.period_end_ms());
    let recs = parse_csv(&contacts_bytes(&spec).1);
    let mut phones = HashSet::new();
    let (mut emails, mut anonymous, mut quoted_nick) = (0, 0, false);
    for (i, r) in recs.iter().enumerate() {
        let get = |c: &str| r[ccol(c)].clone();
        let id: u64 = get("id").unwrap().parse().unwrap();
        assert_eq!(id, i as u64 + 1);
        assert!(["male", "female", "unknown"].contains(&get("gender").unwrap().as_str()));
        if let Some(b) = get("birthday") {
            let y: i32 = b[..4].parse().unwrap();
            assert!((1960..=2005).contains(&y) && b.len() == 10);
        }
        if let Some(p) = get("mobile_phone") {
            assert!(
                p.len() == 11 && p.starts_with('1') && p.bytes().all(|b| b.is_ascii_digit()),
                "{p}"
            );
            assert!(phones.insert(p), "phones are unique");
        }
        if let Some(e) = get("email") {
            assert_eq!(e, format!("u{id}@example.com"));
            emails += 1;
        }
        if let Some(n) = get("nickname") {
            quoted_nick |= n.contains(',') || n.contains('"');
        }
        let identified =
            get("name").is_some() || get("mobile_phone").is_some() || get("email").is_some();
        if !identified {
            anonymous += 1;
            assert!(get("created_at").is_none() && get("utm_source").is_none());
        } else {
            let created = parse_ts(&get("created_at").unwrap());
            assert!(created >= parse_ts(&get("first_seen_at").unwrap()) && created < pe);
            assert!(get("utm_source").is_some());
        }
        let seen = parse_ts(&get("first_seen_at").unwrap());
        assert!(seen < pe && seen > ps - 61 * DAY_MS);
        if get("city").is_some() {
            assert_eq!(get("country").as_deref(), Some("中国"));
            assert!(get("state").is_some());
        }
    }
    let n = recs.len() as f64;
    assert!(
        (0.55..0.65).contains(&(emails as f64 / n)),
        "emails {emails}"
    );
    assert!(
        (0.17..0.23).contains(&(anonymous as f64 / n)),
        "anonymous {anonymous}"
    );
    assert!(quoted_nick, "a nickname needing CSV quoting should appear");
}
