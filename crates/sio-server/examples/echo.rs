//! A Socket.IO echo server: every event is sent back to its sender with the same arguments (and binary
//! attachments), and acknowledged with them when the client asks for an ack.
//!
//! ```sh
//! cargo run --release -p confab-sio --example echo            # listens on 127.0.0.1:3001
//! ADDR=0.0.0.0:3001 PING_INTERVAL_MS=5000 cargo run --release -p confab-sio --example echo
//! cargo run --release -p confab-sio --example echo --features mimalloc   # with the mimalloc allocator
//! ```

use std::sync::Arc;
use std::time::Duration;

use confab_sio::{
    ConnectError, DisconnectReason, Handler, IncomingEvent, Packet, Refusal, RequestInfo,
    ResponseHeaders, Socket, SocketIo,
};
use serde_json::value::RawValue;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Echo;

impl Handler for Echo {
    type Session = ();
    type Pending = ();

    fn check_request(&self, _req: &RequestInfo<'_>) -> Result<ResponseHeaders, Refusal> {
        Ok(ResponseHeaders::new())
    }

    fn admit(&self, _req: &RequestInfo<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    async fn connect(
        &self,
        _socket: Socket,
        _auth: Option<&RawValue>,
        _pending: &(),
    ) -> Result<(), ConnectError> {
        Ok(())
    }

    fn event(&self, _session: &Arc<()>, socket: &Socket, event: IncomingEvent) {
        let packet = Packet::binary_event(&event.name, &event.args, event.binary.clone());
        if let Err(e) = socket.send(&packet) {
            tracing::debug!(error = %e, "echo not sent");
        }
        if let Some(ack) = event.ack {
            let _ = ack.send_binary(&event.args, event.binary);
        }
    }

    fn disconnect(&self, _session: Arc<()>, socket: &Socket, reason: DisconnectReason) {
        tracing::debug!(socket = socket.id(), %reason, "disconnected");
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let mut config = confab_sio::Config::default();
    if let Some(ms) = std::env::var("PING_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.ping_interval = Duration::from_millis(ms);
    }
    let sio = SocketIo::new(config, Echo);
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, pid = std::process::id(), "echo server listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    confab_sio::serve(listener, sio, app, shutdown).await
}
