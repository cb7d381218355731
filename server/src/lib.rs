//! cohortdb server: process lifecycle, the Postgres listener, and the demo
//! data loader. Protocol handling is in [`postgres`]; execution is in the
//! `cohortdb-sql` crate behind [`cohortdb_sql::Session`].

pub mod config;
pub mod demo;
pub mod postgres;
pub mod scheduler;

use std::sync::Arc;

use chrono_tz::Tz;
use cohortdb_sql::{Engine, EngineConfig};
use cohortdb_storage::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;

/// Opens the data directory and the SQL engine on it.
fn open(cfg: &Config) -> Result<(Arc<Store>, Arc<Engine>, Tz), String> {
    let tz: Tz = if cfg.timezone.eq_ignore_ascii_case("utc") {
        Tz::UTC
    } else {
        cfg.timezone
            .parse()
            .map_err(|_| format!("invalid timezone \"{}\" in configuration", cfg.timezone))?
    };
    let store = Store::open(
        &cfg.data_dir,
        StoreOptions {
            sync: cfg.sync,
            writer_queue: cfg.writer_queue,
            block_cache_bytes: cfg.block_cache_mb << 20,
            max_statement_bytes: cfg.max_statement_mb << 20,
        },
    )
    .map_err(|e| format!("cannot open data directory {}: {e}", cfg.data_dir.display()))?;
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            timezone: tz,
            max_expression_depth: cfg.max_expression_depth,
            max_message: cfg.max_message_mb << 20,
            max_query_memory: cfg.max_query_memory_mb << 20,
            max_server_memory: cfg.max_server_memory_mb << 20,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok((store, engine, tz))
}

