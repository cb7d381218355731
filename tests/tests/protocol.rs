//! Protocol behaviour over the wire: cancel requests and `statement_timeout`
//! (57014), errors in the extended protocol skip messages until Sync, binary
//! `COPY FROM STDIN`, users with SCRAM-SHA-256 (28P01 on a wrong password),
//! TLS with `sslmode=require`, session statements drivers send on reset,
//! SQLSTATEs of common mistakes, portal row limits and suspension, failed
//! transaction blocks (25P02), and a malformed message ending only its own
//! connection.

use std::time::{Duration, Instant};

use cohortdb_tests::{exec, expect_sqlstate, simple_rows, TestServer};
use futures::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn cancel_and_statement_timeout() {
    let server = TestServer::start();
    let c = server.client().await;
    // cancel request from another connection stops pg_sleep with 57014
    let token = c.cancel_token();
    let t0 = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel request");
    });
    let err = c
        .simple_query("SELECT pg_sleep(30)")
        .await
        .err()
        .expect("cancelled");
    canceller.await.expect("canceller");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // the connection keeps working
    let rows = simple_rows(&c, "SELECT 1").await;
    assert_eq!(rows[0][0].as_deref(), Some("1"));

    // statement_timeout, in both protocols
    exec(&c, "SET statement_timeout = 300").await;
    let t0 = Instant::now();
    expect_sqlstate(&c, "SELECT pg_sleep(10)", "57014").await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    let err = c
        .query("SELECT pg_sleep($1::float8)", &[&10.0f64])
        .await
        .err()
        .expect("timeout");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    exec(&c, "SET statement_timeout = 0").await;
    let rows = simple_rows(&c, "SELECT pg_sleep(0.1)").await;
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn errors_until_sync_and_sqlstates() {
    let server = TestServer::start();
    let c = server.client().await;
    // a pipeline whose first statement fails: the rest is skipped until Sync,
    // and the next request works
    let (a, b) = tokio::join!(
        c.query("SELECT * FROM no_such_table", &[]),
        c.query("SELECT 1::bigint", &[])
    );
    assert_eq!(
        a.err().and_then(|e| e.code().map(|c| c.code().to_string())),
        Some("42P01".to_string())
    );
    let _ = b;
    let row = c
        .query_one("SELECT 2::bigint", &[])
        .await
        .expect("after sync");
    assert_eq!(row.get::<_, i64>(0), 2);

    for (sql, code) in [
        ("SELEC 1", "42601"),
        ("SELECT * FROM nowhere", "42P01"),
        ("SELECT nosuchcolumn FROM contacts", "42703"),
        ("SELECT no_such_function(1)", "42883"),
        ("SELECT 'abc'::bigint", "22P02"),
        ("SELECT current_setting('no_such_setting')", "42704"),
    ] {
        expect_sqlstate(&c, sql, code).await;
        // Parse in the extended protocol maps the same way
        let err = c.prepare(sql).await.err();
        if let Some(err) = err {
            assert_eq!(err.code().map(|c| c.code()), Some(code), "{sql}: {err}");
        }
    }

    // what drivers send on connect and on pool reset
    for sql in [
        "SET extra_float_digits = 3",
        "SET application_name = 'test'",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SELECT pg_advisory_unlock_all()",
        "CLOSE ALL",
        "UNLISTEN *",
        "RESET ALL",
        "DISCARD ALL",
        "BEGIN",
        "COMMIT",
    ] {
        exec(&c, sql).await;
    }
    let rows = simple_rows(&c, "SHOW TRANSACTION ISOLATION LEVEL").await;
    assert_eq!(rows[0][0].as_deref(), Some("read committed"));
    let rows = simple_rows(&c, "SELECT set_config('application_name', 'x', false)").await;
    assert_eq!(rows[0][0].as_deref(), Some("x"));
    let rows = simple_rows(&c, "SELECT current_setting('application_name')").await;
    assert_eq!(rows[0][0].as_deref(), Some("x"));
    let rows = simple_rows(&c, "SELECT version()").await;
    let v = rows[0][0].clone().unwrap_or_default();
    assert!(
        v.starts_with("PostgreSQL 16.") && v.contains("cohortdb"),
        "{v}"
    );

    // a malformed message ends only that connection
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connect");
    raw.write_all(&[0, 0, 0, 3, 1, 2, 3, 4])
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf)).await;
    let rows = simple_rows(&c, "SELECT 1").await;
    assert_eq!(rows[0][0].as_deref(), Some("1"));
}

