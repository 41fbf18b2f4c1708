//! What the application implements: the [`Handler`] trait and the types it receives and returns.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde_json::value::RawValue;

use crate::socket::{Ack, Socket};

/// Extra headers to add to the responses of an accepted request (for example CORS headers).
pub type ResponseHeaders = HeaderMap;

/// The application's side of the server.
///
/// All methods are called on the tasks that serve the connections, so none of them may block.
pub trait Handler: Send + Sync + 'static {
    /// Per-socket state the application keeps for a connected socket.
    type Session: Send + Sync + 'static;

    /// What the application keeps about a session until its socket connects (for example the client's
    /// address, and a guard that counts sessions not yet authenticated): made by [`Handler::admit`],
    /// handed to [`Handler::connect`], and dropped as soon as the socket connects or the session ends.
    /// The request that opened the session is not kept: keep this small.
    type Pending: Send + Sync + 'static;

    /// Screens an HTTP request that would open a new Engine.IO session (a polling handshake or a direct
    /// WebSocket), and every CORS preflight (`OPTIONS`) on the Engine.IO path.
    ///
    /// `Ok(headers)` accepts it; the headers are added to the response, and for a polling session to every
    /// later response of that session too (this is where `Access-Control-Allow-Origin` goes).
    /// `Err(refusal)` answers with the refusal's status, headers and JSON body and opens nothing.
    #[allow(clippy::result_large_err)] // refusals are rare; boxing would only burden implementors
    fn check_request(&self, req: &RequestInfo<'_>) -> Result<ResponseHeaders, Refusal>;

    /// Admits a new Engine.IO session, once [`Handler::check_request`] accepted its request (not called
    /// for preflights, nor for a WebSocket upgrading an existing session). This is where sessions are
    /// limited: per client address, and in total until they connect.
    ///
    /// `Ok(pending)` opens the session, which keeps `pending` until its socket connects;
    /// `Err(refusal)` answers with the refusal (`429` with `Retry-After`, say) and opens nothing.
    #[allow(clippy::result_large_err)] // as above
    fn admit(&self, req: &RequestInfo<'_>) -> Result<Self::Pending, Refusal>;

    /// A client sent `CONNECT` for `/` with this auth payload (a JSON object, if any). `pending` is what
    /// [`Handler::admit`] returned for its session (a refused `CONNECT` may be followed by another, so it
    /// is lent, not given).
    ///
    /// `Ok(session)` connects the socket and the server answers `40{"sid":…}`; packets the application
    /// sends to `socket` while this future runs are delivered after that answer. `Err(e)` answers
    /// `44{"message":…,"data":…}` and the socket stays unconnected. Events that arrive while this runs are
    /// dropped. If the transport closes before this completes with `Ok`, [`Handler::disconnect`] is called
    /// right after, so that whatever `connect` registered is released.
    fn connect(
        &self,
        socket: Socket,
        auth: Option<&RawValue>,
        pending: &Self::Pending,
    ) -> impl Future<Output = Result<Self::Session, ConnectError>> + Send;

    /// Called synchronously, in arrival order, on the connection's task, for each event of a connected
    /// socket. It must not block; it may spawn or enqueue.
    fn event(&self, session: &Arc<Self::Session>, socket: &Socket, event: IncomingEvent);

    /// Called once when a connected socket goes away.
    fn disconnect(&self, session: Arc<Self::Session>, socket: &Socket, reason: DisconnectReason);
}

/// The HTTP request that would open an Engine.IO session (or a CORS preflight), lent to the handler for
/// the call: nothing of it outlives the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The request method (`GET`, or `OPTIONS` for a preflight).
    pub method: &'a Method,
    /// The request target, path and query.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The peer's address (the TCP peer; a reverse proxy's forwarding headers are in `headers`).
    pub remote_addr: SocketAddr,
}

/// An HTTP refusal from [`Handler::check_request`]: a status, a JSON body and extra headers.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The response status, such as `403 Forbidden` or `429 Too Many Requests`.
    pub status: StatusCode,
    /// The JSON body, sent with `content-type: application/json`.
    pub body: Bytes,
    /// Extra response headers (for example `retry-after`).
    pub headers: HeaderMap,
}

impl Refusal {
    /// A refusal whose body is `body` serialised as JSON.
    pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
        Self {
            status,
            body: Bytes::from(body),
            headers: HeaderMap::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: http::header::HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// A refused Socket.IO `CONNECT`, sent to the client as `44{"message":…,"data":…}`; the client's
/// `connect_error` handler gets an `Error` whose `message` and `data` are these.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// The error message (`err.message` on the client).
    pub message: String,
    /// Optional details (`err.data` on the client); left out of the packet when `None`.
    pub data: Option<serde_json::Value>,
}

impl ConnectError {
    /// A refusal with a message and no data.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    /// Adds the `data` field.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// An event from a connected socket.
#[derive(Debug)]
pub struct IncomingEvent {
    /// The event name (the first element of the packet's array).
    pub name: String,
    /// The event's arguments after the name, as raw JSON. In a binary event, attachments appear as
    /// `{"_placeholder":true,"num":N}` objects whose `N` indexes [`IncomingEvent::binary`].
    pub args: Vec<Box<RawValue>>,
    /// The binary attachments of a binary event, in order; empty otherwise.
    pub binary: Vec<Bytes>,
    /// Present when the client asked for an acknowledgement.
    pub ack: Option<Ack>,
}

/// Why a connected socket went away, with the names Socket.IO servers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent `DISCONNECT` (`socket.disconnect()` on the client).
    ClientDisconnect,
    /// The application called [`Socket::disconnect`](crate::Socket::disconnect).
    ServerDisconnect,
    /// The client closed the connection (WebSocket closed, Engine.IO close packet, TCP end).
    TransportClose,
    /// The transport failed: an I/O error, a WebSocket protocol violation, an oversized message, an
    /// overlapping polling request, or a protocol reply (a pong, a `CONNECT` refusal) that didn't fit in
    /// the outgoing queue because the client doesn't read.
    TransportError,
    /// The client did not answer a ping within the ping timeout.
    PingTimeout,
    /// The client sent a malformed Engine.IO or Socket.IO packet, or a `CONNECT` to a namespace that
    /// doesn't exist.
    ParseError,
    /// The server is shutting down ([`SocketIo::shutdown`](crate::SocketIo::shutdown)).
    ServerShutdown,
}

impl DisconnectReason {
    /// The reason as Socket.IO names it (`"transport close"`, `"ping timeout"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientDisconnect => "client namespace disconnect",
            Self::ServerDisconnect => "server namespace disconnect",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ServerShutdown => "server shutting down",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