/// `cohortdb export`: writes the data directory's events and contacts as
/// Hive-partitioned Parquet under `out` (see `cohortdb_sql::handler::export`),
/// printing one progress line per day and a summary on stderr.
pub async fn export(
    cfg: Config,
    out: &std::path::Path,
    from: Option<String>,
    to: Option<String>,
) -> Result<(), String> {
    let day = |s: Option<String>| -> Result<Option<i32>, String> {
        match s {
            None => Ok(None),
            Some(s) => cohortdb_sql::model::convert::parse_date(s.trim())
                .map(Some)
                .ok_or_else(|| format!("invalid date '{s}' (expected YYYY-MM-DD)")),
        }
    };
    let (from, to) = (day(from)?, day(to)?);
    let (store, engine, _tz) = open(&cfg)?;
    let session = engine.session();
    let bounds = store.event_day_bounds().map_err(|e| e.to_string())?;
    cohortdb_sql::handler::export::export(&session.context(), bounds, out, from, to, |line| {
        eprintln!("{line}")
    })
    .await
    .map_err(|e| format!("export failed: {e}"))?;
    Ok(())
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(cfg: Config, demo: bool) -> Result<(), String> {
    let (store, engine, tz) = open(&cfg)?;
    let admin_password = std::env::var("COHORTDB_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    cohortdb_sql::access::users::ensure_admin(&store, admin_password.as_deref())
        .await
        .map_err(|e| format!("cannot create user admin: {e}"))?;
    let trust = !cohortdb_sql::access::users::passwords_required(&store);
    if trust {
        tracing::info!(
            "no password for admin (COHORTDB_ADMIN_PASSWORD was not set at first start): accepting loopback connections only, trusted as any user"
        );
    } else {
        tracing::info!("password authentication (SCRAM-SHA-256) for all connections");
    }
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let acceptor = postgres::tls::acceptor(cert, key)?;
            tracing::info!("TLS enabled ({})", cert.display());
            Some(acceptor)
        }
        (None, None) => None,
        _ => return Err("tls_cert and tls_key must be configured together".into()),
    };
    if demo {
        demo::load_if_empty(&engine)
            .await
            .map_err(|e| format!("loading demo data failed: {e}"))?;
    }
    {
        let mut b = store.batch();
        b.put_setting(
            cohortdb_sql::handler::wechat::DAILY_CAP_SETTING,
            cfg.wechat_daily_cap.to_string().as_bytes(),
        );
        store
            .commit(b)
            .await
            .map_err(|e| format!("cannot record wechat_daily_cap: {e}"))?;
    }
    let scheduler = scheduler::spawn(engine.clone(), tz);
    let journeys = cfg
        .journeys_enabled
        .then(|| cohortdb_journeys::spawn(engine.clone()));
    if let Some(ca) = &cfg.wechat_ca_file {
        cohortdb_wechat::client::set_ca_file(ca.clone());
    }
    let wechat_sender = cohortdb_wechat::spawn(
        store.clone(),
        cohortdb_wechat::SenderSettings {
            recipients_per_minute: cfg.wechat_recipients_per_minute,
            ..Default::default()
        },
    );
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    tracing::info!(
        "cohortdb listening on {} (data directory {})",
        cfg.listen,
        cfg.data_dir.display()
    );
    let (stop_http, http_stopped) = tokio::sync::watch::channel(false);
    let http = if cfg.http_listen.trim().is_empty() {
        None
    } else {
        let addr = cfg.http_listen.trim();
        let http_listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?;
        tracing::info!("HTTP collector listening on {addr}");
        let collector = cohortdb_collector::Collector::new(engine.clone(), cfg.collector.clone());
        let mut stopped = http_stopped.clone();
        Some(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = cohortdb_collector::serve(http_listener, collector, shutdown).await {
                tracing::error!("HTTP collector stopped: {e}");
            }
        }))
    };
    let lockout = Arc::new(
        cohortdb_sql::access::lockout::Lockout::open(
            store.clone(),
            cohortdb_sql::access::lockout::LockoutRules {
                max_failures: cfg.login_max_failures,
                window_ms: cfg.login_failure_window_secs as i64 * 1000,
                lock_ms: cfg.login_lock_secs as i64 * 1000,
            },
        )
        .map_err(|e| format!("cannot read the login lockout state: {e}"))?,
    );
    let handlers = Arc::new(postgres::Handlers::new(engine.clone(), lockout));
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (socket, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => { tracing::warn!("accept failed: {e}"); continue; }
                };
                if trust && !addr.ip().is_loopback() {
                    tracing::warn!("refusing connection from {addr}: only loopback connections are accepted without a configured password");
                    continue;
                }
                let handlers = handlers.clone();
                let tls = tls.clone();
                let permit = limit.clone().try_acquire_owned();
                tasks.spawn(async move {
                    match permit {
                        Ok(_permit) => {
                            let watched = std::os::fd::AsFd::as_fd(&socket).try_clone_to_owned();
                            let connection = pgwire::tokio::process_socket(socket, tls, handlers);
                            // a duplicate descriptor lets running statements see
                            // the client leave (client_connection_check_interval)
                            let served = match watched {
                                Ok(fd) => postgres::liveness::serve_with_socket(fd, connection).await,
                                Err(e) => {
                                    tracing::warn!("cannot watch the socket of {addr} ({e}); its statements run unchecked");
                                    connection.await
                                }
                            };
                            if let Err(e) = served {
                                tracing::debug!("connection {addr} ended: {e}");
                            }
                        }
                        Err(_) => reject_too_many(socket).await,
                    }
                });
            }
        }
    }
    tracing::info!("shutting down: no new connections; waiting up to 10 s for running statements");
    drop(listener);
    let _ = stop_http.send(true);
    if let Some(h) = http {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), h).await;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    scheduler.abort();
    wechat_sender.abort();
    if let Some(j) = journeys {
        j.abort();
    }
    store
        .shutdown()
        .map_err(|e| format!("flush at shutdown failed: {e}"))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Answers a connection over the limit with SQLSTATE 53300 and closes it.
async fn reject_too_many(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), socket.read(&mut buf)).await;
    let fields =
        b"SFATAL\0VFATAL\0C53300\0Msorry, too many clients already (max_connections reached)\0\0";
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(fields);
    let _ = socket.write_all(&msg).await;
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
