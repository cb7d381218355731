//! `lookups`: point reads and one-row writes as applications do them, with
//! Debian's `pgbench` at `--clients` connections, against cohortdb and
//! (with `--postgres`) a throwaway PostgreSQL 15 holding the same rows.
//!
//! Data: `--contacts` contacts with a few profile fields (ids 1..N), and N
//! WeChat fans arriving as events with an `openid` (`COPY events (openid,
//! channel_id, event, event_date)`), which creates N more contacts and their
//! `wechat.openid` identities (ids N+1..2N, openids "1".."N"). PostgreSQL
//! gets the same rows: `contacts` with cohortdb's 31 columns and a primary
//! key, `identities` with a primary key on (`id_type`, `channel_id`,
//! `id_value`), and an `identify` function doing what `CALL identify` does
//! for a new or known external id (look up the identity, else insert a
//! contact and the identity).
//!
//! Runs, each `--seconds` long, in `-M prepared` and `-M simple`:
//! - `by_id`: `SELECT * FROM contacts WHERE id = :id` (random id of the N);
//! - `by_openid`: the contact of a random openid, `identities JOIN contacts`;
//! - `insert`: `INSERT INTO contacts (name, city) VALUES (…)`;
//! - `identify`: `CALL identify('mp_bench', :n, '{}')` with random external
//!   ids (most of them new), PostgreSQL `SELECT * FROM identify(…)`.
//!
//! Every transaction is one statement, so tps is statements per second.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use futures::{pin_mut, SinkExt};
use tokio_postgres::{Client, NoTls};

use crate::postgres::Cluster;
use crate::Result;

/// Options of `cohortdb-bench lookups`.
#[derive(clap::Args, Debug)]
pub struct LookupsArgs {
    /// Connection string of the running cohortdb (libpq key=value), started
    /// on an empty data directory.
    #[arg(
        long,
        env = "COHORTDB_BENCH_URL",
        default_value = "host=127.0.0.1 port=5433 user=admin dbname=cohortdb"
    )]
    pub url: String,
    /// Contacts with profile fields, and as many openid fans.
    #[arg(long, default_value_t = 1_000_000)]
    pub contacts: u64,
    /// pgbench connections (`-c`).
    #[arg(long, default_value_t = 8)]
    pub clients: u32,
    /// pgbench threads (`-j`).
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Length of each run.
    #[arg(long, default_value_t = 20)]
    pub seconds: u32,
    /// Runs to do (by_id, by_openid, insert, identify), comma-separated.
    #[arg(long, default_value = "by_id,by_openid,insert,identify")]
    pub runs: String,
    /// Protocols (`prepared`, `simple`), comma-separated.
    #[arg(long, default_value = "prepared,simple")]
    pub modes: String,
    /// Do not load cohortdb (the rows exist from an earlier run).
    #[arg(long)]
    pub skip_load: bool,
    /// Do not measure cohortdb (only PostgreSQL).
    #[arg(long)]
    pub skip_cohortdb: bool,
    /// Also measure a throwaway PostgreSQL 15 with the same rows.
    #[arg(long)]
    pub postgres: bool,
    /// Directory with the PostgreSQL server binaries (initdb, pg_ctl).
    #[arg(long, value_name = "DIR", default_value = "/usr/lib/postgresql/15/bin")]
    pub pg_bin: PathBuf,
    /// TCP port of the throwaway PostgreSQL (loopback only).
    #[arg(long, default_value_t = 55433)]
    pub pg_port: u16,
    /// The pgbench to run.
    #[arg(long, default_value = "pgbench")]
    pub pgbench: PathBuf,
}

/// One pgbench run's figures.
#[derive(Debug, Clone)]
struct RunResult {
    system: &'static str,
    run: String,
    mode: String,
    tps: f64,
    latency_ms: f64,
    failed: u64,
}

const CONTACT_FIELDS: &str = "name, nickname, gender, city, mobile_phone, email, company";
const CITIES: [&str; 6] = ["北京", "上海", "广州", "深圳", "杭州", "成都"];

/// The contacts and fans CSV rows, streamed in 1 MiB chunks.
fn contact_row(i: u64, out: &mut String) {
    use std::fmt::Write;
    let gender = ["male", "female", "unknown"][(i % 3) as usize];
    let _ = writeln!(
        out,
        "客户{i},nick{i},{gender},{},1{:010},c{i}@example.com,公司{}",
        CITIES[(i % 6) as usize],
        3_000_000_000u64 + i,
        i % 1000
    );
}

fn fan_row(i: u64, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(out, "{i},mp_bench,app_launch,2025-06-01 10:00:00+00");
}

