//! The SQLite backend, for running confab alone on one machine.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly one connection
//! (they queue in the pool instead of failing with SQLITE_BUSY), while reads use a pool of their
//! own: in WAL mode readers never wait for the writer. Statements run in-process, so a loop of
//! small statements costs microseconds, not round trips. Lists travel as JSON arrays that
//! `json_each` unpacks, SQLite's way to bind one.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::assemble::{page_from_rows, sync_update};
use super::rows::{
    AttachmentRow, HeadRow, LastSeenRow, MemberRow, MembershipRow, MessageRow, OwnHeadRow, SeqRow,
    StoredAttachment, attachment_columns, encode_attachments, messages,
};
use super::transactions::{Backend, Rewrite, complete};
use super::{DbContext, HistoryQuery, NewMessage, Page, SyncUpdate};
use crate::domain::{
    Attachment, AttachmentId, Conversation, ConversationId, ConversationTitle, DisplayName,
    Message, MessageId, Role, SearchQuery, Timestamp, UserId,
};
use crate::error::Result;
use crate::protocol::requests::SyncCursor;

use super::rows::message_columns;

/// The same columns unqualified, for `RETURNING` (SQLite doesn't accept the table alias there).
macro_rules! returned_columns {
    () => {
        "id, conversation_id, seq, sender_id, client_id, body, created_at, edited_at, deleted_at, attachments"
    };
}

