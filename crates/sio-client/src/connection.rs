//! The per-connection task.
//!
//! After the handshake, one task owns the WebSocket: it reads frames, answers heartbeats,
//! resolves acks, delivers events to the inbox and writes what the client queued in the
//! outbox. Owning both directions in a single task keeps a connection to one task and no
//! locks around the socket; the task reads and writes concurrently (see `drive`), so a slow
//! write never delays reading, and a pong never waits behind a blocked emit.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{self, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::packet::{self, Decoded, EnginePacket, Packet};
use crate::shared::Shared;
use crate::{Event, Incoming};

/// The WebSocket this client speaks over.
pub(crate) type WsStream = WebSocketStream<TcpStream>;

/// How long a closing WebSocket may wait for the server's close frame before the socket is
/// simply dropped.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the task needs to know besides the socket.
pub(crate) struct Settings {
    /// Whether to answer the server's pings (false simulates a stalled client).
    pub answer_pings: bool,
    /// How long the server may stay silent before the connection counts as dead:
    /// pingInterval + pingTimeout, as the Engine.IO protocol prescribes.
    pub silence_limit: Duration,
}

/// How the connection ended.
enum Ending {
    /// The transport is gone (closed, broken or silent); nothing more can be sent.
    Dead(String),
    /// The server ended the session or broke the protocol, but the socket still works, so the
    /// WebSocket is closed properly.
    Goodbye(String),
}

struct Connection {
    sink: SplitSink<WsStream, Message>,
    stream: SplitStream<WsStream>,
    shared: Arc<Shared>,
    settings: Settings,
    /// When the last frame arrived; the heartbeat watchdog measures silence from here.
    last_seen: Instant,
    /// When the client asked to close the connection, if it did.
    closing_since: Option<Instant>,
}

/// Runs the connection until it ends, then records why in `shared`.
pub(crate) async fn run(ws: WsStream, shared: Arc<Shared>, settings: Settings) {
    let (sink, stream) = ws.split();
    let mut connection = Connection {
        sink,
        stream,
        shared,
        settings,
        last_seen: Instant::now(),
        closing_since: None,
    };
    match connection.drive().await {
        Ending::Dead(reason) => connection.shared.finish(reason),
        Ending::Goodbye(reason) => {
            // Tell the client first: it should not wait for the closing handshake.
            connection.shared.finish(reason);
            connection.say_goodbye().await;
        }
    }
}

impl Connection {
    async fn drive(&mut self) -> Ending {
        // One timer for the whole connection. Resetting it on every frame would re-register it
        // each time; instead it fires at the earliest possible deadline and, if frames have
        // arrived since, is pushed to the deadline they imply.
        let watchdog = time::sleep_until(self.deadline());
        tokio::pin!(watchdog);
        // Whether the outbox is being written out (or may have something to write).
        let mut writing = false;

        loop {
            tokio::select! {
                frame = self.stream.next() => {
                    let now = Instant::now();
                    self.last_seen = now;
                    let frame = match frame {
                        Some(Ok(frame)) => frame,
                        Some(Err(error)) => return Ending::Dead(transport_error(&error)),
                        None => return Ending::Dead("transport close".into()),
                    };
                    match self.on_frame(frame, now) {
                        Ok(queued_write) => writing |= queued_write,
                        Err(ending) => return ending,
                    }
                }
                // Always armed, even mid-write: a close requested while a write is stuck must
                // still start the close grace, or the task would linger as long as the server
                // keeps the socket open without reading.
                () = self.shared.outbox_ready() => {
                    writing = true;
                    if self.closing_since.is_none() && self.shared.is_closed() {
                        // The client closed the connection: its close frame is queued, and
                        // the server gets a short grace to answer it.
                        self.closing_since = Some(Instant::now());
                        watchdog.as_mut().reset(self.deadline());
                    }
                }
                written = poll_fn(|cx| poll_write(&mut self.sink, &self.shared, cx)), if writing => {
                    if let Err(error) = written {
                        return Ending::Dead(transport_error(&error));
                    }
                    writing = false;
                }
                () = &mut watchdog => {
                    let deadline = self.deadline();
                    if deadline <= Instant::now() {
                        let reason = match self.closing_since {
                            Some(_) => "io client disconnect",
                            None => "ping timeout",
                        };
                        return Ending::Dead(reason.into());
                    }
                    watchdog.as_mut().reset(deadline);
                }
            }
        }
    }

