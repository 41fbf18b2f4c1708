//! Wall-clock timestamps as stored (milliseconds since the Unix epoch) and as sent (RFC 3339).

use std::fmt;

use serde::{Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC.
///
/// Stored as a 64-bit integer on both backends: it sorts, compares and indexes the same way in
/// SQLite and PostgreSQL, and it is exactly the precision the protocol promises.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(chrono::Utc::now().timestamp_millis())
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// The last instant RFC 3339 can write in UTC: 9999-12-31T23:59:59.999Z.
    const MAX_MILLIS: i64 = 253_402_300_799_999;

    /// Parses an RFC 3339 timestamp, as this type prints them. An offset can carry a time past
    /// year 9999 or before the epoch (`0000-01-01T00:00:00+01:00`), which would print as
    /// something this can't parse back; those are refused.
    pub fn parse(raw: &str) -> Option<Self> {
        let millis = chrono::DateTime::parse_from_rfc3339(raw)
            .ok()?
            .timestamp_millis();
        (0..=Self::MAX_MILLIS)
            .contains(&millis)
            .then_some(Self(millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => f.write_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            None => write!(f, "invalid timestamp {}", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints() {
        let t = Timestamp(1_795_634_148_123);
        assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        assert_eq!(Timestamp::parse("yesterday"), None);
        let last = Timestamp::parse("9999-12-31T23:59:59.999Z").unwrap();
        assert_eq!(Timestamp::parse(&last.to_string()), Some(last));
        // In range as written, out of range in UTC: they would print as `-0001-…`/`+10000-…`.
        assert_eq!(Timestamp::parse("0000-01-01T00:00:00+01:00"), None);
        assert_eq!(Timestamp::parse("9999-12-31T23:59:59-01:00"), None);
    }

    #[test]
    fn formats_as_rfc3339_utc_with_millis() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_634_148_123).to_string(),
            "2026-11-25T19:15:48.123Z"
        );
    }
}