#[derive(Clone)]
pub struct SqliteStore {
    /// Exactly one connection: SQLite's single writer, made explicit.
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, readers: u32) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .context("parsing the SQLite url")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged message survives a power cut, not only a crash. Group
            // commit makes the extra fsync per transaction affordable.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // A batch's multi-row INSERT and UPDATE keep a statement journal (to undo just that
            // statement); in a temp file it cost a write syscall per page, in memory it's a copy.
            .pragma("temp_store", "memory")
            .busy_timeout(Duration::from_secs(5));
        // A file is created when missing (a first start), its directory never: a path with a
        // typo in it must fail, not start on an empty database somewhere unexpected.
        let file = Path::new(options.get_filename());
        if let Some(parent) = file.parent()
            && !parent.as_os_str().is_empty()
            && !parent.is_dir()
        {
            anyhow::bail!(
                "the directory of the SQLite database {} does not exist (confab creates the file, not its directory: check the path)",
                file.display()
            );
        }
        if !file.exists() && options.get_filename() != Path::new(":memory:") {
            tracing::warn!(path = %file.display(), "no database there: creating a new, empty one");
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .context("opening the database")?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .context("running migrations")?;
        let readers = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await
            .context("opening read connections")?;
        Ok(Self { writer, readers })
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .db_context("pinging the database")?;
        Ok(())
    }

    pub async fn touch_user(
        &self,
        user: &UserId,
        name: Option<&DisplayName>,
    ) -> Result<Vec<ConversationId>> {
        self.remember_user(user, name).await?;
        self.memberships(user).await
    }

    pub async fn remember_user(&self, user: &UserId, name: Option<&DisplayName>) -> Result<()> {
        // Read first: in the common case (known user, same name) nothing needs the writer.
        let known: Option<Option<String>> =
            sqlx::query_scalar("SELECT name FROM users WHERE id = ?")
                .bind(user.as_str())
                .fetch_optional(&self.readers)
                .await
                .db_context("looking up the user")?;
        let stale = match (&known, name) {
            (None, _) => true,
            (Some(old), Some(new)) => old.as_deref() != Some(new.as_str()),
            (Some(_), None) => false,
        };
        if stale {
            sqlx::query(
                "INSERT INTO users (id, name, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET name = coalesce(excluded.name, users.name)",
            )
            .bind(user.as_str())
            .bind(name.map(DisplayName::as_str))
            .bind(Timestamp::now().millis())
            .execute(&self.writer)
            .await
            .db_context("recording the user")?;
        }
        Ok(())
    }

    pub async fn unread_count(
        &self,
        conversation: ConversationId,
        user: &UserId,
        after: i64,
    ) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM messages
             WHERE conversation_id = ? AND seq > ? AND deleted_at IS NULL AND sender_id <> ?",
        )
        .bind(conversation.to_string())
        .bind(after)
        .bind(user.as_str())
        .fetch_one(&self.readers)
        .await
        .db_context("counting unread messages")
    }

    pub async fn memberships(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        let ids: Vec<super::rows::DbUuid> =
            sqlx::query_scalar("SELECT conversation_id FROM members WHERE user_id = ?")
                .bind(user.as_str())
                .fetch_all(&self.readers)
                .await
                .db_context("loading memberships")?;
        Ok(ids.into_iter().map(Into::into).collect())
    }

    pub async fn conversations_of(&self, user: &UserId) -> Result<Vec<Conversation>> {
        let mut conn = self.readers.acquire().await.db_context("acquiring")?;
        let rows: Vec<OwnHeadRow> = sqlx::query_as(
            "SELECT c.id, c.kind, c.title, c.created_at, c.last_seq, mb.last_read_seq,
                    (SELECT count(*) FROM messages m
                     WHERE m.conversation_id = c.id AND m.seq > mb.last_read_seq
                       AND m.deleted_at IS NULL AND m.sender_id <> mb.user_id) AS unread_count
             FROM members mb JOIN conversations c ON c.id = mb.conversation_id
             WHERE mb.user_id = ?
             ORDER BY c.last_activity_at DESC, c.id DESC",
        )
        .bind(user.as_str())
        .fetch_all(&mut *conn)
        .await
        .db_context("listing conversations")?;
        let heads = rows
            .into_iter()
            .map(OwnHeadRow::into_head)
            .collect::<Result<_>>()?;
        complete::<Self>(&mut conn, heads).await
    }

    pub async fn mark_read(
        &self,
        conversation: ConversationId,
        user: &UserId,
        seq: i64,
    ) -> Result<Option<(i64, bool)>> {
        // Only moves forward, and never past the last message.
        let moved: Option<i64> = sqlx::query_scalar(
            "UPDATE members
             SET last_read_seq = min(?3, (SELECT last_seq FROM conversations WHERE id = ?1))
             WHERE conversation_id = ?1 AND user_id = ?2
               AND last_read_seq < min(?3, (SELECT last_seq FROM conversations WHERE id = ?1))
             RETURNING last_read_seq",
        )
        .bind(conversation.to_string())
        .bind(user.as_str())
        .bind(seq)
        .fetch_optional(&self.writer)
        .await
        .db_context("marking read")?;
        if let Some(mark) = moved {
            return Ok(Some((mark, true)));
        }
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT last_read_seq FROM members WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(conversation.to_string())
        .bind(user.as_str())
        .fetch_optional(&self.readers)
        .await
        .db_context("reading the read mark")?;
        Ok(current.map(|mark| (mark, false)))
    }

    pub async fn last_seen(
        &self,
        viewer: &UserId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, Option<Timestamp>)>> {
        let rows: Vec<LastSeenRow> = sqlx::query_as(
            "SELECT u.id, u.last_seen_at FROM users u
             WHERE u.id IN (SELECT value FROM json_each(?2)) AND EXISTS (
                 SELECT 1 FROM members a JOIN members b ON b.conversation_id = a.conversation_id
                 WHERE a.user_id = ?1 AND b.user_id = u.id)",
        )
        .bind(viewer.as_str())
        .bind(json_users(users))
        .fetch_all(&self.readers)
        .await
        .db_context("reading last seen times")?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn set_last_seen(&self, user: &UserId, at: Option<Timestamp>) -> Result<()> {
        sqlx::query("UPDATE users SET last_seen_at = ? WHERE id = ?")
            .bind(at.map(Timestamp::millis))
            .bind(user.as_str())
            .execute(&self.writer)
            .await
            .db_context("recording last seen")?;
        Ok(())
    }

    pub async fn is_member(&self, conversation: ConversationId, user: &UserId) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM members WHERE conversation_id = ? AND user_id = ?)",
        )
        .bind(conversation.to_string())
        .bind(user.as_str())
        .fetch_one(&self.readers)
        .await
        .db_context("checking membership")
    }

    pub async fn history(&self, conversation: ConversationId, q: HistoryQuery) -> Result<Page> {
        let mut conn = self.readers.acquire().await.db_context("acquiring")?;
        let rows = read_range(
            &mut conn,
            conversation,
            q.after_seq.unwrap_or(0),
            q.before_seq.unwrap_or(i64::MAX),
            q.ascending(),
            q.limit + 1,
        )
        .await?;
        Ok(page_from_rows(rows, q))
    }

    pub async fn sync(
        &self,
        user: &UserId,
        cursors: &[SyncCursor],
        limit: u32,
        changed_since: Option<Timestamp>,
    ) -> Result<Vec<SyncUpdate>> {
        let mut conn = self.readers.acquire().await.db_context("acquiring")?;
        let member_of: Vec<super::rows::DbUuid> =
            sqlx::query_scalar("SELECT conversation_id FROM members WHERE user_id = ?")
                .bind(user.as_str())
                .fetch_all(&mut *conn)
                .await
                .db_context("checking memberships for sync")?;
        let member_of: HashSet<ConversationId> = member_of.into_iter().map(Into::into).collect();
        let mut updates = Vec::new();
        for cursor in cursors {
            let conversation = cursor.conversation_id;
            if !member_of.contains(&conversation) {
                continue;
            }
            let messages = read_range(
                &mut conn,
                conversation,
                cursor.after,
                i64::MAX,
                true,
                limit + 1,
            )
            .await?;
            let changed = match changed_since {
                None => Vec::new(),
                Some(since) => {
                    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        message_columns!(),
                        " FROM messages m
                         WHERE m.conversation_id = ? AND m.changed_at >= ?
                           AND m.seq > ? AND m.seq <= ?
                         ORDER BY m.seq LIMIT ?"
                    ))
                    .bind(conversation.to_string())
                    .bind(since.millis())
                    .bind(cursor.changed_after)
                    .bind(cursor.after)
                    .bind(i64::from(limit) + 1)
                    .fetch_all(&mut *conn)
                    .await
                    .db_context("reading changed messages for sync")?;
                    super::rows::messages(rows)
                }
            };
            updates.push(sync_update(cursor, messages, changed, limit));
        }
        Ok(updates)
    }
}

