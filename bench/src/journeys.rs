//! `journeys`: the journey engine's trigger path.
//!
//! Starts a cohortdb of its own (`--bin`, a fresh data directory),
//! publishes `--journeys` journeys all triggered by `app_launch`, each with
//! its own predicate (`s_page_path = 'pages/p<i>'`) and a one-hour wait,
//! then inserts `--events` trigger events for distinct contacts, 100 per
//! INSERT, as fast as one connection goes. Each event starts one run.
//! Reported: events/s through the trigger path (until the last run
//! started), commit→run-start latency p50/p99 (the INSERT's answer to the
//! run's `started_at`), and the restart time with that many waiting runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::spawned::{connect, exec, start_cohortdb};
use crate::Result;

/// Options of `cohortdb-bench journeys`.
#[derive(clap::Args, Debug)]
pub struct JourneysArgs {
    /// The cohortdb binary to start.
    #[arg(long, default_value = "target/release/cohortdb")]
    pub bin: PathBuf,
    /// Published journeys sharing the trigger event.
    #[arg(long, default_value_t = 100)]
    pub journeys: u64,
    /// Trigger events (one per contact).
    #[arg(long, default_value_t = 5_000)]
    pub events: u64,
    /// Port of the started cohortdb.
    #[arg(long, default_value_t = 15441)]
    pub port: u16,
}

async fn count(c: &Client, sql: &str) -> Result<i64> {
    Ok(c.query_one(sql, &[]).await?.get(0))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs the benchmark and prints its report.
pub async fn run(args: JourneysArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("cohortdb-bench-journeys-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (server, _) = start_cohortdb(&args.bin, &dir, args.port, None)?;
    let c = connect(args.port).await?;
    exec(
        &c,
        &format!(
            "INSERT INTO contacts (id, name) SELECT x, 'c' || x FROM generate_series(1, {}) t(x)",
            args.events
        ),
    )
    .await?;
    for i in 0..args.journeys {
        exec(
            &c,
            &format!(
                r#"CALL create_journey('j_b{i}', '{{"trigger": {{"event": "app_launch", "where": "s_page_path = ''pages/p{i}''"}}, "steps": [{{"id": "w", "type": "wait", "duration": "1 hours"}}]}}')"#
            ),
        )
        .await?;
        exec(&c, &format!("CALL publish_journey('j_b{i}')")).await?;
    }
    // (contact → when its INSERT was answered)
    let mut acked = vec![0i64; args.events as usize + 1];
    let t0 = Instant::now();
    let mut next = 1u64;
    while next <= args.events {
        let end = (next + 99).min(args.events);
        let values: Vec<String> = (next..=end)
            .map(|k| format!("({k}, 'app_launch', now(), 'pages/p{}')", k % args.journeys))
            .collect();
        exec(
            &c,
            &format!(
                "INSERT INTO events (contact_id, event, event_date, s_page_path) VALUES {}",
                values.join(", ")
            ),
        )
        .await?;
        let at = now_ms();
        for k in next..=end {
            acked[k as usize] = at;
        }
        next = end + 1;
    }
    let inserted = t0.elapsed();
    loop {
        let n = count(&c, "SELECT count(*) FROM journey_runs").await?;
        if n as u64 >= args.events {
            break;
        }
        if t0.elapsed() > Duration::from_secs(3600) {
            return Err(format!("only {n} runs started in an hour").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = t0.elapsed();
    let rows = c
        .query(
            "SELECT contact_id, CAST(extract(epoch FROM started_at) * 1000 AS BIGINT) FROM journey_runs",
            &[],
        )
        .await?;
    let mut lat: Vec<i64> = rows
        .iter()
        .map(|r| {
            let contact: i64 = r.get(0);
            let started: i64 = r.get(1);
            started - acked[contact as usize]
        })
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "# cohortdb-bench journeys: {} journeys sharing app_launch (one predicate each), {} events",
        args.journeys, args.events
    );
    println!(
        "| inserts ({} statements of 100) | {:.2} s |",
        args.events.div_ceil(100),
        inserted.as_secs_f64()
    );
    println!(
        "| trigger path: all {} runs started | {:.2} s | {:.0} events/s |",
        args.events,
        all.as_secs_f64(),
        args.events as f64 / all.as_secs_f64()
    );
    println!(
        "| commit → run start | p50 {} ms | p99 {} ms | max {} ms |",
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0)
    );
    drop(c);
    drop(server);
    let (server, up) = start_cohortdb(&args.bin, &dir, args.port, None)?;
    let c = connect(args.port).await?;
    let waiting = count(
        &c,
        "SELECT count(*) FROM journey_runs WHERE status = 'waiting'",
    )
    .await?;
    println!(
        "| restart with {waiting} waiting runs | accepting connections after {:.2} s |",
        up.as_secs_f64()
    );
    drop(c);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
