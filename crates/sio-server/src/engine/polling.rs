//! Engine.IO over HTTP long-polling: `GET` waits for queued packets, `POST` delivers the client's, and a
//! small task per session keeps the heartbeat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::engine::packet::{self, Frame, Packet, PayloadItem};
use crate::engine::{CLOSE_GRACE, Connection, Engine};
use crate::handler::{DisconnectReason, Handler};
use crate::http::{BoxError, EngineError, engine_error};
use crate::socket::{Taken, Transport};
use crate::socketio::Message;

/// The polling side of a session.
pub(crate) struct PollingState {
    /// A `GET` is waiting; a second one at the same time is a protocol violation.
    get_busy: AtomicBool,
    /// A `POST` is being handled; overlapping ones are refused the same way.
    post_busy: AtomicBool,
    /// A pong arrived since the last ping.
    pong: AtomicBool,
    /// The heartbeat task should end (the session closed or moved to WebSocket).
    stopped: AtomicBool,
    /// A WebSocket is probing an upgrade of this session.
    upgrading: AtomicBool,
    /// The probing WebSocket got its first `2probe` (and the noop that ends the pending `GET` is queued).
    probed: AtomicBool,
    /// The client closed the session (a close packet in a `POST`): a pending `GET` ends with a noop,
    /// as the reference server answers it, rather than with a close packet.
    client_closed: AtomicBool,
    /// Wakes the heartbeat task on a pong, a stop or a close.
    wake: Notify,
    /// The task of a WebSocket probing an upgrade, woken when the session ends so that it ends too.
    prober: Mutex<Option<Waker>>,
    /// Headers added to every response of the session (from `Handler::check_request`).
    pub(crate) headers: HeaderMap,
    /// When the session must have a connected socket (the connect timeout, kept across an upgrade).
    pub(crate) connect_by: Instant,
}

impl PollingState {
    pub(crate) fn new(headers: HeaderMap, connect_by: Instant) -> Self {
        Self {
            connect_by,
            get_busy: AtomicBool::new(false),
            post_busy: AtomicBool::new(false),
            pong: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            upgrading: AtomicBool::new(false),
            probed: AtomicBool::new(false),
            client_closed: AtomicBool::new(false),
            wake: Notify::new(),
            prober: Mutex::new(None),
            headers,
        }
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let prober = self.prober.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = prober {
            waker.wake();
        }
    }

    /// For a WebSocket probing an upgrade: whether the polling session has ended (or completed the
    /// upgrade); otherwise `cx` is woken when it does.
    pub(crate) fn poll_stopped(&self, cx: &mut Context<'_>) -> bool {
        if self.stopped.load(Ordering::SeqCst) {
            return true;
        }
        let mut prober = self.prober.lock().unwrap_or_else(|e| e.into_inner());
        if !prober.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *prober = Some(cx.waker().clone());
        }
        drop(prober);
        self.stopped.load(Ordering::SeqCst)
    }

    /// Tells the heartbeat a close was asked for, so that it ends the session if no `GET` comes to take
    /// the last packets.
    fn closing(&self) {
        self.wake.notify_one();
    }

    /// Claims the session for an upgrade; `false` if another WebSocket is already probing it.
    pub(crate) fn begin_upgrade(&self) -> bool {
        let claimed = !self.upgrading.swap(true, Ordering::SeqCst);
        if claimed {
            self.probed.store(false, Ordering::SeqCst);
        }
        claimed
    }

    /// Whether this is the upgrade's first probe: only that one queues a noop.
    pub(crate) fn first_probe(&self) -> bool {
        !self.probed.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn end_upgrade(&self) {
        self.upgrading.store(false, Ordering::SeqCst);
    }
}

