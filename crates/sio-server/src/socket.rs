//! The application's handle on a socket, and the per-socket outgoing queue behind it.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::engine::packet::Frame;
use crate::handler::DisconnectReason;
use crate::sid::Sid;
use crate::socketio::msgpack;
use crate::socketio::packet as sio;

/// Why a packet could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The packet doesn't fit in the socket's outgoing queue, which is bounded in bytes
    /// ([`Config::max_queued_bytes`](crate::Config::max_queued_bytes)): the client reads too slowly. The
    /// caller decides (for example, disconnect it).
    #[error("the socket's outgoing queue is full")]
    Full,
    /// The socket is not connected (any more).
    #[error("the socket is closed")]
    Closed,
    /// The payload could not be serialised to JSON.
    #[error("the payload could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The transport a socket currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// WebSocket (directly, or after an upgrade from polling).
    WebSocket,
}

/// A pre-encoded packet: encode once, then [`Socket::send`] the same bytes to any number of sockets.
///
/// It holds one Engine.IO text frame such as `42["message:new",{…}]` (the JSON parser's encoding), plus
/// the binary attachments of a binary event. Sockets whose client uses the MessagePack parser get the
/// packet transcoded to MessagePack, once per `Packet` (the first such socket transcodes it, the others
/// share the result), so an event sent to many sockets is encoded once per encoding. Cloning it is
/// cheap (reference-counted bytes).
#[derive(Clone)]
pub struct Packet {
    text: Bytes,
    attachments: Vec<Bytes>,
    /// The MessagePack encoding, made the first time a MessagePack socket needs it (`None`: the text
    /// could not be transcoded, which only a malformed [`Packet::from_encoded`] frame can cause).
    msgpack: OnceLock<Option<Bytes>>,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.attachments == other.attachments
    }
}

impl Eq for Packet {}

impl Packet {
    /// The event `name` with one argument, `data`: `42["name",data]`.
    pub fn event<T: Serialize + ?Sized>(name: &str, data: &T) -> Result<Packet, serde_json::Error> {
        Ok(Packet {
            text: sio::event(name, data, None, 0)?,
            attachments: Vec::new(),
            msgpack: OnceLock::new(),
        })
    }

    /// The event `name` with one argument given as raw JSON.
    pub fn event_raw(name: &str, data: &RawValue) -> Packet {
        Packet {
            text: sio::event_raw(name, &[data], None, 0),
            attachments: Vec::new(),
            msgpack: OnceLock::new(),
        }
    }

    /// The event `name` with any number of raw JSON arguments (none is fine).
    pub fn event_args(name: &str, args: &[Box<RawValue>]) -> Packet {
        let args: Vec<&RawValue> = args.iter().map(|a| &**a).collect();
        Packet {
            text: sio::event_raw(name, &args, None, 0),
            attachments: Vec::new(),
            msgpack: OnceLock::new(),
        }
    }

    /// A binary event: `args` may contain `{"_placeholder":true,"num":N}` objects standing for
    /// `attachments[N]`. Without attachments this is a plain event.
    pub fn binary_event(name: &str, args: &[Box<RawValue>], attachments: Vec<Bytes>) -> Packet {
        let args: Vec<&RawValue> = args.iter().map(|a| &**a).collect();
        Packet {
            text: sio::event_raw(name, &args, None, attachments.len()),
            attachments,
            msgpack: OnceLock::new(),
        }
    }

    /// A packet from an Engine.IO text frame that is already encoded, such as one encoded by another
    /// server process and relayed to this one. The bytes are sent as they are: they must be a valid frame
    /// (`4` followed by a Socket.IO packet) from a trusted source.
    pub fn from_encoded(text: Bytes) -> Packet {
        Packet {
            text,
            attachments: Vec::new(),
            msgpack: OnceLock::new(),
        }
    }

    /// The encoded Engine.IO text frame.
    pub fn as_bytes(&self) -> &Bytes {
        &self.text
    }

    /// The binary attachments (empty for a plain event).
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// The packet as `socket.io-msgpack-parser` encodes it, transcoded on first use.
    fn msgpack(&self) -> Result<&Bytes, SendError> {
        self.msgpack
            .get_or_init(|| msgpack::encode(&self.text, &self.attachments).ok())
            .as_ref()
            .ok_or_else(|| {
                SendError::Encode(<serde_json::Error as serde::ser::Error>::custom(
                    "the packet is not a valid Socket.IO frame",
                ))
            })
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("text", &String::from_utf8_lossy(&self.text))
            .field("attachments", &self.attachments.len())
            .finish()
    }
}

