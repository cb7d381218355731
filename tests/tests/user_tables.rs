//! Concurrent `UPDATE … SET x = x + 1` on a user table from several
//! connections loses no increment (read-modify-write runs under one lock),
//! and the rows survive a restart.

use cohortdb_tests::{exec, simple_rows, TestServer};

#[tokio::test]
async fn concurrent_increments_are_not_lost() {
    let data = tempfile::tempdir().expect("data dir");
    let mut server = TestServer::start_with(data.path(), &[]);
    let c = server.client().await;
    exec(&c, "CREATE TABLE counters (id BIGINT, n BIGINT)").await;
    exec(&c, "INSERT INTO counters VALUES (1, 0), (2, 0)").await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let n = client
                    .execute(
                        "UPDATE counters SET n = n + 1 WHERE id = $1",
                        &[&(1 + (w % 2) as i64)],
                    )
                    .await
                    .expect("update");
                assert_eq!(n, 1);
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let rows = simple_rows(&c, "SELECT id, n FROM counters ORDER BY id").await;
    assert_eq!(rows[0][1].as_deref(), Some("50"), "{rows:?}");
    assert_eq!(rows[1][1].as_deref(), Some("50"), "{rows:?}");
    drop(c);
    server.stop();
    let server = TestServer::start_with(data.path(), &[]);
    let c = server.client().await;
    let rows = simple_rows(&c, "SELECT sum(n) FROM counters").await;
    assert_eq!(rows[0][0].as_deref(), Some("100"));
}

/// `NOT NULL` (and primary key columns) refuse a NULL with 23502 on every
/// write path, naming the column, and the statement changes nothing; the
/// constraint survives a restart.
#[tokio::test]
async fn not_null_columns_refuse_nulls() {
    use cohortdb_tests::expect_sqlstate;
    use futures::SinkExt;
    let data = tempfile::tempdir().expect("data dir");
    let mut server = TestServer::start_with(data.path(), &[]);
    let c = server.client().await;
    exec(
        &c,
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner TEXT NOT NULL, note TEXT NULL)",
    )
    .await;
    exec(&c, "INSERT INTO accounts VALUES (1, 'a', NULL)").await;
    for sql in [
        "INSERT INTO accounts VALUES (2, NULL, 'x')",
        "INSERT INTO accounts (id, note) VALUES (2, 'x')",
        "INSERT INTO accounts SELECT 2, NULL, 'x'",
        "INSERT INTO accounts VALUES (2, 'b', NULL), (3, NULL, NULL)",
        "UPDATE accounts SET owner = NULL WHERE id = 1",
    ] {
        let e = expect_sqlstate(&c, sql, "23502").await;
        assert!(e.message.contains("\"owner\""), "{sql}: {e}");
    }
    let bound = c
        .prepare("INSERT INTO accounts VALUES ($1, $2, NULL)")
        .await
        .expect("prepare");
    let none: Option<String> = None;
    let e = c.execute(&bound, &[&4i64, &none]).await.unwrap_err();
    assert_eq!(e.code().map(|s| s.code()), Some("23502"));
    {
        let sink = c
            .copy_in("COPY accounts FROM STDIN (FORMAT csv)")
            .await
            .expect("copy");
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"5,e,\n6,,\n"))
            .await
            .expect("send");
        let e = sink.finish().await.unwrap_err();
        assert_eq!(e.code().map(|s| s.code()), Some("23502"), "{e}");
    }
    assert_eq!(
        simple_rows(&c, "SELECT id, owner, note FROM accounts ORDER BY id").await,
        vec![vec![Some("1".to_string()), Some("a".to_string()), None]]
    );
    server.stop();
    let server = TestServer::start_with(data.path(), &[]);
    let c = server.client().await;
    expect_sqlstate(&c, "INSERT INTO accounts (id) VALUES (9)", "23502").await;
    exec(&c, "INSERT INTO accounts (id, owner) VALUES (9, 'i')").await;
}
