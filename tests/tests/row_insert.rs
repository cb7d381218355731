//! The row-insert fast path (`sql/src/handler/row_insert.rs`) writes
//! exactly what the planned INSERT writes: randomized rows of every column
//! type (NULLs included) into a user table and into contacts, through the
//! extended protocol with bound parameters and the simple protocol with
//! constants, compared with the same rows written by `INSERT … SELECT`
//! (which the fast path does not take). Errors carry the same SQLSTATE and
//! change nothing; RETURNING reads back what a later SELECT reads; the
//! audit log records prepared contact inserts; a table altered between
//! Prepare and Execute gets the new shape. Writers that serialise on a lock
//! (primary keys, `n = n + 1` updates) release it before the WAL sync; the
//! concurrency tests check that no increment is lost and no key is taken
//! twice.

use cohortdb_tests::{exec, expect_sqlstate, explain_text, simple_rows, SqlError, TestServer};
use rand::{Rng, SeedableRng};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

const COLUMNS: &str =
    "(id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, ok BOOLEAN, day DATE, at TIMESTAMPTZ)";

/// A random row of [`COLUMNS`] as bound values.
struct Row {
    id: i64,
    name: Option<String>,
    score: Option<f64>,
    ok: Option<bool>,
    day: Option<chrono::NaiveDate>,
    at: Option<chrono::DateTime<chrono::Utc>>,
}

fn random_row(rng: &mut rand::rngs::StdRng, id: i64) -> Row {
    let null = |rng: &mut rand::rngs::StdRng| rng.random_bool(0.25);
    Row {
        id,
        name: (!null(rng)).then(|| format!("名字-{}'\"{}", id, rng.random_range(0..1000))),
        score: (!null(rng)).then(|| rng.random_range(-1e6..1e6)),
        ok: (!null(rng)).then(|| rng.random_bool(0.5)),
        day: (!null(rng)).then(|| {
            chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap()
                + chrono::Days::new(rng.random_range(0..3000))
        }),
        at: (!null(rng)).then(|| {
            chrono::DateTime::from_timestamp_millis(rng.random_range(0..2_000_000_000_000)).unwrap()
        }),
    }
}

impl Row {
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.id,
            &self.name,
            &self.score,
            &self.ok,
            &self.day,
            &self.at,
        ]
    }

    /// The row as SQL constants (simple protocol).
    fn literals(&self) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let or_null = |v: Option<String>| v.unwrap_or_else(|| "NULL".into());
        format!(
            "{}, {}, {}, {}, {}, {}",
            self.id,
            or_null(self.name.as_deref().map(q)),
            or_null(self.score.map(|f| format!("{f:?}"))),
            or_null(self.ok.map(|b| b.to_string())),
            or_null(self.day.map(|d| q(&d.to_string()))),
            or_null(self.at.map(|t| q(&t.to_rfc3339()))),
        )
    }
}

async fn table_text(c: &Client, table: &str) -> Vec<Vec<Option<String>>> {
    simple_rows(c, &format!("SELECT * FROM {table} ORDER BY id")).await
}

