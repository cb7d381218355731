//! The key-lookup fast path (`sql/src/handler/lookup.rs`) returns exactly
//! what the general path returns: the same columns (names, types) and the
//! same rows for randomized lookups by `contacts.id` (present, absent,
//! deleted, merged away, NULL and custom fields), by identity and by user
//! table primary key; in the simple protocol (text) and the extended
//! protocol with bound parameters (binary). The general path is forced by
//! a conjunct the recognizer does not take (`AND true`), and EXPLAIN shows
//! which path each statement takes. A table altered between Prepare and
//! Execute gives the new plan or PostgreSQL's 0A000.

use cohortdb_tests::{exec, explain_text, render::render_cell, simple_rows, SqlError, TestServer};
use rand::{Rng, SeedableRng};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// Column names and type names, then each row's cells as text.
type Shaped = (Vec<(String, String)>, Vec<Vec<String>>);

async fn extended(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Shaped {
    let stmt = client
        .prepare(sql)
        .await
        .unwrap_or_else(|e| panic!("{}\n[SQL] {sql}", SqlError::from(&e)));
    let columns = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().name().to_string()))
        .collect();
    let rows = client
        .query(&stmt, params)
        .await
        .unwrap_or_else(|e| panic!("{}\n[SQL] {sql}", SqlError::from(&e)));
    let rows = rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| render_cell(r, i).expect("cell"))
                .collect()
        })
        .collect();
    (columns, rows)
}

async fn assert_fast(client: &Client, sql: &str, fast: bool) {
    let plan = explain_text(client, sql).await;
    assert_eq!(
        plan.contains("KeyLookup:"),
        fast,
        "expected the {} path\n[SQL] {sql}\n--- plan ---\n{plan}",
        if fast { "key lookup" } else { "general" }
    );
}

/// Contacts with NULL and custom fields, some deleted, some merged away;
/// identities on two channels; two user tables (integer and text keys).
async fn setup(c: &Client) {
    exec(c, "ALTER TABLE contacts ADD COLUMN p_level BIGINT").await;
    exec(c, "ALTER TABLE contacts ADD COLUMN p_score DOUBLE").await;
    exec(c, "ALTER TABLE contacts ADD COLUMN p_since DATE").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    for i in 1..=40 {
        let name = if rng.random_bool(0.2) {
            "NULL".to_string()
        } else {
            format!("'客户{i}'")
        };
        let level = if rng.random_bool(0.3) {
            "NULL".to_string()
        } else {
            rng.random_range(0..5).to_string()
        };
        let city = ["'北京'", "'上海'", "NULL"][rng.random_range(0..3)];
        exec(
            c,
            &format!(
                "INSERT INTO contacts (name, city, email, p_level, p_score, p_since) VALUES \
                 ({name}, {city}, {}, {level}, {}, {})",
                if i % 3 == 0 {
                    format!("'c{i}@example.com'")
                } else {
                    "NULL".into()
                },
                if i % 4 == 0 {
                    "NULL".to_string()
                } else {
                    format!("{}.25", i)
                },
                if i % 5 == 0 {
                    "NULL".to_string()
                } else {
                    format!("'2024-01-{:02}'", i % 28 + 1)
                },
            ),
        )
        .await;
    }
    exec(c, "DELETE FROM contacts WHERE id IN (7, 8, 21)").await;
    exec(c, "CALL merge_contacts(2, 12)").await;
    exec(c, "CALL merge_contacts(3, 13)").await;
    for i in 0..10 {
        exec(
            c,
            &format!("CALL identify('mp_shop', 'openid_{i}', '{{\"name\": \"粉丝{i}\"}}')"),
        )
        .await;
    }
    exec(c, "CALL identify('oa_news', 'openid_1', '{}')").await;
    exec(c, "CALL identify('mp_shop', '77', '{}')").await;
    // a cast argument, as pgbench scripts write it
    exec(c, "CALL identify('mp_shop', CAST(78 AS TEXT), '{}')").await;
    exec(
        c,
        "CREATE GROUP group_bj REFRESH MANUAL AS SELECT id FROM contact_view WHERE city = '北京'",
    )
    .await;
    exec(c, "REFRESH GROUP group_bj").await;
    exec(c, "CREATE STATIC GROUP group_form").await;
    exec(
        c,
        "ALTER GROUP group_form ADD CONTACTS VALUES (1), (4), (9)",
    )
    .await;
    exec(
        c,
        "CREATE TABLE skus (sku INT PRIMARY KEY, title TEXT, price DOUBLE)",
    )
    .await;
    exec(
        c,
        "INSERT INTO skus VALUES (1, '杯子', 9.5), (2, NULL, 3), (3, '碗', NULL), (40000, '盘', 1)",
    )
    .await;
    exec(
        c,
        "CREATE TABLE coupons (code TEXT PRIMARY KEY, value BIGINT)",
    )
    .await;
    exec(
        c,
        "INSERT INTO coupons VALUES ('A1', 10), ('B2', NULL), ('', 0)",
    )
    .await;
}

