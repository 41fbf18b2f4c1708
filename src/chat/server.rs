//! The host app's use cases (the server API): what its backend does for its users, such as
//! opening a conversation between a buyer and a seller, or posting "order shipped" into it.
//! The same rules of storage and delivery as a user's requests: persist, then answer, then
//! tell the members' sockets exactly as if a user had done it (with `by: null`).

use tokio::sync::oneshot;

use super::{AfterCommit, Chat, policy};
use crate::domain::{Conversation, ConversationId, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::hub::{Except, Outgoing};
use crate::protocol::events::{MessageUpdated, SessionEnded};
use crate::protocol::replies::Reply;
use crate::protocol::server::{CreateForApp, SendForApp, ServerRequest};
use crate::store::NewMessage;

impl Chat {
    /// Carries out a request of the host app's server.
    pub async fn execute_for_app(&self, request: ServerRequest) -> Result<Reply> {
        Ok(match request {
            ServerRequest::CreateConversation(create) => {
                let (conversation, created) = self.create_for_app(create).await?;
                Reply::Conversation {
                    conversation,
                    created,
                }
            }
            ServerRequest::AddMembers {
                conversation_id,
                user_ids,
            } => Reply::Conversation {
                conversation: self.add_for_app(conversation_id, &user_ids).await?,
                created: false,
            },
            ServerRequest::RemoveMembers {
                conversation_id,
                user_ids,
            } => Reply::Conversation {
                conversation: self.remove_for_app(conversation_id, &user_ids).await?,
                created: false,
            },
            ServerRequest::ListConversations { user_id } => Reply::Conversations {
                conversations: self.store.conversations_of(&user_id).await?,
            },
            ServerRequest::SendMessage(send) => return self.send_for_app(send).await,
            ServerRequest::Ban(ban) => {
                self.store.ban(&ban).await?;
                self.hub.end_sessions(
                    &ban.user_id,
                    &Outgoing::of(&SessionEnded {
                        reason: "banned",
                        until: ban.until,
                    }),
                );
                Reply::Ban {
                    user_id: ban.user_id.clone(),
                    ban: Some(ban),
                }
            }
            ServerRequest::Unban { user_id } => {
                self.store.unban(&user_id).await?;
                Reply::Ban { user_id, ban: None }
            }
            ServerRequest::Erase { user_id } => self.erase(user_id).await?,
        })
    }

    /// Erases a user: banned for good and disconnected first (so nothing new of theirs
    /// arrives), then their bodies deleted (each conversation hears `message:updated`, as for
    /// `message:delete`), then their memberships ended, one conversation at a time (members hear
    /// `conversation:members`). Each step is idempotent, so an erasure cut short is finished by
    /// asking again.
    async fn erase(&self, user: UserId) -> Result<Reply> {
        let deleted = self.store.erase_user(&user, Timestamp::now()).await?;
        self.hub.end_sessions(
            &user,
            &Outgoing::of(&SessionEnded {
                reason: "erased",
                until: None,
            }),
        );
        for message in &deleted {
            let event = Outgoing::of(&MessageUpdated { message });
            self.hub
                .to_conversation(message.conversation_id, &event, Except::Nobody);
        }
        let mut left = 0;
        for (conversation, _) in self.store.memberships(&user).await? {
            let change = self
                .store
                .change_members(conversation, &[], std::slice::from_ref(&user), |c, _| {
                    policy::erase_member(c, &user)
                })
                .await?;
            if let Some(change) = change {
                if !change.plan.is_empty() {
                    left += 1;
                }
                self.announce_change(&change, None, Except::Nobody).await;
            }
        }
        Ok(Reply::Erased {
            user_id: user,
            messages_deleted: deleted.len(),
            conversations_left: left,
        })
    }

    async fn create_for_app(&self, request: CreateForApp) -> Result<(Conversation, bool)> {
        let (conversation, created) = match &request {
            CreateForApp::Direct {
                users: [a, b],
                external_id,
            } => {
                self.store
                    .create_direct_for_app(a, b, external_id.as_ref())
                    .await?
            }
            CreateForApp::Group {
                owner_id,
                title,
                member_ids,
                external_id,
            } => {
                self.store
                    .create_group_for_app(owner_id, title, member_ids, external_id.as_ref())
                    .await?
            }
        };
        if created {
            self.announce_created(&conversation, None, Except::Nobody);
        }
        Ok((conversation, created))
    }

    async fn add_for_app(
        &self,
        conversation: ConversationId,
        users: &[UserId],
    ) -> Result<Conversation> {
        let max = self.limits.max_group_members;
        let change = self
            .store
            .change_members(conversation, &[], users, |c, _| {
                policy::app_add_members(c, users, max)
            })
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        self.announce_change(&change, None, Except::Nobody).await;
        Ok(change.after)
    }

    async fn remove_for_app(
        &self,
        conversation: ConversationId,
        users: &[UserId],
    ) -> Result<Conversation> {
        let change = self
            .store
            .change_members(conversation, &[], users, |c, _| {
                policy::app_remove_members(c, users)
            })
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        self.announce_change(&change, None, Except::Nobody).await;
        Ok(change.after)
    }

    /// A message as a member, or a system message: through the group-commit writer like every
    /// send, so it takes its place in the conversation's seq order, is idempotent on its
    /// `client_id`, and is broadcast to every member's sockets after the commit.
    async fn send_for_app(&self, request: SendForApp) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        let after = AfterCommit {
            hub: self.hub.clone(),
            origin: None,
            done: Box::new(move |reply| {
                let _ = tx.send(reply);
            }),
        };
        self.writer.submit(
            NewMessage {
                conversation_id: request.conversation_id,
                sender_id: request.sender_id,
                client_id: request.client_id,
                body: request.body,
                // The server API posts text; files are a user's, uploaded with their token.
                attachment_ids: Vec::new(),
            },
            Box::new(move |outcome| after.settle(outcome)),
        );
        rx.await
            .map_err(|_| Error::internal(anyhow::anyhow!("the message writer stopped")))?
    }
}
