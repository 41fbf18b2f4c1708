//! Request payloads, parsed once from untrusted JSON text into validated values.
//!
//! Each request has a "wire" struct that serde fills with plain types straight from the raw
//! JSON (so a type error can name its field, via `serde_path_to_error`) and a validated struct
//! built from it. Unknown fields are ignored, as the protocol promises.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};

use crate::domain::{
    AttachmentId, ClientId, ConversationId, ConversationTitle, Limits, MemberCursor, MessageBody,
    MessageId, SearchQuery, Timestamp, UserId,
};
use crate::error::{Error, Result};

/// Most user ids in one `members:add`/`members:remove` call.
pub const MAX_USER_IDS: usize = 1000;
/// Most conversations in one `sync` call.
pub const MAX_SYNC_CURSORS: usize = 1000;
/// History page size when none is asked for, and the largest allowed.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
pub const MAX_HISTORY_LIMIT: u32 = 200;
/// Most attachments on one message.
pub const MAX_ATTACHMENTS: usize = 10;

/// Deserializes a wire struct, turning serde's error into `invalid_payload` naming the field.
pub fn decode<'de, T, D>(input: D) -> Result<T>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde reports a missing field at the parent's path, naming the field in its message.
        let field = if let Some(rest) = inner.strip_prefix("missing field `") {
            rest.split('`').next().unwrap_or_default().to_owned()
        } else {
            path
        };
        let message = inner
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_owned();
        if field == "." || field.is_empty() {
            Error::InvalidPayload {
                field: None,
                message: format!("payload: {message}"),
            }
        } else {
            Error::invalid(field, message)
        }
    })
}

/// Parses a request from raw JSON text, which must hold an object. serde's derived structs
/// also accept an array (fields by position, so `["<id>", "c1", "hi"]` would read as a send);
/// the protocol's payloads are objects, and a second spelling is only more to get wrong.
pub fn from_json<T: DeserializeOwned>(raw: &str) -> Result<T> {
    let kind = json_kind(raw);
    if kind != "an object" {
        return Err(Error::InvalidPayload {
            field: None,
            message: format!("payload: must be an object, not {kind}"),
        });
    }
    let mut input = serde_json::Deserializer::from_str(raw);
    let value = decode(&mut input)?;
    input.end().map_err(|e| Error::InvalidPayload {
        field: None,
        message: format!("payload: {e}"),
    })?;
    Ok(value)
}

/// What a JSON text holds, from its first character (enough to refuse what isn't an object,
/// before reading it).
fn json_kind(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(_) => "JSON",
        None => "empty",
    }
}

pub(super) fn conversation_id(field: &str, raw: &str) -> Result<ConversationId> {
    ConversationId::parse(raw)
        .ok_or_else(|| Error::invalid(field, "must be a conversation id (a UUID)"))
}

pub(super) fn user_id(field: &str, raw: &str) -> Result<UserId> {
    UserId::parse(raw).map_err(|e| Error::invalid(field, e.to_string()))
}

pub(super) fn user_ids(field: &str, raw: Vec<String>) -> Result<Vec<UserId>> {
    if raw.len() > MAX_USER_IDS {
        return Err(Error::too_large(
            field,
            format!("at most {MAX_USER_IDS} user ids"),
        ));
    }
    let mut ids: Vec<UserId> = raw
        .iter()
        .enumerate()
        .map(|(i, u)| user_id(&format!("{field}[{i}]"), u))
        .collect::<Result<_>>()?;
    // Keep first occurrences, in the caller's order.
    let mut seen = std::collections::HashSet::new();
    ids.retain(|u| seen.insert(u.clone()));
    Ok(ids)
}

/// `conversation:create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateConversation {
    Direct {
        user_id: UserId,
    },
    Group {
        title: ConversationTitle,
        member_ids: Vec<UserId>,
    },
}

#[derive(Deserialize)]
struct CreateConversationWire {
    kind: String,
    user_id: Option<String>,
    title: Option<String>,
    member_ids: Option<Vec<String>>,
}

