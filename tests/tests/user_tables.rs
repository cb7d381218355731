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
