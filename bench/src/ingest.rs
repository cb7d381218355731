//! `ingest`: how fast contacts and events arrive over the wire.
//!
//! Both files are streamed with `COPY <table> (<columns>) FROM STDIN
//! (FORMAT csv)` through tokio-postgres `copy_in`, in 1 MiB `CopyData`
//! chunks (chunk boundaries do not follow row boundaries, as with any
//! client). The time of each COPY runs from sending the statement to the
//! server's `CommandComplete`, and the row count is the one the server
//! reports (`COPY <n>`). With `--postgres`, a throwaway PostgreSQL 15 is
//! loaded first with the same files the same way, then stopped and removed,
//! so nothing else runs on the machine while cohortdb is measured.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::{pin_mut, SinkExt};
use tokio::io::AsyncReadExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use cohortdb_datagen::{CONTACT_COLUMNS, EVENT_COLUMNS};

use crate::dataset::{self, DataArgs, Dataset};
use crate::postgres::Cluster;
use crate::report::{self, Measurement};
use crate::Result;

/// Size of one `CopyData` message.
const CHUNK: usize = 1 << 20;

/// Options of `cohortdb-bench ingest`.
#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Connection string of the running cohortdb (libpq key=value or URL).
    /// Use a server with an empty data directory (not started with --demo).
    #[arg(
        long,
        env = "COHORTDB_BENCH_URL",
        default_value = "host=127.0.0.1 port=5433 user=admin dbname=cohortdb"
    )]
    pub url: String,
    /// Also load the same files into a throwaway PostgreSQL 15 and compare.
    #[arg(long)]
    pub postgres: bool,
    /// Do not load cohortdb (only generate, or only measure PostgreSQL).
    #[arg(long)]
    pub skip_cohortdb: bool,
    /// Directory with the PostgreSQL server binaries (initdb, pg_ctl).
    #[arg(long, value_name = "DIR", default_value = "/usr/lib/postgresql/15/bin")]
    pub pg_bin: PathBuf,
    /// TCP port of the throwaway PostgreSQL (loopback only).
    #[arg(long, default_value_t = 55432)]
    pub pg_port: u16,
    /// Extra PostgreSQL setting for the throwaway cluster, e.g.
    /// `--pg-option max_wal_size=4GB` (repeatable).
    #[arg(long = "pg-option", value_name = "KEY=VALUE")]
    pub pg_options: Vec<String>,
    /// Also print all results as one JSON line (for docs).
    #[arg(long)]
    pub json: bool,
}

/// Runs the ingest benchmark.
pub async fn run(args: IngestArgs) -> Result<()> {
    let data_args = args.data.clone();
    let data = tokio::task::spawn_blocking(move || dataset::prepare(&data_args)).await??;
    report::print_dataset(&data);

    let mut results = Vec::new();
    if args.postgres {
        results.extend(load_postgres(&args, &data).await?);
    }
    if !args.skip_cohortdb {
        results.extend(load_cohortdb(&args.url, &data).await?);
    }
    if !results.is_empty() {
        println!();
        report::print_ingest(&results);
    }
    if args.json {
        println!("{}", report::ingest_json(&data, &results));
    }
    Ok(())
}

/// Loads both files into the cohortdb at `url`.
pub(crate) async fn load_cohortdb(url: &str, data: &Dataset) -> Result<Vec<Measurement>> {
    let client = connect(url).await.map_err(|e| {
        format!("{e}\n(is cohortdb running? start it with an empty data directory, or pass --url / --skip-cohortdb)")
    })?;
    // p_amount is a custom event property; it may exist from an earlier run.
    match client
        .batch_execute("ALTER TABLE events ADD COLUMN p_amount DOUBLE")
        .await
    {
        Ok(()) => {}
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_COLUMN) => {}
        Err(e) => {
            return Err(format!(
                "ALTER TABLE events ADD COLUMN p_amount DOUBLE: {}",
                pg_error(&e)
            )
            .into())
        }
    }
    let contacts = copy_file(
        &client,
        "cohortdb",
        "contacts",
        CONTACT_COLUMNS,
        &data.contacts_csv,
        data.contact_rows,
    )
    .await
    .map_err(|e| format!("{e}\n(the contacts must not exist yet: use a fresh data directory)"))?;
    let events = copy_file(
        &client,
        "cohortdb",
        "events",
        EVENT_COLUMNS,
        &data.events_csv,
        data.event_rows,
    )
    .await?;
    Ok(vec![contacts, events])
}

