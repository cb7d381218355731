//! Real Postgres clients against the real binary: psql meta-commands,
//! psycopg2, psycopg 3, asyncpg, SQLAlchemy 2 reflection, node-postgres,
//! pgjdbc and tokio-postgres. Each client script lives in `tests/clients/`
//! and exits non-zero on the first mismatch; the test fails with its output
//! and the server log. The clients are installed by `scripts/setup.sh`; a
//! missing one fails the test (it is never skipped).

use std::path::{Path, PathBuf};
use std::process::Command;

use cohortdb_tests::{simple_rows, TestServer};

fn clients_dir() -> PathBuf {
    cohortdb_tests::tests_dir().join("clients")
}

/// Runs `cmd` with `COHORTDB_PORT` set; panics with its output (and the
/// server log) unless it exits 0. Returns stdout.
fn run(server: &TestServer, what: &str, cmd: &mut Command) -> String {
    cmd.env("COHORTDB_PORT", server.port().to_string())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", server.port().to_string())
        .env("PGUSER", "admin")
        .env("PGDATABASE", "cohortdb");
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!(
            "{what}: cannot run {:?}: {e} (install the test clients with scripts/setup.sh)",
            cmd.get_program()
        ),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- server log ---\n{}",
            out.status,
            server.log_tail(80)
        );
    }
    stdout
}

fn python() -> Command {
    let venv = clients_dir().join(".venv/bin/python");
    if venv.is_file() {
        Command::new(venv)
    } else {
        Command::new("python3")
    }
}

fn python_script(name: &str) {
    let server = TestServer::start();
    let mut cmd = python();
    cmd.arg(clients_dir().join("python").join(name));
    let out = run(&server, name, &mut cmd);
    assert!(out.contains(" ok"), "{name}: {out}");
}

#[test]
fn psql_meta_commands() {
    let server = TestServer::start();
    let out = run(
        &server,
        "psql",
        Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(clients_dir().join("psql_meta.sql")),
    );
    for expected in [
        "public | contacts",
        "public | contact_view",
        "| view",
        "Table \"public.contacts\"",
        "View \"public.contact_view\"",
        "\"contacts_pkey\" PRIMARY KEY, btree (id)",
        "cohortdb",
        "List of schemas",
        "List of functions",
        "PostgreSQL 16.",
        // \d+ contacts / \d+ contact_view / \dt+ / \du
        "| Storage  |",
        "View definition:",
        "| Compression |",
        "Access method: heap",
        "| Persistence | Access method |",
        "List of roles",
        "| Superuser, Create role, Create DB",
        "cohort_unmasked | Cannot login",
        // a stored view and a CREATE TABLE … AS
        "public | saved_cities | view",
        "View \"public.saved_cities\"",
        " count  | bigint",
        "Table \"public.city_copy\"",
        " n      | bigint",
    ] {
        assert!(
            out.contains(expected),
            "psql output lacks {expected:?}:\n{out}"
        );
    }
}

#[test]
fn psycopg2() {
    python_script("psycopg2_client.py");
}

#[test]
fn psycopg3() {
    python_script("psycopg3_client.py");
}

#[test]
fn asyncpg() {
    python_script("asyncpg_client.py");
}

#[test]
fn sqlalchemy_reflection() {
    python_script("sqlalchemy_client.py");
}

#[test]
fn node_postgres() {
    let dir = clients_dir().join("node");
    assert!(
        dir.join("node_modules/pg").is_dir(),
        "node-postgres is not installed in {}: run scripts/setup.sh",
        dir.display()
    );
    let server = TestServer::start();
    let out = run(
        &server,
        "node-postgres",
        Command::new("node").arg("client.js").current_dir(&dir),
    );
    assert!(out.contains("node-postgres ok"), "{out}");
}

#[test]
fn pgjdbc() {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    assert!(
        jar.is_file(),
        "pgjdbc not found at {}: run scripts/setup.sh (libpostgresql-jdbc-java)",
        jar.display()
    );
    let classes = tempfile::tempdir().expect("tempdir");
    let status = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(clients_dir().join("java/JdbcClient.java"))
        .status()
        .expect("javac (install a JDK with scripts/setup.sh)");
    assert!(status.success(), "javac failed");
    let server = TestServer::start();
    let cp = format!("{}:{}", classes.path().display(), jar.display());
    let out = run(
        &server,
        "pgjdbc",
        Command::new("java").args(["-cp", &cp, "JdbcClient"]),
    );
    assert!(out.contains("pgjdbc ok"), "{out}");
}

#[tokio::test]
async fn tokio_postgres() {
    let server = TestServer::start();
    let c = server.client().await;
    c.execute(
        "INSERT INTO contacts (name, email) VALUES ($1, $2)",
        &[&"Fay", &"fay@example.com"],
    )
    .await
    .expect("insert");
    let row = c
        .query_one(
            "SELECT id, name, created_at FROM contacts WHERE name = $1",
            &[&"Fay"],
        )
        .await
        .expect("select");
    let name: &str = row.get(1);
    assert_eq!(name, "Fay");
    let _: chrono::DateTime<chrono::Utc> = row.get(2);
    let row = c
        .query_one(
            "SELECT $1::bigint + 1, $2::float8, $3::bool",
            &[&41i64, &2.5f64, &true],
        )
        .await
        .expect("typed params");
    assert_eq!(row.get::<_, i64>(0), 42);
    assert_eq!(row.get::<_, f64>(1), 2.5);
    assert!(row.get::<_, bool>(2));
    // a statement prepared once, executed with several values
    let st = c
        .prepare("SELECT count(*) FROM contacts WHERE id >= $1")
        .await
        .expect("prepare");
    for v in [0i64, 1, 1000] {
        c.query_one(&st, &[&v]).await.expect("execute");
    }
    let err = c
        .query("SELECT * FROM nowhere", &[])
        .await
        .err()
        .expect("42P01");
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");
    let rows = simple_rows(&c, "SELECT current_setting('server_version_num')").await;
    assert_eq!(rows[0][0].as_deref(), Some(cohortdb_sql_version_num()));
}

fn cohortdb_sql_version_num() -> &'static str {
    "160004"
}
