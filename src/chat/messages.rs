//! Messages: send (through the group-commit writer), edit, delete, read history, sync, mark
//! read. The send path, top to bottom: `Chat::send_message` queues the message on the writer
//! in arrival order; the writer commits it in a batch (store/writer.rs); on the writer's task,
//! in commit order, `AfterCommit::settle` acks the sender and then broadcasts `message:new`.

use std::time::Duration;

use super::{Actor, Chat, Done, policy};
use crate::domain::{ConversationId, Message, MessageId, Role, Snippet, Timestamp};
use crate::error::{Error, Result};
use crate::hub::{Except, Hub, Outgoing, SocketKey};
use crate::protocol::events::{MessageNew, MessageUpdated, Receipt};
use crate::protocol::replies::{Page, Reply, SearchResult, SyncUpdate};
use crate::protocol::requests::{
    DeleteMessage, EditMessage, History, MarkRead, Search, SendMessage, Sync,
};
use crate::store::{HistoryQuery, MessageChange, NewMessage, SendOutcome};

/// Most messages per conversation in one `sync` answer.
pub const SYNC_PAGE: u32 = 100;

/// How far back `sync` looks for changes before the caller's `since`.
const CHANGE_MARGIN: Duration = Duration::from_secs(5);

impl Chat {
    /// Queues a message for the group-commit writer. Synchronous, so a socket's sends are
    /// stored in the order it sent them. Once the message is committed (or refused),
    /// [`AfterCommit`] answers `done` and then broadcasts it: persist, then ack, then broadcast.
    pub fn send_message(&self, actor: &Actor, request: SendMessage, done: Done) {
        let after = AfterCommit {
            hub: self.hub.clone(),
            origin: actor.socket,
            done,
        };
        self.writer.submit(
            NewMessage {
                conversation_id: request.conversation_id,
                sender_id: Some(actor.user.clone()),
                client_id: request.client_id,
                body: request.body,
                attachment_ids: request.attachment_ids,
            },
            Box::new(move |outcome| after.settle(outcome)),
        );
    }

    pub(super) async fn edit_message(
        &self,
        actor: &Actor,
        request: EditMessage,
    ) -> Result<Message> {
        let (conversation, message, body) =
            (request.conversation_id, request.message_id, request.body);
        self.rewrite(actor, conversation, message, |m, role| {
            policy::edit(m, role, &actor.user, body)
        })
        .await
    }

    pub(super) async fn delete_message(
        &self,
        actor: &Actor,
        request: DeleteMessage,
    ) -> Result<Message> {
        let (conversation, message) = (request.conversation_id, request.message_id);
        let deleted = self
            .rewrite(actor, conversation, message, |m, role| {
                policy::delete(m, role, &actor.user)
            })
            .await?;
        // Its attachments, if any, were marked deleted with it: their bytes can go.
        self.attachments_discarded();
        Ok(deleted)
    }

    /// Changes a message as `decide` (a policy rule, run in the store's transaction) says,
    /// and tells the conversation.
    async fn rewrite<F>(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        message: MessageId,
        decide: F,
    ) -> Result<Message>
    where
        F: FnOnce(&Message, Option<Role>) -> Result<MessageChange> + Send,
    {
        let message = self
            .store
            .change_message(conversation, message, &actor.user, decide)
            .await?
            .ok_or(Error::NotFound(policy::MESSAGE_NOT_FOUND))?;
        let event = Outgoing::of(&MessageUpdated { message: &message });
        self.hub
            .to_conversation(message.conversation_id, &event, actor.except());
        Ok(message)
    }

    pub(super) async fn history(&self, actor: &Actor, request: History) -> Result<Page> {
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

    /// Moves the caller's read mark forward; the conversation (the caller's other devices
    /// included) hears of it when it moved. The reply has the mark and how many messages
    /// remain unread after it.
    pub(super) async fn mark_read(&self, actor: &Actor, request: MarkRead) -> Result<Reply> {
        let (mark, moved) = self
            .store
            .mark_read(request.conversation_id, &actor.user, request.seq)
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        if moved {
            let event = Outgoing::of(&Receipt {
                conversation_id: request.conversation_id,
                user_id: &actor.user,
                seq: mark,
            });
            if self.hub.is_large(request.conversation_id) {
                // Every member reading every message would be n² receipts: in a large group
                // only the reader's other devices hear of it (to clear their badges).
                self.hub.to_user(&actor.user, &event, actor.except());
            } else {
                self.hub
                    .to_conversation(request.conversation_id, &event, actor.except());
            }
        }
        let unread = self
            .store
            .unread_count(request.conversation_id, &actor.user, mark)
            .await?;
        Ok(Reply::Read {
            conversation_id: request.conversation_id,
            last_read_seq: mark,
            unread_count: unread,
        })
    }

    /// What the caller missed, and the time to pass as `since` next time.
    pub(super) async fn sync(
        &self,
        actor: &Actor,
        request: Sync,
    ) -> Result<(Vec<SyncUpdate>, Timestamp)> {
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

impl Chat {
    /// Full-text search over the caller's conversations (those they are a member of now):
    /// newest first, each result with its highlighted passage.
    pub(super) async fn search(&self, actor: &Actor, request: Search) -> Result<Reply> {
        let limit = request.limit as usize;
        let mut found = self
            .store
            .search(
                &actor.user,
                &request.query,
                request.conversation_id,
                request.before,
                request.limit + 1,
            )
            .await?;
        let has_more = found.len() > limit;
        found.truncate(limit);
        let results = found
            .into_iter()
            .map(|message| SearchResult {
                snippet: Snippet::of(message.body.as_deref().unwrap_or_default(), &request.query),
                message,
            })
            .collect();
        Ok(Reply::Search { results, has_more })
    }
}

/// What happens to a send after its transaction: runs on the writer's task, in commit order,
/// so each conversation's acks and broadcasts go out in seq order. It must not wait.
pub(super) struct AfterCommit {
    pub(super) hub: Hub,
    /// The socket that sent it, which gets the ack instead of the broadcast.
    pub(super) origin: Option<SocketKey>,
    pub(super) done: Done,
}

impl AfterCommit {
    pub(super) fn settle(self, outcome: Result<SendOutcome>) {
        match outcome {
            Ok(SendOutcome::Stored(message)) => {
                // Encoded before the message moves into the ack.
                let event = Outgoing::of(&MessageNew { message: &message });
                let conversation = message.conversation_id;
                (self.done)(Ok(Reply::Message { message, new: true }));
                self.hub
                    .to_conversation(conversation, &event, Except::socket(self.origin));
            }
            // A retry of a stored message: the stored one, broadcast long ago.
            Ok(SendOutcome::Duplicate(message)) => (self.done)(Ok(Reply::Message {
                message,
                new: false,
            })),
            Ok(SendOutcome::NotFound) => {
                (self.done)(Err(Error::NotFound(policy::CONVERSATION_NOT_FOUND)))
            }
            Ok(SendOutcome::Blocked) => (self.done)(Err(Error::Forbidden(policy::BLOCKED))),
            Ok(SendOutcome::Refused(e)) => (self.done)(Err(e)),
            Err(e) => (self.done)(Err(e)),
        }
    }
}