/// Search.
impl SqliteStore {
    pub async fn search(
        &self,
        user: &UserId,
        query: &SearchQuery,
        conversation: Option<ConversationId>,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages_fts f
             JOIN message_search_ids s ON s.rowid = f.rowid
             JOIN messages m ON m.id = s.message_id
             WHERE messages_fts MATCH ?1
               AND m.conversation_id IN (SELECT conversation_id FROM members
                                         WHERE user_id = ?2 AND (?3 IS NULL OR conversation_id = ?3))
               AND m.deleted_at IS NULL
               AND (?4 IS NULL OR m.id < ?4)
             ORDER BY m.id DESC LIMIT ?5"
        ))
        .bind(query.fts5())
        .bind(user.as_str())
        .bind(conversation.map(|c| c.to_string()))
        .bind(before.map(|m| m.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .db_context("searching messages")?;
        Ok(messages(rows))
    }
}

/// Attachments.
impl SqliteStore {
    pub async fn insert_attachment(
        &self,
        uploader: &UserId,
        a: &Attachment,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO attachments (id, uploader_id, content_type, size, name, width, height, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(a.id.to_string())
        .bind(uploader.as_str())
        .bind(&a.content_type)
        .bind(a.size)
        .bind(a.name.as_deref())
        .bind(a.width.map(i64::from))
        .bind(a.height.map(i64::from))
        .bind(now.millis())
        .execute(&self.writer)
        .await
        .db_context("recording an attachment")?;
        Ok(())
    }

    pub async fn unclaimed_count(&self, uploader: &UserId) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM attachments
             WHERE uploader_id = ? AND message_id IS NULL AND deleted_at IS NULL",
        )
        .bind(uploader.as_str())
        .fetch_one(&self.readers)
        .await
        .db_context("counting unsent attachments")
    }

    pub async fn visible_attachment(
        &self,
        viewer: &UserId,
        id: AttachmentId,
    ) -> Result<Option<Attachment>> {
        let row: Option<AttachmentRow> = sqlx::query_as(concat!(
            "SELECT ",
            attachment_columns!(),
            " FROM attachments a
             WHERE a.id = ?1 AND a.deleted_at IS NULL AND (
                 (a.message_id IS NULL AND a.uploader_id = ?2)
                 OR EXISTS (SELECT 1 FROM members mb
                            WHERE mb.conversation_id = a.conversation_id AND mb.user_id = ?2))"
        ))
        .bind(id.to_string())
        .bind(viewer.as_str())
        .fetch_optional(&self.readers)
        .await
        .db_context("looking up an attachment")?;
        Ok(row.map(|r| StoredAttachment::from(r).attachment))
    }

    pub async fn doomed_attachments(
        &self,
        cutoff: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<AttachmentId>> {
        // On the single writer, as sends' claims are: an upload is either sent or swept.
        sqlx::query(
            "UPDATE attachments SET deleted_at = ?2
             WHERE message_id IS NULL AND deleted_at IS NULL AND created_at < ?1",
        )
        .bind(cutoff.millis())
        .bind(now.millis())
        .execute(&self.writer)
        .await
        .db_context("sweeping unsent attachments")?;
        let ids: Vec<super::rows::DbUuid> = sqlx::query_scalar(
            "SELECT id FROM attachments WHERE deleted_at IS NOT NULL ORDER BY deleted_at LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .db_context("listing deleted attachments")?;
        Ok(ids.into_iter().map(Into::into).collect())
    }

    pub async fn forget_attachments(&self, ids: &[AttachmentId]) -> Result<()> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        sqlx::query(
            "DELETE FROM attachments
             WHERE id IN (SELECT value FROM json_each(?)) AND deleted_at IS NOT NULL",
        )
        .bind(json(&ids))
        .execute(&self.writer)
        .await
        .db_context("forgetting deleted attachments")?;
        Ok(())
    }
}