impl CreateConversation {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: CreateConversationWire = from_json(raw)?;
        match wire.kind.as_str() {
            "direct" => {
                let raw = wire.user_id.ok_or_else(|| {
                    Error::invalid("user_id", "is required for a direct conversation")
                })?;
                Ok(Self::Direct {
                    user_id: user_id("user_id", &raw)?,
                })
            }
            "group" => {
                let raw = wire
                    .title
                    .ok_or_else(|| Error::invalid("title", "is required for a group"))?;
                let title = ConversationTitle::parse(&raw).map_err(|e| Error::text("title", e))?;
                let member_ids = user_ids("member_ids", wire.member_ids.unwrap_or_default())?;
                Ok(Self::Group { title, member_ids })
            }
            _ => Err(Error::invalid("kind", "must be \"direct\" or \"group\"")),
        }
    }
}

/// `conversation:members:add` and `conversation:members:remove`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeMembers {
    pub conversation_id: ConversationId,
    pub user_ids: Vec<UserId>,
}

#[derive(Deserialize)]
struct ChangeMembersWire {
    conversation_id: String,
    user_ids: Vec<String>,
}

impl ChangeMembers {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: ChangeMembersWire = from_json(raw)?;
        let user_ids = user_ids("user_ids", wire.user_ids)?;
        if user_ids.is_empty() {
            return Err(Error::invalid("user_ids", "must name at least one user"));
        }
        Ok(Self {
            conversation_id: conversation_id("conversation_id", &wire.conversation_id)?,
            user_ids,
        })
    }
}

/// Requests that only name a conversation: `conversation:leave`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationRef {
    pub conversation_id: ConversationId,
}

#[derive(Deserialize)]
struct ConversationRefWire {
    conversation_id: String,
}

impl ConversationRef {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: ConversationRefWire = from_json(raw)?;
        Ok(Self {
            conversation_id: conversation_id("conversation_id", &wire.conversation_id)?,
        })
    }
}

/// `message:send` (and the HTTP route, which takes the conversation from the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    pub conversation_id: ConversationId,
    pub client_id: ClientId,
    /// Empty only when the message has attachments (a photo needs no caption).
    pub body: MessageBody,
    /// Files the sender uploaded (`POST /api/attachments`) and hasn't sent yet: distinct, at
    /// most [`MAX_ATTACHMENTS`].
    pub attachment_ids: Vec<AttachmentId>,
}

#[derive(Deserialize)]
struct SendMessageWire {
    conversation_id: Option<String>,
    client_id: String,
    body: Option<String>,
    #[serde(default)]
    attachment_ids: Vec<String>,
}

/// The attachments of a send: canonical ids, distinct, a few at most.
fn attachment_ids(raw: Vec<String>) -> Result<Vec<AttachmentId>> {
    if raw.len() > MAX_ATTACHMENTS {
        return Err(Error::too_large(
            "attachment_ids",
            format!("at most {MAX_ATTACHMENTS} attachments per message"),
        ));
    }
    let mut ids = Vec::with_capacity(raw.len());
    for (i, id) in raw.iter().enumerate() {
        let field = format!("attachment_ids[{i}]");
        let id = AttachmentId::parse(id)
            .ok_or_else(|| Error::invalid(field.clone(), "must be an attachment id (a UUID)"))?;
        if ids.contains(&id) {
            return Err(Error::invalid(field, "is listed twice"));
        }
        ids.push(id);
    }
    Ok(ids)
}

impl SendMessage {
    pub fn parse(raw: &str, limits: &Limits) -> Result<Self> {
        Self::parse_in(raw, None, limits)
    }

    /// Parses a send whose conversation may come from elsewhere (an HTTP path).
    pub fn parse_in(
        raw: &str,
        conversation: Option<ConversationId>,
        limits: &Limits,
    ) -> Result<Self> {
        let wire: SendMessageWire = from_json(raw)?;
        let conversation_id = match (conversation, wire.conversation_id) {
            (Some(id), _) => id,
            (None, Some(raw)) => conversation_id("conversation_id", &raw)?,
            (None, None) => return Err(Error::invalid("conversation_id", "is required")),
        };
        let client_id = ClientId::parse(wire.client_id)
            .map_err(|e| Error::invalid("client_id", e.to_string()))?;
        let attachment_ids = attachment_ids(wire.attachment_ids)?;
        let body = match wire.body {
            // A file on its own: no caption.
            None if !attachment_ids.is_empty() => MessageBody::empty(),
            Some(body) if body.is_empty() && !attachment_ids.is_empty() => MessageBody::empty(),
            None => return Err(Error::invalid("body", "missing field `body`")),
            Some(body) => MessageBody::parse(body, limits.max_body_chars)
                .map_err(|e| Error::text("body", e))?,
        };
        Ok(Self {
            conversation_id,
            client_id,
            body,
            attachment_ids,
        })
    }
}

