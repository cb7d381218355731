//! CancelRequest and `statement_timeout`: the registry of running sessions
//! by backend key, and the guard that ends a statement's row stream with
//! SQLSTATE 57014 when it is interrupted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cohortdb_sql::runtime::interrupt::{Interrupt, Reason};
use futures::{Stream, StreamExt};
use pgwire::api::cancel::CancelHandler;
use pgwire::error::PgWireResult;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;

use super::error::to_pg;

/// Sessions that can be cancelled, by backend process id.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<i32, (i32, Arc<Interrupt>)>>,
}

impl Registry {
    /// Registers a session under its BackendKeyData.
    pub fn register(&self, pid: i32, secret: i32, interrupt: Arc<Interrupt>) {
        self.sessions
            .lock()
            .expect("registry")
            .insert(pid, (secret, interrupt));
    }

    /// Forgets a session (its connection closed).
    pub fn unregister(&self, pid: i32) {
        self.sessions.lock().expect("registry").remove(&pid);
    }
}

/// Answers CancelRequest messages (which arrive on their own connection).
pub struct Canceller {
    /// The registry of this server.
    pub registry: Arc<Registry>,
}

#[async_trait]
impl CancelHandler for Canceller {
    async fn on_cancel_request(&self, req: CancelRequest) {
        let target = self
            .registry
            .sessions
            .lock()
            .expect("registry")
            .get(&req.pid)
            .cloned();
        // a cancel connection's protocol version is not negotiated: the
        // 4-byte key of protocol 3.0 may arrive as bytes
        let key = match &req.secret_key {
            SecretKey::I32(k) => Some(*k),
            SecretKey::Bytes(b) if b.len() == 4 => {
                Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            SecretKey::Bytes(_) => None,
        };
        match (target, key) {
            (Some((secret, interrupt)), Some(k)) if k == secret => {
                tracing::info!("cancel request for backend {}", req.pid);
                interrupt.interrupt(None, Reason::UserRequest);
            }
            _ => tracing::debug!("ignoring cancel request with unknown key"),
        }
    }
}

/// Starts a statement on `interrupt`: arms `statement_timeout` when set.
pub fn begin(interrupt: &Arc<Interrupt>, timeout: Option<std::time::Duration>) {
    let generation = interrupt.begin();
    if let Some(t) = timeout {
        let i = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(t).await;
            i.interrupt(Some(generation), Reason::Timeout);
        });
    }
}

/// Runs `fut` unless the statement is interrupted first (then 57014).
pub async fn guard<T>(
    interrupt: &Interrupt,
    fut: impl std::future::Future<Output = PgWireResult<T>>,
) -> PgWireResult<T> {
    tokio::select! {
        r = fut => r,
        _ = interrupt.interrupted() => Err(to_pg(interrupt.error())),
    }
}

/// `rows`, ending with a 57014 error as soon as the statement is interrupted.
pub fn guard_stream<T: Send + 'static>(
    interrupt: Arc<Interrupt>,
    rows: impl Stream<Item = PgWireResult<T>> + Send + 'static,
) -> impl Stream<Item = PgWireResult<T>> + Send + 'static {
    futures::stream::unfold(
        (Box::pin(rows), interrupt, false),
        |(mut rows, interrupt, done)| async move {
            if done {
                return None;
            }
            if let Err(e) = interrupt.check() {
                return Some((Err(to_pg(e)), (rows, interrupt, true)));
            }
            let next = tokio::select! {
                item = rows.next() => item.map(Ok),
                _ = interrupt.interrupted() => Some(Err(())),
            };
            match next {
                None => None,
                Some(Ok(item)) => Some((item, (rows, interrupt, false))),
                Some(Err(())) => {
                    let e = to_pg(interrupt.error());
                    Some((Err(e), (rows, interrupt, true)))
                }
            }
        },
    )
}
