//! Which browser origins may talk to confab.
//!
//! Browsers attach `Origin` to cross-site requests, including WebSocket handshakes (which CORS
//! does not cover). A request whose `Origin` is neither this server's own nor on the allowlist
//! is refused before it reaches the API or the Socket.IO engine. Requests without `Origin`
//! (servers, scripts, native apps) are not browsers and pass.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    allowed: Arc<[String]>,
}

impl OriginPolicy {
    pub fn new(allowed: Vec<String>) -> Self {
        Self {
            allowed: allowed.into(),
        }
    }

    pub fn allowed_origins(&self) -> &[String] {
        &self.allowed
    }

    /// Whether `origin` is on the allowlist (and so gets CORS headers).
    pub fn is_listed(&self, origin: &axum::http::HeaderValue) -> bool {
        origin
            .to_str()
            .is_ok_and(|o| self.allowed.iter().any(|a| a == o))
    }

    /// Whether a request with these headers may proceed.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self.allowed.iter().any(|a| a == origin) {
            return true;
        }
        // Same origin: the origin's authority is the host the request was sent to.
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
    }
}

/// Middleware refusing requests from origins the policy doesn't allow.
pub async fn guard(State(policy): State<OriginPolicy>, request: Request, next: Next) -> Response {
    if policy.allows(request.headers()) {
        next.run(request).await
    } else {
        Error::Forbidden("origin not allowed").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h.insert(header::HOST, host.parse().unwrap());
        h
    }

    #[test]
    fn same_origin_and_allowlisted_origins_pass() {
        let p = OriginPolicy::new(vec!["https://app.example".into()]);
        assert!(p.allows(&headers(None, "chat.example")));
        assert!(p.allows(&headers(Some("https://chat.example"), "chat.example")));
        assert!(p.allows(&headers(Some("https://app.example"), "chat.example")));
        assert!(!p.allows(&headers(Some("https://evil.example"), "chat.example")));
        assert!(!p.allows(&headers(Some("null"), "chat.example")));
    }
}