    /// When the connection counts as dead unless something arrives first.
    fn deadline(&self) -> Instant {
        let silent = self.last_seen + self.settings.silence_limit;
        match self.closing_since {
            Some(since) => silent.min(since + CLOSE_GRACE),
            None => silent,
        }
    }

    /// Handles one frame; returns whether it queued an answer.
    fn on_frame(&mut self, frame: Message, now: Instant) -> Result<bool, Ending> {
        match frame {
            Message::Text(text) => self.on_engine_packet(text.as_str(), now),
            Message::Binary(_) => Err(Ending::Goodbye(
                "parse error: binary frames (Socket.IO attachments) are not supported".into(),
            )),
            // tungstenite has already queued the answer to a close frame.
            Message::Close(_) => Err(Ending::Dead("transport close".into())),
            // WebSocket-level pings are answered by tungstenite itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(false),
        }
    }

    fn on_engine_packet(&mut self, text: &str, now: Instant) -> Result<bool, Ending> {
        let packet = packet::decode_engine(text).map_err(parse_error)?;
        match packet {
            EnginePacket::Ping(payload) => Ok(self.settings.answer_pings
                && self
                    .shared
                    .push_urgent(Message::text(packet::encode_pong(payload)))),
            EnginePacket::Message(payload) => self.on_socketio_packet(payload, now).map(|()| false),
            EnginePacket::Close => Err(Ending::Goodbye("transport close".into())),
            EnginePacket::Open(_) => Err(Ending::Goodbye(
                "protocol error: a second Engine.IO OPEN".into(),
            )),
            EnginePacket::Pong(_) | EnginePacket::Upgrade | EnginePacket::Noop => Ok(false),
        }
    }

    fn on_socketio_packet(&mut self, payload: &str, now: Instant) -> Result<(), Ending> {
        let Decoded { namespace, packet } =
            packet::decode_socketio(payload).map_err(parse_error)?;
        if namespace != "/" {
            // Only "/" was joined; packets for other namespaces are none of this client's business.
            return Ok(());
        }
        match packet {
            // When the server asks for an ack, not answering is allowed: its ack times out.
            Packet::Event { name, args, .. } => self.shared.deliver(Incoming::Event(Event {
                name,
                args,
                received_at: now.into_std(),
            })),
            Packet::Ack { id, args } => self.shared.resolve_ack(id, args),
            Packet::Disconnect => return Err(Ending::Goodbye("io server disconnect".into())),
            Packet::Connect(_) => {
                return Err(Ending::Goodbye(
                    "protocol error: CONNECT after the connection was established".into(),
                ));
            }
            Packet::ConnectError { message, .. } => {
                return Err(Ending::Goodbye(format!(
                    "protocol error: CONNECT_ERROR after the connection was established: {message}"
                )));
            }
        }
        Ok(())
    }

    /// Closes the WebSocket properly: sends a close frame and waits, briefly, for the answer.
    async fn say_goodbye(mut self) {
        if self.closing_since.is_some() {
            // The client's own close frame is already out (or queued and moot).
            return;
        }
        let _ = time::timeout(CLOSE_GRACE, async {
            if self.sink.send(Message::Close(None)).await.is_ok() {
                // Reading on lets tungstenite see the server's close frame, completing the
                // closing handshake before the socket is dropped.
                while let Some(Ok(_)) = self.stream.next().await {}
            }
        })
        .await;
    }
}

/// Writes out the outbox and flushes it; done once the outbox is empty and all is flushed.
///
/// A frame leaves the outbox only once the sink is ready to take it, so when `select!` drops
/// this future midway (another branch won), nothing is lost: what was not taken is still in
/// the outbox, and what was taken is in the sink, sent by the next flush.
fn poll_write(
    sink: &mut SplitSink<WsStream, Message>,
    shared: &Shared,
    cx: &mut Context<'_>,
) -> Poll<Result<(), tungstenite::Error>> {
    loop {
        loop {
            ready!(sink.poll_ready_unpin(cx))?;
            let Some(frame) = shared.pop_outgoing() else {
                break;
            };
            sink.start_send_unpin(frame)?;
        }
        ready!(sink.poll_flush_unpin(cx))?;
        // Frames queued during the flush would otherwise wait for the next wake-up, which
        // the `select!` loop may already have spent while this write was in progress.
        if !shared.has_outgoing() {
            return Poll::Ready(Ok(()));
        }
    }
}

fn transport_error(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            "transport close".into()
        }
        other => format!("transport error: {other}"),
    }
}

fn parse_error(error: packet::DecodeError) -> Ending {
    Ending::Goodbye(format!("parse error: {error}"))
}
