//! The use cases of chat, shared by the Socket.IO events and the HTTP routes: check the rules,
//! write through the store, then deliver through the hub. Persist first, deliver after: the
//! database is the source of truth.

pub mod events;
pub mod policy;
pub mod presence;
pub mod typing;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::auth::Identity;
use crate::config::Limits;
use crate::domain::requests::{
    ChangeMembers, ConversationRef, CreateConversation, DeleteMessage, EditMessage, History,
    MarkRead, PresenceQuery, SendMessage, Sync,
};
use crate::domain::{Conversation, ConversationId, Message, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::hub::{Except, Hub, Outbound, SocketKey};
use crate::store::{HistoryQuery, NewMessage, Page, SendOutcome, Store, SyncUpdate, Writer};
use events::Event;
use presence::Presence;
use typing::Typing;

/// Most messages per conversation in one `sync` answer.
pub const SYNC_PAGE: u32 = 100;

/// How far back `sync` looks for changes before the caller's `since`.
const CHANGE_MARGIN: Duration = Duration::from_secs(5);

/// How long a connect waits for Redis to confirm its subscriptions before going ahead anyway.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);

/// A message accepted by `send_message`: newly stored, or found stored by an earlier attempt.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Message,
    /// `false` when this was a retry of a message already stored.
    pub new: bool,
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
}