/// The same lookup on both paths, both protocols: equal shapes and rows.
async fn compare(c: &Client, fast_sql: &str, general_sql: &str, params: &[&(dyn ToSql + Sync)]) {
    let fast = extended(c, fast_sql, params).await;
    let general = extended(c, general_sql, params).await;
    assert_eq!(
        fast, general,
        "extended protocol differs\n[fast] {fast_sql}\n[general] {general_sql}"
    );
}

async fn compare_simple(c: &Client, fast_sql: &str, general_sql: &str) {
    assert_fast(c, fast_sql, true).await;
    assert_fast(c, general_sql, false).await;
    let fast = simple_rows(c, fast_sql).await;
    let general = simple_rows(c, general_sql).await;
    assert_eq!(
        fast, general,
        "simple protocol differs\n[fast] {fast_sql}\n[general] {general_sql}"
    );
    // the column names too
    let names = |sql: &str| {
        let sql = sql.to_string();
        async move {
            c.simple_query(&sql)
                .await
                .expect("query")
                .into_iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::RowDescription(d) => {
                        Some(d.iter().map(|c| c.name().to_string()).collect::<Vec<_>>())
                    }
                    _ => None,
                })
        }
    };
    assert_eq!(
        names(fast_sql).await,
        names(general_sql).await,
        "{fast_sql}"
    );
}

