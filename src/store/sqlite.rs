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
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::assemble::{ConversationHead, page_from_rows, sync_update};
use super::checkpoint::{self, Checkpointer};
use super::rows::{
    AttachmentRow, HeadRow, LastSeenRow, MemberRow, MembershipRow, MessageRow, OwnHeadRow, SeqRow,
    StoredAttachment, attachment_columns, encode_attachments, messages, sender_column,
};
use super::transactions::{Backend, Rewrite, complete};
use super::{
    DbContext, HistoryQuery, NewMessage, OutboxEvent, OutboxRow, OutboxSettle, Page, SyncUpdate,
};
use crate::domain::{
    Attachment, AttachmentId, Ban, Conversation, ConversationId, ConversationKind,
    ConversationTitle, DisplayName, MEMBERS_PAGE, Member, MemberCursor, Message, MessageId, Role,
    SearchQuery, Timestamp, UserId, is_large,
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
    /// Copies the log back into the database file, so the writer doesn't (None in memory).
    _checkpointer: Option<Arc<Checkpointer>>,
    /// Webhooks on: signalled after a commit that recorded outbox events.
    pub(crate) outbox: Option<Arc<tokio::sync::Notify>>,
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
        let in_memory = options.get_filename() == Path::new(":memory:");
        if !file.exists() && !in_memory {
            tracing::warn!(path = %file.display(), "no database there: creating a new, empty one");
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(
                options
                    .clone()
                    // The checkpointer does that, off the commits (see checkpoint.rs).
                    .pragma("wal_autocheckpoint", "0")
                    // After the log starts over, a file grown in a burst is cut to 64 MiB.
                    .pragma("journal_size_limit", (64 * 1024 * 1024).to_string()),
            )
            .await
            .context("opening the database")?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .context("running migrations")?;
        let readers = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone().read_only(true))
            .await
            .context("opening read connections")?;
        let checkpointer = if in_memory {
            None
        } else {
            let connection = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .context("opening the checkpoint connection")?;
            Some(Arc::new(checkpoint::start(connection, writer.clone())))
        };
        Ok(Self {
            writer,
            readers,
            _checkpointer: checkpointer,
            outbox: None,
        })
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
    ) -> Result<Vec<(ConversationId, i64)>> {
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

    pub async fn memberships(&self, user: &UserId) -> Result<Vec<(ConversationId, i64)>> {
        let rows: Vec<(super::rows::DbUuid, i64)> = sqlx::query_as(
            "SELECT mb.conversation_id, c.member_count
             FROM members mb JOIN conversations c ON c.id = mb.conversation_id
             WHERE mb.user_id = ?",
        )
        .bind(user.as_str())
        .fetch_all(&self.readers)
        .await
        .db_context("loading memberships")?;
        Ok(rows.into_iter().map(|(id, n)| (id.into(), n)).collect())
    }

    pub async fn member_ids(&self, conversation: ConversationId) -> Result<Vec<UserId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = ?")
                .bind(conversation.to_string())
                .fetch_all(&self.readers)
                .await
                .db_context("loading members")?;
        Ok(ids.iter().map(|u| UserId::from_db(u)).collect())
    }

    /// See [`Store::members_page`](super::Store::members_page).
    pub async fn members_page(
        &self,
        conversation: ConversationId,
        viewer: &UserId,
        after: Option<&MemberCursor>,
        limit: usize,
    ) -> Result<Option<(Vec<Member>, i64)>> {
        // One read transaction: the membership check, the count and the page see one snapshot.
        let mut tx = self.readers.begin().await.db_context("beginning a read")?;
        let count: Option<i64> = sqlx::query_scalar(
            "SELECT c.member_count FROM conversations c
             JOIN members mb ON mb.conversation_id = c.id AND mb.user_id = ?2
             WHERE c.id = ?1",
        )
        .bind(conversation.to_string())
        .bind(viewer.as_str())
        .fetch_optional(&mut *tx)
        .await
        .db_context("checking membership")?;
        let Some(count) = count else {
            return Ok(None);
        };
        let rows = page_of_members(&mut tx, conversation, after, limit).await?;
        tx.commit().await.db_context("ending a read")?;
        let members = rows
            .into_iter()
            .map(|r| r.into_member().map(|(_, m)| m))
            .collect::<Result<_>>()?;
        Ok(Some((members, count)))
    }

    pub async fn memberships_of(&self, users: &[UserId]) -> Result<Vec<(ConversationId, UserId)>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT conversation_id, user_id FROM members
             WHERE user_id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_users(users))
        .fetch_all(&self.readers)
        .await
        .db_context("loading memberships")?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn banned_among(
        &self,
        users: &[UserId],
        now: Timestamp,
    ) -> Result<Vec<(UserId, Option<Timestamp>, bool)>> {
        let rows: Vec<(String, Option<i64>, bool)> = sqlx::query_as(
            "SELECT b.user_id, b.until, u.erased_at IS NOT NULL
             FROM bans b JOIN users u ON u.id = b.user_id
             WHERE b.user_id IN (SELECT value FROM json_each(?)) AND (b.until IS NULL OR b.until > ?)",
        )
        .bind(json_users(users))
        .bind(now.millis())
        .fetch_all(&self.readers)
        .await
        .db_context("checking bans")?;
        Ok(rows
            .into_iter()
            .map(|(u, until, erased)| (UserId::from_db(&u), until.map(Timestamp), erased))
            .collect())
    }

    pub async fn conversations_of(&self, user: &UserId) -> Result<Vec<Conversation>> {
        let mut conn = self.readers.acquire().await.db_context("acquiring")?;
        let rows: Vec<OwnHeadRow> = sqlx::query_as(
            "SELECT c.id, c.kind, c.title, c.created_at, c.last_seq, c.member_count,
                    mb.last_read_seq,
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
        complete::<Self>(&mut conn, heads, Some(MEMBERS_PAGE)).await
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
                 WHERE a.user_id = ?1 AND b.user_id = u.id)
             AND NOT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = u.id AND blocked_id = ?1)",
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

