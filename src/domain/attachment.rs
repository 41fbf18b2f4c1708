//! Attachments as clients see them: an uploaded file's id, its checked type and size, its name
//! and (for images) its dimensions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AttachmentId;
use super::text::is_invisible;

/// An uploaded file. Its fields never change after the upload, so a message keeps a copy of
/// its attachments' objects (written in the transaction that claims them) and reads them back
/// with the message, with no join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    pub id: AttachmentId,
    /// The type read from the bytes themselves (never the uploader's claim), from the
    /// allow-list: `image/png`, `image/jpeg`, `image/gif`, `image/webp`, `application/pdf`,
    /// `text/plain`.
    pub content_type: String,
    /// In bytes.
    pub size: i64,
    /// The name the uploader gave, cleaned; `None` when none was given.
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl Attachment {
    pub fn is_image(&self) -> bool {
        self.content_type.starts_with("image/")
    }
}

/// A file name from the uploader: only its last path component (`C:\Users\x\cat.png` and
/// `../../cat.png` are `cat.png`), without control or invisible characters (a right-to-left
/// override makes `gpj.exe` read as `exe.jpg`), trimmed, at most 255 characters. Never refused:
/// cleaned, and `None` when nothing is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentName(String);

impl AttachmentName {
    pub const MAX_CHARS: usize = 255;

    pub fn sanitize(raw: &str) -> Option<Self> {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let cleaned: String = last
            .chars()
            .filter(|c| !c.is_control() && !is_invisible(*c))
            .take(Self::MAX_CHARS)
            .collect();
        let trimmed = cleaned.trim().trim_start_matches('.').trim();
        (!trimmed.is_empty()).then(|| Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_only_a_clean_last_component() {
        let name = |raw: &str| AttachmentName::sanitize(raw).map(AttachmentName::into_string);
        assert_eq!(name("cat.png").as_deref(), Some("cat.png"));
        assert_eq!(name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(name("C:\\Users\\x\\cat.png").as_deref(), Some("cat.png"));
        assert_eq!(
            name("photo\u{202e}gnp.exe").as_deref(),
            Some("photognp.exe")
        );
        assert_eq!(name(" .hidden ").as_deref(), Some("hidden"));
        assert_eq!(name("a\nb\0c").as_deref(), Some("abc"));
        assert_eq!(name("dir/"), None);
        assert_eq!(name("\u{200b}"), None);
        assert_eq!(name(&"x".repeat(300)).unwrap().chars().count(), 255);
    }
}
