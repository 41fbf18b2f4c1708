//! A small Socket.IO v5 client over WebSocket (Engine.IO v4), for confab's integration tests,
//! load generator and protocol fuzz tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use serde_json::json;
//!
//! let opts = confab_sio_client::ConnectOptions::new("http://127.0.0.1:3001")
//!     .auth(json!({ "token": "…" }));
//! let mut client = confab_sio_client::connect(opts).await?;
//! let answer = client.emit_with_ack("conversation:list", json!({})).await?;
//! let event = client.expect_event("message:new", Duration::from_secs(5)).await?;
//! println!("{answer} {}", event.data());
//! client.disconnect().await;
//! # Ok(()) }
//! ```
//!
//! Each connection is one tokio task that owns the WebSocket (`connection.rs`); the [`Client`]
//! talks to it through a small shared state (`shared.rs`). WebSocket only: no long-polling, no
//! TLS, no binary attachments, and only the default namespace `/`. The [`packet`] module's
//! encoders and decoders are public for tests that build frames by hand.

mod connection;
mod error;
mod handshake;
pub mod packet;
mod shared;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub use error::{ConnectError, Error};
pub use packet::OpenInfo;

use shared::Shared;

/// How to connect; build with [`ConnectOptions::new`] and the setters.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The server, e.g. `"http://127.0.0.1:3001"` (`ws://` works too; no path, no TLS).
    pub url: String,
    /// The Engine.IO endpoint; default `"/socket.io/"`.
    pub path: String,
    /// The handshake auth, sent in the CONNECT packet as `40{…}`.
    pub auth: Option<Value>,
    /// The source address to bind the client socket to (e.g. `127.0.0.2`), to get past the
    /// ephemeral port range of one address.
    pub local_addr: Option<IpAddr>,
    /// Extra HTTP headers on the upgrade request, e.g. `("Origin", "https://evil.example")`.
    pub headers: Vec<(String, String)>,
    /// How long [`Client::emit_with_ack`] waits for the ack; default 10 s.
    pub ack_timeout: Duration,
    /// The limit for the whole connect: TCP, WebSocket upgrade, Engine.IO open and the
    /// Socket.IO CONNECT answer; default 10 s.
    pub connect_timeout: Duration,
    /// Whether to answer the server's pings; default true. False simulates a stalled client.
    pub answer_pings: bool,
}

impl ConnectOptions {
    /// Options for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            path: "/socket.io/".into(),
            auth: None,
            local_addr: None,
            headers: Vec::new(),
            ack_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            answer_pings: true,
        }
    }

    /// Sets the Engine.IO path.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the handshake auth payload.
    pub fn auth(mut self, auth: Value) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Binds the client socket to this source address.
    pub fn local_addr(mut self, addr: IpAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// Adds an HTTP header to the upgrade request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets how long to wait for acks.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Sets the limit for the whole connect.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets whether to answer the server's pings.
    pub fn answer_pings(mut self, answer: bool) -> Self {
        self.answer_pings = answer;
        self
    }
}

/// The longest silence limit the client accepts from the server's OPEN packet; it keeps
/// absurd values from overflowing deadline arithmetic.
const MAX_SILENCE: Duration = Duration::from_secs(24 * 3600);

/// Connects to the server and joins the default namespace.
///
/// Fails with [`ConnectError::Refused`] if the server answers with a CONNECT_ERROR (`44`),
/// and with [`ConnectError::Http`] if it refuses the WebSocket upgrade.
pub async fn connect(opts: ConnectOptions) -> Result<Client, ConnectError> {
    let established = tokio::time::timeout(opts.connect_timeout, handshake::establish(&opts))
        .await
        .map_err(|_| ConnectError::Timeout)??;

    let open = established.open;
    let silence_limit = Duration::from_millis(open.ping_interval)
        .saturating_add(Duration::from_millis(open.ping_timeout))
        .min(MAX_SILENCE);
    let shared = Arc::new(Shared::new());
    let task = tokio::spawn(connection::run(
        established.ws,
        shared.clone(),
        connection::Settings {
            answer_pings: opts.answer_pings,
            silence_limit,
        },
    ));
    Ok(Client {
        sid: established.sid,
        open,
        local_addr: established.local_addr,
        ack_timeout: opts.ack_timeout,
        shared,
        task: Some(task),
        held: VecDeque::new(),
    })
}

/// Something the server sent, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// An event (`42[…]`).
    Event(Event),
    /// The connection ended; always the last item. `reason` follows socket.io-client's names:
    /// `"io server disconnect"` (the server sent `41`), `"transport close"` (a WebSocket close
    /// frame or an Engine.IO close `1`), `"transport error: …"` (the socket failed, or was
    /// dropped without a close frame), `"ping timeout"` (the server was silent for
    /// pingInterval + pingTimeout), `"parse error: …"` (an undecodable frame) or
    /// `"protocol error: …"` (a packet out of place, such as a second CONNECT).
    Disconnected { reason: String },
}

