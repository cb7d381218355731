//! Oversize values and the server memory budget over the wire: several
//! concurrent sessions build values over 1 GB (`string_agg`, `array_agg`,
//! `||`, `concat`, `repeat`) or a batch larger than the budget; each gets
//! 54000 or 53200, a sentinel session keeps answering `SELECT 1`, the
//! server's peak RSS stays bounded, and afterwards the budget is free again.

use std::time::{Duration, Instant};

use cohortdb_tests::{exec, simple_rows, try_simple_rows, TestServer};
use futures::SinkExt;

/// `VmHWM` (peak resident set) of the process, in MiB.
fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversize_values_and_the_server_budget_fail_cleanly_while_others_are_served() {
    const BUDGET_MB: u64 = 1536;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cohortdb.toml");
    std::fs::write(
        &config,
        format!("max_server_memory_mb = {BUDGET_MB}\nmax_query_memory_mb = 1200\n"),
    )
    .expect("write config");
    let server = TestServer::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8")],
    );
    let pid = server.pid().expect("pid");
    let sentinel = server.client().await;
    let baseline = peak_rss_mb(pid);

    let oversize = [
        // one value over 1 GB, built row by row
        ("SELECT length(string_agg(repeat('x', 1000000), '')) FROM generate_series(1, 1300)", &["54000", "53200"][..]),
        ("SELECT cardinality(array_agg(repeat('x', 1000000))) FROM generate_series(1, 1300)", &["54000", "53200"]),
        // refused before the value is built (54000), or before its halves
        // are when the budget is taken by the others (53200)
        // (`random() * 0` keeps the halves from being folded into the plan:
        // the planner copies folded literals, outside any check)
        ("SELECT length(repeat('x', (600000000 + random() * 0)::int) || repeat('y', 600000000))", &["54000", "53200"]),
        ("SELECT length(concat(repeat('x', (700000000 + random() * 0)::int), repeat('y', (700000000 + random() * 0)::int)))", &["54000", "53200"]),
        ("SELECT length(repeat('x', 2000000000))", &["54000"]),
        // each value under 1 GB, the batch of them over the whole budget
        // (not folded into a constant by the planner, whose one 400 MB copy
        // fits or not depending on what the others hold at that moment)
        ("SELECT length(repeat('x', (400000000 + random() * 0)::int)) FROM generate_series(1, 5)", &["53200"]),
    ];
    let mut running = Vec::new();
    for (sql, codes) in oversize {
        let c = server.client().await;
        running.push(tokio::spawn(async move {
            let err = c
                .simple_query(sql)
                .await
                .expect_err("an oversize query must fail");
            let code = err.code().map(|c| c.code().to_string()).unwrap_or_default();
            assert!(codes.contains(&code.as_str()), "{sql}: {code} {err}");
            (sql, code)
        }));
    }
    // the sentinel answers throughout
    let mut latencies = Vec::new();
    while running.iter().any(|h| !h.is_finished()) {
        let t = Instant::now();
        let rows = simple_rows(&sentinel, "SELECT 1").await;
        latencies.push(t.elapsed());
        assert_eq!(rows[0][0].as_deref(), Some("1"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut outcomes = Vec::new();
    for h in running {
        outcomes.push(h.await.expect("oversize query task"));
    }
    latencies.sort();
    let worst = latencies.last().copied().unwrap_or_default();
    let peak = peak_rss_mb(pid);
    eprintln!(
        "oversize queries: {outcomes:?}\nsentinel SELECT 1: {} answers, worst {worst:?}\npeak RSS {peak} MiB (baseline {baseline} MiB, budget {BUDGET_MB} MiB)",
        latencies.len()
    );
    // bounded, though not by the budget alone: the batches being built when
    // it was last checked come on top (observed 2.4–3.6 GB here; without the
    // budget a similar set of queries reached 11 GB)
    assert!(
        peak < baseline + 3 * BUDGET_MB,
        "peak RSS {peak} MiB (baseline {baseline} MiB, budget {BUDGET_MB} MiB)"
    );

    // the budget is given back once the failed queries' last batches are
    // dropped (their workers finish the batch in hand first): a query
    // needing a third of it runs
    let deadline = Instant::now() + Duration::from_secs(60);
    let sql = "SELECT length(string_agg(repeat('x', 1000000), '')) FROM generate_series(1, 500)";
    let rows = loop {
        match try_simple_rows(&sentinel, sql).await {
            Ok(rows) => break rows,
            Err(e) if e.code.as_deref() == Some("53200") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) => panic!("{sql}: {e:?}"),
        }
    };
    assert_eq!(rows[0][0].as_deref(), Some("500000000"));
}

/// A COPY staging more than the server budget stops with 53200 and applies
/// nothing; once it is gone, the budget is free for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_staging_past_the_server_budget_gets_53200_and_applies_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cohortdb.toml");
    std::fs::write(&config, "max_server_memory_mb = 256\n").expect("write config");
    let server = TestServer::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8")],
    );
    let c = server.client().await;
    exec(&c, "CREATE TABLE notes (id bigint PRIMARY KEY, body text)").await;
    // 4,000 rows of 100 kB: 400 MB staged, past the 256 MB budget
    let body = "x".repeat(100_000);
    let sink = c
        .copy_in::<_, bytes::Bytes>("COPY notes FROM STDIN")
        .await
        .expect("copy starts");
    let mut sink = Box::pin(sink);
    let mut sent = Ok(());
    for i in 0..4000 {
        sent = sink
            .as_mut()
            .feed(bytes::Bytes::from(format!("{i}\t{body}\n")))
            .await;
        if sent.is_err() {
            break;
        }
    }
    let err = match sent {
        Err(e) => e,
        Ok(()) => sink.as_mut().finish().await.expect_err("53200"),
    };
    assert_eq!(err.code().map(|c| c.code()), Some("53200"), "{err}");
    let message = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("max_server_memory"), "{message}");
    let rows = simple_rows(&c, "SELECT count(*) FROM notes").await;
    assert_eq!(rows[0][0].as_deref(), Some("0"));
    // a COPY within the budget goes through afterwards
    let sink = c
        .copy_in::<_, bytes::Bytes>("COPY notes FROM STDIN")
        .await
        .expect("copy starts");
    let mut sink = Box::pin(sink);
    for i in 0..500 {
        sink.as_mut()
            .feed(bytes::Bytes::from(format!("{i}\t{body}\n")))
            .await
            .expect("send");
    }
    assert_eq!(sink.as_mut().finish().await.expect("copy done"), 500);
}