#[tokio::test]
async fn fast_path_returns_what_the_general_path_returns() {
    let server = TestServer::start();
    let c = server.client().await;
    setup(&c).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);

    // contacts by id: present, absent (0, 999, negative), deleted, merged away
    let mut ids: Vec<i64> = vec![0, -1, 2, 3, 7, 8, 12, 13, 21, 40, 41, 999, i64::MAX];
    ids.extend((0..12).map(|_| rng.random_range(1..=52)));
    let projections = [
        "*",
        "id, name, p_level",
        "p_since, id AS contact, email, is_identified",
    ];
    for id in &ids {
        for p in projections {
            let fast = format!("SELECT {p} FROM contacts WHERE id = {id}");
            let general = format!("SELECT {p} FROM contacts WHERE id = {id} AND true");
            compare_simple(&c, &fast, &general).await;
            let fast = format!("SELECT {p} FROM contacts WHERE id = $1");
            let general = format!("SELECT {p} FROM contacts WHERE id = $1 AND true");
            compare(&c, &fast, &general, &[id]).await;
        }
    }
    // contact_view: fields, then group membership columns
    for id in [1i64, 4, 5, 12, 21, 30, 999] {
        for p in ["*", "id, group_form, name", "group_bj"] {
            let fast = format!("SELECT {p} FROM contact_view WHERE id = {id}");
            let general = format!("SELECT {p} FROM contact_view WHERE id = {id} AND true");
            compare_simple(&c, &fast, &general).await;
            let fast = format!("SELECT {p} FROM contact_view WHERE id = $1");
            let general = format!("SELECT {p} FROM contact_view WHERE id = $1 AND true");
            compare(&c, &fast, &general, &[&id]).await;
        }
    }
    // IN lists, duplicates, LIMIT, an alias, a NULL parameter
    for (fast, general) in [
        (
            "SELECT * FROM contacts WHERE id IN (40, 3, 999, 3, 12)",
            "SELECT * FROM contacts WHERE id IN (40, 3, 999, 3, 12) AND true",
        ),
        (
            "SELECT name FROM contacts c WHERE c.id IN (5, 4, 6) LIMIT 2",
            "SELECT name FROM contacts c WHERE c.id IN (5, 4, 6) AND true LIMIT 2",
        ),
        (
            "SELECT c.id, c.city FROM contacts AS c WHERE 9 = c.id",
            "SELECT c.id, c.city FROM contacts AS c WHERE 9 = c.id AND true",
        ),
        (
            "SELECT * FROM contacts WHERE id = NULL",
            "SELECT * FROM contacts WHERE id = NULL AND true",
        ),
    ] {
        compare_simple(&c, fast, general).await;
    }
    compare(
        &c,
        "SELECT * FROM contacts WHERE id IN ($1, $2)",
        "SELECT * FROM contacts WHERE id IN ($1, $2) AND true",
        &[&5i64, &Option::<i64>::None],
    )
    .await;
    compare(
        &c,
        "SELECT id, name FROM contacts WHERE id = $1",
        "SELECT id, name FROM contacts WHERE id = $1 AND true",
        &[&Option::<i64>::None],
    )
    .await;

    // identities by their key
    for (channel, openid) in [
        ("mp_shop", "openid_3"),
        ("oa_news", "openid_1"),
        ("mp_shop", "openid_404"),
        ("nope", "openid_1"),
    ] {
        let fast = format!(
            "SELECT * FROM identities WHERE id_type = 'external_id' AND channel_id = '{channel}' AND id_value = '{openid}'"
        );
        compare_simple(&c, &fast, &format!("{fast} AND true")).await;
        compare(
            &c,
            "SELECT contact_id, created_at FROM identities WHERE id_value = $2 AND channel_id = $1 AND id_type = 'external_id'",
            "SELECT contact_id, created_at FROM identities WHERE id_value = $2 AND channel_id = $1 AND id_type = 'external_id' AND true",
            &[&channel, &openid],
        )
        .await;
    }

    // a key given as CAST(integer AS text) (pgbench scripts, generated ids)
    for v in ["77", "78"] {
        let fast = format!(
            "SELECT contact_id FROM identities WHERE id_type = 'external_id' AND channel_id = 'mp_shop' AND id_value = CAST({v} AS TEXT)"
        );
        compare_simple(&c, &fast, &format!("{fast} AND true")).await;
        compare(
            &c,
            "SELECT contact_id FROM identities WHERE id_type = 'external_id' AND channel_id = 'mp_shop' AND id_value = CAST($1 AS TEXT)",
            "SELECT contact_id FROM identities WHERE id_type = 'external_id' AND channel_id = 'mp_shop' AND id_value = CAST($1 AS TEXT) AND true",
            &[&v],
        )
        .await;
    }

    // an identity joined with its contact (either order, ON or WHERE)
    for (channel, openid) in [
        ("mp_shop", "openid_3"),
        ("oa_news", "openid_1"),
        ("mp_shop", "openid_404"),
    ] {
        for sql in [
            format!("SELECT c.*, i.created_at FROM contacts c JOIN identities i ON i.contact_id = c.id \
                     WHERE i.id_type = 'external_id' AND i.channel_id = '{channel}' AND i.id_value = '{openid}'"),
            format!("SELECT i.id_value, c.name, c.group_form FROM identities i, contact_view c \
                     WHERE c.id = i.contact_id AND i.id_value = '{openid}' AND i.channel_id = '{channel}' AND i.id_type = 'external_id'"),
        ] {
            compare_simple(&c, &sql, &format!("{sql} AND true")).await;
        }
        compare(
            &c,
            "SELECT c.id, c.name, c.p_level FROM identities i JOIN contacts c ON c.id = i.contact_id \
             WHERE i.id_type = 'external_id' AND i.channel_id = $1 AND i.id_value = $2",
            "SELECT c.id, c.name, c.p_level FROM identities i JOIN contacts c ON c.id = i.contact_id \
             WHERE i.id_type = 'external_id' AND i.channel_id = $1 AND i.id_value = $2 AND true",
            &[&channel, &openid],
        )
        .await;
    }

    // user tables by primary key: integer and text
    for sku in [1i64, 2, 3, 4, 40000, -1] {
        let fast = format!("SELECT * FROM skus WHERE sku = {sku}");
        compare_simple(&c, &fast, &format!("{fast} AND true")).await;
        compare(
            &c,
            "SELECT title, price FROM skus WHERE sku = $1",
            "SELECT title, price FROM skus WHERE sku = $1 AND true",
            &[&sku],
        )
        .await;
    }
    compare_simple(
        &c,
        "SELECT * FROM skus WHERE sku = 4294967296",
        "SELECT * FROM skus WHERE sku = 4294967296 AND true",
    )
    .await;
    for code in ["A1", "B2", "", "a1", "zz"] {
        let fast = format!("SELECT * FROM coupons WHERE code = '{code}'");
        compare_simple(&c, &fast, &format!("{fast} AND true")).await;
        compare(
            &c,
            "SELECT value, code FROM coupons WHERE code = $1",
            "SELECT value, code FROM coupons WHERE code = $1 AND true",
            &[&code],
        )
        .await;
    }
}