impl Backend for SqliteStore {
    type Db = Sqlite;

    async fn members(c: &mut SqliteConnection, ids: &[ConversationId]) -> Result<Vec<MemberRow>> {
        sqlx::query_as(
            "SELECT mb.conversation_id, mb.user_id, u.name, mb.role, mb.joined_at, mb.last_read_seq
             FROM members mb JOIN users u ON u.id = mb.user_id
             WHERE mb.conversation_id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_ids(ids))
        .fetch_all(c)
        .await
        .db_context("loading members")
    }

    async fn last_messages(
        c: &mut SqliteConnection,
        last: &[(ConversationId, i64)],
    ) -> Result<Vec<MessageRow>> {
        let last: Vec<(String, i64)> = last.iter().map(|(c, s)| (c.to_string(), *s)).collect();
        sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m
             WHERE (m.conversation_id, m.seq) IN
                   (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))"
        ))
        .bind(json(&last))
        .fetch_all(c)
        .await
        .db_context("loading last messages")
    }

    /// On the single writer connection: holding it is the lock.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin()
            .await
            .db_context("beginning a transaction")
    }

    async fn ensure_users(c: &mut SqliteConnection, users: &[&UserId]) -> Result<()> {
        let ids: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        sqlx::query(
            "INSERT INTO users (id, created_at) SELECT value, ? FROM json_each(?) WHERE true
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(Timestamp::now().millis())
        .bind(json(&ids))
        .execute(c)
        .await
        .db_context("recording users")?;
        Ok(())
    }

    async fn insert_direct(
        c: &mut SqliteConnection,
        id: ConversationId,
        key: &str,
        now: i64,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO conversations (id, kind, direct_key, created_at, last_activity_at)
             VALUES (?1, 'direct', ?2, ?3, ?3)
             ON CONFLICT (direct_key) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(key)
        .bind(now)
        .execute(c)
        .await
        .db_context("creating a direct conversation")?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn find_direct(c: &mut SqliteConnection, key: &str) -> Result<ConversationId> {
        let id: super::rows::DbUuid =
            sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = ?")
                .bind(key)
                .fetch_one(c)
                .await
                .db_context("finding the direct conversation")?;
        Ok(id.into())
    }

    async fn insert_group(
        c: &mut SqliteConnection,
        id: ConversationId,
        title: &ConversationTitle,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO conversations (id, kind, title, created_at, last_activity_at)
             VALUES (?1, 'group', ?2, ?3, ?3)",
        )
        .bind(id.to_string())
        .bind(title.as_str())
        .bind(now)
        .execute(c)
        .await
        .db_context("creating a group")?;
        Ok(())
    }

    async fn insert_members(
        c: &mut SqliteConnection,
        id: ConversationId,
        members: &[(&UserId, Role)],
        now: i64,
    ) -> Result<()> {
        let members: Vec<(&str, &str)> = members
            .iter()
            .map(|(u, r)| (u.as_str(), r.as_str()))
            .collect();
        sqlx::query(
            "INSERT INTO members (conversation_id, user_id, role, joined_at)
             SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?3
             FROM json_each(?2) WHERE true
             ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(json(&members))
        .bind(now)
        .execute(c)
        .await
        .db_context("adding members")?;
        Ok(())
    }

    async fn remove_members(
        c: &mut SqliteConnection,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM members
             WHERE conversation_id = ? AND user_id IN (SELECT value FROM json_each(?))",
        )
        .bind(id.to_string())
        .bind(json_users(users))
        .execute(c)
        .await
        .db_context("removing members")?;
        Ok(())
    }

    async fn set_role(
        c: &mut SqliteConnection,
        id: ConversationId,
        user: &UserId,
        role: Role,
    ) -> Result<()> {
        sqlx::query("UPDATE members SET role = ? WHERE conversation_id = ? AND user_id = ?")
            .bind(role.as_str())
            .bind(id.to_string())
            .bind(user.as_str())
            .execute(c)
            .await
            .db_context("changing a role")?;
        Ok(())
    }

    async fn record_departures(
        c: &mut SqliteConnection,
        id: ConversationId,
        users: &[UserId],
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO departures (conversation_id, user_id, left_at)
             SELECT ?1, value, ?3 FROM json_each(?2) WHERE true
             ON CONFLICT (conversation_id, user_id) DO UPDATE SET left_at = excluded.left_at",
        )
        .bind(id.to_string())
        .bind(json_users(users))
        .bind(now)
        .execute(c)
        .await
        .db_context("recording departures")?;
        Ok(())
    }

    async fn departed(
        c: &mut SqliteConnection,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<Vec<UserId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM departures
             WHERE conversation_id = ? AND user_id IN (SELECT value FROM json_each(?))",
        )
        .bind(id.to_string())
        .bind(json_users(users))
        .fetch_all(c)
        .await
        .db_context("loading departures")?;
        Ok(ids.iter().map(|u| UserId::from_db(u)).collect())
    }

    /// `lock` needs nothing: the caller holds the single writer.
    async fn load_conversations(
        c: &mut SqliteConnection,
        ids: &[ConversationId],
        _lock: bool,
    ) -> Result<Vec<Conversation>> {
        let rows: Vec<HeadRow> = sqlx::query_as(
            "SELECT id, kind, title, created_at, last_seq FROM conversations
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_ids(ids))
        .fetch_all(&mut *c)
        .await
        .db_context("loading conversations")?;
        let heads = rows
            .into_iter()
            .map(|r| r.into_head(None))
            .collect::<Result<_>>()?;
        complete::<Self>(c, heads).await
    }

    async fn role_of(
        c: &mut SqliteConnection,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM members WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(conversation.to_string())
        .bind(user.as_str())
        .fetch_optional(c)
        .await
        .db_context("checking membership")?;
        role.as_deref().map(super::rows::role).transpose()
    }

    async fn lock_message(
        c: &mut SqliteConnection,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<Option<Message>> {
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.id = ? AND m.conversation_id = ?"
        ))
        .bind(message.to_string())
        .bind(conversation.to_string())
        .fetch_optional(c)
        .await
        .db_context("loading the message")?;
        Ok(row.map(Message::from))
    }

    async fn rewrite_message(
        c: &mut SqliteConnection,
        _conversation: ConversationId,
        message: MessageId,
        rewrite: Rewrite,
        now: i64,
    ) -> Result<Message> {
        let query = match rewrite {
            Rewrite::Edit(body) => sqlx::query_as(concat!(
                "UPDATE messages SET body = ?1, edited_at = ?2, changed_at = ?2 WHERE id = ?3 RETURNING ",
                returned_columns!()
            ))
            .bind(body.into_string())
            .bind(now),
            Rewrite::Delete => sqlx::query_as(concat!(
                "UPDATE messages SET body = NULL, attachments = NULL, deleted_at = ?1, changed_at = ?1 WHERE id = ?2 RETURNING ",
                returned_columns!()
            ))
            .bind(now),
        };
        let row: MessageRow = query
            .bind(message.to_string())
            .fetch_one(c)
            .await
            .db_context("updating the message")?;
        Ok(row.into())
    }

    async fn lock_seqs(
        c: &mut SqliteConnection,
        conversations: &[ConversationId],
    ) -> Result<HashMap<ConversationId, i64>> {
        let rows: Vec<SeqRow> = sqlx::query_as(
            "SELECT id, last_seq FROM conversations WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_ids(conversations))
        .fetch_all(c)
        .await
        .db_context("reading conversations' seq")?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn senders_who_are_members(
        c: &mut SqliteConnection,
        batch: &[NewMessage],
    ) -> Result<HashSet<(ConversationId, UserId)>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT conversation_id, user_id FROM members
             WHERE (conversation_id, user_id) IN
                   (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
        )
        .bind(send_keys(batch))
        .fetch_all(c)
        .await
        .db_context("checking senders' membership")?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn stored_sends(c: &mut SqliteConnection, batch: &[NewMessage]) -> Result<Vec<Message>> {
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m
             WHERE (m.conversation_id, m.sender_id, m.client_id) IN
                   (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                           json_extract(value, '$[2]') FROM json_each(?))"
        ))
        .bind(send_keys(batch))
        .fetch_all(c)
        .await
        .db_context("looking up retried sends")?;
        Ok(messages(rows))
    }

    /// Two statements whatever the batch's size (a batch of 500 costs about what one of 5
    /// does): the insert, which skips non-members and stored idempotency keys, and the move of
    /// each conversation's last seq.
    async fn insert_batch(
        c: &mut SqliteConnection,
        stored: &[&Message],
        last_seqs: &HashMap<ConversationId, i64>,
    ) -> Result<u64> {
        let rows: Vec<_> = stored
            .iter()
            .map(|m| {
                (
                    m.id.to_string(),
                    m.conversation_id.to_string(),
                    m.seq,
                    m.sender_id.as_str(),
                    m.client_id.as_str(),
                    m.body.as_deref(),
                    m.created_at.millis(),
                    encode_attachments(&m.attachments),
                )
            })
            .collect();
        let inserted = sqlx::query(
            "INSERT INTO messages (id, conversation_id, seq, sender_id, client_id, body, created_at, attachments)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                    json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                    json_extract(value, '$[4]'), json_extract(value, '$[5]'),
                    json_extract(value, '$[6]'), json_extract(value, '$[7]')
             FROM json_each(?) AS t
             WHERE EXISTS (SELECT 1 FROM members mb
                           WHERE mb.conversation_id = json_extract(t.value, '$[1]')
                             AND mb.user_id = json_extract(t.value, '$[3]'))
             ON CONFLICT (conversation_id, sender_id, client_id) DO NOTHING",
        )
        .bind(json(&rows))
        .execute(&mut *c)
        .await
        .db_context("inserting messages")?
        .rows_affected();
        if inserted != stored.len() as u64 {
            // The caller rolls back: no need to move the seqs.
            return Ok(inserted);
        }
        let seqs: Vec<(String, i64)> = last_seqs.iter().map(|(c, s)| (c.to_string(), *s)).collect();
        sqlx::query(
            "UPDATE conversations
             SET last_seq = (SELECT json_extract(value, '$[1]') FROM json_each(?1)
                             WHERE json_extract(value, '$[0]') = conversations.id),
                 last_activity_at = ?2
             WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(?1))",
        )
        .bind(json(&seqs))
        .bind(stored[0].created_at.millis())
        .execute(c)
        .await
        .db_context("advancing conversations' seq")?;
        Ok(inserted)
    }

    /// The caller holds the single writer: reading is locking.
    async fn lock_attachments(
        c: &mut SqliteConnection,
        ids: &[AttachmentId],
    ) -> Result<Vec<StoredAttachment>> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let rows: Vec<AttachmentRow> = sqlx::query_as(concat!(
            "SELECT ",
            attachment_columns!(),
            " FROM attachments WHERE id IN (SELECT value FROM json_each(?))"
        ))
        .bind(json(&ids))
        .fetch_all(c)
        .await
        .db_context("locking attachments")?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn claim_attachments(
        c: &mut SqliteConnection,
        claims: &[(AttachmentId, MessageId, ConversationId)],
    ) -> Result<()> {
        let rows: Vec<(String, String, String)> = claims
            .iter()
            .map(|(a, m, c)| (a.to_string(), m.to_string(), c.to_string()))
            .collect();
        sqlx::query(
            "UPDATE attachments
             SET message_id = json_extract(t.value, '$[1]'),
                 conversation_id = json_extract(t.value, '$[2]')
             FROM json_each(?) AS t
             WHERE attachments.id = json_extract(t.value, '$[0]')",
        )
        .bind(json(&rows))
        .execute(c)
        .await
        .db_context("claiming attachments")?;
        Ok(())
    }

    async fn discard_attachments(
        c: &mut SqliteConnection,
        message: MessageId,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE attachments SET deleted_at = ? WHERE message_id = ? AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(message.to_string())
        .execute(c)
        .await
        .db_context("discarding attachments")?;
        Ok(())
    }
}

