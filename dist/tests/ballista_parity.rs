//! Scale-out parity on a real Ballista cluster: the seeded data of
//! `cohortdb_tests::scale_out` is exported from a running server; a
//! `cohortdb-scheduler` and one, then two `cohortdb-executor` processes
//! (separate ports and work dirs on 127.0.0.1) run each statement's SQL
//! form at several partition counts; every answer must equal the server's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cohortdb_tests::scale_out::{batches_text, load_seeded, norm_rows, sql_form, STATEMENTS, TZ};
use cohortdb_tests::{exec, simple_rows, TestServer};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Child processes killed on drop (also when an assertion fails).
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(bin: &str, args: &[String], log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(bin)
        .args(args)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
}

/// GET `path` on the scheduler's REST API.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn executors(port: u16) -> usize {
    http_get(port, "/api/executors")
        .and_then(|b| {
            // chunked or not, the JSON array is the body's text between [ ]
            let start = b.find('[')?;
            let end = b.rfind(']')?;
            serde_json::from_str::<serde_json::Value>(&b[start..=end]).ok()
        })
        .and_then(|v| v.as_array().map(|a| a.len()))
        .unwrap_or(0)
}

fn wait_for_executors(port: u16, n: usize, logs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while executors(port) < n {
        if Instant::now() > deadline {
            let mut text = String::new();
            for e in std::fs::read_dir(logs).unwrap().flatten() {
                text.push_str(&format!(
                    "--- {}\n{}\n",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
            panic!("{n} executors did not register within 60 s\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_executor(scheduler: u16, work: &Path, logs: &Path, name: &str) -> Child {
    let args: Vec<String> = vec![
        "--scheduler".into(),
        format!("127.0.0.1:{scheduler}"),
        "--port".into(),
        free_port().to_string(),
        "--grpc-port".into(),
        free_port().to_string(),
        "--work-dir".into(),
        work.join(name).display().to_string(),
        "--vcores".into(),
        "2".into(),
    ];
    spawn(
        env!("CARGO_BIN_EXE_cohortdb-executor"),
        &args,
        &logs.join(format!("{name}.log")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_on_ballista_equal_the_server() {
    let server = TestServer::start();
    let client = server.client().await;
    load_seeded(&client).await;
    exec(&client, &format!("SET timezone = '{TZ}'")).await;
    let work = tempfile::tempdir().unwrap();
    let export = work.path().join("export");
    simple_rows(
        &client,
        &format!("CALL export_events('{}')", export.display()),
    )
    .await;
    let mut expected = Vec::new();
    for stmt in STATEMENTS {
        expected.push(norm_rows(simple_rows(&client, stmt).await));
    }

    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    let mut procs = Processes(vec![spawn(
        env!("CARGO_BIN_EXE_cohortdb-scheduler"),
        &["--bind".into(), format!("127.0.0.1:{port}")],
        &logs.join("scheduler.log"),
    )]);
    procs
        .0
        .push(start_executor(port, work.path(), &logs, "executor-1"));
    wait_for_executors(port, 1, &logs);
    let url = format!("df://127.0.0.1:{port}");
    for (executors, partitions) in [(1, 1), (1, 4), (2, 2), (2, 7)] {
        if executors == 2 && procs.0.len() < 3 {
            procs
                .0
                .push(start_executor(port, work.path(), &logs, "executor-2"));
            wait_for_executors(port, 2, &logs);
        }
        let ctx = cohortdb_dist::cluster::remote_context(&url, partitions)
            .await
            .unwrap();
        cohortdb_dist::files::register_export(&ctx, &export)
            .await
            .unwrap();
        for (stmt, want) in STATEMENTS.iter().zip(&expected) {
            let form = sql_form(stmt, &export);
            let got = ctx
                .sql(&form)
                .await
                .unwrap_or_else(|e| panic!("{stmt}: {e}"))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{stmt}: {e}"));
            assert_eq!(
                &norm_rows(batches_text(&got)),
                want,
                "{stmt}\non {executors} executor(s), {partitions} partitions"
            );
        }
    }
}
