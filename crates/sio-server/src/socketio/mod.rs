//! Socket.IO v5 on top of Engine.IO: namespace `/`, `CONNECT` with auth, events, acknowledgements and binary
//! attachments.

pub(crate) mod msgpack;
pub(crate) mod packet;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::engine::{Connection, Engine};
use crate::handler::{ConnectError, DisconnectReason, Handler, IncomingEvent};
use crate::socket::{Ack, AckReply, Parser, State};

use packet::Packet;

/// An Engine.IO message handed to the Socket.IO layer.
pub(crate) enum Message<'a> {
    Text(&'a str),
    Binary(Bytes),
}

/// The Socket.IO side of a connection.
pub(crate) struct SioState<S, P> {
    /// The application's session, present while the socket is connected.
    session: Option<Arc<S>>,
    /// `Handler::connect` is running.
    connecting: bool,
    /// The connection is gone; a `connect` completing now must be undone.
    closed: bool,
    /// What `Handler::admit` returned for the session, kept for `Handler::connect` and dropped once
    /// connected (or closed).
    pending: Option<Arc<P>>,
    /// A binary packet waiting for its attachments.
    partial: Option<Box<PartialBinary>>,
}

impl<S, P> SioState<S, P> {
    pub(crate) fn new(pending: Arc<P>) -> Self {
        Self {
            session: None,
            connecting: false,
            closed: false,
            pending: Some(pending),
            partial: None,
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.session.is_some()
    }

    /// `Handler::connect` is running: the connect timeout waits for its answer (a `CONNECT` that
    /// arrived in time is answered, `40` or `44`, however long the application takes).
    pub(crate) fn is_connecting(&self) -> bool {
        self.connecting
    }

    /// Neither connected nor connecting: a session whose socket left the namespace.
    pub(crate) fn is_unconnected(&self) -> bool {
        self.session.is_none() && !self.connecting
    }

    /// Marks the connection gone and hands back the session, if connected, for `Handler::disconnect`.
    pub(crate) fn close(&mut self) -> Option<Arc<S>> {
        self.closed = true;
        self.pending = None;
        self.partial = None;
        self.session.take()
    }
}

/// A binary event or acknowledgement whose attachments are still arriving.
pub(crate) struct PartialBinary {
    kind: PartialKind,
    expected: usize,
    attachments: Vec<Bytes>,
    size: usize,
}

enum PartialKind {
    Event {
        name: String,
        args: Vec<Box<RawValue>>,
        id: Option<u64>,
    },
    Ack {
        id: u64,
        args: Vec<Box<RawValue>>,
    },
}

impl<H: Handler> Engine<H> {
    /// Handles one Engine.IO message of a session. `Err` means the connection must close for that reason.
    ///
    /// The client's parser shows in its first Socket.IO packet: text for JSON, binary for MessagePack
    /// (a JSON client sends binary messages only as the attachments that follow a `5…`/`6…` packet).
    pub(crate) fn on_message(
        self: &Arc<Self>,
        conn: &Arc<Connection<H>>,
        message: Message<'_>,
    ) -> Result<(), DisconnectReason> {
        let core = &conn.socket.0;
        match message {
            Message::Binary(data) => {
                match core.parser() {
                    Parser::Json => return self.on_attachment(conn, data),
                    Parser::Unknown => core.set_parser(Parser::MsgPack),
                    Parser::MsgPack => {}
                }
                let limits = msgpack::Limits {
                    max_binaries: self.config.max_attachments,
                    max_binary_size: self.config.max_attachments_size,
                };
                let decoded = msgpack::decode(&data, limits).map_err(|e| {
                    tracing::debug!(sid = %conn.sid, error = %e, "closing on a malformed MessagePack packet");
                    DisconnectReason::ParseError
                })?;
                self.on_packet(conn, decoded.packet, decoded.binary)
            }
            Message::Text(text) => {
                match core.parser() {
                    Parser::MsgPack => {
                        tracing::debug!(sid = %conn.sid, "a text packet from a MessagePack client");
                        return Err(DisconnectReason::ParseError);
                    }
                    Parser::Unknown => core.set_parser(Parser::Json),
                    Parser::Json => {}
                }
                if conn.sio().partial.is_some() {
                    tracing::debug!(sid = %conn.sid, "text packet while binary attachments were expected");
                    return Err(DisconnectReason::ParseError);
                }
                let packet = Packet::parse(text).map_err(|e| {
                    tracing::debug!(sid = %conn.sid, error = %e, "closing on a malformed packet");
                    DisconnectReason::ParseError
                })?;
                self.on_packet(conn, packet, Vec::new())
            }
        }
    }