#[tokio::test]
async fn binary_copy_from_stdin() {
    let server = TestServer::start();
    let c = server.client().await;
    let sink = c
        .copy_in("COPY contacts (name, email, birthday) FROM STDIN (FORMAT binary)")
        .await
        .expect("copy starts");
    let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
    data.extend_from_slice(&0i32.to_be_bytes());
    data.extend_from_slice(&0i32.to_be_bytes());
    for (name, email, days) in [("Bin", Some("bin@example.com"), 9000i32), ("Ary", None, 0)] {
        data.extend_from_slice(&3i16.to_be_bytes());
        data.extend_from_slice(&(name.len() as i32).to_be_bytes());
        data.extend_from_slice(name.as_bytes());
        match email {
            Some(e) => {
                data.extend_from_slice(&(e.len() as i32).to_be_bytes());
                data.extend_from_slice(e.as_bytes());
            }
            None => data.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        data.extend_from_slice(&4i32.to_be_bytes());
        data.extend_from_slice(&days.to_be_bytes());
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(data)).await.expect("send");
    let n = sink.as_mut().finish().await.expect("copy done");
    assert_eq!(n, 2);
    let rows = simple_rows(
        &c,
        "SELECT name, email, birthday FROM contacts ORDER BY name",
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("Ary"));
    assert_eq!(rows[0][1], None);
    assert_eq!(rows[0][2].as_deref(), Some("2000-01-01"));
    assert_eq!(rows[1][2].as_deref(), Some("2024-08-22"));
}

#[tokio::test]
async fn scram_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = TestServer::start_with_password(&data, "s3cret");
    let base = format!("host=127.0.0.1 port={} dbname=cohortdb", server.port());
    let connect = |extra: String| async move {
        tokio_postgres::connect(&extra, tokio_postgres::NoTls)
            .await
            .map(|(c, conn)| {
                tokio::spawn(conn);
                c
            })
    };
    // no password, wrong password: 28P01
    for cs in [
        format!("{base} user=admin password=wrong"),
        format!("{base} user=nobody password=x"),
    ] {
        let err = connect(cs).await.err().expect("refused");
        assert_eq!(err.code().map(|c| c.code()), Some("28P01"), "{err}");
    }
    let admin = connect(format!("{base} user=admin password=s3cret"))
        .await
        .expect("admin logs in");
    exec(&admin, "CREATE USER analyst WITH PASSWORD 'pw1'").await;
    expect_sqlstate(&admin, "CREATE USER analyst WITH PASSWORD 'x'", "42710").await;
    let analyst = connect(format!("{base} user=analyst password=pw1"))
        .await
        .expect("analyst logs in");
    // a user with no role reads nothing
    expect_sqlstate(&analyst, "SELECT count(*) FROM contacts", "42501").await;
    exec(&admin, "GRANT cohort_analyst TO analyst").await;
    let rows = simple_rows(&analyst, "SELECT count(*) FROM contacts").await;
    assert_eq!(rows[0][0].as_deref(), Some("0"));
    exec(&admin, "ALTER USER analyst PASSWORD 'pw2'").await;
    assert!(connect(format!("{base} user=analyst password=pw1"))
        .await
        .is_err());
    connect(format!("{base} user=analyst password=pw2"))
        .await
        .expect("new password");
    exec(&admin, "DROP USER analyst").await;
    let err = connect(format!("{base} user=analyst password=pw2"))
        .await
        .err()
        .expect("dropped");
    assert_eq!(err.code().map(|c| c.code()), Some("28P01"), "{err}");
    // unknown database
    let err = connect(format!(
        "host=127.0.0.1 port={} dbname=nosuch user=admin password=s3cret",
        server.port()
    ))
    .await
    .err()
    .expect("3D000");
    assert_eq!(err.code().map(|c| c.code()), Some("3D000"), "{err}");
    // psql with PGPASSWORD
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "admin",
            "-d",
            "cohortdb",
            "-c",
            "SELECT 42",
        ])
        .arg("-p")
        .arg(server.port().to_string())
        .env("PGPASSWORD", "s3cret")
        .output()
        .expect("psql (install with scripts/setup.sh)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_sslmode_require() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (part of Debian's base system)");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let config = dir.path().join("cohortdb.toml");
    std::fs::write(
        &config,
        format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .expect("config");
    let server = TestServer::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8")],
    );
    for mode in ["require", "prefer"] {
        let out = std::process::Command::new("psql")
            .args(["-X", "-At", "-c", "SELECT 'tls ok'"])
            .arg(format!(
                "host=127.0.0.1 port={} user=admin dbname=cohortdb sslmode={mode}",
                server.port()
            ))
            .output()
            .expect("psql");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("tls ok"),
            "sslmode={mode}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // the python driver agrees the connection is encrypted
    let out = std::process::Command::new("psql")
        .args(["-X", "-c", "\\conninfo"])
        .arg(format!(
            "host=127.0.0.1 port={} user=admin dbname=cohortdb sslmode=require",
            server.port()
        ))
        .output()
        .expect("psql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SSL connection"), "{stdout}");
}