// The host app's side (server API, moderation, webhooks).
impl SqliteStore {
    pub async fn ban(&self, ban: &Ban) -> Result<()> {
        sqlx::query(
            "INSERT INTO bans (user_id, until, reason, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id) DO UPDATE
             SET until = excluded.until, reason = excluded.reason, created_at = excluded.created_at",
        )
        .bind(ban.user_id.as_str())
        .bind(ban.until.map(Timestamp::millis))
        .bind(ban.reason.as_deref())
        .bind(Timestamp::now().millis())
        .execute(&self.writer)
        .await
        .db_context("banning a user")?;
        Ok(())
    }

    pub async fn unban(&self, user: &UserId) -> Result<bool> {
        let removed = sqlx::query("DELETE FROM bans WHERE user_id = ?")
            .bind(user.as_str())
            .execute(&self.writer)
            .await
            .db_context("unbanning a user")?
            .rows_affected();
        Ok(removed > 0)
    }

    pub async fn ban_of(&self, user: &UserId, now: Timestamp) -> Result<Option<Ban>> {
        let row: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT until, reason FROM bans WHERE user_id = ? AND (until IS NULL OR until > ?)",
        )
        .bind(user.as_str())
        .bind(now.millis())
        .fetch_optional(&self.readers)
        .await
        .db_context("checking bans")?;
        Ok(row.map(|(until, reason)| Ban {
            user_id: user.clone(),
            until: until.map(Timestamp),
            reason,
        }))
    }

    /// See `PgStore::erase_user`.
    pub async fn erase_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<Message>> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, created_at, erased_at) VALUES (?1, ?2, ?2)
             ON CONFLICT (id) DO UPDATE SET name = NULL, erased_at = coalesce(users.erased_at, ?2)",
        )
        .bind(user.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .db_context("erasing a user")?;
        sqlx::query(
            "INSERT INTO bans (user_id, until, reason, created_at) VALUES (?1, NULL, 'erased', ?2)
             ON CONFLICT (user_id) DO UPDATE SET until = NULL, reason = 'erased'",
        )
        .bind(user.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .db_context("banning an erased user")?;
        // Her direct conversations keep their history for the other member, but no longer
        // stand for the pair: should the id come back (an unban), a new one is opened,
        // rather than handing her one she is no longer a member of.
        sqlx::query(
            "UPDATE conversations SET direct_key = NULL
             WHERE kind = 'direct'
               AND id IN (SELECT conversation_id FROM members WHERE user_id = ?1)",
        )
        .bind(user.as_str())
        .execute(&mut *tx)
        .await
        .db_context("releasing an erased user's direct conversations")?;
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "UPDATE messages SET body = NULL, attachments = NULL, deleted_at = ?2, changed_at = ?2
             WHERE sender_id = ?1 AND deleted_at IS NULL RETURNING ",
            returned_columns!()
        ))
        .bind(user.as_str())
        .bind(now.millis())
        .fetch_all(&mut *tx)
        .await
        .db_context("deleting an erased user's messages")?;
        // Their files go too, sent or not: no longer served, the sweeper deletes the bytes.
        sqlx::query(
            "UPDATE attachments SET deleted_at = ?2 WHERE uploader_id = ?1 AND deleted_at IS NULL",
        )
        .bind(user.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .db_context("deleting an erased user's attachments")?;
        // Webhook events not yet delivered (or given up) would still carry the words erased
        // above: they go too. (Delivered ones are deleted when sent.)
        sqlx::query(
            "DELETE FROM webhook_outbox WHERE type = 'message.created' AND json_extract(data, '$.message.sender_id') = ?1",
        )
        .bind(user.as_str())
        .execute(&mut *tx)
        .await
        .db_context("deleting an erased user's webhook events")?;
        tx.commit().await.db_context("committing an erasure")?;
        Ok(messages(rows))
    }

    /// See `PgStore::set_block`.
    pub async fn set_block(&self, blocker: &UserId, blocked: &UserId, on: bool) -> Result<()> {
        let done = if on {
            sqlx::query(
                "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(blocker.as_str())
            .bind(blocked.as_str())
            .bind(Timestamp::now().millis())
            .execute(&self.writer)
            .await
        } else {
            sqlx::query("DELETE FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2")
                .bind(blocker.as_str())
                .bind(blocked.as_str())
                .execute(&self.writer)
                .await
        };
        done.db_context("recording a block")?;
        Ok(())
    }

    pub async fn is_blocked(&self, blocker: &UserId, blocked: &UserId) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = ? AND blocked_id = ?)",
        )
        .bind(blocker.as_str())
        .bind(blocked.as_str())
        .fetch_one(&self.readers)
        .await
        .db_context("checking a block")
    }

    /// See `PgStore::claim_outbox`: here the single writer connection keeps claims apart.
    pub async fn claim_outbox(
        &self,
        now: i64,
        settled_before: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        sqlx::query_as(
            "UPDATE webhook_outbox SET locked_until = ?2
             WHERE id IN (SELECT id FROM webhook_outbox
                          WHERE failed_at IS NULL AND next_attempt_at <= ?1
                            AND (locked_until IS NULL OR locked_until <= ?1)
                            AND (resolved OR created_at <= ?4)
                          ORDER BY next_attempt_at LIMIT ?3)
             RETURNING id, type, data, resolved, created_at, attempts",
        )
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .bind(settled_before)
        .fetch_all(&self.writer)
        .await
        .db_context("claiming webhook events")
    }

    pub async fn resolve_outbox(&self, id: uuid::Uuid, data: Option<&str>) -> Result<()> {
        let query = match data {
            Some(data) => {
                sqlx::query("UPDATE webhook_outbox SET data = ?2, resolved = 1 WHERE id = ?1")
                    .bind(id.to_string())
                    .bind(data)
            }
            None => sqlx::query("DELETE FROM webhook_outbox WHERE id = ?1").bind(id.to_string()),
        };
        query
            .execute(&self.writer)
            .await
            .db_context("resolving a webhook event")?;
        Ok(())
    }

    pub async fn settle_outbox(
        &self,
        id: uuid::Uuid,
        settle: &OutboxSettle,
        now: i64,
    ) -> Result<()> {
        let id = id.to_string();
        let query = match settle {
            OutboxSettle::Done => sqlx::query("DELETE FROM webhook_outbox WHERE id = ?1").bind(id),
            OutboxSettle::Retry { at, error } => sqlx::query(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?2,
                     locked_until = NULL, last_error = ?3
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(*at)
            .bind(error.as_str()),
            OutboxSettle::Failed { error } => sqlx::query(
                "UPDATE webhook_outbox SET attempts = attempts + 1, failed_at = ?2,
                     locked_until = NULL, last_error = ?3
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(now)
            .bind(error.as_str()),
        };
        query
            .execute(&self.writer)
            .await
            .db_context("settling a webhook event")?;
        Ok(())
    }

    pub async fn outbox_depth(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM webhook_outbox WHERE failed_at IS NULL")
            .fetch_one(&self.readers)
            .await
            .db_context("counting webhook events")
    }

    pub async fn kind_and_members(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<(ConversationKind, i64, Vec<UserId>)>> {
        let head: Option<(String, i64)> =
            sqlx::query_as("SELECT kind, member_count FROM conversations WHERE id = ?")
                .bind(conversation.to_string())
                .fetch_optional(&self.readers)
                .await
                .db_context("loading a conversation's kind")?;
        let Some((kind, count)) = head else {
            return Ok(None);
        };
        let Some(kind) = ConversationKind::from_db(&kind) else {
            return Ok(None);
        };
        if is_large(count) {
            return Ok(Some((kind, count, Vec::new())));
        }
        let members: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = ?")
                .bind(conversation.to_string())
                .fetch_all(&self.readers)
                .await
                .db_context("loading members")?;
        Ok(Some((
            kind,
            count,
            members.iter().map(|u| UserId::from_db(u)).collect(),
        )))
    }

    pub async fn blocked_by(&self, blocker: &UserId) -> Result<Vec<UserId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT blocked_id FROM blocks WHERE blocker_id = ?")
                .bind(blocker.as_str())
                .fetch_all(&self.readers)
                .await
                .db_context("loading blocks")?;
        Ok(ids.iter().map(|u| UserId::from_db(u)).collect())
    }
}
/// The most conversations a search is narrowed to inside the index (see `search`).
const SEARCH_NARROWED_MAX: usize = 500;

/// A conversation as the search index holds it: one token, `c` and the id's hex digits (the
/// `unicode61` tokenizer would split a UUID at its dashes). Migration 0009's triggers write the
/// same.
fn conversation_token(id: &str) -> String {
    let mut token = String::with_capacity(33);
    token.push('c');
    token.extend(id.chars().filter(|c| *c != '-'));
    token
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
        // Two things keep a search from reading every match of a common word (migration 0009):
        // - the index is read newest first (its rowids are the messages' order) and stops at a
        //   page;
        // - it is narrowed to the caller's conversations inside the index (each message's
        //   conversation is a token there), so a word common elsewhere and absent here costs
        //   little too. A caller in very many conversations gets no narrowing (the filter would
        //   cost more than it saves), only the membership check below, which always applies.
        let conversations: Vec<String> = match conversation {
            Some(c) => vec![c.to_string()],
            None => sqlx::query_scalar("SELECT conversation_id FROM members WHERE user_id = ?")
                .bind(user.as_str())
                .fetch_all(&self.readers)
                .await
                .db_context("loading a user's conversations")?,
        };
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let mut expression = format!("body : ({})", query.fts5());
        if conversations.len() <= SEARCH_NARROWED_MAX {
            let tokens: Vec<String> = conversations
                .iter()
                .map(|c| conversation_token(c))
                .collect();
            expression.push_str(&format!(" AND conversation : ({})", tokens.join(" OR ")));
        }
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages_fts f
             JOIN message_search_ids s ON s.rowid = f.rowid
             JOIN messages m ON m.id = s.message_id
             WHERE messages_fts MATCH ?1
               AND (?4 IS NULL OR f.rowid < (SELECT rowid FROM message_search_ids
                                            WHERE message_id = ?4))
               AND m.conversation_id IN (SELECT conversation_id FROM members
                                         WHERE user_id = ?2 AND (?3 IS NULL OR conversation_id = ?3))
               AND m.deleted_at IS NULL
             ORDER BY f.rowid DESC LIMIT ?5"
        ))
        .bind(expression)
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

    async fn members(
        c: &mut SqliteConnection,
        ids: &[ConversationId],
        first: Option<usize>,
    ) -> Result<Vec<MemberRow>> {
        if let Some(first) = first {
            // In-process, a short index scan per conversation costs microseconds.
            let mut rows = Vec::new();
            for id in ids {
                rows.extend(page_of_members(c, *id, None, first).await?);
            }
            return Ok(rows);
        }
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
        let added = sqlx::query(
            "INSERT INTO members (conversation_id, user_id, role, joined_at)
             SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?3
             FROM json_each(?2) WHERE true
             ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(json(&members))
        .bind(now)
        .execute(&mut *c)
        .await
        .db_context("adding members")?
        .rows_affected();
        count_members(c, id, added as i64).await
    }

    async fn remove_members(
        c: &mut SqliteConnection,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<()> {
        let removed = sqlx::query(
            "DELETE FROM members
             WHERE conversation_id = ? AND user_id IN (SELECT value FROM json_each(?))",
        )
        .bind(id.to_string())
        .bind(json_users(users))
        .execute(&mut *c)
        .await
        .db_context("removing members")?
        .rows_affected();
        count_members(c, id, -(removed as i64)).await
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
    async fn head(
        c: &mut SqliteConnection,
        id: ConversationId,
        _lock: bool,
    ) -> Result<Option<ConversationHead>> {
        let row: Option<HeadRow> = sqlx::query_as(
            "SELECT id, kind, title, created_at, last_seq, member_count FROM conversations
             WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(c)
        .await
        .db_context("loading a conversation")?;
        row.map(|r| r.into_head(None)).transpose()
    }

    async fn members_named(
        c: &mut SqliteConnection,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<Vec<MemberRow>> {
        sqlx::query_as(
            "SELECT mb.conversation_id, mb.user_id, u.name, mb.role, mb.joined_at, mb.last_read_seq
             FROM members mb JOIN users u ON u.id = mb.user_id
             WHERE mb.conversation_id = ? AND mb.user_id IN (SELECT value FROM json_each(?))",
        )
        .bind(id.to_string())
        .bind(json_users(users))
        .fetch_all(c)
        .await
        .db_context("loading members")
    }

    /// `lock` needs nothing: the caller holds the single writer.
    async fn load_conversations(
        c: &mut SqliteConnection,
        ids: &[ConversationId],
        _lock: bool,
    ) -> Result<Vec<Conversation>> {
        let rows: Vec<HeadRow> = sqlx::query_as(
            "SELECT id, kind, title, created_at, last_seq, member_count FROM conversations
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
        complete::<Self>(c, heads, None).await
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
                    sender_column(m.sender_id.as_ref()),
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
             WHERE (json_extract(t.value, '$[3]') = ''
                    OR EXISTS (SELECT 1 FROM members mb
                               WHERE mb.conversation_id = json_extract(t.value, '$[1]')
                                 AND mb.user_id = json_extract(t.value, '$[3]')))
               AND NOT EXISTS (SELECT 1 FROM blocks b
                               JOIN members o ON o.conversation_id = json_extract(t.value, '$[1]')
                                             AND o.user_id = b.blocker_id
                               JOIN conversations cv ON cv.id = json_extract(t.value, '$[1]')
                                                    AND cv.kind = 'direct'
                               WHERE b.blocked_id = json_extract(t.value, '$[3]'))
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

    // The host app's side (server API, moderation, webhooks).

    async fn find_external(
        c: &mut SqliteConnection,
        external_id: &str,
    ) -> Result<Option<ConversationId>> {
        let id: Option<super::rows::DbUuid> =
            sqlx::query_scalar("SELECT conversation_id FROM external_ids WHERE external_id = ?")
                .bind(external_id)
                .fetch_optional(c)
                .await
                .db_context("finding an external id")?;
        Ok(id.map(Into::into))
    }

    async fn insert_external(
        c: &mut SqliteConnection,
        external_id: &str,
        id: ConversationId,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO external_ids (external_id, conversation_id) VALUES (?, ?)
             ON CONFLICT (external_id) DO NOTHING",
        )
        .bind(external_id)
        .bind(id.to_string())
        .execute(c)
        .await
        .db_context("recording an external id")?
        .rows_affected();
        Ok(inserted == 1)
    }

    fn outbox(&self) -> Option<&tokio::sync::Notify> {
        self.outbox.as_deref()
    }

    async fn insert_outbox(c: &mut SqliteConnection, events: &[OutboxEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.id.to_string(),
                    e.kind,
                    e.data.as_str(),
                    e.resolved,
                    e.created_at,
                )
            })
            .collect();
        sqlx::query(
            "INSERT INTO webhook_outbox (id, type, data, resolved, created_at, next_attempt_at)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                    json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                    json_extract(value, '$[4]'), json_extract(value, '$[4]')
             FROM json_each(?)",
        )
        .bind(json(&rows))
        .execute(c)
        .await
        .db_context("recording webhook events")?;
        Ok(())
    }

    async fn blocked_senders(
        c: &mut SqliteConnection,
        batch: &[NewMessage],
    ) -> Result<HashSet<(ConversationId, UserId)>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT DISTINCT json_extract(k.value, '$[0]') AS conversation_id,
                    json_extract(k.value, '$[1]') AS user_id
             FROM json_each(?) AS k
             JOIN blocks b ON b.blocked_id = json_extract(k.value, '$[1]')
             JOIN members o ON o.conversation_id = json_extract(k.value, '$[0]')
                           AND o.user_id = b.blocker_id
             JOIN conversations cv ON cv.id = json_extract(k.value, '$[0]') AND cv.kind = 'direct'",
        )
        .bind(send_keys(batch))
        .fetch_all(c)
        .await
        .db_context("checking blocked senders")?;
        Ok(rows.into_iter().map(Into::into).collect())
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
                    sender_column(m.sender_id.as_ref()),
                    m.client_id.as_str(),
                )
            })
            .collect::<Vec<_>>(),
    )
}

