//! The PostgreSQL backend.
//!
//! Lists of values travel as arrays (`UNNEST($1::uuid[], …)`) so that a batch or a set of
//! conversations costs one round trip, not one per item. Concurrent writers (several nodes,
//! several writer shards) are kept apart by row locks on the conversation: message batches,
//! membership changes and edits take `FOR UPDATE` on the rows they change.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::assemble::{ConversationHead, page_from_rows, sync_update};
use super::rows::{
    AttachmentRow, HeadRow, LastSeenRow, MemberRow, MembershipRow, MessageRow, OwnHeadRow, SeqRow,
    StoredAttachment, attachment_columns, encode_attachments, message_columns, messages,
    sender_column,
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

/// A member's place in member order by role (`domain::role_rank`): the expression the
/// `members_in_order` index is built on, so that ordering and paging use it.
macro_rules! member_rank {
    () => {
        "(CASE mb.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END)"
    };
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Webhooks on: signalled after a commit that recorded outbox events.
    pub(crate) outbox: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// The search statement, with the text search configuration written into it: the GIN
    /// index is on an expression with that configuration, which the planner matches only
    /// against the same constant.
    search_sql: SearchSql,
}

/// How long the first connection may take before the start fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens one connection first, so that a start that can't reach the database says what
/// failed, and where (the pool would only say "timed out", or quote the server's source line),
/// and never shows the password.
async fn probe(options: &PgConnectOptions) -> anyhow::Result<()> {
    use sqlx::Connection;
    let place = format!(
        "PostgreSQL at {}:{} (database {:?}, user {:?})",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username()),
        options.get_username(),
    );
    let error = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        sqlx::PgConnection::connect_with(options),
    )
    .await
    {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Ok(Err(e)) => e,
        Err(_) => anyhow::bail!(
            "{place}: no answer within {}s (is the host reachable, and the port right?)",
            CONNECT_TIMEOUT.as_secs()
        ),
    };
    let what = match &error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is PostgreSQL running, and listening on that address and port?)"
                .to_owned()
        }
        sqlx::Error::Io(io) => format!("can't connect: {io}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => {
                "the database does not exist (create it, for example with `createdb`)".to_owned()
            }
            Some("28P01" | "28000") => format!("the server refused the user: {}", db.message()),
            _ => format!("the server refused the connection: {}", db.message()),
        },
        other => other.to_string(),
    };
    anyhow::bail!("{place}: {what}")
}

