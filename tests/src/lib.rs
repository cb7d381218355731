//! End-to-end test support for cohortdb.
//!
//! Every test in this crate talks to the real `cohortdb` binary over the
//! PostgreSQL wire protocol, exactly as psql, drivers and BI tools do:
//!
//! - [`cohortdb_bin`] finds the server binary (built with
//!   `cargo build -p cohortdb-server`, or given by `COHORTDB_BIN`);
//! - [`TestServer`] starts it on a free loopback port with its own data
//!   directory, waits until it accepts connections, hands out
//!   [`tokio_postgres::Client`]s, and stops it (SIGTERM), kills it (SIGKILL) or
//!   restarts it on the same data directory;
//! - [`CohortEngine`] is the `sqllogictest` engine used by the SQL-file tests
//!   (`slt_runner.rs`, files under `tests/slt/`), in either [`Protocol`];
//! - [`render`] turns binary result values into the text Postgres would print,
//!   so both protocols produce the same expected output;
//! - [`simple_rows`], [`exec`], [`expect_sqlstate`] are small helpers for the
//!   Rust integration tests in `tests/tests/`.
//!
//! The server log (stdout and stderr) goes to a file in a temporary directory;
//! it is printed when a test fails, so the reason is visible in test output.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

mod engine;
pub mod render;
pub mod scale_out;

pub use engine::{CohortEngine, Protocol, SqlError};

/// How long a starting server may take before it must accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval while waiting for the server to start or stop.
const POLL: Duration = Duration::from_millis(50);
/// Lines of server log shown in failure messages.
const LOG_TAIL_LINES: usize = 200;

/// Path of the `cohortdb` server binary.
///
/// Uses the `COHORTDB_BIN` environment variable when set; otherwise the binary
/// next to the running test executable's directory: test executables live in
/// `<target>/<profile>/deps/`, the server in `<target>/<profile>/cohortdb`.
///
/// # Panics
///
/// If the binary does not exist, with a message saying how to build it.
pub fn cohortdb_bin() -> PathBuf {
    cohortdb_bin_path()
}

/// The `tests/` directory of the checkout being tested. Read from the
/// environment cargo sets when it runs a test (a build reused from a checkout
/// at another path would otherwise carry that path in `env!`).
pub fn tests_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn cohortdb_bin_path() -> PathBuf {
    if let Some(path) = std::env::var_os("COHORTDB_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            panic!(
                "COHORTDB_BIN={} does not exist; build it first: cargo build -p cohortdb-server",
                path.display()
            );
        }
        return path;
    }
    let exe = std::env::current_exe().expect("cannot determine the test executable's path");
    let mut dir = exe
        .parent()
        .expect("test executable has no parent directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("cohortdb{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        panic!(
            "cohortdb binary not found at {}; build it first: cargo build -p cohortdb-server \
             (or point COHORTDB_BIN at it)",
            bin.display()
        );
    }
    bin
}

/// The data directory of a [`TestServer`]: its own temporary directory
/// (removed on drop) or one the test owns (kept, for restarts).
enum DataDir {
    Temp(TempDir),
    Given(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temp(dir) => dir.path(),
            DataDir::Given(path) => path,
        }
    }
}

/// A running `cohortdb serve` process on a free loopback port.
///
/// Loopback connections are trusted (no `COHORTDB_ADMIN_PASSWORD` is passed
/// to the child), user `admin`, database `cohortdb`. Dropping the value kills
/// the process; if the current thread is panicking, the tail of the server log
/// is printed first.
pub struct TestServer {
    child: Option<Child>,
    port: u16,
    http_port: u16,
    data_dir: DataDir,
    log_path: PathBuf,
    /// Holds the log file; removed on drop.
    _log_dir: TempDir,
    /// Set once a panic message already carried the log, to avoid printing it twice.
    log_printed: bool,
    /// `COHORTDB_ADMIN_PASSWORD` given to the server (SCRAM for everyone).
    admin_password: Option<String>,
}

