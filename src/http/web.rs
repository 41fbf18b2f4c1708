//! The web chat app, built from `web/` and embedded in the binary, so `confab` serves it at `/`
//! with no Node on the machine. The built bundle is committed; CI rebuilds it and fails when it
//! differs (`web/check-bundle.sh`).
//!
//! In local mode (or with `CONFAB_DEV_LOGIN=true`) the app offers "sign in as …" through
//! `POST /api/dev/token`, which mints a token for any user id. Otherwise that route does not
//! exist, and the app takes a token from the page URL (`#token=…`) or a paste box.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use super::extract::JsonBody;
use crate::domain::{DisplayName, Timestamp};
use crate::error::Error;
use crate::protocol::Bucket;
use crate::protocol::requests::from_json;

const INDEX_HTML: &str = include_str!("../../web/dist/index.html");
const APP_JS: &[u8] = include_bytes!("../../web/dist/app.js");
const APP_CSS: &[u8] = include_bytes!("../../web/dist/app.css");
const FAVICON_SVG: &[u8] = include_bytes!("../../web/dist/favicon.svg");

/// What the page learns about the server: whether "sign in as …" is offered.
const DEV_LOGIN_OFF: &str = r#"<meta name="confab-dev-login" content="off">"#;
const DEV_LOGIN_ON: &str = r#"<meta name="confab-dev-login" content="on">"#;

/// How long a token from `POST /api/dev/token` lasts. The app asks for a new one on every
/// reconnect and when the server warns that the session is ending.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Asset URLs carry a content hash (`?v=…`, written by the build), so they can be cached for good.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The page runs no inline script or style and talks only to its own origin: even if text were
/// ever rendered as HTML, an injected script would not run.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
                   form-action 'self'";

/// The secret dev sign-in signs with, when it is on.
#[derive(Clone)]
pub struct DevLogin {
    secret: Arc<str>,
}

impl DevLogin {
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.into(),
        }
    }
}

/// The page, its assets, and (when `dev_login` is set) the dev sign-in route.
pub fn routes(dev_login: Option<DevLogin>) -> Router<AppState> {
    let index = Arc::new(Page::new(if dev_login.is_some() {
        INDEX_HTML.replacen(DEV_LOGIN_OFF, DEV_LOGIN_ON, 1)
    } else {
        INDEX_HTML.to_owned()
    }));
    let router = Router::new()
        .route(
            "/",
            get(async move |headers: HeaderMap| index.respond(&headers)),
        )
        .route(
            "/assets/app.js",
            get(async || asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/assets/app.css",
            get(async || asset("text/css; charset=utf-8", APP_CSS)),
        )
        .route(
            "/favicon.svg",
            get(async || asset("image/svg+xml", FAVICON_SVG)),
        );
    match dev_login {
        Some(dev) => router.route(
            "/api/dev/token",
            post(async move |state: State<AppState>, body: JsonBody| dev_token(&dev, state, body)),
        ),
        None => router,
    }
}

/// The HTML page: revalidated on every load (`no-cache` + ETag), so a new release shows at once.
struct Page {
    html: String,
    etag: HeaderValue,
}

impl Page {
    fn new(html: String) -> Self {
        let mut hasher = DefaultHasher::new();
        html.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .expect("a hex string is a valid header value");
        Self { html, etag }
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        let headers = [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, self.etag.clone()),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ];
        if request.get(header::IF_NONE_MATCH) == Some(&self.etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        let content_type = (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        (headers, [content_type], self.html.clone()).into_response()
    }
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, IMMUTABLE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
struct DevTokenWire {
    sub: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(serde::Serialize)]
struct DevToken {
    token: String,
    expires_at: Timestamp,
}

/// `POST /api/dev/token { sub, name? }` → `{ token, expires_at }`.
fn dev_token(
    dev: &DevLogin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, Error> {
    let wire: DevTokenWire = from_json(&body)?;
    let user = crate::domain::UserId::parse(&wire.sub).map_err(|e| Error::text("sub", e))?;
    // Shares the connection attempts' budget in spirit: cheap, but not free to hammer.
    state.limiter.check(&user, Bucket::Other)?;
    let name = wire.name.as_deref().and_then(DisplayName::sanitize);
    let token = crate::auth::mint(
        &dev.secret,
        user.as_str(),
        name.as_ref().map(DisplayName::as_str),
        DEV_TOKEN_TTL,
    )
    .map_err(Error::internal)?;
    let expires_at = Timestamp(Timestamp::now().millis() + DEV_TOKEN_TTL.as_millis() as i64);
    Ok(super::success(
        StatusCode::CREATED,
        &DevToken { token, expires_at },
    ))
}