impl PgStore {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        search_language: &str,
    ) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url).context("parsing the PostgreSQL url")?;
        probe(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // A request waiting this long for a connection is better answered `unavailable`.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .context("opening the PostgreSQL connection pool")?;
        // The migrator takes an advisory lock, so nodes starting together migrate once.
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .context("migrating the PostgreSQL database")?;
        let search_sql = search_index(&pool, search_language).await?;
        Ok(Self {
            pool,
            outbox: None,
            search_sql,
        })
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .db_context("pinging the database")?;
        Ok(())
    }

    pub async fn touch_user(
        &self,
        user: &UserId,
        name: Option<&DisplayName>,
    ) -> Result<Vec<(ConversationId, i64)>> {
        // Insert-if-new and update-if-renamed are separate CTEs so that the common case (known
        // user, same name) writes nothing and takes no row lock.
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "WITH ins AS (
                 INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING
             ), upd AS (
                 UPDATE users SET name = $2
                 WHERE id = $1 AND $2::text IS NOT NULL AND name IS DISTINCT FROM $2
             )
             SELECT mb.conversation_id, c.member_count::bigint
             FROM members mb JOIN conversations c ON c.id = mb.conversation_id
             WHERE mb.user_id = $1",
        )
        .bind(user.as_str())
        .bind(name.map(DisplayName::as_str))
        .bind(Timestamp::now().millis())
        .fetch_all(&self.pool)
        .await
        .db_context("recording the user and loading memberships")?;
        Ok(rows
            .into_iter()
            .map(|(id, n)| (ConversationId(id), n))
            .collect())
    }

    pub async fn remember_user(&self, user: &UserId, name: Option<&DisplayName>) -> Result<()> {
        // As in `touch_user`: a known user with an unchanged name costs no write.
        sqlx::query(
            "WITH ins AS (
                 INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING
             )
             UPDATE users SET name = $2
             WHERE id = $1 AND $2::text IS NOT NULL AND name IS DISTINCT FROM $2",
        )
        .bind(user.as_str())
        .bind(name.map(DisplayName::as_str))
        .bind(Timestamp::now().millis())
        .execute(&self.pool)
        .await
        .db_context("recording the user")?;
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
             WHERE conversation_id = $1 AND seq > $2 AND deleted_at IS NULL AND sender_id <> $3",
        )
        .bind(conversation.0)
        .bind(after)
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await
        .db_context("counting unread messages")
    }

    pub async fn memberships(&self, user: &UserId) -> Result<Vec<(ConversationId, i64)>> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT mb.conversation_id, c.member_count::bigint
             FROM members mb JOIN conversations c ON c.id = mb.conversation_id
             WHERE mb.user_id = $1",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .db_context("loading memberships")?;
        Ok(rows
            .into_iter()
            .map(|(id, n)| (ConversationId(id), n))
            .collect())
    }

    pub async fn member_ids(&self, conversation: ConversationId) -> Result<Vec<UserId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = $1")
                .bind(conversation.0)
                .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await.db_context("beginning a read")?;
        // Whether the viewer is a member, and the count, as of the page's snapshot.
        let count: Option<i32> = sqlx::query_scalar(
            "SELECT c.member_count FROM conversations c
             JOIN members mb ON mb.conversation_id = c.id AND mb.user_id = $2
             WHERE c.id = $1",
        )
        .bind(conversation.0)
        .bind(viewer.as_str())
        .fetch_optional(&mut *tx)
        .await
        .db_context("checking membership")?;
        let Some(count) = count else {
            return Ok(None);
        };
        let (rank, joined_at, user) = match after {
            Some(a) => (a.rank, a.joined_at, a.user_id.as_str()),
            None => (-1, i64::MIN, ""),
        };
        let rows: Vec<MemberRow> =
            sqlx::query_as(concat!(
            "SELECT mb.conversation_id, mb.user_id, u.name, mb.role, mb.joined_at, mb.last_read_seq
             FROM members mb JOIN users u ON u.id = mb.user_id
             WHERE mb.conversation_id = $1
               AND (", member_rank!(), ", mb.joined_at, mb.user_id COLLATE \"C\")
                   > ($2::int, $3::bigint, $4::text COLLATE \"C\")
             ORDER BY ", member_rank!(), ", mb.joined_at, mb.user_id COLLATE \"C\"
             LIMIT $5"
        ))
            .bind(conversation.0)
            .bind(rank as i32)
            .bind(joined_at)
            .bind(user)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await
            .db_context("loading a page of members")?;
        tx.commit().await.db_context("ending a read")?;
        let members = rows
            .into_iter()
            .map(|r| r.into_member().map(|(_, m)| m))
            .collect::<Result<_>>()?;
        Ok(Some((members, i64::from(count))))
    }

    pub async fn memberships_of(&self, users: &[UserId]) -> Result<Vec<(ConversationId, UserId)>> {
        let rows: Vec<MembershipRow> =
            sqlx::query_as("SELECT conversation_id, user_id FROM members WHERE user_id = ANY($1)")
                .bind(user_strs(users))
                .fetch_all(&self.pool)
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
             WHERE b.user_id = ANY($1) AND (b.until IS NULL OR b.until > $2)",
        )
        .bind(user_strs(users))
        .bind(now.millis())
        .fetch_all(&self.pool)
        .await
        .db_context("checking bans")?;
        Ok(rows
            .into_iter()
            .map(|(u, until, erased)| (UserId::from_db(&u), until.map(Timestamp), erased))
            .collect())
    }

    pub async fn conversations_of(&self, user: &UserId) -> Result<Vec<Conversation>> {
        let mut conn = self.pool.acquire().await.db_context("acquiring")?;
        let rows: Vec<OwnHeadRow> = sqlx::query_as(
            "SELECT c.id, c.kind, c.title, c.created_at, c.last_seq,
                    c.member_count::bigint AS member_count, mb.last_read_seq,
                    (SELECT count(*) FROM messages m
                     WHERE m.conversation_id = c.id AND m.seq > mb.last_read_seq
                       AND m.deleted_at IS NULL AND m.sender_id <> mb.user_id) AS unread_count
             FROM members mb JOIN conversations c ON c.id = mb.conversation_id
             WHERE mb.user_id = $1
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
            "UPDATE members mb SET last_read_seq = LEAST($3, c.last_seq)
             FROM conversations c
             WHERE c.id = mb.conversation_id AND mb.conversation_id = $1 AND mb.user_id = $2
               AND mb.last_read_seq < LEAST($3, c.last_seq)
             RETURNING mb.last_read_seq",
        )
        .bind(conversation.0)
        .bind(user.as_str())
        .bind(seq)
        .fetch_optional(&self.pool)
        .await
        .db_context("marking read")?;
        if let Some(mark) = moved {
            return Ok(Some((mark, true)));
        }
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT last_read_seq FROM members WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation.0)
        .bind(user.as_str())
        .fetch_optional(&self.pool)
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
             WHERE u.id = ANY($2) AND EXISTS (
                 SELECT 1 FROM members a JOIN members b ON b.conversation_id = a.conversation_id
                 WHERE a.user_id = $1 AND b.user_id = u.id)
             AND NOT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = u.id AND blocked_id = $1)",
        )
        .bind(viewer.as_str())
        .bind(user_strs(users))
        .fetch_all(&self.pool)
        .await
        .db_context("reading last seen times")?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn set_last_seen(&self, user: &UserId, at: Option<Timestamp>) -> Result<()> {
        sqlx::query("UPDATE users SET last_seen_at = $2 WHERE id = $1")
            .bind(user.as_str())
            .bind(at.map(Timestamp::millis))
            .execute(&self.pool)
            .await
            .db_context("recording last seen")?;
        Ok(())
    }

    pub async fn is_member(&self, conversation: ConversationId, user: &UserId) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2)",
        )
        .bind(conversation.0)
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await
        .db_context("checking membership")
    }

    pub async fn history(&self, conversation: ConversationId, q: HistoryQuery) -> Result<Page> {
        macro_rules! range {
            ($order:literal) => {
                concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages m
                     WHERE m.conversation_id = $1 AND m.seq > $2 AND m.seq < $3
                     ORDER BY m.seq ",
                    $order,
                    " LIMIT $4"
                )
            };
        }
        let sql = if q.ascending() {
            range!("ASC")
        } else {
            range!("DESC")
        };
        let rows: Vec<MessageRow> = sqlx::query_as(sql)
            .bind(conversation.0)
            .bind(q.after_seq.unwrap_or(0))
            .bind(q.before_seq.unwrap_or(i64::MAX))
            .bind(i64::from(q.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .db_context("reading history")?;
        Ok(page_from_rows(messages(rows), q))
    }

    pub async fn sync(
        &self,
        user: &UserId,
        cursors: &[SyncCursor],
        limit: u32,
        changed_since: Option<Timestamp>,
    ) -> Result<Vec<SyncUpdate>> {
        let convs: Vec<Uuid> = cursors.iter().map(|c| c.conversation_id.0).collect();
        let afters: Vec<i64> = cursors.iter().map(|c| c.after).collect();
        let mut conn = self.pool.acquire().await.db_context("acquiring")?;
        let member_of: Vec<Uuid> = sqlx::query_scalar(
            "SELECT conversation_id FROM members WHERE user_id = $1 AND conversation_id = ANY($2)",
        )
        .bind(user.as_str())
        .bind(&convs)
        .fetch_all(&mut *conn)
        .await
        .db_context("checking memberships for sync")?;
        let member_of: HashSet<Uuid> = member_of.into_iter().collect();
        let visible: Vec<Uuid> = member_of.iter().copied().collect();
        // One query for all conversations: for each cursor, the next `limit + 1` messages.
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            "
             FROM UNNEST($1::uuid[], $2::bigint[]) AS k(c, after)
             CROSS JOIN LATERAL (
                 SELECT * FROM messages m
                 WHERE m.conversation_id = k.c AND m.seq > k.after
                 ORDER BY m.seq LIMIT $3
             ) m
             WHERE k.c = ANY($4)"
        ))
        .bind(&convs)
        .bind(&afters)
        .bind(i64::from(limit) + 1)
        .bind(&visible)
        .fetch_all(&mut *conn)
        .await
        .db_context("reading messages for sync")?;
        let mut new = by_conversation(messages(rows));
        let mut changed = HashMap::new();
        if let Some(since) = changed_since {
            let changed_afters: Vec<i64> = cursors.iter().map(|c| c.changed_after).collect();
            let rows: Vec<MessageRow> = sqlx::query_as(concat!(
                "SELECT ",
                message_columns!(),
                "
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) AS k(c, upto, from_seq)
                 CROSS JOIN LATERAL (
                     SELECT * FROM messages m
                     WHERE m.conversation_id = k.c AND m.changed_at >= $4
                       AND m.seq > k.from_seq AND m.seq <= k.upto
                     ORDER BY m.seq LIMIT $5
                 ) m
                 WHERE k.c = ANY($6)"
            ))
            .bind(&convs)
            .bind(&afters)
            .bind(&changed_afters)
            .bind(since.millis())
            .bind(i64::from(limit) + 1)
            .bind(&visible)
            .fetch_all(&mut *conn)
            .await
            .db_context("reading changed messages for sync")?;
            changed = by_conversation(messages(rows));
        }
        Ok(cursors
            .iter()
            .filter(|c| member_of.contains(&c.conversation_id.0))
            .map(|c| {
                sync_update(
                    c,
                    new.remove(&c.conversation_id).unwrap_or_default(),
                    changed.remove(&c.conversation_id).unwrap_or_default(),
                    limit,
                )
            })
            .collect())
    }
}