    /// Handles a decoded packet; `binary` is a MessagePack packet's binary data (a JSON packet's
    /// attachments follow it in messages of their own).
    fn on_packet(
        self: &Arc<Self>,
        conn: &Arc<Connection<H>>,
        packet: Packet<'_>,
        binary: Vec<Bytes>,
    ) -> Result<(), DisconnectReason> {
        match packet {
            Packet::Connect { nsp: "/", auth } => self.start_connect(conn, auth)?,
            Packet::Connect { nsp, .. } => {
                // Refused once, and the connection closed after the answer: a client has no reason to
                // ask again, and answering every ask would let it queue answers without end.
                tracing::debug!(sid = %conn.sid, "CONNECT to an unknown namespace");
                let refusal = packet::connect_error(nsp, &ConnectError::new("Invalid namespace"));
                self.reply(conn, conn.socket.0.encoded(refusal));
                return Err(DisconnectReason::ParseError);
            }
            Packet::Disconnect { nsp: "/" } => self.client_disconnect(conn),
            Packet::Event {
                nsp: "/",
                name,
                args,
                id,
                attachments: 0,
            } => self.deliver(conn, name, args, binary, id),
            Packet::Event {
                nsp: "/",
                name,
                args,
                id,
                attachments,
            } => {
                self.expect_attachments(conn, PartialKind::Event { name, args, id }, attachments)?
            }
            Packet::Ack {
                nsp: "/",
                id,
                args,
                attachments: 0,
            } => conn.socket.0.resolve_ack(id, AckReply { args, binary }),
            Packet::Ack {
                nsp: "/",
                id,
                args,
                attachments,
            } => self.expect_attachments(conn, PartialKind::Ack { id, args }, attachments)?,
            // Packets for a namespace the client is not connected to are ignored, as Socket.IO servers do.
            Packet::Disconnect { .. } | Packet::Event { .. } | Packet::Ack { .. } => {}
        }
        Ok(())
    }

    /// The client left `/` (`41`). As the reference server does, only the socket ends: the Engine.IO
    /// session stays open (the official client closes it itself right after). A session without a
    /// connected socket is bounded by the connect timeout again, which the transports re-arm at their
    /// next heartbeat. A `DISCONNECT` while the socket isn't connected is ignored, as the reference
    /// server ignores packets for a namespace the client isn't in.
    fn client_disconnect(&self, conn: &Connection<H>) {
        let session = conn.sio().session.take();
        if let Some(session) = session {
            conn.socket.0.disconnected();
            tracing::debug!(sid = %conn.sid, "the client left the namespace");
            self.handler
                .disconnect(session, &conn.socket, DisconnectReason::ClientDisconnect);
        }
    }

    fn expect_attachments(
        &self,
        conn: &Connection<H>,
        kind: PartialKind,
        expected: usize,
    ) -> Result<(), DisconnectReason> {
        if expected > self.config.max_attachments {
            tracing::debug!(sid = %conn.sid, expected, "too many binary attachments");
            return Err(DisconnectReason::ParseError);
        }
        conn.sio().partial = Some(Box::new(PartialBinary {
            kind,
            expected,
            attachments: Vec::with_capacity(expected),
            size: 0,
        }));
        Ok(())
    }

    fn on_attachment(
        &self,
        conn: &Arc<Connection<H>>,
        data: Bytes,
    ) -> Result<(), DisconnectReason> {
        let complete = {
            let mut sio = conn.sio();
            let Some(partial) = sio.partial.as_mut() else {
                tracing::debug!(sid = %conn.sid, "binary message without a binary packet");
                return Err(DisconnectReason::ParseError);
            };
            partial.size += data.len();
            if partial.size > self.config.max_attachments_size {
                tracing::debug!(sid = %conn.sid, size = partial.size, "binary attachments too large");
                return Err(DisconnectReason::ParseError);
            }
            partial.attachments.push(data);
            if partial.attachments.len() < partial.expected {
                return Ok(());
            }
            sio.partial.take().expect("checked above")
        };
        match complete.kind {
            PartialKind::Event { name, args, id } => {
                self.deliver(conn, name, args, complete.attachments, id)
            }
            PartialKind::Ack { id, args } => conn.socket.0.resolve_ack(
                id,
                AckReply {
                    args,
                    binary: complete.attachments,
                },
            ),
        }
        Ok(())
    }

