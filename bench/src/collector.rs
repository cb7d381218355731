//! `collector`: events per second through the HTTP collector, beside COPY
//! of the same events through pgwire.
//!
//! `--clients` keep-alive connections (default 8) each post SDK batches of
//! `--batch` events (default 50, every event with its own `message_id`)
//! to `POST /sdk/v1/track` for `--seconds`, one request in flight per
//! connection; a request's latency runs from writing it to reading the
//! whole answer. Then the same number of events, same shape (anonymous id,
//! channel, event, time, two properties), is sent with `COPY events
//! (anonymous_id, channel_id, event, event_date, s_page_path, os) FROM
//! STDIN (FORMAT csv)` over one connection. With `--pid` (the server's
//! process id) the server's CPU time per 1,000 events is reported for
//! both. The HTTP client is a minimal HTTP/1.1 one written here: requests
//! with `Content-Length`, answers read by `Content-Length`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

use crate::Result;

/// Options of `cohortdb-bench collector`.
#[derive(clap::Args, Debug)]
pub struct CollectorArgs {
    /// Connection string of the running cohortdb (for the app set-up and COPY).
    #[arg(
        long,
        env = "COHORTDB_BENCH_URL",
        default_value = "host=127.0.0.1 port=5433 user=admin dbname=cohortdb"
    )]
    pub url: String,
    /// Address of its HTTP collector.
    #[arg(long, default_value = "127.0.0.1:5480")]
    pub http: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Events per request.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Seconds of posting.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Process id of the server, to report its CPU time per 1,000 events.
    #[arg(long)]
    pub pid: Option<u32>,
}

const APP: &str = "bench_app";
const KEY: &str = "bench-app-key-1";
const PAGES: &[&str] = &["pages/index", "pages/sku", "pages/cart", "pages/me"];

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn sdk_batch(client: usize, n: u64, size: usize, t0: i64) -> String {
    let mut events = Vec::with_capacity(size);
    for i in 0..size {
        let seq = n * size as u64 + i as u64;
        events.push(serde_json::json!({
            "appid": APP, "appkey": KEY, "event": "browse_wxapp_page",
            "time": t0 + seq as i64,
            "qid": format!("bench-{client}-{}", seq % 1000),
            "message_id": format!("{client}-{seq}"),
            "properties": {"s_page_path": PAGES[(seq % 4) as usize], "$os": "iOS"}
        }));
    }
    serde_json::json!({ "events": events }).to_string()
}

async fn post(stream: &mut BufReader<TcpStream>, host: &str, body: &str) -> Result<(u16, Vec<u8>)> {
    let head = format!(
        "POST /sdk/v1/track HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.get_mut().write_all(head.as_bytes()).await?;
    stream.get_mut().write_all(body.as_bytes()).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut len = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse()?;
            }
        }
    }
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).await?;
    Ok((status, answer))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the collector benchmark.
pub async fn run(args: CollectorArgs) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(&args.url, NoTls).await?;
    tokio::spawn(conn);
    if let Err(e) = client
        .batch_execute(&format!(
            "CALL collector_add_app('{APP}', '{KEY}', 'bench')"
        ))
        .await
    {
        if !format!("{e:?}").contains("already exists") {
            return Err(e.into());
        }
    }
    let t0 = 1_717_200_000_000i64;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let cpu0 = args.pid.and_then(cpu_seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (http, batch) = (args.http.clone(), args.batch);
        tasks.push(tokio::spawn(async move {
            let mut stream = BufReader::new(TcpStream::connect(&http).await?);
            stream.get_mut().set_nodelay(true)?;
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let body = sdk_batch(c, n, batch, t0);
                let t = Instant::now();
                let (status, answer) = post(&mut stream, &http, &body).await?;
                lat.push(t.elapsed());
                if status != 200 {
                    return Err(
                        format!("HTTP {status}: {}", String::from_utf8_lossy(&answer)).into(),
                    );
                }
                n += 1;
            }
            Ok::<_, crate::Error>((n * batch as u64, lat))
        }));
    }
    let mut events = 0u64;
    let mut lat = Vec::new();
    for t in tasks {
        let (n, l) = t.await??;
        events += n;
        lat.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_http = match (cpu0, args.pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    lat.sort_unstable();
    println!(
        "HTTP  {} clients × {}-event batches, {:.1} s: {events} events, {:.0} events/s, {} requests, latency p50 {:.2} ms, p99 {:.2} ms{}",
        args.clients,
        args.batch,
        secs,
        events as f64 / secs,
        lat.len(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        cpu_http
            .map(|c| format!(", server CPU {:.1} ms per 1,000 events", c * 1e6 / events.max(1) as f64))
            .unwrap_or_default()
    );

    // the same number of events through COPY
    let mut csv = String::with_capacity(events as usize * 80);
    for seq in 0..events {
        let ts = t0 + seq as i64;
        csv.push_str(&format!(
            "copy-{},bench,browse_wxapp_page,{}.{:03}+00,{},iOS\n",
            seq % 8000,
            chrono_like(ts / 1000),
            ts % 1000,
            PAGES[(seq % 4) as usize]
        ));
    }
    let cpu0 = args.pid.and_then(cpu_seconds);
    let t = Instant::now();
    let sink = client
        .copy_in(
            "COPY events (anonymous_id, channel_id, event, event_date, s_page_path, os) FROM STDIN (FORMAT csv)",
        )
        .await?;
    futures::pin_mut!(sink);
    for chunk in csv.as_bytes().chunks(1 << 20) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    let rows = sink.finish().await?;
    let secs = t.elapsed().as_secs_f64();
    let cpu_copy = match (cpu0, args.pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    println!(
        "COPY  one connection: {rows} events in {:.2} s, {:.0} events/s{}",
        secs,
        rows as f64 / secs,
        cpu_copy
            .map(|c| format!(
                ", server CPU {:.1} ms per 1,000 events",
                c * 1e6 / rows.max(1) as f64
            ))
            .unwrap_or_default()
    );
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of `secs` since the epoch.
fn chrono_like(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_time() {
        assert_eq!(super::chrono_like(1_717_200_000), "2024-06-01 00:00:00");
        assert_eq!(super::chrono_like(0), "1970-01-01 00:00:00");
    }
}
