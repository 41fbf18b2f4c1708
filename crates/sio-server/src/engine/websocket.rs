//! An Engine.IO session over a WebSocket: one task per connection that reads frames, writes the socket's
//! queue and keeps the heartbeat, all from one `poll` function with a single timer.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::time::{Instant, Sleep};

use crate::engine::packet::{Frame, Packet, open_packet};
use crate::engine::{CLOSE_GRACE, CONNECT_RECHECK, Connection, Engine};
use crate::handler::{DisconnectReason, Handler};
use crate::socket::{FRAME_COST, Taken, UNCONNECTED_QUEUE_BYTES};
use crate::socketio::Message as SioMessage;
use crate::ws::{CloseCode, FrameReader, FrameWriter, Message, WsIo};

/// Messages handled per poll before yielding to other tasks.
const BUDGET: usize = 64;

/// How the WebSocket came to be.
pub(crate) enum Mode {
    /// A fresh session: the open packet is sent first.
    New,
    /// An upgrade of a polling session: the `2probe` / `3probe` / `5` exchange comes first.
    Upgrade,
}

enum Phase {
    Probing { deadline: Instant },
    Open,
}

enum Heartbeat {
    PingAt(Instant),
    PongBy(Instant),
}

#[derive(Clone, Copy)]
enum Outcome {
    /// The session ends for this reason.
    Closed(DisconnectReason),
    /// An upgrade failed; the polling session goes on as before.
    UpgradeAbandoned,
}

/// The state of one WebSocket session. Everything lives in this struct and in the task's future, which
/// is kept small on purpose: it is most of what an idle connection costs.
pub(crate) struct Driver<H: Handler, IO> {
    engine: Arc<Engine<H>>,
    conn: Arc<Connection<H>>,
    io: IO,
    reader: FrameReader,
    writer: FrameWriter,
    phase: Phase,
    heartbeat: Heartbeat,
    connect_deadline: Option<Instant>,
    closing: Option<(Outcome, Instant)>,
    /// What the timer is currently set to.
    timer_at: Instant,
    /// What the frames in `writer` count against the socket's bound (taken from its queue, or the
    /// driver's own: pings, pongs, `3probe`); given back once they are written. A `u32` keeps the task
    /// at its old size (a `usize` costs 16 bytes with padding); a connection never holds 4 GiB.
    charged: u32,
    /// How the session ended, once it has.
    ended: Option<Outcome>,
}

/// Prepares a WebSocket session and returns the future that runs it to its end, then closes the session
/// (or, for a failed upgrade, leaves the polling session alone).
pub(crate) fn start<H: Handler, IO: WsIo>(
    engine: Arc<Engine<H>>,
    conn: Arc<Connection<H>>,
    io: IO,
    initial: BytesMut,
    mode: Mode,
    deflate: bool,
) -> impl Future<Output = ()> + Send + 'static {
    engine.tasks.enter_detached();
    let now = Instant::now();
    let config = &engine.config;
    let mut driver = Driver {
        reader: FrameReader::new(initial, config.max_payload, deflate),
        writer: FrameWriter::new(deflate.then_some(config.deflate_threshold)),
        phase: match mode {
            Mode::New => Phase::Open,
            Mode::Upgrade => Phase::Probing {
                deadline: now + config.upgrade_timeout,
            },
        },
        heartbeat: Heartbeat::PingAt(now + config.ping_interval),
        connect_deadline: matches!(mode, Mode::New).then(|| now + config.connect_timeout),
        closing: None,
        timer_at: now,
        charged: 0,
        ended: None,
        io,
        conn,
        engine,
    };
    if let Mode::New = mode {
        let open = open_packet(&driver.conn.sid, false, &driver.engine.config);
        driver.charge(open.len(), false);
        driver.writer.text(open);
    }
    driver.timer_at = driver.next_deadline();
    drive(driver)
}

