//! The limits on what clients may send, which the request parsers and the rules apply.

/// Limits on what clients may send.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_chars: usize,
    pub max_group_members: usize,
    pub max_payload_bytes: usize,
}
