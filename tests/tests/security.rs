//! Users, roles, masking, audit and lockout (SPEC §8) over the wire, with
//! passwords (SCRAM) on: the statement × role matrix with nothing changed
//! on a denial, masking that leaks nothing through predicates (the same
//! queries over two datasets that differ only in masked characters give
//! byte-identical answers), REVOKE between Prepare and Execute, COPY TO
//! refusal, the audit log, and login lockout across a restart.

use cohortdb_tests::{exec, expect_sqlstate, simple_rows, try_simple_rows, TestServer};
use tokio_postgres::{Client, NoTls};

async fn connect(port: u16, user: &str, password: &str) -> Result<Client, tokio_postgres::Error> {
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} dbname=cohortdb user={user} password={password}"),
        NoTls,
    )
    .await?;
    tokio::spawn(conn);
    Ok(c)
}

async fn setup_users(admin: &Client) {
    for sql in [
        "CREATE USER op WITH PASSWORD 'op-pw'",
        "CREATE USER an WITH PASSWORD 'an-pw'",
        "CREATE USER un WITH PASSWORD 'un-pw'",
        "CREATE USER nobody WITH PASSWORD 'no-pw'",
        "GRANT cohort_operator TO op",
        "GRANT cohort_analyst TO an",
        "GRANT cohort_analyst, cohort_unmasked TO un",
    ] {
        exec(admin, sql).await;
    }
}

async fn count(c: &Client, sql: &str) -> String {
    simple_rows(c, sql).await[0][0].clone().unwrap()
}

#[tokio::test]
async fn statement_role_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_password(&dir.path().join("d"), "adm1n");
    let port = server.port();
    let admin = connect(port, "admin", "adm1n").await.unwrap();
    setup_users(&admin).await;
    exec(
        &admin,
        "INSERT INTO contacts (name, mobile_phone) VALUES ('张三', '13812342802')",
    )
    .await;
    exec(&admin, "CREATE TABLE dim (k VARCHAR, v VARCHAR)").await;
    let op = connect(port, "op", "op-pw").await.unwrap();
    let an = connect(port, "an", "an-pw").await.unwrap();
    let nobody = connect(port, "nobody", "no-pw").await.unwrap();
    // (statement, operator, analyst, no role): None = allowed, Some(code) = refused
    let d = Some("42501");
    let matrix: Vec<(&str, Option<&str>, Option<&str>, Option<&str>)> = vec![
        ("SELECT count(*) FROM contacts", None, None, d),
        ("SELECT count(*) FROM event_view", None, None, d),
        ("SELECT 1", None, None, None),
        ("CALL export_events('/tmp/cohortdb-never-written')", d, d, d),
        ("SELECT count(*) FROM pg_catalog.pg_class", None, None, None),
        ("SELECT * FROM audit_log", d, d, d),
        ("SELECT * FROM collector_apps", d, d, d),
        ("INSERT INTO contacts (name) VALUES ('x')", None, d, d),
        (
            "UPDATE contacts SET city = 'x' WHERE name = 'nobody-here'",
            None,
            d,
            d,
        ),
        (
            "DELETE FROM contacts WHERE name = 'nobody-here'",
            None,
            d,
            d,
        ),
        ("INSERT INTO dim VALUES ('a', 'b')", None, d, d),
        ("CREATE TABLE t2 (a BIGINT)", d, d, d),
        ("DROP TABLE dim", d, d, d),
        ("ALTER TABLE contacts ADD COLUMN p_x VARCHAR", d, d, d),
        (
            "ALTER TABLE contacts ALTER COLUMN email SET MASKED",
            d,
            d,
            d,
        ),
        ("CREATE USER eve WITH PASSWORD 'e'", d, d, d),
        ("GRANT cohort_admin TO an", d, d, d),
        ("CALL drop_events_before('2000-01-01')", d, d, d),
        ("CALL identify('shop', 'u1')", None, d, d),
        (
            "CALL collector_add_app('app1', 'key-12345', 'shop')",
            d,
            d,
            d,
        ),
        (
            "CREATE GROUP group_sh AS SELECT id FROM contacts WHERE city = 'x'",
            None,
            d,
            d,
        ),
        ("DELETE FROM audit_log", d, d, d),
        ("TRUNCATE audit_log", d, d, d),
        ("SET application_name = 'x'", None, None, None),
    ];
    for (sql, o, a, n) in matrix {
        for (who, c, want) in [("op", &op, o), ("an", &an, a), ("nobody", &nobody, n)] {
            let before = count(&admin, "SELECT count(*) FROM contacts").await;
            let got = try_simple_rows(c, sql)
                .await
                .err()
                .map(|e| e.code.clone().unwrap_or(e.message));
            assert_eq!(got.as_deref(), want, "{who}: {sql}");
            if want.is_some() {
                assert_eq!(
                    count(&admin, "SELECT count(*) FROM contacts").await,
                    before,
                    "{who}: {sql}"
                );
            }
        }
    }
    // admins may not write the audit log either
    expect_sqlstate(&admin, "DELETE FROM audit_log", "42501").await;
    expect_sqlstate(&admin, "TRUNCATE audit_log", "42501").await;
    // anyone may change their own password, not someone else's
    exec(&an, "ALTER USER an PASSWORD 'an-pw2'").await;
    expect_sqlstate(&an, "ALTER USER op PASSWORD 'x'", "42501").await;
    // roles are visible to clients
    let roles = simple_rows(
        &admin,
        "SELECT rolname FROM pg_roles WHERE rolname LIKE 'cohort%' ORDER BY 1",
    )
    .await;
    assert_eq!(roles.len(), 4);
    expect_sqlstate(&admin, "GRANT cohort_superhero TO an", "42704").await;
    // psql's \du "Member of" reads pg_auth_members
    let members = simple_rows(
        &admin,
        "SELECT m.rolname, r.rolname FROM pg_auth_members a \
         JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member ORDER BY 1, 2",
    )
    .await;
    assert_eq!(
        members,
        vec![
            vec![Some("an".into()), Some("cohort_analyst".into())],
            vec![Some("op".into()), Some("cohort_operator".into())],
            vec![Some("un".into()), Some("cohort_analyst".into())],
            vec![Some("un".into()), Some("cohort_unmasked".into())],
        ]
    );
}

