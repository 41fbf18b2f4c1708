//! Engine.IO v4: sessions, their transports (long-polling and WebSocket) and the heartbeat.

pub(crate) mod packet;
pub(crate) mod polling;
pub(crate) mod websocket;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::Notify;

use crate::config::Config;
use crate::handler::{DisconnectReason, Handler};
use crate::registry::Registry;
use crate::sid::Sid;
use crate::socket::{Socket, SocketCore, Transport};
use crate::socketio::SioState;

use packet::Frame;
use polling::PollingState;

/// While the application answers a `CONNECT` past the connect timeout, how often to look again.
pub(crate) const CONNECT_RECHECK: Duration = Duration::from_millis(250);
/// How long a session asked to close may take to deliver what is queued (a WebSocket's last frames and
/// its close frame; a polling session's last `GET`).
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The server's shared state: settings, the application's handler and the live sessions.
pub(crate) struct Engine<H: Handler> {
    pub(crate) config: Config,
    pub(crate) handler: H,
    sessions: Registry<Connection<H>>,
    /// WebSocket tasks still running, so that a shutdown can wait for their close frames to go out.
    pub(crate) tasks: TaskCount,
    /// Set by a shutdown: new sessions are refused.
    shutting_down: AtomicBool,
}

/// One Engine.IO session and the Socket.IO socket on it (only the `/` namespace exists, so there is at most
/// one socket per session and they live and die together).
pub(crate) struct Connection<H: Handler> {
    pub(crate) socket: Socket,
    /// The Engine.IO session id (private to the client; the socket id is a different one).
    pub(crate) sid: Sid,
    // A std Mutex: it is never held across an `.await` nor while calling the handler.
    sio: Mutex<SioState<H::Session, H::Pending>>,
    /// Present for sessions opened by long-polling (also after they upgrade).
    pub(crate) polling: Option<PollingState>,
}

impl<H: Handler> Connection<H> {
    pub(crate) fn sio(&self) -> MutexGuard<'_, SioState<H::Session, H::Pending>> {
        self.sio.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<H: Handler> Engine<H> {
    pub(crate) fn new(config: Config, handler: H) -> Arc<Self> {
        Arc::new(Self {
            config,
            handler,
            sessions: Registry::new(),
            tasks: TaskCount::default(),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// Opens a session for an admitted request from `remote_addr`, keeping `pending` (from
    /// `Handler::admit`) until its socket connects. `polling_headers` is `Some` for a session opened by
    /// long-polling: the headers `check_request` asked for, added to each of its responses.
    pub(crate) fn open(
        &self,
        transport: Transport,
        remote_addr: SocketAddr,
        pending: Arc<H::Pending>,
        polling_headers: Option<HeaderMap>,
    ) -> Arc<Connection<H>> {
        let core = SocketCore::new(remote_addr, transport, self.config.max_queued_bytes);
        let conn = Arc::new(Connection {
            socket: Socket(Arc::new(core)),
            sid: Sid::random(),
            sio: Mutex::new(SioState::new(pending)),
            polling: polling_headers.map(|headers| {
                PollingState::new(
                    headers,
                    tokio::time::Instant::now() + self.config.connect_timeout,
                )
            }),
        });
        self.sessions.insert(conn.sid, conn.clone());
        tracing::debug!(sid = %conn.sid, ?transport, "session opened");
        conn
    }

    pub(crate) fn session(&self, sid: &Sid) -> Option<Arc<Connection<H>>> {
        self.sessions.get(sid)
    }

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Queues a protocol reply (a noop, a ping, a refusal) for a session; `false` if it can't take it.
    /// A session whose queue would pass its bound (the client provokes replies and doesn't read them)
    /// is ended. A session already closing is left to close its own way: ending it here would drop
    /// the last frames it queued (a refusal waiting for the polling client's next `GET`).
    pub(crate) fn reply(&self, conn: &Connection<H>, frame: Frame) -> bool {
        if conn.socket.0.push_control(frame) {
            return true;
        }
        if conn.socket.0.close_requested().is_none() {
            tracing::debug!(sid = %conn.sid, "a reply doesn't fit in the outgoing queue: closing the session");
            self.finish(conn, DisconnectReason::TransportError);
        }
        false
    }

    /// Ends a session: it leaves the table, its queue is dropped, and if its socket was connected the
    /// handler's `disconnect` runs. Only the first call for a session does anything.
    pub(crate) fn finish(&self, conn: &Connection<H>, reason: DisconnectReason) {
        if self.sessions.remove(&conn.sid).is_none() {
            return;
        }
        tracing::debug!(sid = %conn.sid, %reason, "session closed");
        conn.socket.0.mark_closed();
        if let Some(polling) = &conn.polling {
            polling.stop();
        }
        let session = conn.sio().close();
        if let Some(session) = session {
            self.handler.disconnect(session, &conn.socket, reason);
        }
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Refuses new sessions from now on and closes every session without a Socket.IO `DISCONNECT`.
    pub(crate) fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.close_all(DisconnectReason::ServerShutdown);
    }

    /// Closes every session without a Socket.IO `DISCONNECT`.
    pub(crate) fn close_all(&self, reason: DisconnectReason) {
        for conn in self.sessions.values() {
            conn.socket.0.request_close(reason, false);
            // A polling session has no task of its own to carry the close out; a pending GET answers "1".
            if conn.socket.transport() == Transport::Polling {
                self.finish(&conn, reason);
            }
        }
    }
}

/// Counts running tasks and lets a caller wait until none is left.
#[derive(Default)]
pub(crate) struct TaskCount {
    active: AtomicUsize,
    idle: Notify,
}

impl TaskCount {
    /// Counts a task until the returned guard drops.
    pub(crate) fn enter(self: &TaskCount) -> TaskGuard<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        TaskGuard(self)
    }

    /// Counts a task that calls [`TaskCount::leave`] when it ends.
    pub(crate) fn enter_detached(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn leave(&self) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub(crate) struct TaskGuard<'a>(&'a TaskCount);

impl Drop for TaskGuard<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}