/// An event the server emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// The arguments after the name.
    pub args: Vec<Value>,
    /// When the frame carrying it was read from the socket.
    pub received_at: Instant,
}

impl Event {
    /// The first argument, or `Null` if there is none.
    pub fn data(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.args.first().unwrap_or(&NULL)
    }
}

/// A connected Socket.IO client.
///
/// Emitting works through `&Client`, so several tasks can emit at once (acks are matched by
/// id); reading events takes `&mut Client`. Dropping a `Client` closes its WebSocket in the
/// background; [`Client::disconnect`] says goodbye properly and waits for it.
pub struct Client {
    sid: String,
    open: OpenInfo,
    local_addr: SocketAddr,
    ack_timeout: Duration,
    shared: Arc<Shared>,
    /// The connection task; taken by whichever of disconnect, drop_abruptly or Drop ends it.
    task: Option<JoinHandle<()>>,
    /// Items `expect_event` and `expect_no_event` passed over; `next_event` returns them first.
    held: VecDeque<Incoming>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("sid", &self.sid)
            .field("local_addr", &self.local_addr)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The Socket.IO sid, from `40{"sid": …}`.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The Engine.IO session parameters from the server's OPEN packet.
    pub fn engine(&self) -> &OpenInfo {
        &self.open
    }

    /// The local address of the TCP connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Emits `event` with `data` as its one argument.
    pub async fn emit(&self, event: &str, data: Value) -> Result<(), Error> {
        self.emit_args(event, std::slice::from_ref(&data)).await
    }

    /// Emits `event` with any number of arguments (none included).
    pub async fn emit_args(&self, event: &str, args: &[Value]) -> Result<(), Error> {
        let frame = packet::encode_event(event, args, None);
        self.shared.send(Message::text(frame)).await
    }

    /// Emits `event` with `data` and waits for the ack; returns its first argument (or `Null`).
    pub async fn emit_with_ack(&self, event: &str, data: Value) -> Result<Value, Error> {
        let args = self
            .emit_args_with_ack(event, std::slice::from_ref(&data))
            .await?;
        Ok(args.into_iter().next().unwrap_or(Value::Null))
    }