/// Up to `limit` members of `conversation` after `after` (from the start without), in member
/// order, as range scans of the `members_in_order` index (whose expression this repeats).
/// SQLite seeks a row value only on plain columns after the equalities, so the walk is two
/// seeks: the rest of the cursor's role, then the roles after it. (A single row-value
/// comparison starting at the role would filter every member before the cursor.)
async fn page_of_members(
    c: &mut SqliteConnection,
    conversation: ConversationId,
    after: Option<&MemberCursor>,
    limit: usize,
) -> Result<Vec<MemberRow>> {
    let (rank, joined_at, user) = match after {
        Some(a) => (a.rank, a.joined_at, a.user_id.as_str()),
        None => (-1, i64::MIN, ""),
    };
    let mut rows: Vec<MemberRow> = sqlx::query_as(
        "SELECT mb.conversation_id, mb.user_id, u.name, mb.role, mb.joined_at, mb.last_read_seq
         FROM members mb JOIN users u ON u.id = mb.user_id
         WHERE mb.conversation_id = ?1
           AND (CASE mb.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END) = ?2
           AND (mb.joined_at, mb.user_id) > (?3, ?4)
         ORDER BY mb.joined_at, mb.user_id
         LIMIT ?5",
    )
    .bind(conversation.to_string())
    .bind(rank)
    .bind(joined_at)
    .bind(user)
    .bind(limit as i64)
    .fetch_all(&mut *c)
    .await
    .db_context("loading a page of members")?;
    if rows.len() < limit {
        let rest: Vec<MemberRow> = sqlx::query_as(
            "SELECT mb.conversation_id, mb.user_id, u.name, mb.role, mb.joined_at, mb.last_read_seq
             FROM members mb JOIN users u ON u.id = mb.user_id
             WHERE mb.conversation_id = ?1
               AND (CASE mb.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END) > ?2
             ORDER BY (CASE mb.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END),
                      mb.joined_at, mb.user_id
             LIMIT ?3",
        )
        .bind(conversation.to_string())
        .bind(rank)
        .bind((limit - rows.len()) as i64)
        .fetch_all(&mut *c)
        .await
        .db_context("loading a page of members")?;
        rows.extend(rest);
    }
    Ok(rows)
}

