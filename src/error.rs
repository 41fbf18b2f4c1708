//! The one error type at the edge. Every failure a client can see is a variant here; each maps to
//! a protocol code, an HTTP status and the ack envelope. Internal failures are logged with their
//! cause chain and returned opaque.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::domain::TextError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The payload is malformed. `field` names the offending field when there is one.
    #[error("{message}")]
    InvalidPayload {
        field: Option<String>,
        message: String,
    },
    #[error("unauthorized")]
    Unauthorized(crate::auth::AuthFailure),
    #[error("{0}")]
    Forbidden(&'static str),
    /// Deliberately vague: "not a member" and "doesn't exist" must look the same.
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{message}")]
    TooLarge {
        field: Option<String>,
        message: String,
    },
    #[error("rate limited")]
    RateLimited { retry_after_ms: u64 },
    /// A dependency (the database) is unreachable; retrying later is safe.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        Self::InvalidPayload {
            field: Some(field),
            message,
        }
    }

    /// Maps a text check failure on `field`: too long is `too_large`, the rest `invalid_payload`.
    pub fn text(field: &str, e: TextError) -> Self {
        match e {
            TextError::TooLong { .. } => Self::TooLarge {
                field: Some(field.to_owned()),
                message: format!("{field}: {e}"),
            },
            _ => Self::invalid(field, e.to_string()),
        }
    }

    pub fn too_large(field: &str, message: impl std::fmt::Display) -> Self {
        Self::TooLarge {
            field: Some(field.to_owned()),
            message: format!("{field}: {message}"),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidPayload { .. } => "invalid_payload",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::TooLarge { .. } => "too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidPayload { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What to log: the cause chain of a server-side failure (its `Display` is only the opaque
    /// "internal error" / "service unavailable" sent to clients), the message otherwise.
    pub fn cause_chain(&self) -> String {
        match self {
            Self::Internal(cause) | Self::Unavailable(cause) => format!("{cause:#}"),
            other => other.to_string(),
        }
    }

    /// The `error` object of the envelope. Logs server-side failures with their cause chain,
    /// which is the only place their details go.
    pub fn body(&self) -> Value {
        match self {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error")
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "dependency unavailable")
            }
            _ => {}
        }
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        match self {
            Self::InvalidPayload {
                field: Some(field), ..
            }
            | Self::TooLarge {
                field: Some(field), ..
            } => error["field"] = json!(field),
            Self::RateLimited { retry_after_ms } => error["retry_after_ms"] = json!(retry_after_ms),
            Self::Unauthorized(failure) => error["reason"] = json!(failure.reason()),
            _ => {}
        }
        error
    }

    /// The whole failure envelope: `{ "ok": false, "error": { … } }`.
    pub fn envelope(&self) -> Value {
        json!({ "ok": false, "error": self.body() })
    }
}

/// A success envelope: `{ "ok": true, "data": … }`.
pub fn ok_envelope(data: Value) -> Value {
    json!({ "ok": true, "data": data })
}
