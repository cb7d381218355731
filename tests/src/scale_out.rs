//! Shared by the scale-out parity tests (`tests/distributed_parity.rs`
//! and `dist/tests/ballista_parity.rs`): seeded events with contacts over
//! many days, equal timestamps and window and day edges; the statements
//! checked; comparable text of server rows and Arrow batches.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{cohortdb_bin, exec, TextRows};

/// Session time zone of the statements (UTC+8: day edges differ from UTC).
pub const TZ: &str = "Asia/Shanghai";

/// Statements checked, all with AS OF (the default is "now").
pub const STATEMENTS: &[&str] = &[
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
    "ATTRIBUTE TARGET event = 'custom_order' VALUE p_price TOUCH event = 'app_launch' AS 'launch', \
     TOUCH event = 'browse_sku_page', TOUCH event = 'add_to_cart' WITHIN 1 DAYS MODEL LINEAR \
     FROM '2025-06-03' TO '2025-06-15' INCLUDE DIRECT AS OF '2025-06-30 00:00:00'",
    "ATTRIBUTE TARGET event = 'custom_order' TOUCH event = 'browse_sku_page', TOUCH event = 'add_to_cart' \
     WITHIN SAME DAY MODEL FIRST FROM '2025-06-01' TO '2025-06-18' WHERE city <> '北京' AS OF '2025-06-30 00:00:00'",
    "LTV INITIAL EVENT event = 'app_launch' REVENUE event = 'custom_order' VALUE p_price BY DAY PERIODS 4 \
     FROM '2025-06-02' TO '2025-06-10' AS OF '2025-06-12 08:00:00'",
    "LTV INITIAL EVENT event = 'browse_sku_page' REVENUE event = 'custom_order' VALUE p_price BY WEEK PERIODS 2 \
     FROM '2025-06-01' TO '2025-06-14' IN GROUP group_buyers AS OF '2025-06-30 00:00:00'",
    // BY an event column: ties of step-1 events with different sources
    "FUNNEL STEP event = 'app_launch', STEP event = 'browse_sku_page', STEP event = 'custom_order' \
     WITHIN 2 DAYS FROM '2025-06-02' TO '2025-06-14' BY p_source AS OF '2025-06-20 00:00:00'",
    // BY a contact column (NULL for some contacts)
    "FUNNEL STEP event = 'browse_sku_page', STEP event = 'add_to_cart' WITHIN 24 HOURS \
     FROM '2025-06-01' TO '2025-06-16' BY city AS OF '2025-06-20 00:00:00'",
    "FUNNEL STEP event = 'app_launch', STEP event = 'custom_order' WITHIN 3 DAYS \
     FROM '2025-06-01' TO '2025-06-16' BY contact.p_tier AS OF '2025-06-20 00:00:00'",
    // GROUP BY an event and a contact column together
    "LTV INITIAL EVENT event = 'app_launch' REVENUE event = 'custom_order' VALUE p_price BY DAY PERIODS 3 \
     FROM '2025-06-02' TO '2025-06-12' GROUP BY p_source, city AS OF '2025-06-14 00:00:00'",
    "LTV INITIAL EVENT event IN ('app_launch', 'browse_sku_page') REVENUE event = 'custom_order' VALUE p_price \
     BY WEEK PERIODS 2 FROM '2025-06-01' TO '2025-06-14' GROUP BY p_source AS OF '2025-06-30 00:00:00'",
    // INITIAL ATTRIBUTE: contacts without events count too
    "LTV INITIAL ATTRIBUTE p_signed_up REVENUE event = 'custom_order' VALUE p_price BY DAY PERIODS 4 \
     FROM '2025-06-01' TO '2025-06-12' GROUP BY p_tier AS OF '2025-06-14 00:00:00'",
    "LTV INITIAL ATTRIBUTE p_signed_up REVENUE event = 'custom_order' VALUE p_price BY WEEK PERIODS 1 \
     FROM '2025-06-01' TO '2025-06-20' IN GROUP group_buyers AS OF '2025-06-30 00:00:00'",
    "PATHS EVENTS event IN ('app_launch', 'browse_sku_page', 'add_to_cart', 'custom_order') \
     START AT event = 'app_launch' SESSION GAP 30 MINUTES FROM '2025-06-01' TO '2025-06-18' DEPTH 3 \
     AS OF '2025-06-30 00:00:00'",
    "PATHS EVENTS event <> 'app_launch' END AT event = 'custom_order' SESSION GAP 120 MINUTES \
     FROM '2025-06-02' TO '2025-06-16' BY p_source MERGE REPEATS DEPTH 4 AS OF '2025-06-30 00:00:00'",
    "PATHS EVENTS event IS NOT NULL SESSION GAP 60 MINUTES FROM '2025-06-01' TO '2025-06-18' \
     WHERE city = '深圳' DEPTH 2 AS OF '2025-06-30 00:00:00'",
];