/// Runs `queries` as a masked analyst on a fresh server whose one contact
/// has `phone` and `email`; returns every answer (or error) as text.
async fn masked_answers(phone: &str, email: &str, queries: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_password(&dir.path().join("d"), "adm1n");
    let port = server.port();
    let admin = connect(port, "admin", "adm1n").await.unwrap();
    setup_users(&admin).await;
    exec(
        &admin,
        &format!(
            "INSERT INTO contacts (id, name, mobile_phone, email, city) VALUES \
             (1, '张三', '{phone}', '{email}', '上海'), (2, '李四', '13700000000', 'li@example.com', '北京')"
        ),
    )
    .await;
    for col in ["mobile_phone", "email", "name"] {
        exec(
            &admin,
            &format!("ALTER TABLE contacts ALTER COLUMN {col} SET MASKED"),
        )
        .await;
    }
    let an = connect(port, "an", "an-pw").await.unwrap();
    let mut out = Vec::new();
    for q in queries {
        out.push(match try_simple_rows(&an, q).await {
            Ok(rows) => format!("{rows:?}"),
            Err(e) => format!("error {:?}", e.code),
        });
    }
    // extended protocol, binary results, bound parameter
    let st = an
        .prepare(
            "SELECT id, mobile_phone, email FROM contacts WHERE mobile_phone LIKE $1 ORDER BY id",
        )
        .await
        .unwrap();
    let rows = an.query(&st, &[&"138%"]).await.unwrap();
    out.push(format!(
        "{:?}",
        rows.iter()
            .map(|r| (
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            ))
            .collect::<Vec<_>>()
    ));
    // a masked operator may not define groups on masked columns (refreshes
    // run later without masking); other columns are fine
    let op = connect(port, "op", "op-pw").await.unwrap();
    expect_sqlstate(
        &op,
        "CREATE GROUP group_leak AS SELECT id FROM contacts WHERE mobile_phone LIKE '138123%'",
        "42501",
    )
    .await;
    exec(
        &op,
        "CREATE GROUP group_sh AS SELECT id FROM contacts WHERE city = '上海'",
    )
    .await;
    // the unmasked user sees the real value
    let un = connect(port, "un", "un-pw").await.unwrap();
    let raw = simple_rows(&un, "SELECT mobile_phone FROM contacts WHERE id = 1").await;
    assert_eq!(raw[0][0].as_deref(), Some(phone));
    out
}

