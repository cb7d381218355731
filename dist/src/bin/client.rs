//! `cohortdb-dist`: runs an analytics statement (FUNNEL, RETENTION, ATTRIBUTE, LTV, PATHS: turned
//! into its SQL form by `cohortdb sql-form`) or any SQL over an export directory, on a Ballista
//! cluster (`--remote df://host:port`) or, without `--remote`, in this
//! process (plain DataFusion), and prints the rows.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use datafusion::arrow::util::pretty::pretty_format_batches;

/// Command line.
#[derive(Parser)]
#[command(
    name = "cohortdb-dist",
    version,
    about = "cohortdb analytics over exported Parquet, on Ballista or plain DataFusion"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a statement and print its rows.
    Query {
        /// Scheduler URL, e.g. df://127.0.0.1:50050.
        #[arg(long)]
        remote: Option<String>,
        /// Partitions of the plan (default 4 on a cluster, 2 locally).
        #[arg(long)]
        partitions: Option<usize>,
        /// Export directory (`cohortdb export --out`).
        #[arg(long)]
        data: PathBuf,
        /// Session time zone of the statement (FROM/TO days, BY DAY periods).
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// An analytics statement or SQL over `events` and `contacts`.
        statement: String,
    },
}

/// The `cohortdb` binary: next to this one, else on PATH (`COHORTDB_BIN` overrides).
fn cohortdb_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("COHORTDB_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("cohortdb")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("cohortdb"))
}

/// `statement` as SQL: an analytics statement becomes its SQL form
/// (`cohortdb sql-form`), anything else is taken as SQL.
fn sql_of(statement: &str, timezone: &str, data: &std::path::Path) -> Result<String, String> {
    let first = statement
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if !["FUNNEL", "RETENTION", "ATTRIBUTE", "LTV", "PATHS"].contains(&first.as_str()) {
        return Ok(statement.to_string());
    }
    let bin = cohortdb_binary();
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["sql-form", "--timezone", timezone]);
    // the export's columns resolve BY columns as the server does
    if data.join("contacts").is_dir() {
        cmd.arg("--export").arg(data);
    }
    let out = cmd
        .arg(statement)
        .output()
        .map_err(|e| format!("cannot run {} sql-form: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn query(
    remote: Option<String>,
    partitions: Option<usize>,
    data: PathBuf,
    timezone: String,
    statement: String,
) -> Result<(), String> {
    let sql = sql_of(&statement, &timezone, &data)?;
    let ctx = match (&remote, partitions) {
        (Some(url), n) => cohortdb_dist::cluster::remote_context(url, n.unwrap_or(4))
            .await
            .map_err(|e| format!("cannot reach the scheduler at {url}: {e}"))?,
        (None, n) => cohortdb_dist::files::local_context(&data, n.unwrap_or(2))
            .await
            .map_err(|e| e.to_string())?,
    };
    if remote.is_some() {
        cohortdb_dist::files::register_export(&ctx, &data)
            .await
            .map_err(|e| format!("cannot read {}: {e}", data.display()))?;
    }
    let started = Instant::now();
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!(
        "{}",
        pretty_format_batches(&batches).map_err(|e| e.to_string())?
    );
    eprintln!(
        "({rows} rows in {:.1} ms, {})",
        elapsed.as_secs_f64() * 1000.0,
        match (&remote, partitions) {
            (Some(url), n) => format!("Ballista at {url}, {} partitions", n.unwrap_or(4)),
            (None, n) => format!("local DataFusion, {} partitions", n.unwrap_or(2)),
        }
    );
    Ok(())
}

fn main() {
    let args = Args::parse();
    let result = match args.command {
        Command::Query {
            remote,
            partitions,
            data,
            timezone,
            statement,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(query(remote, partitions, data, timezone, statement)),
    };
    if let Err(e) = result {
        eprintln!("cohortdb-dist: {e}");
        std::process::exit(1);
    }
}
