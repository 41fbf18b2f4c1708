//! Socket events: from an incoming event to a call into `chat`, and from its result to the ack
//! envelope. Transport-agnostic: the Socket.IO layer (`socketio.rs`) hands events in, in
//! arrival order, as a name and the payload's raw JSON.

mod admission;
mod session;
mod socketio;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;

pub use admission::SessionLimits;
pub use session::{Session, Sessions};
pub use socketio::SioHandler;

use crate::auth::{AuthFailure, Identity, Verifier};
use crate::chat::{Actor, Chat, Done};
use crate::domain::{Timestamp, UserId};
use crate::error::{Error, Result};
use crate::hub::{Outbound, SocketKey};
use crate::limits::Limiter;
use crate::protocol::command::unknown_event;
use crate::protocol::requests::Refresh;
use crate::protocol::{ClientEvent, Command, Envelope, Reply, Request};

/// Sends one answer's encoded envelope to the client. Provided by the transport.
pub type AckSender = Box<dyn FnOnce(&Envelope<'_, Reply>) + Send>;

/// One authenticated socket: whose it is, and its session.
pub struct UserSocket {
    pub key: SocketKey,
    pub user: UserId,
    pub session: Arc<Session>,
    /// Every log line about this socket carries its user and key.
    pub span: tracing::Span,
}

impl UserSocket {
    fn actor(&self) -> Actor {
        Actor {
            user: self.user.clone(),
            socket: Some(self.key),
        }
    }
}

/// Why a handshake was refused: the `connect_error` message (its code) and its `data`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectRefusal {
    #[serde(skip)]
    pub message: &'static str,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl ConnectRefusal {
    fn new(code: &'static str) -> Self {
        Self {
            message: code,
            code,
            reason: None,
            retry_after_ms: None,
            limit: None,
        }
    }

    pub fn unauthorized(failure: AuthFailure) -> Self {
        Self {
            reason: Some(failure.reason()),
            ..Self::new("unauthorized")
        }
    }

    /// The `data` of the `connect_error`.
    pub fn data(&self) -> Value {
        serde_json::to_value(self).expect("a refusal serializes")
    }
}

/// The answer to one event: encodes the envelope, counts it, and hands it to the transport.
/// Sends are answered from the writer's task: it enters the socket's span there, so that a
/// failure logged while answering names its socket.
struct Answer {
    span: tracing::Span,
    ack: Option<AckSender>,
}

impl Answer {
    fn send(self, result: Result<Reply>) {
        let _span = self.span.enter();
        let code = match &result {
            Ok(_) => "ok",
            Err(e) => {
                e.log();
                e.code()
            }
        };
        metrics::counter!("confab_acks_total", "code" => code).increment(1);
        if let Some(ack) = self.ack {
            ack(&Envelope::of(&result));
        }
    }

    fn into_done(self) -> Done {
        Box::new(move |result| self.send(result))
    }
}

/// The event dispatcher, shared by all sockets.
#[derive(Clone)]
pub struct Realtime {
    chat: Chat,
    verifier: Arc<Verifier>,
    limiter: Limiter,
    sessions: Sessions,
    next_key: Arc<AtomicU64>,
    /// Set when the server is shutting down: new sockets are sent elsewhere.
    shutting_down: Arc<AtomicBool>,
}

/// The handshake's `auth` payload, as far as we read it.
#[derive(serde::Deserialize)]
struct Auth {
    token: Option<Value>,
}

impl Realtime {
    pub fn new(
        chat: Chat,
        verifier: Arc<Verifier>,
        limiter: Limiter,
        sessions: Sessions,
        shutting_down: Arc<AtomicBool>,
    ) -> Self {
        Self {
            chat,
            verifier,
            limiter,
            sessions,
            next_key: Arc::new(AtomicU64::new(1)),
            shutting_down,
        }
    }

    /// Verifies the token in a handshake's `auth` payload (raw JSON, when there is one).
    fn authenticate(&self, auth: Option<&str>) -> Result<Identity, AuthFailure> {
        let auth: Auth = match auth.map(str::trim) {
            None | Some("null") => return Err(AuthFailure::Missing),
            Some(raw) => serde_json::from_str(raw).map_err(|_| AuthFailure::Invalid)?,
        };
        match auth.token {
            None | Some(Value::Null) => Err(AuthFailure::Missing),
            Some(Value::String(token)) => self.verifier.verify(&token),
            Some(_) => Err(AuthFailure::Invalid),
        }
    }

