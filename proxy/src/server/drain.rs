//! Draining: how a node leaves without failing a request.
//!
//! Draining starts on SIGTERM (after which the node keeps accepting for
//! `server.drain_grace_secs`, so load balancers see `/ready` fail first) or on SIGQUIT (a
//! new binary takes the listening sockets over). From then on every HTTP/1 response says
//! `Connection: close` and every HTTP/2 connection gets GOAWAY, so clients move to new
//! connections (on another node, or the new binary) between requests, never in the middle
//! of one. When the listeners close, what is left gets `server.drain_timeout_secs` to
//! finish; the node exits as soon as no connection is open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

/// The node's drain state, shared by every listener and the admin API.
#[derive(Clone)]
pub struct Drain {
    state: Arc<State>,
}

struct State {
    draining: watch::Sender<bool>,
    open: AtomicUsize,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            state: Arc::new(State {
                draining: watch::Sender::new(false),
                open: AtomicUsize::new(0),
            }),
        }
    }
}

impl Drain {
    /// Starts draining (again is a no-op).
    pub fn start(&self) {
        self.state.draining.send_replace(true);
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        *self.state.draining.borrow()
    }

    /// Resolves once draining starts.
    pub async fn started(&self) {
        let mut draining = self.state.draining.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = draining.wait_for(|d| *d).await;
    }

    /// Client connections open on any listener.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::Relaxed)
    }

    /// Counts a connection as open while the guard lives.
    pub(crate) fn connection(&self) -> OpenConnection {
        self.state.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            state: self.state.clone(),
        }
    }
}

/// One open connection, for [`Drain::open_connections`].
pub(crate) struct OpenConnection {
    state: Arc<State>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.state.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_is_announced_once_and_connections_are_counted() {
        let drain = Drain::default();
        assert!(!drain.is_draining());
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.started().await }
        });
        let first = drain.connection();
        let second = drain.connection();
        assert_eq!(drain.open_connections(), 2);
        drain.start();
        drain.start();
        waiter.await.unwrap();
        assert!(drain.is_draining());
        drop((first, second));
        assert_eq!(drain.open_connections(), 0);
        // Late waiters return at once.
        drain.started().await;
    }
}
