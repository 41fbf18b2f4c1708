//! What the host app's server asks for (the server API, `/api/server/…`): its requests, parsed
//! once from untrusted JSON like the users' (`requests`), with the same error codes. The app's
//! server is trusted with any user's conversations, but not with malformed input.

use serde::Deserialize;

use super::requests::{conversation_id, from_json, user_id, user_ids};
use crate::domain::{
    Ban, ClientId, ConversationId, ConversationTitle, ExternalId, Limits, MessageBody, Timestamp,
    UserId,
};
use crate::error::{Error, Result};

/// A request of the server API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerRequest {
    CreateConversation(CreateForApp),
    AddMembers {
        conversation_id: ConversationId,
        user_ids: Vec<UserId>,
    },
    RemoveMembers {
        conversation_id: ConversationId,
        user_ids: Vec<UserId>,
    },
    ListConversations {
        user_id: UserId,
    },
    SendMessage(SendForApp),
    Ban(Ban),
    Unban {
        user_id: UserId,
    },
    Erase {
        user_id: UserId,
    },
}

/// Longest ban reason, in characters.
pub const MAX_BAN_REASON_CHARS: usize = 500;

/// Unknown fields are refused here, unlike elsewhere: a misspelt `until` would otherwise be
/// read as no `until`, a ban for good.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BanWire {
    until: Option<String>,
    reason: Option<String>,
}

impl ServerRequest {
    /// `POST /api/server/users/{user_id}/ban`: `{ "until"?, "reason"? }`.
    pub fn ban(user_id: UserId, raw: &str, now: Timestamp) -> Result<Self> {
        // An empty body is a ban for good with no reason.
        let raw = if raw.trim().is_empty() { "{}" } else { raw };
        let wire: BanWire = from_json(raw)?;
        let until = wire
            .until
            .map(|u| {
                Timestamp::parse(&u).ok_or_else(|| {
                    Error::invalid(
                        "until",
                        "must be an RFC 3339 time, like 2026-12-24T18:00:00Z",
                    )
                })
            })
            .transpose()?;
        if until.is_some_and(|u| u <= now) {
            return Err(Error::invalid("until", "must be in the future"));
        }
        // An empty reason (a blank form field) is no reason.
        let reason = wire
            .reason
            .filter(|r| !r.trim().is_empty())
            .map(|r| {
                MessageBody::parse(r, MAX_BAN_REASON_CHARS)
                    .map(MessageBody::into_string)
                    .map_err(|e| Error::text("reason", e))
            })
            .transpose()?;
        Ok(Self::Ban(Ban {
            user_id,
            until,
            reason,
        }))
    }
}

/// `POST /api/server/conversations`: a direct conversation between two users, or a group with
/// an owner; `external_id` makes it idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateForApp {
    Direct {
        users: [UserId; 2],
        external_id: Option<ExternalId>,
    },
    Group {
        owner_id: UserId,
        title: ConversationTitle,
        /// Without the owner.
        member_ids: Vec<UserId>,
        external_id: Option<ExternalId>,
    },
}

#[derive(Deserialize)]
struct CreateForAppWire {
    kind: String,
    user_ids: Option<Vec<String>>,
    owner_id: Option<String>,
    title: Option<String>,
    member_ids: Option<Vec<String>>,
    external_id: Option<String>,
}

impl CreateForApp {
    pub fn parse(raw: &str, limits: &Limits) -> Result<Self> {
        let wire: CreateForAppWire = from_json(raw)?;
        let external_id = wire
            .external_id
            .map(|e| ExternalId::parse(e).map_err(|e| Error::text("external_id", e)))
            .transpose()?;
        match wire.kind.as_str() {
            "direct" => {
                let raw = wire.user_ids.ok_or_else(|| {
                    Error::invalid("user_ids", "is required for a direct conversation")
                })?;
                let users = user_ids("user_ids", raw)?;
                let [a, b]: [UserId; 2] = users
                    .try_into()
                    .map_err(|_| Error::invalid("user_ids", "must name two different users"))?;
                Ok(Self::Direct {
                    users: [a, b],
                    external_id,
                })
            }
            "group" => {
                let raw = wire
                    .title
                    .ok_or_else(|| Error::invalid("title", "is required for a group"))?;
                let title = ConversationTitle::parse(&raw).map_err(|e| Error::text("title", e))?;
                let owner = wire
                    .owner_id
                    .ok_or_else(|| Error::invalid("owner_id", "is required for a group"))?;
                let owner_id = user_id("owner_id", &owner)?;
                let mut member_ids = user_ids("member_ids", wire.member_ids.unwrap_or_default())?;
                member_ids.retain(|m| *m != owner_id);
                if member_ids.len() + 1 > limits.max_group_members {
                    return Err(Error::too_large(
                        "member_ids",
                        format!("a group holds at most {} members", limits.max_group_members),
                    ));
                }
                Ok(Self::Group {
                    owner_id,
                    title,
                    member_ids,
                    external_id,
                })
            }
            _ => Err(Error::invalid("kind", "must be \"direct\" or \"group\"")),
        }
    }
}

