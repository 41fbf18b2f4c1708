//! Server→client events and their payloads, named once here.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::domain::{Conversation, ConversationId, Member, Message, UserId};
use crate::hub::Outgoing;

/// An event to deliver. [`Event::encode`] serializes it once for all recipients.
pub enum Event<'a> {
    MessageNew(&'a Message),
    MessageUpdated(&'a Message),
    /// A conversation the recipients were just made members of, and `by` whom (its creator, or
    /// the owner or admin who added them), so an app can say "Alice added you".
    ConversationNew {
        conversation: &'a Conversation,
        by: &'a UserId,
    },
    /// A group's members changed: who joined or changed role, and who left. A delta, not the
    /// whole list, so a change in a group of n costs each of its n members O(change), not O(n).
    /// `by` is who made the change (the one who left, for a departure), so an app can tell
    /// "Carol left" from "Alice removed Carol"; a role that changed because the owner left has
    /// the leaver as its `by` too.
    ConversationMembers {
        conversation_id: ConversationId,
        changed: Vec<&'a Member>,
        removed: Vec<&'a UserId>,
        by: &'a UserId,
    },
    ConversationRemoved(ConversationId),
    /// A member's read mark moved: (conversation, member, seq).
    Receipt(ConversationId, &'a UserId, i64),
}

#[derive(Serialize)]
struct MessagePayload<'a> {
    message: &'a Message,
}

#[derive(Serialize)]
struct ConversationPayload<'a> {
    conversation: &'a Conversation,
    by: &'a UserId,
}

#[derive(Serialize)]
struct MembersPayload<'a> {
    conversation_id: ConversationId,
    changed: &'a [&'a Member],
    removed: &'a [&'a UserId],
    by: &'a UserId,
}

#[derive(Serialize)]
struct ReceiptPayload<'a> {
    conversation_id: ConversationId,
    user_id: &'a UserId,
    seq: i64,
}

#[derive(Serialize)]
struct ConversationIdPayload {
    conversation_id: ConversationId,
}

impl<'a> Event<'a> {
    /// The members event that takes `before`'s member list to `after`'s, a change made `by` them.
    pub fn members_changed(
        before: &'a Conversation,
        after: &'a Conversation,
        by: &'a UserId,
    ) -> Self {
        let old: HashMap<&UserId, &Member> =
            before.members.iter().map(|m| (&m.user_id, m)).collect();
        let new: HashSet<&UserId> = after.member_ids().collect();
        Self::ConversationMembers {
            conversation_id: after.id,
            changed: after
                .members
                .iter()
                .filter(|m| old.get(&m.user_id) != Some(m))
                .collect(),
            removed: before.member_ids().filter(|id| !new.contains(id)).collect(),
            by,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::MessageNew(_) => "message:new",
            Self::MessageUpdated(_) => "message:updated",
            Self::ConversationNew { .. } => "conversation:new",
            Self::ConversationMembers { .. } => "conversation:members",
            Self::ConversationRemoved(_) => "conversation:removed",
            Self::Receipt(..) => "receipt",
        }
    }

    pub fn encode(&self) -> Outgoing {
        let name = self.name();
        match self {
            Self::MessageNew(message) | Self::MessageUpdated(message) => {
                Outgoing::new(name, &MessagePayload { message })
            }
            Self::ConversationNew { conversation, by } => {
                Outgoing::new(name, &ConversationPayload { conversation, by })
            }
            Self::ConversationMembers {
                conversation_id,
                changed,
                removed,
                by,
            } => Outgoing::new(
                name,
                &MembersPayload {
                    conversation_id: *conversation_id,
                    changed,
                    removed,
                    by,
                },
            ),
            Self::ConversationRemoved(conversation_id) => Outgoing::new(
                name,
                &ConversationIdPayload {
                    conversation_id: *conversation_id,
                },
            ),
            Self::Receipt(conversation_id, user_id, seq) => Outgoing::new(
                name,
                &ReceiptPayload {
                    conversation_id: *conversation_id,
                    user_id,
                    seq: *seq,
                },
            ),
        }
    }
}
