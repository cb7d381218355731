//! Civil-date arithmetic and allocation-free formatting of the CSV values
//! (integers, money, dates, timestamps, quoted text).

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 86_400_000;
/// Milliseconds in an hour.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d`
/// (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = y as i64 - (m <= 2) as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month, day)` of a day number.
pub(crate) fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    ((y + (m <= 2) as i64) as i32, m, d)
}

/// Day of the week of a day number, 0 = Sunday … 6 = Saturday.
pub(crate) fn weekday(z: i64) -> u32 {
    (z + 4).rem_euclid(7) as u32
}

/// Appends the decimal digits of `n`.
#[inline]
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends `n` zero-padded to `width` digits.
#[inline]
pub(crate) fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    let mut n = n;
    while n > 0 {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = (tmp.len() - width).min(i);
    out.extend_from_slice(&tmp[start..]);
}

/// Appends an amount in cents as `units.cc` (always two decimals).
#[inline]
pub(crate) fn push_cents(out: &mut Vec<u8>, cents: u64) {
    push_u64(out, cents / 100);
    out.push(b'.');
    let c = (cents % 100) as u8;
    out.push(b'0' + c / 10);
    out.push(b'0' + c % 10);
}

/// Appends the date `YYYY-MM-DD` of a day number (years 0–9999).
pub(crate) fn push_date(out: &mut Vec<u8>, day: i64) {
    let (y, m, d) = civil_from_days(day);
    push_padded(out, y.max(0) as u64, 4);
    out.push(b'-');
    push_padded(out, m as u64, 2);
    out.push(b'-');
    push_padded(out, d as u64, 2);
}

/// Appends `text` as one CSV field value, quoted (with `""` escaping) only when
/// it contains a comma, quote, CR or LF. An empty `text` is written as nothing,
/// which `COPY ... (FORMAT csv)` reads as NULL.
pub(crate) fn push_csv_text(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !bytes
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    out.push(b'"');
    for &b in bytes {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Formats timestamps `YYYY-MM-DD HH:MM:SS.mmm+00`, caching the date part of
/// the last day seen (events of one contact mostly share few days).
pub(crate) struct TsFormatter {
    day: i64,
    date: [u8; 10],
}

impl TsFormatter {
    pub(crate) fn new() -> TsFormatter {
        TsFormatter {
            day: i64::MIN,
            date: [0; 10],
        }
    }

    /// Appends the UTC timestamp of `ms` milliseconds since the Unix epoch.
    #[inline]
    pub(crate) fn push(&mut self, out: &mut Vec<u8>, ms: i64) {
        let day = ms.div_euclid(DAY_MS);
        if day != self.day {
            let mut tmp = Vec::with_capacity(10);
            push_date(&mut tmp, day);
            self.date.copy_from_slice(&tmp[..10]);
            self.day = day;
        }
        let rem = ms.rem_euclid(DAY_MS) as u32;
        let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
        let (m, rem) = (rem / 60_000, rem % 60_000);
        let (s, milli) = (rem / 1000, rem % 1000);
        let mut b = [0u8; 26];
        b[..10].copy_from_slice(&self.date);
        b[10] = b' ';
        b[11] = b'0' + (h / 10) as u8;
        b[12] = b'0' + (h % 10) as u8;
        b[13] = b':';
        b[14] = b'0' + (m / 10) as u8;
        b[15] = b'0' + (m % 10) as u8;
        b[16] = b':';
        b[17] = b'0' + (s / 10) as u8;
        b[18] = b'0' + (s % 10) as u8;
        b[19] = b'.';
        b[20] = b'0' + (milli / 100) as u8;
        b[21] = b'0' + (milli / 10 % 10) as u8;
        b[22] = b'0' + (milli % 10) as u8;
        b[23] = b'+';
        b[24] = b'0';
        b[25] = b'0';
        out.extend_from_slice(&b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2025, 6, 1), 20_240);
        assert_eq!(civil_from_days(20_240), (2025, 6, 1));
        assert_eq!(weekday(20_240), 0); // 2025-06-01 was a Sunday
        for z in -800_000..800_000i64 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(
            civil_from_days(days_from_civil(2024, 2, 29) + 1),
            (2024, 3, 1)
        );
    }

    #[test]
    fn formats() {
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        v.push(b' ');
        push_u64(&mut v, 18_446_744_073_709_551_615);
        v.push(b' ');
        push_padded(&mut v, 7, 4);
        v.push(b' ');
        push_padded(&mut v, 123_456, 4);
        v.push(b' ');
        push_cents(&mut v, 5);
        v.push(b' ');
        push_cents(&mut v, 19_990);
        v.push(b' ');
        push_date(&mut v, days_from_civil(1960, 1, 9));
        v.push(b' ');
        TsFormatter::new().push(
            &mut v,
            days_from_civil(2025, 6, 30) * DAY_MS + 23 * HOUR_MS + 59 * 60_000 + 58_007,
        );
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "0 18446744073709551615 0007 123456 0.05 199.90 1960-01-09 2025-06-30 23:59:58.007+00"
        );
    }

    #[test]
    fn csv_quoting() {
        let mut v = Vec::new();
        push_csv_text(&mut v, "plain 文本");
        v.push(b'|');
        push_csv_text(&mut v, "a,b");
        v.push(b'|');
        push_csv_text(&mut v, "say \"hi\"");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "plain 文本|\"a,b\"|\"say \"\"hi\"\"\""
        );
    }
}
