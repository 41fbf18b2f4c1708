//! A lean Socket.IO v5 / Engine.IO v4 **server**.
//!
//! Browsers connect with the standard `socket.io-client` 4.x over WebSocket or HTTP long-polling (and upgrade
//! from one to the other). The application plugs in a [`Handler`]:
//!
//! * [`Handler::check_request`] screens the HTTP request that would open a session, and CORS preflights
//!   (origin);
//! * [`Handler::admit`] admits a new session (per-address limits, caps on sessions not yet connected) and
//!   returns the small value the session keeps until it connects ([`Handler::Pending`]);
//! * [`Handler::connect`] accepts or refuses the Socket.IO `CONNECT`, and a refusal carries a `data` field
//!   (`44{"message":…,"data":…}`);
//! * [`Handler::event`] is called synchronously, in arrival order, for every event of a connected socket;
//! * [`Handler::disconnect`] is called once when a connected socket goes away.
//!
//! Outgoing packets are encoded once ([`Packet`]) and the same bytes can be queued on any number of sockets.
//! Everything queued for a connection, protocol replies included, counts against one bound in bytes
//! ([`Config::max_queued_bytes`]): a packet that doesn't fit is reported to the caller instead of growing
//! the queue, a reply that doesn't fit ends the session, and a WebSocket stops reading from a client that
//! doesn't read what it is sent (the ping timeout then closes it).
//!
//! [`serve`] runs the whole thing on a `TcpListener`: WebSocket handshakes for the Engine.IO path are answered
//! on the raw `TcpStream` (no HTTP connection object stays alive behind an idle WebSocket), and every other
//! request goes to hyper, with the Engine.IO path handled here and the rest passed to the application's
//! service. [`SocketIo::service`] exposes the engine as a tower `Service` for mounting in another server.
//!
//! Only the main namespace `/` is served; a `CONNECT` to any other namespace is refused with
//! `Invalid namespace`, once, and the connection is closed.

mod config;
mod engine;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod handler;
mod http;
mod registry;
mod serve;
mod sid;
mod socket;
mod socketio;
mod ws;

pub use config::Config;
pub use handler::{
    ConnectError, DisconnectReason, Handler, IncomingEvent, Refusal, RequestInfo, ResponseHeaders,
};
pub use http::{EngineBody, EngineService, RemoteAddr};
pub use serve::serve;
pub use socket::{Ack, AckError, AckReply, Packet, SendError, Socket, Transport};

use std::sync::Arc;

use engine::Engine;

/// The server: configuration, handler and the table of live Engine.IO sessions. Cheap to clone.
pub struct SocketIo<H: Handler> {
    engine: Arc<Engine<H>>,
}

impl<H: Handler> Clone for SocketIo<H> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<H: Handler> SocketIo<H> {
    /// Builds a server from its configuration and the application's handler.
    pub fn new(config: Config, handler: H) -> Self {
        Self {
            engine: Engine::new(config, handler),
        }
    }

    /// The application's handler.
    pub fn handler(&self) -> &H {
        &self.engine.handler
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.engine.config
    }

    /// The number of live Engine.IO sessions (connected or not yet connected sockets, both transports).
    pub fn session_count(&self) -> usize {
        self.engine.session_count()
    }

    /// The engine as a tower `Service` answering requests on [`Config::path`], for mounting in an existing
    /// HTTP server (for example with axum's `Router::route_service`). WebSocket upgrades need the server to
    /// support HTTP upgrades (axum's `serve` does). Insert a [`RemoteAddr`] extension in each request to give
    /// handlers the peer's address.
    pub fn service(&self) -> EngineService<H> {
        EngineService::new(self.engine.clone())
    }

    /// Refuses new sessions (`503`) from now on and closes every session without a Socket.IO `DISCONNECT`,
    /// so that clients reconnect (to another node, during a rolling restart). Each connected socket's
    /// [`Handler::disconnect`] sees [`DisconnectReason::ServerShutdown`]. [`serve`] calls this when its
    /// shutdown signal fires.
    pub fn shutdown(&self) {
        self.engine.shutdown();
    }

    /// Waits until every WebSocket task has ended (after [`SocketIo::shutdown`], once their close frames
    /// are out).
    pub async fn wait_closed(&self) {
        self.engine.tasks.wait_idle().await;
    }
}
