//! `--demo`: loads the deterministic mini-program shop (cohortdb-datagen)
//! through the same COPY path clients use.

use std::sync::Arc;

use cohortdb_datagen::{DatasetSpec, CONTACT_COLUMNS, EVENT_COLUMNS};
use cohortdb_sql::ingest::copy::{CopyFormat, CopyIn, CopyOptions};
use cohortdb_sql::{Engine, SqlError};

/// Loads the demo data unless the database already holds contacts.
pub async fn load_if_empty(engine: &Arc<Engine>) -> Result<(), SqlError> {
    let store = engine.store().clone();
    let mut any = false;
    store.scan_contacts(None, &mut |_, _| {
        any = true;
        false
    })?;
    if any {
        tracing::info!("--demo: the database already has contacts; demo data not loaded again");
        return Ok(());
    }
    let session = engine.session();
    if store.catalog().property("p_amount").is_none() {
        let stmts = engine.parse("ALTER TABLE events ADD COLUMN p_amount DOUBLE")?;
        for s in stmts {
            session.execute(s).await?;
        }
    }
    let spec = DatasetSpec::demo();
    let started = std::time::Instant::now();
    let mut contacts = Vec::new();
    cohortdb_datagen::write_contacts_csv(&spec, &mut contacts)
        .map_err(|e| SqlError::BadCopyFile(e.to_string()))?;
    let n_contacts = copy(engine, &session, "contacts", CONTACT_COLUMNS, &contacts).await?;
    drop(contacts);
    let mut events = Vec::new();
    cohortdb_datagen::write_events_csv(&spec, &mut events)
        .map_err(|e| SqlError::BadCopyFile(e.to_string()))?;
    let n_events = copy(engine, &session, "events", EVENT_COLUMNS, &events).await?;
    for sql in DEMO_GROUPS_AND_TAGS {
        let stmts = engine.parse(sql)?;
        for s in stmts {
            session.execute(s).await?;
        }
    }
    tracing::info!(
        "--demo: loaded {n_contacts} contacts and {n_events} events (and {} groups and tags) in {:.1} s",
        DEMO_GROUPS_AND_TAGS.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Groups and tags of the demo shop (docs/sql/groups-and-tags.md).
const DEMO_GROUPS_AND_TAGS: &[&str] = &[
    "CREATE GROUP group_buyers COMMENT '购买过商品' REFRESH DAILY AS \
     SELECT DISTINCT contact_id FROM event_view WHERE event = 'custom_order'",
    "CREATE GROUP group_cart_no_order COMMENT '加购未购买' AS \
     SELECT contact_id FROM event_view WHERE event = 'add_to_cart' \
     EXCEPT SELECT contact_id FROM event_view WHERE event = 'custom_order'",
    "CREATE STATIC GROUP group_vip_manual COMMENT '手工VIP'",
    "ALTER GROUP group_vip_manual ADD CONTACTS VALUES (1), (2), (3)",
    "CREATE TAG tag_order_total TYPE DOUBLE COMMENT '订单总金额' REFRESH DAILY AS \
     SELECT contact_id, sum(p_amount) AS value FROM event_view \
     WHERE event = 'custom_order' GROUP BY contact_id",
    "CREATE TAG tag_level TYPE VARCHAR COMMENT '会员等级' REFRESH DAILY AS \
     SELECT c.id AS contact_id, CASE WHEN coalesce(o.total, 0) > 500 THEN 'diamond' \
     WHEN coalesce(o.total, 0) > 100 THEN 'platinum' WHEN coalesce(o.total, 0) > 0 THEN 'gold' \
     ELSE 'normal' END AS value FROM contact_view c LEFT JOIN (SELECT contact_id, sum(p_amount) AS total \
     FROM event_view WHERE event = 'custom_order' GROUP BY contact_id) o ON o.contact_id = c.id",
];

async fn copy(
    engine: &Arc<Engine>,
    session: &cohortdb_sql::Session,
    table: &str,
    columns: &[&str],
    data: &[u8],
) -> Result<u64, SqlError> {
    let cols: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let mut copy = CopyIn::begin(
        engine.store().clone(),
        table,
        &cols,
        CopyOptions::new(CopyFormat::Csv),
        session.timezone(),
        engine.contact_lock(),
    )?;
    for chunk in data.chunks(1 << 20) {
        copy.feed(chunk)?;
    }
    Ok(copy.finish().await?.0)
}
