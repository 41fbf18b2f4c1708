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

async fn create_conversation(
    State(state): State<AppState>,
    _: AppServer,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = CreateForApp::parse(&body, state.chat.limits())?;
    answer(&state, ServerRequest::CreateConversation(request)).await
}

async fn add_members(
    State(state): State<AppState>,
    _: AppServer,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = ServerRequest::add_members(path_conversation(&id)?, &body)?;
    answer(&state, request).await
}

async fn remove_member(
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

async fn send_message(
    State(state): State<AppState>,
    _: AppServer,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = SendForApp::parse(path_conversation(&id)?, &body, state.chat.limits())?;
    answer(&state, ServerRequest::SendMessage(request)).await
}

async fn list_conversations(
    State(state): State<AppState>,
    _: AppServer,
    Path(user): Path<String>,
) -> Result<Response> {
    let request = ServerRequest::ListConversations {
        user_id: path_user(&user)?,
    };
    answer(&state, request).await
}

async fn ban(
    State(state): State<AppState>,
    _: AppServer,
    Path(user): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = ServerRequest::ban(path_user(&user)?, &body, Timestamp::now())?;
    answer(&state, request).await
}

async fn unban(
    State(state): State<AppState>,
    _: AppServer,
    Path(user): Path<String>,
) -> Result<Response> {
    let request = ServerRequest::Unban {
        user_id: path_user(&user)?,
    };
    answer(&state, request).await
}

async fn erase(
    State(state): State<AppState>,
    _: AppServer,
    Path(user): Path<String>,
) -> Result<Response> {
    let request = ServerRequest::Erase {
        user_id: path_user(&user)?,
    };
    answer(&state, request).await
}
