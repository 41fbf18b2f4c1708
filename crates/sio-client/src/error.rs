//! The errors of connecting and of using a connection.

use serde_json::Value;
use tokio_tungstenite::tungstenite;

use crate::Event;

/// Why [`connect`](crate::connect) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server answered the Socket.IO CONNECT with `44{"message": …, "data": …}`.
    #[error("the server refused the connection: {message}")]
    Refused {
        /// The error's `message`.
        message: String,
        /// The error's `data`, if it had any.
        data: Option<Value>,
    },
    /// The WebSocket upgrade was answered with an HTTP status other than 101. `body` holds as
    /// much of the response body as arrived with the headers (a short error text does).
    #[error("the WebSocket upgrade was refused with HTTP {status}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The response body, decoded lossily as UTF-8.
        body: String,
    },
    /// The TCP connection could not be made or broke.
    #[error("I/O error while connecting: {0}")]
    Io(#[from] std::io::Error),
    /// The server's answers did not follow the protocol, or the options were unusable.
    #[error("protocol error while connecting: {0}")]
    Protocol(String),
    /// The whole connect sequence took longer than `connect_timeout`.
    #[error("timed out while connecting")]
    Timeout,
}

impl From<tungstenite::Error> for ConnectError {
    fn from(error: tungstenite::Error) -> Self {
        match error {
            tungstenite::Error::Http(response) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_deref()
                    .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                    .unwrap_or_default();
                ConnectError::Http { status, body }
            }
            tungstenite::Error::Io(error) => ConnectError::Io(error),
            other => ConnectError::Protocol(other.to_string()),
        }
    }
}

/// Why an operation on a connected [`Client`](crate::Client) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No ack arrived within `ack_timeout`.
    #[error("no ack arrived in time")]
    AckTimeout,
    /// The connection is closed (or closed while waiting).
    #[error("the connection is closed")]
    Closed,
    /// An I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something this client does not accept.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// `expect_event` saw no matching event in time.
    #[error("timed out waiting for an event")]
    Timeout,
    /// `expect_no_event` saw the event it was told should not come.
    #[error("unexpected event {:?}", .0.name)]
    UnexpectedEvent(Event),
}