/// A handle on one socket. Cheap to clone; it stays valid (and sends fail with [`SendError::Closed`]) after
/// the socket is gone.
#[derive(Clone)]
pub struct Socket(pub(crate) Arc<SocketCore>);

impl Socket {
    /// The Socket.IO socket id (the `sid` of the `40` answer; not the Engine.IO session id).
    pub fn id(&self) -> &str {
        self.0.id.as_str()
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.0.remote_addr
    }

    /// The transport in use now.
    pub fn transport(&self) -> Transport {
        self.0.lock().transport
    }

    /// Whether the socket is connected to the namespace (`connect` succeeded and it hasn't gone away).
    pub fn is_connected(&self) -> bool {
        self.0.lock().state == State::Connected
    }

    /// The number of packets waiting in the outgoing queue.
    pub fn queued(&self) -> usize {
        self.0.lock().frames.len()
    }

    /// What the outgoing queue holds against its bound, in bytes: the packets not yet written (also those
    /// the transport took and is still writing), each counted with a fixed overhead for its slot.
    pub fn queued_bytes(&self) -> usize {
        self.0.lock().bytes
    }

    /// Encodes and queues the event `name` with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<(), SendError> {
        self.send(&Packet::event(name, data)?)
    }

    /// Queues a pre-encoded packet. Packets sent while [`Handler::connect`](crate::Handler::connect) runs
    /// are delivered after the `40` answer (and dropped if the connect is refused).
    pub fn send(&self, packet: &Packet) -> Result<(), SendError> {
        match self.0.parser() {
            Parser::MsgPack => self
                .0
                .push_frames(Frame::Binary(packet.msgpack()?.clone()), &[]),
            Parser::Json | Parser::Unknown => self.0.push(&packet.text, &packet.attachments),
        }
    }

    /// Emits an event that asks for an acknowledgement and waits for it, at most `timeout`.
    pub fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
        timeout: Duration,
    ) -> impl Future<Output = Result<AckReply, AckError>> + Send + 'static {
        let queued = self.queue_with_ack(name, data);
        let core = self.0.clone();
        async move {
            let (id, rx) = queued?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(AckError::Closed),
                Err(_) => {
                    core.lock().acks.retain(|(pending, _)| *pending != id);
                    Err(AckError::Timeout)
                }
            }
        }
    }

    fn queue_with_ack<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
    ) -> Result<(u64, oneshot::Receiver<AckReply>), AckError> {
        // Serialise outside the lock; only the id is added under it.
        let args = serde_json::to_vec(&(name, data)).map_err(|e| AckError::Send(e.into()))?;
        let msgpack = match self.0.parser() {
            Parser::MsgPack => {
                Some(msgpack::event_data(&args).map_err(|e| AckError::Send(e.into()))?)
            }
            Parser::Json | Parser::Unknown => None,
        };
        let (tx, rx) = oneshot::channel();
        let mut outbox = self.0.lock();
        // The id is at most 20 digits: count them in before knowing it.
        let len = msgpack.as_ref().map_or(args.len(), Vec::len);
        let cost = 2 + 20 + len + FRAME_COST;
        outbox
            .check_room(cost, self.0.max_bytes)
            .map_err(AckError::Send)?;
        outbox.next_ack_id += 1;
        let id = outbox.next_ack_id;
        let frame = match msgpack {
            Some(data) => Frame::Binary(msgpack::event_with_id(&data, id)),
            None => {
                let mut text = format!("42{id}").into_bytes();
                text.extend_from_slice(&args);
                Frame::Text(Bytes::from(text))
            }
        };
        outbox.bytes += frame_cost(&frame);
        outbox.frames.push_back(frame);
        outbox.acks.push((id, tx));
        let waker = outbox.writer.take();
        drop(outbox);
        if let Some(w) = waker {
            w.wake();
        }
        Ok((id, rx))
    }

    /// Sends `DISCONNECT` (`41`) after the packets already queued, then closes the connection. The
    /// handler's `disconnect` sees [`DisconnectReason::ServerDisconnect`]. The client does not reconnect by
    /// itself after this.
    pub fn disconnect(&self) {
        self.0
            .request_close(DisconnectReason::ServerDisconnect, true);
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id())
            .field("remote_addr", &self.0.remote_addr)
            .finish()
    }
}