/// `POST /api/server/conversations/{id}/members`: `{ "user_ids": [...] }`.
#[derive(Deserialize)]
struct AddMembersWire {
    user_ids: Vec<String>,
}

impl ServerRequest {
    pub fn add_members(conversation_id: ConversationId, raw: &str) -> Result<Self> {
        let wire: AddMembersWire = from_json(raw)?;
        let user_ids = user_ids("user_ids", wire.user_ids)?;
        if user_ids.is_empty() {
            return Err(Error::invalid("user_ids", "must name at least one user"));
        }
        Ok(Self::AddMembers {
            conversation_id,
            user_ids,
        })
    }
}

/// `POST /api/server/conversations/{id}/messages`: as a member (`sender_id`), or a system
/// message (no `sender_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendForApp {
    pub conversation_id: ConversationId,
    pub client_id: ClientId,
    pub body: MessageBody,
    pub sender_id: Option<UserId>,
}

#[derive(Deserialize)]
struct SendForAppWire {
    client_id: String,
    body: String,
    sender_id: Option<String>,
}

impl SendForApp {
    pub fn parse(conversation_id: ConversationId, raw: &str, limits: &Limits) -> Result<Self> {
        let wire: SendForAppWire = from_json(raw)?;
        Ok(Self {
            conversation_id,
            client_id: ClientId::parse(wire.client_id)
                .map_err(|e| Error::invalid("client_id", e.to_string()))?,
            body: MessageBody::parse(wire.body, limits.max_body_chars)
                .map_err(|e| Error::text("body", e))?,
            sender_id: wire
                .sender_id
                .map(|s| user_id("sender_id", &s))
                .transpose()?,
        })
    }
}

/// A path's conversation id.
pub fn path_conversation(raw: &str) -> Result<ConversationId> {
    conversation_id("conversation_id", raw)
}

/// A path's user id.
pub fn path_user(raw: &str) -> Result<UserId> {
    user_id("user_id", raw)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits() -> Limits {
        Limits {
            max_body_chars: 10,
            max_group_members: 3,
            max_payload_bytes: 1024,
        }
    }

    #[test]
    fn creates_are_checked() {
        let direct = |v: serde_json::Value| CreateForApp::parse(&v.to_string(), &limits());
        assert!(
            direct(json!({"kind": "direct", "user_ids": ["a", "b"], "external_id": "order-1"}))
                .is_ok()
        );
        for bad in [
            json!({"kind": "direct", "user_ids": ["a"]}),
            json!({"kind": "direct", "user_ids": ["a", "a"]}),
            json!({"kind": "direct", "user_ids": ["a", "b", "c"]}),
            json!({"kind": "direct"}),
        ] {
            let e = direct(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_payload");
        }
        let e = direct(json!({"kind": "direct", "user_ids": ["a", "b"], "external_id": ""}))
            .unwrap_err();
        assert_eq!(e.code(), "invalid_payload");
        let e = direct(json!({"kind": "group", "title": "t", "member_ids": ["a"]})).unwrap_err();
        assert!(e.to_string().contains("owner_id"), "{e}");
        let g = direct(
            json!({"kind": "group", "title": "t", "owner_id": "o", "member_ids": ["o", "a", "b"]}),
        )
        .unwrap();
        let CreateForApp::Group { member_ids, .. } = g else {
            panic!()
        };
        assert_eq!(member_ids.len(), 2, "the owner is not listed twice");
        let e = direct(
            json!({"kind": "group", "title": "t", "owner_id": "o", "member_ids": ["a", "b", "c"]}),
        )
        .unwrap_err();
        assert_eq!(e.code(), "too_large");
    }

    #[test]
    fn system_messages_have_no_sender() {
        let id = ConversationId::new();
        let s = SendForApp::parse(
            id,
            &json!({"client_id": "c", "body": "shipped"}).to_string(),
            &limits(),
        )
        .unwrap();
        assert_eq!(s.sender_id, None);
        let e = SendForApp::parse(
            id,
            &json!({"client_id": "c", "body": "b", "sender_id": ""}).to_string(),
            &limits(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_payload");
    }
}
