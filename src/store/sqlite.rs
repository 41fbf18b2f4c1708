//! The SQLite backend, for running confab alone on one machine.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly one connection
//! (they queue in the pool instead of failing with SQLITE_BUSY), while reads use a pool of their
//! own: in WAL mode readers never wait for the writer. Statements run in-process, so a loop of
//! small statements costs microseconds, not round trips.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};
use uuid::Uuid;

use super::{
    ConversationHead, HistoryQuery, MembershipChange, MembershipPlan, MessageChange, NewMessage,
    Page, SendOutcome, SyncUpdate, assemble, by_send_key, direct_key, page_from_rows, plan_batch,
    sync_update,
};
use crate::domain::requests::SyncCursor;
use crate::domain::{
    Conversation, ConversationId, ConversationKind, ConversationTitle, DisplayName, Member,
    Message, MessageId, ReadState, Role, Timestamp, UserId,
};
use crate::error::{DbContext, Error, Result};

/// The columns of a message, in the order `message_from_row` reads them. A macro, so that
/// queries can be built with `concat!` and stay `&'static str` (sqlx caches statements by text).
macro_rules! message_columns {
    () => {
        "m.id, m.conversation_id, m.seq, m.sender_id, m.client_id, m.body, m.created_at, m.edited_at, m.deleted_at"
    };
}

