//! The server API: the host app's backend acting for its users (docs/PROTOCOL.md, "Server
//! API"). Authenticated with a server key, never a user's token; the same envelope, error codes
//! and objects as the user API, and the same events to the members' sockets.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};

use super::AppState;
use super::extract::{AppServer, JsonBody};
use super::openapi::{
    AppCreateConversationBody, AppSendMessageBody, BanBody, BanData, ConversationData,
    ConversationsData, ErasedData, Failure, MessageData, Success, UserIdsBody,
};
use crate::domain::Timestamp;
use crate::error::Result;
use crate::protocol::server::{
    CreateForApp, SendForApp, ServerRequest, path_conversation, path_user,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/server/conversations", post(create_conversation))
        .route("/api/server/conversations/{id}/members", post(add_members))
        .route(
            "/api/server/conversations/{id}/members/{user_id}",
            delete(remove_member),
        )
        .route(
            "/api/server/conversations/{id}/messages",
            post(send_message),
        )
        .route(
            "/api/server/users/{user_id}/conversations",
            get(list_conversations),
        )
        .route("/api/server/users/{user_id}/ban", post(ban).delete(unban))
        .route("/api/server/users/{user_id}", delete(erase))
}

/// `chat`, then the envelope: `201` when the request made something new. No rate limit: the
/// app's server is trusted with its own pace (it sends for all of its users).
async fn answer(state: &AppState, request: ServerRequest) -> Result<Response> {
    let reply = state.chat.execute_for_app(request).await?;
    let status = if reply.created() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(super::success(status, &reply))
}

#[utoipa::path(post, path = "/api/server/conversations", operation_id = "server_create_conversation", tag = "server", security(("server_key" = [])), request_body = AppCreateConversationBody, responses((status = 201, description = "Created", body = Success<ConversationData>), (status = 200, description = "Found: the pair's direct conversation, or the one the external_id names", body = Success<ConversationData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn create_conversation(
    State(state): State<AppState>,
    _: AppServer,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = CreateForApp::parse(&body, state.chat.limits())?;
    answer(&state, ServerRequest::CreateConversation(request)).await
}

#[utoipa::path(post, path = "/api/server/conversations/{id}/members", operation_id = "server_add_members", tag = "server", security(("server_key" = [])), params(("id" = String, Path, description = "The conversation id")), request_body = UserIdsBody, responses((status = 200, description = "The conversation after the change", body = Success<ConversationData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn add_members(
    State(state): State<AppState>,
    _: AppServer,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = ServerRequest::add_members(path_conversation(&id)?, &body)?;
    answer(&state, request).await
}

#[utoipa::path(delete, path = "/api/server/conversations/{id}/members/{user_id}", operation_id = "server_remove_member", tag = "server", security(("server_key" = [])), params(("id" = String, Path, description = "The conversation id"), ("user_id" = String, Path, description = "The user id")), responses((status = 200, description = "The conversation after the change", body = Success<ConversationData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn remove_member(
    State(state): State<AppState>,
    _: AppServer,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response> {
    let request = ServerRequest::RemoveMembers {
        conversation_id: path_conversation(&id)?,
        user_ids: vec![path_user(&user)?],
    };
    answer(&state, request).await
}

#[utoipa::path(post, path = "/api/server/conversations/{id}/messages", operation_id = "server_send_message", tag = "server", security(("server_key" = [])), params(("id" = String, Path, description = "The conversation id")), request_body = AppSendMessageBody, responses((status = 201, description = "Stored and broadcast", body = Success<MessageData>), (status = 200, description = "A retry: the message stored before", body = Success<MessageData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn send_message(
    State(state): State<AppState>,
    _: AppServer,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = SendForApp::parse(path_conversation(&id)?, &body, state.chat.limits())?;
    answer(&state, ServerRequest::SendMessage(request)).await
}

#[utoipa::path(get, path = "/api/server/users/{user_id}/conversations", operation_id = "server_list_conversations", tag = "server", security(("server_key" = [])), params(("user_id" = String, Path, description = "The user id")), responses((status = 200, description = "The user's conversations, with their read state", body = Success<ConversationsData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn list_conversations(
    State(state): State<AppState>,
    _: AppServer,
    Path(user): Path<String>,
) -> Result<Response> {
    let request = ServerRequest::ListConversations {
        user_id: path_user(&user)?,
    };
    answer(&state, request).await
}

#[utoipa::path(post, path = "/api/server/users/{user_id}/ban", operation_id = "server_ban", tag = "server", security(("server_key" = [])), params(("user_id" = String, Path, description = "The user id")), request_body(content = Option<BanBody>, description = "Optional: no body is a ban for good with no reason"), responses((status = 200, description = "The ban in force", body = Success<BanData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn ban(
    State(state): State<AppState>,
    _: AppServer,
    Path(user): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = ServerRequest::ban(path_user(&user)?, &body, Timestamp::now())?;
    answer(&state, request).await
}

#[utoipa::path(delete, path = "/api/server/users/{user_id}/ban", operation_id = "server_unban", tag = "server", security(("server_key" = [])), params(("user_id" = String, Path, description = "The user id")), responses((status = 200, description = "No ban", body = Success<BanData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn unban(
    State(state): State<AppState>,
    _: AppServer,
    Path(user): Path<String>,
) -> Result<Response> {
    let request = ServerRequest::Unban {
        user_id: path_user(&user)?,
    };
    answer(&state, request).await
}

#[utoipa::path(delete, path = "/api/server/users/{user_id}", operation_id = "server_erase", tag = "server", security(("server_key" = [])), params(("user_id" = String, Path, description = "The user id")), responses((status = 200, description = "What this call erased", body = Success<ErasedData>), (status = "4XX", description = "Refused: the error envelope (docs/PROTOCOL.md, \"Errors\")", body = Failure), (status = "5XX", description = "A server-side failure", body = Failure)))]
pub(super) async fn erase(
    State(state): State<AppState>,
    _: AppServer,
    Path(user): Path<String>,
) -> Result<Response> {
    let request = ServerRequest::Erase {
        user_id: path_user(&user)?,
    };
    answer(&state, request).await
}
