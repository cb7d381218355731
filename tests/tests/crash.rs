//! Acknowledged writes survive `kill -9`, and every statement is
//! all-or-nothing.
//!
//! Each round, four concurrent writers issue statements as fast as they can:
//! either an `INSERT INTO contacts` of 5 rows (identified by their `comment`,
//! `<round>-<task>-<n>-<row>`) or a `COPY events ... FROM STDIN (FORMAT csv)`
//! of 50 rows (contact 1, `app_launch`, each row with its own `event_date`,
//! so the date identifies statement and row). A statement counts as
//! acknowledged only when it returned OK. After a random 200–1500 ms the
//! server gets SIGKILL; it is restarted on the same data directory and:
//!
//! - every acknowledged statement has all its rows, exactly once;
//! - every statement in flight at the kill has all its rows or none, and
//!   keeps that state in later rounds;
//! - nothing else is there.
//!
//! Data accumulates over 20 rounds (`COHORTDB_CRASH_ROUNDS`), each verified
//! against everything written before. The seed is printed;
//! `COHORTDB_CRASH_SEED` repeats a run.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use cohortdb_tests::{exec, simple_rows, SqlError, TestServer};
use futures::SinkExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, CopyInSink};

const TASKS: usize = 4;
const INSERT_ROWS: usize = 5;
const COPY_ROWS: usize = 50;
/// Upper bound of statements per task and round (keeps event dates unique).
const MAX_STMTS_PER_TASK: usize = 10_000;
const DEFAULT_ROUNDS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Insert,
    Copy,
}

/// One write statement: kind, round, writer task and sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct StmtId {
    kind: Kind,
    round: usize,
    task: usize,
    n: usize,
}

impl StmtId {
    fn rows(self) -> usize {
        match self.kind {
            Kind::Insert => INSERT_ROWS,
            Kind::Copy => COPY_ROWS,
        }
    }
}

impl fmt::Display for StmtId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Insert => "INSERT",
            Kind::Copy => "COPY",
        };
        write!(
            f,
            "{kind} round {} task {} #{}",
            self.round, self.task, self.n
        )
    }
}

/// What verification expects of a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Acknowledged, or found applied after an earlier restart.
    Present,
    /// In flight at a kill and found not applied: must never appear.
    Absent,
    /// In flight at the last kill, not checked yet: all rows or none.
    Unknown,
}

#[derive(Default)]
struct Ledger {
    expect: BTreeMap<StmtId, Expect>,
}

struct TaskReport {
    /// Every statement sent, with whether it was acknowledged.
    attempts: Vec<(StmtId, bool)>,
    /// An error that happened before the kill.
    unexpected: Option<String>,
}

fn insert_comment(id: StmtId, row: usize) -> String {
    format!("{}-{}-{}-{}", id.round, id.task, id.n, row)
}

fn parse_comment(comment: &str) -> Option<(StmtId, usize)> {
    let parts: Vec<usize> = comment
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<_>>>()?;
    match parts[..] {
        [round, task, n, row] => Some((
            StmtId {
                kind: Kind::Insert,
                round,
                task,
                n,
            },
            row,
        )),
        _ => None,
    }
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("valid base time")
}

fn copy_block(id: StmtId) -> i64 {
    ((id.round * TASKS + id.task) * MAX_STMTS_PER_TASK + id.n) as i64
}

fn copy_event_date(id: StmtId, row: usize) -> DateTime<Utc> {
    base_time() + TimeDelta::seconds(copy_block(id) * COPY_ROWS as i64 + row as i64)
}

fn decode_event_date(ts: DateTime<Utc>) -> Option<(StmtId, usize)> {
    if ts.timestamp_subsec_nanos() != 0 {
        return None;
    }
    let secs = (ts - base_time()).num_seconds();
    if secs < 0 {
        return None;
    }
    let secs = secs as usize;
    let block = secs / COPY_ROWS;
    let row = secs % COPY_ROWS;
    let n = block % MAX_STMTS_PER_TASK;
    let round_task = block / MAX_STMTS_PER_TASK;
    Some((
        StmtId {
            kind: Kind::Copy,
            round: round_task / TASKS,
            task: round_task % TASKS,
            n,
        },
        row,
    ))
}

fn pg_err(e: tokio_postgres::Error) -> String {
    SqlError::from(&e).to_string()
}