/// `message:edit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditMessage {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub body: MessageBody,
}

#[derive(Deserialize)]
struct EditMessageWire {
    conversation_id: String,
    message_id: String,
    body: String,
}

impl EditMessage {
    pub fn parse(raw: &str, limits: &Limits) -> Result<Self> {
        let wire: EditMessageWire = from_json(raw)?;
        Ok(Self {
            conversation_id: conversation_id("conversation_id", &wire.conversation_id)?,
            message_id: message_id(&wire.message_id)?,
            body: MessageBody::parse(wire.body, limits.max_body_chars)
                .map_err(|e| Error::text("body", e))?,
        })
    }
}

/// `message:delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteMessage {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
}

#[derive(Deserialize)]
struct DeleteMessageWire {
    conversation_id: String,
    message_id: String,
}

impl DeleteMessage {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: DeleteMessageWire = from_json(raw)?;
        Ok(Self {
            conversation_id: conversation_id("conversation_id", &wire.conversation_id)?,
            message_id: message_id(&wire.message_id)?,
        })
    }
}

fn message_id(raw: &str) -> Result<MessageId> {
    MessageId::parse(raw)
        .ok_or_else(|| Error::invalid("message_id", "must be a message id (a UUID)"))
}

/// `message:history` (and the HTTP route's query string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub conversation_id: ConversationId,
    pub before_seq: Option<i64>,
    pub after_seq: Option<i64>,
    pub limit: u32,
}

/// The paging part of a history request, shared with the HTTP query string.
#[derive(Deserialize, Default)]
pub struct HistoryWindowWire {
    pub before_seq: Option<i64>,
    pub after_seq: Option<i64>,
    pub limit: Option<i64>,
}

// The window's fields are repeated rather than `#[serde(flatten)]`ed: flattening hides the
// field path from error messages.
#[derive(Deserialize)]
struct HistoryWire {
    conversation_id: String,
    before_seq: Option<i64>,
    after_seq: Option<i64>,
    limit: Option<i64>,
}

impl History {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: HistoryWire = from_json(raw)?;
        Self::from_window(
            conversation_id("conversation_id", &wire.conversation_id)?,
            HistoryWindowWire {
                before_seq: wire.before_seq,
                after_seq: wire.after_seq,
                limit: wire.limit,
            },
        )
    }

    pub fn from_window(conversation_id: ConversationId, w: HistoryWindowWire) -> Result<Self> {
        if w.before_seq.is_some_and(|s| s < 1) {
            return Err(Error::invalid("before_seq", "must be at least 1"));
        }
        if w.after_seq.is_some_and(|s| s < 0) {
            return Err(Error::invalid("after_seq", "must not be negative"));
        }
        let limit = match w.limit {
            None => DEFAULT_HISTORY_LIMIT,
            Some(l) if l < 1 => return Err(Error::invalid("limit", "must be at least 1")),
            // Larger pages are served at the maximum size rather than refused.
            Some(l) => l.min(i64::from(MAX_HISTORY_LIMIT)) as u32,
        };
        Ok(Self {
            conversation_id,
            before_seq: w.before_seq,
            after_seq: w.after_seq,
            limit,
        })
    }
}

/// Member pages (`conversation:members:list`): the size when none is asked for, and the
/// largest served (more is served as this many).
pub const DEFAULT_MEMBERS_LIMIT: usize = crate::domain::MEMBERS_PAGE;
pub const MAX_MEMBERS_LIMIT: usize = 1000;

/// `conversation:members:list` (and `GET /api/conversations/{id}/members`): a page of members
/// in member order, after the cursor of the page before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMembers {
    pub conversation_id: ConversationId,
    pub after: Option<MemberCursor>,
    pub limit: usize,
}

/// The paging part of a member list request, shared with the HTTP query string.
#[derive(Deserialize, Default)]
pub struct MembersWindowWire {
    pub after: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Deserialize)]
struct ListMembersWire {
    conversation_id: String,
    after: Option<String>,
    limit: Option<i64>,
}

