//! The use cases of chat, shared by the Socket.IO events and the HTTP routes: check the rules,
//! write through the store, then deliver through the hub. Persist first, deliver after: the
//! database is the source of truth.
//!
//! The adapters (`realtime`, `http`) see only what is here: a socket's life (`connect`,
//! `disconnect`), [`Chat::execute`] for every request, [`Chat::send_message`] for a socket's
//! sends (queued in arrival order), and what readiness and shutdown need. The store, the hub
//! and the rest stay inside.

mod attachments;
mod conversations;
mod messages;
pub mod policy;
pub mod presence;
mod reconcile;
// The host app's server API: a block of its own.
mod server;
pub mod typing;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::auth::Identity;
use crate::bus::BusStats;
use crate::domain::{Limits, UserId};
use crate::error::{Error, Result};
use crate::hub::{Except, Hub, Outbound, Outgoing, SocketKey};
use crate::protocol::Request;
use crate::protocol::events::ServerShutdown;
use crate::protocol::replies::Reply;
use crate::protocol::requests::ConversationRef;
use crate::store::{Store, Writer};
use presence::Presence;
use typing::Typing;

pub use attachments::{AttachmentSettings, Download, MAX_UNSENT, Upload};
use messages::AfterCommit;
pub use messages::SYNC_PAGE;

/// How long a connect waits for Redis to confirm its subscriptions before going ahead anyway.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);

/// Answers one request, once. For a socket's send it runs on the writer's task right after
/// the commit, so it must not wait: encode the ack and queue it, nothing more.
pub type Done = Box<dyn FnOnce(Result<Reply>) + Send>;

/// The state of this node's link to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisState {
    /// A single node: no Redis.
    NotConfigured,
    Up,
    /// Down, and what was last seen going wrong.
    Down(String),
}

/// Who is asking, and from which socket (HTTP requests have none). Events caused by a socket are
/// not echoed back to it: it gets the ack instead.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: UserId,
    pub socket: Option<SocketKey>,
}

impl Actor {
    /// Events this actor causes skip the socket that asked (it gets the ack instead).
    pub fn except(&self) -> Except<'static> {
        Except::socket(self.socket)
    }
}

/// Settings of the chat service.
pub struct ChatSettings {
    pub limits: Limits,
    /// How long `typing:start` lasts without a repeat.
    pub typing_ttl: Duration,
    /// How long after a user's last socket closes before they are announced offline.
    pub presence_grace: Duration,
    /// Presence shared with other nodes through Redis, in a cluster.
    pub cluster_presence: Option<presence::ClusterPresence>,
    pub attachments: AttachmentSettings,
}

/// The chat service. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    store: Store,
    writer: Writer,
    hub: Hub,
    typing: Typing,
    presence: Presence,
    limits: Arc<Limits>,
    attachments: Arc<attachments::Attachments>,
}

