//! Session-level behaviour over the wire: connection limit (53300), unknown
//! database (3D000), SET TIME ZONE changing timestamp output and the
//! ParameterStatus, SHOW, and a server that keeps serving after a client
//! sends garbage.

use cohortdb_tests::{exec, expect_sqlstate, simple_rows, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn limits_databases_and_time_zones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cohortdb.toml");
    std::fs::write(
        &config,
        "max_connections = 2\ntimezone = \"UTC\"\nmax_statement_mb = 1\n",
    )
    .expect("write config");
    let data = dir.path().join("data");
    let server = TestServer::start_with(&data, &["--config", config.to_str().expect("utf-8 path")]);

    // unknown database
    let bad_db = format!(
        "host=127.0.0.1 port={} user=admin dbname=nosuch",
        server.port()
    );
    // (the start-up probe's connection frees its slot asynchronously: while
    // both slots may still be taken, the answer can be 53300)
    let mut err = None;
    for _ in 0..50 {
        let e = tokio_postgres::connect(&bad_db, tokio_postgres::NoTls)
            .await
            .err()
            .expect("3D000");
        if e.code().map(|c| c.code()) != Some("53300") {
            err = Some(e);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let err = err.expect("a slot frees up");
    assert_eq!(err.code().map(|c| c.code()), Some("3D000"), "{err}");

    // connection limit: two connections fit, the third is refused with 53300
    // (the start-up probe's connection frees its slot asynchronously: retry)
    let connect = || async {
        for _ in 0..50 {
            if let Ok(c) = server.try_client().await {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        server.client().await
    };
    let a = connect().await;
    let b = connect().await;
    let err = server.try_client().await.err().expect("53300");
    assert_eq!(err.code().map(|c| c.code()), Some("53300"), "{err}");
    drop(b);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // time zone: literals and output follow the session zone
    exec(&a, "ALTER TABLE events ADD COLUMN p_amount DOUBLE").await;
    exec(&a, "INSERT INTO contacts (name) VALUES ('tz')").await;
    exec(&a, "INSERT INTO events (contact_id, event, event_date) VALUES (1, 'app_launch', '2025-06-01 10:00:00+00')").await;
    let rows = simple_rows(&a, "SHOW TimeZone").await;
    assert_eq!(rows[0][0].as_deref(), Some("UTC"));
    exec(&a, "SET TIME ZONE 'Asia/Shanghai'").await;
    let rows = simple_rows(&a, "SELECT event_date FROM events").await;
    assert_eq!(rows[0][0].as_deref(), Some("2025-06-01 18:00:00+08"));
    let rows = simple_rows(
        &a,
        "SELECT count(*) FROM events WHERE event_date = '2025-06-01 18:00:00'",
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("1"));
    let rows = simple_rows(&a, "SHOW timezone").await;
    assert_eq!(rows[0][0].as_deref(), Some("Asia/Shanghai"));
    let err = a
        .simple_query("SET TIME ZONE 'Mars/Olympus'")
        .await
        .err()
        .expect("bad zone");
    assert_eq!(err.code().map(|c| c.code()), Some("22023"), "{err}");

    // a statement above max_statement_mb fails with 54000 and applies nothing
    let mut csv = String::new();
    for i in 0..40_000 {
        csv.push_str(&format!(
            "1,app_show,2025-06-02 00:00:{:02}.{:03}+00,{i}\n",
            i / 1000 % 60,
            i % 1000
        ));
    }
    let sink = a
        .copy_in("COPY events (contact_id, event, event_date, p_amount) FROM STDIN (FORMAT csv)")
        .await
        .expect("copy starts");
    futures::pin_mut!(sink);
    use futures::SinkExt;
    sink.send(bytes::Bytes::from(csv)).await.expect("send");
    let err = sink.as_mut().finish().await.err().expect("54000");
    assert_eq!(err.code().map(|c| c.code()), Some("54000"), "{err}");
    let rows = simple_rows(&a, "SELECT count(*) FROM events WHERE event = 'app_show'").await;
    assert_eq!(rows[0][0].as_deref(), Some("0"));

    // a client sending garbage loses its connection; the server keeps serving
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connect");
    raw.write_all(&[0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), raw.read(&mut buf)).await;
    drop(raw);
    let rows = simple_rows(&a, "SELECT 1").await;
    assert_eq!(rows[0][0].as_deref(), Some("1"));
}

/// Query limits: deep expressions are refused (54001) without harming the
/// server, `max_query_memory` stops a query that needs more (53200) while a
/// spilling sort under the same limit completes, and bad values are refused.
#[tokio::test]
async fn expression_depth_and_query_memory_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cohortdb.toml");
    std::fs::write(&config, "max_expression_depth = 200\nmax_message_mb = 2\n")
        .expect("write config");
    let server = TestServer::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8")],
    );
    let c = server.client().await;

    let chain = |n: usize| format!("SELECT {}", vec!["1"; n].join(" + "));
    let rows = simple_rows(&c, &chain(150)).await;
    assert_eq!(rows[0][0].as_deref(), Some("150"));
    // far deeper than any thread stack would survive if it were recursed over
    for n in [250, 400_000] {
        let err = expect_sqlstate(&c, &chain(n), "54001").await;
        assert!(err.to_string().contains("max_expression_depth"), "{err}");
        let err = c.prepare(&chain(n)).await.err().expect("54001 on Parse");
        assert_eq!(err.code().map(|s| s.code()), Some("54001"), "{err}");
    }
    let ors = format!(
        "SELECT count(*) FROM contacts WHERE {}",
        (0..300)
            .map(|i| format!("id = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    );
    expect_sqlstate(&c, &ors, "54001").await;
    let nested = format!("SELECT {}1{}", "(".repeat(80), ")".repeat(80));
    expect_sqlstate(&c, &nested, "54001").await;
    // statement text over max_message_mb
    let long = format!("SELECT '{}'", "x".repeat(2_200_000));
    let err = expect_sqlstate(&c, &long, "54000").await;
    assert!(err.to_string().contains("max_message_mb"), "{err}");
    let rows = simple_rows(&c, "SHOW max_expression_depth").await;
    assert_eq!(rows[0][0].as_deref(), Some("200"));

    // memory
    let rows = simple_rows(&c, "SHOW max_query_memory").await;
    assert_eq!(rows[0][0].as_deref(), Some("4096MB"));
    expect_sqlstate(&c, "SET max_query_memory = 'plenty'", "22023").await;
    expect_sqlstate(&c, "SET statement_timeout = 'soon'", "22023").await;
    exec(&c, "SET max_query_memory = '1MB'").await;
    let group_all = "SELECT count(*) FROM (SELECT g, count(*) FROM generate_series(1, 2000000) AS t(g) GROUP BY g) x";
    let err = expect_sqlstate(&c, group_all, "53200").await;
    assert!(err.to_string().contains("max_query_memory"), "{err}");
    // the extended protocol runs under the same limit
    let err = c.query(group_all, &[]).await.err().expect("53200");
    assert_eq!(err.code().map(|s| s.code()), Some("53200"), "{err}");
    // a sort spills to disk instead of failing
    exec(&c, "SET max_query_memory = '16MB'").await;
    let rows = simple_rows(
        &c,
        "SELECT max(rn) FROM (SELECT row_number() OVER (ORDER BY g % 1000, g DESC) AS rn FROM generate_series(1, 1000000) AS t(g)) x",
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("1000000"));
    exec(&c, "RESET max_query_memory").await;
    let rows = simple_rows(&c, group_all).await;
    assert_eq!(rows[0][0].as_deref(), Some("2000000"));
    // other sessions were never limited
    let other = server.client().await;
    let rows = simple_rows(&other, "SELECT 1").await;
    assert_eq!(rows[0][0].as_deref(), Some("1"));
}