#[tokio::test]
async fn user_table_rows_equal_the_planned_insert() {
    let server = TestServer::start();
    let c = server.client().await;
    for t in ["fast_x", "plan_x", "fast_s", "plan_s"] {
        exec(&c, &format!("CREATE TABLE {t} {COLUMNS}")).await;
    }
    let fast_sql = "INSERT INTO fast_x VALUES ($1, $2, $3, $4, $5, $6)";
    assert!(
        explain_text(
            &c,
            "INSERT INTO fast_x VALUES (1, 'a', 1.5, true, '2024-01-02', NULL)"
        )
        .await
        .contains("RowInsert: table=fast_x rows=1"),
        "EXPLAIN shows the fast path"
    );
    assert!(
        !explain_text(
            &c,
            "INSERT INTO plan_x SELECT 1, 'a', 1.5, true, NULL, NULL"
        )
        .await
        .contains("RowInsert"),
        "INSERT … SELECT runs as planned"
    );
    let fast = c.prepare(fast_sql).await.expect("prepare");
    let planned = c
        .prepare(
            "INSERT INTO plan_x SELECT $1::bigint, $2::text, $3::double precision, $4::boolean, $5::date, $6::timestamptz",
        )
        .await
        .expect("prepare");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1414);
    for id in 1..=60 {
        let row = random_row(&mut rng, id);
        assert_eq!(c.execute(&fast, &row.params()).await.expect("fast"), 1);
        assert_eq!(
            c.execute(&planned, &row.params()).await.expect("planned"),
            1
        );
        // the same constants as text: the first text plans, the others reuse its shape
        exec(
            &c,
            &format!("INSERT INTO fast_s VALUES ({})", row.literals()),
        )
        .await;
        exec(&c, &format!("INSERT INTO plan_s SELECT {}", row.literals())).await;
    }
    // two rows in one statement, and a column list in another order
    exec(
        &c,
        "INSERT INTO fast_x (name, id) VALUES ('x', 1001), (NULL, 1002)",
    )
    .await;
    exec(
        &c,
        "INSERT INTO plan_x (name, id) SELECT 'x', 1001 UNION ALL SELECT NULL, 1002",
    )
    .await;
    let fast_rows = table_text(&c, "fast_x").await;
    assert_eq!(fast_rows.len(), 62);
    assert_eq!(fast_rows, table_text(&c, "plan_x").await);
    assert_eq!(
        table_text(&c, "fast_s").await,
        table_text(&c, "plan_s").await
    );
    assert_eq!(
        table_text(&c, "fast_s").await,
        fast_rows[..60].to_vec(),
        "bound and literal values store the same"
    );

    // errors: same SQLSTATE on both paths, nothing written
    let row = random_row(&mut rng, 5);
    let fast_err = SqlError::from(&c.execute(&fast, &row.params()).await.unwrap_err());
    let plan_err = SqlError::from(&c.execute(&planned, &row.params()).await.unwrap_err());
    assert_eq!(fast_err.code.as_deref(), Some("23505"), "{fast_err}");
    assert_eq!(fast_err.code, plan_err.code);
    expect_sqlstate(
        &c,
        "INSERT INTO fast_s VALUES (5, 'dup', NULL, NULL, NULL, NULL)",
        "23505",
    )
    .await;
    let bad_date = expect_sqlstate(
        &c,
        "INSERT INTO fast_s VALUES (7000, 'x', NULL, NULL, 'not a date', NULL)",
        "22P02",
    )
    .await;
    let bad_date_planned = expect_sqlstate(
        &c,
        "INSERT INTO plan_s SELECT 7000, 'x', NULL, NULL, 'not a date', NULL",
        "22P02",
    )
    .await;
    assert_eq!(bad_date.code, bad_date_planned.code);
    // a second text of the same shape fails the same way
    expect_sqlstate(
        &c,
        "INSERT INTO fast_s VALUES (7001, 'y', NULL, NULL, 'also not', NULL)",
        "22P02",
    )
    .await;
    assert_eq!(table_text(&c, "fast_s").await.len(), 60);
    // constants the planner folds into the column's type: a text that
    // does not convert fails as planning it fails
    exec(&c, "CREATE TABLE keyed (id BIGINT, label TEXT)").await;
    for i in 0..3 {
        exec(
            &c,
            &format!("INSERT INTO keyed VALUES ('{i}', CAST({i} AS TEXT))"),
        )
        .await;
    }
    let e = expect_sqlstate(
        &c,
        "INSERT INTO keyed VALUES ('x', CAST(9 AS TEXT))",
        "22P02",
    )
    .await;
    let planned =
        expect_sqlstate(&c, "INSERT INTO keyed SELECT 'x', CAST(9 AS TEXT)", "22P02").await;
    assert_eq!(e.code, planned.code);
    // a timestamp's text in the session time zone, as the planner renders it
    exec(&c, "SET TIME ZONE 'Asia/Shanghai'").await;
    for sql in [
        "INSERT INTO keyed VALUES (100, CAST(TIMESTAMPTZ '2026-01-01 00:00:00+00' AS TEXT))",
        "INSERT INTO keyed SELECT 101, CAST(TIMESTAMPTZ '2026-01-01 00:00:00+00' AS TEXT)",
    ] {
        exec(&c, sql).await;
    }
    assert_eq!(
        simple_rows(&c, "SELECT DISTINCT label FROM keyed WHERE id >= 100").await,
        vec![vec![Some("2026-01-01 08:00:00+08".to_string())]]
    );
    exec(&c, "DELETE FROM keyed WHERE id >= 100").await;
    assert_eq!(
        simple_rows(&c, "SELECT id, label FROM keyed ORDER BY id").await,
        (0..3)
            .map(|i| vec![Some(i.to_string()), Some(i.to_string())])
            .collect::<Vec<_>>()
    );
    assert_eq!(
        simple_rows(&c, "SELECT count(*) FROM fast_x WHERE id >= 7000").await,
        vec![vec![Some("0".to_string())]]
    );
}

