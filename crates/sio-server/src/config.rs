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
    /// How long a client may take to send the Socket.IO `CONNECT` after the Engine.IO session opened.
    pub connect_timeout: Duration,
    /// How long a polling → WebSocket upgrade may take once the WebSocket is open.
    pub upgrade_timeout: Duration,
    /// The largest WebSocket message and the largest polling `POST` body, in bytes (`maxPayload`).
    /// Bigger WebSocket frames are refused from their header, before any of their payload is buffered.
    pub max_payload: usize,
    /// The bound of each socket's outgoing queue, in packets. When it is full,
    /// [`Socket::send`](crate::Socket::send) returns [`SendError::Full`](crate::SendError::Full).
    pub max_queued_packets: usize,
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
            connect_timeout: Duration::from_secs(45),
            upgrade_timeout: Duration::from_secs(10),
            max_payload: 64 * 1024,
            max_queued_packets: 1024,
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
