//! Groups and tags over the wire: snapshot isolation of a refresh, static
//! edits under concurrency, a restart in the middle of a refresh, external
//! tags loaded with COPY, and the bitmap pushdown shown by EXPLAIN.

use std::time::Duration;

use bytes::Bytes;
use cohortdb_tests::{exec, expect_sqlstate, simple_rows, TestServer};
use futures::SinkExt;
use tokio_postgres::Client;

async fn one(client: &Client, sql: &str) -> String {
    simple_rows(client, sql).await[0][0]
        .clone()
        .unwrap_or_else(|| "NULL".into())
}

/// `n` contacts; the first `in_a` live in city 'A', the others in 'B'.
async fn contacts(client: &Client, n: usize, in_a: usize) {
    let values: Vec<String> = (1..=n)
        .map(|i| format!("('c{i}', '{}')", if i <= in_a { "A" } else { "B" }))
        .collect();
    exec(
        client,
        &format!(
            "INSERT INTO contacts (name, city) VALUES {}",
            values.join(",")
        ),
    )
    .await;
}

/// A dynamic group whose query sleeps `knobs.delay` seconds.
async fn slow_group(client: &Client) {
    exec(client, "CREATE TABLE knobs (delay DOUBLE)").await;
    exec(client, "INSERT INTO knobs (delay) VALUES (0)").await;
    exec(
        client,
        "CREATE GROUP group_slow AS SELECT c.id FROM contact_view c CROSS JOIN knobs k \
         WHERE c.city = 'A' AND pg_sleep(k.delay) IS NULL",
    )
    .await;
}

