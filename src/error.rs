//! The one error type. Every failure a client can see is a variant here, with its protocol
//! code; `protocol::envelope` puts it on the wire (with its HTTP status). Server-side failures
//! carry their cause for the log and go out opaque.

use std::fmt;
use std::sync::Arc;

use crate::domain::TextError;

/// Why a token was refused. Clients act on it: `expired` means "get a fresh token and retry",
/// `invalid` means "sign the user out".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Invalid,
    Expired,
    /// The host app banned the user (server API): a fresh token won't help.
    Banned,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Banned => "banned",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The payload is malformed. `field` names the offending field when there is one.
    #[error("{message}")]
    InvalidPayload {
        field: Option<String>,
        message: String,
    },
    #[error("unauthorized")]
    Unauthorized(AuthFailure),
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
    Unavailable(Cause),
    #[error("internal error")]
    Internal(Cause),
}

/// What went wrong on the server's side, for the log. Shared, so that one failure can answer
/// every request it failed (a batch of sends) as itself.
#[derive(Clone)]
pub struct Cause(Arc<anyhow::Error>);

impl Cause {
    /// The error and its causes, for `downcast_ref`.
    pub fn chain(&self) -> anyhow::Chain<'_> {
        self.0.chain()
    }
}

impl<E: Into<anyhow::Error>> From<E> for Cause {
    fn from(e: E) -> Self {
        Cause(Arc::new(e.into()))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
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

    pub fn too_large(field: &str, message: impl fmt::Display) -> Self {
        Self::TooLarge {
            field: Some(field.to_owned()),
            message: format!("{field}: {message}"),
        }
    }

    /// A server-side failure with its cause (returned opaque, logged by [`Error::log`]).
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self::Internal(cause.into())
    }

    /// The protocol's code for this error.
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

    /// What to log: the cause chain of a server-side failure (its `Display` is only the opaque
    /// "internal error" / "service unavailable" sent to clients), the message otherwise.
    pub fn cause_chain(&self) -> String {
        match self {
            Self::Internal(cause) | Self::Unavailable(cause) => cause.to_string(),
            other => other.to_string(),
        }
    }

    /// Logs a server-side failure with its cause: the one place its details go, since clients
    /// get it opaque. The edges call this for every error they answer with; client errors
    /// (a bad payload, a refusal) are the client's business and are not logged.
    pub fn log(&self) {
        match self {
            Self::Internal(cause) => tracing::error!(error = %cause, "internal error"),
            Self::Unavailable(cause) => tracing::warn!(error = %cause, "dependency unavailable"),
            _ => {}
        }
    }
}