impl ListMembers {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: ListMembersWire = from_json(raw)?;
        Self::from_window(
            conversation_id("conversation_id", &wire.conversation_id)?,
            MembersWindowWire {
                after: wire.after,
                limit: wire.limit,
            },
        )
    }

    pub fn from_window(conversation_id: ConversationId, w: MembersWindowWire) -> Result<Self> {
        let after = match w.after.as_deref() {
            None => None,
            Some(text) => Some(MemberCursor::decode(text).ok_or_else(|| {
                Error::invalid(
                    "after",
                    "must be the `next` of an earlier page, as it was given",
                )
            })?),
        };
        let limit = match w.limit {
            None => DEFAULT_MEMBERS_LIMIT,
            Some(l) if l < 1 => return Err(Error::invalid("limit", "must be at least 1")),
            // As for history: larger pages are served at the maximum size, not refused.
            Some(l) => l.min(MAX_MEMBERS_LIMIT as i64) as usize,
        };
        Ok(Self {
            conversation_id,
            after,
            limit,
        })
    }
}

/// `conversation:read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkRead {
    pub conversation_id: ConversationId,
    pub seq: i64,
}

#[derive(Deserialize)]
struct MarkReadWire {
    conversation_id: String,
    seq: i64,
}

impl MarkRead {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: MarkReadWire = from_json(raw)?;
        if wire.seq < 0 {
            return Err(Error::invalid("seq", "must not be negative"));
        }
        Ok(Self {
            conversation_id: conversation_id("conversation_id", &wire.conversation_id)?,
            seq: wire.seq,
        })
    }
}

/// Most users in one `presence:get`.
pub const MAX_PRESENCE_USERS: usize = 500;

/// `presence:get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceQuery {
    pub user_ids: Vec<UserId>,
}

#[derive(Deserialize)]
struct PresenceQueryWire {
    user_ids: Vec<String>,
}

impl PresenceQuery {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: PresenceQueryWire = from_json(raw)?;
        if wire.user_ids.len() > MAX_PRESENCE_USERS {
            return Err(Error::too_large(
                "user_ids",
                format!("at most {MAX_PRESENCE_USERS} users per call"),
            ));
        }
        Ok(Self {
            user_ids: user_ids("user_ids", wire.user_ids)?,
        })
    }
}

/// `auth:refresh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub token: String,
}

#[derive(Deserialize)]
struct RefreshWire {
    token: String,
}

impl Refresh {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: RefreshWire = from_json(raw)?;
        Ok(Self { token: wire.token })
    }
}

/// `sync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    /// One per conversation, sorted by conversation id.
    pub cursors: Vec<SyncCursor>,
    /// The `server_time` of the caller's previous sync: also return what changed since then.
    pub since: Option<Timestamp>,
}

/// What the caller has of one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncCursor {
    pub conversation_id: ConversationId,
    /// The last seq the caller holds: newer messages are returned.
    pub after: i64,
    /// Changed messages are returned from the one after this seq: a caller pages through more
    /// changes than one answer holds by passing the last one it got (`changed_after`).
    pub changed_after: i64,
}

#[derive(Deserialize)]
struct SyncWire {
    cursors: HashMap<String, i64>,
    since: Option<String>,
    #[serde(default)]
    changed_after: HashMap<String, i64>,
}

