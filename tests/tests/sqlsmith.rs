//! Debian's sqlsmith against the real binary: it loads its catalog
//! (types, tables, columns, operators, routines, aggregates from
//! `pg_catalog`) and runs a bounded number of random queries; the server
//! answers every one (an error is fine, a dropped connection or a panic is
//! not) and keeps serving afterwards.

use std::process::Command;
use std::time::Duration;

use cohortdb_tests::{exec, simple_rows, TestServer};

#[tokio::test]
async fn sqlsmith_loads_the_catalog_and_a_bounded_run_leaves_the_server_up() {
    let server = TestServer::start();
    let c = server.client().await;
    // something to generate queries over besides the built-in relations
    exec(
        &c,
        "CREATE TABLE sku (code text PRIMARY KEY, price double precision, stock bigint)",
    )
    .await;
    exec(&c, "INSERT INTO sku VALUES ('a', 1.5, 3), ('b', 2, NULL)").await;
    exec(
        &c,
        "INSERT INTO contacts (id, name, city) VALUES (1, 'A', 'x'), (2, 'B', 'y')",
    )
    .await;

    let target = format!(
        "host=127.0.0.1 port={} user=admin dbname=cohortdb",
        server.port()
    );
    let mut child = Command::new("sqlsmith")
        .arg(format!("--target={target}"))
        .args(["--max-queries=150", "--seed=20261207", "--verbose"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sqlsmith: {e} (scripts/setup.sh installs it)"));
    // bounded in time too: a hung query would be a failure
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().expect("sqlsmith status") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "sqlsmith did not finish 150 queries in 300 s\n{}",
                server.log_tail(40)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = child.wait_with_output().expect("sqlsmith output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        status.success(),
        "sqlsmith failed ({status}):\n{text}\n{}",
        server.log_tail(40)
    );
    assert!(text.contains("Loading routines...done."), "{text}");
    assert!(text.contains("queries: 150"), "{text}");
    // sqlsmith marks a lost connection with 'C'
    let progress: String = text
        .lines()
        .filter(|l| l.chars().all(|ch| ".eSCt".contains(ch)) && !l.is_empty())
        .collect();
    assert!(
        !progress.contains('C'),
        "a query broke the connection:\n{text}"
    );
    eprintln!("sqlsmith error classes:\n{text}");

    // the server is still up and answering
    let rows = simple_rows(&c, "SELECT count(*) FROM sku").await;
    assert_eq!(rows[0][0].as_deref(), Some("2"));
    assert!(
        !server.log_contents().contains("panicked"),
        "{}",
        server.log_tail(60)
    );
}
