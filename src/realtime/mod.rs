//! Socket events: from an incoming event to a call into `chat`, and from its result to the ack
//! envelope. Transport-agnostic: the Socket.IO layer hands events in, in arrival order.

mod socketio;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

pub use socketio::layer;

use crate::auth::{AuthFailure, Identity, Verifier};
use crate::chat::{Actor, Chat};
use crate::domain::requests::{
    ChangeMembers, ConversationRef, CreateConversation, DeleteMessage, EditMessage, History,
    SendMessage, Sync,
};
use crate::error::{Error, Result, ok_envelope};
use crate::hub::{Outbound, SocketKey};

/// Answers an event: called at most once with the envelope. Provided by the transport.
pub type Ack = Box<dyn FnOnce(Value) + Send>;

/// One authenticated socket.
pub struct Connection {
    pub key: SocketKey,
    pub identity: Identity,
}

impl Connection {
    fn actor(&self) -> Actor {
        Actor {
            user: self.identity.user_id.clone(),
            socket: Some(self.key),
        }
    }
}

/// The event dispatcher, shared by all sockets.
#[derive(Clone)]
pub struct Realtime {
    chat: Chat,
    verifier: Arc<Verifier>,
    next_key: Arc<AtomicU64>,
}

/// The handshake's `auth` payload, as far as we read it.
#[derive(serde::Deserialize)]
struct Auth {
    token: Option<serde_json::Value>,
}

impl Realtime {
    pub fn new(chat: Chat, verifier: Arc<Verifier>) -> Self {
        Self {
            chat,
            verifier,
            next_key: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Verifies the token in a handshake's `auth` payload.
    pub fn authenticate(&self, auth: Option<&Value>) -> Result<Identity, AuthFailure> {
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

    /// Registers an authenticated socket and loads its memberships. Only once this returns is
    /// the socket told it is connected.
    pub async fn connect(
        &self,
        identity: Identity,
        outbound: Arc<dyn Outbound>,
    ) -> Result<Arc<Connection>> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.chat.connect(&identity, key, outbound).await?;
        tracing::debug!(user = %identity.user_id, key, "socket connected");
        Ok(Arc::new(Connection { key, identity }))
    }

    pub fn disconnect(&self, conn: &Connection) {
        tracing::debug!(user = %conn.identity.user_id, key = conn.key, "socket disconnected");
        self.chat.disconnect(&conn.identity.user_id, conn.key);
    }

    /// Handles one event. Called synchronously in the order the socket's events arrived; sends
    /// are queued for the writer before this returns, which keeps them in that order. Other
    /// events run on their own task.
    pub fn on_event(&self, conn: &Arc<Connection>, name: &str, payload: Value, ack: Option<Ack>) {
        let respond = move |result: Result<Value>| {
            let envelope = match result {
                Ok(data) => ok_envelope(data),
                Err(e) => e.envelope(),
            };
            if let Some(ack) = ack {
                ack(envelope);
            }
        };
        if name == "message:send" {
            match SendMessage::parse(payload, self.chat.limits()) {
                Ok(request) => self.chat.send_message(&conn.actor(), request, move |r| {
                    respond(r.map(|sent| json!({ "message": sent.message })))
                }),
                Err(e) => respond(Err(e)),
            }
            return;
        }
        let chat = self.chat.clone();
        let actor = conn.actor();
        let name = name.to_owned();
        tokio::spawn(async move {
            let result = handle(&chat, &actor, &name, payload).await;
            respond(result);
        });
    }
}

/// Every event other than `message:send`.
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
            let updates = chat.sync(actor, Sync::parse(payload)?).await?;
            let updates: Vec<Value> = updates
                .into_iter()
                .map(|u| {
                    json!({
                        "conversation_id": u.conversation_id,
                        "messages": u.messages,
                        "has_more": u.has_more,
                    })
                })
                .collect();
            json!({ "updates": updates })
        }
        other => {
            return Err(Error::InvalidPayload {
                field: None,
                message: format!("unknown event {:?}", truncate(other, 64)),
            });
        }
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
