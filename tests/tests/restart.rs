//! A clean stop (SIGTERM → exit 0) and a restart on the same data directory
//! keep everything: custom fields and their values, event types and
//! properties, user tables, contacts, events (INSERT and COPY), and the id
//! sequence.

use bytes::Bytes;
use cohortdb_tests::{exec, expect_sqlstate, simple_rows, TestServer, TextRows};
use futures::SinkExt;
use tokio_postgres::Client;

/// Queries whose results must be identical before and after the restart.
const SNAPSHOT_QUERIES: &[&str] = &[
    "SELECT id, name, nickname, gender, mobile_phone, email, city, comment, \
     p_level, p_score, p_joined, is_identified, created_at, updated_at, first_seen_at \
     FROM contacts ORDER BY id",
    "SELECT contact_id, event, event_date, event_day, p_amount, p_page_title \
     FROM events ORDER BY event_date, contact_id, event",
    "SELECT event, display_name, channel_id, preset, parent_event FROM event_types ORDER BY event",
    "SELECT property, display_name, data_type, preset FROM event_properties ORDER BY property",
    "SELECT sku_id, colour FROM sku_dim ORDER BY sku_id",
    "SELECT column_name, data_type FROM information_schema.columns \
     WHERE table_name = 'contacts' ORDER BY ordinal_position",
    "SELECT column_name, data_type FROM information_schema.columns \
     WHERE table_name = 'events' ORDER BY ordinal_position",
    "SELECT e.event_alias, c.name, c.p_level, count(*), sum(e.p_amount) \
     FROM event_view e JOIN contact_view c ON e.contact_id = c.id \
     GROUP BY e.event_alias, c.name, c.p_level ORDER BY 1, 2",
    "SELECT d.colour, count(*) FROM event_view e JOIN sku_dim d ON e.s_sku_id = d.sku_id \
     GROUP BY d.colour ORDER BY d.colour",
];

const COPY_ROWS: usize = 100;

async fn populate(client: &Client) {
    for sql in [
        "ALTER TABLE contacts ADD COLUMN p_level VARCHAR",
        "ALTER TABLE contacts ADD COLUMN p_score BIGINT",
        "ALTER TABLE contacts ADD COLUMN p_joined DATE",
        "ALTER TABLE events ADD COLUMN p_amount DOUBLE",
        "INSERT INTO event_properties (property, display_name, data_type) \
         VALUES ('p_page_title', '页面标题', 'VARCHAR')",
        "INSERT INTO event_types (event, display_name) VALUES ('signup_form', '提交表单')",
        "CREATE TABLE sku_dim (sku_id VARCHAR, colour VARCHAR)",
        "INSERT INTO sku_dim (sku_id, colour) VALUES ('010289', 'red'), ('010290', 'blue')",
        "INSERT INTO contacts (name, gender, mobile_phone, email, city, p_level, p_score, p_joined) VALUES \
         ('Alice', 'female', '+86 138-0013-8000', 'alice@example.com', 'Shanghai', 'gold', 42, '2024-02-29'), \
         ('Bob', 'male', '13900139000', 'bob@example.com', 'Beijing', 'silver', 7, '2025-01-15')",
        "INSERT INTO contacts (nickname, comment) VALUES ('ghost', 'anonymous visitor')",
        "UPDATE contacts SET city = 'Hangzhou' WHERE id = 2",
        "INSERT INTO events (contact_id, event, event_date, p_amount, p_page_title, s_sku_id) VALUES \
         (1, 'signup_form', '2025-06-01 10:00:00+00', NULL, '注册', NULL), \
         (1, 'custom_order', '2025-06-01 10:05:00.250+00', 99.5, NULL, '010289'), \
         (2, 'add_to_cart', '2025-06-02 23:30:00+00', NULL, NULL, '010290')",
    ] {
        exec(client, sql).await;
    }

    // COPY a batch of events too (csv; an empty field is NULL).
    let mut data = String::new();
    for i in 0..COPY_ROWS {
        let contact = 1 + i % 3;
        let amount = if i % 2 == 0 {
            format!("{}.5", i)
        } else {
            String::new()
        };
        data.push_str(&format!(
            "{contact},app_launch,2025-05-{:02} {:02}:{:02}:00+00,{amount}\n",
            1 + i / 24 % 28,
            i % 24,
            i % 60
        ));
    }
    let sink: tokio_postgres::CopyInSink<Bytes> = client
        .copy_in("COPY events (contact_id, event, event_date, p_amount) FROM STDIN (FORMAT csv)")
        .await
        .unwrap_or_else(|e| panic!("COPY failed: {}", cohortdb_tests::SqlError::from(&e)));
    let mut sink = Box::pin(sink);
    sink.send(Bytes::from(data))
        .await
        .unwrap_or_else(|e| panic!("COPY data failed: {}", cohortdb_tests::SqlError::from(&e)));
    let copied = sink
        .as_mut()
        .finish()
        .await
        .unwrap_or_else(|e| panic!("COPY failed: {}", cohortdb_tests::SqlError::from(&e)));
    assert_eq!(copied, COPY_ROWS as u64, "COPY reported {copied} rows");
}

