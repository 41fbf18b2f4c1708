//! Rows as the database returns them, decoded by column name (`sqlx::FromRow`), and their one
//! conversion into domain values. Both backends read these same structs: what differs between
//! them is only how a UUID is stored (PostgreSQL `uuid`, SQLite text), which [`DbUuid`] hides.

use sqlx::error::BoxDynError;
use sqlx::{Decode, Postgres, Sqlite, Type};
use uuid::Uuid;

use super::assemble::ConversationHead;
use crate::domain::{
    Attachment, AttachmentId, ConversationId, ConversationKind, Member, Message, MessageId,
    MessageKind, ReadState, Role, Timestamp, UserId,
};
use crate::error::{Error, Result};

/// A UUID column: `uuid` on PostgreSQL, canonical hyphenated text on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DbUuid(pub Uuid);

impl Type<Postgres> for DbUuid {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Uuid as Type<Postgres>>::type_info()
    }
}

impl<'r> Decode<'r, Postgres> for DbUuid {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <Uuid as Decode<Postgres>>::decode(value).map(DbUuid)
    }
}

impl Type<Sqlite> for DbUuid {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <uuid::fmt::Hyphenated as Type<Sqlite>>::type_info()
    }
}

impl<'r> Decode<'r, Sqlite> for DbUuid {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        <uuid::fmt::Hyphenated as Decode<Sqlite>>::decode(value).map(|h| DbUuid(h.into_uuid()))
    }
}

/// The columns of a message, qualified by the alias `m`, as [`MessageRow`] reads them. A macro,
/// so that queries can be built with `concat!` and stay `&'static str` (sqlx caches statements
/// by their text).
macro_rules! message_columns {
    () => {
        "m.id, m.conversation_id, m.seq, m.sender_id, m.client_id, m.body, m.created_at, m.edited_at, m.deleted_at, m.attachments"
    };
}
pub(crate) use message_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: DbUuid,
    conversation_id: DbUuid,
    seq: i64,
    sender_id: String,
    client_id: String,
    body: Option<String>,
    created_at: i64,
    edited_at: Option<i64>,
    deleted_at: Option<i64>,
    /// A JSON array of attachment objects, or NULL.
    attachments: Option<String>,
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Self {
        Message {
            id: MessageId(r.id.0),
            conversation_id: ConversationId(r.conversation_id.0),
            seq: r.seq,
            kind: if r.sender_id == SYSTEM_SENDER {
                MessageKind::System
            } else {
                MessageKind::User
            },
            sender_id: stored_sender(&r.sender_id),
            client_id: r.client_id,
            body: r.body,
            created_at: Timestamp(r.created_at),
            edited_at: r.edited_at.map(Timestamp),
            deleted_at: r.deleted_at.map(Timestamp),
            attachments: r
                .attachments
                .as_deref()
                .map(decode_attachments)
                .unwrap_or_default(),
        }
    }
}

/// How a message's sender is stored: a system message has none, stored as `''` (no user id is
/// empty) rather than NULL, so that the idempotency key `(conversation_id, sender_id,
/// client_id)` still holds for system messages (NULLs would never collide). The kind is read
/// from it, so the two can't disagree.
pub(crate) const SYSTEM_SENDER: &str = "";

/// The sender column's value for `sender` (see [`SYSTEM_SENDER`]).
pub(crate) fn sender_column(sender: Option<&UserId>) -> &str {
    sender.map_or(SYSTEM_SENDER, UserId::as_str)
}

fn stored_sender(raw: &str) -> Option<UserId> {
    (raw != SYSTEM_SENDER).then(|| UserId::from_db(raw))
}
/// A message's copy of its attachments, as written by [`encode_attachments`]. Only this server
/// writes it; should it ever not parse, the message is still served, without them.
fn decode_attachments(json: &str) -> Vec<Attachment> {
    serde_json::from_str(json).unwrap_or_else(|e| {
        tracing::error!(error = %e, "unreadable attachments column");
        Vec::new()
    })
}

/// The `attachments` column of a message: `None` when it has none.
pub(crate) fn encode_attachments(attachments: &[Attachment]) -> Option<String> {
    (!attachments.is_empty())
        .then(|| serde_json::to_string(attachments).expect("attachments serialize"))
}

/// The columns of an attachment, as [`AttachmentRow`] reads them.
macro_rules! attachment_columns {
    () => {
        "id, uploader_id, content_type, size, name, width, height, message_id, deleted_at"
    };
}
pub(crate) use attachment_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct AttachmentRow {
    id: DbUuid,
    uploader_id: String,
    content_type: String,
    size: i64,
    name: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    message_id: Option<DbUuid>,
    deleted_at: Option<i64>,
}