/// Starts a throwaway PostgreSQL, creates equivalent tables (no indexes),
/// loads both files, stops and removes the cluster.
async fn load_postgres(args: &IngestArgs, data: &Dataset) -> Result<Vec<Measurement>> {
    let (bin, port, options) = (args.pg_bin.clone(), args.pg_port, args.pg_options.clone());
    eprintln!("starting a throwaway PostgreSQL on 127.0.0.1:{port} ...");
    let cluster =
        tokio::task::spawn_blocking(move || Cluster::start(&bin, port, &options)).await??;
    let result = async {
        let client = connect(&cluster.connection_string()).await?;
        client
            .batch_execute(&crate::postgres::create_tables_sql())
            .await
            .map_err(|e| format!("create tables in PostgreSQL: {}", pg_error(&e)))?;
        let contacts = copy_file(
            &client,
            "postgres",
            "contacts",
            CONTACT_COLUMNS,
            &data.contacts_csv,
            data.contact_rows,
        )
        .await?;
        let events = copy_file(
            &client,
            "postgres",
            "events",
            EVENT_COLUMNS,
            &data.events_csv,
            data.event_rows,
        )
        .await?;
        Ok::<_, crate::Error>(vec![contacts, events])
    }
    .await;
    tokio::task::spawn_blocking(move || cluster.stop()).await??;
    result
}

/// Connects without TLS and drives the connection in the background.
pub(crate) async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connect to {url:?}: {}", pg_error(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection error: {}", pg_error(&e));
        }
    });
    Ok(client)
}

/// Streams `path` into `table` with `COPY ... FROM STDIN (FORMAT csv)` and
/// times it.
async fn copy_file(
    client: &Client,
    system: &'static str,
    table: &'static str,
    columns: &[&str],
    path: &Path,
    expected_rows: u64,
) -> Result<Measurement> {
    let sql = format!(
        "COPY {table} ({}) FROM STDIN (FORMAT csv)",
        columns.join(", ")
    );
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    eprintln!("{system}: COPY {table} ...");
    let started = Instant::now();
    let sink = client
        .copy_in::<_, Bytes>(sql.as_str())
        .await
        .map_err(|e| format!("{system}: COPY {table}: {}", pg_error(&e)))?;
    pin_mut!(sink);
    let mut bytes = 0u64;
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        if buf.capacity() - buf.len() == 0 {
            buf.reserve(CHUNK);
        }
        let n = file.read_buf(&mut buf).await?;
        if n == 0 || buf.len() >= CHUNK {
            if !buf.is_empty() {
                bytes += buf.len() as u64;
                sink.send(buf.split().freeze())
                    .await
                    .map_err(|e| format!("{system}: COPY {table}: {}", pg_error(&e)))?;
                buf.reserve(CHUNK);
            }
            if n == 0 {
                break;
            }
        }
    }
    let rows = sink
        .as_mut()
        .finish()
        .await
        .map_err(|e| format!("{system}: COPY {table}: {}", pg_error(&e)))?;
    let seconds = started.elapsed().as_secs_f64();
    if rows != expected_rows {
        eprintln!(
            "warning: {system} reported {rows} rows for {table}, the file has {expected_rows}"
        );
    }
    let m = Measurement {
        system,
        table,
        rows,
        bytes,
        seconds,
    };
    eprintln!(
        "{system}: {table}: {} rows in {:.2} s ({} rows/s)",
        rows,
        seconds,
        report::thousands(m.rows_per_sec().round() as u64)
    );
    Ok(m)
}

/// A tokio-postgres error with the server's message, SQLSTATE, detail and
/// hint when there is one (its `Display` alone only says "db error").
pub(crate) fn pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            s.push_str(&format!("\nDETAIL: {detail}"));
        }
        if let Some(hint) = db.hint() {
            s.push_str(&format!("\nHINT: {hint}"));
        }
        return s;
    }
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}