impl PartialEq for Socket {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Socket {}

/// The client's answer to [`Socket::emit_with_ack`].
#[derive(Debug)]
pub struct AckReply {
    /// The acknowledgement's arguments as raw JSON.
    pub args: Vec<Box<RawValue>>,
    /// Binary attachments, for a binary acknowledgement.
    pub binary: Vec<Bytes>,
}

/// Why [`Socket::emit_with_ack`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The event could not be queued.
    #[error(transparent)]
    Send(SendError),
    /// No answer within the timeout.
    #[error("no acknowledgement within the timeout")]
    Timeout,
    /// The socket went away first.
    #[error("the socket closed before acknowledging")]
    Closed,
}

/// The acknowledgement a client asked for with an event. Send it once with one of its methods; dropping
/// it unsent sends nothing.
pub struct Ack {
    socket: Socket,
    id: u64,
}

impl Ack {
    pub(crate) fn new(socket: Socket, id: u64) -> Self {
        Self { socket, id }
    }

    /// The ack id the client chose.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Acknowledges with one argument: `43<id>[data]`.
    pub fn send<T: Serialize + ?Sized>(self, data: &T) -> Result<(), SendError> {
        let text = sio::ack(self.id, data)?;
        self.socket.0.push(&text, &[])
    }

    /// Acknowledges with one argument given as raw JSON.
    pub fn send_raw(self, data: &RawValue) -> Result<(), SendError> {
        self.socket.0.push(&sio::ack_raw(self.id, &[data], 0), &[])
    }

    /// Acknowledges with any number of raw JSON arguments.
    pub fn send_args(self, args: &[Box<RawValue>]) -> Result<(), SendError> {
        let args: Vec<&RawValue> = args.iter().map(|a| &**a).collect();
        self.socket.0.push(&sio::ack_raw(self.id, &args, 0), &[])
    }

    /// Acknowledges with raw JSON arguments and binary attachments referenced by placeholders.
    pub fn send_binary(
        self,
        args: &[Box<RawValue>],
        attachments: Vec<Bytes>,
    ) -> Result<(), SendError> {
        let args: Vec<&RawValue> = args.iter().map(|a| &**a).collect();
        let text = sio::ack_raw(self.id, &args, attachments.len());
        self.socket.0.push(&text, &attachments)
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack").field("id", &self.id).finish()
    }
}

/// The Socket.IO parser a client uses: the default JSON one, or `socket.io-msgpack-parser`. Clients
/// don't announce it; their first Socket.IO packet (the `CONNECT`) shows it: text for JSON, binary for
/// MessagePack (a JSON client's first packet is never binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parser {
    /// No Socket.IO packet yet.
    Unknown,
    Json,
    MsgPack,
}

/// Where a socket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// The Engine.IO session is open; no Socket.IO `CONNECT` has succeeded yet.
    Open,
    /// `Handler::connect` is running: packets are accepted and wait for the `40`.
    Connecting,
    /// Connected to `/`.
    Connected,
    /// A close was requested: no more packets are accepted, the queue is being flushed.
    Closing,
    /// Gone.
    Closed,
}

/// What one queued frame counts against a socket's bound besides its bytes: its slot in the queue and
/// its buffer's header, so that a flood of tiny frames is bounded too.
pub(crate) const FRAME_COST: usize = 64;

/// The bound of a socket with no `CONNECT` running or done: all such a socket is legitimately sent is a
/// handful of small packets (the open packet, pings, a refusal), so it gets far less room than a
/// connected one.
pub(crate) const UNCONNECTED_QUEUE_BYTES: usize = 64 * 1024;

/// What `frame` counts against its socket's bound.
pub(crate) fn frame_cost(frame: &Frame) -> usize {
    match frame {
        Frame::Text(b) | Frame::Binary(b) => b.len() + FRAME_COST,
    }
}

fn cost_of(frames: &VecDeque<Frame>) -> usize {
    frames.iter().map(frame_cost).sum()
}

/// The shared part of a socket: identity and outgoing queue. Transports drain the queue; the application
/// fills it through [`Socket`].
pub(crate) struct SocketCore {
    pub(crate) id: Sid,
    /// The client's Socket.IO parser ([`Parser`]), set by its first packet and fixed from then on.
    parser: AtomicU8,
    pub(crate) remote_addr: SocketAddr,
    /// The bound of the queue in bytes, once a `CONNECT` runs or succeeded ([`Config::max_queued_bytes`]).
    max_bytes: usize,
    // A std Mutex is enough: it is never held across an `.await`, and holders only move a few pointers.
    outbox: Mutex<Outbox>,
}

