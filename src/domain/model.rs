//! The objects of the protocol: conversations, members and messages, shaped as clients see them.

use serde::Serialize;
use utoipa::ToSchema;

use super::{Attachment, ConversationId, MessageId, Timestamp, UserId};

/// What kind of conversation: a fixed pair of users, or a managed group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    Direct,
    Group,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(Self::Direct),
            "group" => Some(Self::Group),
            _ => None,
        }
    }
}

/// A member's role. Ordered by power, so `role >= Role::Admin` reads as intended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Member {
    pub user_id: UserId,
    /// The user's latest display name, when a token ever carried one.
    pub name: Option<String>,
    pub role: Role,
    /// Everything up to this seq is read by this member: "seen by" in clients.
    pub last_read_seq: i64,
    /// When the user joined; orders ownership hand-over ("longest-standing first").
    #[serde(skip)]
    pub joined_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: i64,
    /// `None` for a system message (posted by the host app's server, from no user).
    pub sender_id: Option<UserId>,
    pub kind: MessageKind,
    pub client_id: String,
    /// `None` once deleted.
    pub body: Option<String>,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    /// The files sent with it, in the order the sender gave; left out when there are none
    /// (and once deleted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// Who wrote a message: a user, or the host app's server (a system message, which clients show
/// apart: "order shipped").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    User,
    System,
}

/// A conversation. In answers listing the caller's own conversations (and a user's, on the
/// server API) it also carries the viewer's `last_read_seq` and `unread_count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub members: Vec<Member>,
    pub created_at: Timestamp,
    pub last_seq: i64,
    pub last_message: Option<Message>,
    /// The viewer's read state; only in answers about the viewer's own list. (Flattened into
    /// the object, which the schema can't say of an optional part: it lists the two fields on
    /// `Conversation` in words.)
    #[serde(flatten)]
    #[schema(ignore)]
    pub read_state: Option<ReadState>,
}

/// Where one member stands in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReadState {
    /// Everything up to this seq is read.
    pub last_read_seq: i64,
    /// Messages after `last_read_seq` that are not deleted and not the member's own.
    pub unread_count: i64,
}

impl Conversation {
    pub fn member(&self, user: &UserId) -> Option<&Member> {
        self.members.iter().find(|m| &m.user_id == user)
    }

    pub fn member_ids(&self) -> impl Iterator<Item = &UserId> {
        self.members.iter().map(|m| &m.user_id)
    }
}

/// A ban of a user by the host app (server API): their tokens are refused (`reason: "banned"`)
/// until `until` (`None`: for good).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Ban {
    pub user_id: UserId,
    pub until: Option<Timestamp>,
    pub reason: Option<String>,
}
