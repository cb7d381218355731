//! EXPLAIN shows the filters pushed into the events scan.
//!
//! The events scan prints as
//! `CohortEventsScan: event_types=[<codes>], days=[<from>..<to>]`; a filter on
//! `event` and a range on `event_day` must both appear there (pushed down),
//! in the simple and the extended protocol.

use cohortdb_tests::{explain_text, simple_rows, TestServer};
use tokio_postgres::Client;

/// All text cells of `sql` (an EXPLAIN), simple protocol, one line per cell.
async fn explain_simple(client: &Client, sql: &str) -> String {
    let query = sql.strip_prefix("EXPLAIN ").expect("an EXPLAIN statement");
    explain_text(client, query).await
}

/// All text cells of an EXPLAIN, extended protocol.
async fn explain_extended(client: &Client, sql: &str) -> String {
    let rows = client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{}\n[SQL] {sql}", cohortdb_tests::SqlError::from(&e)));
    let mut cells = Vec::new();
    for row in &rows {
        for i in 0..row.len() {
            if let Ok(Some(text)) = row.try_get::<_, Option<String>>(i) {
                cells.push(text);
            }
        }
    }
    cells.join("\n")
}

fn assert_plan_contains(plan: &str, needles: &[&str], sql: &str) {
    for needle in needles {
        assert!(
            plan.contains(needle),
            "plan does not contain `{needle}`\n[SQL] {sql}\n--- plan ---\n{plan}"
        );
    }
}

async fn setup(client: &Client) {
    cohortdb_tests::exec(client, "INSERT INTO contacts (name) VALUES ('Alice')").await;
    cohortdb_tests::exec(
        client,
        "INSERT INTO events (contact_id, event, event_date) VALUES \
         (1, 'app_launch', '2025-06-01 10:00:00+00'), \
         (1, 'app_show', '2025-06-02 10:00:00+00'), \
         (1, 'app_launch', '2025-06-05 10:00:00+00')",
    )
    .await;
}

#[tokio::test]
async fn events_scan_shows_pushed_event_and_day_filters() {
    let server = TestServer::start();
    let client = server.client().await;
    setup(&client).await;

    let sql = "EXPLAIN SELECT count(*) FROM events WHERE event = 'app_launch' \
               AND event_day BETWEEN '2025-06-01' AND '2025-06-02'";
    let needles = [
        "CohortEventsScan",
        "event_types=[app_launch]",
        "days=[2025-06-01..2025-06-02]",
    ];
    assert_plan_contains(&explain_simple(&client, sql).await, &needles, sql);
    assert_plan_contains(&explain_extended(&client, sql).await, &needles, sql);

    // The plan is a plan of the query that gives the right answer.
    let rows = simple_rows(
        &client,
        "SELECT count(*) FROM events WHERE event = 'app_launch' \
         AND event_day BETWEEN '2025-06-01' AND '2025-06-02'",
    )
    .await;
    assert_eq!(rows, vec![vec![Some("1".to_string())]]);
}

#[tokio::test]
async fn event_view_scan_shows_pushed_filters() {
    let server = TestServer::start();
    let client = server.client().await;
    setup(&client).await;

    let sql = "EXPLAIN SELECT count(*) FROM event_view WHERE event = 'app_launch' \
               AND event_day BETWEEN '2025-06-01' AND '2025-06-02'";
    let needles = [
        "CohortEventsScan",
        "event_types=[app_launch]",
        "days=[2025-06-01..2025-06-02]",
    ];
    assert_plan_contains(&explain_simple(&client, sql).await, &needles, sql);
}

#[tokio::test]
async fn unfiltered_events_scan_is_a_cohort_scan() {
    let server = TestServer::start();
    let client = server.client().await;
    let sql = "EXPLAIN SELECT count(*) FROM events";
    assert_plan_contains(
        &explain_simple(&client, sql).await,
        &["CohortEventsScan"],
        sql,
    );
}

#[tokio::test]
async fn analytics_statements_explain_their_scan() {
    let server = TestServer::start();
    let client = server.client().await;
    setup(&client).await;
    // Only the step event types, and the range widened by the window.
    let sql = "EXPLAIN FUNNEL STEP event = 'app_launch', STEP event = 'app_show' \
               WITHIN 2 DAYS FROM '2025-06-01' TO '2025-06-07'";
    let needles = [
        "CohortAnalyticsExec: FUNNEL",
        "event_types=[app_launch, app_show]",
        "days=[2025-06-01..2025-06-09]",
    ];
    assert_plan_contains(&explain_simple(&client, sql).await, &needles, sql);
    assert_plan_contains(&explain_extended(&client, sql).await, &needles, sql);
    // A property predicate reads only that column.
    let sql = "EXPLAIN RETENTION INITIAL event = 'app_launch' AND os = 'iOS' \
               RETURN event = 'app_show' FROM '2025-06-01' TO '2025-06-03' BY DAY PERIODS 1";
    let needles = [
        "CohortAnalyticsExec: RETENTION",
        "event_types=[app_launch, app_show]",
        "days=[2025-06-01..2025-06-04]",
        "projection=[event, os]",
    ];
    assert_plan_contains(&explain_simple(&client, sql).await, &needles, sql);
}