#[tokio::test]
async fn contact_inserts_equal_the_planned_insert_and_are_audited() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(&c, "ALTER TABLE contacts ADD COLUMN p_level BIGINT").await;
    let fast = c
        .prepare("INSERT INTO contacts (name, city, birthday, p_level) VALUES ($1, $2, $3, $4)")
        .await
        .expect("prepare");
    let planned = c
        .prepare("INSERT INTO contacts (name, city, birthday, p_level) SELECT $1::text, $2::text, $3::date, $4::bigint")
        .await
        .expect("prepare");
    let returning = c
        .prepare("INSERT INTO contacts (name, city) VALUES ($1, $2) RETURNING id, name, city, updated_at")
        .await
        .expect("prepare");
    assert!(
        explain_text(&c, "INSERT INTO contacts (name, city) VALUES ('a', 'b')")
            .await
            .contains("RowInsert: table=contacts rows=1")
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(2014);
    let mut fast_ids = Vec::new();
    let mut planned_ids = Vec::new();
    let before: i64 = c
        .query_one("SELECT coalesce(max(id), 0) FROM contacts", &[])
        .await
        .expect("max")
        .get(0);
    for i in 0..40 {
        let name: Option<String> = rng.random_bool(0.8).then(|| format!("客户{i}"));
        let city: Option<String> = rng.random_bool(0.5).then(|| "上海".to_string());
        let day = rng
            .random_bool(0.5)
            .then(|| chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap() + chrono::Days::new(i));
        let level: Option<i64> = rng.random_bool(0.5).then_some(i as i64);
        let p: [&(dyn ToSql + Sync); 4] = [&name, &city, &day, &level];
        c.execute(&fast, &p).await.expect("fast");
        fast_ids.push(before + 2 * i as i64 + 1);
        c.execute(&planned, &p).await.expect("planned");
        planned_ids.push(before + 2 * i as i64 + 2);
    }
    let profile = |ids: &[i64]| {
        format!(
            "SELECT name, city, birthday, p_level, is_identified, created_at IS NULL, first_seen_at IS NULL \
             FROM contacts WHERE id IN ({}) ORDER BY id",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        )
    };
    let fast_rows = simple_rows(&c, &profile(&fast_ids)).await;
    assert_eq!(fast_rows.len(), 40);
    assert_eq!(fast_rows, simple_rows(&c, &profile(&planned_ids)).await);

    // RETURNING gives what a SELECT of the new contact gives
    let name = "回读".to_string();
    let city: Option<String> = None;
    let back = c
        .query_one(&returning, &[&name, &city])
        .await
        .expect("returning");
    let id: i64 = back.get(0);
    let again = c
        .query_one(
            "SELECT id, name, city, updated_at FROM contacts WHERE id = $1",
            &[&id],
        )
        .await
        .expect("select");
    assert_eq!(back.get::<_, Option<String>>(1), Some(name));
    assert_eq!(back.get::<_, Option<String>>(2), None);
    assert_eq!(
        back.get::<_, Option<chrono::DateTime<chrono::Utc>>>(3),
        again.get::<_, Option<chrono::DateTime<chrono::Utc>>>(3)
    );
    assert!(back
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>(3)
        .is_some());

    // every prepared contact insert left its audit row (81 = 40 + 40 + 1)
    let audited: i64 = c
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'contact_create'",
            &[],
        )
        .await
        .expect("audit")
        .get(0);
    assert_eq!(audited, 81);

    // a bad value: same SQLSTATE, nothing written
    let n_before = simple_rows(&c, "SELECT count(*) FROM contacts").await;
    let bad = c
        .prepare("INSERT INTO contacts (name, birthday) VALUES ($1, 'never')")
        .await;
    match bad {
        Ok(stmt) => {
            let e = c.execute(&stmt, &[&"x"]).await.unwrap_err();
            assert_eq!(SqlError::from(&e).code.as_deref(), Some("22P02"));
        }
        Err(e) => assert_eq!(SqlError::from(&e).code.as_deref(), Some("22P02")),
    }
    expect_sqlstate(
        &c,
        "INSERT INTO contacts (id, name) VALUES (-3, 'neg')",
        "22023",
    )
    .await;
    assert_eq!(
        simple_rows(&c, "SELECT count(*) FROM contacts").await,
        n_before
    );

    // a column added between Prepare and Execute: the new shape, NULL in it
    exec(&c, "ALTER TABLE contacts ADD COLUMN p_note TEXT").await;
    let name: Option<String> = Some("after".into());
    let none: Option<String> = None;
    let day: Option<chrono::NaiveDate> = None;
    let level: Option<i64> = Some(9);
    c.execute(&fast, &[&name, &none, &day, &level])
        .await
        .expect("after ALTER");
    assert_eq!(
        simple_rows(
            &c,
            "SELECT p_level, p_note FROM contacts WHERE name = 'after'"
        )
        .await,
        vec![vec![Some("9".to_string()), None]]
    );
    let back = c
        .query_one(&returning, &[&"after2", &none])
        .await
        .expect("returning after ALTER");
    assert_eq!(back.get::<_, Option<String>>(1).as_deref(), Some("after2"));
}

