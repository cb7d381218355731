//! Scale-out parity: seeded events (contacts spread over many days and
//! files, equal timestamps, window and day edges in a non-UTC session time
//! zone) are exported with `CALL export_events`; each statement's SQL form
//! (`cohortdb_sql::analytics::distributed`) run by plain DataFusion over the
//! Parquet files, at 1 and several partitions, must equal the server's
//! answer row for row. The export round-trips (counts and rows equal).
//! `dist/tests/ballista_parity.rs` runs the same forms on a Ballista cluster.

use std::path::Path;

use cohortdb_tests::{exec, simple_rows, TestServer, TextRows};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TZ: &str = "Asia/Shanghai";

/// Statements checked, all with AS OF (the default is "now").
const STATEMENTS: &[&str] = &[
    "FUNNEL STEP event = 'app_launch' AS 'launch', STEP event = 'browse_sku_page', STEP event = 'add_to_cart', STEP event = 'custom_order' \
     WITHIN 24 HOURS FROM '2025-06-02' TO '2025-06-12' AS OF '2025-06-20 00:00:00'",
    "FUNNEL STEP event = 'app_launch', STEP event = 'add_to_cart' WITHIN 2 DAYS STRICT \
     FROM '2025-06-03' TO '2025-06-09' AS OF '2025-06-20 00:00:00'",
    "FUNNEL STEP event = 'browse_sku_page', STEP event = 'browse_sku_page' AND p_price > 50, STEP event = 'custom_order' \
     WITHIN 1 HOURS FROM '2025-06-01' TO '2025-06-14' WHERE city = '上海' AS OF '2025-06-20 00:00:00'",
    "RETENTION INITIAL event = 'app_launch' RETURN event = 'custom_order' BY DAY PERIODS 5 \
     FROM '2025-06-02' TO '2025-06-08' AS OF '2025-06-10 12:00:00'",
    "RETENTION INITIAL event = 'add_to_cart' RETURN event = 'app_launch' BY WEEK PERIODS 2 CHURN \
     FROM '2025-06-01' TO '2025-06-14' AS OF '2025-06-30 00:00:00'",
    "RETENTION INITIAL event = 'app_launch' RETURN event = 'app_launch' BY DAY PERIODS 3 \
     FROM '2025-06-01' TO '2025-06-16' IN GROUP group_buyers AS OF '2025-06-30 00:00:00'",
];

async fn load(client: &tokio_postgres::Client, rng: &mut StdRng) {
    exec(client, "ALTER TABLE events ADD COLUMN p_price DOUBLE").await;
    let cities = ["上海", "北京", "深圳"];
    let contacts = 400;
    let rows: Vec<String> = (1..=contacts)
        .map(|id| format!("({id}, 'c{id}', '{}')", cities[id % 3]))
        .collect();
    exec(
        client,
        &format!(
            "INSERT INTO contacts (id, name, city) VALUES {}",
            rows.join(", ")
        ),
    )
    .await;
    let types = [
        "app_launch",
        "browse_sku_page",
        "add_to_cart",
        "custom_order",
    ];
    let mut events = Vec::new();
    for id in 1..=contacts {
        // A base time in local time (UTC+8), on whole hours so that many
        // steps land exactly on window and day edges.
        let mut t = 1_748_707_200_i64 + rng.random_range(0..18 * 24) * 3600 - 8 * 3600;
        for _ in 0..rng.random_range(0..16) {
            let event = types[rng.random_range(0..types.len())];
            let price = if rng.random_bool(0.5) {
                rng.random_range(1..100).to_string()
            } else {
                "NULL".to_string()
            };
            events.push(format!("({id}, '{event}', to_timestamp({t}), {price})"));
            // 0: an equal timestamp; whole hours: window edges; days: day edges
            t += match rng.random_range(0..5) {
                0 => 0,
                1 => 3600,
                2 => 24 * 3600,
                3 => rng.random_range(1..7200),
                _ => rng.random_range(1..3) * 86_400,
            };
        }
    }
    for chunk in events.chunks(500) {
        exec(
            client,
            &format!(
                "INSERT INTO events (contact_id, event, event_date, p_price) VALUES {}",
                chunk.join(", ")
            ),
        )
        .await;
    }
    exec(client, "CREATE STATIC GROUP group_buyers").await;
    exec(
        client,
        "ALTER GROUP group_buyers ADD CONTACTS (SELECT DISTINCT contact_id FROM event_view WHERE event = 'custom_order')",
    )
    .await;
}

/// A comparable text of a cell: numbers to 9 significant digits.
fn norm(v: Option<String>) -> Option<String> {
    v.map(|s| match s.parse::<f64>() {
        Ok(x) => format!("{x:.9e}"),
        Err(_) => s,
    })
}

fn norm_rows(rows: TextRows) -> TextRows {
    rows.into_iter()
        .map(|r| r.into_iter().map(norm).collect())
        .collect()
}

fn batches_text(batches: &[RecordBatch]) -> TextRows {
    let opts = FormatOptions::default().with_null("\u{0}");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                fmts.iter()
                    .map(|f| {
                        let s = f.value(r).to_string();
                        (s != "\u{0}").then_some(s)
                    })
                    .collect(),
            );
        }
    }
    out
}

async fn parquet_context(dir: &Path, partitions: usize) -> SessionContext {
    let ctx = SessionContext::new_with_config(
        SessionConfig::new()
            .with_target_partitions(partitions)
            .with_batch_size(64),
    );
    for f in cohortdb_analytics::udaf::aggregates() {
        ctx.register_udaf(f);
    }
    ctx.register_parquet(
        "events",
        dir.join("events").to_str().unwrap(),
        ParquetReadOptions::default()
            .table_partition_cols(vec![("event_day".to_string(), DataType::Date32)]),
    )
    .await
    .unwrap();
    ctx.register_parquet(
        "contacts",
        dir.join("contacts").to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    ctx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_forms_over_exported_parquet_equal_the_server() {
    let server = TestServer::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(20);
    load(&client, &mut rng).await;
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

    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    let contexts = [
        parquet_context(out.path(), 1).await,
        parquet_context(out.path(), 4).await,
    ];
    for stmt in STATEMENTS {
        let expected = norm_rows(simple_rows(&client, stmt).await);
        assert!(!expected.is_empty(), "{stmt}");
        let form = cohortdb_sql::analytics::distributed::sql_form_of_text(stmt, &tz).unwrap();
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