/// Messages with `after < seq < before`, `limit` of them from the low end if `ascending`, else
/// from the high end (in descending order; the caller reverses).
async fn read_range(
    conn: &mut SqliteConnection,
    conversation: ConversationId,
    after: i64,
    before: i64,
    ascending: bool,
    limit: u32,
) -> Result<Vec<Message>> {
    macro_rules! range {
        ($order:literal) => {
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m
                 WHERE m.conversation_id = ? AND m.seq > ? AND m.seq < ?
                 ORDER BY m.seq ",
                $order,
                " LIMIT ?"
            )
        };
    }
    let sql = if ascending {
        range!("ASC")
    } else {
        range!("DESC")
    };
    let rows: Vec<MessageRow> = sqlx::query_as(sql)
        .bind(conversation.to_string())
        .bind(after)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
        .db_context("reading messages")?;
    Ok(messages(rows))
}

/// A list as JSON, for `json_each(?)`.
fn json(values: &impl serde::Serialize) -> String {
    serde_json::to_string(values).expect("plain values serialise")
}

fn json_ids(ids: &[ConversationId]) -> String {
    json(
        &ids.iter()
            .map(ConversationId::to_string)
            .collect::<Vec<_>>(),
    )
}

fn json_users(users: &[UserId]) -> String {
    json(&users.iter().map(UserId::as_str).collect::<Vec<_>>())
}

/// `[conversation, sender, client id]` per message of a batch.
fn send_keys(batch: &[NewMessage]) -> String {
    json(
        &batch
            .iter()
            .map(|m| {
                (
                    m.conversation_id.to_string(),
                    m.sender_id.as_str(),
                    m.client_id.as_str(),
                )
            })
            .collect::<Vec<_>>(),
    )
}
