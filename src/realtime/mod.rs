//! Socket events: from an incoming event to a call into `chat`, and from its result to the ack
//! envelope. Transport-agnostic: the Socket.IO layer hands events in, in arrival order.

mod admission;
mod session;
mod socketio;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use serde_json::{Value, json};

pub use session::Sessions;
pub use socketio::SioHandler;

use crate::auth::{AuthFailure, Identity, Verifier};
use crate::chat::{Actor, Chat};
use crate::domain::requests::{
    ChangeMembers, ConversationRef, CreateConversation, DeleteMessage, EditMessage, History,
    MarkRead, PresenceQuery, Refresh, SendMessage, Sync,
};
use crate::domain::{Timestamp, UserId};
use crate::error::{Error, Result, ok_envelope};
use crate::hub::{Outbound, SocketKey};
use crate::limits::{Bucket, Limiter};

/// Answers an event: called at most once with the envelope. Provided by the transport.
pub type Ack = Box<dyn FnOnce(Value) + Send>;

/// One authenticated socket.
pub struct Connection {
    pub key: SocketKey,
    pub user: UserId,
    /// When the session ends, in milliseconds since the epoch; `auth:refresh` moves it.
    pub expires_at: AtomicI64,
    pub outbound: Arc<dyn Outbound>,
    /// Every log line about this socket carries its user and key.
    pub span: tracing::Span,
}

impl Connection {
    fn actor(&self) -> Actor {
        Actor {
            user: self.user.clone(),
            socket: Some(self.key),
        }
    }
}

/// Why a handshake was refused: the `connect_error` message and its `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub message: &'static str,
    pub data: Value,
}

impl Refusal {
    fn new(code: &'static str, extra: Value) -> Self {
        let mut data = json!({ "code": code });
        if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
            data.extend(extra);
        }
        Self {
            message: code,
            data,
        }
    }

    pub fn unauthorized(failure: AuthFailure) -> Self {
        Self::new("unauthorized", json!({ "reason": failure.reason() }))
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

    /// Verifies the token in a handshake's `auth` payload.
    fn authenticate(&self, auth: Option<&Value>) -> Result<Identity, AuthFailure> {
        let auth: Auth = match auth {
            None | Some(Value::Null) => return Err(AuthFailure::Missing),
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| AuthFailure::Invalid)?,
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
        auth: Option<&Value>,
        remote: Option<IpAddr>,
        outbound: Arc<dyn Outbound>,
    ) -> Result<Arc<Connection>, Refusal> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new("unavailable", json!({})));
        }
        if let Some(ip) = remote
            && let Err(retry_after_ms) = self.limiter.check_connect(ip)
        {
            return Err(Refusal::new(
                "rate_limited",
                json!({ "retry_after_ms": retry_after_ms }),
            ));
        }
        let identity = self.authenticate(auth).map_err(Refusal::unauthorized)?;
        let cap = self.limiter.max_sockets_per_user;
        if self.chat.hub().socket_count(&identity.user_id) >= cap {
            return Err(Refusal::new(
                "too_many_connections",
                json!({ "limit": cap }),
            ));
        }
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.chat.connect(&identity, key, outbound.clone()).await {
            // Logged with its cause by `body()`; the client learns only that it may retry.
            let _ = e.body();
            return Err(Refusal::new("unavailable", json!({})));
        }
        let span = tracing::info_span!("socket", user = %identity.user_id, key);
        let conn = Arc::new(Connection {
            key,
            user: identity.user_id,
            expires_at: AtomicI64::new(identity.expires_at.millis()),
            outbound,
            span,
        });
        self.sessions.schedule(&conn);
        tracing::debug!(parent: &conn.span, remote = ?remote, "socket connected");
        Ok(conn)
    }

    pub fn disconnect(&self, conn: &Connection) {
        tracing::debug!(parent: &conn.span, "socket disconnected");
        self.sessions.remove(conn.key);
        self.chat.disconnect(&conn.user, conn.key);
    }

    /// Handles one event. Called synchronously in the order the socket's events arrived; sends
    /// are queued for the writer before this returns, which keeps them in that order. Events
    /// that need the database run on their own task.
    pub fn on_event(&self, conn: &Arc<Connection>, name: &str, payload: Value, ack: Option<Ack>) {
        let _span = conn.span.enter();
        metrics::counter!("confab_events_total", "event" => event_label(name)).increment(1);
        // Sends are answered from the writer's task: enter the span again there, so that a
        // failure logged while answering names its socket.
        let span = conn.span.clone();
        let respond = move |result: Result<Value>| {
            let _span = span.enter();
            let envelope = match result {
                Ok(data) => {
                    metrics::counter!("confab_acks_total", "code" => "ok").increment(1);
                    ok_envelope(data)
                }
                Err(e) => {
                    metrics::counter!("confab_acks_total", "code" => e.code()).increment(1);
                    e.envelope()
                }
            };
            if let Some(ack) = ack {
                ack(envelope);
            }
        };
        if let Err(e) = self.limiter.check(&conn.user, Bucket::of_event(name)) {
            return respond(Err(e));
        }
        let actor = conn.actor();
        match name {
            "message:send" => match SendMessage::parse(payload, self.chat.limits()) {
                Ok(request) => self.chat.send_message(&actor, request, move |r| {
                    respond(r.map(|sent| json!({ "message": sent.message })))
                }),
                Err(e) => respond(Err(e)),
            },
            "typing:start" => respond(
                ConversationRef::parse(payload)
                    .and_then(|r| self.chat.typing_start(&actor, r))
                    .map(|()| json!({})),
            ),
            "typing:stop" => respond(
                ConversationRef::parse(payload)
                    .and_then(|r| self.chat.typing_stop(&actor, r))
                    .map(|()| json!({})),
            ),
            "auth:refresh" => respond(self.refresh(conn, payload)),
            _ => {
                let chat = self.chat.clone();
                let name = name.to_owned();
                let task = async move {
                    respond(handle(&chat, &actor, &name, payload).await);
                };
                tokio::spawn(tracing::Instrument::instrument(task, conn.span.clone()));
            }
        }
    }

    /// `auth:refresh`: a fresh token for the same user extends the session.
    fn refresh(&self, conn: &Arc<Connection>, payload: Value) -> Result<Value> {
        let request = Refresh::parse(payload)?;
        let identity = self
            .verifier
            .verify(&request.token)
            .map_err(Error::Unauthorized)?;
        if identity.user_id != conn.user {
            // Another user's token can't take over this socket.
            return Err(Error::Unauthorized(AuthFailure::Invalid));
        }
        conn.expires_at
            .store(identity.expires_at.millis(), Ordering::Relaxed);
        self.sessions.schedule(conn);
        Ok(json!({ "expires_at": Timestamp(identity.expires_at.millis()) }))
    }
}

