//! The envelope every answer travels in, on sockets (the ack) and over HTTP (the body):
//! `{ "ok": true, "data": … }` or `{ "ok": false, "error": { "code", "message", … } }`, and the
//! HTTP status of each error code. Encoding is pure: whoever sends a server-side error logs it
//! first (`Error::log`).

use serde::Serialize;

use crate::error::Error;

/// An answer, serialized straight into the envelope.
pub enum Envelope<'a, T> {
    Ok(&'a T),
    Err(&'a Error),
}

impl<'a, T: Serialize> Envelope<'a, T> {
    pub fn of(result: &'a Result<T, Error>) -> Self {
        match result {
            Ok(data) => Self::Ok(data),
            Err(e) => Self::Err(e),
        }
    }
}

/// The failure envelope, for answers that have no success type.
pub fn failure(error: &Error) -> Envelope<'_, ()> {
    Envelope::Err(error)
}

impl<T: Serialize> Serialize for Envelope<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Success<'a, T> {
            ok: bool,
            data: &'a T,
        }
        #[derive(Serialize)]
        struct Failure<'a> {
            ok: bool,
            error: ErrorBody<'a>,
        }
        match self {
            Self::Ok(data) => Success { ok: true, data }.serialize(s),
            Self::Err(error) => Failure {
                ok: false,
                error: ErrorBody::of(error),
            }
            .serialize(s),
        }
    }
}

/// The `error` object: `code` and `message` always, the rest when they apply.
#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl<'a> ErrorBody<'a> {
    fn of(error: &'a Error) -> Self {
        Self {
            code: error.code(),
            message: error.to_string(),
            field: match error {
                Error::InvalidPayload { field, .. } | Error::TooLarge { field, .. } => {
                    field.as_deref()
                }
                _ => None,
            },
            retry_after_ms: match error {
                Error::RateLimited { retry_after_ms } => Some(*retry_after_ms),
                _ => None,
            },
            reason: match error {
                Error::Unauthorized(failure) => Some(failure.reason()),
                _ => None,
            },
        }
    }
}

/// The HTTP status of each error code (docs/PROTOCOL.md, "Errors").
pub fn status(error: &Error) -> u16 {
    match error {
        Error::InvalidPayload { .. } => 400,
        Error::Unauthorized(_) => 401,
        Error::Forbidden(_) => 403,
        Error::NotFound(_) => 404,
        Error::Conflict(_) => 409,
        Error::TooLarge { .. } => 413,
        Error::RateLimited { .. } => 429,
        Error::Unavailable(_) => 503,
        Error::Internal(_) => 500,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn envelopes_carry_what_applies() {
        let ok: Result<_, Error> = Ok(json!({"x": 1}));
        assert_eq!(
            serde_json::to_value(Envelope::of(&ok)).unwrap(),
            json!({"ok": true, "data": {"x": 1}})
        );
        let limited = Error::RateLimited { retry_after_ms: 7 };
        assert_eq!(
            serde_json::to_value(failure(&limited)).unwrap(),
            json!({"ok": false, "error": {"code": "rate_limited", "message": "rate limited", "retry_after_ms": 7}})
        );
        let invalid = Error::invalid("body", "must be a string");
        assert_eq!(
            serde_json::to_value(failure(&invalid)).unwrap()["error"],
            json!({"code": "invalid_payload", "message": "body: must be a string", "field": "body"})
        );
        let internal = Error::internal(anyhow::anyhow!("the disk is on fire"));
        let text = serde_json::to_string(&failure(&internal)).unwrap();
        assert!(!text.contains("fire"), "opaque: {text}");
        assert_eq!(status(&internal), 500);
    }
}
