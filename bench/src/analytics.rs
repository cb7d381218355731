//! `analytics`: latency of the analytics statements (SPEC §5, §11) over the
//! wire, against ClickHouse (chdb) and DuckDB on the same rows.
//!
//! The dataset is generated (or reused) as for `ingest` and loaded into the
//! running cohortdb with the same COPY code, unless `--skip-load`. Each
//! statement — FUNNEL (4 steps, 7 DAYS), RETENTION (DAY, 7), ATTRIBUTE
//! (3 touches, LINEAR, 1 DAY) and LTV (DAY, 7) over the whole period — runs
//! once as a warm-up and `--runs` times timed through the simple query
//! protocol; the time runs from sending the statement to receiving the last
//! row. Before each statement the server's peak RSS is reset
//! (`/proc/<pid>/clear_refs`), and `VmHWM` is read afterwards.
//!
//! The peers run in `bench/peers/analytics_peers.py` (one process, JSON on
//! stdout): each loads the same CSV files into native tables and times only
//! its queries, the same way (1 warm-up, median of `--runs`). Their results
//! are compared with cohortdb's, which is how semantic differences and bugs
//! show up; the FUNNEL is also run `WITHIN 168 HOURS` (untimed) to compare
//! with chdb's `windowFunnel`, whose window is elapsed time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Instant;

use serde_json::{json, Map, Value};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::dataset::{self, start_day_string, DataArgs, Dataset};
use crate::ingest::{connect, load_cohortdb, pg_error};
use crate::report::{self, human_bytes, thousands};
use crate::Result;

/// Options of `cohortdb-bench analytics`.
#[derive(clap::Args, Debug)]
pub struct AnalyticsArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Connection string of the running cohortdb (libpq key=value or URL).
    #[arg(
        long,
        env = "COHORTDB_BENCH_URL",
        default_value = "host=127.0.0.1 port=5433 user=admin dbname=cohortdb"
    )]
    pub url: String,
    /// Do not load the dataset: the server already holds exactly these rows
    /// (e.g. from an earlier `ingest` or `analytics` run with the same spec).
    #[arg(long)]
    pub skip_load: bool,
    /// Process id of the server, for its peak RSS [default: the process
    /// listening on the URL's port, found through /proc].
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Timed runs per statement (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Do not run chdb and DuckDB.
    #[arg(long)]
    pub no_peers: bool,
    /// Python interpreter for the peer script.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// The peer script [default: bench/peers/analytics_peers.py of this
    /// checkout].
    #[arg(long, value_name = "FILE")]
    pub peer_script: Option<PathBuf>,
    /// Also print all results as one JSON line (for docs).
    #[arg(long)]
    pub json: bool,
}

/// Touch events of the ATTRIBUTE statement and their labels (the peer script
/// has the same list).
const TOUCHES: &[(&str, &str)] = &[
    ("search", "search"),
    ("trigger_sku_component", "sku_component"),
    ("click_menu", "oa_menu"),
];
/// Peers, in the order of the output columns.
const PEERS: &[&str] = &["chdb", "duckdb"];

/// One analytics statement of the benchmark.
struct Statement {
    /// `funnel`, `retention`, `attribute` or `ltv` (also the peers' key).
    name: &'static str,
    /// Label in the output table.
    label: &'static str,
    sql: String,
}