async fn insert(client: &Client, id: StmtId) -> Result<(), String> {
    let values: Vec<String> = (0..INSERT_ROWS)
        .map(|row| format!("('w{}', '{}')", id.task, insert_comment(id, row)))
        .collect();
    let sql = format!(
        "INSERT INTO contacts (name, comment) VALUES {}",
        values.join(", ")
    );
    let n = client.execute(sql.as_str(), &[]).await.map_err(pg_err)?;
    if n != INSERT_ROWS as u64 {
        return Err(format!("INSERT reported {n} rows, expected {INSERT_ROWS}"));
    }
    Ok(())
}

async fn copy(client: &Client, id: StmtId) -> Result<(), String> {
    let mut data = String::with_capacity(COPY_ROWS * 40);
    for row in 0..COPY_ROWS {
        data.push_str(&format!(
            "1,app_launch,{}\n",
            copy_event_date(id, row).format("%Y-%m-%d %H:%M:%S+00")
        ));
    }
    let sink: CopyInSink<Bytes> = client
        .copy_in("COPY events (contact_id, event, event_date) FROM STDIN (FORMAT csv)")
        .await
        .map_err(pg_err)?;
    let mut sink = Box::pin(sink);
    sink.send(Bytes::from(data)).await.map_err(pg_err)?;
    let n = sink.as_mut().finish().await.map_err(pg_err)?;
    if n != COPY_ROWS as u64 {
        return Err(format!("COPY reported {n} rows, expected {COPY_ROWS}"));
    }
    Ok(())
}

async fn writer(
    client: Client,
    round: usize,
    task: usize,
    seed: u64,
    killed: Arc<AtomicBool>,
) -> TaskReport {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = TaskReport {
        attempts: Vec::new(),
        unexpected: None,
    };
    for n in 0..MAX_STMTS_PER_TASK {
        let kind = if rng.random_bool(0.5) {
            Kind::Insert
        } else {
            Kind::Copy
        };
        let id = StmtId {
            kind,
            round,
            task,
            n,
        };
        report.attempts.push((id, false));
        let result = match kind {
            Kind::Insert => insert(&client, id).await,
            Kind::Copy => copy(&client, id).await,
        };
        match result {
            Ok(()) => {
                if let Some(last) = report.attempts.last_mut() {
                    last.1 = true;
                }
            }
            Err(e) => {
                if !killed.load(Ordering::SeqCst) {
                    report.unexpected = Some(format!("{id}: {e}"));
                }
                break;
            }
        }
    }
    report
}

/// Reads the event dates, accepting `timestamptz` (or `timestamp`, read as UTC).
async fn event_dates(client: &Client) -> Result<Vec<DateTime<Utc>>, String> {
    let rows = client
        .query("SELECT event_date FROM events", &[])
        .await
        .map_err(pg_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        match row.try_get::<_, DateTime<Utc>>(0) {
            Ok(ts) => out.push(ts),
            Err(first) => match row.try_get::<_, NaiveDateTime>(0) {
                Ok(ts) => out.push(ts.and_utc()),
                Err(_) => return Err(format!("cannot read event_date: {first}")),
            },
        }
    }
    Ok(out)
}

