//! A cohortdb (or a helper such as the fake WeChat API) started by a
//! benchmark on its own data directory, stopped when dropped; and the
//! connection and statement helpers the `wechat` and `journeys`
//! subcommands share.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::Result;

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts connections on `port`.
pub fn wait_port(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not start on port {port}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Starts `bin serve` on `dir/data` at `port` (no HTTP collector), with
/// `config` (TOML) when given; returns it and how long it took to accept
/// connections. Its log goes to `dir/server.log`.
pub fn start_cohortdb(
    bin: &Path,
    dir: &Path,
    port: u16,
    config: Option<&str>,
) -> Result<(Proc, Duration)> {
    let t = Instant::now();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http-listen", ""]);
    if let Some(text) = config {
        let conf = dir.join("cohortdb.toml");
        std::fs::write(&conf, text)?;
        cmd.arg("--config").arg(conf);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let p = Proc(child);
    wait_port(port, "cohortdb")?;
    Ok((p, t.elapsed()))
}

/// A connection as `admin` to the cohortdb on `port`.
pub async fn connect(port: u16) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=admin dbname=cohortdb"),
        NoTls,
    )
    .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn db(sql: &str, e: tokio_postgres::Error) -> crate::Error {
    match e.as_db_error() {
        Some(d) => format!("{}: {} ({})", sql, d.message(), d.code().code()).into(),
        None => format!("{sql}: {e}").into(),
    }
}

/// Runs `sql`; an error names the statement and the SQLSTATE.
pub async fn exec(c: &Client, sql: &str) -> Result<()> {
    c.batch_execute(sql).await.map_err(|e| db(sql, e))
}

/// The first column of the first row of `sql`, as text.
pub async fn scalar(c: &Client, sql: &str) -> Result<String> {
    let rows = c.simple_query(sql).await.map_err(|e| db(sql, e))?;
    for m in rows {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return Ok(r.get(0).unwrap_or("").to_string());
        }
    }
    Err(format!("no row from {sql}").into())
}