// The host app's side (server API, moderation, webhooks).
impl PgStore {
    pub async fn ban(&self, ban: &Ban) -> Result<()> {
        sqlx::query(
            "INSERT INTO bans (user_id, until, reason, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE
             SET until = EXCLUDED.until, reason = EXCLUDED.reason, created_at = EXCLUDED.created_at",
        )
        .bind(ban.user_id.as_str())
        .bind(ban.until.map(Timestamp::millis))
        .bind(ban.reason.as_deref())
        .bind(Timestamp::now().millis())
        .execute(&self.pool)
        .await
        .db_context("banning a user")?;
        Ok(())
    }

    pub async fn unban(&self, user: &UserId) -> Result<bool> {
        let removed = sqlx::query("DELETE FROM bans WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&self.pool)
            .await
            .db_context("unbanning a user")?
            .rows_affected();
        Ok(removed > 0)
    }

    pub async fn ban_of(&self, user: &UserId, now: Timestamp) -> Result<Option<Ban>> {
        let row: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT until, reason FROM bans WHERE user_id = $1 AND (until IS NULL OR until > $2)",
        )
        .bind(user.as_str())
        .bind(now.millis())
        .fetch_optional(&self.pool)
        .await
        .db_context("checking bans")?;
        Ok(row.map(|(until, reason)| Ban {
            user_id: user.clone(),
            until: until.map(Timestamp),
            reason,
        }))
    }

