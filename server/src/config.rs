//! Server configuration: defaults, TOML file (`--config`), command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use cohortdb_storage::store::SyncPolicy;
use serde::Deserialize;

/// Settings of one server process. Every limit is a setting.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Address of the Postgres protocol listener.
    pub listen: SocketAddr,
    /// Server time zone (IANA name): defines `event_day` and the session default.
    pub timezone: String,
    /// WAL durability: `statement` (fsync at statement commit) or `os`.
    pub sync: SyncPolicy,
    /// Most concurrent connections (further ones get SQLSTATE 53300).
    pub max_connections: usize,
    /// Capacity of the ingest writer's queue.
    pub writer_queue: usize,
    /// RocksDB block cache size in MiB.
    pub block_cache_mb: usize,
    /// Most memory (MiB) one INSERT/COPY may stage before commit (SQLSTATE 54000 beyond).
    pub max_statement_mb: usize,
    /// Most memory (MiB) one query may use (SQLSTATE 53200 beyond; sorts and
    /// aggregations spill to disk first). Sessions may `SET max_query_memory`. 0 = no limit.
    pub max_query_memory_mb: usize,
    /// Most memory (MiB) all running queries together may use (SQLSTATE
    /// 53200 for the query crossing it). Default: half of physical memory. 0 = no limit.
    pub max_server_memory_mb: usize,
    /// Longest statement text (Query/Parse message) in MiB (SQLSTATE 54000
    /// beyond); the protocol itself ends a connection sending a frame over 1 GiB.
    pub max_message_mb: usize,
    /// Deepest nesting of expressions in a statement (SQLSTATE 54001 beyond).
    pub max_expression_depth: usize,
    /// TLS certificate chain (PEM); with `tls_key`, clients may use `sslmode=require`.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, RSA or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Failed logins within `login_failure_window_secs` that lock a user
    /// (0 turns lockout off).
    pub login_max_failures: usize,
    /// Window failed logins are counted in, seconds.
    pub login_failure_window_secs: u64,
    /// How long a locked user stays locked, seconds.
    pub login_lock_secs: u64,
    /// Run the journey engine (off: published journeys wait; events
    /// committed meanwhile are handled when it runs again).
    pub journeys_enabled: bool,
    /// WeChat sends: most recipients per account and UTC day (0 = no cap);
    /// the rest are skipped with reason `daily_cap`.
    pub wechat_daily_cap: u64,
    /// WeChat sends: recipients per minute per account (the platform's limit).
    pub wechat_recipients_per_minute: u64,
    /// PEM bundle `https://` WeChat API servers are checked against
    /// (unset: the system's, /etc/ssl/certs/ca-certificates.crt).
    pub wechat_ca_file: Option<PathBuf>,
    /// Address of the HTTP collector (`host:port`); empty turns it off.
    pub http_listen: String,
    /// Limits of the HTTP collector (`[collector]`).
    pub collector: cohortdb_collector::CollectorSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./cohortdb-data"),
            listen: "127.0.0.1:5433".parse().expect("default address"),
            timezone: "UTC".into(),
            sync: SyncPolicy::Statement,
            max_connections: 100,
            writer_queue: 256,
            block_cache_mb: 256,
            max_statement_mb: 4096,
            max_query_memory_mb: cohortdb_sql::runtime::limits::DEFAULT_MAX_QUERY_MEMORY_MB,
            max_server_memory_mb: cohortdb_sql::runtime::memory_budget::default_server_memory_mb(),
            max_expression_depth: cohortdb_sql::runtime::limits::DEFAULT_MAX_EXPRESSION_DEPTH,
            max_message_mb: cohortdb_sql::runtime::limits::DEFAULT_MAX_MESSAGE_MB,
            tls_cert: None,
            tls_key: None,
            login_max_failures: 5,
            login_failure_window_secs: 300,
            login_lock_secs: 300,
            journeys_enabled: true,
            wechat_daily_cap: 0,
            wechat_recipients_per_minute: 30_000,
            wechat_ca_file: None,
            http_listen: "127.0.0.1:5480".into(),
            collector: cohortdb_collector::CollectorSettings::default(),
        }
    }
}

impl Config {
    /// Reads a TOML file; unknown keys are an error.
    pub fn from_file(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))
    }
}