/// Loads 400 contacts and their events (0–15 each over 18 days, many
/// equal timestamps and steps on hour and day edges) and a static group
/// `group_buyers`, drawing from `rng`.
pub async fn load(client: &tokio_postgres::Client, rng: &mut StdRng) {
    exec(client, "ALTER TABLE events ADD COLUMN p_price DOUBLE").await;
    exec(client, "ALTER TABLE events ADD COLUMN p_source TEXT").await;
    exec(client, "ALTER TABLE contacts ADD COLUMN p_tier TEXT").await;
    exec(
        client,
        "ALTER TABLE contacts ADD COLUMN p_signed_up TIMESTAMPTZ",
    )
    .await;
    let cities = ["上海", "北京", "深圳"];
    let tiers = ["'gold'", "'silver'", "NULL"];
    let sources = ["'ad'", "'search'", "'share'", "NULL"];
    let contacts = 400;
    let rows: Vec<String> = (1..=contacts)
        .map(|id| {
            // signed up on whole local hours over 20 days, or never
            let signed_up = if id % 5 == 0 {
                "NULL".to_string()
            } else {
                format!(
                    "to_timestamp({})",
                    1_748_707_200_i64 - 8 * 3600 + rng.random_range(0..20 * 24) * 3600
                )
            };
            let city = if id % 11 == 0 {
                "NULL".to_string()
            } else {
                format!("'{}'", cities[id % 3])
            };
            format!(
                "({id}, 'c{id}', {city}, {}, {signed_up})",
                tiers[id % 3 / 2 + id % 2]
            )
        })
        .collect();
    exec(
        client,
        &format!(
            "INSERT INTO contacts (id, name, city, p_tier, p_signed_up) VALUES {}",
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
            let source = sources[rng.random_range(0..sources.len())];
            events.push(format!(
                "({id}, '{event}', to_timestamp({t}), {price}, {source})"
            ));
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
                "INSERT INTO events (contact_id, event, event_date, p_price, p_source) VALUES {}",
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

/// [`norm`] on every cell.
pub fn norm_rows(rows: TextRows) -> TextRows {
    rows.into_iter()
        .map(|r| r.into_iter().map(norm).collect())
        .collect()
}

/// Arrow batches as text rows (NULL as `None`), as [`TextRows`].
pub fn batches_text(batches: &[RecordBatch]) -> TextRows {
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

/// Loads the seeded data (seed 20) through `client`.
pub async fn load_seeded(client: &tokio_postgres::Client) {
    load(client, &mut StdRng::seed_from_u64(20)).await;
}

/// The SQL form of `stmt` in time zone [`TZ`] over the export in
/// `export`, from `cohortdb sql-form`.
pub fn sql_form(stmt: &str, export: &std::path::Path) -> String {
    let out = std::process::Command::new(cohortdb_bin())
        .args(["sql-form", "--timezone", TZ, "--export"])
        .arg(export)
        .arg(stmt)
        .output()
        .expect("run cohortdb sql-form");
    assert!(
        out.status.success(),
        "cohortdb sql-form failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