impl Chat {
    pub fn new(store: Store, writer: Writer, hub: Hub, settings: ChatSettings) -> Self {
        Self {
            typing: Typing::new(hub.clone(), settings.typing_ttl),
            presence: Presence::new(
                hub.clone(),
                store.clone(),
                settings.presence_grace,
                settings.cluster_presence,
            ),
            store,
            writer,
            hub,
            limits: Arc::new(settings.limits),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
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
        match self.store.touch_user(user, identity.name.as_ref()).await {
            Ok(conversations) => {
                let more = self.hub.add_conversations(user, &conversations);
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

    /// This node is going away: leave the cluster's presence (see `Presence::retire`).
    pub async fn retire(&self) {
        self.presence.retire().await;
    }

    /// A socket closed: stop delivering to it, end its typing, and start the user's way
    /// offline if it was their last.
    pub fn disconnect(&self, user: &UserId, key: SocketKey) {
        if let Some(conversations) = self.hub.unregister(user, key) {
            self.presence.disconnected(user, conversations);
        }
        self.typing.socket_closed(user, key);
    }

    pub async fn create_conversation(
        &self,
        actor: &Actor,
        request: CreateConversation,
    ) -> Result<(Conversation, bool)> {
        let (conversation, created) = match request {
            CreateConversation::Direct { user_id } => {
                if user_id == actor.user {
                    return Err(Error::invalid(
                        "user_id",
                        "a direct conversation needs another user",
                    ));
                }
                self.store.create_direct(&actor.user, &user_id).await?
            }
            CreateConversation::Group { title, member_ids } => {
                let others: Vec<UserId> = member_ids
                    .into_iter()
                    .filter(|u| *u != actor.user)
                    .collect();
                let max = self.limits.max_group_members;
                if others.len() + 1 > max {
                    return Err(Error::too_large(
                        "member_ids",
                        format!("a group holds at most {max} members"),
                    ));
                }
                let group = self
                    .store
                    .create_group(&actor.user, &title, &others)
                    .await?;
                (group, true)
            }
        };
        if created {
            let event = Event::ConversationNew {
                conversation: &conversation,
                by: &actor.user,
            }
            .encode();
            for user in conversation.member_ids() {
                self.hub.join(user, conversation.id);
                self.hub.to_user(user, &event, actor.except());
            }
        }
        Ok((conversation, created))
    }

    pub async fn list_conversations(&self, actor: &Actor) -> Result<Vec<Conversation>> {
        self.store.conversations_of(&actor.user).await
    }

    pub async fn add_members(&self, actor: &Actor, request: ChangeMembers) -> Result<Conversation> {
        let max = self.limits.max_group_members;
        let change = self
            .store
            .change_members(request.conversation_id, &request.user_ids, |c, departed| {
                policy::add_members(c, &actor.user, &request.user_ids, departed, max)
            })
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        let (before, after) = (&change.before, &change.after);
        if before != after {
            // Those who joined get the whole conversation; those already there, what changed.
            let new = Event::ConversationNew {
                conversation: after,
                by: &actor.user,
            }
            .encode();
            let members = Event::members_changed(before, after, &actor.user).encode();
            let had: HashSet<&UserId> = before.member_ids().collect();
            for member in after.member_ids() {
                if had.contains(member) {
                    self.hub.to_user(member, &members, actor.except());
                } else {
                    self.hub.join(member, after.id);
                    self.hub.to_user(member, &new, actor.except());
                }
            }
        }
        Ok(change.after)
    }

    pub async fn remove_members(
        &self,
        actor: &Actor,
        request: ChangeMembers,
    ) -> Result<Conversation> {
        let change = self
            .store
            .change_members(request.conversation_id, &[], |c, _| {
                policy::remove_members(c, &actor.user, &request.user_ids)
            })
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        self.announce_departures(actor, &change.before, &change.after);
        Ok(change.after)
    }

    pub async fn leave(&self, actor: &Actor, request: ConversationRef) -> Result<ConversationId> {
        let change = self
            .store
            .change_members(request.conversation_id, &[], |c, _| {
                policy::leave(c, &actor.user)
            })
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        self.announce_departures(actor, &change.before, &change.after);
        Ok(request.conversation_id)
    }

    /// Stops delivery to members who left, tells them, and tells those who remain.
    fn announce_departures(&self, actor: &Actor, before: &Conversation, after: &Conversation) {
        if before == after {
            return;
        }
        let removed = Event::ConversationRemoved(after.id).encode();
        for member in before.member_ids() {
            if after.member(member).is_none() {
                // Leave the room first: from here on, nothing of this conversation reaches them.
                self.hub.leave(member, after.id);
                self.hub.to_user(member, &removed, actor.except());
                self.typing.stop(member, after.id);
            }
        }
        let members = Event::members_changed(before, after, &actor.user).encode();
        for member in after.member_ids() {
            self.hub.to_user(member, &members, actor.except());
        }
    }

    /// Queues a message for the group-commit writer. Synchronous, so a socket's sends are
    /// stored in the order it sent them. `done` is called once the message is committed (or
    /// refused), before it is broadcast: persist, then ack, then broadcast.
    pub fn send_message(
        &self,
        actor: &Actor,
        request: SendMessage,
        done: impl FnOnce(Result<Sent>) + Send + 'static,
    ) {
        let hub = self.hub.clone();
        let origin = actor.socket;
        self.writer.submit(
            NewMessage {
                conversation_id: request.conversation_id,
                sender_id: actor.user.clone(),
                client_id: request.client_id,
                body: request.body,
            },
            Box::new(move |outcome| match outcome {
                Ok(SendOutcome::Stored(message)) => {
                    let event = Event::MessageNew(&message).encode();
                    let conversation = message.conversation_id;
                    done(Ok(Sent { message, new: true }));
                    hub.to_conversation(conversation, &event, Except::socket(origin));
                }
                Ok(SendOutcome::Duplicate(message)) => done(Ok(Sent {
                    message,
                    new: false,
                })),
                Ok(SendOutcome::NotFound) => {
                    done(Err(Error::NotFound(policy::CONVERSATION_NOT_FOUND)))
                }
                Err(e) => done(Err(e)),
            }),
        );
    }

    /// [`Chat::send_message`] for callers that wait for the outcome (HTTP).
    pub async fn send_message_and_wait(&self, actor: &Actor, request: SendMessage) -> Result<Sent> {
        let (tx, rx) = oneshot::channel();
        self.send_message(actor, request, move |result| {
            let _ = tx.send(result);
        });
        rx.await
            .map_err(|_| Error::Internal(anyhow::anyhow!("the message writer stopped")))?
    }

    pub async fn edit_message(&self, actor: &Actor, request: EditMessage) -> Result<Message> {
        let message = self
            .store
            .change_message(
                request.conversation_id,
                request.message_id,
                &actor.user,
                |m, role| policy::edit(m, role, &actor.user, request.body),
            )
            .await?
            .ok_or(Error::NotFound(policy::MESSAGE_NOT_FOUND))?;
        self.announce_update(actor, &message);
        Ok(message)
    }

    pub async fn delete_message(&self, actor: &Actor, request: DeleteMessage) -> Result<Message> {
        let message = self
            .store
            .change_message(
                request.conversation_id,
                request.message_id,
                &actor.user,
                |m, role| policy::delete(m, role, &actor.user),
            )
            .await?
            .ok_or(Error::NotFound(policy::MESSAGE_NOT_FOUND))?;
        self.announce_update(actor, &message);
        Ok(message)
    }

    fn announce_update(&self, actor: &Actor, message: &Message) {
        let event = Event::MessageUpdated(message).encode();
        self.hub
            .to_conversation(message.conversation_id, &event, actor.except());
    }

    pub async fn history(&self, actor: &Actor, request: History) -> Result<Page> {
        if !self
            .store
            .is_member(request.conversation_id, &actor.user)
            .await?
        {
            return Err(Error::NotFound(policy::CONVERSATION_NOT_FOUND));
        }
        self.store
            .history(
                request.conversation_id,
                HistoryQuery {
                    before_seq: request.before_seq,
                    after_seq: request.after_seq,
                    limit: request.limit,
                },
            )
            .await
    }

    /// `user` is typing: the other members' sockets are told (coalesced, expired by the server).
    pub fn typing_start(&self, actor: &Actor, request: ConversationRef) -> Result<()> {
        let socket = self.typing_member(actor, request)?;
        self.typing
            .start(&actor.user, socket, request.conversation_id);
        Ok(())
    }

    pub fn typing_stop(&self, actor: &Actor, request: ConversationRef) -> Result<()> {
        self.typing_member(actor, request)?;
        self.typing.stop(&actor.user, request.conversation_id);
        Ok(())
    }

    /// Typing is a socket's business and checked against the memberships this process holds
    /// for the socket's user, with no database round trip per keystroke.
    fn typing_member(&self, actor: &Actor, request: ConversationRef) -> Result<SocketKey> {
        let socket = actor
            .socket
            .ok_or(Error::invalid("conversation_id", "typing needs a socket"))?;
        if !self.hub.is_member(&actor.user, request.conversation_id) {
            return Err(Error::NotFound(policy::CONVERSATION_NOT_FOUND));
        }
        Ok(socket)
    }

    /// Moves the caller's read mark forward; the conversation (the caller's other devices
    /// included) hears of it when it moved.
    /// Returns the read mark and how many messages remain unread after it.
    pub async fn mark_read(&self, actor: &Actor, request: MarkRead) -> Result<(i64, i64)> {
        let (mark, moved) = self
            .store
            .mark_read(request.conversation_id, &actor.user, request.seq)
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        if moved {
            let event = Event::Receipt(request.conversation_id, &actor.user, mark).encode();
            self.hub
                .to_conversation(request.conversation_id, &event, actor.except());
        }
        let unread = self
            .store
            .unread_count(request.conversation_id, &actor.user, mark)
            .await?;
        Ok((mark, unread))
    }

    pub async fn presence(
        &self,
        actor: &Actor,
        request: PresenceQuery,
    ) -> Result<Vec<presence::PresenceState>> {
        self.presence.get(&actor.user, &request.user_ids).await
    }

    /// What the caller missed, and the time to pass as `since` next time.
    pub async fn sync(&self, actor: &Actor, request: Sync) -> Result<(Vec<SyncUpdate>, Timestamp)> {
        // Taken before reading, and `since` is moved back by a margin: a change committed while
        // a sync reads (or stamped by a node whose clock is a little behind) is returned by the
        // next sync rather than by none. A change returned twice is harmless: clients replace
        // the message by id.
        let server_time = Timestamp::now();
        let changed_since = request
            .since
            .map(|t| Timestamp(t.millis() - CHANGE_MARGIN.as_millis() as i64));
        let updates = self
            .store
            .sync(&actor.user, &request.cursors, SYNC_PAGE, changed_since)
            .await?;
        Ok((updates, server_time))
    }
}