async fn snapshot(client: &Client) -> Vec<TextRows> {
    let mut out = Vec::new();
    for sql in SNAPSHOT_QUERIES {
        out.push(simple_rows(client, sql).await);
    }
    out
}

fn one(rows: &TextRows) -> Option<&str> {
    rows.first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_keeps_data_and_metadata() {
    let data = tempfile::Builder::new()
        .prefix("cohortdb-restart-")
        .tempdir()
        .expect("temp dir");

    let mut server = TestServer::start_with(data.path(), &[]);
    let client = server.client().await;
    populate(&client).await;
    let before = snapshot(&client).await;

    // The snapshot is not vacuous.
    assert_eq!(
        before[0].len(),
        3,
        "contacts before restart: {:?}",
        before[0]
    );
    assert_eq!(before[1].len(), 3 + COPY_ROWS, "events before restart");
    assert!(
        before[2].len() >= 26,
        "event types before restart: {:?}",
        before[2]
    );
    assert_eq!(before[4].len(), 2, "sku_dim before restart");
    assert_eq!(
        before[0][0][4].as_deref(),
        Some("+8613800138000"),
        "normalised phone before restart"
    );

    drop(client);
    server.stop();

    let server = TestServer::start_with(data.path(), &[]);
    let client = server.client().await;
    let after = snapshot(&client).await;
    for ((sql, b), a) in SNAPSHOT_QUERIES.iter().zip(&before).zip(&after) {
        assert_eq!(b, a, "result changed across a clean restart\n[SQL] {sql}");
    }

    // Metadata still enforced after the restart.
    expect_sqlstate(
        &client,
        "ALTER TABLE contacts ADD COLUMN p_level VARCHAR",
        "42701",
    )
    .await;
    expect_sqlstate(
        &client,
        "INSERT INTO event_types (event, display_name) VALUES ('signup_form', 'again')",
        "23505",
    )
    .await;
    expect_sqlstate(
        &client,
        "INSERT INTO events (contact_id, event, event_date, p_amount) \
         VALUES (1, 'signup_form', '2025-06-09 00:00:00+00', 'abc')",
        "22P02",
    )
    .await;

    // Writes continue; the id sequence is not reset.
    exec(&client, "INSERT INTO contacts (name) VALUES ('Dora')").await;
    let rows = simple_rows(&client, "SELECT id FROM contacts WHERE name = 'Dora'").await;
    assert_eq!(one(&rows), Some("4"), "next contact id after restart");
    exec(
        &client,
        "INSERT INTO events (contact_id, event, event_date, p_amount) \
         VALUES (4, 'signup_form', '2025-06-09 00:00:00+00', 1.25)",
    )
    .await;
    let rows = simple_rows(
        &client,
        "SELECT count(*) FROM event_view WHERE event_alias = '提交表单'",
    )
    .await;
    assert_eq!(one(&rows), Some("2"));

    // A second clean restart right after writes keeps them too.
    drop(client);
    let mut server = server;
    server.stop();
    let server = TestServer::start_with(data.path(), &[]);
    let client = server.client().await;
    let rows = simple_rows(&client, "SELECT count(*) FROM contacts").await;
    assert_eq!(one(&rows), Some("4"));
    let rows = simple_rows(&client, "SELECT count(*) FROM events").await;
    assert_eq!(one(&rows), Some(&*(4 + COPY_ROWS).to_string()));

    let mut server = server;
    server.stop();
}
