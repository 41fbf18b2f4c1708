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
    #[error("must not contain invisible or text-direction characters")]
    Invisible,
    #[error("must not start or end with a space")]
    Padded,
}

/// Characters that change how text looks without showing: text-direction controls (which can
/// make `moc.elgoog` read as `google.com`, "Trojan Source"), zero-width spaces and joiners, word
/// joiners, the byte-order mark, soft hyphens, invisible operators and fillers. A name or id made
/// of them looks empty, and one padded with them looks like another (`alice\u{200b}`).
///
/// ZWJ and ZWNJ (U+200D, U+200C) are here too, but names and titles keep them *between*
/// visible characters: emoji sequences (👨‍👩‍👧) and Persian and Indic scripts need them.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Joiners that are meaningful between visible characters (see [`is_invisible`]).
fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}' | '\u{FE0F}')
}

/// Checks an identifier: length in characters (Unicode scalar values, which is what a user
/// counts), no control characters, nothing invisible (see [`is_invisible`]) and no surrounding
/// whitespace, so that two ids that look alike are alike.
pub(crate) fn check_text(raw: &str, min: usize, max: usize) -> Result<(), TextError> {
    if raw.starts_with(char::is_whitespace) || raw.ends_with(char::is_whitespace) {
        return Err(TextError::Padded);
    }
    let mut chars = 0;
    for c in raw.chars() {
        if c.is_control() {
            return Err(TextError::ControlCharacter);
        }
        if is_invisible(c) {
            return Err(TextError::Invisible);
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

    /// No text: only for a message that carries attachments.
    pub fn empty() -> Self {
        Self(String::new())
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
        let mut chars = 0;
        for c in trimmed.chars() {
            if c.is_control() {
                return Err(TextError::ControlCharacter);
            }
            if is_invisible(c) && !is_joiner(c) {
                return Err(TextError::Invisible);
            }
            chars += 1;
            if chars > Self::MAX_CHARS {
                return Err(TextError::TooLong {
                    max: Self::MAX_CHARS,
                });
            }
        }
        match trimmed.chars().find(|c| !is_joiner(*c)) {
            None => Err(TextError::Empty),
            // A joiner only joins: at either end, it hides.
            Some(_) if trimmed.starts_with(is_joiner) || trimmed.ends_with(is_joiner) => {
                Err(TextError::Invisible)
            }
            Some(_) => Ok(Self(trimmed.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name from the token's `name` claim. Never refused, because the token is already
/// signed: it is cleaned instead. Control and invisible characters are dropped (joiners stay
/// between visible characters), runs of whitespace become one space, the ends are trimmed, and
/// what is left is cut at 200 characters.
///
/// Names are for display, not identity: two users may have the same name, or names that only
/// look the same (a Cyrillic `а` for a Latin `a`). Clients show the user id where it matters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 200;

    /// `None` when nothing visible is left.
    pub fn sanitize(raw: &str) -> Option<Self> {
        let mut out = String::new();
        let mut chars = 0;
        let mut space = false;
        let mut pending_joiners = String::new();
        for c in raw.chars() {
            if c.is_whitespace() {
                space = !out.is_empty();
                pending_joiners.clear();
                continue;
            }
            if c.is_control() || (is_invisible(c) && !is_joiner(c)) {
                continue;
            }
            if is_joiner(c) {
                // Kept only if a visible character follows, and one preceded.
                if !out.is_empty() && !space {
                    pending_joiners.push(c);
                }
                continue;
            }
            let extra = usize::from(space) + pending_joiners.chars().count();
            if chars + extra + 1 > Self::MAX_CHARS {
                break;
            }
            if space {
                out.push(' ');
                space = false;
            }
            out.push_str(&pending_joiners);
            pending_joiners.clear();
            out.push(c);
            chars += extra + 1;
        }
        (!out.is_empty()).then_some(Self(out))
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
    fn invisible_and_direction_characters_are_refused_in_ids_and_titles() {
        use super::super::UserId;
        for id in [
            "alice\u{200b}",
            "\u{202e}ecila",
            "\u{200b}\u{200b}",
            "a\u{2066}b",
            "\u{feff}x",
        ] {
            assert_eq!(UserId::parse(id), Err(TextError::Invisible), "{id:?}");
        }
        assert_eq!(UserId::parse(" alice"), Err(TextError::Padded));
        assert_eq!(UserId::parse("alice "), Err(TextError::Padded));
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse("Zoë Ω 東京").is_ok());
        assert_eq!(
            ConversationTitle::parse("Team\u{202e}"),
            Err(TextError::Invisible)
        );
        assert_eq!(
            ConversationTitle::parse("\u{200d}\u{200c}"),
            Err(TextError::Empty)
        );
        assert_eq!(
            ConversationTitle::parse("\u{200d}Team"),
            Err(TextError::Invisible)
        );
        // Joiners inside: emoji sequences and scripts that need them.
        let family = "👨\u{200d}👩\u{200d}👧 family";
        assert_eq!(ConversationTitle::parse(family).unwrap().as_str(), family);
        assert!(ConversationTitle::parse("می\u{200c}خواهم").is_ok());
    }

    #[test]
    fn display_names_lose_what_hides_and_keep_what_joins() {
        assert_eq!(DisplayName::sanitize("\u{200b}\u{202e}\u{2066}"), None);
        assert_eq!(DisplayName::sanitize(" \u{200d} "), None);
        assert_eq!(
            DisplayName::sanitize("ali\u{200b}ce\u{202e}")
                .unwrap()
                .as_str(),
            "alice"
        );
        assert_eq!(
            DisplayName::sanitize("  Ada \t\n  Lovelace ")
                .unwrap()
                .as_str(),
            "Ada Lovelace"
        );
        let family = "👨\u{200d}👩\u{200d}👧";
        assert_eq!(DisplayName::sanitize(family).unwrap().as_str(), family);
        assert_eq!(
            DisplayName::sanitize("\u{200d}x\u{200d}").unwrap().as_str(),
            "x"
        );
        // Cut at 200 characters, never inside the budget's count of joiners.
        let long = DisplayName::sanitize(&"ab ".repeat(100)).unwrap();
        assert!(long.as_str().chars().count() <= 200);
        assert!(!long.as_str().ends_with(' '));
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
