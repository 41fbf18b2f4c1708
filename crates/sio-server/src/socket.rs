//! The application's handle on a socket, and the per-socket outgoing queue behind it.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::engine::packet::Frame;
use crate::handler::DisconnectReason;
use crate::sid::Sid;
use crate::socketio::packet as sio;

/// Why a packet could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The socket's outgoing queue holds [`Config::max_queued_packets`](crate::Config::max_queued_packets)
    /// packets: the client reads too slowly. The caller decides (for example, disconnect it).
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
/// It holds one Engine.IO text frame such as `42["message:new",{…}]`, plus the binary attachments of a
/// binary event. Cloning it is cheap (reference-counted bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    text: Bytes,
    attachments: Vec<Bytes>,
}

impl Packet {
    /// The event `name` with one argument, `data`: `42["name",data]`.
    pub fn event<T: Serialize + ?Sized>(name: &str, data: &T) -> Result<Packet, serde_json::Error> {
        Ok(Packet {
            text: sio::event(name, data, None, 0)?,
            attachments: Vec::new(),
        })
    }

    /// The event `name` with one argument given as raw JSON.
    pub fn event_raw(name: &str, data: &RawValue) -> Packet {
        Packet {
            text: sio::event_raw(name, &[data], None, 0),
            attachments: Vec::new(),
        }
    }

    /// The event `name` with any number of raw JSON arguments (none is fine).
    pub fn event_args(name: &str, args: &[Box<RawValue>]) -> Packet {
        let args: Vec<&RawValue> = args.iter().map(|a| &**a).collect();
        Packet {
            text: sio::event_raw(name, &args, None, 0),
            attachments: Vec::new(),
        }
    }

    /// A binary event: `args` may contain `{"_placeholder":true,"num":N}` objects standing for
    /// `attachments[N]`. Without attachments this is a plain event.
    pub fn binary_event(name: &str, args: &[Box<RawValue>], attachments: Vec<Bytes>) -> Packet {
        let args: Vec<&RawValue> = args.iter().map(|a| &**a).collect();
        Packet {
            text: sio::event_raw(name, &args, None, attachments.len()),
            attachments,
        }
    }

