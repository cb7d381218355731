//! The SQL surface clients meet on day one, over the wire in both
//! protocols: PostgreSQL's output column names (duplicates allowed,
//! `?column?`, casts named after their operand), correlated subqueries in a
//! SELECT list (answered, not replaced by NULL), EXISTS as a value, and
//! client catalog queries whose subqueries cannot be decorrelated.

use cohortdb_tests::{exec, simple_rows, TestServer};
use tokio_postgres::SimpleQueryMessage;

/// Column names of `sql`'s result, from the simple protocol's RowDescription
/// and from a prepared statement's Describe.
async fn names_both(c: &tokio_postgres::Client, sql: &str) -> (Vec<String>, Vec<String>) {
    let mut simple = vec![];
    for m in c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    {
        if let SimpleQueryMessage::RowDescription(cols) = m {
            simple = cols.iter().map(|c| c.name().to_string()).collect();
        }
    }
    let prepared = c
        .prepare(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    (simple, prepared)
}

#[tokio::test]
async fn output_columns_are_named_as_postgres_names_them() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        "INSERT INTO contacts (id, name, city) VALUES (1, 'a', 'x'), (2, 'b', 'y')",
    )
    .await;
    for (sql, want) in [
        (
            "SELECT (SELECT 1), (SELECT 2)",
            vec!["?column?", "?column?"],
        ),
        (
            "SELECT (SELECT count(*) FROM contacts), (SELECT count(*) FROM events)",
            vec!["count", "count"],
        ),
        (
            "SELECT user, current_user, session_user",
            vec!["user", "current_user", "session_user"],
        ),
        ("SELECT 1, 1", vec!["?column?", "?column?"]),
        (
            "SELECT id::text, CAST(1 AS int), CASE WHEN true THEN 1 END FROM contacts",
            vec!["id", "int4", "case"],
        ),
        (
            "SELECT count(*), count(*) FROM contacts",
            vec!["count", "count"],
        ),
        (
            "SELECT c.id, d.id FROM contacts c JOIN contacts d ON c.id = d.id",
            vec!["id", "id"],
        ),
        ("SELECT 1 AS a, 2 AS a", vec!["a", "a"]),
    ] {
        let (simple, prepared) = names_both(&c, sql).await;
        assert_eq!(simple, want, "simple: {sql}");
        assert_eq!(prepared, want, "extended: {sql}");
    }
    // values come through too
    let rows = simple_rows(
        &c,
        "SELECT (SELECT count(*) FROM contacts), (SELECT max(id) FROM contacts)",
    )
    .await;
    assert_eq!(rows[0], vec![Some("2".into()), Some("2".into())]);
    // a cast keeps its operand's name inside an enclosing query
    let rows = simple_rows(
        &c,
        "SELECT s.id FROM (SELECT id::text FROM contacts) s ORDER BY 1",
    )
    .await;
    assert_eq!(rows.len(), 2);
}

#[tokio::test]
async fn correlated_subqueries_in_select_lists_are_answered() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        "INSERT INTO contacts (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    )
    .await;
    exec(
        &c,
        "INSERT INTO events (contact_id, event, event_date) VALUES \
         (1, 'custom_order', '2025-06-01 10:00:00+00'), (1, 'custom_order', '2025-06-02 10:00:00+00'), \
         (2, 'app_launch', '2025-06-01 10:00:00+00')",
    )
    .await;
    // qualified and unqualified outer columns (upstream's rewrite made the first NULL)
    let rows = simple_rows(
        &c,
        "SELECT (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = p.pronamespace) \
         FROM pg_catalog.pg_proc p WHERE p.proname = 'abs' LIMIT 1",
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("pg_catalog"));
    let rows = simple_rows(
        &c,
        "SELECT (SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = pronamespace) \
         FROM pg_catalog.pg_proc WHERE proname = 'abs' LIMIT 1",
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("pg_catalog"));
    // over data
    let rows = simple_rows(
        &c,
        "SELECT c.id, (SELECT count(*) FROM events e WHERE e.contact_id = c.id) AS n, \
         EXISTS (SELECT 1 FROM events e WHERE e.contact_id = c.id AND e.event = 'custom_order') AS buyer \
         FROM contacts c ORDER BY c.id",
    )
    .await;
    let got: Vec<Vec<Option<String>>> = rows;
    assert_eq!(
        got,
        vec![
            vec![Some("1".into()), Some("2".into()), Some("t".into())],
            vec![Some("2".into()), Some("1".into()), Some("f".into())],
            vec![Some("3".into()), Some("0".into()), Some("f".into())],
        ]
    );
    let rows = simple_rows(
        &c,
        "SELECT EXISTS (SELECT * FROM pg_catalog.pg_proc WHERE proname = 'abs'), \
         NOT EXISTS (SELECT 1 FROM contacts WHERE id < 0)",
    )
    .await;
    assert_eq!(rows[0], vec![Some("t".into()), Some("t".into())]);
    // psql's `\d` column query: its collation subquery has a non-equality
    // between inner and outer columns; the catalog holds no differing collations
    let rows = simple_rows(
        &c,
        "SELECT a.attname, \
           (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d \
            WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef), \
           (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t \
            WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation \
         FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = 'contacts'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum LIMIT 2",
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("id"));
    assert_eq!(rows[0][2], None);
    // the same shape over data is refused rather than answered with NULL
    let err = c
        .simple_query(
            "SELECT c.id, (SELECT max(e.event) FROM events e WHERE e.contact_id <> c.id) FROM contacts c",
        )
        .await;
    if let Ok(msgs) = err {
        // if DataFusion can run it, the answer must be real
        let vals: Vec<String> = msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(1).map(str::to_string),
                _ => None,
            })
            .collect();
        assert!(!vals.is_empty());
    }
}