/// Moves a conversation's `member_count` by `delta` (in the writer's transaction).
async fn count_members(c: &mut SqliteConnection, id: ConversationId, delta: i64) -> Result<()> {
    if delta != 0 {
        sqlx::query("UPDATE conversations SET member_count = member_count + ? WHERE id = ?")
            .bind(delta)
            .bind(id.to_string())
            .execute(c)
            .await
            .db_context("counting members")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer never checkpoints on its own, so if the checkpointer stopped doing it (or never
    /// made the log start over), the log would grow by everything written. Written here: four
    /// times the size cap, at a steady pace, while the log is watched.
    #[tokio::test]
    async fn the_log_stays_bounded_while_the_writer_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()), 2)
            .await
            .unwrap();
        let wal = dir.path().join("chat.db-wal");
        sqlx::query("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
            .execute(&store.writer)
            .await
            .unwrap();
        const CAP: u64 = 64 * 1024 * 1024;
        let chunk = vec![7u8; 64 * 1024];
        let mut largest = 0;
        // 256 MiB in transactions of 1 MiB.
        for _ in 0..256 {
            let mut tx = store.writer.begin().await.unwrap();
            for _ in 0..16 {
                sqlx::query("INSERT INTO blobs (data) VALUES (?)")
                    .bind(&chunk)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            // About 64 MiB/s: the pace of a busy chat is far lower; this is the burst case.
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        assert!(
            largest < CAP,
            "the log reached {largest} bytes, past {CAP}: checkpoints aren't keeping up or the log never starts over"
        );
        // And the database is whole: everything written is there.
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM blobs")
            .fetch_one(&store.readers)
            .await
            .unwrap();
        assert_eq!(rows, 256 * 16);
    }
}