    /// A packet from an Engine.IO text frame that is already encoded, such as one encoded by another
    /// server process and relayed to this one. The bytes are sent as they are: they must be a valid frame
    /// (`4` followed by a Socket.IO packet) from a trusted source.
    pub fn from_encoded(text: Bytes) -> Packet {
        Packet {
            text,
            attachments: Vec::new(),
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

    /// Encodes and queues the event `name` with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<(), SendError> {
        self.send(&Packet::event(name, data)?)
    }

    /// Queues a pre-encoded packet. Packets sent while [`Handler::connect`](crate::Handler::connect) runs
    /// are delivered after the `40` answer (and dropped if the connect is refused).
    pub fn send(&self, packet: &Packet) -> Result<(), SendError> {
        self.0.push(&packet.text, &packet.attachments, true)
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
        let (tx, rx) = oneshot::channel();
        let mut outbox = self.0.lock();
        outbox
            .check_room(self.0.max_queued)
            .map_err(AckError::Send)?;
        outbox.next_ack_id += 1;
        let id = outbox.next_ack_id;
        let mut text = format!("42{id}").into_bytes();
        text.extend_from_slice(&args);
        outbox.frames.push_back(Frame::Text(Bytes::from(text)));
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
        self.socket.0.push(&text, &[], true)
    }

    /// Acknowledges with one argument given as raw JSON.
    pub fn send_raw(self, data: &RawValue) -> Result<(), SendError> {
        self.socket
            .0
            .push(&sio::ack_raw(self.id, &[data], 0), &[], true)
    }

    /// Acknowledges with any number of raw JSON arguments.
    pub fn send_args(self, args: &[Box<RawValue>]) -> Result<(), SendError> {
        let args: Vec<&RawValue> = args.iter().map(|a| &**a).collect();
        self.socket
            .0
            .push(&sio::ack_raw(self.id, &args, 0), &[], true)
    }

    /// Acknowledges with raw JSON arguments and binary attachments referenced by placeholders.
    pub fn send_binary(
        self,
        args: &[Box<RawValue>],
        attachments: Vec<Bytes>,
    ) -> Result<(), SendError> {
        let args: Vec<&RawValue> = args.iter().map(|a| &**a).collect();
        let text = sio::ack_raw(self.id, &args, attachments.len());
        self.socket.0.push(&text, &attachments, true)
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack").field("id", &self.id).finish()
    }
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

/// The shared part of a socket: identity and outgoing queue. Transports drain the queue; the application
/// fills it through [`Socket`].
pub(crate) struct SocketCore {
    pub(crate) id: Sid,
    pub(crate) remote_addr: SocketAddr,
    max_queued: usize,
    // A std Mutex is enough: it is never held across an `.await`, and holders only move a few pointers.
    outbox: Mutex<Outbox>,
}

/// The outgoing queue and the state that must change together with it.
pub(crate) struct Outbox {
    /// Packets not yet handed to the transport. An empty `VecDeque` holds no allocation.
    pub(crate) frames: VecDeque<Frame>,
    /// Application packets sent while `Handler::connect` runs: they may only follow the `40` that
    /// answers the CONNECT, so they wait here (the transport drains `frames` meanwhile, for pings).
    pub(crate) held: VecDeque<Frame>,
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
    fn check_room(&self, max: usize) -> Result<(), SendError> {
        match self.state {
            State::Connecting | State::Connected if self.frames.len() + self.held.len() >= max => {
                Err(SendError::Full)
            }
            State::Connecting | State::Connected => Ok(()),
            _ => Err(SendError::Closed),
        }
    }
}

impl SocketCore {
    pub(crate) fn new(remote_addr: SocketAddr, transport: Transport, max_queued: usize) -> Self {
        Self {
            id: Sid::random(),
            remote_addr,
            max_queued,
            outbox: Mutex::new(Outbox {
                frames: VecDeque::new(),
                held: VecDeque::new(),
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

    /// Queues a text packet and its attachments as one unit. `bounded` applies the queue bound and the
    /// connected check (application packets); protocol packets skip both.
    pub(crate) fn push(
        &self,
        text: &Bytes,
        attachments: &[Bytes],
        bounded: bool,
    ) -> Result<(), SendError> {
        let mut outbox = self.lock();
        if bounded {
            outbox.check_room(self.max_queued)?;
        } else if outbox.state == State::Closed {
            return Err(SendError::Closed);
        }
        let queue = if outbox.state == State::Connecting {
            &mut outbox.held
        } else {
            &mut outbox.frames
        };
        queue.push_back(Frame::Text(text.clone()));
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

    /// Queues a protocol frame (ping, noop) regardless of state and bound.
    pub(crate) fn push_control(&self, frame: Frame) {
        let mut outbox = self.lock();
        if outbox.state == State::Closed {
            return;
        }
        outbox.frames.push_back(frame);
        let waker = outbox.writer.take();
        drop(outbox);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Asks the transport to close after flushing, optionally sending `41` first.
    pub(crate) fn request_close(&self, reason: DisconnectReason, send_disconnect: bool) {
        let mut outbox = self.lock();
        if matches!(outbox.state, State::Closing | State::Closed) {
            return;
        }
        if send_disconnect && matches!(outbox.state, State::Connecting | State::Connected) {
            outbox.frames.push_back(Frame::Text(sio::DISCONNECT));
        }
        outbox.state = State::Closing;
        outbox.close = Some(reason);
        let waker = outbox.writer.take();
        drop(outbox);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Marks the socket gone: queued packets are dropped, pending acknowledgements fail, the writer wakes.
    pub(crate) fn mark_closed(&self) {
        let mut outbox = self.lock();
        outbox.state = State::Closed;
        outbox.frames = VecDeque::new();
        outbox.held = VecDeque::new();
        outbox.acks = Vec::new();
        let waker = outbox.writer.take();
        drop(outbox);
        if let Some(w) = waker {
            w.wake();
        }
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

    /// Takes everything queued, for the transport to write; registers `cx`'s waker when there is nothing.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Taken> {
        let mut outbox = self.lock();
        if outbox.state == State::Closed {
            return Poll::Ready(Taken::Closed);
        }
        if !outbox.frames.is_empty() {
            let frames = std::mem::take(&mut outbox.frames);
            return Poll::Ready(Taken::Frames(frames, outbox.close));
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
}

/// What [`SocketCore::poll_take`] found.
pub(crate) enum Taken {
    /// Packets to write, and the close to carry out after them, if one was requested.
    Frames(VecDeque<Frame>, Option<DisconnectReason>),
    /// Nothing left to write, and a close was requested.
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

    fn take(core: &SocketCore) -> Vec<Frame> {
        match core.poll_take(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Taken::Frames(frames, _)) => frames.into(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn sends_need_a_connecting_or_connected_socket() {
        let socket = Socket(Arc::new(core(4)));
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
    fn a_full_queue_refuses_until_drained() {
        let socket = Socket(Arc::new(core(3)));
        socket.0.lock().state = State::Connected;
        let packet = Packet::event("e", &"x").unwrap();
        for _ in 0..3 {
            socket.send(&packet).unwrap();
        }
        assert!(matches!(socket.send(&packet), Err(SendError::Full)));
        assert_eq!(socket.queued(), 3);
        // Protocol frames are not bounded.
        socket.0.push_control(Frame::PING);
        assert_eq!(take(&socket.0).len(), 4);
        socket.send(&packet).unwrap();
    }

    #[test]
    fn the_same_bytes_go_to_every_socket() {
        let packet = Packet::event("message:new", &serde_json::json!({"seq": 1})).unwrap();
        let sockets: Vec<Socket> = (0..3).map(|_| Socket(Arc::new(core(8)))).collect();
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
    fn disconnect_queues_41_then_closes() {
        let socket = Socket(Arc::new(core(8)));
        socket.0.lock().state = State::Connected;
        socket.emit("bye", &()).unwrap();
        socket.disconnect();
        assert!(matches!(socket.emit("late", &()), Err(SendError::Closed)));
        match socket.0.poll_take(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Taken::Frames(frames, Some(DisconnectReason::ServerDisconnect))) => {
                assert_eq!(frames.back(), Some(&Frame::Text(Bytes::from_static(b"41"))));
                assert_eq!(frames.len(), 2);
            }
            _ => panic!("expected the frames and the close"),
        }
    }

    #[test]
    fn binary_packets_queue_their_attachments_after_the_text() {
        let socket = Socket(Arc::new(core(8)));
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
        let socket = Socket(Arc::new(core(8)));
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
