//! What clients ask for: the events they may send, each named once with its rate bucket, and
//! the [`Command`] parsed from an event's raw JSON (or built from an HTTP route) in one step.

use super::requests::{
    ChangeMembers, ConversationRef, CreateConversation, DeleteMessage, EditMessage, History,
    ListMembers, MarkRead, PresenceQuery, Refresh, Search, SendMessage, Sync, UserRef,
};
use crate::domain::Limits;
use crate::error::{Error, Result};

/// The token bucket a request draws from (docs/PROTOCOL.md, "Rate limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Send,
    Typing,
    Other,
    /// Members touched by membership requests: charged per member, not per request.
    Members,
}

impl Bucket {
    /// The name in metrics (`confab_rate_limited_total{bucket}`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Send => "Send",
            Self::Typing => "Typing",
            Self::Other => "Other",
            Self::Members => "Members",
        }
    }
}

/// The events a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    MessageSend,
    MessageEdit,
    MessageDelete,
    MessageHistory,
    Sync,
    ConversationCreate,
    ConversationList,
    ConversationMembersAdd,
    ConversationMembersRemove,
    ConversationLeave,
    ConversationRead,
    TypingStart,
    TypingStop,
    PresenceGet,
    AuthRefresh,
    // The host app's side (issue 19): blocks.
    UserBlock,
    UserUnblock,
    // Search (issue 20).
    MessageSearch,
    // Large groups (issue 23).
    ConversationMembersList,
}

impl ClientEvent {
    /// Every event with its name on the wire.
    pub const ALL: [(ClientEvent, &'static str); 19] = [
        (Self::MessageSend, "message:send"),
        (Self::MessageEdit, "message:edit"),
        (Self::MessageDelete, "message:delete"),
        (Self::MessageHistory, "message:history"),
        (Self::Sync, "sync"),
        (Self::ConversationCreate, "conversation:create"),
        (Self::ConversationList, "conversation:list"),
        (Self::ConversationMembersAdd, "conversation:members:add"),
        (
            Self::ConversationMembersRemove,
            "conversation:members:remove",
        ),
        (Self::ConversationLeave, "conversation:leave"),
        (Self::ConversationRead, "conversation:read"),
        (Self::TypingStart, "typing:start"),
        (Self::TypingStop, "typing:stop"),
        (Self::PresenceGet, "presence:get"),
        (Self::AuthRefresh, "auth:refresh"),
        (Self::UserBlock, "user:block"),
        (Self::UserUnblock, "user:unblock"),
        (Self::MessageSearch, "message:search"),
        (Self::ConversationMembersList, "conversation:members:list"),
    ];

    pub fn of(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(e, _)| *e)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(e, _)| *e == self)
            .map(|(_, n)| *n)
            .expect("every event is in ALL")
    }

    /// The bucket it draws from, checked before its payload is read.
    pub fn bucket(self) -> Bucket {
        match self {
            Self::MessageSend => Bucket::Send,
            Self::TypingStart | Self::TypingStop => Bucket::Typing,
            _ => Bucket::Other,
        }
    }

    /// Parses the event's payload (raw JSON text; `null` when the event had none).
    pub fn parse(self, payload: &str, limits: &Limits) -> Result<Command> {
        let request = match self {
            Self::AuthRefresh => return Ok(Command::Refresh(Refresh::parse(payload)?)),
            Self::MessageSend => Request::SendMessage(SendMessage::parse(payload, limits)?),
            Self::MessageEdit => Request::EditMessage(EditMessage::parse(payload, limits)?),
            Self::MessageDelete => Request::DeleteMessage(DeleteMessage::parse(payload)?),
            Self::MessageHistory => Request::History(History::parse(payload)?),
            Self::Sync => Request::Sync(Sync::parse(payload)?),
            Self::ConversationCreate => {
                Request::CreateConversation(CreateConversation::parse(payload)?)
            }
            Self::ConversationList => Request::ListConversations,
            Self::ConversationMembersAdd => Request::AddMembers(ChangeMembers::parse(payload)?),
            Self::ConversationMembersRemove => {
                Request::RemoveMembers(ChangeMembers::parse(payload)?)
            }
            Self::ConversationLeave => Request::Leave(ConversationRef::parse(payload)?),
            Self::ConversationRead => Request::MarkRead(MarkRead::parse(payload)?),
            Self::TypingStart => Request::TypingStart(ConversationRef::parse(payload)?),
            Self::TypingStop => Request::TypingStop(ConversationRef::parse(payload)?),
            Self::PresenceGet => Request::Presence(PresenceQuery::parse(payload)?),
            Self::UserBlock => Request::Block(UserRef::parse(payload)?),
            Self::UserUnblock => Request::Unblock(UserRef::parse(payload)?),
            Self::MessageSearch => Request::Search(Search::parse(payload)?),
            Self::ConversationMembersList => Request::ListMembers(ListMembers::parse(payload)?),
        };
        Ok(Command::Chat(request))
    }
}

