//! The OpenAPI 3.1 document of the HTTP API (user and server routes), generated from the
//! handlers' annotations and the types they answer with (`utoipa`), served at
//! `/api/openapi.json`. docs/openapi.json is a copy a test keeps equal to it
//! (`confab openapi > docs/openapi.json`).
//!
//! Request bodies are parsed from raw JSON by `protocol` (so errors name their field); the
//! shapes below describe them for people and tools, and the schemathesis test checks the server
//! against them.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::AppState;
use crate::domain::{
    Attachment, Ban, Conversation, ConversationKind, Member, Message, Timestamp, UserId,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(serve))
}

async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

/// The document, as served.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes")
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "confab HTTP API",
        description = "The user API (a user's JWT) and the server API (the host app's server key). Every answer is an envelope: `{ \"ok\": true, \"data\": … }` or `{ \"ok\": false, \"error\": { \"code\", \"message\", … } }`. docs/PROTOCOL.md describes each route and object in full."
    ),
    paths(
        super::api::list_conversations,
        super::api::create_conversation,
        super::api::history,
        super::api::list_members,
        super::api::send_message,
        super::api::block,
        super::api::unblock,
        super::api::search,
        super::attachments::upload,
        super::attachments::download,
        super::attachments::link,
        super::server_api::create_conversation,
        super::server_api::add_members,
        super::server_api::remove_member,
        super::server_api::send_message,
        super::server_api::list_conversations,
        super::server_api::ban,
        super::server_api::unban,
        super::server_api::erase,
    ),
    modifiers(&Security),
    tags(
        (name = "user", description = "A user's own requests, with their JWT."),
        (name = "server", description = "The host app's server, with a server key (`CONFAB_SERVER_API_KEYS`)."),
    )
)]
struct ApiDoc;

/// The two ways to authenticate: a user's JWT, and the host app's server key.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "user_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A JWT the host app signed for the user."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "server_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of CONFAB_SERVER_API_KEYS."))
                    .build(),
            ),
        );
    }
}

// The envelope.

/// A success: `data` is the route's answer.
#[derive(Serialize, ToSchema)]
pub struct Success<T> {
    /// Always `true`.
    ok: bool,
    data: T,
}

/// A failure.
#[derive(Serialize, ToSchema)]
pub struct Failure {
    /// Always `false`.
    ok: bool,
    error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    code: ErrorCode,
    message: String,
    /// The offending field, when there is one.
    field: Option<String>,
    /// With `rate_limited`: when to try again.
    retry_after_ms: Option<u64>,
    /// With `unauthorized`: why.
    reason: Option<AuthReason>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidPayload,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthReason {
    Missing,
    Invalid,
    Expired,
    Banned,
}

// Answers (the envelope's `data`).

#[derive(Serialize, ToSchema)]
pub struct ConversationData {
    conversation: Conversation,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationsData {
    conversations: Vec<Conversation>,
}

#[derive(Serialize, ToSchema)]
pub struct MembersData {
    /// In member order: owner, admins, members, each by when they joined.
    members: Vec<Member>,
    /// How many members the conversation has.
    member_count: i64,
    /// The cursor for the next page (`after`); `null` after the last page.
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageData {
    message: Message,
}

#[derive(Serialize, ToSchema)]
pub struct PageData {
    /// Ascending seq.
    messages: Vec<Message>,
    has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SearchData {
    /// Newest first.
    results: Vec<SearchResultData>,
    /// More, older results: ask again with `before` set to the last result's message id.
    has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResultData {
    message: Message,
    /// Plain text around the first match (never markup).
    snippet: String,
    /// `[start, end)` of each match in `snippet`, in characters.
    highlights: Vec<[u64; 2]>,
}

#[derive(Serialize, ToSchema)]
pub struct AttachmentData {
    attachment: Attachment,
}

#[derive(Serialize, ToSchema)]
pub struct LinkData {
    /// Relative to the server; downloads without a token until `expires_at`.
    url: String,
    expires_at: Timestamp,
}

#[derive(Serialize, ToSchema)]
pub struct BlockedData {
    user_id: UserId,
    blocked: bool,
}

#[derive(Serialize, ToSchema)]
pub struct BanData {
    user_id: UserId,
    /// `null` after an unban.
    ban: Option<Ban>,
}

#[derive(Serialize, ToSchema)]
pub struct ErasedData {
    user_id: UserId,
    messages_deleted: u64,
    conversations_left: u64,
}

// Request bodies.

/// `kind: "direct"` with `user_id`, or `kind: "group"` with `title` and `member_ids`.
#[derive(Serialize, ToSchema)]
pub struct CreateConversationBody {
    kind: ConversationKind,
    /// The other user (direct).
    user_id: Option<String>,
    /// 1–200 characters (group).
    title: Option<String>,
    /// Group members besides the caller.
    member_ids: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct SendMessageBody {
    /// The idempotency key: 1–64 characters.
    client_id: String,
    /// 1–`CONFAB_MAX_BODY_CHARS` characters.
    body: String,
    /// Up to a few of the caller's uploads not yet sent (`POST /api/attachments`).
    attachment_ids: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct UserIdBody {
    user_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserIdsBody {
    user_ids: Vec<String>,
}

/// `kind: "direct"` with two `user_ids`, or `kind: "group"` with `title`, `owner_id` and
/// `member_ids`; `external_id` makes it idempotent.
#[derive(Serialize, ToSchema)]
pub struct AppCreateConversationBody {
    kind: ConversationKind,
    /// The two users (direct).
    user_ids: Option<Vec<String>>,
    /// 1–200 characters (group).
    title: Option<String>,
    /// The group's owner.
    owner_id: Option<String>,
    /// The group's other members.
    member_ids: Option<Vec<String>>,
    /// The app's own id for the conversation: 1–200 characters.
    external_id: Option<String>,
}

/// Without `sender_id`: a system message.
#[derive(Serialize, ToSchema)]
pub struct AppSendMessageBody {
    client_id: String,
    body: String,
    sender_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BanBody {
    /// RFC 3339, in the future; none: for good.
    until: Option<String>,
    /// Up to 500 characters.
    reason: Option<String>,
}
