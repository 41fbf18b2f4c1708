//! A broadcast server for measuring fan-out: every connected socket is kept in a table, and the event
//! `broadcast` (with any payload) is encoded once and queued on every socket. The ack reports how many
//! sockets got it and how long queueing took.
//!
//! ```sh
//! cargo run --release -p confab-sio --example fanout        # listens on 127.0.0.1:3001
//! target/release/examples/ws_load --pid <pid> --connections 10000 --broadcasts 100
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use confab_sio::{
    ConnectError, DisconnectReason, Handler, IncomingEvent, Packet, Refusal, RequestInfo,
    ResponseHeaders, SendError, Socket, SocketIo,
};
use serde_json::value::RawValue;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Default)]
struct Fanout {
    sockets: Mutex<HashMap<String, Socket>>,
}

impl Handler for Fanout {
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
        socket: Socket,
        _auth: Option<&RawValue>,
        _pending: &(),
    ) -> Result<(), ConnectError> {
        self.sockets
            .lock()
            .unwrap()
            .insert(socket.id().to_owned(), socket);
        Ok(())
    }

    fn event(&self, _session: &Arc<()>, _socket: &Socket, event: IncomingEvent) {
        if event.name != "broadcast" {
            return;
        }
        let started = Instant::now();
        let packet = Packet::event_args("broadcast", &event.args);
        let sockets: Vec<Socket> = self.sockets.lock().unwrap().values().cloned().collect();
        let (mut sent, mut full, mut closed) = (0, 0, 0);
        for socket in &sockets {
            match socket.send(&packet) {
                Ok(()) => sent += 1,
                Err(SendError::Full) => full += 1,
                Err(_) => closed += 1,
            }
        }
        let micros = started.elapsed().as_micros() as u64;
        if let Some(ack) = event.ack {
            let _ = ack.send(&serde_json::json!({"sent": sent, "full": full, "closed": closed, "micros": micros}));
        }
    }

    fn disconnect(&self, _session: Arc<()>, socket: &Socket, _reason: DisconnectReason) {
        self.sockets.lock().unwrap().remove(socket.id());
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
    let sio = SocketIo::new(confab_sio::Config::default(), Fanout::default());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, pid = std::process::id(), "fan-out server listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    confab_sio::serve(listener, sio, axum::Router::new(), shutdown).await
}
