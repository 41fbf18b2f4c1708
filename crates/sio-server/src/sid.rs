//! Session and socket ids.

use std::fmt;

use base64::Engine as _;

/// A random 20-character id (120 bits, base64url), stored inline so that a session needs no string
/// allocation for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Sid([u8; 20]);

impl Sid {
    /// A fresh id from the thread's CSPRNG.
    pub(crate) fn random() -> Self {
        let raw: [u8; 15] = rand::random();
        let mut out = [0u8; 20];
        let written = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(raw, &mut out)
            .expect("15 bytes encode to exactly 20 base64 characters");
        debug_assert_eq!(written, 20);
        Sid(out)
    }

    /// Parses an id received from a client; anything that is not 20 base64url characters is no id of ours.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let bytes: [u8; 20] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .then_some(Sid(bytes))
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only base64url characters are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_round_trip_and_differ() {
        let a = Sid::random();
        let b = Sid::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 20);
        assert_eq!(Sid::parse(a.as_str()), Some(a));
        assert_eq!(Sid::parse("short"), None);
        assert_eq!(Sid::parse("aaaaaaaaaaaaaaaaaaa/"), None);
    }
}