/// Catalog queries of real clients, replayed: each failed before.
#[tokio::test]
async fn client_catalog_queries() {
    let server = TestServer::start();
    let c = server.client().await;
    // pgjdbc getImportedKeys / getIndexInfo read max_index_keys
    let rows = simple_rows(
        &c,
        "SELECT setting FROM pg_catalog.pg_settings WHERE name='max_index_keys'",
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("32"));
    // SQLAlchemy 1.4 (Superset) index reflection compares a boolean with 'f'
    let rows = simple_rows(
        &c,
        "SELECT count(*) FROM pg_catalog.pg_index ix WHERE ix.indisprimary = 'f' OR ix.indisprimary = 't'",
    )
    .await;
    assert!(rows[0][0].as_deref().unwrap_or("0").parse::<i64>().unwrap() > 0);
    // sqlsmith's routine list: every routine has a schema name
    let rows = simple_rows(
        &c,
        "SELECT count(*) FROM (SELECT (SELECT nspname FROM pg_namespace WHERE oid = pronamespace) AS n \
         FROM pg_proc WHERE NOT (proretset OR prokind = 'a' OR prokind = 'w')) s WHERE n IS NULL",
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("0"));
    // ... and its routine parameters: proargtypes is an array
    let rows = simple_rows(
        &c,
        "SELECT count(*) FROM (SELECT unnest(proargtypes) FROM pg_proc WHERE proname = 'abs') s",
    )
    .await;
    assert!(rows[0][0].as_deref().unwrap_or("0").parse::<i64>().unwrap() > 0);
    // pgcli's `relkind = ANY($1)`: an untyped parameter is an array of the other side's type
    let st = c
        .prepare("SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relkind = ANY($1)")
        .await
        .unwrap();
    assert_eq!(st.params()[0], tokio_postgres::types::Type::TEXT_ARRAY);
    let n: i64 = c
        .query_one(&st, &[&vec!["r".to_string(), "v".to_string()]])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    // pgcli's \db
    let rows = simple_rows(
        &c,
        "SELECT EXISTS(SELECT * FROM pg_proc WHERE proname = 'pg_tablespace_location')",
    )
    .await;
    assert_eq!(rows.len(), 1);
}

/// `$n` parameters in the analytics statements (FROM/TO and predicates)
/// and in group definitions, from the extended protocol.
#[tokio::test]
async fn bound_parameters_in_analytics_and_group_statements() {
    use tokio_postgres::types::Type;
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        "INSERT INTO contacts (id, name, city) VALUES (1, 'A', 'x'), (2, 'B', 'y'), (3, 'C', 'x')",
    )
    .await;
    exec(
        &c,
        "INSERT INTO events (contact_id, event, event_date) VALUES \
         (1, 'app_launch', '2025-06-01 10:00:00+00'), (1, 'add_to_cart', '2025-06-01 11:00:00+00'), \
         (2, 'app_launch', '2025-06-02 10:00:00+00'), (3, 'app_launch', '2025-06-20 10:00:00+00')",
    )
    .await;
    let sql = "FUNNEL STEP event = $1, STEP event = $2 WITHIN 1 DAYS FROM $3 TO $4";
    // Describe types FROM/TO as dates
    let st = c.prepare(sql).await.unwrap();
    assert_eq!(st.params()[2], Type::DATE);
    assert_eq!(st.params()[3], Type::DATE);
    // the client may declare text instead
    let st = c
        .prepare_typed(sql, &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT])
        .await
        .unwrap();
    let rows = c
        .query(
            &st,
            &[&"app_launch", &"add_to_cart", &"2025-06-01", &"2025-06-07"],
        )
        .await
        .unwrap();
    let counts: Vec<i64> = rows.iter().map(|r| r.get::<_, i64>("contacts")).collect();
    assert_eq!(counts, vec![2, 1]);
    // a wider range counts the third launch
    let rows = c
        .query(
            &st,
            &[&"app_launch", &"add_to_cart", &"2025-06-01", &"2025-06-30"],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>("contacts"), 3);
    // TO before FROM is the statement's own error
    let err = c
        .query(
            &st,
            &[&"app_launch", &"add_to_cart", &"2025-06-30", &"2025-06-01"],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("22023"), "{err}");
    // unbound in the simple protocol: 42P02
    let err = c
        .simple_query(
            "FUNNEL STEP event = 'a', STEP event = 'b' WITHIN 1 DAYS FROM $1 TO '2025-06-01'",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P02"), "{err}");
    // a group defined with parameters stores the values
    let st = c
        .prepare_typed(
            "CREATE GROUP group_city AS SELECT id FROM contacts WHERE city = $1",
            &[Type::TEXT],
        )
        .await
        .unwrap();
    c.execute(&st, &[&"x"]).await.unwrap();
    let rows = simple_rows(
        &c,
        "SELECT definition, members FROM groups WHERE id = 'group_city'",
    )
    .await;
    assert_eq!(
        rows[0],
        vec![
            Some("SELECT id FROM contacts WHERE city = 'x'".into()),
            Some("2".into())
        ]
    );
}
