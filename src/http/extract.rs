//! Extractors that turn HTTP requests into validated values, answering with the protocol's error
//! envelope (axum's own rejections are plain text).

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::AppState;
use crate::auth::{AuthFailure, bearer_token};
use crate::chat::Actor;
use crate::domain::requests::decode;
use crate::error::Error;

/// The caller, from `Authorization: Bearer <jwt>`.
pub struct Caller(pub Actor);

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let state = AppState::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.to_str().map_err(|_| AuthFailure::Invalid))
            .transpose()
            .map_err(Error::Unauthorized)?;
        let token = bearer_token(header).map_err(Error::Unauthorized)?;
        let identity = state.verifier.verify(token).map_err(Error::Unauthorized)?;
        // Keep the display name current, as a socket connect does.
        if identity.name.is_some() {
            state
                .chat
                .store()
                .remember_user(&identity.user_id, identity.name.as_ref())
                .await?;
        }
        Ok(Caller(Actor {
            user: identity.user_id,
            socket: None,
        }))
    }
}

/// A JSON request body, size-limited by the router's body limit.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::TooLarge {
                        field: None,
                        message: "request body too large".into(),
                    }
                } else {
                    Error::InvalidPayload {
                        field: None,
                        message: format!("payload: {}", rejection.body_text()),
                    }
                }
            })?;
        let value = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidPayload {
            field: None,
            message: format!("payload: not valid JSON ({e})"),
        })?;
        Ok(JsonBody(value))
    }
}

/// A query string parsed into `T`, with errors naming the parameter.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = form_urlencoded::parse(query.as_bytes());
        decode(serde_urlencoded::Deserializer::new(pairs)).map(QueryParams)
    }
}