impl Sync {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: SyncWire = from_json(raw)?;
        if wire.cursors.len() > MAX_SYNC_CURSORS {
            return Err(Error::too_large(
                "cursors",
                format!("at most {MAX_SYNC_CURSORS} conversations per sync"),
            ));
        }
        // One `"<conversation_id>": <seq>` entry of `map`, checked.
        let entry = |map: &str, id: &str, seq: i64| {
            let field = format!("{map}.{id}");
            let id = ConversationId::parse(id)
                .ok_or_else(|| Error::invalid(field.clone(), "keys must be conversation ids"))?;
            if seq < 0 {
                return Err(Error::invalid(field, "must not be negative"));
            }
            Ok((id, seq))
        };
        let mut changed_after = wire
            .changed_after
            .iter()
            .map(|(id, s)| entry("changed_after", id, *s))
            .collect::<Result<HashMap<_, _>>>()?;
        let since = wire
            .since
            .map(|raw| {
                Timestamp::parse(&raw).ok_or_else(|| {
                    Error::invalid("since", "must be a server_time from an earlier sync")
                })
            })
            .transpose()?;
        if since.is_none() && !changed_after.is_empty() {
            return Err(Error::invalid(
                "changed_after",
                "pages through changes, so it needs `since`",
            ));
        }
        let mut cursors = wire
            .cursors
            .iter()
            .map(|(id, s)| {
                let (conversation_id, after) = entry("cursors", id, *s)?;
                Ok(SyncCursor {
                    conversation_id,
                    after,
                    changed_after: changed_after.remove(&conversation_id).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(id) = changed_after.keys().min() {
            return Err(Error::invalid(
                format!("changed_after.{id}"),
                "names a conversation that is not in `cursors`",
            ));
        }
        cursors.sort();
        Ok(Self { cursors, since })
    }
}

/// Requests that only name a user: `user:block`, `user:unblock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub user_id: UserId,
}

#[derive(Deserialize)]
struct UserRefWire {
    user_id: String,
}

impl UserRef {
    pub fn parse(raw: &str) -> Result<Self> {
        let wire: UserRefWire = from_json(raw)?;
        Ok(Self {
            user_id: user_id("user_id", &wire.user_id)?,
        })
    }
}
/// Search results per page when none is asked for, and the most.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
pub const MAX_SEARCH_LIMIT: u32 = 50;

/// `message:search` (and `GET /api/search`'s query string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub query: SearchQuery,
    /// Only this conversation's messages.
    pub conversation_id: Option<ConversationId>,
    /// Only messages older than this one (the last of the previous page).
    pub before: Option<MessageId>,
    pub limit: u32,
}

/// The fields of a search, from JSON or a query string (`q` there, `query` here).
#[derive(Deserialize, Default)]
pub struct SearchWire {
    #[serde(alias = "q")]
    pub query: Option<String>,
    pub conversation_id: Option<String>,
    pub before: Option<String>,
    pub limit: Option<i64>,
}

impl Search {
    pub fn parse(raw: &str) -> Result<Self> {
        Self::from_wire(from_json(raw)?)
    }