/// The events that need the database (other than `message:send`).
async fn handle(chat: &Chat, actor: &Actor, name: &str, payload: Value) -> Result<Value> {
    Ok(match name {
        "conversation:create" => {
            let (conversation, _) = chat
                .create_conversation(actor, CreateConversation::parse(payload)?)
                .await?;
            json!({ "conversation": conversation })
        }
        "conversation:list" => {
            let conversations = chat.list_conversations(actor).await?;
            json!({ "conversations": conversations })
        }
        "conversation:members:add" => {
            let conversation = chat
                .add_members(actor, ChangeMembers::parse(payload)?)
                .await?;
            json!({ "conversation": conversation })
        }
        "conversation:members:remove" => {
            let conversation = chat
                .remove_members(actor, ChangeMembers::parse(payload)?)
                .await?;
            json!({ "conversation": conversation })
        }
        "conversation:leave" => {
            let id = chat.leave(actor, ConversationRef::parse(payload)?).await?;
            json!({ "conversation_id": id })
        }
        "conversation:read" => {
            let request = MarkRead::parse(payload)?;
            let (mark, unread) = chat.mark_read(actor, request).await?;
            json!({
                "conversation_id": request.conversation_id,
                "last_read_seq": mark,
                "unread_count": unread,
            })
        }
        "message:edit" => {
            let message = chat
                .edit_message(actor, EditMessage::parse(payload, chat.limits())?)
                .await?;
            json!({ "message": message })
        }
        "message:delete" => {
            let message = chat
                .delete_message(actor, DeleteMessage::parse(payload)?)
                .await?;
            json!({ "message": message })
        }
        "message:history" => {
            let page = chat.history(actor, History::parse(payload)?).await?;
            json!({ "messages": page.messages, "has_more": page.has_more })
        }
        "sync" => {
            let (updates, server_time) = chat.sync(actor, Sync::parse(payload)?).await?;
            let updates: Vec<Value> = updates
                .into_iter()
                .map(|u| {
                    json!({
                        "conversation_id": u.conversation_id,
                        "messages": u.messages,
                        "has_more": u.has_more,
                        "changed": u.changed,
                        "changed_has_more": u.changed_has_more,
                    })
                })
                .collect();
            json!({ "updates": updates, "server_time": server_time })
        }
        "presence:get" => {
            let presence = chat.presence(actor, PresenceQuery::parse(payload)?).await?;
            json!({ "presence": presence })
        }
        other => {
            return Err(Error::InvalidPayload {
                field: None,
                message: format!("unknown event {:?}", truncate(other, 64)),
            });
        }
    })
}

/// Event names as metric labels: the known ones, and "unknown" for anything a client makes up
/// (a label per made-up name would let any client grow the metrics without bound).
fn event_label(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "message:send",
        "message:edit",
        "message:delete",
        "message:history",
        "sync",
        "conversation:create",
        "conversation:list",
        "conversation:members:add",
        "conversation:members:remove",
        "conversation:leave",
        "conversation:read",
        "typing:start",
        "typing:stop",
        "presence:get",
        "auth:refresh",
    ];
    KNOWN
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("unknown")
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
