//! Identifiers. Each one is parsed from untrusted input exactly once, here, so the rest of the
//! server can take it for granted.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::text::{TextError, check_text};

/// A user id: the JWT `sub` of the user. Any 1–128 characters without control characters.
///
/// Held as `Arc<str>` because user ids are cloned into every fan-out map and event, and an
/// `Arc` clone is a counter bump rather than an allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(Arc<str>);

impl UserId {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, TextError> {
        check_text(raw, 1, Self::MAX_CHARS)?;
        Ok(Self(raw.into()))
    }

    /// A value read back from our own database, where it was validated on the way in.
    pub fn from_db(raw: &str) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7), so ids created later sort later in indexes.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses the canonical hyphenated form. Anything else is rejected, so one id has
            /// one spelling in logs, cursors and map keys.
            pub fn parse(raw: &str) -> Option<Self> {
                // `Uuid::try_parse` also takes upper-case hex: two spellings of one id would be
                // two keys of a `sync` cursor map.
                if raw.len() != 36 || raw.bytes().any(|b| b.is_ascii_uppercase()) {
                    return None;
                }
                Uuid::try_parse(raw).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A conversation id.
    ConversationId
);
uuid_id!(
    /// A message id.
    MessageId
);
uuid_id!(
    /// An uploaded attachment's id.
    AttachmentId
);

/// The client's idempotency key for a send: 1–64 characters without control characters.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: String) -> Result<Self, TextError> {
        check_text(&raw, 1, Self::MAX_CHARS)?;
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The host app's own id for a conversation (an order id, say), which makes creating it through
/// the server API idempotent: the same id gives the same conversation. 1–200 characters, no
/// control characters.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ExternalId(String);

impl ExternalId {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: String) -> Result<Self, TextError> {
        check_text(&raw, 1, Self::MAX_CHARS)?;
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse(&"x".repeat(128)).is_ok());
        assert!(UserId::parse(&"é".repeat(128)).is_ok());
        assert_eq!(UserId::parse(""), Err(TextError::Empty));
        assert_eq!(
            UserId::parse(&"x".repeat(129)),
            Err(TextError::TooLong { max: 128 })
        );
        assert_eq!(UserId::parse("a\u{0}b"), Err(TextError::ControlCharacter));
        assert_eq!(UserId::parse("a\nb"), Err(TextError::ControlCharacter));
    }

    #[test]
    fn uuid_ids_take_only_the_canonical_form() {
        let id = ConversationId::new();
        assert_eq!(ConversationId::parse(&id.to_string()), Some(id));
        assert_eq!(ConversationId::parse(&id.0.simple().to_string()), None);
        assert_eq!(ConversationId::parse("not-a-uuid"), None);
        assert_eq!(ConversationId::parse(""), None);
        let upper = id.to_string().to_uppercase();
        assert_eq!(ConversationId::parse(&upper), None);
        assert_eq!(MessageId::parse(&upper), None);
    }
}
