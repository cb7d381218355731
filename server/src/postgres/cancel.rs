//! CancelRequest, `statement_timeout` and closed clients: the registry of
//! running sessions by backend key, and the guard that ends a statement (or
//! its row stream) with SQLSTATE 57014 when it is interrupted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cohortdb_sql::runtime::interrupt::{Interrupt, Reason};
use futures::{Stream, StreamExt};
use pgwire::api::cancel::CancelHandler;
use pgwire::error::PgWireResult;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;

use super::error::to_pg;
use super::liveness;

/// What a running statement is watched by: its session's interrupt (cancel
/// requests, `statement_timeout`) and its client's socket.
#[derive(Clone)]
pub struct Watch {
    /// The session's interrupt flag.
    pub interrupt: Arc<Interrupt>,
    /// The client's socket, when the connection is TCP.
    pub peer: Option<liveness::PeerSocket>,
    /// `client_connection_check_interval` (`None` = no check).
    pub check_every: Option<Duration>,
}

impl Watch {
    /// Resolves once the client is gone, having interrupted the statement.
    async fn client_gone(&self) {
        liveness::wait_peer_gone(self.peer.as_ref(), self.check_every).await;
        tracing::info!("client closed its connection: cancelling its running statement");
        self.interrupt.interrupt(None, Reason::ClientGone);
    }
}

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

/// Runs `fut` unless the statement is interrupted or its client goes away
/// first (then 57014; `fut` is dropped, which stops its work).
pub async fn guard<T>(
    watch: &Watch,
    fut: impl std::future::Future<Output = PgWireResult<T>>,
) -> PgWireResult<T> {
    tokio::select! {
        r = fut => r,
        _ = watch.interrupt.interrupted() => Err(to_pg(watch.interrupt.error())),
        _ = watch.client_gone() => Err(to_pg(watch.interrupt.error())),
    }
}

/// `rows`, ending with a 57014 error as soon as the statement is interrupted
/// or its client goes away (the rest of `rows` is dropped unread).
pub fn guard_stream<T: Send + 'static>(
    watch: Watch,
    rows: impl Stream<Item = PgWireResult<T>> + Send + 'static,
) -> impl Stream<Item = PgWireResult<T>> + Send + 'static {
    futures::stream::unfold(
        (Box::pin(rows), watch, false),
        |(mut rows, watch, done)| async move {
            if done {
                return None;
            }
            if let Err(e) = watch.interrupt.check() {
                return Some((Err(to_pg(e)), (rows, watch, true)));
            }
            let next = tokio::select! {
                item = rows.next() => item.map(Ok),
                _ = watch.interrupt.interrupted() => Some(Err(())),
                _ = watch.client_gone() => Some(Err(())),
            };
            match next {
                None => None,
                Some(Ok(item)) => Some((item, (rows, watch, false))),
                Some(Err(())) => {
                    let e = to_pg(watch.interrupt.error());
                    Some((Err(e), (rows, watch, true)))
                }
            }
        },
    )
}