    /// Calls the handler for an event, synchronously, if the socket is connected.
    fn deliver(
        &self,
        conn: &Connection<H>,
        name: String,
        args: Vec<Box<RawValue>>,
        binary: Vec<Bytes>,
        id: Option<u64>,
    ) {
        let session = conn.sio().session.clone();
        let Some(session) = session else {
            tracing::trace!(sid = %conn.sid, event = %name, "event before the socket connected: dropped");
            return;
        };
        let ack = id.map(|id| Ack::new(conn.socket.clone(), id));
        self.handler.event(
            &session,
            &conn.socket,
            IncomingEvent {
                name,
                args,
                binary,
                ack,
            },
        );
    }

    /// Runs `Handler::connect` on its own task, so the connection keeps answering pings meanwhile.
    fn start_connect(
        self: &Arc<Self>,
        conn: &Arc<Connection<H>>,
        auth: Option<Box<RawValue>>,
    ) -> Result<(), DisconnectReason> {
        let pending = {
            let mut sio = conn.sio();
            if sio.connecting || sio.session.is_some() || sio.closed {
                tracing::debug!(sid = %conn.sid, "duplicate CONNECT ignored");
                return Ok(());
            }
            let Some(pending) = sio.pending.clone() else {
                drop(sio);
                // The socket connected once and left (`41`): its admission was spent on that
                // connect. Unlike the reference server, a session connects one socket only; the
                // client opens a new session to connect again (as the official client does).
                tracing::debug!(sid = %conn.sid, "CONNECT again after a DISCONNECT");
                let refusal = packet::connect_error(
                    "/",
                    &ConnectError::new("Session ended: reconnect with a new session"),
                );
                self.reply(conn, conn.socket.0.encoded(refusal));
                return Err(DisconnectReason::ParseError);
            };
            sio.connecting = true;
            pending
        };
        {
            let mut outbox = conn.socket.0.lock();
            if outbox.state != State::Open {
                drop(outbox);
                conn.sio().connecting = false;
                return Ok(());
            }
            outbox.state = State::Connecting;
        }
        let engine = self.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            let result = engine
                .handler
                .connect(conn.socket.clone(), auth.as_deref(), &pending)
                .await;
            drop(pending);
            engine.complete_connect(&conn, result);
        });
        Ok(())
    }

    fn complete_connect(&self, conn: &Connection<H>, result: Result<H::Session, ConnectError>) {
        match result {
            Ok(session) => {
                let session = Arc::new(session);
                // The answer, then whatever the application queued during `connect`.
                let answer = conn.socket.0.encoded(packet::connect_ok(conn.socket.id()));
                conn.socket.0.connected(answer);
                let too_late = {
                    let mut sio = conn.sio();
                    sio.connecting = false;
                    if sio.closed {
                        true
                    } else {
                        sio.session = Some(session.clone());
                        sio.pending = None;
                        false
                    }
                };
                if too_late {
                    self.handler.disconnect(
                        session,
                        &conn.socket,
                        DisconnectReason::TransportClose,
                    );
                } else {
                    tracing::debug!(sid = %conn.sid, socket = %conn.socket.id(), "socket connected");
                }
            }
            Err(err) => {
                tracing::debug!(sid = %conn.sid, message = %err.message, "connect refused");
                // What the application queued during `connect` is dropped. A client that keeps asking
                // and doesn't read the refusals has its session ended at the bound.
                let answer = conn.socket.0.encoded(packet::connect_error("/", &err));
                let queued = conn.socket.0.refused(answer);
                conn.sio().connecting = false;
                if !queued {
                    tracing::debug!(sid = %conn.sid, "refusals pile up unread: closing the session");
                    self.finish(conn, DisconnectReason::TransportError);
                }
            }
        }
    }
}
