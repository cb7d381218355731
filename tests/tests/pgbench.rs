//! Debian's pgbench against the real binary: `pgbench -i -s 1` (its DDL,
//! `COPY … WITH (freeze on)`, VACUUM, `ALTER TABLE … ADD PRIMARY KEY`), the
//! select-only script and the default TPC-B-like script with four clients —
//! zero failed transactions and the balance invariant (accounts, tellers,
//! branches and history all sum to the same total). Also user-table primary
//! keys as an application meets them: 23505, 23502, key updates, deletes.

use std::process::Command;

use cohortdb_tests::{exec, expect_sqlstate, simple_rows, TestServer};

/// Runs pgbench with `args`; panics with its output unless it exits 0.
fn pgbench(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port().to_string(),
            "-U",
            "admin",
        ])
        .args(args)
        .arg("cohortdb")
        .output()
        .unwrap_or_else(|e| panic!("cannot run pgbench: {e} (scripts/setup.sh installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "pgbench {args:?} failed:\n{text}\n--- server log ---\n{}",
        server.log_tail(40)
    );
    text
}

/// The number after `label` in pgbench's report.
fn figure(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.trim().split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"{label}\" in:\n{report}"))
}

#[tokio::test]
async fn pgbench_init_select_only_and_tpcb() {
    let server = TestServer::start();
    let init = pgbench(&server, &["-i", "-s", "1"]);
    assert!(init.contains("creating primary keys"), "{init}");
    let c = server.client().await;
    let rows = simple_rows(&c, "SELECT count(*) FROM pgbench_accounts").await;
    assert_eq!(rows[0][0].as_deref(), Some("100000"));

    let select_only = pgbench(&server, &["-S", "-T", "3", "-c", "4"]);
    assert_eq!(
        figure(&select_only, "number of failed transactions:"),
        0,
        "{select_only}"
    );
    assert!(figure(&select_only, "number of transactions actually processed:") > 0);

    let tpcb = pgbench(&server, &["-T", "4", "-c", "4"]);
    assert_eq!(figure(&tpcb, "number of failed transactions:"), 0, "{tpcb}");
    let done = figure(&tpcb, "number of transactions actually processed:");
    assert!(done > 0, "{tpcb}");

    // every transaction added the same delta to one account, teller and
    // branch and wrote one history row
    let rows = simple_rows(
        &c,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), \
                (SELECT sum(tbalance) FROM pgbench_tellers), \
                (SELECT sum(bbalance) FROM pgbench_branches), \
                (SELECT sum(delta) FROM pgbench_history), \
                (SELECT count(*) FROM pgbench_history)",
    )
    .await;
    let r = &rows[0];
    assert_eq!(r[0], r[1], "accounts vs tellers: {r:?}");
    assert_eq!(r[1], r[2], "tellers vs branches: {r:?}");
    assert_eq!(r[2], r[3], "branches vs history: {r:?}");
    assert_eq!(r[4].as_deref(), Some(done.to_string().as_str()), "{r:?}");
}

#[tokio::test]
async fn user_table_primary_keys() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        "CREATE TABLE sku (code text PRIMARY KEY, price double precision)",
    )
    .await;
    exec(&c, "INSERT INTO sku VALUES ('a', 1), ('b', 2)").await;
    // an existing key, a key twice in one statement, a NULL key: nothing written
    let e = expect_sqlstate(&c, "INSERT INTO sku VALUES ('c', 3), ('a', 9)", "23505").await;
    assert!(
        e.message.contains("sku_pkey") && e.message.contains("(code)=(a)"),
        "{e:?}"
    );
    expect_sqlstate(&c, "INSERT INTO sku VALUES ('d', 1), ('d', 2)", "23505").await;
    expect_sqlstate(&c, "INSERT INTO sku VALUES (NULL, 1)", "23502").await;
    let rows = simple_rows(&c, "SELECT code FROM sku ORDER BY code").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    // lookups by key, updates and deletes keep the key index
    exec(&c, "UPDATE sku SET price = price + 1 WHERE code = 'a'").await;
    exec(&c, "UPDATE sku SET code = 'z' WHERE code = 'b'").await;
    expect_sqlstate(&c, "UPDATE sku SET code = 'a' WHERE code = 'z'", "23505").await;
    let rows = simple_rows(&c, "SELECT code, price FROM sku WHERE code = 'z'").await;
    assert_eq!(rows, vec![vec![Some("z".into()), Some("2".into())]]);
    assert!(simple_rows(&c, "SELECT * FROM sku WHERE code = 'b'")
        .await
        .is_empty());
    exec(&c, "INSERT INTO sku VALUES ('b', 5)").await;
    exec(&c, "DELETE FROM sku WHERE code = 'a'").await;
    exec(&c, "INSERT INTO sku VALUES ('a', 7)").await;
    let rows = simple_rows(&c, "SELECT code, price FROM sku ORDER BY code").await;
    assert_eq!(
        rows,
        vec![
            vec![Some("a".into()), Some("7".into())],
            vec![Some("b".into()), Some("5".into())],
            vec![Some("z".into()), Some("2".into())],
        ]
    );
    // bound parameters take the key path too
    let rows = c
        .query("SELECT price FROM sku WHERE code = $1", &[&"b"])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, f64>(0), 5.0);
    // ADD PRIMARY KEY checks the rows already there
    exec(&c, "CREATE TABLE t (id int, v text)").await;
    exec(&c, "INSERT INTO t VALUES (1, 'x'), (1, 'y')").await;
    expect_sqlstate(&c, "ALTER TABLE t ADD PRIMARY KEY (id)", "23505").await;
    exec(&c, "DELETE FROM t WHERE v = 'y'").await;
    exec(&c, "ALTER TABLE t ADD PRIMARY KEY (id)").await;
    expect_sqlstate(&c, "ALTER TABLE t ADD PRIMARY KEY (id)", "42P16").await;
    expect_sqlstate(&c, "INSERT INTO t VALUES (1, 'again')", "23505").await;
    // TRUNCATE empties the index with the rows
    exec(&c, "TRUNCATE t").await;
    exec(&c, "INSERT INTO t VALUES (1, 'after truncate')").await;
    // VACUUM / ANALYZE are accepted, and check their tables
    exec(&c, "VACUUM ANALYZE t").await;
    exec(&c, "ANALYZE").await;
    expect_sqlstate(&c, "VACUUM no_such_table", "42P01").await;
}