/// The task of a WebSocket session. Only the driver and one timer are held across the await.
async fn drive<H: Handler, IO: WsIo>(mut driver: Driver<H, IO>) {
    // One timer per connection, moved to whatever comes next (ping, pong deadline, connect deadline).
    let sleep = tokio::time::sleep_until(driver.timer_at);
    tokio::pin!(sleep);
    let outcome = poll_fn(|cx| driver.poll_drive(cx, sleep.as_mut())).await;
    driver.ended = Some(outcome);
    // Dropping the driver closes the session.
}

impl<H: Handler, IO> Drop for Driver<H, IO> {
    /// Ends the session, also when the task did not run to its end (the runtime shut down, or a handler
    /// panicked on this task): the session must not stay in the table, and `disconnect` must run.
    fn drop(&mut self) {
        let outcome = self.ended.take().unwrap_or(match self.phase {
            Phase::Probing { .. } => Outcome::UpgradeAbandoned,
            Phase::Open => Outcome::Closed(DisconnectReason::TransportError),
        });
        // What wasn't written is no longer held (this matters to a polling session whose upgrade failed).
        self.conn.socket.0.release(self.charged as usize);
        match outcome {
            Outcome::Closed(reason) => self.engine.finish(&self.conn, reason),
            Outcome::UpgradeAbandoned => {
                tracing::debug!(sid = %self.conn.sid, "upgrade abandoned; the session stays on polling");
                if let Some(polling) = &self.conn.polling {
                    polling.end_upgrade();
                }
            }
        }
        self.engine.tasks.leave();
    }
}

