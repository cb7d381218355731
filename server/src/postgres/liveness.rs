//! Client connection checks while a statement runs (PostgreSQL's
//! `client_connection_check_interval`, on by default here): a client whose
//! socket closed has its running statement interrupted, so abandoned work
//! stops within the interval instead of running to the end.

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};

/// A duplicate of a connection's socket descriptor, kept only to ask
/// whether the peer is still there (never read or written).
pub type PeerSocket = Arc<OwnedFd>;

tokio::task_local! {
    /// The socket of the connection this task serves.
    static PEER_SOCKET: PeerSocket;
}

/// Runs a connection's protocol loop with `socket` (a duplicate of its
/// descriptor, see [`PeerSocket`]) known to [`current_socket`].
pub async fn serve_with_socket<F: Future>(socket: OwnedFd, connection: F) -> F::Output {
    PEER_SOCKET.scope(Arc::new(socket), connection).await
}

/// The socket of the connection the calling task serves, if any.
pub fn current_socket() -> Option<PeerSocket> {
    PEER_SOCKET.try_with(|fd| fd.clone()).ok()
}

/// Whether the peer has closed or reset the connection. Data still queued to
/// be read (a pipelined message) does not hide a close: this asks for
/// POLLRDHUP, as PostgreSQL's check does.
pub fn peer_gone(socket: &impl AsFd) -> bool {
    let mut fds = [PollFd::new(socket, PollFlags::RDHUP)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(n) if n > 0 => fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
        _ => false,
    }
}

/// Resolves once the peer is gone, checking every `every`; never resolves
/// when the socket is unknown or the check is off.
pub async fn wait_peer_gone(socket: Option<&PeerSocket>, every: Option<Duration>) {
    let (Some(socket), Some(every)) = (socket, every) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(every).await;
        if peer_gone(socket.as_ref()) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_peer_is_seen_and_an_open_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let watched: PeerSocket = Arc::new(server.as_fd().try_clone_to_owned().unwrap());
        assert!(!peer_gone(watched.as_ref()));
        drop(client);
        tokio::time::timeout(
            Duration::from_secs(5),
            wait_peer_gone(Some(&watched), Some(Duration::from_millis(10))),
        )
        .await
        .expect("the close is seen");
    }
}