    /// Drops the user's name, records the erasure and a ban for good, and deletes the bodies of
    /// every message they sent, in one transaction; returns the messages deleted now. Messages
    /// have no index by sender (it would cost every send a write, for a rare erasure), so this
    /// reads the table through.
    pub async fn erase_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<Message>> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, created_at, erased_at) VALUES ($1, $2, $2)
             ON CONFLICT (id) DO UPDATE SET name = NULL, erased_at = COALESCE(users.erased_at, $2)",
        )
        .bind(user.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .db_context("erasing a user")?;
        sqlx::query(
            "INSERT INTO bans (user_id, until, reason, created_at) VALUES ($1, NULL, 'erased', $2)
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
               AND id IN (SELECT conversation_id FROM members WHERE user_id = $1)",
        )
        .bind(user.as_str())
        .execute(&mut *tx)
        .await
        .db_context("releasing an erased user's direct conversations")?;
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "UPDATE messages m SET body = NULL, attachments = NULL, deleted_at = $2, changed_at = $2
             WHERE m.sender_id = $1 AND m.deleted_at IS NULL RETURNING ",
            message_columns!()
        ))
        .bind(user.as_str())
        .bind(now.millis())
        .fetch_all(&mut *tx)
        .await
        .db_context("deleting an erased user's messages")?;
        // Their files go too, sent or not: no longer served, the sweeper deletes the bytes.
        sqlx::query(
            "UPDATE attachments SET deleted_at = $2 WHERE uploader_id = $1 AND deleted_at IS NULL",
        )
        .bind(user.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .db_context("deleting an erased user's attachments")?;
        // Webhook events not yet delivered (or given up) would still carry the words erased
        // above: they go too. (Delivered ones are deleted when sent.)
        sqlx::query(
            "DELETE FROM webhook_outbox WHERE type = 'message.created' AND (data::jsonb #>> '{message,sender_id}') = $1",
        )
        .bind(user.as_str())
        .execute(&mut *tx)
        .await
        .db_context("deleting an erased user's webhook events")?;
        tx.commit().await.db_context("committing an erasure")?;
        Ok(messages(rows))
    }

    /// `blocker` blocks (`true`) or unblocks `blocked`.
    pub async fn set_block(&self, blocker: &UserId, blocked: &UserId, on: bool) -> Result<()> {
        let done = if on {
            sqlx::query(
                "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(blocker.as_str())
            .bind(blocked.as_str())
            .bind(Timestamp::now().millis())
            .execute(&self.pool)
            .await
        } else {
            sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2")
                .bind(blocker.as_str())
                .bind(blocked.as_str())
                .execute(&self.pool)
                .await
        };
        done.db_context("recording a block")?;
        Ok(())
    }

    pub async fn is_blocked(&self, blocker: &UserId, blocked: &UserId) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)",
        )
        .bind(blocker.as_str())
        .bind(blocked.as_str())
        .fetch_one(&self.pool)
        .await
        .db_context("checking a block")
    }

    /// Leases due rows; `SKIP LOCKED`, so nodes claiming at once take different rows, and the
    /// lease (`locked_until`), so rows of a node that died while sending are claimed again.
    pub async fn claim_outbox(
        &self,
        now: i64,
        settled_before: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        sqlx::query_as(
            "UPDATE webhook_outbox o SET locked_until = $2
             FROM (SELECT id FROM webhook_outbox
                   WHERE failed_at IS NULL AND next_attempt_at <= $1
                     AND (locked_until IS NULL OR locked_until <= $1)
                     AND (resolved OR created_at <= $4)
                   ORDER BY next_attempt_at LIMIT $3
                   FOR UPDATE SKIP LOCKED) due
             WHERE o.id = due.id
             RETURNING o.id, o.type, o.data, o.resolved, o.created_at, o.attempts",
        )
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .bind(settled_before)
        .fetch_all(&self.pool)
        .await
        .db_context("claiming webhook events")
    }

    pub async fn resolve_outbox(&self, id: Uuid, data: Option<&str>) -> Result<()> {
        let query = match data {
            Some(data) => {
                sqlx::query("UPDATE webhook_outbox SET data = $2, resolved = TRUE WHERE id = $1")
                    .bind(id)
                    .bind(data)
            }
            None => sqlx::query("DELETE FROM webhook_outbox WHERE id = $1").bind(id),
        };
        query
            .execute(&self.pool)
            .await
            .db_context("resolving a webhook event")?;
        Ok(())
    }

    pub async fn settle_outbox(&self, id: Uuid, settle: &OutboxSettle, now: i64) -> Result<()> {
        let query = match settle {
            OutboxSettle::Done => sqlx::query("DELETE FROM webhook_outbox WHERE id = $1").bind(id),
            OutboxSettle::Retry { at, error } => sqlx::query(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = $2,
                     locked_until = NULL, last_error = $3
                 WHERE id = $1",
            )
            .bind(id)
            .bind(*at)
            .bind(error.as_str()),
            OutboxSettle::Failed { error } => sqlx::query(
                "UPDATE webhook_outbox SET attempts = attempts + 1, failed_at = $2,
                     locked_until = NULL, last_error = $3
                 WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .bind(error.as_str()),
        };
        query
            .execute(&self.pool)
            .await
            .db_context("settling a webhook event")?;
        Ok(())
    }

    pub async fn outbox_depth(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM webhook_outbox WHERE failed_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .db_context("counting webhook events")
    }

    pub async fn kind_and_members(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<(ConversationKind, i64, Vec<UserId>)>> {
        let head: Option<(String, i32)> =
            sqlx::query_as("SELECT kind, member_count FROM conversations WHERE id = $1")
                .bind(conversation.0)
                .fetch_optional(&self.pool)
                .await
                .db_context("loading a conversation's kind")?;
        let Some((kind, count)) = head else {
            return Ok(None);
        };
        let Some(kind) = ConversationKind::from_db(&kind) else {
            return Ok(None);
        };
        let count = i64::from(count);
        if is_large(count) {
            return Ok(Some((kind, count, Vec::new())));
        }
        let members: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = $1")
                .bind(conversation.0)
                .fetch_all(&self.pool)
                .await
                .db_context("loading members")?;
        Ok(Some((
            kind,
            count,
            members.iter().map(|u| UserId::from_db(u)).collect(),
        )))
    }

    /// Whom `blocker` blocked.
    pub async fn blocked_by(&self, blocker: &UserId) -> Result<Vec<UserId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT blocked_id FROM blocks WHERE blocker_id = $1")
                .bind(blocker.as_str())
                .fetch_all(&self.pool)
                .await
                .db_context("loading blocks")?;
        Ok(ids.iter().map(|u| UserId::from_db(u)).collect())
    }
}
/// The search statements for one text search configuration: with the caller's conversations
/// as a filter inside the index, and without (a caller in very many conversations).
#[derive(Clone, Copy)]
pub struct SearchSql {
    narrowed: &'static str,
    plain: &'static str,
}

/// The most conversations a search is narrowed to inside the index (see `search`).
const SEARCH_NARROWED_MAX: usize = 2000;

/// Makes sure messages are indexed for search with the text search configuration `language`,
/// and returns the search statements that use that index. The migration indexes `simple`
/// (words as they are: any language, no stemming); another configuration gets its own index,
/// built here on first start with it (concurrently: writes go on meanwhile).
async fn search_index(pool: &PgPool, language: &str) -> anyhow::Result<SearchSql> {
    let known: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = $1)")
            .bind(language)
            .fetch_one(pool)
            .await
            .context("looking up the search language")?;
    // A name from pg_ts_config, and only letters and underscores: safe to write into SQL.
    if !known || !language.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        anyhow::bail!(
            "CONFAB_SEARCH_LANGUAGE: {language:?} is not a PostgreSQL text search configuration (`SELECT cfgname FROM pg_ts_config` lists them; `simple` works for every language)"
        );
    }
    // The message's words and its conversation as one more word (migration 0009 says why). The
    // statements must spell the index's expression exactly for the planner to use the index.
    let vector = format!(
        "(to_tsvector('{language}'::regconfig, coalesce(body, '')) \
         || array_to_tsvector(ARRAY['c ' || replace(conversation_id::text, '-', '')]))"
    );
    if language != "simple" {
        for statement in [
            // The index of the first design (before migration 0009), if this language had one.
            format!("DROP INDEX CONCURRENTLY IF EXISTS messages_search_{language}"),
            format!(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_words_{language} ON messages USING GIN ({vector})"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(pool)
                .await
                .with_context(|| format!("indexing messages for search in {language:?}"))?;
        }
    }
    let statement = |filter: &str| {
        let sql = format!(
            "SELECT {columns} FROM messages m
             WHERE {vector} @@ (websearch_to_tsquery('{language}'::regconfig, $1){filter})
               AND m.conversation_id IN (SELECT conversation_id FROM members
                                         WHERE user_id = $2 AND ($3::uuid IS NULL OR conversation_id = $3))
               AND m.deleted_at IS NULL
               AND ($4::uuid IS NULL OR m.id < $4)
             ORDER BY m.id DESC LIMIT $5",
            columns = message_columns!(),
        );
        // Built once per process.
        &*Box::leak(sql.into_boxed_str())
    };
    Ok(SearchSql {
        narrowed: statement(" && $6::tsquery"),
        plain: statement(""),
    })
}