    /// A client asked to connect: rate-limit its address, verify its token, enforce the
    /// per-user socket cap, then register it and load its memberships. Only once this returns
    /// `Ok` is the socket told it is connected, so nothing reaches it before.
    pub async fn connect(
        &self,
        auth: Option<&str>,
        remote: Option<IpAddr>,
        outbound: Arc<dyn Outbound>,
    ) -> Result<UserSocket, ConnectRefusal> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(ConnectRefusal::new("unavailable"));
        }
        if let Some(ip) = remote
            && let Err(retry_after_ms) = self.limiter.check_connect(ip)
        {
            tracing::debug!(remote = ?remote, "handshake refused: rate_limited");
            return Err(ConnectRefusal {
                retry_after_ms: Some(retry_after_ms),
                ..ConnectRefusal::new("rate_limited")
            });
        }
        // Why a token was refused is the first thing an integrator needs to see; the token
        // itself never reaches the log.
        let identity = self.authenticate(auth).map_err(|failure| {
            tracing::info!(remote = ?remote, reason = failure.reason(), "handshake refused: unauthorized");
            ConnectRefusal::unauthorized(failure)
        })?;
        let cap = self.limiter.max_sockets_per_user;
        if self.chat.sockets_of(&identity.user_id) >= cap {
            tracing::info!(user = %identity.user_id, limit = cap, "handshake refused: too_many_connections");
            return Err(ConnectRefusal {
                limit: Some(cap),
                ..ConnectRefusal::new("too_many_connections")
            });
        }
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        match self.chat.connect(&identity, key, outbound.clone()).await {
            Ok(()) => {}
            // Banned by the host app.
            Err(Error::Unauthorized(failure)) => {
                tracing::info!(user = %identity.user_id, reason = failure.reason(), "handshake refused: unauthorized");
                return Err(ConnectRefusal::unauthorized(failure));
            }
            Err(e) => {
                // Logged with its cause; the client learns only that it may retry.
                e.log();
                return Err(ConnectRefusal::new("unavailable"));
            }
        }
        let span = tracing::info_span!("socket", user = %identity.user_id, key);
        let conn = UserSocket {
            key,
            user: identity.user_id,
            session: Arc::new(Session::new(key, identity.expires_at, outbound)),
            span,
        };
        self.sessions.schedule(&conn.session);
        tracing::debug!(parent: &conn.span, remote = ?remote, "socket connected");
        Ok(conn)
    }

    pub fn disconnect(&self, conn: &UserSocket) {
        tracing::debug!(parent: &conn.span, "socket disconnected");
        self.sessions.remove(conn.key);
        self.chat.disconnect(&conn.user, conn.key);
    }

    /// Handles one event: checks its bucket, parses it once, and hands it to `chat`. Called
    /// synchronously in the order the socket's events arrived; sends are queued for the writer
    /// before this returns, which keeps them in that order. Requests that need the database run
    /// on their own task.
    pub fn on_event(
        &self,
        conn: &Arc<UserSocket>,
        name: &str,
        payload: &str,
        ack: Option<AckSender>,
    ) {
        let _span = conn.span.enter();
        let answer = Answer {
            span: conn.span.clone(),
            ack,
        };
        let Some(event) = ClientEvent::of(name) else {
            // A label per made-up name would let any client grow the metrics without bound.
            metrics::counter!("confab_events_total", "event" => "unknown").increment(1);
            return answer.send(Err(unknown_event(name)));
        };
        metrics::counter!("confab_events_total", "event" => event.name()).increment(1);
        if let Err(e) = self.limiter.check(&conn.user, event.bucket()) {
            return answer.send(Err(e));
        }
        let request = match event.parse(payload, self.chat.limits()) {
            Ok(Command::Chat(request)) => request,
            Ok(Command::Refresh(refresh)) => return answer.send(self.refresh(conn, refresh)),
            Err(e) => return answer.send(Err(e)),
        };
        if let Err(e) = self.limiter.charge_members(&conn.user, &request) {
            return answer.send(Err(e));
        }
        let actor = conn.actor();
        match request {
            Request::SendMessage(send) => self.chat.send_message(&actor, send, answer.into_done()),
            Request::TypingStart(_) | Request::TypingStop(_) => {
                answer.send(self.chat.typing(&actor, &request))
            }
            request => {
                let chat = self.chat.clone();
                let task = async move { answer.send(chat.execute(&actor, request).await) };
                tokio::spawn(tracing::Instrument::instrument(task, conn.span.clone()));
            }
        }
    }

    /// `auth:refresh`: a fresh token for the same user extends the session.
    fn refresh(&self, conn: &UserSocket, request: Refresh) -> Result<Reply> {
        let identity = self
            .verifier
            .verify(&request.token)
            .map_err(Error::Unauthorized)?;
        if identity.user_id != conn.user {
            // Another user's token can't take over this socket.
            return Err(Error::Unauthorized(AuthFailure::Invalid));
        }
        // A token that doesn't end later renews nothing. Refused rather than acknowledged, so a
        // client re-sending a cached token learns it can't renew, and the session's warning is
        // not scheduled again for the same expiry (it was once sent again at once, each time).
        if identity.expires_at <= conn.session.expires_at() {
            return Err(Error::invalid(
                "token",
                "does not extend the session (its exp is not later than the session's end)",
            ));
        }
        conn.session.extend_to(identity.expires_at);
        self.sessions.schedule(&conn.session);
        Ok(Reply::Refreshed {
            expires_at: Timestamp(identity.expires_at.millis()),
        })
    }
}