/// The outgoing queue and the state that must change together with it.
///
/// Everything the server holds for the client to read counts against one bound, in bytes
/// ([`Outbox::bytes`]): application packets, protocol replies (pings, noops, `CONNECT` answers), and
/// what a WebSocket took from here or queued itself and hasn't written yet. Application packets that
/// don't fit are refused ([`SendError::Full`]); a protocol reply that doesn't fit ends the session (the
/// client provokes replies and doesn't read them); and a WebSocket stops reading once something didn't
/// fit, until some of the queue is written, so that a client that doesn't read can't make the server
/// hold more (nor answer its pings).
pub(crate) struct Outbox {
    /// Packets not yet handed to the transport. An empty `VecDeque` holds no allocation.
    pub(crate) frames: VecDeque<Frame>,
    /// Application packets sent while `Handler::connect` runs: they may only follow the `40` that
    /// answers the CONNECT, so they wait here (the transport drains `frames` meanwhile, for pings).
    pub(crate) held: VecDeque<Frame>,
    /// What `frames`, `held` and the frames a WebSocket is still writing count against the bound
    /// ([`frame_cost`]). The WebSocket gives its share back with [`SocketCore::release`].
    bytes: usize,
    /// Something didn't fit since the transport last wrote anything: reads pause.
    full: bool,
    /// The task that drains `frames` (the WebSocket task, or the pending polling `GET`).
    pub(crate) writer: Option<Waker>,
    pub(crate) state: State,
    pub(crate) transport: Transport,
    /// A close asked for by the application or the server; the transport acts on it after flushing.
    pub(crate) close: Option<DisconnectReason>,
    /// Server → client events waiting for their acknowledgement.
    acks: Vec<(u64, oneshot::Sender<AckReply>)>,
    next_ack_id: u64,
}

impl Outbox {
    /// The bound in force: small until a `CONNECT` runs.
    fn limit(&self, max: usize) -> usize {
        match self.state {
            State::Open => max.min(UNCONNECTED_QUEUE_BYTES),
            _ => max,
        }
    }

    /// Whether `cost` more fits. A packet larger than the whole bound still goes into an empty queue, so
    /// that one large answer is never refused for its size alone.
    fn fits(&self, cost: usize, max: usize) -> bool {
        self.bytes == 0 || self.bytes + cost <= self.limit(max)
    }

    fn check_room(&mut self, cost: usize, max: usize) -> Result<(), SendError> {
        match self.state {
            State::Connecting | State::Connected if self.fits(cost, max) => Ok(()),
            State::Connecting | State::Connected => {
                self.full = true;
                Err(SendError::Full)
            }
            _ => Err(SendError::Closed),
        }
    }

    /// Gives back what frames that left the queue (written, or dropped) counted.
    fn free(&mut self, cost: usize) {
        if cost > 0 {
            self.bytes = self.bytes.saturating_sub(cost);
            self.full = false;
        }
    }

    /// Queues protocol frames without a bound check (the caller checked, or they are one-offs).
    fn queue(&mut self, frame: Frame) {
        self.bytes += frame_cost(&frame);
        self.frames.push_back(frame);
    }
}

