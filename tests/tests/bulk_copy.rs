//! A large COPY (above the SST-ingestion threshold) lands atomically: every
//! row is readable with the right values, scans by type and day see exactly
//! their rows, and everything survives `kill -9` and a restart. A large COPY
//! with one bad row at the end applies nothing.

use bytes::Bytes;
use cohortdb_tests::{exec, simple_rows, TestServer};
use futures::SinkExt;
use tokio_postgres::Client;

const CONTACTS: u64 = 500;
const EVENTS: u64 = 120_000;
const CODES: [&str; 3] = ["app_launch", "browse_wxapp_page", "custom_order"];

fn events_csv(bad_last_row: bool) -> String {
    let mut out = String::with_capacity(EVENTS as usize * 60);
    for i in 0..EVENTS {
        let contact = 1 + i % CONTACTS;
        let code = CODES[(i % 3) as usize];
        // 10 days of June 2025, millisecond timestamps, some equal across contacts
        let ms = 1_748_736_000_000u64 + (i % 10) * 86_400_000 + (i / 10) * 7;
        let secs = ms / 1000;
        let (day, rem) = (secs / 86_400, secs % 86_400);
        let date = 1 + (day - 20_240) as u32;
        out.push_str(&format!(
            "{contact},{code},2025-06-{date:02} {:02}:{:02}:{:02}.{:03}+00,{}\n",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            ms % 1000,
            i % 100
        ));
    }
    if bad_last_row {
        out.push_str("1,app_launch,2025-06-01 00:00:00+00,not-a-number\n");
    }
    out
}

async fn copy(client: &Client, data: &str) -> Result<u64, tokio_postgres::Error> {
    let sink = client
        .copy_in("COPY events (contact_id, event, event_date, p_amount) FROM STDIN (FORMAT csv)")
        .await?;
    futures::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(1 << 16) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.as_mut().finish().await
}

async fn one(client: &Client, sql: &str) -> String {
    simple_rows(client, sql).await[0][0]
        .clone()
        .unwrap_or_default()
}

async fn check(client: &Client) {
    assert_eq!(
        one(client, "SELECT count(*) FROM events").await,
        EVENTS.to_string()
    );
    let expected_sum: u64 = (0..EVENTS).map(|i| i % 100).sum();
    assert_eq!(
        one(client, "SELECT sum(p_amount) FROM events").await,
        expected_sum.to_string()
    );
    // one type on one day: i % 3 == 2 and i % 10 == 4
    let n = (0..EVENTS).filter(|i| i % 3 == 2 && i % 10 == 4).count();
    assert_eq!(
        one(
            client,
            "SELECT count(*) FROM events WHERE event = 'custom_order' AND event_day = '2025-06-05'"
        )
        .await,
        n.to_string()
    );
    let per_contact = (0..EVENTS).filter(|i| 1 + i % CONTACTS == 7).count();
    assert_eq!(
        one(
            client,
            "SELECT count(*) FROM event_view WHERE contact_id = 7"
        )
        .await,
        per_contact.to_string()
    );
    assert_eq!(
        one(client, "SELECT count(DISTINCT contact_id) FROM events").await,
        CONTACTS.to_string()
    );
    // last_active_at follows the newest event of each contact
    assert_eq!(
        one(
            client,
            "SELECT count(*) FROM contacts WHERE last_active_at IS NULL"
        )
        .await,
        "0"
    );
}

#[tokio::test]
async fn large_copy_is_atomic_and_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start_with(dir.path(), &[]);
    let client = server.client().await;
    exec(&client, "ALTER TABLE events ADD COLUMN p_amount DOUBLE").await;
    let values: Vec<String> = (1..=CONTACTS).map(|i| format!("('c{i}')")).collect();
    exec(
        &client,
        &format!("INSERT INTO contacts (name) VALUES {}", values.join(",")),
    )
    .await;

    let err = copy(&client, &events_csv(true))
        .await
        .expect_err("bad last row");
    assert_eq!(err.code().map(|c| c.code()), Some("22P02"), "{err}");
    assert_eq!(one(&client, "SELECT count(*) FROM events").await, "0");

    assert_eq!(
        copy(&client, &events_csv(false)).await.expect("copy"),
        EVENTS
    );
    check(&client).await;

    drop(client);
    server.kill9();
    let server = TestServer::start_with(dir.path(), &[]);
    let client = server.client().await;
    check(&client).await;
}
