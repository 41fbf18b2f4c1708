//! Extractors that turn HTTP requests into validated values, answering with the protocol's error
//! envelope (axum's own rejections are plain text).

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::auth::{AuthFailure, Identity, bearer_token};
use crate::error::Error;
use crate::protocol::requests::decode;

/// The credential of `Authorization: Bearer <credential>` (a user's JWT or a server key).
fn bearer(parts: &Parts) -> Result<&str, Error> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().map_err(|_| AuthFailure::Invalid))
        .transpose()
        .map_err(Error::Unauthorized)?;
    bearer_token(header).map_err(Error::Unauthorized)
}

/// The caller, from `Authorization: Bearer <jwt>`: verified, nothing more (the route records
/// who they are through `chat`).
pub struct Caller(pub Identity);

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let state = AppState::from_ref(state);
        let token = bearer(parts)?;
        let identity = state.verifier.verify(token).map_err(Error::Unauthorized)?;
        Ok(Caller(identity))
    }
}

/// The host app's server, from `Authorization: Bearer <server key>`. A user's JWT is no key, so
/// it is refused here; a key is no JWT, so it is refused on the user routes.
pub struct AppServer;

impl<S> FromRequestParts<S> for AppServer
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let state = AppState::from_ref(state);
        let key = bearer(parts)?;
        state.server_keys.verify(key).map_err(Error::Unauthorized)?;
        Ok(AppServer)
    }
}

/// A request body as JSON text, size-limited by the router's body limit; the route parses it
/// into its request (`protocol::requests`), once.
pub struct JsonBody(pub String);

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
        let text = String::from_utf8(bytes.into()).map_err(|_| Error::InvalidPayload {
            field: None,
            message: "payload: not valid JSON (not UTF-8)".into(),
        })?;
        Ok(JsonBody(text))
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