    pub fn from_wire(wire: SearchWire) -> Result<Self> {
        let raw = wire
            .query
            .ok_or_else(|| Error::invalid("query", "is required"))?;
        let query = SearchQuery::parse(&raw).map_err(|e| Error::invalid("query", e))?;
        let limit = match wire.limit {
            None => DEFAULT_SEARCH_LIMIT,
            Some(l) if l < 1 => return Err(Error::invalid("limit", "must be at least 1")),
            Some(l) => l.min(i64::from(MAX_SEARCH_LIMIT)) as u32,
        };
        Ok(Self {
            query,
            conversation_id: wire
                .conversation_id
                .map(|id| conversation_id("conversation_id", &id))
                .transpose()?,
            before: wire
                .before
                .map(|id| {
                    MessageId::parse(&id).ok_or_else(|| {
                        Error::invalid("before", "must be a message id (the last one of a page)")
                    })
                })
                .transpose()?,
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A payload as the text a client sends.
    macro_rules! j {
        ($($t:tt)*) => { json!($($t)*).to_string() };
    }

    fn limits() -> Limits {
        Limits {
            max_body_chars: 10,
            max_group_members: 5,
            max_payload_bytes: 1024,
        }
    }

    fn field_of(e: Error) -> Option<String> {
        match e {
            Error::InvalidPayload { field, .. } | Error::TooLarge { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn type_errors_name_the_field() {
        let id = ConversationId::new().to_string();
        let e = SendMessage::parse(
            &j!({"conversation_id": id, "client_id": "c", "body": 5}),
            &limits(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_payload");
        assert_eq!(field_of(e).as_deref(), Some("body"));
        let e =
            SendMessage::parse(&j!({"conversation_id": id, "body": "x"}), &limits()).unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("client_id"));
        let e = SendMessage::parse(&j!("just a string"), &limits()).unwrap_err();
        assert_eq!(field_of(e), None);
        let e = SendMessage::parse(
            &j!({"conversation_id": "x", "client_id": "c", "body": "b"}),
            &limits(),
        )
        .unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("conversation_id"));
    }

    #[test]
    fn payloads_must_be_objects() {
        let id = ConversationId::new().to_string();
        // Positional arrays fill derived structs field by field; they must not read as requests.
        let e = SendMessage::parse(&j!([id, "c", "hello"]), &limits()).unwrap_err();
        assert_eq!(e.code(), "invalid_payload");
        assert!(
            e.to_string().contains("must be an object, not an array"),
            "{e}"
        );
        assert!(ConversationRef::parse(&j!([id])).is_err());
        assert!(MarkRead::parse(&j!([id, 3])).is_err());
        assert!(CreateConversation::parse(&j!(["direct", "bob"])).is_err());
        let e = History::parse("null").unwrap_err();
        assert_eq!(field_of(e), None);
    }

    #[test]
    fn over_long_bodies_are_too_large() {
        let id = ConversationId::new().to_string();
        let e = SendMessage::parse(
            &j!({"conversation_id": id, "client_id": "c", "body": "x".repeat(11)}),
            &limits(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "too_large");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let id = ConversationId::new().to_string();
        let ok = SendMessage::parse(
            &j!({"conversation_id": id, "client_id": "c", "body": "b", "extra": [1, 2]}),
            &limits(),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn history_limits_are_checked_and_capped() {
        let id = ConversationId::new().to_string();
        let h = History::parse(&j!({"conversation_id": id, "limit": 1000})).unwrap();
        assert_eq!(h.limit, MAX_HISTORY_LIMIT);
        let h = History::parse(&j!({"conversation_id": id})).unwrap();
        assert_eq!(h.limit, DEFAULT_HISTORY_LIMIT);
        let e = History::parse(&j!({"conversation_id": id, "limit": 0})).unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("limit"));
        let e = History::parse(&j!({"conversation_id": id, "before_seq": "5"})).unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("before_seq"));
    }

    #[test]
    fn groups_dedupe_members_and_check_each_id() {
        let g = CreateConversation::parse(
            &j!({"kind": "group", "title": "t", "member_ids": ["a", "b", "a"]}),
        )
        .unwrap();
        let CreateConversation::Group { member_ids, .. } = g else {
            panic!()
        };
        assert_eq!(member_ids.len(), 2);
        let e = CreateConversation::parse(
            &j!({"kind": "group", "title": "t", "member_ids": ["a", ""]}),
        )
        .unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("member_ids[1]"));
        let e = CreateConversation::parse(&j!({"kind": "channel"})).unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("kind"));
    }

    #[test]
    fn sync_cursors_are_validated() {
        let id = ConversationId::new().to_string();
        assert_eq!(
            Sync::parse(&j!({"cursors": {id.clone(): 3}}))
                .unwrap()
                .cursors
                .len(),
            1
        );
        let e = Sync::parse(&j!({"cursors": {"nope": 3}})).unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("cursors.nope"));
        let e = Sync::parse(&j!({"cursors": {id.clone(): "3"}})).unwrap_err();
        assert_eq!(e.code(), "invalid_payload");
        // One conversation under two spellings gave two cursors for it (the `requests` fuzz
        // body's round trip can't hold for that).
        let e = Sync::parse(&j!({"cursors": {id.clone(): 1, id.to_uppercase(): 2}})).unwrap_err();
        assert_eq!(e.code(), "invalid_payload");
    }

    #[test]
    fn sync_changed_after_pages_changes_of_listed_conversations() {
        let (a, b) = (ConversationId::new(), ConversationId::new());
        let since = "2026-11-25T20:15:48.123Z";
        let r = Sync::parse(&j!({
            "cursors": {a.to_string(): 300, b.to_string(): 7},
            "since": since,
            "changed_after": {a.to_string(): 120},
        }))
        .unwrap();
        let of = |id| r.cursors.iter().find(|c| c.conversation_id == id).unwrap();
        assert_eq!((of(a).after, of(a).changed_after), (300, 120));
        assert_eq!((of(b).after, of(b).changed_after), (7, 0));

        let e =
            Sync::parse(&j!({"cursors": {a.to_string(): 3}, "changed_after": {a.to_string(): 1}}))
                .unwrap_err();
        assert_eq!(
            field_of(e).as_deref(),
            Some("changed_after"),
            "it needs `since`"
        );
        let e = Sync::parse(&j!({"cursors": {a.to_string(): 3}, "since": since, "changed_after": {b.to_string(): 1}}))
            .unwrap_err();
        assert_eq!(field_of(e), Some(format!("changed_after.{b}")));
        let e = Sync::parse(&j!({"cursors": {a.to_string(): 3}, "since": since, "changed_after": {a.to_string(): -1}}))
            .unwrap_err();
        assert_eq!(field_of(e), Some(format!("changed_after.{a}")));
        let e =
            Sync::parse(&j!({"cursors": {a.to_string(): 3}, "since": since, "changed_after": [1]}))
                .unwrap_err();
        assert_eq!(e.code(), "invalid_payload");
    }
}