/// The four statements over `[from, to]`.
fn statements(from: &str, to: &str) -> Vec<Statement> {
    let touches = TOUCHES
        .iter()
        .map(|(event, label)| format!("TOUCH event = '{event}' AS '{label}'"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        Statement {
            name: "funnel",
            label: "FUNNEL (4 steps, 7 DAYS)",
            sql: funnel_sql("7 DAYS", from, to),
        },
        Statement {
            name: "retention",
            label: "RETENTION (DAY, 7)",
            sql: format!(
                "RETENTION INITIAL event = 'app_launch' RETURN event = 'app_launch' \
                 FROM '{from}' TO '{to}' BY DAY PERIODS 7"
            ),
        },
        Statement {
            name: "attribute",
            label: "ATTRIBUTE (3 touches, LINEAR)",
            sql: format!(
                "ATTRIBUTE TARGET event = 'custom_order' VALUE p_amount {touches} \
                 WITHIN 1 DAYS MODEL LINEAR FROM '{from}' TO '{to}'"
            ),
        },
        Statement {
            name: "ltv",
            label: "LTV (DAY, 7)",
            sql: format!(
                "LTV INITIAL EVENT event = 'app_launch' REVENUE event = 'custom_order' \
                 VALUE p_amount FROM '{from}' TO '{to}' BY DAY PERIODS 7"
            ),
        },
    ]
}

/// The benchmark's FUNNEL with the given window (`7 DAYS`, `168 HOURS`).
fn funnel_sql(window: &str, from: &str, to: &str) -> String {
    format!(
        "FUNNEL STEP event = 'app_launch', STEP event = 'browse_sku_page', \
         STEP event = 'add_to_cart', STEP event = 'custom_order' \
         WITHIN {window} FROM '{from}' TO '{to}'"
    )
}

/// cohortdb's timings and result of one statement.
struct Timed {
    runs: Vec<f64>,
    median: f64,
    result: Value,
    /// Peak RSS of the server while the statement ran (`VmHWM` after a reset),
    /// and whether the reset worked (otherwise it is the lifetime peak).
    peak_rss: Option<(u64, bool)>,
}

/// Runs the analytics benchmark.
pub async fn run(args: AnalyticsArgs) -> Result<()> {
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let data_args = args.data.clone();
    let data = tokio::task::spawn_blocking(move || dataset::prepare(&data_args)).await??;
    report::print_dataset(&data);
    let (from, to) = (start_day_string(&data.spec), last_day_string(&data));
    println!("range:   FROM '{from}' TO '{to}', session time zone UTC");

    if !args.skip_load {
        load_cohortdb(&args.url, &data).await?;
    }
    let client = connect(&args.url).await.map_err(|e| {
        format!("{e}\n(is cohortdb running? start it and pass --url, see docs/benchmark.md)")
    })?;
    client
        .batch_execute("SET TIME ZONE 'UTC'")
        .await
        .map_err(|e| format!("SET TIME ZONE 'UTC': {}", pg_error(&e)))?;
    check_row_count(&client, &data).await;

    let pid = args.server_pid.or_else(|| find_server_pid(&args.url));
    match pid {
        Some(pid) => eprintln!("server process: {pid}"),
        None => eprintln!("warning: server process not found (pass --server-pid): no peak RSS"),
    }

    let statements = statements(&from, &to);
    let mut timed = Vec::new();
    for st in &statements {
        eprintln!("cohortdb: {} ...", st.label);
        let t = time_statement(&client, st, args.runs, pid).await?;
        eprintln!("cohortdb: {}: median {:.4} s", st.name, t.median);
        timed.push(t);
    }
    // FUNNEL with chdb's elapsed-time window, for the comparison only.
    let funnel_hours = query_rows(&client, &funnel_sql("168 HOURS", &from, &to))
        .await
        .map(|rows| normalise("funnel", &rows))
        .map_err(|e| format!("FUNNEL WITHIN 168 HOURS: {e}"))?;
    drop(client);

    let peers = if args.no_peers {
        unavailable_peers("not run (--no-peers)")
    } else {
        let (python, script) = (args.python.clone(), peer_script(&args));
        let data2 = data.clone();
        let (from2, to2, runs) = (from.clone(), to.clone(), args.runs);
        tokio::task::spawn_blocking(move || run_peers(&python, &script, &data2, &from2, &to2, runs))
            .await?
    };

    let checks = compare(&statements, &timed, &funnel_hours, &peers);
    println!();
    print_table(&statements, &timed, &peers);
    println!();
    for peer in PEERS {
        let p = &peers[*peer];
        match p["available"].as_bool() {
            Some(true) => println!(
                "{peer}: {}; loaded {} events in {:.1} s (not timed)",
                p["version"].as_str().unwrap_or("?"),
                thousands(p["event_rows"].as_u64().unwrap_or(0)),
                p["load_seconds"].as_f64().unwrap_or(0.0)
            ),
            _ => println!(
                "{peer}: unavailable: {}",
                p["error"].as_str().unwrap_or("unknown error")
            ),
        }
    }
    for c in &checks {
        if c.same {
            println!("check: {}: same result", c.what);
        } else if c.expected {
            println!(
                "note: {}: differs as expected (calendar days vs elapsed time): {}",
                c.what, c.detail
            );
        } else {
            println!("warning: {}: results differ: {}", c.what, c.detail);
        }
    }
    if args.json {
        println!(
            "{}",
            to_json(&data, &from, &to, &statements, &timed, &peers, &checks)
        );
    }
    Ok(())
}

/// Last day of the dataset's period, `YYYY-MM-DD`.
fn last_day_string(d: &Dataset) -> String {
    let last = (d.spec.period_end_ms() - 1).div_euclid(86_400_000);
    let (y, m, day) = civil_from_days(last);
    format!("{y:04}-{m:02}-{day:02}")
}

/// `(year, month, day)` of a day number since 1970-01-01 (proleptic
/// Gregorian).
fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + (m <= 2) as i64;
    (y as i32, m, d)
}