#[tokio::test]
async fn masking_leaks_nothing_through_predicates() {
    let queries = [
        "SELECT id, name, mobile_phone, email FROM contacts ORDER BY id",
        "SELECT count(*) FROM contacts WHERE mobile_phone = '13812342802'",
        "SELECT count(*) FROM contacts WHERE mobile_phone > '13850000000'",
        "SELECT count(*) FROM contacts WHERE mobile_phone LIKE '138123%'",
        "SELECT count(*) FROM contacts WHERE email LIKE 'zhang%'",
        "SELECT id FROM contacts ORDER BY mobile_phone, id",
        "SELECT min(mobile_phone), max(mobile_phone), min(email) FROM contacts",
        "SELECT mobile_phone, count(*) FROM contacts GROUP BY mobile_phone ORDER BY 1",
        "SELECT a.id, b.id FROM contacts a JOIN contacts b ON a.mobile_phone = b.mobile_phone ORDER BY 1, 2",
        "SELECT id, mobile_phone FROM contact_view WHERE mobile_phone = '13812342802'",
        "SELECT length(mobile_phone), substr(email, 1, 3) FROM contacts ORDER BY id",
        "COPY contacts TO STDOUT",
        "COPY (SELECT id, mobile_phone FROM contacts) TO STDOUT",
    ];
    let a = masked_answers("13812342802", "zhang@example.com", &queries).await;
    let b = masked_answers("13899992802", "zoe@example.com", &queries).await;
    for (i, q) in queries.iter().enumerate() {
        assert_eq!(a[i], b[i], "answers differ for {q}");
    }
    assert!(a[0].contains("138****2802"), "{}", a[0]);
    assert!(a[0].contains("z***@example.com"), "{}", a[0]);
    assert!(a[0].contains("张*"), "{}", a[0]);
    assert!(a[11].contains("42501") && a[12].contains("42501"), "{a:?}");
    assert_eq!(a.last(), b.last());
    assert!(a.last().unwrap().contains("138****2802"));
}

#[tokio::test]
async fn revoke_between_prepare_and_execute_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_password(&dir.path().join("d"), "adm1n");
    let port = server.port();
    let admin = connect(port, "admin", "adm1n").await.unwrap();
    setup_users(&admin).await;
    exec(
        &admin,
        "INSERT INTO contacts (id, mobile_phone) VALUES (1, '13812342802')",
    )
    .await;
    let an = connect(port, "an", "an-pw").await.unwrap();
    let st = an
        .prepare("SELECT mobile_phone FROM contacts WHERE id = $1")
        .await
        .unwrap();
    let r = an.query(&st, &[&1i64]).await.unwrap();
    assert_eq!(r[0].get::<_, String>(0), "13812342802");
    // masking set after Prepare applies to the next Execute
    exec(
        &admin,
        "ALTER TABLE contacts ALTER COLUMN mobile_phone SET MASKED",
    )
    .await;
    let r = an.query(&st, &[&1i64]).await.unwrap();
    assert_eq!(r[0].get::<_, String>(0), "138****2802");
    exec(&admin, "REVOKE cohort_analyst FROM an").await;
    let err = an.query(&st, &[&1i64]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");
}