async fn set_delay(client: &Client, secs: f64) {
    exec(client, "DELETE FROM knobs").await;
    exec(
        client,
        &format!("INSERT INTO knobs (delay) VALUES ({secs})"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_see_the_old_membership_until_a_refresh_is_done() {
    let server = TestServer::start();
    let client = server.client().await;
    contacts(&client, 40, 10).await;
    slow_group(&client).await;
    assert_eq!(
        one(
            &client,
            "SELECT members FROM groups WHERE id = 'group_slow'"
        )
        .await,
        "10"
    );

    exec(&client, "UPDATE contacts SET city = 'A' WHERE id <= 30").await;
    set_delay(&client, 3.0).await;
    let refresher = server.client().await;
    let job = tokio::spawn(async move {
        exec(&refresher, "REFRESH GROUP group_slow").await;
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let reader = server.client().await;
    let status = one(&reader, "SELECT status FROM groups WHERE id = 'group_slow'").await;
    assert!(
        ["pending", "computing"].contains(&status.as_str()),
        "status during the refresh: {status}"
    );
    for sql in [
        "SELECT count(*) FROM contact_view WHERE group_slow",
        "SELECT count(*) FROM contact_view WHERE in_group(id, 'group_slow')",
        "SELECT members FROM groups WHERE id = 'group_slow'",
    ] {
        assert_eq!(one(&reader, sql).await, "10", "{sql}");
    }
    job.await.unwrap();
    assert_eq!(
        one(
            &reader,
            "SELECT count(*) FROM contact_view WHERE group_slow"
        )
        .await,
        "30"
    );
    assert_eq!(
        one(
            &reader,
            "SELECT status || ' ' || members FROM groups WHERE id = 'group_slow'"
        )
        .await,
        "done 30"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn static_edits_from_many_connections_all_apply() {
    let server = TestServer::start();
    let client = server.client().await;
    contacts(&client, 800, 0).await;
    exec(&client, "CREATE STATIC GROUP group_many").await;
    let mut jobs = Vec::new();
    for w in 0..8u64 {
        let c = server.client().await;
        jobs.push(tokio::spawn(async move {
            // each worker adds its 100 ids in 10 statements, then removes 10 of them
            for chunk in 0..10u64 {
                let ids: Vec<String> = (0..10)
                    .map(|k| format!("({})", w * 100 + chunk * 10 + k + 1))
                    .collect();
                exec(
                    &c,
                    &format!(
                        "ALTER GROUP group_many ADD CONTACTS VALUES {}",
                        ids.join(",")
                    ),
                )
                .await;
            }
            let ids: Vec<String> = (0..10)
                .map(|k| format!("({})", w * 100 + k * 10 + 1))
                .collect();
            exec(
                &c,
                &format!(
                    "ALTER GROUP group_many REMOVE CONTACTS VALUES {}",
                    ids.join(",")
                ),
            )
            .await;
        }));
    }
    for j in jobs {
        j.await.unwrap();
    }
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM contact_view WHERE group_many"
        )
        .await,
        "720"
    );
    assert_eq!(
        one(
            &client,
            "SELECT members FROM groups WHERE id = 'group_many'"
        )
        .await,
        "720"
    );
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM contact_view WHERE group_many AND id % 10 = 1"
        )
        .await,
        "0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_during_a_refresh_keeps_the_old_membership() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(dir.path(), &[]);
    let client = server.client().await;
    contacts(&client, 20, 5).await;
    slow_group(&client).await;
    exec(&client, "CREATE STATIC GROUP group_kept").await;
    exec(
        &client,
        "ALTER GROUP group_kept ADD CONTACTS VALUES (1), (2), (3)",
    )
    .await;
    exec(&client, "UPDATE contacts SET city = 'A'").await;
    set_delay(&client, 30.0).await;
    let refresher = server.client().await;
    let _job = tokio::spawn(async move {
        let _ = refresher.simple_query("REFRESH GROUP group_slow").await;
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        one(&client, "SELECT status FROM groups WHERE id = 'group_slow'").await,
        "computing"
    );
    server.kill9();
    drop(client);

    let server = TestServer::start_with(dir.path(), &[]);
    let client = server.client().await;
    let row = &simple_rows(
        &client,
        "SELECT status, members, error FROM groups WHERE id = 'group_slow'",
    )
    .await[0];
    assert_eq!(row[0].as_deref(), Some("failed"));
    assert_eq!(row[1].as_deref(), Some("5"));
    assert!(
        row[2].as_deref().unwrap_or("").contains("restart"),
        "{row:?}"
    );
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM contact_view WHERE group_slow"
        )
        .await,
        "5"
    );
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM contact_view WHERE group_kept"
        )
        .await,
        "3"
    );
    // it runs again
    set_delay(&client, 0.0).await;
    exec(&client, "REFRESH GROUP group_slow").await;
    assert_eq!(
        one(
            &client,
            "SELECT status || ' ' || members FROM groups WHERE id = 'group_slow'"
        )
        .await,
        "done 20"
    );
}

async fn copy_in(client: &Client, sql: &str, data: &str) -> u64 {
    let sink = client.copy_in(sql).await.unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from(data.to_string())).await.unwrap();
    sink.finish().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn external_tags_are_loaded_with_copy() {
    let server = TestServer::start();
    let client = server.client().await;
    contacts(&client, 3, 0).await;
    exec(
        &client,
        "CREATE TAG tag_sports TYPE VARCHAR[] COMMENT 'sports' EXTERNAL ID TYPE 'contact_id'",
    )
    .await;
    assert_eq!(
        one(
            &client,
            "SELECT kind || ' ' || type || ' ' || id_type FROM tags"
        )
        .await,
        "external VARCHAR[] contact_id"
    );
    let n = copy_in(
        &client,
        "COPY tag_sports FROM STDIN (FORMAT csv)",
        "1,\"football,basketball,pingpong\"\n2,tennis\n99,golf\n",
    )
    .await;
    // contact 99 does not exist: skipped
    assert_eq!(n, 2);
    let rows = simple_rows(
        &client,
        "SELECT id, tag_sports FROM contact_view ORDER BY id",
    )
    .await;
    assert_eq!(
        rows[0][1].as_deref(),
        Some("{football,basketball,pingpong}")
    );
    assert_eq!(rows[1][1].as_deref(), Some("{tennis}"));
    assert_eq!(rows[2][1], None);
    // a second file adds to (and overrides) the first
    copy_in(
        &client,
        "COPY tag_sports FROM STDIN (FORMAT csv)",
        "3,golf\n2,\"tennis,golf\"\n",
    )
    .await;
    assert_eq!(
        one(
            &client,
            "SELECT value || ':' || contacts FROM tag_history WHERE tag_id = 'tag_sports' AND value = 'golf'"
        )
        .await,
        "golf:2"
    );
    expect_sqlstate(&client, "REFRESH TAG tag_sports", "0A000").await;
    expect_sqlstate(
        &client,
        "CREATE TAG tag_x TYPE VARCHAR EXTERNAL ID TYPE 'fax.number'",
        "22023",
    )
    .await;
}

/// Identities keyed by `wechat.openid` (created by an identity-keyed insert)
/// map imported rows to contacts; unknown openids are skipped.
#[tokio::test(flavor = "multi_thread")]
async fn external_tags_resolve_openids() {
    let server = TestServer::start();
    let client = server.client().await;
    contacts(&client, 3, 0).await;
    // Two more contacts known by their WeChat openid (identity-keyed insert).
    exec(
        &client,
        "INSERT INTO contacts (name, openid, channel_id) VALUES \
         ('Alice', 'o-alice', 'wx_oa'), ('Bob', 'o-bob', 'wx_oa')",
    )
    .await;
    exec(
        &client,
        "CREATE TAG tag_sports TYPE VARCHAR[] EXTERNAL ID TYPE 'wechat.openid'",
    )
    .await;
    let n = copy_in(
        &client,
        "COPY tag_sports FROM STDIN (FORMAT csv)",
        "o-alice,\"football,basketball\"\no-bob,tennis\no-unknown,golf\n",
    )
    .await;
    assert_eq!(n, 2);
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM contact_view WHERE tag_sports IS NOT NULL"
        )
        .await,
        "2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_shows_the_bitmap_filter() {
    let server = TestServer::start();
    let client = server.client().await;
    contacts(&client, 10, 4).await;
    exec(
        &client,
        "CREATE GROUP group_a AS SELECT id FROM contact_view WHERE city = 'A'",
    )
    .await;
    exec(&client, "CREATE STATIC GROUP group_b").await;
    exec(
        &client,
        "ALTER GROUP group_b ADD CONTACTS VALUES (1), (2), (9)",
    )
    .await;
    let plan: String = simple_rows(
        &client,
        "EXPLAIN SELECT count(*) FROM contact_view WHERE group_a AND NOT group_b",
    )
    .await
    .into_iter()
    .flatten()
    .flatten()
    .collect::<Vec<_>>()
    .join("\n");
    assert!(plan.contains("CohortBitmapFilter"), "{plan}");
    assert!(plan.contains("contacts=2"), "{plan}");
    assert!(!plan.contains("FilterExec"), "{plan}");
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM contact_view WHERE group_a AND NOT group_b"
        )
        .await,
        "2"
    );
    let plan: String = simple_rows(
        &client,
        "EXPLAIN SELECT name FROM contact_view WHERE in_group(id, 'group_b')",
    )
    .await
    .into_iter()
    .flatten()
    .flatten()
    .collect::<Vec<_>>()
    .join("\n");
    assert!(plan.contains("CohortBitmapFilter"), "{plan}");
}
