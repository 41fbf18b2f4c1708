//! User-supplied text: message bodies, titles, display names, and the checks they share.

use serde::Serialize;

/// Why a piece of text was refused. Callers attach the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("must not contain NUL characters")]
    Nul,
}

/// Checks length in characters (Unicode scalar values, which is what a user counts) and that
/// there are no control characters. Used for identifiers and titles.
pub(crate) fn check_text(raw: &str, min: usize, max: usize) -> Result<(), TextError> {
    let mut chars = 0;
    for c in raw.chars() {
        if c.is_control() {
            return Err(TextError::ControlCharacter);
        }
        chars += 1;
        // Stop counting early: a giant string costs no more than `max` characters of work.
        if chars > max {
            return Err(TextError::TooLong { max });
        }
    }
    if chars < min {
        return Err(TextError::Empty);
    }
    Ok(())
}

/// A message body: 1 to `max_chars` characters, not only whitespace.
///
/// Newlines and tabs are allowed (multi-line messages); NUL is not, because PostgreSQL text
/// can't hold it and a body must store the same on both backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MessageBody(String);

impl MessageBody {
    pub fn parse(raw: String, max_chars: usize) -> Result<Self, TextError> {
        if raw.contains('\0') {
            return Err(TextError::Nul);
        }
        if raw.chars().nth(max_chars).is_some() {
            return Err(TextError::TooLong { max: max_chars });
        }
        if raw.trim().is_empty() {
            return Err(TextError::Empty);
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A group title: 1–200 characters after trimming surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ConversationTitle(String);

impl ConversationTitle {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, TextError> {
        let trimmed = raw.trim();
        check_text(trimmed, 1, Self::MAX_CHARS)?;
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name from the token's `name` claim. Never refused, because the token is already
/// signed: an over-long name is cut and control characters are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 200;

    /// `None` when nothing printable is left.
    pub fn sanitize(raw: &str) -> Option<Self> {
        let cleaned: String = raw
            .chars()
            .filter(|c| !c.is_control())
            .take(Self::MAX_CHARS)
            .collect();
        let trimmed = cleaned.trim();
        (!trimmed.is_empty()).then(|| Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_bounded_in_characters_not_bytes() {
        assert!(MessageBody::parse("ü".repeat(5000), 5000).is_ok());
        assert_eq!(
            MessageBody::parse("a".repeat(5001), 5000),
            Err(TextError::TooLong { max: 5000 })
        );
        assert!(MessageBody::parse("line one\nline two\ttab".into(), 5000).is_ok());
    }

    #[test]
    fn bodies_must_say_something() {
        assert_eq!(MessageBody::parse(String::new(), 10), Err(TextError::Empty));
        assert_eq!(
            MessageBody::parse(" \n\t ".into(), 10),
            Err(TextError::Empty)
        );
        assert_eq!(MessageBody::parse("a\0b".into(), 10), Err(TextError::Nul));
        // Leading whitespace is the user's (indented code): kept as sent.
        assert_eq!(
            MessageBody::parse("  x".into(), 10).unwrap().as_str(),
            "  x"
        );
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(
            ConversationTitle::parse("  Team ").unwrap().as_str(),
            "Team"
        );
        assert_eq!(ConversationTitle::parse("   "), Err(TextError::Empty));
        assert!(ConversationTitle::parse(&"t".repeat(200)).is_ok());
        assert_eq!(
            ConversationTitle::parse(&"t".repeat(201)),
            Err(TextError::TooLong { max: 200 })
        );
    }

    #[test]
    fn display_names_are_cleaned_not_refused() {
        assert_eq!(
            DisplayName::sanitize(" Al\u{7}ice ").unwrap().as_str(),
            "Alice"
        );
        assert_eq!(DisplayName::sanitize("\u{1}\u{2}"), None);
        assert_eq!(
            DisplayName::sanitize(&"n".repeat(300))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            200
        );
    }
}