/// A conversation as the search index holds it, quoted for a `tsquery`: one word, `c`, a space
/// and the id's hex digits. No text a user searches for parses into a word with a space in it,
/// so only the server's filter can match it.
fn conversation_lexeme(id: &Uuid) -> String {
    format!("'c {}'", id.simple())
}

/// Search.
impl PgStore {
    pub async fn search(
        &self,
        user: &UserId,
        query: &SearchQuery,
        conversation: Option<ConversationId>,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        // One index scan finds the messages holding the words *and* one of the caller's
        // conversations (each message's conversation is a word in the index), so a word common
        // elsewhere costs only its matches here, and a caller in hundreds of conversations costs
        // one scan, not hundreds. Then the newest are taken. The membership check in the
        // statement always applies; the index filter only narrows.
        let conversations: Vec<Uuid> = match conversation {
            Some(c) => vec![c.0],
            None => sqlx::query_scalar("SELECT conversation_id FROM members WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await
                .db_context("loading a user's conversations")?,
        };
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let narrowed = conversations.len() <= SEARCH_NARROWED_MAX;
        let sql = if narrowed {
            self.search_sql.narrowed
        } else {
            self.search_sql.plain
        };
        // Planned with the query's words each time (an unnamed statement): a plan made for any
        // words treats every word as rare, and a word in half the messages then fetches all of
        // them (docs/bench/notes.md, "Search").
        let mut statement = sqlx::query_as(sql)
            .persistent(false)
            .bind(query.as_str())
            .bind(user.as_str())
            .bind(conversation.map(|c| c.0))
            .bind(before.map(|m| m.0))
            .bind(i64::from(limit));
        if narrowed {
            let lexemes: Vec<String> = conversations.iter().map(conversation_lexeme).collect();
            statement = statement.bind(lexemes.join(" | "));
        }
        let rows: Vec<MessageRow> = statement
            .fetch_all(&self.pool)
            .await
            .db_context("searching messages")?;
        Ok(messages(rows))
    }
}

/// Attachments.
impl PgStore {
    pub async fn insert_attachment(
        &self,
        uploader: &UserId,
        a: &Attachment,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO attachments (id, uploader_id, content_type, size, name, width, height, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(a.id.0)
        .bind(uploader.as_str())
        .bind(&a.content_type)
        .bind(a.size)
        .bind(a.name.as_deref())
        .bind(a.width.map(i64::from))
        .bind(a.height.map(i64::from))
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .db_context("recording an attachment")?;
        Ok(())
    }

    pub async fn unclaimed_count(&self, uploader: &UserId) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM attachments
             WHERE uploader_id = $1 AND message_id IS NULL AND deleted_at IS NULL",
        )
        .bind(uploader.as_str())
        .fetch_one(&self.pool)
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
             WHERE a.id = $1 AND a.deleted_at IS NULL AND (
                 (a.message_id IS NULL AND a.uploader_id = $2)
                 OR EXISTS (SELECT 1 FROM members mb
                            WHERE mb.conversation_id = a.conversation_id AND mb.user_id = $2))"
        ))
        .bind(id.0)
        .bind(viewer.as_str())
        .fetch_optional(&self.pool)
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
        // A send claiming one locks it first and skips it once deleted, so an upload is
        // either sent or swept, never both.
        sqlx::query(
            "UPDATE attachments SET deleted_at = $2
             WHERE message_id IS NULL AND deleted_at IS NULL AND created_at < $1",
        )
        .bind(cutoff.millis())
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .db_context("sweeping unsent attachments")?;
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM attachments WHERE deleted_at IS NOT NULL ORDER BY deleted_at LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .db_context("listing deleted attachments")?;
        Ok(ids.into_iter().map(AttachmentId).collect())
    }

    pub async fn forget_attachments(&self, ids: &[AttachmentId]) -> Result<()> {
        let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        sqlx::query("DELETE FROM attachments WHERE id = ANY($1) AND deleted_at IS NOT NULL")
            .bind(&ids)
            .execute(&self.pool)
            .await
            .db_context("forgetting deleted attachments")?;
        Ok(())
    }
}

impl Backend for PgStore {
    type Db = Postgres;

    async fn members(
        c: &mut PgConnection,
        ids: &[ConversationId],
        first: Option<usize>,
    ) -> Result<Vec<MemberRow>> {
        let Some(first) = first else {
            return sqlx::query_as(
                "SELECT mb.conversation_id, mb.user_id, u.name, mb.role, mb.joined_at, mb.last_read_seq
                 FROM members mb JOIN users u ON u.id = mb.user_id
                 WHERE mb.conversation_id = ANY($1)",
            )
            .bind(uuids(ids))
            .fetch_all(c)
            .await
            .db_context("loading members");
        };
        // A short scan of `members_in_order` per conversation, however large each is.
        sqlx::query_as(concat!(
            "SELECT mb.conversation_id, mb.user_id, u.name, mb.role, mb.joined_at, mb.last_read_seq
             FROM UNNEST($1::uuid[]) AS k(c)
             CROSS JOIN LATERAL (
                 SELECT * FROM members mb WHERE mb.conversation_id = k.c
                 ORDER BY ",
            member_rank!(),
            ", mb.joined_at, mb.user_id COLLATE \"C\"
                 LIMIT $2
             ) mb
             JOIN users u ON u.id = mb.user_id"
        ))
        .bind(uuids(ids))
        .bind(first as i64)
        .fetch_all(c)
        .await
        .db_context("loading members")
    }