impl<H: Handler, IO: WsIo> Driver<H, IO> {
    fn poll_drive(&mut self, cx: &mut Context<'_>, mut sleep: Pin<&mut Sleep>) -> Poll<Outcome> {
        let mut budget = BUDGET;
        loop {
            if let Some((outcome, _)) = self.closing {
                // Flush what's left (ending with the close frame) and shut the stream down; the timer
                // bounds how long that may take.
                if self.writer.poll_flush(&mut self.io, cx).is_ready()
                    && Pin::new(&mut self.io).poll_shutdown(cx).is_ready()
                {
                    return Poll::Ready(outcome);
                }
            }

            let next = self.next_deadline();
            if next != self.timer_at {
                self.timer_at = next;
                sleep.as_mut().reset(next);
            }
            if sleep.as_mut().poll(cx).is_ready() {
                if let Some(outcome) = self.on_timer() {
                    return Poll::Ready(outcome);
                }
                continue;
            }
            if self.closing.is_some() {
                return Poll::Pending;
            }

            let mut outbox_waiting = false;
            if matches!(self.phase, Phase::Open) {
                // Frames are taken only into an empty writer; whatever it held is written by then, and
                // given back.
                let take = self.writer.is_empty();
                let released = if take { self.uncharge() } else { 0 };
                match self.conn.socket.0.poll_take(cx, released, take) {
                    Poll::Ready(Taken::Frames(frames, cost, close)) => {
                        self.write_frames(frames, cost);
                        if let Some(reason) = close {
                            self.begin_close(Outcome::Closed(reason), close_code(reason));
                        }
                    }
                    Poll::Ready(Taken::Close(reason)) => {
                        self.begin_close(Outcome::Closed(reason), close_code(reason));
                    }
                    // Ended elsewhere: a reply the client provoked didn't fit in its queue (or the polling
                    // side's connect timeout raced the upgrade).
                    Poll::Ready(Taken::Closed) => self.begin_close(
                        Outcome::Closed(DisconnectReason::TransportError),
                        CloseCode::POLICY,
                    ),
                    Poll::Pending => outbox_waiting = take,
                }
                if self.closing.is_some() {
                    continue;
                }
            } else {
                // Probing. The polling session may end meanwhile (its connect timeout, a shutdown):
                // then there is nothing left to upgrade.
                if self
                    .conn
                    .polling
                    .as_ref()
                    .is_some_and(|polling| polling.poll_stopped(cx))
                {
                    self.begin_close(Outcome::UpgradeAbandoned, CloseCode::GOING_AWAY);
                    continue;
                }
                // The queue is the polling side's; only the driver's own frames are counted.
                if self.writer.is_empty() && self.charged > 0 {
                    let written = self.uncharge();
                    self.conn.socket.0.release(written);
                }
            }

            match self.writer.poll_flush(&mut self.io, cx) {
                Poll::Ready(Ok(())) | Poll::Pending => {}
                Poll::Ready(Err(e)) => {
                    tracing::debug!(sid = %self.conn.sid, error = %e, "WebSocket write failed");
                    return Poll::Ready(self.fail(DisconnectReason::TransportError));
                }
            }

            if self.may_read() {
                match self.reader.poll_next(&mut self.io, cx) {
                    Poll::Ready(Ok(Some(message))) => {
                        self.on_frame(message);
                        budget -= 1;
                        if budget == 0 {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        continue;
                    }
                    Poll::Ready(Ok(None)) => {
                        return Poll::Ready(self.fail(DisconnectReason::TransportClose));
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(sid = %self.conn.sid, error = %e, "closing the WebSocket");
                        match e.close_code() {
                            Some(code) => self.begin_close(
                                self.closed_or_abandoned(DisconnectReason::TransportError),
                                code,
                            ),
                            None => {
                                return Poll::Ready(self.fail(DisconnectReason::TransportError));
                            }
                        }
                        continue;
                    }
                    Poll::Pending => {}
                }
            }

            if matches!(self.phase, Phase::Open) && self.writer.is_empty() && !outbox_waiting {
                // The writer emptied after the outbox was last checked: check it again, which also
                // registers for wake-ups when it's empty.
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Whether to read: only while the socket's queue is under its bound, so that a client that doesn't
    /// read what it provokes (answers, pongs) can't make the server hold more. A paused client can't
    /// answer pings either, so the ping timeout ends it. While probing, the queue belongs to the polling
    /// side (which may drain it without waking this task), so only the driver's own replies count.
    fn may_read(&self) -> bool {
        match self.phase {
            Phase::Open => self.conn.socket.0.has_room(),
            Phase::Probing { .. } => (self.charged as usize) < UNCONNECTED_QUEUE_BYTES,
        }
    }

    /// Counts a frame of the driver's own (`len` payload bytes) against the socket's bound. `bounded`
    /// frames are replies the client provoked: `false` when one doesn't fit.
    fn charge(&mut self, len: usize, bounded: bool) -> bool {
        let cost = len + FRAME_COST;
        if !self.conn.socket.0.charge(cost, bounded) {
            return false;
        }
        self.add_charged(cost);
        true
    }

    /// Queues frames taken from the socket's queue for writing; they still count `cost` until written.
    fn write_frames(&mut self, frames: VecDeque<Frame>, cost: usize) {
        self.add_charged(cost);
        for frame in frames {
            match frame {
                Frame::Text(text) => self.writer.text(text),
                Frame::Binary(data) => self.writer.binary(data),
            }
        }
    }

    fn add_charged(&mut self, cost: usize) {
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        self.charged = self.charged.saturating_add(cost);
    }

    /// Everything in the writer was written: what it counted, to give back.
    fn uncharge(&mut self) -> usize {
        std::mem::take(&mut self.charged) as usize
    }

    /// A reply the client provoked doesn't fit: it doesn't read what it asks for.
    fn overflow(&mut self) {
        tracing::debug!(sid = %self.conn.sid, "replies pile up unread: closing the WebSocket");
        let outcome = self.closed_or_abandoned(DisconnectReason::TransportError);
        self.begin_close(outcome, CloseCode::POLICY);
    }

    fn next_deadline(&self) -> Instant {
        if let Some((_, at)) = self.closing {
            return at;
        }
        match self.phase {
            Phase::Probing { deadline } => deadline,
            Phase::Open => {
                let beat = match self.heartbeat {
                    Heartbeat::PingAt(at) | Heartbeat::PongBy(at) => at,
                };
                self.connect_deadline.map_or(beat, |c| c.min(beat))
            }
        }
    }

    fn on_timer(&mut self) -> Option<Outcome> {
        let now = Instant::now();
        if let Some((outcome, at)) = self.closing {
            return (now >= at).then_some(outcome);
        }
        match self.phase {
            Phase::Probing { deadline } => {
                if now >= deadline {
                    return Some(Outcome::UpgradeAbandoned);
                }
            }
            Phase::Open => {
                if let Some(at) = self.connect_deadline {
                    let sio = self.conn.sio();
                    let (connected, connecting) = (sio.is_connected(), sio.is_connecting());
                    drop(sio);
                    if connected {
                        self.connect_deadline = None;
                    } else if connecting && now >= at {
                        // The application is answering a CONNECT that came in time: wait for it.
                        self.connect_deadline = Some(now + CONNECT_RECHECK);
                    } else if now >= at {
                        tracing::debug!(sid = %self.conn.sid, "no CONNECT within the connect timeout");
                        self.begin_close(
                            Outcome::Closed(DisconnectReason::TransportClose),
                            CloseCode::POLICY,
                        );
                        return None;
                    }
                }
                match self.heartbeat {
                    Heartbeat::PingAt(at) if now >= at => {
                        // A socket that left the namespace (`41`) leaves its session without a
                        // connected socket: bounded by the connect timeout again.
                        if self.connect_deadline.is_none() && self.conn.sio().is_unconnected() {
                            self.connect_deadline = Some(now + self.engine.config.connect_timeout);
                        }
                        // One per interval, whatever the client does: counted, never refused.
                        self.charge(1, false);
                        self.writer.text(Frame::PING.into_bytes());
                        self.heartbeat = Heartbeat::PongBy(now + self.engine.config.ping_timeout);
                    }
                    Heartbeat::PongBy(at) if now >= at => {
                        tracing::debug!(sid = %self.conn.sid, "ping timeout");
                        return Some(self.fail(DisconnectReason::PingTimeout));
                    }
                    _ => {}
                }
            }
        }
        None
    }

    fn on_frame(&mut self, message: Message) {
        match message {
            Message::Text(bytes) => {
                // The frame reader checked the UTF-8 already.
                let Ok(text) = std::str::from_utf8(&bytes) else {
                    return;
                };
                self.on_text(text);
            }
            Message::Binary(data) => match self.phase {
                Phase::Probing { .. } => {
                    self.begin_close(Outcome::UpgradeAbandoned, CloseCode::POLICY)
                }
                Phase::Open => {
                    if let Err(reason) =
                        self.engine.on_message(&self.conn, SioMessage::Binary(data))
                    {
                        self.begin_close(Outcome::Closed(reason), CloseCode::NORMAL);
                    }
                }
            },
            Message::Ping(payload) => {
                if self.charge(payload.len(), true) {
                    self.writer.pong(payload);
                } else {
                    self.overflow();
                }
            }
            Message::Pong => {}
            Message::Close(_) => {
                let outcome = self.closed_or_abandoned(DisconnectReason::TransportClose);
                self.begin_close(outcome, CloseCode::NORMAL);
            }
        }
    }

    fn on_text(&mut self, text: &str) {
        let packet = Packet::parse(text);
        match self.phase {
            Phase::Probing { .. } => match packet {
                Ok(Packet::Ping("probe")) => {
                    // A session asked to close (it refused a namespace, say, while the official client
                    // probes) is not upgraded: what it queued goes out in its last `GET`, and no
                    // `3probe` makes the client pause its polling for an upgrade that can't come.
                    if self.conn.socket.0.close_requested().is_some() {
                        return self.begin_close(Outcome::UpgradeAbandoned, CloseCode::GOING_AWAY);
                    }
                    if !self.charge(6, true) {
                        return self.overflow();
                    }
                    self.writer.text(Bytes::from_static(b"3probe"));
                    // Ends the pending polling GET, so that the client can pause polling and send `5`.
                    // Once: a client probing again is answered, but queues nothing more on that side.
                    let first = self.conn.polling.as_ref().is_some_and(|p| p.first_probe());
                    if first && !self.engine.reply(&self.conn, Frame::NOOP) {
                        self.begin_close(Outcome::UpgradeAbandoned, CloseCode::POLICY);
                    }
                }
                Ok(Packet::Upgrade) if self.conn.socket.0.switch_to_websocket() => {
                    if let Some(polling) = &self.conn.polling {
                        polling.stop();
                    }
                    self.phase = Phase::Open;
                    let now = Instant::now();
                    self.heartbeat = Heartbeat::PingAt(now + self.engine.config.ping_interval);
                    // The polling heartbeat enforced the connect timeout until now; carry its deadline on.
                    if !self.conn.sio().is_connected() {
                        self.connect_deadline = self.conn.polling.as_ref().map(|p| p.connect_by);
                    }
                    tracing::debug!(sid = %self.conn.sid, "upgraded to WebSocket");
                }
                _ => self.begin_close(Outcome::UpgradeAbandoned, CloseCode::POLICY),
            },
            Phase::Open => match packet {
                Ok(Packet::Message(data)) => {
                    if let Err(reason) = self.engine.on_message(&self.conn, SioMessage::Text(data))
                    {
                        self.begin_close(Outcome::Closed(reason), CloseCode::NORMAL);
                    }
                }
                Ok(Packet::Pong(_)) => {
                    if let Heartbeat::PongBy(_) = self.heartbeat {
                        self.heartbeat =
                            Heartbeat::PingAt(Instant::now() + self.engine.config.ping_interval);
                    }
                }
                Ok(Packet::Close) => self.begin_close(
                    Outcome::Closed(DisconnectReason::TransportClose),
                    CloseCode::NORMAL,
                ),
                Ok(Packet::Noop) => {}
                Ok(Packet::Ping(_) | Packet::Upgrade) | Err(_) => {
                    tracing::debug!(sid = %self.conn.sid, "closing on an unexpected Engine.IO packet");
                    self.begin_close(
                        Outcome::Closed(DisconnectReason::ParseError),
                        CloseCode::PROTOCOL,
                    );
                }
            },
        }
    }

    /// While probing, a failure only abandons the upgrade; afterwards it ends the session.
    fn closed_or_abandoned(&self, reason: DisconnectReason) -> Outcome {
        match self.phase {
            Phase::Probing { .. } => Outcome::UpgradeAbandoned,
            Phase::Open => Outcome::Closed(reason),
        }
    }

    /// Starts an orderly close: nothing more is accepted for the socket, what is queued goes out (within
    /// the close grace), then the close frame.
    fn begin_close(&mut self, outcome: Outcome, code: CloseCode) {
        if self.closing.is_some() {
            return;
        }
        if let Outcome::Closed(reason) = outcome {
            self.conn.socket.0.request_close(reason, false);
        }
        if matches!(self.phase, Phase::Open) {
            let (frames, cost) = self.conn.socket.0.take_all();
            self.write_frames(frames, cost);
        }
        self.writer.close(code);
        self.closing = Some((outcome, Instant::now() + CLOSE_GRACE));
    }

    /// Ends at once, without a close frame (the stream is gone or the peer is unresponsive).
    fn fail(&mut self, reason: DisconnectReason) -> Outcome {
        let outcome = self.closed_or_abandoned(reason);
        if let Outcome::Closed(reason) = outcome {
            self.conn.socket.0.request_close(reason, false);
        }
        outcome
    }
}

/// The close code for a close the socket asked for.
fn close_code(reason: DisconnectReason) -> CloseCode {
    match reason {
        DisconnectReason::ServerShutdown => CloseCode::GOING_AWAY,
        // A reply the client provoked didn't fit in the queue.
        DisconnectReason::TransportError => CloseCode::POLICY,
        _ => CloseCode::NORMAL,
    }
}

impl Frame {
    fn into_bytes(self) -> Bytes {
        match self {
            Frame::Text(b) | Frame::Binary(b) => b,
        }
    }
}