/// The same columns unqualified, for `RETURNING` (SQLite doesn't accept the table alias there).
macro_rules! returned_columns {
    () => {
        "id, conversation_id, seq, sender_id, client_id, body, created_at, edited_at, deleted_at"
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
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT conversation_id FROM members WHERE user_id = ?")
                .bind(user.as_str())
                .fetch_all(&self.readers)
                .await
                .db_context("loading memberships")?;
        ids.iter().map(|s| conversation_id(s)).collect()
    }

    pub async fn create_direct(&self, a: &UserId, b: &UserId) -> Result<(Conversation, bool)> {
        let key = direct_key(a, b);
        let now = Timestamp::now().millis();
        let mut tx = self.begin().await?;
        ensure_users(&mut tx, &[a, b]).await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = ?")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await
                .db_context("finding the direct conversation")?;
        // The single writer makes check-then-insert safe here.
        let (id, created) = match existing {
            Some(id) => (conversation_id(&id)?, false),
            None => {
                let id = ConversationId::new();
                sqlx::query(
                    "INSERT INTO conversations (id, kind, direct_key, created_at, last_activity_at)
                     VALUES (?1, 'direct', ?2, ?3, ?3)",
                )
                .bind(id.to_string())
                .bind(&key)
                .bind(now)
                .execute(&mut *tx)
                .await
                .db_context("creating a direct conversation")?;
                insert_members(&mut tx, id, &[(a, Role::Member), (b, Role::Member)], now).await?;
                (id, true)
            }
        };
        let conversation = load_one(&mut tx, id).await?;
        tx.commit().await.db_context("committing")?;
        Ok((conversation, created))
    }

    pub async fn create_group(
        &self,
        owner: &UserId,
        title: &ConversationTitle,
        members: &[UserId],
    ) -> Result<Conversation> {
        let id = ConversationId::new();
        let now = Timestamp::now().millis();
        let mut tx = self.begin().await?;
        let mut everyone = vec![owner];
        everyone.extend(members);
        ensure_users(&mut tx, &everyone).await?;
        sqlx::query(
            "INSERT INTO conversations (id, kind, title, created_at, last_activity_at)
             VALUES (?1, 'group', ?2, ?3, ?3)",
        )
        .bind(id.to_string())
        .bind(title.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .db_context("creating a group")?;
        let mut roles = vec![(owner, Role::Owner)];
        roles.extend(members.iter().map(|m| (m, Role::Member)));
        insert_members(&mut tx, id, &roles, now).await?;
        let conversation = load_one(&mut tx, id).await?;
        tx.commit().await.db_context("committing")?;
        Ok(conversation)
    }

    pub async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        let mut conn = self.readers.acquire().await.db_context("acquiring")?;
        let heads = load_heads(&mut conn, &[id]).await?;
        Ok(load_full(&mut conn, heads).await?.pop())
    }

    pub async fn conversations_of(&self, user: &UserId) -> Result<Vec<Conversation>> {
        let mut conn = self.readers.acquire().await.db_context("acquiring")?;
        let rows = sqlx::query(
            "SELECT c.id, c.kind, c.title, c.created_at, c.last_seq, mb.last_read_seq,
                    (SELECT count(*) FROM messages m
                     WHERE m.conversation_id = c.id AND m.seq > mb.last_read_seq
                       AND m.deleted_at IS NULL AND m.sender_id <> mb.user_id) AS unread
             FROM members mb JOIN conversations c ON c.id = mb.conversation_id
             WHERE mb.user_id = ?
             ORDER BY c.last_activity_at DESC, c.id DESC",
        )
        .bind(user.as_str())
        .fetch_all(&mut *conn)
        .await
        .db_context("listing conversations")?;
        let heads = rows.iter().map(head_from_row).collect::<Result<_>>()?;
        load_full(&mut conn, heads).await
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
        let ids = serde_json::to_string(&users.iter().map(UserId::as_str).collect::<Vec<_>>())
            .expect("strings serialise");
        let rows = sqlx::query(
            "SELECT u.id, u.last_seen_at FROM users u
             WHERE u.id IN (SELECT value FROM json_each(?2)) AND EXISTS (
                 SELECT 1 FROM members a JOIN members b ON b.conversation_id = a.conversation_id
                 WHERE a.user_id = ?1 AND b.user_id = u.id)",
        )
        .bind(viewer.as_str())
        .bind(ids)
        .fetch_all(&self.readers)
        .await
        .db_context("reading last seen times")?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    UserId::from_db(r.get(0)),
                    r.get::<Option<i64>, _>(1).map(Timestamp),
                )
            })
            .collect())
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

    pub async fn change_members<F>(
        &self,
        id: ConversationId,
        names: &[UserId],
        decide: F,
    ) -> Result<Option<MembershipChange>>
    where
        F: FnOnce(&Conversation, &[UserId]) -> Result<MembershipPlan> + Send,
    {
        // Holding the only write connection is the lock: nothing else writes meanwhile.
        let mut tx = self.begin().await?;
        let heads = load_heads(&mut tx, &[id]).await?;
        let Some(before) = load_full(&mut tx, heads).await?.pop() else {
            return Ok(None);
        };
        let departed: Vec<UserId> = if names.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<&str> = names.iter().map(UserId::as_str).collect();
            sqlx::query_scalar::<_, String>(
                "SELECT user_id FROM departures
                 WHERE conversation_id = ? AND user_id IN (SELECT value FROM json_each(?))",
            )
            .bind(id.to_string())
            .bind(serde_json::to_string(&ids).expect("strings serialise"))
            .fetch_all(&mut *tx)
            .await
            .db_context("loading departures")?
            .iter()
            .map(|u| UserId::from_db(u))
            .collect()
        };
        let plan = decide(&before, &departed)?;
        if plan.is_empty() {
            return Ok(Some(MembershipChange {
                after: before.clone(),
                before,
            }));
        }
        let now = Timestamp::now().millis();
        if !plan.add.is_empty() {
            let users: Vec<&UserId> = plan.add.iter().collect();
            ensure_users(&mut tx, &users).await?;
            let roles: Vec<_> = plan.add.iter().map(|u| (u, Role::Member)).collect();
            insert_members(&mut tx, id, &roles, now).await?;
        }
        for user in &plan.remove {
            sqlx::query("DELETE FROM members WHERE conversation_id = ? AND user_id = ?")
                .bind(id.to_string())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .db_context("removing members")?;
        }
        for (user, role) in &plan.set_role {
            sqlx::query("UPDATE members SET role = ? WHERE conversation_id = ? AND user_id = ?")
                .bind(role.as_str())
                .bind(id.to_string())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .db_context("changing a role")?;
        }
        for user in &plan.departures {
            sqlx::query(
                "INSERT INTO departures (conversation_id, user_id, left_at) VALUES (?, ?, ?)
                 ON CONFLICT (conversation_id, user_id) DO UPDATE SET left_at = excluded.left_at",
            )
            .bind(id.to_string())
            .bind(user.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .db_context("recording departures")?;
        }
        let after = load_one(&mut tx, id).await?;
        tx.commit().await.db_context("committing")?;
        Ok(Some(MembershipChange { before, after }))
    }

    /// Writes a batch in a fixed number of statements whatever its size: the batch travels as
    /// JSON arrays that SQLite unpacks with `json_each` (its way to bind a list), so a batch of
    /// 500 costs about what a batch of 5 does.
    ///
    /// One attempt (see [`Store::insert_messages`](super::Store::insert_messages)); `Ok(None)`
    /// when the insert skipped a row the plan didn't expect it to.
    pub(crate) async fn try_insert_messages(
        &self,
        batch: &[NewMessage],
        look_up: bool,
    ) -> Result<Option<Vec<SendOutcome>>> {
        let keys = serde_json::to_string(
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
        .expect("strings serialise");
        // One writer connection: nothing can change the conversations between these statements.
        let mut tx = self.begin().await?;

        let rows = sqlx::query(
            "SELECT id, last_seq FROM conversations
             WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(?))",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await
        .db_context("reading conversations' seq")?;
        let last_seq: HashMap<ConversationId, i64> = rows
            .iter()
            .map(|r| Ok((conversation_id(r.get(0))?, r.get(1))))
            .collect::<Result<_>>()?;

        let (members, existing) = if look_up {
            let rows = sqlx::query(
                "SELECT conversation_id, user_id FROM members
                 WHERE (conversation_id, user_id) IN
                       (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
            )
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await
            .db_context("checking senders' membership")?;
            let members: HashSet<(ConversationId, String)> = rows
                .iter()
                .map(|r| Ok((conversation_id(r.get(0))?, r.get(1))))
                .collect::<Result<_>>()?;
            let rows = sqlx::query(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m
                 WHERE (m.conversation_id, m.sender_id, m.client_id) IN
                       (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                               json_extract(value, '$[2]') FROM json_each(?))"
            ))
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await
            .db_context("looking up retried sends")?;
            let existing = by_send_key(rows.iter().map(message_from_row).collect::<Result<_>>()?);
            (Some(members), existing)
        } else {
            (None, HashMap::new())
        };

        let (outcomes, new_last) = plan_batch(
            batch,
            &last_seq,
            // Until a skipped row says otherwise, every sender is taken to be a member: the
            // insert checks it.
            |c, u| {
                members
                    .as_ref()
                    .is_none_or(|m| m.contains(&(c, u.as_str().to_owned())))
            },
            existing,
            Timestamp::now(),
        );
        let stored: Vec<_> = outcomes
            .iter()
            .filter_map(|o| match o {
                SendOutcome::Stored(m) => Some((
                    m.id.to_string(),
                    m.conversation_id.to_string(),
                    m.seq,
                    m.sender_id.as_str(),
                    m.client_id.as_str(),
                    m.body.as_deref(),
                    m.created_at.millis(),
                )),
                _ => None,
            })
            .collect();
        if !stored.is_empty() {
            let activity = stored[0].6;
            let inserted = sqlx::query(
                "INSERT INTO messages (id, conversation_id, seq, sender_id, client_id, body, created_at)
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                        json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                        json_extract(value, '$[4]'), json_extract(value, '$[5]'),
                        json_extract(value, '$[6]')
                 FROM json_each(?) AS t
                 WHERE EXISTS (SELECT 1 FROM members mb
                               WHERE mb.conversation_id = json_extract(t.value, '$[1]')
                                 AND mb.user_id = json_extract(t.value, '$[3]'))
                 ON CONFLICT (conversation_id, sender_id, client_id) DO NOTHING",
            )
            .bind(serde_json::to_string(&stored).expect("values serialise"))
            .execute(&mut *tx)
            .await
            .db_context("inserting messages")?
            .rows_affected();
            if inserted != stored.len() as u64 {
                // A non-member or a retry we didn't look up: its seq would leave a gap. Start
                // over, looking them up.
                tx.rollback().await.db_context("rolling back")?;
                return Ok(None);
            }
            let seqs: Vec<(String, i64)> =
                new_last.iter().map(|(c, s)| (c.to_string(), *s)).collect();
            sqlx::query(
                "UPDATE conversations
                 SET last_seq = (SELECT json_extract(value, '$[1]') FROM json_each(?1)
                                 WHERE json_extract(value, '$[0]') = conversations.id),
                     last_activity_at = ?2
                 WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(?1))",
            )
            .bind(serde_json::to_string(&seqs).expect("values serialise"))
            .bind(activity)
            .execute(&mut *tx)
            .await
            .db_context("advancing conversations' seq")?;
        }
        tx.commit().await.db_context("committing messages")?;
        Ok(Some(outcomes))
    }

    pub async fn change_message<F>(
        &self,
        conversation: ConversationId,
        message: MessageId,
        user: &UserId,
        decide: F,
    ) -> Result<Option<Message>>
    where
        F: FnOnce(&Message, Option<Role>) -> Result<MessageChange> + Send,
    {
        let mut tx = self.begin().await?;
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM members WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(conversation.to_string())
        .bind(user.as_str())
        .fetch_optional(&mut *tx)
        .await
        .db_context("checking membership")?;
        let role = role.as_deref().and_then(Role::from_db);
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.id = ? AND m.conversation_id = ?"
        ))
        .bind(message.to_string())
        .bind(conversation.to_string())
        .fetch_optional(&mut *tx)
        .await
        .db_context("loading the message")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let current = message_from_row(&row)?;
        let now = Timestamp::now().millis();
        let query = match decide(&current, role)? {
            MessageChange::Unchanged => return Ok(Some(current)),
            MessageChange::Edit(body) => sqlx::query(concat!(
                "UPDATE messages SET body = ?1, edited_at = ?2, changed_at = ?2 WHERE id = ?3 RETURNING ",
                returned_columns!()
            ))
            .bind(body.into_string())
            .bind(now),
            MessageChange::Delete => sqlx::query(concat!(
                "UPDATE messages SET body = NULL, deleted_at = ?1, changed_at = ?1 WHERE id = ?2 RETURNING ",
                returned_columns!()
            ))
            .bind(now),
        };
        let row = query
            .bind(message.to_string())
            .fetch_one(&mut *tx)
            .await
            .db_context("updating the message")?;
        let updated = message_from_row(&row)?;
        tx.commit().await.db_context("committing")?;
        Ok(Some(updated))
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
        let member_of: Vec<String> =
            sqlx::query_scalar("SELECT conversation_id FROM members WHERE user_id = ?")
                .bind(user.as_str())
                .fetch_all(&mut *conn)
                .await
                .db_context("checking memberships for sync")?;
        let member_of: HashSet<String> = member_of.into_iter().collect();
        let mut updates = Vec::new();
        for cursor in cursors {
            let conversation = cursor.conversation_id;
            if !member_of.contains(&conversation.to_string()) {
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
                    let rows = sqlx::query(concat!(
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
                    rows.iter().map(message_from_row).collect::<Result<_>>()?
                }
            };
            updates.push(sync_update(cursor, messages, changed, limit));
        }
        Ok(updates)
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin()
            .await
            .db_context("beginning a transaction")
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
    let rows = sqlx::query(sql)
        .bind(conversation.to_string())
        .bind(after)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
        .db_context("reading messages")?;
    rows.iter().map(message_from_row).collect()
}

