//! Server → client events: each one a struct, named once here (`NAME`), with the payload
//! clients receive (docs/PROTOCOL.md, "Server → client events"). Whoever emits one encodes it
//! once for all its recipients (`hub::Outgoing::of`).

use std::collections::HashSet;

use serde::Serialize;

use crate::domain::{Conversation, ConversationId, Member, Message, Timestamp, UserId};

/// An event the server pushes: its name and its payload.
pub trait ServerEvent: Serialize {
    const NAME: &'static str;
}

macro_rules! event {
    ($type:ident $(<$lt:lifetime>)?, $name:literal) => {
        impl$(<$lt>)? ServerEvent for $type$(<$lt>)? {
            const NAME: &'static str = $name;
        }
    };
}

/// A message was stored in one of the recipient's conversations.
#[derive(Serialize)]
pub struct MessageNew<'a> {
    pub message: &'a Message,
}
event!(MessageNew<'a>, "message:new");

/// A message was edited or deleted.
#[derive(Serialize)]
pub struct MessageUpdated<'a> {
    pub message: &'a Message,
}
event!(MessageUpdated<'a>, "message:updated");

/// The recipient is in a conversation they weren't in (created, or added to), and `by` whom
/// (its creator, or the owner or admin who added them), so an app can say "Alice added you".
/// `by` is `null` when the host app's server did it (the server API).
#[derive(Serialize)]
pub struct ConversationNew<'a> {
    pub conversation: &'a Conversation,
    pub by: Option<&'a UserId>,
}
event!(ConversationNew<'a>, "conversation:new");

/// A group's members changed: who joined or changed role, and who left. A delta, not the whole
/// list, so a change in a group of n costs each of its n members O(change), not O(n). `by` is
/// who made the change (the one who left, for a departure), so an app can tell "Carol left" from
/// "Alice removed Carol"; a role handed on because the owner left has the leaver as its `by`.
#[derive(Serialize)]
pub struct ConversationMembers<'a> {
    pub conversation_id: ConversationId,
    pub changed: Vec<&'a Member>,
    pub removed: Vec<&'a UserId>,
    /// How many members there are after the change.
    pub member_count: i64,
    /// `null` when the host app's server made the change.
    pub by: Option<&'a UserId>,
    /// Whether a member who stays changed role (an ownership hand-over): news for everyone,
    /// in a large group too.
    #[serde(skip)]
    pub role_changed: bool,
}
event!(ConversationMembers<'a>, "conversation:members");

impl<'a> ConversationMembers<'a> {
    /// The delta of a membership change made `by` them: who `joined` or changed role
    /// (`roles`), as they are in `after`, and who was `removed`.
    pub fn of(
        after: &'a Conversation,
        joined: &[UserId],
        roles: &[UserId],
        removed: &'a [UserId],
        by: Option<&'a UserId>,
    ) -> Self {
        let touched: HashSet<&UserId> = joined.iter().chain(roles).collect();
        Self {
            conversation_id: after.id,
            changed: after
                .members
                .iter()
                .filter(|m| touched.contains(&m.user_id))
                .collect(),
            removed: removed.iter().collect(),
            member_count: after.member_count,
            by,
            role_changed: roles.iter().any(|u| !joined.contains(u)),
        }
    }
}

/// The recipient is no longer in a conversation (removed, or left from another socket).
#[derive(Serialize)]
pub struct ConversationRemoved {
    pub conversation_id: ConversationId,
}
event!(ConversationRemoved, "conversation:removed");

/// A member's read mark moved.
#[derive(Serialize)]
pub struct Receipt<'a> {
    pub conversation_id: ConversationId,
    pub user_id: &'a UserId,
    pub seq: i64,
}
event!(Receipt<'a>, "receipt");

/// A member started or stopped typing.
#[derive(Serialize)]
pub struct Typing<'a> {
    pub conversation_id: ConversationId,
    pub user_id: &'a UserId,
    pub typing: bool,
}
event!(Typing<'a>, "typing");

/// One user's presence, as clients see it: the `presence` event, and each entry of the
/// `presence:get` reply.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PresenceState {
    pub user_id: UserId,
    pub online: bool,
    pub last_seen_at: Option<Timestamp>,
}
event!(PresenceState, "presence");

/// The socket's session ends at `expires_at`: refresh it with `auth:refresh`.
#[derive(Serialize)]
pub struct SessionExpiring {
    pub expires_at: Timestamp,
}
event!(SessionExpiring, "session:expiring");

/// The socket's session ended; the server disconnects it.
#[derive(Serialize)]
pub struct SessionExpired {
    pub expires_at: Timestamp,
}
event!(SessionExpired, "session:expired");

/// Events may have been missed (another node died, Redis was unreachable): call `sync`.
#[derive(Serialize)]
pub struct Resync {}
event!(Resync, "resync");

/// This server is going away: reconnect (to another node).
#[derive(Serialize)]
pub struct ServerShutdown {}
event!(ServerShutdown, "server:shutdown");

// The host app's side (server API, moderation, webhooks).

/// The host app ended the user's sessions (`reason`: `banned`, or `erased`); the server
/// disconnects the socket. A banned user's tokens are refused until `until` (`null`: for good).
#[derive(Serialize)]
pub struct SessionEnded {
    pub reason: &'static str,
    pub until: Option<Timestamp>,
}
event!(SessionEnded, "session:ended");