/// Warns when the server does not hold the dataset's events.
async fn check_row_count(client: &Client, data: &Dataset) {
    match query_rows(client, "SELECT count(*) AS n FROM events").await {
        Ok(rows) => {
            let n: Option<u64> = rows
                .first()
                .and_then(|r| r.first())
                .and_then(|v| v.1.as_deref())
                .and_then(|v| v.parse().ok());
            if n != Some(data.event_rows) {
                eprintln!(
                    "warning: the server holds {} events, the dataset has {}: results will not match the peers",
                    n.map(thousands).unwrap_or_else(|| "?".into()),
                    thousands(data.event_rows)
                );
            }
        }
        Err(e) => eprintln!("warning: SELECT count(*) FROM events: {e}"),
    }
}

/// A result row as `(column name, text value or NULL)` pairs.
type Row = Vec<(String, Option<String>)>;

/// Runs one statement through the simple query protocol and returns its rows.
async fn query_rows(client: &Client, sql: &str) -> Result<Vec<Row>> {
    let messages = client.simple_query(sql).await.map_err(|e| pg_error(&e))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| {
                        (
                            r.columns()[i].name().to_string(),
                            r.get(i).map(str::to_string),
                        )
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// One warm-up and `runs` timed runs of a statement.
async fn time_statement(
    client: &Client,
    st: &Statement,
    runs: usize,
    pid: Option<u32>,
) -> Result<Timed> {
    let reset = pid.map(reset_peak_rss).unwrap_or(false);
    let fail = |e: crate::Error| format!("{}: {e}\nstatement: {}", st.label, st.sql);
    let mut rows = query_rows(client, &st.sql).await.map_err(fail)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        rows = query_rows(client, &st.sql).await.map_err(fail)?;
        times.push(started.elapsed().as_secs_f64());
    }
    let peak_rss = pid.and_then(peak_rss).map(|b| (b, reset));
    Ok(Timed {
        median: median(&times),
        runs: times,
        result: normalise(st.name, &rows),
        peak_rss,
    })
}

/// Median (mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn col<'a>(row: &'a Row, name: &str) -> Option<&'a str> {
    row.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
}