/// Concurrent writers that read before they write: no lost increment, no
/// primary key taken twice (the lock is released before the WAL sync).
#[tokio::test]
async fn serialised_writers_lose_nothing() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(&c, "CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT)").await;
    exec(&c, "INSERT INTO counter VALUES (1, 0)").await;
    exec(
        &c,
        "CREATE TABLE taken (id BIGINT PRIMARY KEY, by_task BIGINT)",
    )
    .await;
    exec(&c, "ALTER TABLE contacts ADD COLUMN p_visits BIGINT").await;
    exec(
        &c,
        "INSERT INTO contacts (id, name, p_visits) VALUES (1, 'c', 0), (2, 'd', 0)",
    )
    .await;
    let mut tasks = Vec::new();
    for task in 0..8i64 {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let bump = client
                .prepare("UPDATE counter SET n = n + 1 WHERE id = $1")
                .await
                .expect("prepare");
            let take = client
                .prepare("INSERT INTO taken VALUES ($1, $2)")
                .await
                .expect("prepare");
            let visit = client
                .prepare("UPDATE contacts SET p_visits = p_visits + 1 WHERE id = $1")
                .await
                .expect("prepare");
            let mut won = 0u64;
            for i in 0..40i64 {
                assert_eq!(client.execute(&bump, &[&1i64]).await.expect("bump"), 1);
                assert_eq!(client.execute(&visit, &[&1i64]).await.expect("visit"), 1);
                // the same external ids from every task: one contact each
                let ext = format!("member-{i}");
                client
                    .execute("CALL identify('udc_1', $1, '{}')", &[&ext])
                    .await
                    .expect("identify");
                match client.execute(&take, &[&i, &task]).await {
                    Ok(1) => won += 1,
                    Ok(n) => panic!("inserted {n}"),
                    Err(e) => {
                        assert_eq!(SqlError::from(&e).code.as_deref(), Some("23505"))
                    }
                }
            }
            won
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += t.await.expect("task");
    }
    assert_eq!(won, 40, "each key taken exactly once");
    assert_eq!(
        simple_rows(&c, "SELECT n FROM counter WHERE id = 1").await,
        vec![vec![Some("320".to_string())]]
    );
    assert_eq!(
        simple_rows(&c, "SELECT count(*), count(DISTINCT id) FROM taken").await,
        vec![vec![Some("40".to_string()), Some("40".to_string())]]
    );
    assert_eq!(
        simple_rows(
            &c,
            "SELECT id, p_visits FROM contacts WHERE id IN (1, 2) ORDER BY id"
        )
        .await,
        vec![
            vec![Some("1".to_string()), Some("320".to_string())],
            vec![Some("2".to_string()), Some("0".to_string())]
        ],
        "an update by id touches that contact only"
    );
    assert_eq!(
        simple_rows(
            &c,
            "SELECT count(*), count(DISTINCT contact_id) FROM identities WHERE id_value LIKE 'member-%'"
        )
        .await,
        vec![vec![Some("40".to_string()), Some("40".to_string())]]
    );
    // UPDATE/DELETE by an id that does not exist: 0 rows
    assert_eq!(
        exec(&c, "UPDATE contacts SET p_visits = 1 WHERE id = 99999").await,
        0
    );
    assert_eq!(exec(&c, "DELETE FROM contacts WHERE id = 99999").await, 0);
    assert_eq!(
        exec(&c, "DELETE FROM contacts WHERE id IN (2, 2, 99999)").await,
        1
    );
}