/// Checks the restarted server against the ledger and updates it; returns
/// the problems found.
async fn verify(client: &Client, ledger: &mut Ledger) -> Vec<String> {
    let mut problems = Vec::new();

    let anchor = simple_rows(client, "SELECT name FROM contacts WHERE id = 1").await;
    if anchor != vec![vec![Some("anchor".to_string())]] {
        problems.push(format!("contact 1 should be 'anchor', found {anchor:?}"));
    }

    let mut seen: HashMap<StmtId, Vec<usize>> = HashMap::new();

    let comments = simple_rows(
        client,
        "SELECT comment FROM contacts WHERE comment IS NOT NULL",
    )
    .await;
    let contact_rows = comments.len();
    for row in comments {
        let comment = row.into_iter().next().flatten().unwrap_or_default();
        match parse_comment(&comment) {
            Some((id, r)) => seen.entry(id).or_default().push(r),
            None => problems.push(format!("unexpected contact comment {comment:?}")),
        }
    }
    let total = simple_rows(client, "SELECT count(*) FROM contacts").await;
    let expected_total = (contact_rows + 1).to_string();
    if total != vec![vec![Some(expected_total.clone())]] {
        problems.push(format!(
            "count(*) FROM contacts is {total:?}, expected {expected_total} (writers' rows + anchor)"
        ));
    }

    match event_dates(client).await {
        Ok(dates) => {
            for ts in dates {
                match decode_event_date(ts) {
                    Some((id, r)) => seen.entry(id).or_default().push(r),
                    None => problems.push(format!("unexpected event_date {ts}")),
                }
            }
        }
        Err(e) => problems.push(format!("cannot read events: {e}")),
    }

    // Every statement found is complete, each row exactly once, and was sent.
    let mut seen_ids: Vec<_> = seen.keys().copied().collect();
    seen_ids.sort();
    for id in seen_ids {
        let mut rows = seen.remove(&id).unwrap_or_default();
        rows.sort_unstable();
        let full: Vec<usize> = (0..id.rows()).collect();
        if rows != full {
            problems.push(format!(
                "{id}: found rows {rows:?}, expected all of 0..{} exactly once (partial or duplicated statement)",
                id.rows()
            ));
        }
        match ledger.expect.get(&id).copied() {
            None => problems.push(format!("{id}: present but never sent")),
            Some(Expect::Absent) => problems.push(format!(
                "{id}: was not applied after an earlier restart, but is present now"
            )),
            Some(Expect::Unknown) => {
                ledger.expect.insert(id, Expect::Present);
            }
            Some(Expect::Present) => {}
        }
        // Mark as seen for the loss check below.
        seen.insert(id, Vec::new());
    }

    // Every acknowledged (or previously found) statement is still there.
    for (id, expect) in ledger.expect.iter_mut() {
        if seen.contains_key(id) {
            continue;
        }
        match *expect {
            Expect::Present => problems.push(format!("{id}: acknowledged but lost")),
            Expect::Unknown => *expect = Expect::Absent,
            Expect::Absent => {}
        }
    }
    problems
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let rounds: usize = env_number("COHORTDB_CRASH_ROUNDS").unwrap_or(DEFAULT_ROUNDS);
    let seed: u64 = env_number("COHORTDB_CRASH_SEED").unwrap_or_else(rand::random);
    eprintln!("crash test: seed {seed} (COHORTDB_CRASH_SEED repeats it), {rounds} rounds");
    let mut rng = StdRng::seed_from_u64(seed);

    let data = tempfile::Builder::new()
        .prefix("cohortdb-crash-")
        .tempdir()
        .expect("temp dir");
    let mut server = TestServer::start_with(data.path(), &[]);
    {
        let client = server.client().await;
        exec(&client, "INSERT INTO contacts (name) VALUES ('anchor')").await;
        let rows = simple_rows(&client, "SELECT id FROM contacts WHERE name = 'anchor'").await;
        assert_eq!(
            rows,
            vec![vec![Some("1".to_string())]],
            "the first contact of a fresh database gets id 1"
        );
    }

    let mut ledger = Ledger::default();
    let mut acked_total = 0usize;
    for round in 0..rounds {
        let killed = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(TASKS);
        for task in 0..TASKS {
            let client = server.client().await;
            handles.push(tokio::spawn(writer(
                client,
                round,
                task,
                rng.random(),
                killed.clone(),
            )));
        }
        let delay: u64 = rng.random_range(200..=1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        killed.store(true, Ordering::SeqCst);
        server.kill9();

        let mut unexpected = Vec::new();
        let mut acked_round = 0usize;
        let mut sent_round = 0usize;
        for handle in handles {
            let report = match tokio::time::timeout(Duration::from_secs(30), handle).await {
                Ok(Ok(report)) => report,
                Ok(Err(e)) => panic!("seed {seed}, round {round}: a writer task panicked: {e}"),
                Err(_) => panic!(
                    "seed {seed}, round {round}: a writer is still running 30 s after kill -9"
                ),
            };
            for (id, acked) in report.attempts {
                sent_round += 1;
                if acked {
                    acked_round += 1;
                }
                let expect = if acked {
                    Expect::Present
                } else {
                    Expect::Unknown
                };
                ledger.expect.insert(id, expect);
            }
            if let Some(e) = report.unexpected {
                unexpected.push(e);
            }
        }
        acked_total += acked_round;
        assert!(
            unexpected.is_empty(),
            "seed {seed}, round {round}: statements failed before the kill:\n{}\n--- server log ---\n{}",
            unexpected.join("\n"),
            server.log_tail(200)
        );

        server = TestServer::start_with(data.path(), &[]);
        let client = server.client().await;
        let problems = verify(&client, &mut ledger).await;
        assert!(
            problems.is_empty(),
            "seed {seed}, round {round} (kill -9 after {delay} ms, {sent_round} statements sent, \
             {acked_round} acknowledged): {} problems after restart:\n{}",
            problems.len(),
            problems
                .iter()
                .take(30)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        eprintln!(
            "round {round}: kill -9 after {delay} ms; {sent_round} statements sent, {acked_round} acknowledged; verified"
        );
    }

    assert!(
        acked_total >= rounds,
        "seed {seed}: only {acked_total} statements were acknowledged in {rounds} rounds; \
         the writers made almost no progress"
    );
    server.stop();
}
