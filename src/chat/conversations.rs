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
        let involves = with_actor(&request.user_ids, &actor.user);
        let change = self
            .store
            .change_members(
                request.conversation_id,
                &request.user_ids,
                &involves,
                |c, departed| policy::add_members(c, &actor.user, &request.user_ids, departed, max),
            )
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        self.announce_change(&change, Some(&actor.user), actor.except())
            .await;
        Ok(change.after)
    }

    pub(super) async fn remove_members(
        &self,
        actor: &Actor,
        request: ChangeMembers,
    ) -> Result<Conversation> {
        let involves = with_actor(&request.user_ids, &actor.user);
        let change = self
            .store
            .change_members(request.conversation_id, &[], &involves, |c, _| {
                policy::remove_members(c, &actor.user, &request.user_ids)
            })
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        self.announce_change(&change, Some(&actor.user), actor.except())
            .await;
        Ok(change.after)
    }

    pub(super) async fn leave(
        &self,
        actor: &Actor,
        request: ConversationRef,
    ) -> Result<ConversationId> {
        let change = self
            .store
            .change_members(
                request.conversation_id,
                &[],
                std::slice::from_ref(&actor.user),
                |c, _| policy::leave(c, &actor.user),
            )
            .await?
            .ok_or(Error::NotFound(policy::CONVERSATION_NOT_FOUND))?;
        self.announce_change(&change, Some(&actor.user), actor.except())
            .await;
        Ok(request.conversation_id)
    }

    /// Tells everyone concerned of a membership change: those who left get
    /// `conversation:removed` (and from then on nothing of it), those who joined the
    /// conversation (`conversation:new`), and those who were there and stay what changed
    /// (`conversation:members`), when [`Chat::tell_the_others`] says so. Costs O(change),
    /// but for a role change in a large group, which every member hears of.
    pub(super) async fn announce_change(
        &self,
        change: &MembershipChange,
        by: Option<&UserId>,
        except: Except<'_>,
    ) {
        let (before, after, plan) = (&change.before, &change.after, &change.plan);
        if plan.is_empty() {
            return;
        }
        let id = after.id;
        if !plan.remove.is_empty() {
            let removed = Outgoing::of(&ConversationRemoved {
                conversation_id: id,
            });
            for member in &plan.remove {
                // Leave the room first: from here on, nothing of this conversation reaches them.
                self.hub.leave(member, id);
                self.hub.to_user(member, &removed, except);
                self.typing.stop(member, id);
            }
        }
        if !plan.add.is_empty() {
            let new = Outgoing::of(&ConversationNew {
                conversation: after,
                by,
            });
            for member in &plan.add {
                self.hub.join(member, id);
                self.hub.to_user(member, &new, except);
            }
        }
        self.hub.set_sizes(&[(id, after.member_count)]);
        let roles: Vec<UserId> = plan.set_role.iter().map(|(u, _)| u.clone()).collect();
        let delta = ConversationMembers::of(after, &plan.add, &roles, &plan.remove, by);
        if !Self::tell_the_others(before, &delta) {
            return;
        }
        let joined: HashSet<&UserId> = plan.add.iter().collect();
        let gone: HashSet<&UserId> = plan.remove.iter().collect();
        // Those who were there and stay. A small group's loaded members are all of them.
        let others: Vec<UserId> = if !before.is_large() {
            before
                .member_ids()
                .filter(|u| !gone.contains(u))
                .cloned()
                .collect()
        } else if !after.is_large() {
            after
                .member_ids()
                .filter(|u| !joined.contains(u))
                .cloned()
                .collect()
        } else {
            // A role changed in a large group (an ownership hand-over): rare, and news for all.
            match self.store.member_ids(id).await {
                Ok(all) => all.into_iter().filter(|u| !joined.contains(u)).collect(),
                Err(e) => {
                    tracing::warn!(conversation = %id, error = e.cause_chain(), "a role change not announced: loading members");
                    return;
                }
            }
        };
        let members = Outgoing::of(&delta);
        for member in &others {
            self.hub.to_user(member, &members, except);
        }
    }
}

/// The users a request names, and who asks: those a membership change loads.
fn with_actor(users: &[UserId], actor: &UserId) -> Vec<UserId> {
    let mut all = users.to_vec();
    all.push(actor.clone());
    all
}
