//! Server settings.

use std::time::Duration;

/// Settings of a [`SocketIo`](crate::SocketIo) server. Start from `Config::default()` and override fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Engine.IO request path, `/socket.io/` by default (with or without the trailing slash matches).
    pub path: String,
    /// How often the server pings each client (sent in the handshake as `pingInterval`).
    pub ping_interval: Duration,
    /// How long the server waits for the pong before closing with `ping timeout`.
    pub ping_timeout: Duration,
    /// How long a session may stay without a connected socket: the Socket.IO `CONNECT` must have been
    /// sent *and* accepted within this time of the Engine.IO session opening (on either transport, across
    /// an upgrade), or the session is closed. Short, because an unauthenticated session costs memory and
    /// proves nothing; a client sends its `CONNECT` as soon as the session is open. A `CONNECT` that
    /// arrived in time is answered however long `Handler::connect` takes (which must be bounded).
    pub connect_timeout: Duration,
    /// How long a polling → WebSocket upgrade may take once the WebSocket is open.
    pub upgrade_timeout: Duration,
    /// The largest WebSocket message and the largest polling `POST` body, in bytes (`maxPayload`).
    /// Bigger WebSocket frames are refused from their header, before any of their payload is buffered.
    pub max_payload: usize,
    /// The bound of each connection's outgoing data, in bytes: queued packets, protocol replies (pongs,
    /// noops, `CONNECT` answers) and what the WebSocket is still writing, each frame counted with 64 bytes
    /// of overhead. A packet that doesn't fit is refused with
    /// [`SendError::Full`](crate::SendError::Full) (one larger than the whole bound still goes into an
    /// empty queue); a protocol reply that doesn't fit closes the connection; a WebSocket stops reading
    /// while the bound is reached (so a client that doesn't read can't answer pings either, and the ping
    /// timeout closes it). Until a `CONNECT` runs, the bound is at most 64 KiB.
    pub max_queued_bytes: usize,
    /// Whether to accept `permessage-deflate` (RFC 7692) when a WebSocket client offers it (browsers and
    /// the Node client always do). It is negotiated without context takeover in either direction, so
    /// a connection keeps no compression state: each message is compressed (or inflated) on its own,
    /// with a compressor kept per thread.
    pub per_message_deflate: bool,
    /// With `permessage-deflate`, messages of at least this many bytes are compressed; smaller ones go
    /// as they are (compressing a short message costs CPU and saves little or nothing).
    pub deflate_threshold: usize,
    /// The most binary attachments one Socket.IO packet may announce.
    pub max_attachments: usize,
    /// The largest total size of one packet's binary attachments, in bytes.
    pub max_attachments_size: usize,
    /// The largest HTTP request head [`serve`](crate::serve) reads itself before answering `431`.
    pub max_request_head: usize,
    /// How long [`serve`](crate::serve) waits for a request head (and hyper for later heads on a keep-alive
    /// connection) before dropping the connection.
    pub request_head_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: "/socket.io/".to_owned(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            upgrade_timeout: Duration::from_secs(10),
            max_payload: 64 * 1024,
            max_queued_bytes: 1024 * 1024,
            per_message_deflate: true,
            deflate_threshold: 1024,
            max_attachments: 16,
            max_attachments_size: 1024 * 1024,
            max_request_head: 16 * 1024,
            request_head_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Whether a request path is the Engine.IO path.
    pub(crate) fn is_engine_path(&self, path: &str) -> bool {
        let own = self.path.trim_end_matches('/');
        path.trim_end_matches('/') == own
    }
}