impl Chat {
    pub fn new(store: Store, writer: Writer, hub: Hub, settings: ChatSettings) -> Self {
        if hub.bus().is_some() {
            reconcile::start(hub.clone(), store.clone());
        }
        Self {
            typing: Typing::new(hub.clone(), settings.typing_ttl),
            presence: Presence::new(
                hub.clone(),
                store.clone(),
                settings.presence_grace,
                settings.cluster_presence,
            ),
            attachments: attachments::Attachments::start(settings.attachments, store.clone()),
            store,
            writer,
            hub,
            limits: Arc::new(settings.limits),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Carries out a request and answers with its reply: every request but a socket's sends
    /// (which go through [`Chat::send_message`] in arrival order) and typing (answered at once,
    /// [`Chat::typing`]).
    pub async fn execute(&self, actor: &Actor, request: Request) -> Result<Reply> {
        Ok(match request {
            Request::SendMessage(send) => {
                let (tx, rx) = oneshot::channel();
                self.send_message(
                    actor,
                    send,
                    Box::new(move |reply| {
                        let _ = tx.send(reply);
                    }),
                );
                return rx
                    .await
                    .map_err(|_| Error::internal(anyhow::anyhow!("the message writer stopped")))?;
            }
            Request::EditMessage(edit) => Reply::Message {
                message: self.edit_message(actor, edit).await?,
                new: false,
            },
            Request::DeleteMessage(delete) => Reply::Message {
                message: self.delete_message(actor, delete).await?,
                new: false,
            },
            Request::History(history) => Reply::History(self.history(actor, history).await?),
            Request::Sync(sync) => {
                let (updates, server_time) = self.sync(actor, sync).await?;
                Reply::Sync {
                    updates,
                    server_time,
                }
            }
            Request::CreateConversation(create) => {
                let (conversation, created) = self.create_conversation(actor, create).await?;
                Reply::Conversation {
                    conversation,
                    created,
                }
            }
            Request::ListConversations => Reply::Conversations {
                conversations: self.store.conversations_of(&actor.user).await?,
            },
            Request::ListMembers(list) => self.list_members(actor, list).await?,
            Request::AddMembers(change) => Reply::Conversation {
                conversation: self.add_members(actor, change).await?,
                created: false,
            },
            Request::RemoveMembers(change) => Reply::Conversation {
                conversation: self.remove_members(actor, change).await?,
                created: false,
            },
            Request::Leave(leave) => Reply::Left {
                conversation_id: self.leave(actor, leave).await?,
            },
            Request::MarkRead(read) => self.mark_read(actor, read).await?,
            Request::Presence(query) => Reply::Presence {
                presence: self.presence.get(&actor.user, &query.user_ids).await?,
            },
            Request::Search(search) => self.search(actor, search).await?,
            request @ (Request::TypingStart(_) | Request::TypingStop(_)) => {
                self.typing(actor, &request)?
            }
            Request::Block(r) => self.block(actor, r.user_id, true).await?,
            Request::Unblock(r) => self.block(actor, r.user_id, false).await?,
        })
    }

    /// `typing:start` / `typing:stop`: the other members' sockets are told (coalesced, expired
    /// by the server). Checked against the memberships this process holds for the socket's
    /// user, with no database round trip per keystroke; answered at once.
    pub fn typing(&self, actor: &Actor, request: &Request) -> Result<Reply> {
        let (Request::TypingStart(ConversationRef { conversation_id })
        | Request::TypingStop(ConversationRef { conversation_id })) = *request
        else {
            return Err(Error::internal(anyhow::anyhow!("not a typing request")));
        };
        let socket = actor
            .socket
            .ok_or(Error::invalid("conversation_id", "typing needs a socket"))?;
        if !self.hub.is_member(&actor.user, conversation_id) {
            return Err(Error::NotFound(policy::CONVERSATION_NOT_FOUND));
        }
        if self.hub.is_large(conversation_id) {
            // Each typing event would reach every member: in a group of 100,000 with a
            // thousand typing, 10⁸ deliveries a second. Answered, and told nobody.
            return Ok(Reply::Done {});
        }
        match request {
            Request::TypingStart(_) => self.typing.start(&actor.user, socket, conversation_id),
            _ => self.typing.stop(&actor.user, conversation_id),
        }
        Ok(Reply::Done {})
    }

    /// A socket authenticated: record the user and start delivering their conversations' events.
    pub async fn connect(
        &self,
        identity: &Identity,
        key: SocketKey,
        outbound: Arc<dyn Outbound>,
    ) -> Result<()> {
        // Register before loading memberships, so that a conversation created for this user
        // meanwhile (a `join` on the hub) is not missed.
        let user = &identity.user_id;
        let (first, subscribed) = self.hub.register(user, key, outbound);
        // The ban is read after registering, so a ban committed from here on finds this socket
        // to close (`Hub::end_sessions`), and one committed before is read here. Read alongside
        // the memberships, so a connect takes no longer.
        let (touched, banned) = tokio::join!(
            self.store.touch_user(user, identity.name.as_ref()),
            self.refuse_banned(user)
        );
        let touched = banned.and(touched);
        match touched {
            Ok(sizes) => {
                let conversations: Vec<_> = sizes.iter().map(|(c, _)| *c).collect();
                let more = self.hub.add_conversations(user, &conversations);
                self.hub.set_sizes(&sizes);
                // With Redis: only once this node hears the user's conversations may the client
                // `sync`, or a message published in between would be missed.
                subscribed.wait(SUBSCRIBE_WAIT).await;
                more.wait(SUBSCRIBE_WAIT).await;
                self.presence.connected(user, first).await;
                Ok(())
            }
            Err(e) => {
                self.hub.unregister(user, key);
                Err(e)
            }
        }
    }

    /// A socket closed: stop delivering to it, end its typing, and start the user's way
    /// offline if it was their last.
    pub fn disconnect(&self, user: &UserId, key: SocketKey) {
        if let Some(conversations) = self.hub.unregister(user, key) {
            self.presence.disconnected(user, conversations);
        }
        self.typing.socket_closed(user, key);
    }

    /// How many sockets `user` has on this node.
    pub fn sockets_of(&self, user: &UserId) -> usize {
        self.hub.socket_count(user)
    }

    /// An HTTP caller: who they are, with their latest display name recorded (as a socket
    /// connect does).
    pub async fn caller(&self, identity: Identity) -> Result<Actor> {
        self.refuse_banned(&identity.user_id).await?;
        if identity.name.is_some() {
            self.store
                .remember_user(&identity.user_id, identity.name.as_ref())
                .await?;
        }
        Ok(Actor {
            user: identity.user_id,
            socket: None,
        })
    }

    /// `user:block` (`on`) and `user:unblock`: idempotent.
    async fn block(&self, actor: &Actor, user: UserId, on: bool) -> Result<Reply> {
        if user == actor.user {
            return Err(Error::invalid("user_id", "you can't block yourself"));
        }
        self.store.set_block(&actor.user, &user, on).await?;
        Ok(Reply::Blocked {
            user_id: user,
            blocked: on,
        })
    }

    /// `unauthorized` with reason `banned` while the host app bans the user.
    async fn refuse_banned(&self, user: &UserId) -> Result<()> {
        match self
            .store
            .ban_of(user, crate::domain::Timestamp::now())
            .await?
        {
            Some(_) => Err(Error::Unauthorized(crate::auth::AuthFailure::Banned)),
            None => Ok(()),
        }
    }

    /// For readiness: a round trip to the database.
    pub async fn ping_database(&self) -> Result<()> {
        self.store.ping().await
    }

    /// For readiness and metrics: how the link to the other nodes is.
    pub fn redis(&self) -> RedisState {
        match self.hub.bus() {
            None => RedisState::NotConfigured,
            Some(bus) => match bus.health().problem() {
                None => RedisState::Up,
                Some(problem) => RedisState::Down(problem),
            },
        }
    }

    /// Sockets and users connected to this node.
    pub fn counts(&self) -> (usize, usize) {
        self.hub.counts()
    }

    /// Which database backs this node (`postgres`, `sqlite`).
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// This node's bus counters, in a cluster.
    pub fn bus_stats(&self) -> Option<Arc<BusStats>> {
        self.hub.bus().map(|b| b.stats.clone())
    }

    /// Shutdown: every socket here is told `server:shutdown` (so it reconnects elsewhere).
    /// Returns how many sockets there were.
    pub fn announce_shutdown(&self) -> usize {
        let (sockets, _) = self.hub.counts();
        self.hub.to_everyone_here(&Outgoing::of(&ServerShutdown {}));
        sockets
    }

    /// This node is going away: leave the cluster's presence (see `Presence::retire`).
    pub async fn retire(&self) {
        self.presence.retire().await;
    }
}
