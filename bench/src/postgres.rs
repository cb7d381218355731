//! A throwaway PostgreSQL cluster on loopback for comparison runs.
//!
//! `initdb` into a fresh directory under `/tmp` (trust auth, superuser
//! `postgres`), `pg_ctl start` on `127.0.0.1:<port>` with durable settings
//! (`fsync=on`, `synchronous_commit=on`; everything else PostgreSQL's
//! defaults plus any `--pg-option`), and on [`Cluster::stop`] (or drop) a fast
//! shutdown and removal of the directory. PostgreSQL refuses to run as root,
//! so when the benchmark runs as root the tools run through
//! `runuser -u postgres` (or `nobody` if there is no `postgres` user) and the
//! directory is chowned to that user.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use cohortdb_datagen::{CONTACT_COLUMNS, CONTACT_COLUMN_TYPES, EVENT_COLUMNS, EVENT_COLUMN_TYPES};

use crate::Result;

/// A running throwaway cluster; stopped and deleted on [`Cluster::stop`] or drop.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    run_as: Option<String>,
    running: bool,
    removed: bool,
}

impl Cluster {
    /// Creates and starts a cluster with the binaries in `bin`, listening on
    /// `127.0.0.1:port` and a Unix socket in its own directory. `options` are
    /// extra `key=value` settings.
    pub fn start(bin: &Path, port: u16, options: &[String]) -> Result<Cluster> {
        for tool in ["initdb", "pg_ctl", "postgres"] {
            if !bin.join(tool).exists() {
                return Err(format!(
                    "{} not found: install PostgreSQL 15 (e.g. apt-get install postgresql-15) or pass --pg-bin",
                    bin.join(tool).display()
                )
                .into());
            }
        }
        let run_as = if is_root() {
            Some(unprivileged_user())
        } else {
            None
        };
        let dir =
            PathBuf::from("/tmp").join(format!("cohortdb-bench-pg-{}-{port}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            data: dir.join("data"),
            dir,
            port,
            run_as,
            running: false,
            removed: false,
        };
        if let Some(user) = &cluster.run_as {
            run(Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(&cluster.dir))?;
        }
        let data = cluster.data.clone().into_os_string();
        cluster.pg(
            "initdb",
            &[
                "-D".into(),
                data.clone(),
                "--auth=trust".into(),
                "-U".into(),
                "postgres".into(),
                "-E".into(),
                "UTF8".into(),
                "--locale=C".into(),
                "--no-sync".into(),
            ],
        )?;
        let mut server_options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on",
            cluster.dir.display()
        );
        for option in options {
            if option.contains(char::is_whitespace) || !option.contains('=') {
                return Err(
                    format!("--pg-option {option:?}: expected KEY=VALUE without spaces").into(),
                );
            }
            server_options.push_str(" -c ");
            server_options.push_str(option);
        }
        let log = cluster.dir.join("postgres.log").into_os_string();
        cluster.pg(
            "pg_ctl",
            &[
                "-D".into(),
                data,
                "-l".into(),
                log,
                "-w".into(),
                "-t".into(),
                "120".into(),
                "-o".into(),
                server_options.into(),
                "start".into(),
            ],
        )?;
        cluster.running = true;
        Ok(cluster)
    }

    /// libpq connection string for the superuser over TCP loopback.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// Fast shutdown, then removes the cluster directory.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()?;
        self.remove()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.running {
            self.running = false;
            let data = self.data.clone().into_os_string();
            self.pg(
                "pg_ctl",
                &[
                    "-D".into(),
                    data,
                    "-m".into(),
                    "fast".into(),
                    "-w".into(),
                    "stop".into(),
                ],
            )?;
        }
        Ok(())
    }

    fn remove(&mut self) -> Result<()> {
        if !self.removed {
            self.removed = true;
            std::fs::remove_dir_all(&self.dir)
                .map_err(|e| format!("remove {}: {e}", self.dir.display()))?;
        }
        Ok(())
    }

    /// Runs a PostgreSQL tool (as the unprivileged user when we are root).
    fn pg(&self, tool: &str, args: &[OsString]) -> Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args).current_dir(&self.dir);
        run(&mut cmd).map_err(|e| {
            let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if tail.is_empty() {
                e
            } else {
                format!("{e}\npostgres.log:\n{}", tail.join("\n")).into()
            }
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("warning: stopping the throwaway PostgreSQL: {e}");
        }
        if let Err(e) = self.remove() {
            eprintln!("warning: {e}");
        }
    }
}

/// Runs a command to completion; an error carries its output.
fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| format!("run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}):\n{}{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// Whether the effective user is root (PostgreSQL refuses to run as root).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `postgres` if that user exists, else `nobody`.
fn unprivileged_user() -> String {
    let exists = Command::new("id")
        .arg("-u")
        .arg("postgres")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let user = if exists { "postgres" } else { "nobody" };
    user.to_string()
}

/// DDL of tables equivalent to the benchmark's cohortdb columns, without
/// indexes or constraints.
pub fn create_tables_sql() -> String {
    let columns = |names: &[&str], types: &[&str]| {
        names
            .iter()
            .zip(types)
            .map(|(n, t)| format!("{n} {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "CREATE TABLE contacts ({}); CREATE TABLE events ({});",
        columns(CONTACT_COLUMNS, CONTACT_COLUMN_TYPES),
        columns(EVENT_COLUMNS, EVENT_COLUMN_TYPES)
    )
}