/// An attachment with what decides who may use and see it.
#[derive(Debug, Clone)]
pub(crate) struct StoredAttachment {
    pub attachment: Attachment,
    pub uploader: UserId,
    /// Claimed by a message already.
    pub claimed: bool,
    /// Deleted with its message, or swept: no longer served.
    pub deleted: bool,
}

impl From<AttachmentRow> for StoredAttachment {
    fn from(r: AttachmentRow) -> Self {
        let dimension = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        StoredAttachment {
            attachment: Attachment {
                id: AttachmentId(r.id.0),
                content_type: r.content_type,
                size: r.size,
                name: r.name,
                width: dimension(r.width),
                height: dimension(r.height),
            },
            uploader: UserId::from_db(&r.uploader_id),
            claimed: r.message_id.is_some(),
            deleted: r.deleted_at.is_some(),
        }
    }
}

impl From<DbUuid> for AttachmentId {
    fn from(id: DbUuid) -> Self {
        AttachmentId(id.0)
    }
}

/// Decodes message rows: the common tail of every query that returns messages.
pub(crate) fn messages(rows: Vec<MessageRow>) -> Vec<Message> {
    rows.into_iter().map(Message::from).collect()
}

/// `SELECT id, kind, title, created_at, last_seq, member_count FROM conversations`.
#[derive(sqlx::FromRow)]
pub(crate) struct HeadRow {
    id: DbUuid,
    kind: String,
    title: Option<String>,
    created_at: i64,
    last_seq: i64,
    member_count: i64,
}

impl HeadRow {
    pub(crate) fn into_head(self, read_state: Option<ReadState>) -> Result<ConversationHead> {
        Ok(ConversationHead {
            id: ConversationId(self.id.0),
            kind: ConversationKind::from_db(&self.kind)
                .ok_or_else(|| corrupt("kind", &self.kind))?,
            title: self.title,
            created_at: Timestamp(self.created_at),
            last_seq: self.last_seq,
            member_count: self.member_count,
            read_state,
        })
    }
}

/// A conversation of the caller's own list: its head and the caller's read state.
#[derive(sqlx::FromRow)]
pub(crate) struct OwnHeadRow {
    #[sqlx(flatten)]
    head: HeadRow,
    last_read_seq: i64,
    unread_count: i64,
}

impl OwnHeadRow {
    pub(crate) fn into_head(self) -> Result<ConversationHead> {
        self.head.into_head(Some(ReadState {
            last_read_seq: self.last_read_seq,
            unread_count: self.unread_count,
        }))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    conversation_id: DbUuid,
    user_id: String,
    name: Option<String>,
    role: String,
    joined_at: i64,
    last_read_seq: i64,
}

impl MemberRow {
    pub(crate) fn into_member(self) -> Result<(ConversationId, Member)> {
        Ok((
            ConversationId(self.conversation_id.0),
            Member {
                user_id: UserId::from_db(&self.user_id),
                name: self.name,
                role: role(&self.role)?,
                joined_at: Timestamp(self.joined_at),
                last_read_seq: self.last_read_seq,
            },
        ))
    }
}

/// `SELECT id, last_seen_at FROM users`.
#[derive(sqlx::FromRow)]
pub(crate) struct LastSeenRow {
    id: String,
    last_seen_at: Option<i64>,
}

impl From<LastSeenRow> for (UserId, Option<Timestamp>) {
    fn from(r: LastSeenRow) -> Self {
        (UserId::from_db(&r.id), r.last_seen_at.map(Timestamp))
    }
}

/// `SELECT id, last_seq FROM conversations`.
#[derive(sqlx::FromRow)]
pub(crate) struct SeqRow {
    id: DbUuid,
    last_seq: i64,
}

impl From<SeqRow> for (ConversationId, i64) {
    fn from(r: SeqRow) -> Self {
        (ConversationId(r.id.0), r.last_seq)
    }
}

/// `SELECT conversation_id, user_id FROM members`.
#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    conversation_id: DbUuid,
    user_id: String,
}

impl From<MembershipRow> for (ConversationId, UserId) {
    fn from(r: MembershipRow) -> Self {
        (
            ConversationId(r.conversation_id.0),
            UserId::from_db(&r.user_id),
        )
    }
}

impl From<DbUuid> for Uuid {
    fn from(id: DbUuid) -> Self {
        id.0
    }
}

impl From<DbUuid> for ConversationId {
    fn from(id: DbUuid) -> Self {
        ConversationId(id.0)
    }
}

pub(crate) fn role(stored: &str) -> Result<Role> {
    Role::from_db(stored).ok_or_else(|| corrupt("role", stored))
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::internal(anyhow::anyhow!(
        "unexpected {what} {value:?} in the database"
    ))
}