    /// Emits `event` with any number of arguments and waits for the ack; returns all of its
    /// arguments. Fails with [`Error::AckTimeout`] after `ack_timeout`, and with
    /// [`Error::Closed`] if the connection ends first.
    pub async fn emit_args_with_ack(
        &self,
        event: &str,
        args: &[Value],
    ) -> Result<Vec<Value>, Error> {
        let (id, answer) = self.shared.register_ack()?;
        // Unregisters the id however this future ends (timeout, error, or being dropped by
        // the caller), so abandoned acks don't pile up in a long-lived connection.
        let _pending = PendingAck {
            shared: &self.shared,
            id,
        };
        let frame = packet::encode_event(event, args, Some(id));
        self.shared.send(Message::text(frame)).await?;
        match tokio::time::timeout(self.ack_timeout, answer).await {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::AckTimeout),
        }
    }

    /// The next event or the disconnection, in arrival order; `None` once the connection has
    /// ended and everything was read.
    pub async fn next_event(&mut self) -> Option<Incoming> {
        match self.held.pop_front() {
            Some(incoming) => Some(incoming),
            None => self.shared.recv().await,
        }
    }

    /// Like [`next_event`](Self::next_event), but `None` also when nothing comes within `d`.
    pub async fn next_event_timeout(&mut self, d: Duration) -> Option<Incoming> {
        tokio::time::timeout(d, self.next_event())
            .await
            .ok()
            .flatten()
    }

    /// Waits up to `d` for the next event named `name`. Other events that come first are kept
    /// for later `next_event` calls. Fails with [`Error::Timeout`], or with [`Error::Closed`]
    /// if the connection ends first (the disconnection is kept too).
    pub async fn expect_event(&mut self, name: &str, d: Duration) -> Result<Event, Error> {
        let deadline = tokio::time::Instant::now() + d;
        if let Some(event) = self.take_held(name) {
            return Ok(event);
        }
        if self.held_disconnection() {
            return Err(Error::Closed);
        }
        loop {
            match tokio::time::timeout_at(deadline, self.shared.recv()).await {
                Err(_) => return Err(Error::Timeout),
                Ok(None) => return Err(Error::Closed),
                Ok(Some(Incoming::Event(event))) if event.name == name => return Ok(event),
                Ok(Some(other)) => {
                    let ended = matches!(other, Incoming::Disconnected { .. });
                    self.held.push_back(other);
                    if ended {
                        return Err(Error::Closed);
                    }
                }
            }
        }
    }

    /// Succeeds if no event named `name` comes within `d`; fails with
    /// [`Error::UnexpectedEvent`] if one does (or one already came and was passed over), and
    /// with [`Error::Closed`] if the connection ends. Other events are kept.
    pub async fn expect_no_event(&mut self, name: &str, d: Duration) -> Result<(), Error> {
        match self.expect_event(name, d).await {
            Ok(event) => Err(Error::UnexpectedEvent(event)),
            Err(Error::Timeout) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Sends one raw Engine.IO text frame, e.g. `"42[\"x\"]"` or garbage, for fuzzing.
    pub async fn send_raw(&self, engine_io_text_frame: String) -> Result<(), Error> {
        self.shared.send(Message::text(engine_io_text_frame)).await
    }

    /// Sends one raw WebSocket binary frame.
    pub async fn send_raw_binary(&self, bytes: Vec<u8>) -> Result<(), Error> {
        self.shared.send(Message::binary(bytes)).await
    }

    /// Whether the connection is still up: false once it ended or was closed.
    pub fn is_connected(&self) -> bool {
        !self.shared.is_closed()
    }

    /// Leaves the namespace (`41`), closes the WebSocket, and waits (briefly) for the server
    /// to answer the close.
    pub async fn disconnect(mut self) {
        let Some(mut task) = self.task.take() else {
            return;
        };
        let goodbye = [
            Message::text(packet::encode_disconnect()),
            Message::Close(None),
        ];
        self.shared.close_locally(goodbye);
        // The task ends on the server's close frame, or after CLOSE_GRACE without one; the
        // margin covers a write that is slow to go out.
        let limit = connection::CLOSE_GRACE * 2;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }

    /// Drops the TCP connection with no close frame and no `41`, like a network failure.
    pub fn drop_abruptly(mut self) {
        if let Some(task) = self.task.take() {
            // Aborting drops the task's future and with it the socket: the kernel closes the
            // connection without a word at the WebSocket or Socket.IO level.
            task.abort();
        }
    }

    fn take_held(&mut self, name: &str) -> Option<Event> {
        let position = self
            .held
            .iter()
            .position(|item| matches!(item, Incoming::Event(event) if event.name == name))?;
        match self.held.remove(position) {
            Some(Incoming::Event(event)) => Some(event),
            _ => None,
        }
    }

    fn held_disconnection(&self) -> bool {
        self.held
            .iter()
            .any(|item| matches!(item, Incoming::Disconnected { .. }))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.task.take().is_some() {
            // The task keeps running just long enough to send the close frame and hear the
            // answer (at most CLOSE_GRACE); no one waits for it.
            self.shared.close_locally([Message::Close(None)]);
        }
    }
}

/// Unregisters an ack id when an emit stops waiting for it.
struct PendingAck<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingAck<'_> {
    fn drop(&mut self) {
        self.shared.forget_ack(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Client>();
        shareable::<Incoming>();
        shareable::<Error>();
        shareable::<ConnectError>();
    }

    #[test]
    fn event_data_is_the_first_argument() {
        let mut event = Event {
            name: "e".into(),
            args: vec![],
            received_at: Instant::now(),
        };
        assert_eq!(event.data(), &Value::Null);
        event.args = vec![Value::from(1), Value::from(2)];
        assert_eq!(event.data(), &Value::from(1));
    }

    #[test]
    fn options_default_and_build() {
        let opts = ConnectOptions::new("http://127.0.0.1:3001");
        assert_eq!(opts.path, "/socket.io/");
        assert_eq!(opts.ack_timeout, Duration::from_secs(10));
        assert_eq!(opts.connect_timeout, Duration::from_secs(10));
        assert!(opts.answer_pings && opts.auth.is_none() && opts.headers.is_empty());

        let opts = opts
            .path("/io/")
            .auth(serde_json::json!({ "token": "t" }))
            .header("Origin", "https://x.example")
            .local_addr(IpAddr::from([127, 0, 0, 3]))
            .ack_timeout(Duration::from_millis(5))
            .connect_timeout(Duration::from_millis(6))
            .answer_pings(false);
        assert_eq!(opts.path, "/io/");
        assert_eq!(
            opts.headers,
            vec![("Origin".into(), "https://x.example".into())]
        );
        assert_eq!(opts.local_addr, Some(IpAddr::from([127, 0, 0, 3])));
        assert!(!opts.answer_pings);
    }
}
