//! HTTP: the REST API for app backends and scripts, health checks, the embedded web app, and
//! the guard that keeps browsers on other origins out (of the API and the Socket.IO handshake
//! alike).

mod api;
mod attachments;
mod client_addr;
mod extract;
mod health;
mod metrics;
mod origin;
// The host app's server API and the OpenAPI document: a block of their own.
pub mod openapi;
mod server_api;
mod web;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use client_addr::TrustedProxies;
pub use origin::OriginPolicy;
pub use web::DevLogin;

use crate::auth::{ServerKeys, Verifier};
use crate::chat::Chat;
use crate::error::Error;
use crate::limits::Limiter;
use crate::protocol::{Envelope, envelope};

/// What route handlers share.
#[derive(Clone)]
pub struct AppState {
    pub chat: Chat,
    pub verifier: Arc<Verifier>,
    pub limiter: Limiter,
    /// Set when shutdown starts: readiness fails, so load balancers stop sending clients here.
    pub shutting_down: Arc<std::sync::atomic::AtomicBool>,
    /// The host app's server keys, for `/api/server/`.
    pub server_keys: Arc<ServerKeys>,
}

/// The API, health and web app routes; `dev_login` adds `POST /api/dev/token`.
pub fn routes(state: AppState, dev_login: Option<DevLogin>) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(server_api::routes())
        .merge(openapi::routes())
        .merge(attachments::routes())
        .merge(health::routes())
        .merge(metrics::routes())
        .merge(web::routes(dev_login))
        // An unknown path gets the envelope like any refusal, so a client's JSON parsing
        // reports "not_found" rather than failing on an empty body (a base URL with a
        // trailing slash makes every path `//api/…`).
        .fallback(async || Error::NotFound(NO_SUCH_ROUTE))
        .with_state(state)
}

const NO_SUCH_ROUTE: &str = "no such route: check the path (and the base URL: no trailing slash)";

pub use origin::guard as origin_guard;

impl IntoResponse for Error {
    /// The failure envelope, with the code's status (and `WWW-Authenticate` or `Retry-After`
    /// where they apply). Server-side failures are logged here, the one place they leave.
    fn into_response(self) -> Response {
        self.log();
        let status = StatusCode::from_u16(envelope::status(&self))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(envelope::failure(&self))).into_response();
        let headers = response.headers_mut();
        match &self {
            Error::Unauthorized(_) => {
                headers.insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            Error::RateLimited { retry_after_ms } => {
                let secs = retry_after_ms.div_ceil(1000).max(1);
                if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                    headers.insert(axum::http::header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        response
    }
}

/// A success envelope with `status`.
fn success(status: StatusCode, data: &impl serde::Serialize) -> Response {
    (status, axum::Json(Envelope::Ok(data))).into_response()
}
