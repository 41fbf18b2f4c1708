//! The REST API: the same operations and objects as the socket events, for app backends and
//! scripts. Sends made here are broadcast to sockets exactly like `message:send`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;
use super::extract::{Caller, JsonBody, QueryParams};
use crate::domain::ConversationId;
use crate::domain::requests::{CreateConversation, History, HistoryWindowWire, SendMessage};
use crate::error::{Error, Result, ok_envelope};
use crate::limits::Bucket;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/conversations",
            get(list_conversations).post(create_conversation),
        )
        .route(
            "/api/conversations/{id}/messages",
            get(history).post(send_message),
        )
}

fn respond(status: StatusCode, data: Value) -> Response {
    (status, axum::Json(ok_envelope(data))).into_response()
}

fn conversation_id(raw: &str) -> Result<ConversationId> {
    ConversationId::parse(raw)
        .ok_or_else(|| Error::invalid("conversation_id", "must be a conversation id (a UUID)"))
}

async fn list_conversations(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Response> {
    state.limiter.check(&actor.user, Bucket::Other)?;
    let conversations = state.chat.list_conversations(&actor).await?;
    Ok(respond(
        StatusCode::OK,
        json!({ "conversations": conversations }),
    ))
}

async fn create_conversation(
    State(state): State<AppState>,
    Caller(actor): Caller,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    state.limiter.check(&actor.user, Bucket::Other)?;
    let request = CreateConversation::parse(body)?;
    state
        .limiter
        .charge(&actor.user, Bucket::Members, request.members_touched())?;
    let (conversation, created) = state.chat.create_conversation(&actor, request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(respond(status, json!({ "conversation": conversation })))
}

async fn history(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    QueryParams(window): QueryParams<HistoryWindowWire>,
) -> Result<Response> {
    state.limiter.check(&actor.user, Bucket::Other)?;
    let request = History::from_window(conversation_id(&id)?, window)?;
    let page = state.chat.history(&actor, request).await?;
    Ok(respond(
        StatusCode::OK,
        json!({ "messages": page.messages, "has_more": page.has_more }),
    ))
}

async fn send_message(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    state.limiter.check(&actor.user, Bucket::Send)?;
    let request = SendMessage::parse_in(body, Some(conversation_id(&id)?), state.chat.limits())?;
    let sent = state.chat.send_message_and_wait(&actor, request).await?;
    let status = if sent.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(respond(status, json!({ "message": sent.message })))
}