/// The error for an event name nobody knows.
pub fn unknown_event(name: &str) -> Error {
    let shown: String = name.chars().take(64).collect();
    Error::InvalidPayload {
        field: None,
        message: format!("unknown event {shown:?}"),
    }
}

/// A client's event, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// For the chat use cases.
    Chat(Request),
    /// For the socket's own session: `auth:refresh`.
    Refresh(Refresh),
}

/// What the chat use cases do for a client: from a socket event or an HTTP route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    SendMessage(SendMessage),
    EditMessage(EditMessage),
    DeleteMessage(DeleteMessage),
    History(History),
    Sync(Sync),
    CreateConversation(CreateConversation),
    ListConversations,
    AddMembers(ChangeMembers),
    RemoveMembers(ChangeMembers),
    Leave(ConversationRef),
    MarkRead(MarkRead),
    TypingStart(ConversationRef),
    TypingStop(ConversationRef),
    Presence(PresenceQuery),
    Block(UserRef),
    Unblock(UserRef),
    Search(Search),
    ListMembers(ListMembers),
}

impl Request {
    /// The bucket it draws from (the same as its event's).
    pub fn bucket(&self) -> Bucket {
        match self {
            Self::SendMessage(_) => Bucket::Send,
            Self::TypingStart(_) | Self::TypingStop(_) => Bucket::Typing,
            _ => Bucket::Other,
        }
    }

    /// What it costs from the members budget: every user it makes, or stops being, a member
    /// (the caller aside). One request naming 999 users costs 999, which bounds the rows and
    /// `conversation:new` events one user can cause, however the requests are split.
    pub fn members_touched(&self) -> usize {
        match self {
            Self::CreateConversation(CreateConversation::Direct { .. }) => 1,
            Self::CreateConversation(CreateConversation::Group { member_ids, .. }) => {
                member_ids.len()
            }
            Self::AddMembers(r) | Self::RemoveMembers(r) => r.user_ids.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_named_once_and_buckets_agree() {
        let names: std::collections::HashSet<&str> =
            ClientEvent::ALL.iter().map(|(_, n)| *n).collect();
        assert_eq!(names.len(), ClientEvent::ALL.len());
        for (event, name) in ClientEvent::ALL {
            assert_eq!(ClientEvent::of(name), Some(event));
            assert_eq!(event.name(), name);
        }
        assert_eq!(ClientEvent::of("message:sendx"), None);
        let limits = Limits {
            max_body_chars: 10,
            max_group_members: 5,
            max_payload_bytes: 1024,
        };
        let id = crate::domain::ConversationId::new();
        let typing = ClientEvent::TypingStart
            .parse(&format!(r#"{{"conversation_id":"{id}"}}"#), &limits)
            .unwrap();
        let Command::Chat(request) = typing else {
            panic!()
        };
        assert_eq!(request.bucket(), ClientEvent::TypingStart.bucket());
    }
}