#[tokio::test]
async fn explain_shows_which_path_runs() {
    let server = TestServer::start();
    let c = server.client().await;
    setup(&c).await;
    let plan = explain_text(&c, "SELECT id, name FROM contacts WHERE id = 5").await;
    assert!(
        plan.contains("KeyLookup: table=contacts, key=id, values=[5]"),
        "{plan}"
    );
    let plan = explain_text(
        &c,
        "SELECT * FROM identities WHERE id_type = 'external_id' AND channel_id = 'mp_shop' AND id_value = 'openid_1'",
    )
    .await;
    assert!(
        plan.contains("KeyLookup: table=identities, key=(id_type, channel_id, id_value)"),
        "{plan}"
    );
    assert_fast(&c, "SELECT * FROM skus WHERE sku IN (1, 2)", true).await;
    let plan = explain_text(
        &c,
        "SELECT c.name FROM contacts c JOIN identities i ON i.contact_id = c.id \
         WHERE i.id_type = 'external_id' AND i.channel_id = 'mp_shop' AND i.id_value = 'openid_1'",
    )
    .await;
    assert!(plan.contains("join=contacts on id = contact_id"), "{plan}");
    // not lookups: a partial key, a residual predicate, an expression,
    // an ordering, a key compared with a non-key column, a view
    for sql in [
        "SELECT * FROM identities WHERE channel_id = 'mp_shop' AND id_value = 'openid_1'",
        "SELECT * FROM contacts WHERE id = 5 AND name = 'x'",
        "SELECT id + 1 FROM contacts WHERE id = 5",
        "SELECT * FROM contacts WHERE id = 5 ORDER BY name",
        "SELECT * FROM contacts WHERE id = p_level",
        "SELECT * FROM contacts WHERE id > 5",
        "SELECT * FROM skus WHERE price = 3",
        "SELECT * FROM contacts WHERE id = 5 OFFSET 1",
        "SELECT c.name FROM contacts c JOIN identities i ON i.contact_id = c.id \
         WHERE i.id_type = 'external_id' AND i.channel_id = 'mp_shop' AND i.id_value = 'openid_1' AND c.city = 'x'",
        "SELECT c.name FROM contacts c LEFT JOIN identities i ON i.contact_id = c.id \
         WHERE i.id_type = 'external_id' AND i.channel_id = 'mp_shop' AND i.id_value = 'openid_1'",
        "SELECT c.name FROM contacts c JOIN identities i ON i.contact_id = c.p_level \
         WHERE i.id_type = 'external_id' AND i.channel_id = 'mp_shop' AND i.id_value = 'openid_1'",
    ] {
        assert_fast(&c, sql, false).await;
    }
    // a lookup's plan in the extended protocol shows it too
    let rows = c
        .query("EXPLAIN SELECT * FROM contacts WHERE id = 5", &[])
        .await
        .expect("explain");
    let text: Vec<String> = rows.iter().map(|r| r.get::<_, String>(1)).collect();
    assert!(text.iter().any(|t| t.contains("KeyLookup")), "{text:?}");
}

#[tokio::test]
async fn table_altered_between_prepare_and_execute() {
    let server = TestServer::start();
    let c = server.client().await;
    setup(&c).await;
    let star = c
        .prepare("SELECT * FROM contacts WHERE id = $1")
        .await
        .expect("prepare");
    let some = c
        .prepare("SELECT id, name FROM contacts WHERE id = $1")
        .await
        .expect("prepare");
    let sku = c
        .prepare("SELECT * FROM skus WHERE sku = $1")
        .await
        .expect("prepare");
    let before = c.query(&some, &[&4i64]).await.expect("execute");
    // DDL that does not touch the statements' tables keeps their plans
    exec(&c, "CREATE TABLE other (k INT PRIMARY KEY)").await;
    assert_eq!(c.query(&star, &[&4i64]).await.expect("execute").len(), 1);

    exec(&c, "ALTER TABLE contacts ADD COLUMN p_tier VARCHAR").await;
    exec(
        &c,
        "UPDATE contacts SET p_tier = 'gold', name = 'renamed' WHERE id = 4",
    )
    .await;
    // the result would change shape: PostgreSQL's error, and the statement
    // prepared again answers with the new column
    let err = c.query(&star, &[&4i64]).await.expect_err("stale shape");
    let err = SqlError::from(&err);
    assert_eq!(err.code.as_deref(), Some("0A000"), "{err}");
    assert!(
        err.message
            .contains("cached plan must not change result type"),
        "{err}"
    );
    let again = extended(&c, "SELECT * FROM contacts WHERE id = $1", &[&4i64]).await;
    assert!(again.0.iter().any(|(n, _)| n == "p_tier"), "{again:?}");
    assert_eq!(again.1.len(), 1);
    // same columns: planned again, reads what is there now
    let after = c.query(&some, &[&4i64]).await.expect("execute");
    assert_eq!(before.len(), 1);
    assert_eq!(
        after[0].get::<_, Option<String>>(1).as_deref(),
        Some("renamed")
    );

    exec(&c, "DROP TABLE skus").await;
    let err = c.query(&sku, &[&1i64]).await.expect_err("dropped table");
    assert_eq!(SqlError::from(&err).code.as_deref(), Some("42P01"), "{err}");
}

