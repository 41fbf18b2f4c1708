//! Which browser origins (and, in local mode, which host names) may talk to confab.
//!
//! Browsers attach `Origin` to cross-site requests, including WebSocket handshakes (which CORS
//! does not cover). A request whose `Origin` is neither this server's own nor on the allowlist
//! is refused before it reaches the API or the Socket.IO engine. Requests without `Origin`
//! (servers, scripts, native apps) are not browsers and pass.
//!
//! "This server's own origin" is judged by the `Host` header, which a DNS-rebinding page
//! controls: it points its own name at 127.0.0.1, and its requests then carry its name in both
//! `Origin` and `Host`. That matters only where a page could gain something without a token, in
//! local mode and with dev login (`POST /api/dev/token` signs in as anyone). There, `Host` must
//! be an IP address, `localhost` (or `*.localhost`), or a name listed in
//! `CONFAB_ALLOWED_HOSTS`, the defence dev servers such as Vite's use.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    allowed: Arc<[String]>,
    /// Present when `Host` is checked: the names accepted besides IPs and `localhost`.
    hosts: Option<Arc<[String]>>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `Origin` is another site's, not on `CONFAB_CORS_ORIGINS`.
    Origin(String),
    /// `Host` is a name that could have been rebound to this server.
    Host(String),
}

impl Refused {
    /// The error the client gets: it names the setting that would let the request in.
    pub fn error(&self) -> Error {
        match self {
            Refused::Origin(_) => {
                Error::Forbidden("origin not allowed: add it to CONFAB_CORS_ORIGINS on the server")
            }
            Refused::Host(_) => Error::Forbidden(
                "host not allowed: use an IP address or localhost, or add the name to CONFAB_ALLOWED_HOSTS on the server",
            ),
        }
    }

    /// Logged at info: an operator whose app can't connect needs to see which origin or host
    /// was turned away (never anything else from the request).
    pub fn log(&self) {
        match self {
            Refused::Origin(origin) => {
                tracing::info!(%origin, "refused a browser request from an origin not in CONFAB_CORS_ORIGINS")
            }
            Refused::Host(host) => {
                tracing::info!(%host, "refused a request for a host name not in CONFAB_ALLOWED_HOSTS (local mode / dev login)")
            }
        }
    }
}

impl OriginPolicy {
    /// `hosts`: `Some(names)` to check `Host` (local mode, dev login), with the extra names
    /// accepted; `None` to leave it alone.
    pub fn new(allowed: Vec<String>, hosts: Option<Vec<String>>) -> Self {
        Self {
            allowed: allowed.into(),
            hosts: hosts.map(Into::into),
        }
    }

    pub fn allowed_origins(&self) -> &[String] {
        &self.allowed
    }

    /// Whether `origin` is on the allowlist (and so gets CORS headers).
    pub fn is_listed(&self, origin: &HeaderValue) -> bool {
        origin
            .to_str()
            .is_ok_and(|o| self.allowed.iter().any(|a| a == o))
    }

    /// Whether a request with these headers may proceed, and why not.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if let Some(extra) = &self.hosts
            && !host.is_some_and(|h| host_allowed(h, extra))
        {
            return Err(Refused::Host(host.unwrap_or("(none)").to_owned()));
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let Ok(origin) = origin.to_str() else {
            return Err(Refused::Origin(
                String::from_utf8_lossy(origin.as_bytes()).into_owned(),
            ));
        };
        if self.allowed.iter().any(|a| a == origin) {
            return Ok(());
        }
        // Same origin: the origin's authority is the host the request was sent to.
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        match (authority, host) {
            (Some(a), Some(h)) if a.eq_ignore_ascii_case(h) => Ok(()),
            _ => Err(Refused::Origin(origin.to_owned())),
        }
    }
}

/// A `Host` value a rebinding page can't send: an IP literal, `localhost` or `*.localhost`
/// (which resolvers keep on loopback), or a listed name (`.example.com` lists its subdomains).
fn host_allowed(host: &str, extra: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        Some(rest) => {
            return rest
                .split_once(']')
                .is_some_and(|(ip, _)| ip.parse::<Ipv6Addr>().is_ok());
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.parse::<IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    extra.iter().any(|entry| match entry.strip_prefix('.') {
        Some(domain) => name == domain || name.ends_with(entry.as_str()),
        None => name == *entry,
    })
}

/// Middleware refusing requests from origins (or hosts) the policy doesn't allow. The refusal
/// carries CORS headers for the refused origin, so that the page's script can read why.
pub async fn guard(State(policy): State<OriginPolicy>, request: Request, next: Next) -> Response {
    match policy.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            refused.log();
            let origin = request.headers().get(header::ORIGIN).cloned();
            let mut response = refused.error().into_response();
            if let Some(origin) = origin {
                response
                    .headers_mut()
                    .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            }
            response
        }
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
        let p = OriginPolicy::new(vec!["https://app.example".into()], None);
        assert!(p.check(&headers(None, "chat.example")).is_ok());
        assert!(
            p.check(&headers(Some("https://chat.example"), "chat.example"))
                .is_ok()
        );
        assert!(
            p.check(&headers(Some("https://app.example"), "chat.example"))
                .is_ok()
        );
        assert_eq!(
            p.check(&headers(Some("https://evil.example"), "chat.example")),
            Err(Refused::Origin("https://evil.example".into()))
        );
        assert!(p.check(&headers(Some("null"), "chat.example")).is_err());
    }

    #[test]
    fn with_the_host_check_only_unrebindable_hosts_pass() {
        let p = OriginPolicy::new(
            vec![],
            Some(vec!["demo.example".into(), ".lan.example".into()]),
        );
        for host in [
            "127.0.0.1:3001",
            "127.0.0.1",
            "[::1]:3001",
            "192.168.1.5:3001",
            "localhost:3001",
            "LOCALHOST",
            "app.localhost:3001",
            "demo.example:3001",
            "lan.example",
            "box.lan.example:80",
        ] {
            assert!(p.check(&headers(None, host)).is_ok(), "{host}");
            let same = format!("http://{host}");
            assert!(
                p.check(&headers(Some(&same), host)).is_ok(),
                "{host} same-origin"
            );
        }
        for host in [
            "rebind.evil.example:3001",
            "localhost.evil.example",
            "evil-demo.example",
            "xlan.example",
            "[::1",
            "",
        ] {
            let same = format!("http://{host}");
            assert_eq!(
                p.check(&headers(Some(&same), host)),
                Err(Refused::Host(host.into())),
                "{host}"
            );
        }
        let mut no_host = HeaderMap::new();
        no_host.insert(header::ORIGIN, "http://127.0.0.1:3001".parse().unwrap());
        assert!(p.check(&no_host).is_err());
    }
}
