//! A client that goes away mid-statement: its running query stops (the
//! server's CPU returns to idle, `client_connection_check_interval`), and a
//! COPY abandoned mid-stream applies nothing. Other sessions keep working.

use std::time::{Duration, Instant};

use cohortdb_tests::{exec, simple_rows, TestServer};
use futures::SinkExt;
use tokio_postgres::NoTls;

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // fields after the parenthesised command name; utime and stime are 14 and 15
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Share of one core the process used over `window`.
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::sleep(window);
    (cpu_seconds(pid) - before) / window.as_secs_f64()
}

/// Starts `COPY sku FROM STDIN` and feeds it `rows` rows (no CopyDone yet).
async fn copy_sku_rows(
    client: &tokio_postgres::Client,
    rows: usize,
) -> std::pin::Pin<Box<tokio_postgres::CopyInSink<bytes::Bytes>>> {
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY sku FROM STDIN")
        .await
        .expect("copy starts");
    let mut sink = Box::pin(sink);
    for i in 0..rows {
        sink.as_mut()
            .feed(bytes::Bytes::from(format!("c{i}\t{i}.5\n")))
            .await
            .expect("send");
    }
    sink
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_client_cancels_its_statement_and_an_abandoned_copy_applies_nothing() {
    let server = TestServer::start();
    let pid = server.pid().expect("server pid");
    let sentinel = server.client().await;
    let rows = simple_rows(&sentinel, "SHOW client_connection_check_interval").await;
    assert_eq!(rows[0][0].as_deref(), Some("500ms"));

    // a statement that would run for hours
    let (client, connection) = tokio_postgres::connect(&server.conn_string(), NoTls)
        .await
        .expect("connect");
    let conn_task = tokio::spawn(connection);
    let query = tokio::spawn(async move {
        client
            .simple_query("SELECT count(*) FROM generate_series(1, 100000000000)")
            .await
    });
    // it is running: the server is busy
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let busy = cpu_share(pid, Duration::from_millis(1000));
    assert!(
        busy > 0.5,
        "the heavy statement should be running ({busy:.2} cores)"
    );
    // the client disappears without a Terminate
    conn_task.abort();
    query.abort();
    let gone_at = Instant::now();
    // within a few check intervals the work has stopped
    let mut idle = f64::MAX;
    while gone_at.elapsed() < Duration::from_secs(10) {
        idle = cpu_share(pid, Duration::from_millis(500));
        if idle < 0.2 {
            break;
        }
    }
    assert!(
        idle < 0.2,
        "the server still uses {idle:.2} cores {:?} after its client left\n{}",
        gone_at.elapsed(),
        server.log_tail(20)
    );
    assert!(
        server
            .log_contents()
            .contains("client closed its connection"),
        "{}",
        server.log_tail(20)
    );
    let rows = simple_rows(&sentinel, "SELECT 1").await;
    assert_eq!(rows[0][0].as_deref(), Some("1"));

    // the check can be turned off and back on per session
    exec(&sentinel, "SET client_connection_check_interval = 0").await;
    exec(&sentinel, "SET client_connection_check_interval = '250ms'").await;
    let err = sentinel
        .simple_query("SET client_connection_check_interval = 'often'")
        .await
        .expect_err("bad value");
    assert_eq!(err.code().map(|c| c.code()), Some("22023"), "{err}");

    // COPY abandoned mid-stream: rows sent, no CopyDone, connection dropped
    exec(
        &sentinel,
        "CREATE TABLE sku (code text PRIMARY KEY, price double precision)",
    )
    .await;
    let (client, connection) = tokio_postgres::connect(&server.conn_string(), NoTls)
        .await
        .expect("connect");
    let conn_task = tokio::spawn(connection);
    let mut sink = copy_sku_rows(&client, 1000).await;
    sink.as_mut().flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn_task.abort();
    drop(sink);
    drop(client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = simple_rows(&sentinel, "SELECT count(*) FROM sku").await;
    assert_eq!(
        rows[0][0].as_deref(),
        Some("0"),
        "an abandoned COPY applied rows"
    );
    // the same COPY finished applies everything
    let mut sink = copy_sku_rows(&sentinel, 1000).await;
    let n = sink.as_mut().finish().await.expect("copy done");
    assert_eq!(n, 1000);
}