/// Clears a busy flag when the request ends, however it ends (hyper drops the future of a request whose
/// client went away).
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl<H: Handler> Engine<H> {
    /// Answers the handshake `GET` of a new polling session and starts its heartbeat.
    pub(crate) fn polling_open(self: &Arc<Self>, conn: Arc<Connection<H>>) -> Response<Bytes> {
        let polling = conn.polling.as_ref().expect("a polling session");
        let body = packet::open_packet(&conn.sid, true, &self.config);
        let response = polling_response(
            StatusCode::OK,
            "text/plain; charset=UTF-8",
            body,
            &polling.headers,
        );
        tokio::spawn(heartbeat(self.clone(), conn));
        response
    }

    /// A long-polling `GET`: waits until packets are queued, then returns them all.
    pub(crate) async fn polling_get(&self, conn: &Arc<Connection<H>>) -> Response<Bytes> {
        let polling = conn.polling.as_ref().expect("a polling session");
        if conn.socket.transport() != Transport::Polling {
            return engine_error(EngineError::BadRequest);
        }
        if polling.get_busy.swap(true, Ordering::SeqCst) {
            tracing::debug!(sid = %conn.sid, "overlapping GET requests: closing the session");
            self.finish(conn, DisconnectReason::TransportError);
            return engine_error(EngineError::BadRequest);
        }
        let _busy = Busy(&polling.get_busy);

        let taken = std::future::poll_fn(|cx| {
            // An upgrade took the queue over: end this request with a noop.
            if conn.socket.transport() != Transport::Polling {
                return Poll::Ready(None);
            }
            conn.socket.0.poll_take(cx, 0, true).map(Some)
        })
        .await;
        let body = match taken {
            None => Bytes::from_static(b"6"),
            Some(Taken::Frames(frames, cost, _close)) => {
                // Out of the queue and into this response: no longer held for the session.
                conn.socket.0.release(cost);
                // A pending close is not sent with these packets but in the next response (or by
                // the heartbeat, when no GET comes within the close grace). The official client
                // hands a payload's packets on a tick later but acts on a close packet at once,
                // so a last event and a `41` sent with a close were dropped (a ban's
                // `session:ended`). The reference server closes once the buffer drained, too.
                let frames: Vec<Frame> = frames.into();
                packet::encode_payload(&frames)
            }
            Some(Taken::Close(reason)) => {
                self.finish(conn, reason);
                Bytes::from_static(b"1")
            }
            // The client closed the session itself: the reference server ends the pending GET with a
            // noop (its polling transport is merely released), and a close packet would tell the
            // client nothing it doesn't know.
            Some(Taken::Closed) if polling.client_closed.load(Ordering::SeqCst) => {
                Bytes::from_static(b"6")
            }
            Some(Taken::Closed) => Bytes::from_static(b"1"),
        };
        polling_response(
            StatusCode::OK,
            "text/plain; charset=UTF-8",
            body,
            &polling.headers,
        )
    }

    /// A long-polling `POST`: delivers the client's packets, in order, before answering `ok`.
    pub(crate) async fn polling_post<B>(
        self: &Arc<Self>,
        conn: &Arc<Connection<H>>,
        headers: &HeaderMap,
        body: B,
    ) -> Response<Bytes>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let polling = conn.polling.as_ref().expect("a polling session");
        if conn.socket.transport() != Transport::Polling {
            return engine_error(EngineError::BadRequest);
        }
        if polling.post_busy.swap(true, Ordering::SeqCst) {
            tracing::debug!(sid = %conn.sid, "overlapping POST requests: closing the session");
            self.finish(conn, DisconnectReason::TransportError);
            return engine_error(EngineError::BadRequest);
        }
        let _busy = Busy(&polling.post_busy);
        if conn.socket.0.close_requested().is_some() {
            // Closing: what the client sends now goes nowhere; its next GET ends the session.
            return polling_response(
                StatusCode::OK,
                "text/html",
                Bytes::from_static(b"ok"),
                &polling.headers,
            );
        }

        let max = self.config.max_payload;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            self.finish(conn, DisconnectReason::TransportError);
            return too_large();
        }
        let data = match Limited::new(body, max).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let e: BoxError = e;
                if e.is::<http_body_util::LengthLimitError>() {
                    self.finish(conn, DisconnectReason::TransportError);
                    return too_large();
                }
                tracing::debug!(sid = %conn.sid, error = %e, "reading a polling body failed");
                return engine_error(EngineError::BadRequest);
            }
        };
        let Ok(text) = std::str::from_utf8(&data) else {
            self.finish(conn, DisconnectReason::ParseError);
            return engine_error(EngineError::BadRequest);
        };

        for item in packet::decode_payload(text) {
            let result = match item {
                Ok(PayloadItem::Binary(data)) => self.on_message(conn, Message::Binary(data)),
                Ok(PayloadItem::Text(text)) => match Packet::parse(text) {
                    Ok(Packet::Message(data)) => self.on_message(conn, Message::Text(data)),
                    Ok(Packet::Pong(_)) => {
                        polling.pong.store(true, Ordering::SeqCst);
                        polling.wake.notify_one();
                        Ok(())
                    }
                    Ok(Packet::Close) => {
                        polling.client_closed.store(true, Ordering::SeqCst);
                        Err(DisconnectReason::TransportClose)
                    }
                    Ok(Packet::Noop) => Ok(()),
                    Ok(Packet::Ping(_) | Packet::Upgrade) | Err(_) => {
                        self.finish(conn, DisconnectReason::ParseError);
                        return engine_error(EngineError::BadRequest);
                    }
                },
                Err(_) => {
                    self.finish(conn, DisconnectReason::ParseError);
                    return engine_error(EngineError::BadRequest);
                }
            };
            if let Err(reason) = result {
                match reason {
                    // The client is leaving: nothing queued for it matters.
                    DisconnectReason::TransportClose => self.finish(conn, reason),
                    // What is queued (a refusal, say) goes out with the close packet at the next GET.
                    _ => {
                        conn.socket.0.request_close(reason, false);
                        polling.closing();
                    }
                }
                break;
            }
        }
        polling_response(
            StatusCode::OK,
            "text/html",
            Bytes::from_static(b"ok"),
            &polling.headers,
        )
    }
}