async fn ensure_users(conn: &mut SqliteConnection, ids: &[&UserId]) -> Result<()> {
    let now = Timestamp::now().millis();
    for id in ids {
        sqlx::query("INSERT INTO users (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING")
            .bind(id.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await
            .db_context("recording users")?;
    }
    Ok(())
}

async fn insert_members(
    conn: &mut SqliteConnection,
    conversation: ConversationId,
    members: &[(&UserId, Role)],
    now: i64,
) -> Result<()> {
    for (user, role) in members {
        sqlx::query(
            "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(conversation.to_string())
        .bind(user.as_str())
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await
        .db_context("adding members")?;
    }
    Ok(())
}

async fn load_one(conn: &mut SqliteConnection, id: ConversationId) -> Result<Conversation> {
    let heads = load_heads(conn, &[id]).await?;
    load_full(conn, heads)
        .await?
        .pop()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("conversation {id} vanished")))
}

/// A JSON array of ids, for `IN (SELECT value FROM json_each(?))`: SQLite's way to bind a list.
fn json_ids(ids: impl IntoIterator<Item = ConversationId>) -> String {
    serde_json::to_string(&ids.into_iter().map(|i| i.to_string()).collect::<Vec<_>>())
        .expect("strings serialise")
}

async fn load_heads(
    conn: &mut SqliteConnection,
    ids: &[ConversationId],
) -> Result<Vec<ConversationHead>> {
    let rows = sqlx::query(
        "SELECT id, kind, title, created_at, last_seq FROM conversations
         WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_ids(ids.iter().copied()))
    .fetch_all(conn)
    .await
    .db_context("loading conversations")?;
    rows.iter().map(head_from_row).collect()
}

