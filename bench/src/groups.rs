//! `groups`: refresh time of dynamic groups and the cost of group
//! intersections, over the wire and (for reference) of the bare bitmap
//! operation in this process.
//!
//! Loads `--contacts` contacts with `COPY contacts (name, city) FROM STDIN`
//! into a running cohortdb (empty data directory), then:
//! 1. `CREATE GROUP group_bench_a AS SELECT id FROM contact_view WHERE id % 2 = 0`
//!    and `group_bench_b` (`id % 3 = 0`): time of the first computation;
//! 2. `REFRESH GROUP group_bench_a`: time of a refresh;
//! 3. `SELECT count(*) FROM contact_view WHERE group_bench_a AND group_bench_b`
//!    (answered from the bitmaps; best of `--repeat` runs, wall time at the client);
//! 4. the same intersection count done with `roaring` in this process on the
//!    same id sets: the server-side cost of the bitmap operation itself.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{pin_mut, SinkExt};
use roaring::RoaringTreemap;
use tokio_postgres::{Client, NoTls};

use crate::Result;

/// Options of `cohortdb-bench groups`.
#[derive(clap::Args, Debug)]
pub struct GroupsArgs {
    /// Connection string of the running cohortdb (use an empty data directory).
    #[arg(
        long,
        env = "COHORTDB_BENCH_URL",
        default_value = "host=127.0.0.1 port=5433 user=admin dbname=cohortdb"
    )]
    pub url: String,
    /// Number of contacts to load.
    #[arg(long, default_value_t = 1_000_000)]
    pub contacts: u64,
    /// Runs of each query (the best is reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Skip loading (the contacts and groups already exist).
    #[arg(long)]
    pub skip_load: bool,
}

async fn timed(client: &Client, sql: &str) -> Result<(Duration, Option<String>)> {
    let t = Instant::now();
    let msgs = client.simple_query(sql).await?;
    let d = t.elapsed();
    let first = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    Ok((d, first))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the groups benchmark.
pub async fn run(args: GroupsArgs) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(&args.url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let n = args.contacts;
    if !args.skip_load {
        let t = Instant::now();
        let sink = client
            .copy_in("COPY contacts (name, city) FROM STDIN (FORMAT csv)")
            .await?;
        pin_mut!(sink);
        let mut buf = String::with_capacity(1 << 20);
        for i in 1..=n {
            buf.push_str(&format!("c{i},city{}\n", i % 100));
            if buf.len() >= 1 << 20 {
                sink.send(Bytes::from(std::mem::take(&mut buf))).await?;
            }
        }
        sink.send(Bytes::from(buf)).await?;
        let rows = sink.finish().await?;
        println!("load: {rows} contacts in {}", ms(t.elapsed()));
        for (g, m) in [("group_bench_a", 2), ("group_bench_b", 3)] {
            let (d, _) = timed(
                &client,
                &format!("CREATE GROUP {g} AS SELECT id FROM contact_view WHERE id % {m} = 0"),
            )
            .await?;
            println!("create (first computation) {g}: {}", ms(d));
        }
    }
    let (d, _) = timed(&client, "REFRESH GROUP group_bench_a").await?;
    println!("refresh group_bench_a over {n} contacts: {}", ms(d));

    let mut best = Duration::MAX;
    let mut count = None;
    for _ in 0..args.repeat.max(1) {
        let (d, c) = timed(
            &client,
            "SELECT count(*) FROM contact_view WHERE group_bench_a AND group_bench_b",
        )
        .await?;
        best = best.min(d);
        count = c;
    }
    println!(
        "SELECT count(*) ... WHERE group_bench_a AND group_bench_b over the wire: {} (count {})",
        ms(best),
        count.unwrap_or_default()
    );

    let a: RoaringTreemap = (1..=n).filter(|i| i % 2 == 0).collect();
    let b: RoaringTreemap = (1..=n).filter(|i| i % 3 == 0).collect();
    let mut best = Duration::MAX;
    let mut c = 0;
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        c = (&a & &b).len();
        best = best.min(t.elapsed());
    }
    println!(
        "roaring intersection count in process: {} (count {c})",
        ms(best)
    );
    Ok(())
}