fn too_large() -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(
        br#"{"code":3,"message":"Payload too large"}"#,
    ));
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn polling_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    extra: &HeaderMap,
) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in extra {
        headers.append(name, value.clone());
    }
    response
}

/// The heartbeat of a polling session: queue a ping every ping interval and close the session if the pong
/// doesn't come within the ping timeout. Also enforces the connect timeout, and ends a session asked to
/// close that no `GET` came for within the close grace. Ends when the session closes or upgrades (the
/// WebSocket task keeps the heartbeat from then on).
async fn heartbeat<H: Handler>(engine: Arc<Engine<H>>, conn: Arc<Connection<H>>) {
    let Some(polling) = conn.polling.as_ref() else {
        return;
    };
    let config = &engine.config;
    let mut connect_deadline = Some(polling.connect_by);
    let mut ping_at = Instant::now() + config.ping_interval;
    let mut pong_by: Option<Instant> = None;
    let mut close_by: Option<Instant> = None;
    loop {
        let beat = pong_by.unwrap_or(ping_at);
        let deadline = [connect_deadline, close_by]
            .into_iter()
            .flatten()
            .fold(beat, Instant::min);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = polling.wake.notified() => {}
        }
        if polling.stopped.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        if let Some(reason) = conn.socket.0.close_requested() {
            match close_by {
                None => close_by = Some(now + CLOSE_GRACE),
                Some(at) if now >= at => {
                    tracing::debug!(sid = %conn.sid, "no GET took the last packets: closing");
                    engine.finish(&conn, reason);
                    return;
                }
                Some(_) => {}
            }
            continue;
        }
        if let Some(at) = connect_deadline {
            let sio = conn.sio();
            let (connected, connecting) = (sio.is_connected(), sio.is_connecting());
            drop(sio);
            if connected {
                connect_deadline = None;
            } else if connecting && now >= at {
                // The application is answering a CONNECT that came in time: wait for it.
                connect_deadline = Some(now + super::CONNECT_RECHECK);
            } else if now >= at {
                tracing::debug!(sid = %conn.sid, "no CONNECT within the connect timeout");
                engine.finish(&conn, DisconnectReason::TransportClose);
                return;
            }
        }
        match pong_by {
            Some(_) if polling.pong.swap(false, Ordering::SeqCst) => {
                pong_by = None;
                ping_at = now + config.ping_interval;
            }
            Some(by) if now >= by => {
                tracing::debug!(sid = %conn.sid, "ping timeout");
                engine.finish(&conn, DisconnectReason::PingTimeout);
                return;
            }
            Some(_) => {}
            None if now >= ping_at => {
                // A socket that left the namespace (`41`) leaves its session without a connected
                // socket: bounded by the connect timeout again.
                if connect_deadline.is_none() && conn.sio().is_unconnected() {
                    connect_deadline = Some(now + config.connect_timeout);
                }
                polling.pong.store(false, Ordering::SeqCst);
                if !engine.reply(&conn, Frame::PING) {
                    return;
                }
                pong_by = Some(now + config.ping_timeout);
            }
            None => {}
        }
    }
}
