//! The WebSocket opening handshake: checking the client's upgrade request and computing
//! `Sec-WebSocket-Accept`.

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, Version, header};
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 appends to the client's key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is not an acceptable WebSocket handshake.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("a WebSocket handshake must be a GET")]
    Method,
    #[error("a WebSocket handshake needs HTTP/1.1 or later")]
    HttpVersion,
    #[error("missing `Upgrade: websocket` or `Connection: upgrade`")]
    NotUpgrade,
    #[error("unsupported Sec-WebSocket-Version (13 is supported)")]
    Version,
    #[error("missing or malformed Sec-WebSocket-Key")]
    Key,
}

/// Whether a request asks for a WebSocket upgrade at all (`Upgrade: websocket`).
pub(crate) fn wants_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

/// Checks a handshake request and returns the `Sec-WebSocket-Accept` value for the `101` answer.
pub(crate) fn accept(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<HeaderValue, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::Method);
    }
    // RFC 6455 section 4.1: "the HTTP version MUST be at least 1.1" (HTTP/1.0 has no upgrade mechanism).
    if version < Version::HTTP_11 {
        return Err(HandshakeError::HttpVersion);
    }
    if !wants_websocket(headers) || !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(HandshakeError::Version);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(HandshakeError::Key)?
        .as_bytes();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| HandshakeError::Key)?;
    if decoded.len() != 16 {
        return Err(HandshakeError::Key);
    }
    let value = accept_key(key);
    Ok(HeaderValue::from_str(&value).expect("base64 is a valid header value"))
}

/// `base64(sha1(key ++ GUID))`.
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether a comma-separated header (any of its occurrences) contains `token`, case-insensitively.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h
    }

    #[test]
    fn computes_the_rfc_example_accept_key() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let v = accept(&Method::GET, Version::HTTP_11, &handshake_headers()).unwrap();
        assert_eq!(v, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn refuses_bad_handshakes() {
        assert_eq!(
            accept(&Method::POST, Version::HTTP_11, &handshake_headers()),
            Err(HandshakeError::Method)
        );
        assert_eq!(
            accept(&Method::GET, Version::HTTP_10, &handshake_headers()),
            Err(HandshakeError::HttpVersion)
        );
        let mut h = handshake_headers();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert_eq!(
            accept(&Method::GET, Version::HTTP_11, &h),
            Err(HandshakeError::NotUpgrade)
        );
        let mut h = handshake_headers();
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(
            accept(&Method::GET, Version::HTTP_11, &h),
            Err(HandshakeError::Version)
        );
        let mut h = handshake_headers();
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("c2hvcnQ="),
        );
        assert_eq!(
            accept(&Method::GET, Version::HTTP_11, &h),
            Err(HandshakeError::Key)
        );
        let mut h = handshake_headers();
        h.remove(header::SEC_WEBSOCKET_KEY);
        assert_eq!(
            accept(&Method::GET, Version::HTTP_11, &h),
            Err(HandshakeError::Key)
        );
    }
}