    async fn last_messages(
        c: &mut PgConnection,
        last: &[(ConversationId, i64)],
    ) -> Result<Vec<MessageRow>> {
        let (ids, seqs): (Vec<Uuid>, Vec<i64>) = last.iter().map(|(c, s)| (c.0, *s)).unzip();
        sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m
             JOIN UNNEST($1::uuid[], $2::bigint[]) AS k(c, s) ON m.conversation_id = k.c AND m.seq = k.s"
        ))
        .bind(&ids)
        .bind(&seqs)
        .fetch_all(c)
        .await
        .db_context("loading last messages")
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool
            .begin()
            .await
            .db_context("beginning a transaction")
    }

    async fn ensure_users(c: &mut PgConnection, users: &[&UserId]) -> Result<()> {
        let ids: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        sqlx::query(
            "INSERT INTO users (id, created_at) SELECT u, $2 FROM UNNEST($1::text[]) AS t(u)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ids)
        .bind(Timestamp::now().millis())
        .execute(c)
        .await
        .db_context("recording users")?;
        Ok(())
    }

    async fn insert_direct(
        c: &mut PgConnection,
        id: ConversationId,
        key: &str,
        now: i64,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO conversations (id, kind, direct_key, created_at, last_activity_at)
             VALUES ($1, 'direct', $2, $3, $3)
             ON CONFLICT (direct_key) DO NOTHING",
        )
        .bind(id.0)
        .bind(key)
        .bind(now)
        .execute(c)
        .await
        .db_context("creating a direct conversation")?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn find_direct(c: &mut PgConnection, key: &str) -> Result<ConversationId> {
        sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = $1")
            .bind(key)
            .fetch_one(c)
            .await
            .map(ConversationId)
            .db_context("finding the direct conversation")
    }

    async fn insert_group(
        c: &mut PgConnection,
        id: ConversationId,
        title: &ConversationTitle,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO conversations (id, kind, title, created_at, last_activity_at)
             VALUES ($1, 'group', $2, $3, $3)",
        )
        .bind(id.0)
        .bind(title.as_str())
        .bind(now)
        .execute(c)
        .await
        .db_context("creating a group")?;
        Ok(())
    }

    async fn insert_members(
        c: &mut PgConnection,
        id: ConversationId,
        members: &[(&UserId, Role)],
        now: i64,
    ) -> Result<()> {
        let users: Vec<&str> = members.iter().map(|(u, _)| u.as_str()).collect();
        let roles: Vec<&str> = members.iter().map(|(_, r)| r.as_str()).collect();
        sqlx::query(
            "WITH added AS (
                 INSERT INTO members (conversation_id, user_id, role, joined_at)
                 SELECT $1, u, r, $4 FROM UNNEST($2::text[], $3::text[]) AS t(u, r)
                 ON CONFLICT DO NOTHING
                 RETURNING 1
             )
             UPDATE conversations SET member_count = member_count + (SELECT count(*) FROM added)
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(&users)
        .bind(&roles)
        .bind(now)
        .execute(c)
        .await
        .db_context("adding members")?;
        Ok(())
    }

    async fn remove_members(
        c: &mut PgConnection,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<()> {
        sqlx::query(
            "WITH gone AS (
                 DELETE FROM members WHERE conversation_id = $1 AND user_id = ANY($2)
                 RETURNING 1
             )
             UPDATE conversations SET member_count = member_count - (SELECT count(*) FROM gone)
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(user_strs(users))
        .execute(c)
        .await
        .db_context("removing members")?;
        Ok(())
    }

    async fn set_role(
        c: &mut PgConnection,
        id: ConversationId,
        user: &UserId,
        role: Role,
    ) -> Result<()> {
        sqlx::query("UPDATE members SET role = $3 WHERE conversation_id = $1 AND user_id = $2")
            .bind(id.0)
            .bind(user.as_str())
            .bind(role.as_str())
            .execute(c)
            .await
            .db_context("changing a role")?;
        Ok(())
    }

    async fn record_departures(
        c: &mut PgConnection,
        id: ConversationId,
        users: &[UserId],
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO departures (conversation_id, user_id, left_at)
             SELECT $1, u, $3 FROM UNNEST($2::text[]) AS u
             ON CONFLICT (conversation_id, user_id) DO UPDATE SET left_at = EXCLUDED.left_at",
        )
        .bind(id.0)
        .bind(user_strs(users))
        .bind(now)
        .execute(c)
        .await
        .db_context("recording departures")?;
        Ok(())
    }

    async fn departed(
        c: &mut PgConnection,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<Vec<UserId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            // One lookup per name: see `members_named`.
            "SELECT d.user_id FROM UNNEST($2::text[]) AS t(u)
             CROSS JOIN LATERAL (
                 SELECT user_id FROM departures
                 WHERE conversation_id = $1 AND user_id = t.u LIMIT 1
             ) d",
        )
        .bind(id.0)
        .bind(user_strs(users))
        .fetch_all(c)
        .await
        .db_context("loading departures")?;
        Ok(ids.iter().map(|u| UserId::from_db(u)).collect())
    }

    async fn head(
        c: &mut PgConnection,
        id: ConversationId,
        lock: bool,
    ) -> Result<Option<ConversationHead>> {
        const SELECT: &str = "SELECT id, kind, title, created_at, last_seq,
                    member_count::bigint AS member_count
             FROM conversations WHERE id = $1";
        const SELECT_LOCKED: &str = "SELECT id, kind, title, created_at, last_seq,
                    member_count::bigint AS member_count
             FROM conversations WHERE id = $1 FOR UPDATE";
        let row: Option<HeadRow> = sqlx::query_as(if lock { SELECT_LOCKED } else { SELECT })
            .bind(id.0)
            .fetch_optional(c)
            .await
            .db_context("loading a conversation")?;
        row.map(|r| r.into_head(None)).transpose()
    }

    async fn members_named(
        c: &mut PgConnection,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<Vec<MemberRow>> {
        sqlx::query_as(
            // One primary-key lookup per name, whatever the statistics say: with `= ANY($2)` a
            // growing table's stale statistics let the planner filter a scan of the whole group
            // with the array (a thousand comparisons per member: seconds at 60,000 members,
            // measured), and a plain join may hash the whole group. `LIMIT 1` keeps the lateral
            // subquery from being flattened into such a join.
            "SELECT mb.conversation_id, mb.user_id, u.name, mb.role, mb.joined_at, mb.last_read_seq
             FROM UNNEST($2::text[]) AS t(u)
             CROSS JOIN LATERAL (
                 SELECT * FROM members m WHERE m.conversation_id = $1 AND m.user_id = t.u LIMIT 1
             ) mb
             JOIN users u ON u.id = mb.user_id",
        )
        .bind(id.0)
        .bind(user_strs(users))
        .fetch_all(c)
        .await
        .db_context("loading members")
    }

    async fn load_conversations(
        c: &mut PgConnection,
        ids: &[ConversationId],
        lock: bool,
    ) -> Result<Vec<Conversation>> {
        const SELECT: &str = "SELECT id, kind, title, created_at, last_seq,
                    member_count::bigint AS member_count
             FROM conversations WHERE id = ANY($1)";
        const SELECT_LOCKED: &str = "SELECT id, kind, title, created_at, last_seq,
                    member_count::bigint AS member_count
             FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE";
        let rows: Vec<HeadRow> = sqlx::query_as(if lock { SELECT_LOCKED } else { SELECT })
            .bind(uuids(ids))
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
        c: &mut PgConnection,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation.0)
        .bind(user.as_str())
        .fetch_optional(c)
        .await
        .db_context("checking membership")?;
        role.as_deref().map(super::rows::role).transpose()
    }

    async fn lock_message(
        c: &mut PgConnection,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<Option<Message>> {
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.id = $1 AND m.conversation_id = $2 FOR UPDATE"
        ))
        .bind(message.0)
        .bind(conversation.0)
        .fetch_optional(c)
        .await
        .db_context("loading the message")?;
        Ok(row.map(Message::from))
    }

    async fn rewrite_message(
        c: &mut PgConnection,
        conversation: ConversationId,
        message: MessageId,
        rewrite: Rewrite,
        now: i64,
    ) -> Result<Message> {
        let query = match rewrite {
            Rewrite::Edit(body) => sqlx::query_as(concat!(
                "UPDATE messages m SET body = $3, edited_at = $4, changed_at = $4
                 WHERE m.id = $1 AND m.conversation_id = $2 RETURNING ",
                message_columns!()
            ))
            .bind(message.0)
            .bind(conversation.0)
            .bind(body.into_string())
            .bind(now),
            Rewrite::Delete => sqlx::query_as(concat!(
                "UPDATE messages m SET body = NULL, attachments = NULL, deleted_at = $3, changed_at = $3
                 WHERE m.id = $1 AND m.conversation_id = $2 RETURNING ",
                message_columns!()
            ))
            .bind(message.0)
            .bind(conversation.0)
            .bind(now),
        };
        let row: MessageRow = query
            .fetch_one(c)
            .await
            .db_context("updating the message")?;
        Ok(row.into())
    }

    async fn lock_seqs(
        c: &mut PgConnection,
        conversations: &[ConversationId],
    ) -> Result<HashMap<ConversationId, i64>> {
        let rows: Vec<SeqRow> = sqlx::query_as(
            "SELECT id, last_seq FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(uuids(conversations))
        .fetch_all(c)
        .await
        .db_context("locking conversations")?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn senders_who_are_members(
        c: &mut PgConnection,
        batch: &[NewMessage],
    ) -> Result<HashSet<(ConversationId, UserId)>> {
        let convs: Vec<Uuid> = batch.iter().map(|m| m.conversation_id.0).collect();
        let senders: Vec<&str> = batch
            .iter()
            .map(|m| sender_column(m.sender_id.as_ref()))
            .collect();
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT DISTINCT k.c AS conversation_id, k.s AS user_id
             FROM UNNEST($1::uuid[], $2::text[]) AS k(c, s)
             JOIN members mb ON mb.conversation_id = k.c AND mb.user_id = k.s",
        )
        .bind(&convs)
        .bind(&senders)
        .fetch_all(c)
        .await
        .db_context("checking senders' membership")?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn stored_sends(c: &mut PgConnection, batch: &[NewMessage]) -> Result<Vec<Message>> {
        let convs: Vec<Uuid> = batch.iter().map(|m| m.conversation_id.0).collect();
        let senders: Vec<&str> = batch
            .iter()
            .map(|m| sender_column(m.sender_id.as_ref()))
            .collect();
        let clients: Vec<&str> = batch.iter().map(|m| m.client_id.as_str()).collect();
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS k(c, s, cl)
             CROSS JOIN LATERAL (
                 SELECT * FROM messages m
                 WHERE m.conversation_id = k.c AND m.sender_id = k.s AND m.client_id = k.cl
             ) m"
        ))
        .bind(&convs)
        .bind(&senders)
        .bind(&clients)
        .fetch_all(c)
        .await
        .db_context("looking up retried sends")?;
        Ok(messages(rows))
    }

    /// One statement: insert the messages (only those whose sender is a member, skipping
    /// stored idempotency keys) and move the conversations' last seq.
    async fn insert_batch(
        c: &mut PgConnection,
        stored: &[&Message],
        last_seqs: &HashMap<ConversationId, i64>,
    ) -> Result<u64> {
        let ids: Vec<Uuid> = stored.iter().map(|m| m.id.0).collect();
        let convs: Vec<Uuid> = stored.iter().map(|m| m.conversation_id.0).collect();
        let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
        let senders: Vec<&str> = stored
            .iter()
            .map(|m| sender_column(m.sender_id.as_ref()))
            .collect();
        let clients: Vec<&str> = stored.iter().map(|m| m.client_id.as_str()).collect();
        let bodies: Vec<&str> = stored
            .iter()
            .map(|m| m.body.as_deref().unwrap_or_default())
            .collect();
        let attachments: Vec<Option<String>> = stored
            .iter()
            .map(|m| encode_attachments(&m.attachments))
            .collect();
        let now = stored[0].created_at.millis();
        let (last_ids, last_seqs): (Vec<Uuid>, Vec<i64>) =
            last_seqs.iter().map(|(c, s)| (c.0, *s)).unzip();
        let inserted: i64 = sqlx::query_scalar(
            "WITH ins AS (
                 INSERT INTO messages (id, conversation_id, seq, sender_id, client_id, body, created_at, attachments)
                 SELECT id, c, s, snd, cl, b, $7, a
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], $10::text[])
                      AS t(id, c, s, snd, cl, b, a)
                 WHERE (t.snd = '' OR EXISTS (SELECT 1 FROM members mb
                                              WHERE mb.conversation_id = t.c AND mb.user_id = t.snd))
                   AND NOT EXISTS (SELECT 1 FROM blocks b
                                   JOIN members o ON o.conversation_id = t.c AND o.user_id = b.blocker_id
                                   JOIN conversations cv ON cv.id = t.c AND cv.kind = 'direct'
                                   WHERE b.blocked_id = t.snd)
                 ON CONFLICT (conversation_id, sender_id, client_id) DO NOTHING
                 RETURNING 1
             ), upd AS (
                 UPDATE conversations c SET last_seq = t.s, last_activity_at = $7
                 FROM UNNEST($8::uuid[], $9::bigint[]) AS t(id, s)
                 WHERE c.id = t.id
             )
             SELECT count(*) FROM ins",
        )
        .bind(&ids)
        .bind(&convs)
        .bind(&seqs)
        .bind(&senders)
        .bind(&clients)
        .bind(&bodies)
        .bind(now)
        .bind(&last_ids)
        .bind(&last_seqs)
        .bind(&attachments)
        .fetch_one(c)
        .await
        .db_context("inserting messages")?;
        Ok(inserted as u64)
    }

    // The host app's side (server API, moderation, webhooks).

    async fn find_external(
        c: &mut PgConnection,
        external_id: &str,
    ) -> Result<Option<ConversationId>> {
        let id: Option<Uuid> =
            sqlx::query_scalar("SELECT conversation_id FROM external_ids WHERE external_id = $1")
                .bind(external_id)
                .fetch_optional(c)
                .await
                .db_context("finding an external id")?;
        Ok(id.map(ConversationId))
    }

    async fn insert_external(
        c: &mut PgConnection,
        external_id: &str,
        id: ConversationId,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO external_ids (external_id, conversation_id) VALUES ($1, $2)
             ON CONFLICT (external_id) DO NOTHING",
        )
        .bind(external_id)
        .bind(id.0)
        .execute(c)
        .await
        .db_context("recording an external id")?
        .rows_affected();
        Ok(inserted == 1)
    }

    fn outbox(&self) -> Option<&tokio::sync::Notify> {
        self.outbox.as_deref()
    }

    async fn insert_outbox(c: &mut PgConnection, events: &[OutboxEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        let resolved: Vec<bool> = events.iter().map(|e| e.resolved).collect();
        let created: Vec<i64> = events.iter().map(|e| e.created_at).collect();
        sqlx::query(
            "INSERT INTO webhook_outbox (id, type, data, resolved, created_at, next_attempt_at)
             SELECT id, t, d, r, c, c
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::boolean[], $5::bigint[])
                  AS e(id, t, d, r, c)",
        )
        .bind(&ids)
        .bind(&kinds)
        .bind(&data)
        .bind(&resolved)
        .bind(&created)
        .execute(c)
        .await
        .db_context("recording webhook events")?;
        Ok(())
    }

    async fn blocked_senders(
        c: &mut PgConnection,
        batch: &[NewMessage],
    ) -> Result<HashSet<(ConversationId, UserId)>> {
        let convs: Vec<Uuid> = batch.iter().map(|m| m.conversation_id.0).collect();
        let senders: Vec<&str> = batch
            .iter()
            .map(|m| sender_column(m.sender_id.as_ref()))
            .collect();
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT DISTINCT k.c AS conversation_id, k.s AS user_id
             FROM UNNEST($1::uuid[], $2::text[]) AS k(c, s)
             JOIN blocks b ON b.blocked_id = k.s
             JOIN members o ON o.conversation_id = k.c AND o.user_id = b.blocker_id
             JOIN conversations cv ON cv.id = k.c AND cv.kind = 'direct'",
        )
        .bind(&convs)
        .bind(&senders)
        .fetch_all(c)
        .await
        .db_context("checking blocked senders")?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
    async fn lock_attachments(
        c: &mut PgConnection,
        ids: &[AttachmentId],
    ) -> Result<Vec<StoredAttachment>> {
        let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        let rows: Vec<AttachmentRow> = sqlx::query_as(concat!(
            "SELECT ",
            attachment_columns!(),
            " FROM attachments WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        ))
        .bind(&ids)
        .fetch_all(c)
        .await
        .db_context("locking attachments")?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn claim_attachments(
        c: &mut PgConnection,
        claims: &[(AttachmentId, MessageId, ConversationId)],
    ) -> Result<()> {
        let ids: Vec<Uuid> = claims.iter().map(|(a, _, _)| a.0).collect();
        let messages: Vec<Uuid> = claims.iter().map(|(_, m, _)| m.0).collect();
        let convs: Vec<Uuid> = claims.iter().map(|(_, _, c)| c.0).collect();
        sqlx::query(
            "UPDATE attachments a SET message_id = t.m, conversation_id = t.c
             FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS t(id, m, c)
             WHERE a.id = t.id",
        )
        .bind(&ids)
        .bind(&messages)
        .bind(&convs)
        .execute(c)
        .await
        .db_context("claiming attachments")?;
        Ok(())
    }

    async fn discard_attachments(c: &mut PgConnection, message: MessageId, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE attachments SET deleted_at = $2 WHERE message_id = $1 AND deleted_at IS NULL",
        )
        .bind(message.0)
        .bind(now)
        .execute(c)
        .await
        .db_context("discarding attachments")?;
        Ok(())
    }
}

fn uuids(ids: &[ConversationId]) -> Vec<Uuid> {
    ids.iter().map(|i| i.0).collect()
}

fn user_strs(users: &[UserId]) -> Vec<&str> {
    users.iter().map(UserId::as_str).collect()
}

fn by_conversation(messages: Vec<Message>) -> HashMap<ConversationId, Vec<Message>> {
    let mut by: HashMap<ConversationId, Vec<Message>> = HashMap::new();
    for m in messages {
        by.entry(m.conversation_id).or_default().push(m);
    }
    by
}