async fn load_full(
    conn: &mut SqliteConnection,
    heads: Vec<ConversationHead>,
) -> Result<Vec<Conversation>> {
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let ids = json_ids(heads.iter().map(|h| h.id));
    let rows = sqlx::query(
        "SELECT mb.conversation_id, mb.user_id, u.name, mb.role, mb.joined_at, mb.last_read_seq
         FROM members mb JOIN users u ON u.id = mb.user_id
         WHERE mb.conversation_id IN (SELECT value FROM json_each(?))",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .db_context("loading members")?;
    let members = rows
        .iter()
        .map(|r| {
            let role: &str = r.get(3);
            Ok((
                conversation_id(r.get(0))?,
                Member {
                    user_id: UserId::from_db(r.get(1)),
                    name: r.get(2),
                    role: Role::from_db(role).ok_or_else(|| corrupt("role", role))?,
                    joined_at: Timestamp(r.get(4)),
                    last_read_seq: r.get(5),
                },
            ))
        })
        .collect::<Result<_>>()?;
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM conversations c
         JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq
         WHERE c.id IN (SELECT value FROM json_each(?))"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .db_context("loading last messages")?;
    let last_messages = rows.iter().map(message_from_row).collect::<Result<_>>()?;
    Ok(assemble(heads, members, last_messages))
}

fn head_from_row(r: &SqliteRow) -> Result<ConversationHead> {
    let kind: &str = r.get(1);
    Ok(ConversationHead {
        id: conversation_id(r.get(0))?,
        kind: ConversationKind::from_db(kind).ok_or_else(|| corrupt("kind", kind))?,
        title: r.get(2),
        created_at: Timestamp(r.get(3)),
        last_seq: r.get(4),
        // Columns 5 and 6 are present when listing a member's own conversations.
        read_state: (r.len() > 6).then(|| ReadState {
            last_read_seq: r.get(5),
            unread_count: r.get(6),
        }),
    })
}

fn message_from_row(r: &SqliteRow) -> Result<Message> {
    Ok(Message {
        id: MessageId(uuid(r.get(0))?),
        conversation_id: conversation_id(r.get(1))?,
        seq: r.get(2),
        sender_id: UserId::from_db(r.get(3)),
        client_id: r.get(4),
        body: r.get(5),
        created_at: Timestamp(r.get(6)),
        edited_at: r.get::<Option<i64>, _>(7).map(Timestamp),
        deleted_at: r.get::<Option<i64>, _>(8).map(Timestamp),
    })
}

fn uuid(s: &str) -> Result<Uuid> {
    Uuid::try_parse(s).map_err(|_| corrupt("uuid", s))
}

fn conversation_id(s: &str) -> Result<ConversationId> {
    uuid(s).map(ConversationId)
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(anyhow::anyhow!(
        "unexpected {what} {value:?} in the database"
    ))
}
