//! The REST API: the same requests and objects as the socket events, for app backends and
//! scripts. Each route builds a `protocol::Request` and answers what `chat` replies; sends made
//! here are broadcast to sockets exactly like `message:send`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use super::AppState;
use super::extract::{Caller, JsonBody, QueryParams};
use crate::domain::ConversationId;
use crate::error::{Error, Result};
use crate::protocol::Request;
use crate::protocol::requests::{
    CreateConversation, History, HistoryWindowWire, Search, SearchWire, SendMessage,
};

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
        .route("/api/search", get(search))
}

fn conversation_id(raw: &str) -> Result<ConversationId> {
    ConversationId::parse(raw)
        .ok_or_else(|| Error::invalid("conversation_id", "must be a conversation id (a UUID)"))
}

/// Rate limits, then `chat`, then the envelope: `201` when the request made something new.
async fn answer(state: &AppState, caller: Caller, request: Request) -> Result<Response> {
    let Caller(identity) = caller;
    state.limiter.admit(&identity.user_id, &request)?;
    let actor = state.chat.caller(identity).await?;
    let reply = state.chat.execute(&actor, request).await?;
    let status = if reply.created() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(super::success(status, &reply))
}

async fn list_conversations(State(state): State<AppState>, caller: Caller) -> Result<Response> {
    answer(&state, caller, Request::ListConversations).await
}

async fn create_conversation(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = Request::CreateConversation(CreateConversation::parse(&body)?);
    answer(&state, caller, request).await
}

async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(window): QueryParams<HistoryWindowWire>,
) -> Result<Response> {
    let request = Request::History(History::from_window(conversation_id(&id)?, window)?);
    answer(&state, caller, request).await
}

async fn send_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let conversation = conversation_id(&id)?;
    let request = Request::SendMessage(SendMessage::parse_in(
        &body,
        Some(conversation),
        state.chat.limits(),
    )?);
    answer(&state, caller, request).await
}

async fn search(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(wire): QueryParams<SearchWire>,
) -> Result<Response> {
    answer(&state, caller, Request::Search(Search::from_wire(wire)?)).await
}