#[tokio::test]
async fn audit_log_records_and_is_admin_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_password(&dir.path().join("d"), "adm1n");
    let port = server.port();
    let admin = connect(port, "admin", "adm1n").await.unwrap();
    setup_users(&admin).await;
    assert!(connect(port, "op", "wrong").await.is_err());
    let op = connect(port, "op", "op-pw").await.unwrap();
    exec(&op, "INSERT INTO contacts (name) VALUES ('a'), ('b')").await;
    exec(&op, "UPDATE contacts SET city = 'x' WHERE name = 'a'").await;
    exec(&op, "CALL merge_contacts(1, 2)").await;
    exec(
        &admin,
        "ALTER TABLE contacts ALTER COLUMN mobile_phone SET MASKED",
    )
    .await;
    exec(
        &op,
        "CREATE GROUP group_a AS SELECT id FROM contacts WHERE name = 'a'",
    )
    .await;
    let rows = simple_rows(
        &admin,
        "SELECT user_name, action, object_type, object_id, detail FROM audit_log ORDER BY seq",
    )
    .await;
    let text: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    assert!(text
        .iter()
        .any(|t| t == "admin|login|user|admin|scram-sha-256"));
    for want in [
        "admin|create_user|user|op|",
        "admin|grant_role|user|op|cohort_operator",
        "op|login_failed|user|op|wrong password or unknown user",
        "op|login|user|op|scram-sha-256",
        "op|contact_create|contact||rows=2",
        "admin|set_masked|column|contacts.mobile_phone|",
        "op|create_group|group|group_a|",
        "op|contact_update|contact||rows=1",
        "op|contact_merge|contact||",
    ] {
        // exactly once: written with the change, not again after it
        assert_eq!(
            text.iter().filter(|t| *t == want).count(),
            1,
            "{want}: {text:#?}"
        );
    }
    // no password ever reaches the log
    assert!(!text
        .iter()
        .any(|t| t.contains("op-pw") || t.contains("wrong\"")));
    expect_sqlstate(&op, "SELECT * FROM audit_log", "42501").await;
    expect_sqlstate(&op, "CALL audit_verify()", "42501").await;
    let v = simple_rows(&admin, "CALL audit_verify()").await;
    assert_eq!(v[0][0].as_deref(), Some("t"), "{v:?}");
    assert_eq!(v[0][1].as_deref(), Some(text.len().to_string().as_str()));
    expect_sqlstate(&admin, "UPDATE audit_log SET detail = ''", "42501").await;
}

#[tokio::test]
async fn lockout_after_five_failures_survives_restart_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.toml");
    std::fs::write(&conf, "login_lock_secs = 3\n").unwrap();
    let data = dir.path().join("d");
    let conf_s = conf.to_str().unwrap().to_string();
    {
        let server = TestServer::start_with_password(&data, "adm1n");
        let admin = connect(server.port(), "admin", "adm1n").await.unwrap();
        exec(&admin, "CREATE USER bob WITH PASSWORD 'bob-pw'").await;
    }
    let server = TestServer::start_with_password_and(&data, "adm1n", &["--config", &conf_s]);
    let port = server.port();
    for _ in 0..5 {
        let e = connect(port, "bob", "nope").await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("28P01"));
    }
    // locked: the right password gets the same answer as a wrong one
    let locked = connect(port, "bob", "bob-pw").await.unwrap_err();
    let unknown = connect(port, "nosuchuser", "x").await.unwrap_err();
    assert_eq!(locked.code().map(|c| c.code()), Some("28P01"));
    assert_eq!(unknown.code().map(|c| c.code()), Some("28P01"));
    drop(server);
    let server = TestServer::start_with_password_and(&data, "adm1n", &["--config", &conf_s]);
    assert!(
        connect(server.port(), "bob", "bob-pw").await.is_err(),
        "still locked after restart"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    connect(server.port(), "bob", "bob-pw")
        .await
        .expect("unlocked after login_lock_secs");
}