/// Execute with a row limit suspends the portal (PortalSuspended) and the
/// next Execute continues where it stopped; binary parameters and results
/// round-trip through a portal.
#[tokio::test]
async fn portal_row_limits_and_suspension() {
    let server = TestServer::start();
    let mut c = server.client().await;
    let tx = c.transaction().await.expect("begin");
    let stmt = tx
        .prepare("SELECT g, g * $1::bigint AS x FROM generate_series(1, 7) AS t(g) ORDER BY g")
        .await
        .expect("prepare");
    let portal = tx.bind(&stmt, &[&10i64]).await.expect("bind");
    let mut seen = Vec::new();
    let mut fetches = 0;
    loop {
        let rows = tx.query_portal(&portal, 3).await.expect("execute 3 rows");
        fetches += 1;
        if rows.is_empty() {
            break;
        }
        assert!(rows.len() <= 3, "{} rows for a limit of 3", rows.len());
        seen.extend(
            rows.iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1))),
        );
    }
    assert_eq!(seen, (1..=7).map(|g| (g, g * 10)).collect::<Vec<_>>());
    assert_eq!(fetches, 4, "3 + 3 + 1 rows, then an empty fetch");
    tx.commit().await.expect("commit");
}

/// After an error inside `BEGIN ... `, statements are refused with 25P02
/// until ROLLBACK (or COMMIT, which reports ROLLBACK), in both protocols;
/// ReadyForQuery's status follows the block.
#[tokio::test]
async fn failed_transaction_blocks() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(&c, "BEGIN").await;
    expect_sqlstate(&c, "SELECT nosuch FROM contacts", "42703").await;
    expect_sqlstate(&c, "SELECT 1", "25P02").await;
    let err = c
        .query("SELECT 1", &[])
        .await
        .err()
        .expect("25P02 over Parse/Bind/Execute");
    assert_eq!(err.code().map(|s| s.code()), Some("25P02"), "{err}");
    let msgs = c
        .simple_query("COMMIT")
        .await
        .expect("COMMIT ends the block");
    let tag = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(
        tag,
        Some(0),
        "COMMIT of a failed block completes (as ROLLBACK)"
    );
    let rows = simple_rows(&c, "SELECT 1").await;
    assert_eq!(rows[0][0].as_deref(), Some("1"));
    // ROLLBACK in the same query string ends the block for what follows it
    exec(&c, "BEGIN").await;
    expect_sqlstate(&c, "SELECT 1/0", "22012").await;
    let msgs = c
        .simple_query("ROLLBACK; SELECT 2")
        .await
        .expect("rollback then select");
    assert!(msgs
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("2"))));
}

