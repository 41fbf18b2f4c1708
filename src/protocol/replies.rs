//! What a client gets back for a request: the `data` of the success envelope, one shape per
//! kind of request (docs/PROTOCOL.md gives each event's answer).

use serde::Serialize;

use super::events::PresenceState;
use crate::domain::{
    Attachment, Ban, Conversation, ConversationId, Member, Message, Snippet, Timestamp, UserId,
};

/// A page of messages in ascending seq (`message:history`, and each conversation of `sync`).
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// One conversation's part of a `sync` answer.
#[derive(Debug, Clone, Serialize)]
pub struct SyncUpdate {
    pub conversation_id: ConversationId,
    pub messages: Vec<Message>,
    pub has_more: bool,
    /// Messages at or below the cursor edited or deleted since the caller's last sync, after
    /// the cursor's `changed_after`.
    pub changed: Vec<Message>,
    /// More changes than `changed` holds: ask again from its last seq.
    pub changed_has_more: bool,
}

/// A message that matched a search, with the passage that matched.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResult {
    pub message: Message,
    #[serde(flatten)]
    pub snippet: Snippet,
}

/// The answer to a request, serialized as the envelope's `data` object.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// `message:send` (`new`: stored now, not found stored by an earlier attempt),
    /// `message:edit`, `message:delete`.
    Message {
        message: Message,
        #[serde(skip)]
        new: bool,
    },
    /// `conversation:create` (`created`: not found existing), `conversation:members:*`.
    Conversation {
        conversation: Conversation,
        #[serde(skip)]
        created: bool,
    },
    Conversations {
        conversations: Vec<Conversation>,
    },
    /// `conversation:members:list`: a page in member order; `next` is the cursor for the
    /// page after (`null`: this was the last).
    Members {
        members: Vec<Member>,
        member_count: i64,
        next: Option<String>,
    },
    Left {
        conversation_id: ConversationId,
    },
    Read {
        conversation_id: ConversationId,
        last_read_seq: i64,
        unread_count: i64,
    },
    History(Page),
    Sync {
        updates: Vec<SyncUpdate>,
        server_time: Timestamp,
    },
    Presence {
        presence: Vec<PresenceState>,
    },
    Refreshed {
        expires_at: Timestamp,
    },
    /// `typing:*`: `{}`.
    Done {},
    // The host app's side (server API, moderation, webhooks).
    /// A ban in force, or none (`ban: null`, after an unban).
    Ban {
        user_id: UserId,
        ban: Option<Ban>,
    },
    Erased {
        user_id: UserId,
        messages_deleted: usize,
        conversations_left: usize,
    },
    /// `user:block`, `user:unblock`.
    Blocked {
        user_id: UserId,
        blocked: bool,
    },
    // Attachments and search (issue 20).
    /// `POST /api/attachments`.
    Attachment {
        attachment: Attachment,
    },
    /// `message:search`, `GET /api/search`: newest first.
    Search {
        results: Vec<SearchResult>,
        /// More, older results: ask again with `before` set to the last result's message id.
        has_more: bool,
    },
    /// `GET /api/attachments/{id}/link`: a URL (relative to the server) that downloads the
    /// attachment without a token until `expires_at`.
    AttachmentLink {
        url: String,
        expires_at: Timestamp,
    },
}

impl Reply {
    /// Whether the request made something new (HTTP answers 201 then, 200 otherwise).
    pub fn created(&self) -> bool {
        match self {
            Self::Message { new, .. } => *new,
            Self::Conversation { created, .. } => *created,
            _ => false,
        }
    }
}