impl TestServer {
    /// Starts a server on a fresh, empty temporary data directory.
    ///
    /// Blocks until the server accepts a PostgreSQL connection (at most 60 s).
    /// Callable from synchronous code and from inside a tokio runtime.
    ///
    /// # Panics
    ///
    /// If the server exits early or does not become ready; the message contains
    /// the server log.
    pub fn start() -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("cohortdb-data-")
            .tempdir()
            .expect("cannot create a temporary data directory");
        Self::spawn(DataDir::Temp(dir), &[], None)
    }

    /// Starts a server on `data_dir` (which the caller keeps, e.g. to restart
    /// on it later), with `extra_args` appended to
    /// `cohortdb serve --data-dir DIR --listen 127.0.0.1:PORT`
    /// (for example `["--demo"]` or `["--config", "file.toml"]`).
    ///
    /// # Panics
    ///
    /// As [`TestServer::start`].
    pub fn start_with(data_dir: &Path, extra_args: &[&str]) -> TestServer {
        Self::spawn(DataDir::Given(data_dir.to_path_buf()), extra_args, None)
    }

    /// Starts a server on `data_dir` with `COHORTDB_ADMIN_PASSWORD=password`:
    /// every connection authenticates with SCRAM-SHA-256, and
    /// [`TestServer::conn_string`] carries the password.
    pub fn start_with_password(data_dir: &Path, password: &str) -> TestServer {
        Self::spawn(
            DataDir::Given(data_dir.to_path_buf()),
            &[],
            Some(password.to_string()),
        )
    }

    /// [`TestServer::start_with_password`] with `extra_args` (e.g. a config file).
    pub fn start_with_password_and(
        data_dir: &Path,
        password: &str,
        extra_args: &[&str],
    ) -> TestServer {
        Self::spawn(
            DataDir::Given(data_dir.to_path_buf()),
            extra_args,
            Some(password.to_string()),
        )
    }

    fn spawn(data_dir: DataDir, extra_args: &[&str], admin_password: Option<String>) -> TestServer {
        let bin = cohortdb_bin();
        let log_dir = tempfile::Builder::new()
            .prefix("cohortdb-log-")
            .tempdir()
            .expect("cannot create a temporary log directory");
        let log_path = log_dir.path().join("cohortdb.log");
        let mut server = TestServer {
            child: None,
            port: 0,
            http_port: 0,
            data_dir,
            log_path,
            _log_dir: log_dir,
            log_printed: false,
            admin_password,
        };
        // A free port can be taken by someone else between our probe and the
        // server's bind; retry a few times on "address in use".
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = free_port();
            server.http_port = free_port();
            server.launch(&bin, extra_args);
            match server.wait_ready() {
                Ok(()) => return server,
                Err(reason) => {
                    let log = server.log_contents();
                    let addr_in_use = log.contains("in use") || log.contains("AddrInUse");
                    if let Some(mut child) = server.child.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    if addr_in_use && attempt < 3 {
                        continue;
                    }
                    server.log_printed = true;
                    panic!(
                        "cohortdb did not start ({reason})\n  binary: {}\n  data dir: {}\n  \
                         listen: 127.0.0.1:{}\n--- server log ({}) ---\n{}\n--- end of server log ---",
                        bin.display(),
                        server.data_dir.path().display(),
                        server.port,
                        server.log_path.display(),
                        tail(&log, LOG_TAIL_LINES)
                    );
                }
            }
        }
    }

    fn launch(&mut self, bin: &Path, extra_args: &[&str]) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("cannot create the server log file");
        let log_err = log.try_clone().expect("cannot clone the log file handle");
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .args(extra_args)
            .env_remove("COHORTDB_ADMIN_PASSWORD")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(p) = &self.admin_password {
            cmd.env("COHORTDB_ADMIN_PASSWORD", p);
        }
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        self.child = Some(child);
    }

    /// Polls every 50 ms until a PostgreSQL connection succeeds.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let conn_string = self.conn_string();
        let mut last_error = String::from("no connection attempt yet");
        loop {
            let child = self.child.as_mut().expect("server process not running");
            match child.try_wait() {
                Ok(Some(status)) => return Err(format!("the process exited early with {status}")),
                Ok(None) => {}
                Err(e) => return Err(format!("cannot query the process status: {e}")),
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                match probe_connect(&conn_string) {
                    Ok(()) => return Ok(()),
                    Err(e) => last_error = e,
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not accepting PostgreSQL connections after {} s; last error: {last_error}",
                    START_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the HTTP collector (127.0.0.1).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The base URL of the HTTP collector, e.g. `http://127.0.0.1:5480`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Process id of the running server, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// A libpq-style connection string for this server (user `admin`,
    /// database `cohortdb`, no password: loopback is trusted).
    pub fn conn_string(&self) -> String {
        let password = self
            .admin_password
            .as_ref()
            .map(|p| format!(" password={p}"))
            .unwrap_or_default();
        format!(
            "host=127.0.0.1 port={} user=admin dbname=cohortdb connect_timeout=10{password}",
            self.port
        )
    }

    /// Connects with tokio-postgres; the connection task is spawned on the
    /// current tokio runtime.
    ///
    /// # Panics
    ///
    /// If the connection fails (the message includes the server log).
    pub async fn client(&self) -> Client {
        match self.try_client().await {
            Ok(client) => client,
            Err(e) => panic!(
                "cannot connect to cohortdb on port {}: {}\n--- server log ---\n{}",
                self.port,
                SqlError::from(&e),
                self.log_tail(LOG_TAIL_LINES)
            ),
        }
    }

    /// Like [`TestServer::client`], returning the error instead of panicking.
    pub async fn try_client(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(&self.conn_string(), NoTls).await?;
        tokio::spawn(async move {
            // Errors here (e.g. after kill -9) surface on the client's calls.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Kills the server with SIGKILL (no chance to flush) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM (via the `kill` command), waits up to
    /// 30 s for it to exit, and asserts exit status 0.
    ///
    /// # Panics
    ///
    /// If the server does not exit in time or exits unsuccessfully; the
    /// message contains the server log.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(&pid)
            .status()
            .unwrap_or_else(|e| panic!("cannot run `kill -TERM {pid}`: {e}"));
        assert!(sent.success(), "`kill -TERM {pid}` failed with {sent}");
        match wait_for_exit(&mut child, STOP_TIMEOUT) {
            Some(status) if status.success() => {}
            Some(status) => {
                self.log_printed = true;
                panic!(
                    "cohortdb exited with {status} after SIGTERM (expected exit 0)\n--- server log ---\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                self.log_printed = true;
                panic!(
                    "cohortdb did not exit within {} s of SIGTERM\n--- server log ---\n{}",
                    STOP_TIMEOUT.as_secs(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Path of the server's log file (its stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole server log so far.
    pub fn log_contents(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("<cannot read {}: {e}>", self.log_path.display()),
        }
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_contents(), lines)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && !self.log_printed {
            eprintln!(
                "--- cohortdb server log (port {}, {}) ---\n{}\n--- end of server log ---",
                self.port,
                self.log_path.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("no local address for the probe listener")
        .port()
}

/// Waits up to `timeout` for `child` to exit; `None` if it is still running.
fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// One full tokio-postgres connection attempt, run on a helper thread with its
/// own runtime so that callers may be inside (or outside) a tokio runtime.
fn probe_connect(conn_string: &str) -> Result<(), String> {
    let conn_string = conn_string.to_string();
    std::thread::spawn(move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a probe runtime: {e}"))?;
        rt.block_on(async move {
            let connect = tokio_postgres::connect(&conn_string, NoTls);
            let (client, connection) = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .map_err(|_| "connection attempt timed out".to_string())?
                .map_err(|e| SqlError::from(&e).to_string())?;
            drop(client);
            // Let the connection send Terminate and close.
            let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
            Ok::<(), String>(())
        })
    })
    .join()
    .unwrap_or_else(|_| Err("connection probe panicked".to_string()))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Text rows of a result: `None` is SQL NULL.
pub type TextRows = Vec<Vec<Option<String>>>;

/// Runs `sql` (one or more statements) with the simple query protocol and
/// returns the rows of all result sets as text, or the error.
pub async fn try_simple_rows(client: &Client, sql: &str) -> Result<TextRows, SqlError> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| SqlError::from(&e))?;
    let mut rows = Vec::new();
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// The text of `EXPLAIN sql` (simple protocol), one line per cell.
pub async fn explain_text(client: &Client, sql: &str) -> String {
    simple_rows(client, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .flatten()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
}

/// Like [`try_simple_rows`], panicking with the SQLSTATE and message on error.
pub async fn simple_rows(client: &Client, sql: &str) -> TextRows {
    match try_simple_rows(client, sql).await {
        Ok(rows) => rows,
        Err(e) => panic!("query failed: {e}\n[SQL] {sql}"),
    }
}

/// Runs one statement with the simple query protocol and returns the row
/// count of its CommandComplete (e.g. 3 for `INSERT 0 3`).
///
/// # Panics
///
/// On error, with the SQLSTATE and message.
pub async fn exec(client: &Client, sql: &str) -> u64 {
    match client.simple_query(sql).await {
        Ok(messages) => messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .last()
            .unwrap_or(0),
        Err(e) => panic!("statement failed: {}\n[SQL] {sql}", SqlError::from(&e)),
    }
}

/// Asserts that `sql` fails with SQLSTATE `code` (simple query protocol) and
/// returns the error.
///
/// # Panics
///
/// If the statement succeeds or fails with another SQLSTATE.
pub async fn expect_sqlstate(client: &Client, sql: &str, code: &str) -> SqlError {
    match client.simple_query(sql).await {
        Ok(_) => panic!("expected error {code}, but the statement succeeded\n[SQL] {sql}"),
        Err(e) => {
            let err = SqlError::from(&e);
            assert_eq!(
                err.code.as_deref(),
                Some(code),
                "expected SQLSTATE {code}, got: {err}\n[SQL] {sql}"
            );
            err
        }
    }
}