/// `$n` in statements DataFusion does not plan: Describe types them from
/// the procedure's arguments and the INSERT's target columns, answers
/// ParameterDescription + NoData where no rows come back, and Bind runs
/// them with the values (tokio-postgres encodes the values in binary, as
/// Describe said).
#[tokio::test]
async fn bound_parameters_in_procedures_and_identity_inserts() {
    use tokio_postgres::types::Type;
    let server = TestServer::start();
    let c = server.client().await;
    exec(&c, "ALTER TABLE events ADD COLUMN p_amount DOUBLE").await;

    let identify = c
        .prepare("CALL identify($1, $2, $3)")
        .await
        .expect("prepare");
    assert_eq!(identify.params(), &[Type::TEXT, Type::TEXT, Type::TEXT]);
    let names: Vec<&str> = identify.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["contact_id", "created"]);
    let row = c
        .query_one(&identify, &[&"wxapp_shop", &"u-1", &r#"{"name": "Li"}"#])
        .await
        .expect("identify");
    let (id, created): (i64, bool) = (row.get(0), row.get(1));
    assert!(created);
    let row = c
        .query_one("CALL identify($1, $2)", &[&"wxapp_shop", &"u-1"])
        .await
        .expect("identify again");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, bool>(1)), (id, false));

    let merge = c
        .prepare("CALL merge_contacts($1, $2)")
        .await
        .expect("prepare");
    assert_eq!(merge.params(), &[Type::INT8, Type::INT8]);
    assert!(merge.columns().is_empty());
    let other: i64 = c
        .query_one("CALL identify($1, $2)", &[&"wxapp_shop", &"u-2"])
        .await
        .expect("identify")
        .get(0);
    c.execute(&merge, &[&id, &other]).await.expect("merge");
    let err = c
        .execute(&merge, &[&id, &999_999i64])
        .await
        .expect_err("no such contact");
    assert_eq!(err.code().map(|c| c.code()), Some("42704"), "{err}");

    let insert = c
        .prepare(
            "INSERT INTO events (external_id, channel_id, event, event_date, p_amount) \
             VALUES ($1, $2, 'custom_order', $3, $4)",
        )
        .await
        .expect("prepare");
    assert_eq!(
        insert.params(),
        &[Type::TEXT, Type::TEXT, Type::TIMESTAMPTZ, Type::FLOAT8]
    );
    assert!(insert.columns().is_empty());
    let at = chrono::DateTime::parse_from_rfc3339("2025-06-01T10:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let n = c
        .execute(&insert, &[&"u-2", &"wxapp_shop", &at, &9.5f64])
        .await
        .expect("insert");
    assert_eq!(n, 1);
    let row = c
        .query_one(
            "SELECT contact_id, event_date, p_amount FROM events WHERE event = 'custom_order'",
            &[],
        )
        .await
        .expect("select");
    assert_eq!(
        row.get::<_, i64>(0),
        id,
        "u-2 was merged into u-1's contact"
    );
    assert_eq!(row.get::<_, chrono::DateTime<chrono::Utc>>(1), at);
    assert_eq!(row.get::<_, f64>(2), 9.5);

    // RETURNING with bound parameters: the contact the openid resolved to
    let returning = c
        .prepare(
            "INSERT INTO events (external_id, channel_id, event, event_date) VALUES ($1, $2, 'app_launch', $3) RETURNING contact_id, event_day",
        )
        .await
        .expect("prepare RETURNING");
    assert_eq!(returning.columns().len(), 2);
    assert_eq!(returning.columns()[0].type_(), &Type::INT8);
    let row = c
        .query_one(&returning, &[&"u-1", &"wxapp_shop", &at])
        .await
        .expect("insert RETURNING");
    assert_eq!(row.get::<_, i64>(0), id);
    assert_eq!(
        row.get::<_, chrono::NaiveDate>(1),
        chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()
    );

    // SQL-level PREPARE/EXECUTE takes the same path
    exec(&c, "PREPARE who (text, text) AS CALL identify($1, $2)").await;
    let rows = simple_rows(&c, "EXECUTE who('wxapp_shop', 'u-1')").await;
    assert_eq!(rows[0][0].as_deref(), Some(id.to_string().as_str()));
    assert_eq!(rows[0][1].as_deref(), Some("f"));
}

/// `repeat`/`lpad`/`rpad` results over 1 GB are refused with 54000 before
/// they are built (several at once), and the server keeps answering.
#[tokio::test]
async fn oversize_string_results_are_refused() {
    let server = TestServer::start();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(server.client().await);
    }
    let sqls = [
        "SELECT length(repeat('x', 2000000000))",
        "SELECT length(lpad('x', 1500000000))",
        "SELECT length(rpad('x', 400000000, '中'))",
    ];
    let mut tasks = Vec::new();
    for (c, sql) in clients.into_iter().zip(sqls) {
        tasks.push(tokio::spawn(async move {
            let err = expect_sqlstate(&c, sql, "54000").await;
            assert!(err.message.contains("requested length too large"), "{err}");
        }));
    }
    for t in tasks {
        t.await.expect("oversize query");
    }
    let c = server.client().await;
    let rows = simple_rows(&c, "SELECT length(repeat('ab', 1000))").await;
    assert_eq!(rows[0][0].as_deref(), Some("2000"));
}

/// A reserved key word where a relation name goes is a syntax error
/// (42601), in both protocols, as in PostgreSQL; quoted, it is a name.
#[tokio::test]
async fn reserved_words_as_relation_names_are_syntax_errors() {
    let server = TestServer::start();
    let c = server.client().await;
    expect_sqlstate(&c, "SELECT FROM WHERE", "42601").await;
    let err = c
        .prepare("SELECT * FROM select")
        .await
        .expect_err("syntax error");
    assert_eq!(err.code().map(|c| c.code()), Some("42601"), "{err}");
    let err = c
        .simple_query("SELECT * FROM \"where\"")
        .await
        .expect_err("no such table");
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");
}