/// The simple protocol keeps the plans of texts it ran; a setting changed
/// since, or a table altered by another session, makes the text plan again
/// (never an error: a text is not a prepared statement).
#[tokio::test]
async fn simple_protocol_texts_plan_again_when_needed() {
    let server = TestServer::start();
    let c = server.client().await;
    let other = server.client().await;
    setup(&c).await;
    let when = "SELECT created_at::text FROM contacts WHERE id = 4";
    let utc = simple_rows(&c, when).await;
    assert_eq!(simple_rows(&c, when).await, utc);
    assert!(
        utc[0][0].as_deref().is_some_and(|t| t.ends_with("+00")),
        "{utc:?}"
    );
    exec(&c, "SET TIME ZONE 'Asia/Shanghai'").await;
    let shanghai = simple_rows(&c, when).await;
    assert!(
        shanghai[0][0]
            .as_deref()
            .is_some_and(|t| t.ends_with("+08")),
        "{shanghai:?}"
    );

    let star = "SELECT * FROM contacts WHERE id = 4";
    let before = simple_rows(&c, star).await;
    let scan = "SELECT * FROM contacts WHERE name IS NOT NULL ORDER BY id LIMIT 3";
    let scanned = simple_rows(&c, scan).await;
    exec(&other, "ALTER TABLE contacts ADD COLUMN p_added VARCHAR").await;
    let after = simple_rows(&c, star).await;
    assert_eq!(after[0].len(), before[0].len() + 1, "{after:?}");
    assert_eq!(simple_rows(&c, scan).await[0].len(), scanned[0].len() + 1);
    exec(&other, "UPDATE contacts SET p_added = 'x' WHERE id = 4").await;
    assert_eq!(
        simple_rows(&c, star).await[0]
            .last()
            .cloned()
            .flatten()
            .as_deref(),
        Some("x")
    );
}

/// Simple-protocol lookups that differ only in their key constants share
/// one plan; every other constant must match, and a constant the lookup
/// cannot take exactly (a fraction, text for an integer key) runs the
/// usual way. Results equal the general path's throughout.
#[tokio::test]
async fn texts_of_one_shape_share_a_plan() {
    let server = TestServer::start();
    let c = server.client().await;
    setup(&c).await;
    let shapes: Vec<(String, String)> = [4, 5, 999, 6, 9, 3]
        .iter()
        .flat_map(|id| {
            [
                format!("SELECT id, name FROM contacts WHERE id = {id}"),
                format!("SELECT name FROM contacts WHERE id IN ({id}, 5) LIMIT 1"),
                format!("SELECT name FROM contacts WHERE id IN ({id}, 5) LIMIT 2"),
                format!(
                    "SELECT contact_id FROM identities WHERE id_type = 'external_id' \
                     AND channel_id = '{}' AND id_value = 'openid_{id}'",
                    if id % 2 == 0 { "mp_shop" } else { "oa_news" }
                ),
            ]
        })
        .chain([
            "SELECT id, name FROM contacts WHERE id = 1.5".to_string(),
            "SELECT id, name FROM contacts WHERE id = '5'".to_string(),
            "SELECT id, name FROM contacts WHERE id = 99999999999999999999".to_string(),
            "SELECT contact_id FROM identities WHERE id_type = 'external_id' \
             AND channel_id = 'mp_shop' AND id_value = 'it''s'"
                .to_string(),
        ])
        .map(|fast| {
            let general = if fast.contains(" LIMIT") {
                fast.replace(" LIMIT", " AND true LIMIT")
            } else {
                format!("{fast} AND true")
            };
            (fast, general)
        })
        .collect();
    for (fast, general) in &shapes {
        let a = cohortdb_tests::try_simple_rows(&c, fast).await;
        let b = cohortdb_tests::try_simple_rows(&c, general).await;
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "\n[fast] {fast}\n[general] {general}"),
            (Err(a), Err(b)) => assert_eq!(a.code, b.code, "\n[fast] {fast}\n[general] {general}"),
            (a, b) => panic!("{a:?} vs {b:?}\n[fast] {fast}\n[general] {general}"),
        }
    }
}