fn int(row: &Row, name: &str) -> u64 {
    col(row, name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn float(row: &Row, name: &str) -> Value {
    col(row, name)
        .and_then(|v| v.parse::<f64>().ok())
        .map(Value::from)
        .unwrap_or(Value::Null)
}

/// cohortdb's rows in the peer script's normalised shape (see
/// `normalise` in analytics_peers.py). NULL counts become 0.
fn normalise(name: &str, rows: &[Row]) -> Value {
    match name {
        "funnel" => {
            let mut steps: Vec<(u64, u64)> = rows
                .iter()
                .map(|r| (int(r, "step"), int(r, "contacts")))
                .collect();
            steps.sort();
            json!({ "steps": steps.into_iter().map(|s| s.1).collect::<Vec<_>>() })
        }
        "retention" => {
            let mut cohorts = Map::new();
            for r in rows {
                let cohort = col(r, "cohort").unwrap_or("").to_string();
                let entry = cohorts.entry(cohort).or_insert_with(
                    || json!({ "contacts": int(r, "cohort_contacts"), "retained": [] }),
                );
                let retained = entry["retained"].as_array_mut().expect("array");
                let p = int(r, "period") as usize;
                if retained.len() <= p {
                    retained.resize(p + 1, json!(0));
                }
                retained[p] = json!(int(r, "contacts"));
            }
            json!({ "cohorts": cohorts })
        }
        "attribute" => {
            let mut touches = Map::new();
            for r in rows {
                touches.insert(
                    col(r, "touch").unwrap_or("").to_string(),
                    json!({
                        "clicks": int(r, "clicks"),
                        "effective_clicks": int(r, "effective_clicks"),
                        "conversions": float(r, "conversions"),
                        "value": float(r, "value"),
                    }),
                );
            }
            json!({ "touches": touches })
        }
        "ltv" => {
            let mut cohorts = Map::new();
            for r in rows {
                let cohort = col(r, "cohort").unwrap_or("all").to_string();
                let entry = cohorts.entry(cohort).or_insert_with(|| {
                    json!({
                        "initial": int(r, "initial_contacts"),
                        "paying": int(r, "paying_contacts"),
                        "revenue": [],
                        "new_payers": [],
                    })
                });
                let p = int(r, "period") as usize;
                for (key, value) in [
                    ("revenue", float(r, "revenue")),
                    ("new_payers", json!(int(r, "new_payers"))),
                ] {
                    let list = entry[key].as_array_mut().expect("array");
                    if list.len() <= p {
                        list.resize(p + 1, json!(0));
                    }
                    list[p] = value;
                }
            }
            json!({ "cohorts": cohorts })
        }
        _ => Value::Null,
    }
}

/// The peer script given on the command line, else the one in the current
/// directory's checkout, else the one next to this crate's sources.
fn peer_script(args: &AnalyticsArgs) -> PathBuf {
    if let Some(p) = &args.peer_script {
        return p.clone();
    }
    let local = PathBuf::from("bench/peers/analytics_peers.py");
    if local.exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/analytics_peers.py")
}

/// `{"chdb": {"available": false, "error": why}, "duckdb": ...}`.
fn unavailable_peers(why: &str) -> Value {
    let mut m = Map::new();
    for p in PEERS {
        m.insert(p.to_string(), json!({ "available": false, "error": why }));
    }
    Value::Object(m)
}

/// Runs the peer script and returns its `peers` object; any failure makes
/// both peers unavailable (never an error of the benchmark).
fn run_peers(
    python: &Path,
    script: &Path,
    data: &Dataset,
    from: &str,
    to: &str,
    runs: usize,
) -> Value {
    if !script.exists() {
        return unavailable_peers(&format!("{} not found", script.display()));
    }
    eprintln!("peers: {} {} ...", python.display(), script.display());
    let output = Command::new(python)
        .arg(script)
        .arg("--events")
        .arg(&data.events_csv)
        .arg("--contacts")
        .arg(&data.contacts_csv)
        .args([
            "--from",
            from,
            "--to",
            to,
            "--runs",
            &runs.to_string(),
            "--json",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return unavailable_peers(&format!("run {}: {e}", python.display())),
    };
    if !output.status.success() {
        return unavailable_peers(&format!("peer script failed ({})", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let parsed: Option<Value> = line.and_then(|l| serde_json::from_str(l).ok());
    let mut peers = match parsed.as_ref().and_then(|v| v.get("peers")) {
        Some(Value::Object(m)) => m.clone(),
        _ => return unavailable_peers("peer script printed no JSON result"),
    };
    for p in PEERS {
        peers
            .entry(p.to_string())
            .or_insert_with(|| json!({ "available": false, "error": "not reported" }));
    }
    Value::Object(peers)
}

/// Median seconds of a peer for a statement, when it ran.
fn peer_seconds(peers: &Value, peer: &str, name: &str) -> Option<f64> {
    let p = &peers[peer];
    if p["available"].as_bool() != Some(true) {
        return None;
    }
    p["queries"][name]["seconds"].as_f64()
}

/// cohortdb's median over the faster peer's (≤ 1.0: cohortdb at least as fast).
fn ratio(t: &Timed, peers: &Value, name: &str) -> Option<f64> {
    PEERS
        .iter()
        .filter_map(|p| peer_seconds(peers, p, name))
        .min_by(|a, b| a.total_cmp(b))
        .filter(|s| *s > 0.0)
        .map(|best| t.median / best)
}

fn print_table(statements: &[Statement], timed: &[Timed], peers: &Value) {
    println!(
        "{:<30}  {:>11}  {:>9}  {:>9}  {:>13}  {:>16}",
        "statement", "cohortdb s", "chdb s", "DuckDB s", "vs faster peer", "server peak RSS"
    );
    let secs = |s: Option<f64>| s.map(|s| format!("{s:.4}")).unwrap_or_else(|| "n/a".into());
    for (st, t) in statements.iter().zip(timed) {
        let rss = match t.peak_rss {
            Some((b, true)) => human_bytes(b),
            Some((b, false)) => format!("{} (life)", human_bytes(b)),
            None => "n/a".into(),
        };
        println!(
            "{:<30}  {:>11.4}  {:>9}  {:>9}  {:>13}  {:>16}",
            st.label,
            t.median,
            secs(peer_seconds(peers, "chdb", st.name)),
            secs(peer_seconds(peers, "duckdb", st.name)),
            ratio(t, peers, st.name)
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "n/a".into()),
            rss
        );
    }
    println!("(median of the timed runs after one warm-up; vs faster peer <= 1.00x means cohortdb is at least as fast; \"(life)\": peak since the server started)");
}

/// One comparison of cohortdb's result with a peer's.
struct Check {
    what: String,
    peer: &'static str,
    same: bool,
    /// A difference here follows from documented semantics (not a warning).
    expected: bool,
    detail: String,
}

/// Compares cohortdb's results with every available peer's. FUNNEL: the
/// 7 DAYS result with DuckDB (same calendar-day window) and the 168 HOURS
/// result with chdb (windowFunnel counts elapsed time).
fn compare(
    statements: &[Statement],
    timed: &[Timed],
    funnel_hours: &Value,
    peers: &Value,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for peer in PEERS {
        if peers[*peer]["available"].as_bool() != Some(true) {
            continue;
        }
        for (st, t) in statements.iter().zip(timed) {
            let theirs = &peers[*peer]["queries"][st.name]["result"];
            if theirs.is_null() {
                continue;
            }
            let mut pairs = vec![(&t.result, format!("{} vs {peer}", st.label), false)];
            if st.name == "funnel" && *peer == "chdb" {
                // windowFunnel's window is elapsed time: the 7 DAYS result
                // may differ (shown as a note); 168 HOURS must not.
                pairs[0].2 = true;
                pairs.insert(
                    0,
                    (
                        funnel_hours,
                        "FUNNEL WITHIN 168 HOURS vs chdb windowFunnel(7 days in ms)".to_string(),
                        false,
                    ),
                );
            }
            for (ours, what, expected) in pairs {
                let mut diffs = Vec::new();
                diff("", ours, theirs, &mut diffs);
                checks.push(Check {
                    what,
                    peer,
                    same: diffs.is_empty(),
                    expected,
                    detail: summarise(&diffs),
                });
            }
        }
    }
    checks
}

fn summarise(diffs: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = diffs
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if diffs.len() > SHOWN {
        s.push_str(&format!("; ... ({} differences)", diffs.len()));
    }
    s
}

/// Differences between two normalised results (`cohortdb=… peer=…`); numbers
/// are equal within a relative 1e-9 (sums in a different order).
fn diff(path: &str, ours: &Value, theirs: &Value, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(&p, x, y, out),
                    (Some(x), None) => out.push(format!("{p}: cohortdb={x} peer=missing")),
                    (None, Some(y)) => out.push(format!("{p}: cohortdb=missing peer={y}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() && !is_numbers(a) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            let equal = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_number(x, y));
            if !equal {
                out.push(format!(
                    "{}: cohortdb={} peer={}",
                    path.trim_start_matches('.'),
                    ours,
                    theirs
                ));
            }
        }
        (x, y) if same_number(x, y) => {}
        (x, y) if x == y => {}
        (x, y) => out.push(format!(
            "{}: cohortdb={x} peer={y}",
            path.trim_start_matches('.')
        )),
    }
}

fn is_numbers(values: &[Value]) -> bool {
    values.iter().all(|v| v.is_number() || v.is_null())
}

fn same_number(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => a.is_null() && b.is_null(),
    }
}

/// All results as one JSON object on one line.
fn to_json(
    data: &Dataset,
    from: &str,
    to: &str,
    statements: &[Statement],
    timed: &[Timed],
    peers: &Value,
    checks: &[Check],
) -> String {
    let mut peer_info = Map::new();
    for p in PEERS {
        let v = &peers[*p];
        peer_info.insert(
            p.to_string(),
            json!({
                "available": v["available"].as_bool().unwrap_or(false),
                "version": v["version"],
                "error": v["error"],
                "load_seconds": v["load_seconds"],
                "event_rows": v["event_rows"],
            }),
        );
    }
    json!({
        "benchmark": "analytics",
        "dataset": report::dataset_json(data),
        "range": { "from": from, "to": to, "time_zone": "UTC" },
        "statements": statements.iter().zip(timed).map(|(st, t)| json!({
            "name": st.name,
            "sql": st.sql,
            "cohortdb_seconds": t.median,
            "cohortdb_runs": t.runs,
            "chdb_seconds": peer_seconds(peers, "chdb", st.name),
            "duckdb_seconds": peer_seconds(peers, "duckdb", st.name),
            "ratio_vs_faster_peer": ratio(t, peers, st.name),
            "server_peak_rss_bytes": t.peak_rss.map(|p| p.0),
            "server_peak_rss_reset": t.peak_rss.map(|p| p.1),
        })).collect::<Vec<_>>(),
        "peers": peer_info,
        "checks": checks.iter().map(|c| json!({
            "what": c.what,
            "peer": c.peer,
            "same": c.same,
            "expected_difference": c.expected,
            "detail": c.detail,
        })).collect::<Vec<_>>(),
        "machine": report::machine_json(),
    })
    .to_string()
}

/// Resets the process's peak RSS (`echo 5 > /proc/<pid>/clear_refs`);
/// false when not allowed.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// `VmHWM` of a process in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The process listening on the TCP port of `url`: the socket's inode from
/// `/proc/net/tcp{,6}`, then the process holding it in `/proc/<pid>/fd`.
fn find_server_pid(url: &str) -> Option<u32> {
    let config = tokio_postgres::Config::from_str(url).ok()?;
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue; // not LISTEN
            }
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_240), (2025, 6, 1));
        assert_eq!(civil_from_days(20_269), (2025, 6, 30));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn diffs() {
        let a = json!({"steps": [10, 5, 2]});
        let mut out = Vec::new();
        diff("", &a, &json!({"steps": [10, 5, 2]}), &mut out);
        assert!(out.is_empty());
        diff("", &a, &json!({"steps": [10, 6, 2]}), &mut out);
        assert_eq!(
            out,
            vec!["steps: cohortdb=[10,5,2] peer=[10,6,2]".to_string()]
        );
        out.clear();
        diff(
            "",
            &json!({"t": {"value": 1.0000000000001}}),
            &json!({"t": {"value": 1.0}}),
            &mut out,
        );
        assert!(out.is_empty());
    }
}