impl SocketCore {
    pub(crate) fn new(remote_addr: SocketAddr, transport: Transport, max_bytes: usize) -> Self {
        Self {
            id: Sid::random(),
            parser: AtomicU8::new(0),
            remote_addr,
            max_bytes,
            outbox: Mutex::new(Outbox {
                frames: VecDeque::new(),
                held: VecDeque::new(),
                bytes: 0,
                full: false,
                writer: None,
                state: State::Open,
                transport,
                close: None,
                acks: Vec::new(),
                next_ack_id: 0,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Outbox> {
        // Nothing a panicking holder could leave half-done breaks the queue, so a poisoned lock is used again.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an application packet (encoded by the JSON parser) and its attachments as one unit, if the
    /// socket is connected (or connecting) and the packet fits; transcoded first for a MessagePack client.
    pub(crate) fn push(&self, text: &Bytes, attachments: &[Bytes]) -> Result<(), SendError> {
        match self.parser() {
            Parser::MsgPack => {
                self.push_frames(Frame::Binary(msgpack::encode(text, attachments)?), &[])
            }
            Parser::Json | Parser::Unknown => {
                self.push_frames(Frame::Text(text.clone()), attachments)
            }
        }
    }

    /// Queues an encoded packet and the binary messages that follow it as one unit.
    fn push_frames(&self, first: Frame, attachments: &[Bytes]) -> Result<(), SendError> {
        let cost = frame_cost(&first)
            + attachments
                .iter()
                .map(|a| a.len() + FRAME_COST)
                .sum::<usize>();
        let mut outbox = self.lock();
        outbox.check_room(cost, self.max_bytes)?;
        outbox.bytes += cost;
        let queue = if outbox.state == State::Connecting {
            &mut outbox.held
        } else {
            &mut outbox.frames
        };
        queue.push_back(first);
        for a in attachments {
            queue.push_back(Frame::Binary(a.clone()));
        }
        let waker = outbox.writer.take();
        drop(outbox);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// The parser the client uses, as far as known.
    pub(crate) fn parser(&self) -> Parser {
        match self.parser.load(Ordering::Acquire) {
            1 => Parser::Json,
            2 => Parser::MsgPack,
            _ => Parser::Unknown,
        }
    }

    /// Records the parser, learned from the client's first Socket.IO packet.
    pub(crate) fn set_parser(&self, parser: Parser) {
        let code = match parser {
            Parser::Unknown => 0,
            Parser::Json => 1,
            Parser::MsgPack => 2,
        };
        self.parser.store(code, Ordering::Release);
    }

    /// A Socket.IO packet of ours (the JSON parser's encoding) as this client reads it.
    pub(crate) fn encoded(&self, text: Bytes) -> Frame {
        match self.parser() {
            Parser::MsgPack => match msgpack::encode(&text, &[]) {
                Ok(bin) => Frame::Binary(bin),
                // Only our own well-formed packets come here.
                Err(_) => Frame::Text(text),
            },
            Parser::Json | Parser::Unknown => Frame::Text(text),
        }
    }

    /// Queues a protocol reply (ping, noop, a refusal) if it fits. `false` if the socket can't take it:
    /// it is closing or closed, or the reply would pass its bound. The caller then ends the session.
    pub(crate) fn push_control(&self, frame: Frame) -> bool {
        let mut outbox = self.lock();
        if matches!(outbox.state, State::Closing | State::Closed) {
            return false;
        }
        if !outbox.fits(frame_cost(&frame), self.max_bytes) {
            outbox.full = true;
            return false;
        }
        outbox.queue(frame);
        let waker = outbox.writer.take();
        drop(outbox);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Counts `cost` bytes a WebSocket queued itself (a pong, `3probe`, a ping) against the bound.
    /// `bounded`: only if they fit (`false` otherwise, and nothing is counted).
    pub(crate) fn charge(&self, cost: usize, bounded: bool) -> bool {
        let mut outbox = self.lock();
        if bounded && !outbox.fits(cost, self.max_bytes) {
            outbox.full = true;
            return false;
        }
        outbox.bytes += cost;
        true
    }

    /// Gives back bytes counted for frames that have now been written.
    pub(crate) fn release(&self, cost: usize) {
        self.lock().free(cost);
    }

    /// Whether the queue has room: under its bound, and nothing refused since the transport last wrote
    /// something. A WebSocket reads only then.
    pub(crate) fn has_room(&self) -> bool {
        let outbox = self.lock();
        !outbox.full && outbox.bytes < outbox.limit(self.max_bytes)
    }

    /// The close asked for, if any.
    pub(crate) fn close_requested(&self) -> Option<DisconnectReason> {
        self.lock().close
    }

    /// Asks the transport to close after flushing, optionally sending `41` first.
    pub(crate) fn request_close(&self, reason: DisconnectReason, send_disconnect: bool) {
        let mut outbox = self.lock();
        if matches!(outbox.state, State::Closing | State::Closed) {
            return;
        }
        if send_disconnect && matches!(outbox.state, State::Connecting | State::Connected) {
            let disconnect = match self.parser() {
                Parser::MsgPack => Frame::Binary(msgpack::DISCONNECT),
                Parser::Json | Parser::Unknown => Frame::Text(sio::DISCONNECT),
            };
            outbox.queue(disconnect);
        }
        outbox.state = State::Closing;
        outbox.close = Some(reason);
        let waker = outbox.writer.take();
        drop(outbox);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The client left the namespace (`41`) but keeps its Engine.IO session: the socket is no longer
    /// connected (sends fail with [`SendError::Closed`]), and server → client acknowledgements still
    /// awaited fail.
    pub(crate) fn disconnected(&self) {
        let mut outbox = self.lock();
        if outbox.state != State::Connected {
            return;
        }
        outbox.state = State::Open;
        outbox.acks = Vec::new();
    }

    /// Marks the socket gone: queued packets are dropped, pending acknowledgements fail, the writer wakes.
    pub(crate) fn mark_closed(&self) {
        let mut outbox = self.lock();
        outbox.state = State::Closed;
        outbox.frames = VecDeque::new();
        outbox.held = VecDeque::new();
        outbox.bytes = 0;
        outbox.acks = Vec::new();
        let waker = outbox.writer.take();
        drop(outbox);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// A `CONNECT` succeeded: its answer goes out, then what the application queued meanwhile.
    pub(crate) fn connected(&self, answer: Frame) {
        let mut outbox = self.lock();
        if outbox.state != State::Connecting {
            return;
        }
        outbox.state = State::Connected;
        outbox.queue(answer);
        let held = std::mem::take(&mut outbox.held);
        outbox.frames.extend(held);
        let waker = outbox.writer.take();
        drop(outbox);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// A `CONNECT` was refused: what the application queued meanwhile is dropped and the refusal is
    /// queued. `false` if the refusal doesn't fit (the caller ends the session).
    pub(crate) fn refused(&self, answer: Frame) -> bool {
        let mut outbox = self.lock();
        if outbox.state != State::Connecting {
            return true;
        }
        outbox.state = State::Open;
        let held = std::mem::take(&mut outbox.held);
        outbox.free(cost_of(&held));
        drop(outbox);
        drop(held);
        self.push_control(answer)
    }

    /// Hands the queue to a WebSocket that completed an upgrade; a pending polling GET is woken so that it
    /// answers with a noop. `false` if the socket is already gone.
    pub(crate) fn switch_to_websocket(&self) -> bool {
        let mut outbox = self.lock();
        if outbox.state == State::Closed {
            return false;
        }
        outbox.transport = Transport::WebSocket;
        let waker = outbox.writer.take();
        drop(outbox);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Resolves a server → client acknowledgement.
    pub(crate) fn resolve_ack(&self, id: u64, reply: AckReply) {
        let mut outbox = self.lock();
        if let Some(i) = outbox.acks.iter().position(|(pending, _)| *pending == id) {
            let (_, tx) = outbox.acks.swap_remove(i);
            drop(outbox);
            let _ = tx.send(reply);
        }
    }

    /// Looks at the queue for the transport, registering `cx`'s waker for what comes next. `released`
    /// bytes (frames the transport has written since) are given back first. With `take`, queued frames
    /// are handed over (their cost stays counted until the transport releases it); without, only a close
    /// request or the end of the socket is reported.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        released: usize,
        take: bool,
    ) -> Poll<Taken> {
        let mut outbox = self.lock();
        outbox.free(released);
        if outbox.state == State::Closed {
            return Poll::Ready(Taken::Closed);
        }
        if take && !outbox.frames.is_empty() {
            let frames = std::mem::take(&mut outbox.frames);
            let cost = cost_of(&frames);
            return Poll::Ready(Taken::Frames(frames, cost, outbox.close));
        }
        if let Some(reason) = outbox.close {
            return Poll::Ready(Taken::Close(reason));
        }
        if !outbox
            .writer
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            outbox.writer = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Takes whatever is queued now, and its cost (which stays counted until released): the last frames
    /// before a WebSocket's close frame.
    pub(crate) fn take_all(&self) -> (VecDeque<Frame>, usize) {
        let mut outbox = self.lock();
        let frames = std::mem::take(&mut outbox.frames);
        let cost = cost_of(&frames);
        (frames, cost)
    }
}

/// What [`SocketCore::poll_take`] found.
pub(crate) enum Taken {
    /// Packets to write, what they count against the bound, and the close to carry out after them, if
    /// one was requested.
    Frames(VecDeque<Frame>, usize, Option<DisconnectReason>),
    /// A close was requested (and nothing was taken).
    Close(DisconnectReason),
    /// The socket is gone.
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn core(max: usize) -> SocketCore {
        SocketCore::new("127.0.0.1:1".parse().unwrap(), Transport::WebSocket, max)
    }

    /// Takes what is queued, as a polling GET does (giving its cost back at once).
    fn take(core: &SocketCore) -> Vec<Frame> {
        match core.poll_take(&mut Context::from_waker(Waker::noop()), 0, true) {
            Poll::Ready(Taken::Frames(frames, cost, _)) => {
                core.release(cost);
                frames.into()
            }
            _ => Vec::new(),
        }
    }

    #[test]
    fn sends_need_a_connecting_or_connected_socket() {
        let socket = Socket(Arc::new(core(1024)));
        let packet = Packet::event("e", &1).unwrap();
        assert!(matches!(socket.send(&packet), Err(SendError::Closed)));
        socket.0.lock().state = State::Connecting;
        socket.send(&packet).unwrap();
        socket.0.lock().state = State::Connected;
        socket.send(&packet).unwrap();
        socket.0.mark_closed();
        assert!(matches!(socket.send(&packet), Err(SendError::Closed)));
        assert!(!socket.is_connected());
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_refuses_until_drained() {
        let packet = Packet::event("e", &"x".repeat(100)).unwrap();
        let cost = packet.as_bytes().len() + FRAME_COST;
        let socket = Socket(Arc::new(core(3 * cost + 10)));
        socket.0.lock().state = State::Connected;
        for _ in 0..3 {
            socket.send(&packet).unwrap();
        }
        assert_eq!(socket.queued_bytes(), 3 * cost);
        assert!(socket.0.has_room(), "under the bound");
        assert!(matches!(socket.send(&packet), Err(SendError::Full)));
        assert!(
            !socket.0.has_room(),
            "something was refused: a WebSocket stops reading"
        );
        // A smaller packet still fits in what is left; then nothing does.
        let small = Packet::from_encoded(Bytes::from_static(b"42[1]"));
        assert!(matches!(socket.send(&small), Err(SendError::Full)));
        assert_eq!(socket.queued(), 3);
        // Protocol replies count and are bounded too.
        assert!(!socket.0.push_control(Frame::PING));
        assert_eq!(take(&socket.0).len(), 3);
        assert_eq!(socket.queued_bytes(), 0);
        assert!(socket.0.has_room(), "written: reads go on");
        assert!(socket.0.push_control(Frame::PING));
        socket.send(&packet).unwrap();
        assert_eq!(socket.queued_bytes(), cost + 1 + FRAME_COST);
    }

    #[test]
    fn a_packet_larger_than_the_bound_goes_into_an_empty_queue_only() {
        let socket = Socket(Arc::new(core(1000)));
        socket.0.lock().state = State::Connected;
        let big = Packet::event("e", &"x".repeat(5000)).unwrap();
        socket.send(&big).unwrap();
        assert!(matches!(socket.send(&big), Err(SendError::Full)));
        assert!(!socket.0.has_room(), "a WebSocket stops reading");
        take(&socket.0);
        assert!(socket.0.has_room());
        socket.send(&big).unwrap();
    }

    #[test]
    fn an_unconnected_socket_gets_a_small_bound() {
        let socket = Socket(Arc::new(core(10 * UNCONNECTED_QUEUE_BYTES)));
        let reply = Frame::Text(Bytes::from(vec![b'4'; 1000]));
        let mut fitted = 0;
        while socket.0.push_control(reply.clone()) {
            fitted += 1;
        }
        assert_eq!(fitted, UNCONNECTED_QUEUE_BYTES / (1000 + FRAME_COST));
        // A CONNECT running: the full bound applies.
        socket.0.lock().state = State::Connecting;
        assert!(socket.0.push_control(reply));
    }

    #[test]
    fn what_a_websocket_writes_counts_until_it_is_released() {
        let socket = Socket(Arc::new(core(2 * (10 + FRAME_COST))));
        socket.0.lock().state = State::Connected;
        let packet = Packet::from_encoded(Bytes::from_static(b"4212345678"));
        socket.send(&packet).unwrap();
        let cx = &mut Context::from_waker(Waker::noop());
        let Poll::Ready(Taken::Frames(_, cost, None)) = socket.0.poll_take(cx, 0, true) else {
            panic!("the packet is taken");
        };
        // Being written, it still counts: one more fits, not two.
        assert!(socket.0.charge(10 + FRAME_COST, true));
        assert!(!socket.0.charge(1, true));
        assert!(matches!(socket.send(&packet), Err(SendError::Full)));
        // Written: the writer gives it back with its next look at the queue.
        assert!(
            socket
                .0
                .poll_take(cx, cost + 10 + FRAME_COST, true)
                .is_pending()
        );
        assert_eq!(socket.queued_bytes(), 0);
    }

    #[test]
    fn a_refused_connect_drops_what_was_held() {
        let socket = Socket(Arc::new(core(100_000)));
        socket.0.lock().state = State::Connecting;
        socket.emit("early", &"x".repeat(1000)).unwrap();
        assert!(socket.queued_bytes() > 1000);
        assert!(socket.0.refused(Frame::Text(Bytes::from_static(b"44{}"))));
        assert_eq!(socket.queued_bytes(), 4 + FRAME_COST);
        assert_eq!(
            take(&socket.0),
            vec![Frame::Text(Bytes::from_static(b"44{}"))]
        );
        socket.0.lock().state = State::Connecting;
        socket.emit("early", &1).unwrap();
        socket.0.connected(Frame::Text(Bytes::from_static(b"40{}")));
        assert_eq!(take(&socket.0).len(), 2);
        assert_eq!(socket.queued_bytes(), 0);
    }

    #[test]
    fn the_same_bytes_go_to_every_socket() {
        let packet = Packet::event("message:new", &serde_json::json!({"seq": 1})).unwrap();
        let sockets: Vec<Socket> = (0..3).map(|_| Socket(Arc::new(core(1024)))).collect();
        for s in &sockets {
            s.0.lock().state = State::Connected;
            s.send(&packet).unwrap();
        }
        for s in &sockets {
            match &take(&s.0)[..] {
                [Frame::Text(bytes)] => {
                    assert_eq!(bytes.as_ptr(), packet.as_bytes().as_ptr(), "not re-encoded")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn each_encoding_is_made_once_per_packet() {
        let packet = Packet::event("message:new", &serde_json::json!({"seq": 1})).unwrap();
        let sockets: Vec<(Socket, Parser)> = [Parser::Json, Parser::MsgPack]
            .into_iter()
            .cycle()
            .take(6)
            .map(|parser| {
                let socket = Socket(Arc::new(core(1024)));
                socket.0.set_parser(parser);
                socket.0.lock().state = State::Connected;
                (socket, parser)
            })
            .collect();
        for (s, _) in &sockets {
            s.send(&packet).unwrap();
        }
        let msgpack = packet
            .msgpack
            .get()
            .cloned()
            .flatten()
            .expect("transcoded once");
        for (s, parser) in &sockets {
            match (&take(&s.0)[..], parser) {
                ([Frame::Text(bytes)], Parser::Json) => {
                    assert_eq!(bytes.as_ptr(), packet.as_bytes().as_ptr())
                }
                ([Frame::Binary(bytes)], Parser::MsgPack) => {
                    assert_eq!(bytes.as_ptr(), msgpack.as_ptr(), "not transcoded again")
                }
                (other, parser) => panic!("{parser:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn disconnect_queues_41_then_closes() {
        let socket = Socket(Arc::new(core(1024)));
        socket.0.lock().state = State::Connected;
        socket.emit("bye", &()).unwrap();
        socket.disconnect();
        assert!(matches!(socket.emit("late", &()), Err(SendError::Closed)));
        match socket
            .0
            .poll_take(&mut Context::from_waker(Waker::noop()), 0, true)
        {
            Poll::Ready(Taken::Frames(frames, _, Some(DisconnectReason::ServerDisconnect))) => {
                assert_eq!(frames.back(), Some(&Frame::Text(Bytes::from_static(b"41"))));
                assert_eq!(frames.len(), 2);
            }
            _ => panic!("expected the frames and the close"),
        }
    }

    #[test]
    fn binary_packets_queue_their_attachments_after_the_text() {
        let socket = Socket(Arc::new(core(1024)));
        socket.0.lock().state = State::Connected;
        let placeholder = RawValue::from_string(r#"{"_placeholder":true,"num":0}"#.into()).unwrap();
        let packet =
            Packet::binary_event("file", &[placeholder], vec![Bytes::from_static(&[1, 2])]);
        socket.send(&packet).unwrap();
        assert_eq!(
            take(&socket.0),
            vec![
                Frame::Text(Bytes::from_static(
                    br#"451-["file",{"_placeholder":true,"num":0}]"#
                )),
                Frame::Binary(Bytes::from_static(&[1, 2])),
            ]
        );
    }

    #[tokio::test]
    async fn acks_resolve_time_out_or_fail_on_close() {
        let socket = Socket(Arc::new(core(1024)));
        socket.0.lock().state = State::Connected;
        let reply = socket.emit_with_ack("q", &1, Duration::from_secs(5));
        let frames = take(&socket.0);
        assert_eq!(
            frames,
            vec![Frame::Text(Bytes::from_static(br#"421["q",1]"#))]
        );
        let answer = RawValue::from_string("42".into()).unwrap();
        socket.0.resolve_ack(
            1,
            AckReply {
                args: vec![answer],
                binary: Vec::new(),
            },
        );
        assert_eq!(reply.await.unwrap().args[0].get(), "42");

        let slow = socket.emit_with_ack("q", &2, Duration::from_millis(20));
        assert!(matches!(slow.await, Err(AckError::Timeout)));
        assert!(
            socket.0.lock().acks.is_empty(),
            "a timed-out ack leaves no entry behind"
        );

        let pending = socket.emit_with_ack("q", &3, Duration::from_secs(5));
        socket.0.mark_closed();
        assert!(matches!(pending.await, Err(AckError::Closed)));
    }
}
