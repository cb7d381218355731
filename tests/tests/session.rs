//! Session-level behaviour over the wire: connection limit (53300), unknown
//! database (3D000), SET TIME ZONE changing timestamp output and the
//! ParameterStatus, SHOW, and a server that keeps serving after a client
//! sends garbage.

use cohortdb_tests::{exec, simple_rows, TestServer};
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
    let err = tokio_postgres::connect(&bad_db, tokio_postgres::NoTls)
        .await
        .err()
        .expect("3D000");
    assert_eq!(err.code().map(|c| c.code()), Some("3D000"), "{err}");

    // connection limit: two connections fit, the third is refused with 53300
    let a = server.client().await;
    let b = server.client().await;
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
