//! The REST API: the same requests and objects as the socket events, for app backends and
//! scripts. Each route builds a `protocol::Request` and answers what `chat` replies; sends made
//! here are broadcast to sockets exactly like `message:send`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};

use super::AppState;
use super::extract::{Caller, JsonBody, QueryParams};
use super::openapi::{
    BlockedData, ConversationData, ConversationsData, CreateConversationBody, Failure, MembersData,
    MessageData, PageData, SearchData, SendMessageBody, Success, UserIdBody,
};
use crate::domain::ConversationId;
use crate::error::{Error, Result};
use crate::protocol::Request;
use crate::protocol::requests::{
    CreateConversation, History, HistoryWindowWire, ListMembers, MembersWindowWire, Search,
    SearchWire, SendMessage, UserRef,
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
        .route("/api/conversations/{id}/members", get(list_members))
        // Blocks (issue 19).
        .route("/api/blocks", post(block))
        .route("/api/blocks/{user_id}", delete(unblock))
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

#[utoipa::path(get, path = "/api/conversations", tag = "user", security(("user_jwt" = [])), responses((status = 200, description = "The caller's conversations, most recent activity first, with their read state", body = Success<ConversationsData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn list_conversations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response> {
    answer(&state, caller, Request::ListConversations).await
}

#[utoipa::path(post, path = "/api/conversations", tag = "user", security(("user_jwt" = [])), request_body = CreateConversationBody, responses((status = 201, description = "Created", body = Success<ConversationData>), (status = 200, description = "The direct conversation existed", body = Success<ConversationData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn create_conversation(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = Request::CreateConversation(CreateConversation::parse(&body)?);
    answer(&state, caller, request).await
}

#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "user", security(("user_jwt" = [])), params(("id" = String, Path, description = "The conversation id"), ("before_seq" = Option<i64>, Query, description = "Messages below this seq (newest first from the end when neither bound is given)"), ("after_seq" = Option<i64>, Query, description = "Messages above this seq, oldest first"), ("limit" = Option<i64>, Query, description = "1 to 200 (more is served as 200); 50 by default")), responses((status = 200, description = "A page of messages", body = Success<PageData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(window): QueryParams<HistoryWindowWire>,
) -> Result<Response> {
    let request = Request::History(History::from_window(conversation_id(&id)?, window)?);
    answer(&state, caller, request).await
}

#[utoipa::path(get, path = "/api/conversations/{id}/members", tag = "user", security(("user_jwt" = [])), params(("id" = String, Path, description = "The conversation id"), ("after" = Option<String>, Query, description = "The `next` of the page before (none: from the first member)"), ("limit" = Option<i64>, Query, description = "1 to 1000 (more is served as 1000); 100 by default")), responses((status = 200, description = "A page of the conversation's members, in member order", body = Success<MembersData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(window): QueryParams<MembersWindowWire>,
) -> Result<Response> {
    let request = Request::ListMembers(ListMembers::from_window(conversation_id(&id)?, window)?);
    answer(&state, caller, request).await
}

#[utoipa::path(post, path = "/api/conversations/{id}/messages", tag = "user", security(("user_jwt" = [])), params(("id" = String, Path, description = "The conversation id")), request_body = SendMessageBody, responses((status = 201, description = "Stored and broadcast", body = Success<MessageData>), (status = 200, description = "A retry: the message stored before", body = Success<MessageData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn send_message(
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

#[utoipa::path(post, path = "/api/blocks", tag = "user", security(("user_jwt" = [])), request_body = UserIdBody, responses((status = 200, description = "Blocked", body = Success<BlockedData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn block(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    answer(&state, caller, Request::Block(UserRef::parse(&body)?)).await
}

#[utoipa::path(delete, path = "/api/blocks/{user_id}", tag = "user", security(("user_jwt" = [])), params(("user_id" = String, Path, description = "The user to unblock")), responses((status = 200, description = "Unblocked", body = Success<BlockedData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn unblock(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<Response> {
    let user_id = crate::protocol::server::path_user(&user)?;
    answer(&state, caller, Request::Unblock(UserRef { user_id })).await
}

#[utoipa::path(get, path = "/api/search", tag = "user", security(("user_jwt" = [])), params(("q" = String, Query, description = "What to look for, as in a search box: words, \"a phrase\", `or`, `-word`"), ("conversation_id" = Option<String>, Query, description = "Only this conversation"), ("before" = Option<String>, Query, description = "Only messages older than this message id (the last of the previous page)"), ("limit" = Option<i64>, Query, description = "1 to 50 (more is served as 50); 20 by default")), responses((status = 200, description = "Matches in the caller's conversations, newest first", body = Success<SearchData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn search(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(wire): QueryParams<SearchWire>,
) -> Result<Response> {
    answer(&state, caller, Request::Search(Search::from_wire(wire)?)).await
}
