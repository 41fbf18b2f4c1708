//! Server→client events and their payloads, named once here.

use serde::Serialize;

use crate::domain::{Conversation, ConversationId, Message, UserId};
use crate::hub::Outgoing;

/// An event to deliver. [`Event::encode`] serializes it once for all recipients.
pub enum Event<'a> {
    MessageNew(&'a Message),
    MessageUpdated(&'a Message),
    ConversationNew(&'a Conversation),
    ConversationUpdated(&'a Conversation),
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

impl Event<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Self::MessageNew(_) => "message:new",
            Self::MessageUpdated(_) => "message:updated",
            Self::ConversationNew(_) => "conversation:new",
            Self::ConversationUpdated(_) => "conversation:updated",
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
            Self::ConversationNew(conversation) | Self::ConversationUpdated(conversation) => {
                Outgoing::new(name, &ConversationPayload { conversation })
            }
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
