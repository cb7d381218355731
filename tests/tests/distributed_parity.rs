//! Scale-out parity: seeded events (contacts spread over many days and
//! files, equal timestamps, window and day edges in a non-UTC session time
//! zone) are exported with `CALL export_events`; each statement's SQL form
//! (`cohortdb sql-form`) run by plain DataFusion over the
//! Parquet files, at 1 and several partitions, must equal the server's
//! answer row for row. The export round-trips (counts and rows equal).
//! `dist/tests/ballista_parity.rs` runs the same forms on a Ballista cluster.

use std::path::Path;

use cohortdb_tests::scale_out::{batches_text, load_seeded, norm_rows, sql_form, STATEMENTS, TZ};
use cohortdb_tests::{exec, expect_sqlstate, simple_rows, TestServer};
use datafusion::prelude::SessionContext;

async fn parquet_context(dir: &Path, partitions: usize) -> SessionContext {
    let ctx = cohortdb_dist::files::local_context(dir, partitions)
        .await
        .unwrap();
    // small batches: every accumulator sees many updates and merges
    ctx.sql("SET datafusion.execution.batch_size = 64")
        .await
        .unwrap();
    ctx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_forms_over_exported_parquet_equal_the_server() {
    let server = TestServer::start();
    let client = server.client().await;
    load_seeded(&client).await;
    exec(&client, &format!("SET timezone = '{TZ}'")).await;
    let out = tempfile::tempdir().unwrap();
    let summary = simple_rows(
        &client,
        &format!("CALL export_events('{}')", out.path().display()),
    )
    .await;
    let total = simple_rows(
        &client,
        "SELECT count(*), count(DISTINCT event_day) FROM events",
    )
    .await;
    assert_eq!(summary[0][2], total[0][0], "exported events: {summary:?}");
    assert_eq!(summary[0][1], total[0][1], "exported days: {summary:?}");
    assert!(out.path().join("_SUCCESS").exists());
    let days = std::fs::read_dir(out.path().join("events"))
        .unwrap()
        .count();
    assert!(days >= 15, "{days} day directories");

    let contexts = [
        parquet_context(out.path(), 1).await,
        parquet_context(out.path(), 4).await,
    ];
    for stmt in STATEMENTS {
        let expected = norm_rows(simple_rows(&client, stmt).await);
        assert!(!expected.is_empty(), "{stmt}");
        let form = sql_form(stmt, out.path());
        for (i, ctx) in contexts.iter().enumerate() {
            let got = ctx.sql(&form).await.unwrap().collect().await.unwrap();
            let got = norm_rows(batches_text(&got));
            assert_eq!(
                got,
                expected,
                "{stmt}\nat {} partitions; SQL form:\n{form}",
                [1, 4][i]
            );
        }
    }

    // Round trip: every event, every contact, the same rows.
    let ctx = &contexts[1];
    let n = ctx
        .sql("SELECT count(*) FROM events")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(batches_text(&n)[0][0], total[0][0]);
    let sample = "SELECT contact_id, event, CAST(event_date AS BIGINT) / 1000, CAST(event_day AS VARCHAR), p_price \
                  FROM events WHERE contact_id % 37 = 1 ORDER BY 1, 3, 2, 5";
    let server_sample = simple_rows(
        &client,
        "SELECT contact_id, event, CAST(extract(epoch FROM event_date) AS BIGINT), CAST(event_day AS TEXT), p_price \
         FROM events WHERE contact_id % 37 = 1 ORDER BY 1, 3, 2, 5",
    )
    .await;
    let got = batches_text(&ctx.sql(sample).await.unwrap().collect().await.unwrap());
    assert_eq!(norm_rows(got), norm_rows(server_sample));
    let contacts = batches_text(
        &ctx.sql("SELECT count(*), count(group_buyers) FILTER (WHERE group_buyers) FROM contacts")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    );
    let server_contacts = simple_rows(
        &client,
        "SELECT count(*), count(*) FILTER (WHERE group_buyers) FROM contact_view",
    )
    .await;
    assert_eq!(contacts, server_contacts);
}

#[tokio::test]
async fn export_refuses_bad_arguments_and_unwritable_directories() {
    let server = TestServer::start();
    let client = server.client().await;
    exec(&client, "INSERT INTO contacts (id, name) VALUES (1, 'a')").await;
    exec(
        &client,
        "INSERT INTO events (contact_id, event, event_date) VALUES (1, 'app_launch', '2025-06-01 10:00:00+00')",
    )
    .await;
    expect_sqlstate(&client, "CALL export_events()", "22023").await;
    expect_sqlstate(
        &client,
        "CALL export_events('/tmp/x', '2025-13-01')",
        "22023",
    )
    .await;
    // a regular file where the directory should be
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = expect_sqlstate(
        &client,
        &format!("CALL export_events('{}')", file.display()),
        "58030",
    )
    .await;
    assert!(e.message.contains("cannot create"), "{}", e.message);
    // a day range without events writes contacts and _SUCCESS only
    let out = dir.path().join("out");
    let rows = simple_rows(
        &client,
        &format!(
            "CALL export_events('{}', '2025-07-01', '2025-07-31')",
            out.display()
        ),
    )
    .await;
    assert_eq!(rows[0][1].as_deref(), Some("0"), "{rows:?}");
    assert_eq!(rows[0][3].as_deref(), Some("1"), "{rows:?}");
    assert!(out.join("_SUCCESS").exists());
    assert!(out.join("contacts/part-0.parquet").exists());
    assert_eq!(std::fs::read_dir(out.join("events")).unwrap().count(), 0);
}
