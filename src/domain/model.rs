//! The objects of the protocol: conversations, members and messages, shaped as clients see them.

use serde::{Serialize, Serializer};
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
    /// The first 100 members in member order (owner, admins, members, each by when they
    /// joined): all of them in a group of up to 100; page through a larger one with
    /// `conversation:members:list` (`GET /api/conversations/{id}/members`).
    // The server may hold all of them (to decide a membership change) or only the first page (a
    // list); clients always get at most the first `MEMBERS_PAGE`, so an object costs the same
    // in a group of any size.
    #[serde(serialize_with = "first_page")]
    #[schema(max_items = 100)]
    pub members: Vec<Member>,
    /// How many members the conversation has (`members` may hold only the first of them).
    pub member_count: i64,
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

/// How many members a conversation object carries, and the largest page of
/// `conversation:members:list`. A group with at most this many members is *small*: its objects
/// hold every member, membership deltas reach every member, and so do presence, typing and
/// receipts. A larger group is *large*: those go only where they stay O(1) per change (see
/// docs/PROTOCOL.md, "Large groups").
pub const MEMBERS_PAGE: usize = 100;

fn first_page<S: Serializer>(members: &[Member], s: S) -> Result<S::Ok, S::Error> {
    members[..members.len().min(MEMBERS_PAGE)].serialize(s)
}

/// Whether a conversation of `member_count` members is large (see [`MEMBERS_PAGE`]).
pub fn is_large(member_count: i64) -> bool {
    member_count > MEMBERS_PAGE as i64
}

impl Conversation {
    pub fn is_large(&self) -> bool {
        is_large(self.member_count)
    }

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

/// A place in a conversation's member order, after which `conversation:members:list` goes on.
/// Clients get it as an opaque string (`next`) and hand it back as `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberCursor {
    /// 0 owner, 1 admin, 2 member: the order roles are listed in.
    pub rank: i64,
    pub joined_at: i64,
    pub user_id: UserId,
}

impl MemberCursor {
    /// The place of `member` (the last of a page).
    pub fn of(member: &Member) -> Self {
        Self {
            rank: role_rank(member.role),
            joined_at: member.joined_at.millis(),
            user_id: member.user_id.clone(),
        }
    }

    /// The opaque text clients see: the hex of `rank.joined_at.user_id` (safe in a URL).
    pub fn encode(&self) -> String {
        hex::encode(format!("{}.{}.{}", self.rank, self.joined_at, self.user_id))
    }

    /// Reads what [`MemberCursor::encode`] wrote; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, '.');
        let rank: i64 = parts.next()?.parse().ok()?;
        let joined_at: i64 = parts.next()?.parse().ok()?;
        let user_id = UserId::parse(parts.next()?).ok()?;
        (0..=2).contains(&rank).then_some(Self {
            rank,
            joined_at,
            user_id,
        })
    }
}

/// A role's place in member order (SQL: `CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1
/// ELSE 2 END`, the expression the `members_in_order` index is built on).
pub fn role_rank(role: Role) -> i64 {
    match role {
        Role::Owner => 0,
        Role::Admin => 1,
        Role::Member => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_cursors_round_trip_and_refuse_anything_else() {
        let c = MemberCursor {
            rank: 2,
            joined_at: 1_700_000_000_123,
            user_id: UserId::parse("a.b.c").unwrap(),
        };
        assert_eq!(MemberCursor::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "x",
            "!!!",
            &hex::encode("3.1.a"),
            &hex::encode("1.x.a"),
            &hex::encode("1.2."),
        ] {
            assert_eq!(MemberCursor::decode(bad), None, "{bad}");
        }
    }
}