async fn copy_rows(client: &Client, sql: &str, n: u64, row: fn(u64, &mut String)) -> Result<u64> {
    let sink = client.copy_in(sql).await.map_err(db)?;
    pin_mut!(sink);
    let mut buf = String::with_capacity(1 << 21);
    for i in 1..=n {
        row(i, &mut buf);
        if buf.len() >= 1 << 20 {
            sink.send(Bytes::from(std::mem::take(&mut buf)))
                .await
                .map_err(db)?;
        }
    }
    sink.send(Bytes::from(buf)).await.map_err(db)?;
    Ok(sink.finish().await.map_err(db)?)
}

/// A server error with its message and SQLSTATE.
fn db(e: tokio_postgres::Error) -> crate::Error {
    crate::ingest::pg_error(&e).into()
}

async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn load_cohortdb(client: &Client, n: u64) -> Result<()> {
    let t = Instant::now();
    let c = copy_rows(
        client,
        &format!("COPY contacts ({CONTACT_FIELDS}) FROM STDIN (FORMAT csv)"),
        n,
        contact_row,
    )
    .await?;
    let f = copy_rows(
        client,
        "COPY events (openid, channel_id, event, event_date) FROM STDIN (FORMAT csv)",
        n,
        fan_row,
    )
    .await?;
    println!(
        "cohortdb: loaded {c} contacts and {f} openid fans in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// PostgreSQL's tables: the columns of cohortdb's `contacts`, `identities`
/// keyed as in cohortdb, and `identify`.
const PG_SCHEMA: &str = "
CREATE SEQUENCE contact_ids;
CREATE TABLE contacts (
  id BIGINT PRIMARY KEY DEFAULT nextval('contact_ids'), name TEXT, nickname TEXT, gender TEXT,
  birthday DATE, mobile_phone TEXT, home_phone TEXT, email TEXT, id_card TEXT, avatar TEXT,
  company TEXT, department TEXT, title TEXT, industry TEXT, website TEXT, country TEXT,
  state TEXT, city TEXT, street TEXT, postal_code TEXT, comment TEXT,
  created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ DEFAULT now(), first_seen_at TIMESTAMPTZ DEFAULT now(),
  last_active_at TIMESTAMPTZ, utm_source TEXT, utm_medium TEXT, utm_campaign TEXT,
  utm_content TEXT, utm_term TEXT, is_identified BOOLEAN DEFAULT false);
CREATE TABLE identities (
  contact_id BIGINT NOT NULL, id_type TEXT NOT NULL, channel_id TEXT NOT NULL,
  id_value TEXT NOT NULL, created_at TIMESTAMPTZ DEFAULT now(),
  PRIMARY KEY (id_type, channel_id, id_value));
CREATE FUNCTION identify(p_channel TEXT, p_ext TEXT, p_props TEXT)
RETURNS TABLE (contact_id BIGINT, created BOOLEAN) LANGUAGE plpgsql AS $$
DECLARE cid BIGINT;
BEGIN
  SELECT i.contact_id INTO cid FROM identities i
   WHERE i.id_type = 'external_id' AND i.channel_id = p_channel AND i.id_value = p_ext;
  IF FOUND THEN
    RETURN QUERY SELECT cid, false;
    RETURN;
  END IF;
  INSERT INTO contacts DEFAULT VALUES RETURNING id INTO cid;
  INSERT INTO identities (contact_id, id_type, channel_id, id_value)
    VALUES (cid, 'external_id', p_channel, p_ext);
  RETURN QUERY SELECT cid, true;
END $$;
";

async fn load_postgres(client: &Client, n: u64) -> Result<()> {
    let t = Instant::now();
    client.batch_execute(PG_SCHEMA).await.map_err(db)?;
    let c = copy_rows(
        client,
        &format!("COPY contacts ({CONTACT_FIELDS}) FROM STDIN (FORMAT csv)"),
        n,
        contact_row,
    )
    .await?;
    client
        .batch_execute(&format!(
            "INSERT INTO contacts (id) SELECT g FROM generate_series({}, {}) g;
             INSERT INTO identities (contact_id, id_type, channel_id, id_value)
               SELECT {n} + g, 'wechat.openid', 'mp_bench', g::text FROM generate_series(1, {n}) g;
             SELECT setval('contact_ids', {});",
            n + 1,
            2 * n,
            2 * n
        ))
        .await
        .map_err(db)?;
    for table in ["contacts", "identities"] {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .map_err(db)?;
    }
    println!(
        "postgres: loaded {c} contacts and {n} openid fans in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The pgbench script of `run` for `system`.
fn script(run: &str, system: &str, n: u64) -> Result<String> {
    Ok(match run {
        "by_id" => format!("\\set id random(1, {n})\nSELECT * FROM contacts WHERE id = :id;\n"),
        "by_openid" => format!(
            "\\set n random(1, {n})\n\
             SELECT c.* FROM identities i JOIN contacts c ON c.id = i.contact_id \
             WHERE i.id_type = 'wechat.openid' AND i.channel_id = 'mp_bench' \
             AND i.id_value = CAST(:n AS TEXT);\n"
        ),
        "insert" => "\\set n random(1, 1000000000)\n\
             INSERT INTO contacts (name, city) VALUES (CAST(:n AS TEXT), '上海');\n"
            .to_string(),
        "identify" => {
            let call = if system == "postgres" {
                "SELECT * FROM identify"
            } else {
                "CALL identify"
            };
            format!(
                "\\set n random(1, 1000000000)\n{call}('mp_bench', CAST(:n AS TEXT), '{{}}');\n"
            )
        }
        other => return Err(format!("unknown run {other:?}").into()),
    })
}

fn pgbench(
    args: &LookupsArgs,
    conninfo: &str,
    system: &'static str,
    run: &str,
    mode: &str,
) -> Result<RunResult> {
    let path = std::env::temp_dir().join(format!(
        "cohortdb-bench-{system}-{run}-{}.sql",
        std::process::id()
    ));
    std::fs::write(&path, script(run, system, args.contacts)?)?;
    let out = Command::new(&args.pgbench)
        .args(["-n", "-M", mode])
        .args(["-c", &args.clients.to_string()])
        .args(["-j", &args.threads.to_string()])
        .args(["-T", &args.seconds.to_string()])
        .arg("-f")
        .arg(&path)
        .arg(conninfo)
        .output()
        .map_err(|e| format!("{}: {e}", args.pgbench.display()))?;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l[prefix.len()..].split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let (Some(tps), Some(latency_ms)) = (field("tps = "), field("latency average = ")) else {
        return Err(format!(
            "pgbench {run} ({mode}) on {system} failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    };
    let failed = field("number of failed transactions: ").unwrap_or(0.0) as u64;
    Ok(RunResult {
        system,
        run: run.to_string(),
        mode: mode.to_string(),
        tps,
        latency_ms,
        failed,
    })
}

fn measure(args: &LookupsArgs, conninfo: &str, system: &'static str) -> Result<Vec<RunResult>> {
    let mut out = Vec::new();
    for run in args.runs.split(',').map(str::trim) {
        for mode in args.modes.split(',').map(str::trim) {
            let r = pgbench(args, conninfo, system, run, mode)?;
            println!(
                "{system:9} {run:10} {mode:9} {:>10.0} tps  {:>7.3} ms  failed {}",
                r.tps, r.latency_ms, r.failed
            );
            out.push(r);
        }
    }
    Ok(out)
}

/// Runs the lookups benchmark.
pub async fn run(args: LookupsArgs) -> Result<()> {
    let mut results = Vec::new();
    if args.postgres {
        let cluster = Cluster::start(&args.pg_bin, args.pg_port, &[])?;
        let conninfo = cluster.connection_string();
        let client = connect(&conninfo).await?;
        load_postgres(&client, args.contacts).await?;
        drop(client);
        let r = tokio::task::block_in_place(|| measure(&args, &conninfo, "postgres"));
        cluster.stop()?;
        results.extend(r?);
    }
    if !args.skip_cohortdb {
        if !args.skip_load {
            let client = connect(&args.url).await.map_err(|e| {
                format!("{e}\n(is cohortdb running on an empty data directory? pass --url)")
            })?;
            load_cohortdb(&client, args.contacts).await?;
        }
        let r = tokio::task::block_in_place(|| measure(&args, &args.url, "cohortdb"));
        results.extend(r?);
    }
    println!();
    println!("| run | protocol | cohortdb tps / latency | PostgreSQL 15 tps / latency | ratio |");
    println!("|---|---|---|---|---|");
    for r in results.iter().filter(|r| r.system == "cohortdb") {
        let pg = results
            .iter()
            .find(|p| p.system == "postgres" && p.run == r.run && p.mode == r.mode);
        println!(
            "| `{}` | {} | {:.0} / {:.2} ms | {} | {} |",
            r.run,
            r.mode,
            r.tps,
            r.latency_ms,
            pg.map(|p| format!("{:.0} / {:.2} ms", p.tps, p.latency_ms))
                .unwrap_or_else(|| "–".into()),
            pg.map(|p| format!("{:.2}×", r.tps / p.tps))
                .unwrap_or_else(|| "–".into()),
        );
    }
    Ok(())
}
