//! Conversations and who is in them: create, list, add and remove members, leave. Each change
//! is decided by `policy` inside the store's transaction, then announced through the hub.

use std::collections::HashSet;

use super::{Actor, Chat, policy};
use crate::domain::{Conversation, ConversationId, MemberCursor, UserId};
use crate::error::{Error, Result};
use crate::hub::{Except, Outgoing};
use crate::protocol::events::{ConversationMembers, ConversationNew, ConversationRemoved};
use crate::protocol::replies::Reply;
use crate::protocol::requests::{ChangeMembers, ConversationRef, CreateConversation, ListMembers};
use crate::store::MembershipChange;

impl Chat {
    /// A page of a conversation's members, for its members only.
    pub(super) async fn list_members(&self, actor: &Actor, request: ListMembers) -> Result<Reply> {
        // One more than asked, to learn whether there is a page after this one.
        let (mut members, member_count) = self
            .store
            .members_page(
                request.conversation_id,
                &actor.user,
                request.after.as_ref(),
                request.limit + 1,
            )
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        let more = members.len() > request.limit;
        members.truncate(request.limit);
        let next = if more {
            members.last().map(|m| MemberCursor::of(m).encode())
        } else {
            None
        };
        Ok(Reply::Members {
            members,
            member_count,
            next,
        })
    }

    /// A direct conversation (found if it exists: `false`) or a new group (`true`).
    pub(super) async fn create_conversation(
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
                if self.store.is_blocked(&user_id, &actor.user).await? {
                    return Err(Error::Forbidden(policy::BLOCKED));
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
            self.announce_created(&conversation, Some(&actor.user), actor.except());
        }
        Ok((conversation, created))
    }

    /// Starts delivering a new conversation to its members, and tells them.
    pub(super) fn announce_created(
        &self,
        conversation: &Conversation,
        by: Option<&UserId>,
        except: Except,
    ) {
        let event = Outgoing::of(&ConversationNew { conversation, by });
        for user in conversation.member_ids() {
            self.hub.join(user, conversation.id);
            self.hub.to_user(user, &event, except);
        }
        self.hub
            .set_sizes(&[(conversation.id, conversation.member_count)]);
    }

    /// Whether the members who were there before a change and remain are told of it: always
    /// in a small group (before or after), where clients hold the whole list; in a large one
    /// only when someone's role changed. Telling every member of a large group of every join
    /// would make building a group of n cost n² (docs/PROTOCOL.md, "Large groups").
    fn tell_the_others(before: &Conversation, delta: &ConversationMembers) -> bool {
        !before.is_large() || !crate::domain::is_large(delta.member_count) || delta.role_changed
    }

    pub(super) async fn add_members(
        &self,
        actor: &Actor,
        request: ChangeMembers,
    ) -> Result<Conversation> {
        let max = self.limits.max_group_members;
        let change = self
            .store
            .change_members(request.conversation_id, &request.user_ids, |c, departed| {
                policy::add_members(c, &actor.user, &request.user_ids, departed, max)
            })
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        self.announce_additions(&change, Some(&actor.user), actor.except());
        Ok(change.after)
    }

    /// Those who joined get the whole conversation; those already there, what changed.
    pub(super) fn announce_additions(
        &self,
        change: &MembershipChange,
        by: Option<&UserId>,
        except: Except,
    ) {
        let (before, after) = (&change.before, &change.after);
        if before == after {
            return;
        }
        let new = Outgoing::of(&ConversationNew {
            conversation: after,
            by,
        });
        let delta = ConversationMembers::between(before, after, by);
        let tell = Self::tell_the_others(before, &delta);
        let members = Outgoing::of(&delta);
        let had: HashSet<&UserId> = before.member_ids().collect();
        for member in after.member_ids() {
            if had.contains(member) {
                if tell {
                    self.hub.to_user(member, &members, except);
                }
            } else {
                self.hub.join(member, after.id);
                self.hub.to_user(member, &new, except);
            }
        }
        self.hub.set_sizes(&[(after.id, after.member_count)]);
    }

    pub(super) async fn remove_members(
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
        self.announce_departures(
            Some(&actor.user),
            actor.except(),
            &change.before,
            &change.after,
        );
        Ok(change.after)
    }

    pub(super) async fn leave(
        &self,
        actor: &Actor,
        request: ConversationRef,
    ) -> Result<ConversationId> {
        let change = self
            .store
            .change_members(request.conversation_id, &[], |c, _| {
                policy::leave(c, &actor.user)
            })
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        self.announce_departures(
            Some(&actor.user),
            actor.except(),
            &change.before,
            &change.after,
        );
        Ok(request.conversation_id)
    }

    /// Stops delivery to members who left, tells them, and tells those who remain.
    pub(super) fn announce_departures(
        &self,
        by: Option<&UserId>,
        except: Except,
        before: &Conversation,
        after: &Conversation,
    ) {
        if before == after {
            return;
        }
        let removed = Outgoing::of(&ConversationRemoved {
            conversation_id: after.id,
        });
        let stays: HashSet<&UserId> = after.member_ids().collect();
        for member in before.member_ids() {
            if !stays.contains(member) {
                // Leave the room first: from here on, nothing of this conversation reaches them.
                self.hub.leave(member, after.id);
                self.hub.to_user(member, &removed, except);
                self.typing.stop(member, after.id);
            }
        }
        let delta = ConversationMembers::between(before, after, by);
        self.hub.set_sizes(&[(after.id, after.member_count)]);
        if !Self::tell_the_others(before, &delta) {
            return;
        }
        let members = Outgoing::of(&delta);
        for member in after.member_ids() {
            self.hub.to_user(member, &members, except);
        }
    }
}
