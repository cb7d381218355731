//! `wechat`: the WeChat sender against the local fake of the WeChat API
//! (`tests/fakes/wechat_api.py`, the one the tests use).
//!
//! Starts the fake and a cohortdb of its own (`--bin`, a fresh data
//! directory), gives `--contacts` fans a `subscribe` on one account, then
//! measures:
//! 1. resolving a mass send to all of them into the outbox (the `CALL`'s
//!    time, the server's RSS before and after);
//! 2. delivering it with the rate limit lifted (mass calls of 10,000);
//! 3. a template send (one call per fan) to `--template-recipients` fans,
//!    rate limit lifted;
//! 4. the same server restarted with the default limit (30,000 recipients
//!    a minute, the bucket starting full) and a template send to 30,000 +
//!    `--paced` fans: the rate after the first 30,000, from the fake's
//!    timestamps, against the limit's 500 a second.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::spawned::{connect, exec, scalar, start_cohortdb, wait_port, Proc};
use crate::Result;

/// Options of `cohortdb-bench wechat`.
#[derive(clap::Args, Debug)]
pub struct WechatArgs {
    /// The cohortdb binary to start.
    #[arg(long, default_value = "target/release/cohortdb")]
    pub bin: PathBuf,
    /// The fake WeChat API script.
    #[arg(long, default_value = "tests/fakes/wechat_api.py")]
    pub fake: PathBuf,
    /// Fans of the account (the mass send's audience).
    #[arg(long, default_value_t = 1_000_000)]
    pub contacts: u64,
    /// Recipients of the template send with the limit lifted.
    #[arg(long, default_value_t = 20_000)]
    pub template_recipients: u64,
    /// Recipients beyond the first 30,000 for the default-limit run.
    #[arg(long, default_value_t = 10_000)]
    pub paced: u64,
    /// Port of the started cohortdb.
    #[arg(long, default_value_t = 15439)]
    pub port: u16,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// (VmRSS, VmHWM) of `pid` in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn wait_done(c: &Client, id: &str) -> Result<Duration> {
    let t = Instant::now();
    loop {
        let st = scalar(
            c,
            &format!("SELECT status FROM wechat_sends WHERE send_id = {id}"),
        )
        .await?;
        if st == "done" {
            return Ok(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(3600) {
            return Err(format!("send {id} did not finish in an hour").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Timestamps of the fake's logged calls to `path` with their recipient counts.
fn calls(log: &Path, path: &str) -> Vec<(f64, usize)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["path"] == path && v["errcode"] == 0)
        .map(|v| {
            let n = v["body"]["touser"].as_array().map_or(1, Vec::len);
            (v["ts"].as_f64().unwrap_or(0.0), n)
        })
        .collect()
}

/// Runs the benchmark and prints its report.
pub async fn run(args: WechatArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("cohortdb-bench-wechat-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("calls.jsonl");
    let fake_port = free_port()?;
    let _fake = Proc(
        Command::new("python3")
            .arg(&args.fake)
            .arg(fake_port.to_string())
            .arg(&log)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the fake WeChat API: {e}"))?,
    );
    wait_port(fake_port, "the fake WeChat API")?;
    println!(
        "# cohortdb-bench wechat: {} fans, fake WeChat API on 127.0.0.1:{fake_port}",
        args.contacts
    );

    let lifted = "wechat_recipients_per_minute = 1000000000\n";
    let (server, _) = start_cohortdb(&args.bin, &dir, args.port, Some(lifted))?;
    let pid = server.0.id();
    let c = connect(args.port).await?;
    exec(&c, &format!(
        "CALL wechat_add_account('wx_bench', 'wxbench', 'subscription', 'http://127.0.0.1:{fake_port}', 'fake-secret')"
    ))
    .await?;
    let t = Instant::now();
    exec(&c, &format!(
        "INSERT INTO events (openid, channel_id, event, event_date) \
         SELECT 'fan_' || x, 'wx_bench', 'subscribe', now() - INTERVAL '1 hour' FROM generate_series(1, {}) t(x)",
        args.contacts
    ))
    .await?;
    println!("fans loaded: {:.1} s", t.elapsed().as_secs_f64());
    let (rss0, _) = rss_mib(pid);

    // 1 + 2: a mass send to everyone
    let t = Instant::now();
    let id = scalar(
        &c,
        "CALL wechat_mass_send('wx_bench', 'all', 'text', '{\"content\": \"hello\"}')",
    )
    .await?;
    let resolve = t.elapsed();
    let (rss1, hwm1) = rss_mib(pid);
    let deliver = wait_done(&c, &id).await?;
    let sent: u64 = scalar(
        &c,
        &format!("SELECT sent FROM wechat_sends WHERE send_id = {id}"),
    )
    .await?
    .parse()?;
    println!(
        "| mass send, audience resolution ({} recipients into the outbox) | {:.2} s | RSS {rss0:.0} → {rss1:.0} MiB (peak {hwm1:.0}) |",
        args.contacts,
        resolve.as_secs_f64()
    );
    println!(
        "| mass send, delivery, limit lifted ({} calls of ≤ 10,000) | {:.2} s | {:.0} recipients/s |",
        calls(&log, "/cgi-bin/message/mass/send").len(),
        deliver.as_secs_f64(),
        sent as f64 / deliver.as_secs_f64()
    );

    // 3: one call per recipient
    exec(
        &c,
        &format!(
            "CREATE GROUP group_bench_t AS SELECT id FROM contact_view WHERE id <= {}",
            args.template_recipients
        ),
    )
    .await?;
    let t = Instant::now();
    let id = scalar(
        &c,
        "CALL wechat_template_send('wx_bench', 'group_bench_t', 'TPL_B', '{\"first\": {\"value\": \"hi\"}}')",
    )
    .await?;
    let resolve = t.elapsed();
    let deliver = wait_done(&c, &id).await?;
    let sent: u64 = scalar(
        &c,
        &format!("SELECT sent FROM wechat_sends WHERE send_id = {id}"),
    )
    .await?
    .parse()?;
    let (_, hwm) = rss_mib(pid);
    println!(
        "| template send, limit lifted ({sent} recipients, one call each) | resolve {:.2} s, deliver {:.2} s | {:.0} recipients/s, peak RSS {hwm:.0} MiB |",
        resolve.as_secs_f64(),
        deliver.as_secs_f64(),
        sent as f64 / deliver.as_secs_f64()
    );
    drop(c);
    drop(server);

    // 4: the default limit
    let (server, _) = start_cohortdb(&args.bin, &dir, args.port, None)?;
    let c = connect(args.port).await?;
    let n = 30_000 + args.paced;
    exec(
        &c,
        &format!(
            "CREATE GROUP group_bench_p AS SELECT id FROM contact_view WHERE id > {} AND id <= {}",
            args.template_recipients,
            args.template_recipients + n
        ),
    )
    .await?;
    let before = calls(&log, "/cgi-bin/message/template/send").len();
    let id = scalar(
        &c,
        "CALL wechat_template_send('wx_bench', 'group_bench_p', 'TPL_P', '{\"first\": {\"value\": \"hi\"}}')",
    )
    .await?;
    let deliver = wait_done(&c, &id).await?;
    let paced: Vec<f64> = calls(&log, "/cgi-bin/message/template/send")
        .into_iter()
        .skip(before)
        .map(|(ts, _)| ts)
        .collect();
    if paced.len() > 1 {
        let span = paced.last().unwrap_or(&0.0) - paced[0];
        let rate = (paced.len() - 1) as f64 / span.max(1e-9);
        let mut busiest = 0;
        for (i, t) in paced.iter().enumerate() {
            busiest = busiest.max(paced[i..].iter().take_while(|u| **u < t + 60.0).count());
        }
        println!(
            "| template send, default limit ({} recipients) | {:.1} s | {rate:.0} recipients/s ({:.0}/min; the limit is 30,000/min); busiest 60 s: {busiest} |",
            paced.len(),
            deliver.as_secs_f64(),
            rate * 60.0
        );
    }
    drop(c);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
