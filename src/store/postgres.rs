//! The PostgreSQL backend.
//!
//! Lists of values travel as arrays (`UNNEST($1::uuid[], …)`) so that a batch or a set of
//! conversations costs one round trip, not one per item.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};
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

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
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
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
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
        Ok(Self { pool })
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
    ) -> Result<Vec<ConversationId>> {
        // Insert-if-new and update-if-renamed are separate CTEs so that the common case (known
        // user, same name) writes nothing and takes no row lock.
        let rows = sqlx::query(
            "WITH ins AS (
                 INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING
             ), upd AS (
                 UPDATE users SET name = $2
                 WHERE id = $1 AND $2::text IS NOT NULL AND name IS DISTINCT FROM $2
             )
             SELECT conversation_id FROM members WHERE user_id = $1",
        )
        .bind(user.as_str())
        .bind(name.map(DisplayName::as_str))
        .bind(Timestamp::now().millis())
        .fetch_all(&self.pool)
        .await
        .db_context("recording the user and loading memberships")?;
        Ok(rows
            .iter()
            .map(|r| ConversationId(r.get::<Uuid, _>(0)))
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

    pub async fn memberships(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        let ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT conversation_id FROM members WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await
                .db_context("loading memberships")?;
        Ok(ids.into_iter().map(ConversationId).collect())
    }

    pub async fn create_direct(&self, a: &UserId, b: &UserId) -> Result<(Conversation, bool)> {
        let key = direct_key(a, b);
        let now = Timestamp::now().millis();
        let mut tx = self.begin().await?;
        ensure_users(&mut tx, &[a.as_str(), b.as_str()]).await?;
        let created: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO conversations (id, kind, direct_key, created_at, last_activity_at)
             VALUES ($1, 'direct', $2, $3, $3)
             ON CONFLICT (direct_key) DO NOTHING
             RETURNING id",
        )
        .bind(ConversationId::new().0)
        .bind(&key)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .db_context("creating a direct conversation")?;
        let id = match created {
            Some(id) => {
                insert_members(&mut tx, id, &[(a, Role::Member), (b, Role::Member)], now).await?;
                id
            }
            // Created before, or concurrently by the other side (the unique key decided).
            None => sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = $1")
                .bind(&key)
                .fetch_one(&mut *tx)
                .await
                .db_context("finding the direct conversation")?,
        };
        let conversation = load_one(&mut tx, ConversationId(id)).await?;
        tx.commit().await.db_context("committing")?;
        Ok((conversation, created.is_some()))
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
        let mut everyone: Vec<&str> = vec![owner.as_str()];
        everyone.extend(members.iter().map(UserId::as_str));
        ensure_users(&mut tx, &everyone).await?;
        sqlx::query(
            "INSERT INTO conversations (id, kind, title, created_at, last_activity_at)
             VALUES ($1, 'group', $2, $3, $3)",
        )
        .bind(id.0)
        .bind(title.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .db_context("creating a group")?;
        let mut roles = vec![(owner, Role::Owner)];
        roles.extend(members.iter().map(|m| (m, Role::Member)));
        insert_members(&mut tx, id.0, &roles, now).await?;
        let conversation = load_one(&mut tx, id).await?;
        tx.commit().await.db_context("committing")?;
        Ok(conversation)
    }

    pub async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        let mut conn = self.pool.acquire().await.db_context("acquiring")?;
        let heads = load_heads(&mut conn, &[id.0], false).await?;
        Ok(load_full(&mut conn, heads).await?.pop())
    }

    pub async fn conversations_of(&self, user: &UserId) -> Result<Vec<Conversation>> {
        let mut conn = self.pool.acquire().await.db_context("acquiring")?;
        let rows = sqlx::query(
            "SELECT c.id, c.kind, c.title, c.created_at, c.last_seq, mb.last_read_seq,
                    (SELECT count(*) FROM messages m
                     WHERE m.conversation_id = c.id AND m.seq > mb.last_read_seq
                       AND m.deleted_at IS NULL AND m.sender_id <> mb.user_id) AS unread
             FROM members mb JOIN conversations c ON c.id = mb.conversation_id
             WHERE mb.user_id = $1
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
        let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let rows = sqlx::query(
            "SELECT u.id, u.last_seen_at FROM users u
             WHERE u.id = ANY($2) AND EXISTS (
                 SELECT 1 FROM members a JOIN members b ON b.conversation_id = a.conversation_id
                 WHERE a.user_id = $1 AND b.user_id = u.id)",
        )
        .bind(viewer.as_str())
        .bind(&ids)
        .fetch_all(&self.pool)
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

    pub async fn change_members<F>(
        &self,
        id: ConversationId,
        names: &[UserId],
        decide: F,
    ) -> Result<Option<MembershipChange>>
    where
        F: FnOnce(&Conversation, &[UserId]) -> Result<MembershipPlan> + Send,
    {
        let mut tx = self.begin().await?;
        // Locking the conversation row serialises membership changes with each other and with
        // message writes, which lock the same row.
        let heads = load_heads(&mut tx, &[id.0], true).await?;
        let Some(before) = load_full(&mut tx, heads).await?.pop() else {
            return Ok(None);
        };
        let departed: Vec<UserId> = if names.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<&str> = names.iter().map(UserId::as_str).collect();
            sqlx::query_scalar::<_, String>(
                "SELECT user_id FROM departures WHERE conversation_id = $1 AND user_id = ANY($2)",
            )
            .bind(id.0)
            .bind(&ids)
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
            let ids: Vec<&str> = plan.add.iter().map(UserId::as_str).collect();
            ensure_users(&mut tx, &ids).await?;
            let roles: Vec<_> = plan.add.iter().map(|u| (u, Role::Member)).collect();
            insert_members(&mut tx, id.0, &roles, now).await?;
        }
        if !plan.remove.is_empty() {
            let ids: Vec<&str> = plan.remove.iter().map(UserId::as_str).collect();
            sqlx::query("DELETE FROM members WHERE conversation_id = $1 AND user_id = ANY($2)")
                .bind(id.0)
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .db_context("removing members")?;
        }
        for (user, role) in &plan.set_role {
            sqlx::query("UPDATE members SET role = $3 WHERE conversation_id = $1 AND user_id = $2")
                .bind(id.0)
                .bind(user.as_str())
                .bind(role.as_str())
                .execute(&mut *tx)
                .await
                .db_context("changing a role")?;
        }
        if !plan.departures.is_empty() {
            let ids: Vec<&str> = plan.departures.iter().map(UserId::as_str).collect();
            sqlx::query(
                "INSERT INTO departures (conversation_id, user_id, left_at)
                 SELECT $1, u, $3 FROM UNNEST($2::text[]) AS u
                 ON CONFLICT (conversation_id, user_id) DO UPDATE SET left_at = EXCLUDED.left_at",
            )
            .bind(id.0)
            .bind(&ids)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db_context("recording departures")?;
        }
        let after = load_one(&mut tx, id).await?;
        tx.commit().await.db_context("committing")?;
        Ok(Some(MembershipChange { before, after }))
    }

    /// Writes a batch in one transaction of two statements (four round trips with BEGIN and
    /// COMMIT), whatever its size.
    ///
    /// One attempt (see [`Store::insert_messages`](super::Store::insert_messages)); `Ok(None)`
    /// when the insert skipped a row the plan didn't expect it to.
    pub(crate) async fn try_insert_messages(
        &self,
        batch: &[NewMessage],
        look_up: bool,
    ) -> Result<Option<Vec<SendOutcome>>> {
        let mut tx = self.begin().await?;

        // 1. Lock the conversations in id order (so concurrent batches can't deadlock) and read
        //    their last seq.
        let mut ids: Vec<Uuid> = batch.iter().map(|m| m.conversation_id.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let rows = sqlx::query(
            "SELECT id, last_seq FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .db_context("locking conversations")?;
        let last_seq: HashMap<ConversationId, i64> = rows
            .iter()
            .map(|row| (ConversationId(row.get(0)), row.get(1)))
            .collect();

        // 2. Only when a first attempt skipped a row: which senders are members, and which sends
        //    are retries of stored messages. Read after the lock, in statements of their own, so
        //    a membership change that committed while we waited for the lock is seen.
        let (members, existing) = if look_up {
            let convs: Vec<Uuid> = batch.iter().map(|m| m.conversation_id.0).collect();
            let senders: Vec<&str> = batch.iter().map(|m| m.sender_id.as_str()).collect();
            let clients: Vec<&str> = batch.iter().map(|m| m.client_id.as_str()).collect();
            let members: HashSet<(Uuid, String)> = sqlx::query_as(
                "SELECT DISTINCT k.c, k.s FROM UNNEST($1::uuid[], $2::text[]) AS k(c, s)
                 JOIN members mb ON mb.conversation_id = k.c AND mb.user_id = k.s",
            )
            .bind(&convs)
            .bind(&senders)
            .fetch_all(&mut *tx)
            .await
            .db_context("checking senders' membership")?
            .into_iter()
            .collect();
            let rows = sqlx::query(concat!(
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
                    .is_none_or(|m| m.contains(&(c.0, u.as_str().to_owned())))
            },
            existing,
            Timestamp::now(),
        );

        // 3. Insert the new messages (those whose sender is a member and whose key is new) and
        //    move each conversation's last seq, in one statement.
        let stored: Vec<&Message> = outcomes
            .iter()
            .filter_map(|o| match o {
                SendOutcome::Stored(m) => Some(m),
                _ => None,
            })
            .collect();
        if !stored.is_empty() {
            let ids: Vec<Uuid> = stored.iter().map(|m| m.id.0).collect();
            let convs: Vec<Uuid> = stored.iter().map(|m| m.conversation_id.0).collect();
            let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
            let senders: Vec<&str> = stored.iter().map(|m| m.sender_id.as_str()).collect();
            let clients: Vec<&str> = stored.iter().map(|m| m.client_id.as_str()).collect();
            let bodies: Vec<&str> = stored
                .iter()
                .map(|m| m.body.as_deref().unwrap_or_default())
                .collect();
            let now = stored[0].created_at.millis();
            let (last_ids, last_seqs): (Vec<Uuid>, Vec<i64>) =
                new_last.iter().map(|(c, s)| (c.0, *s)).unzip();
            let inserted: i64 = sqlx::query_scalar(
                "WITH ins AS (
                     INSERT INTO messages (id, conversation_id, seq, sender_id, client_id, body, created_at)
                     SELECT id, c, s, snd, cl, b, $7
                     FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[])
                          AS t(id, c, s, snd, cl, b)
                     WHERE EXISTS (SELECT 1 FROM members mb
                                   WHERE mb.conversation_id = t.c AND mb.user_id = t.snd)
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
            .fetch_one(&mut *tx)
            .await
            .db_context("inserting messages")?;
            if inserted != stored.len() as i64 {
                // A non-member or a retry we didn't look up: its seq would leave a gap. Start
                // over, looking them up.
                tx.rollback().await.db_context("rolling back")?;
                return Ok(None);
            }
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
            "SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation.0)
        .bind(user.as_str())
        .fetch_optional(&mut *tx)
        .await
        .db_context("checking membership")?;
        let role = role.as_deref().and_then(Role::from_db);
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m
             WHERE m.id = $1 AND m.conversation_id = $2 FOR UPDATE"
        ))
        .bind(message.0)
        .bind(conversation.0)
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
                "UPDATE messages m SET body = $3, edited_at = $4, changed_at = $4
                     WHERE m.id = $1 AND m.conversation_id = $2 RETURNING ",
                message_columns!()
            ))
            .bind(message.0)
            .bind(conversation.0)
            .bind(body.into_string())
            .bind(now),
            MessageChange::Delete => sqlx::query(concat!(
                "UPDATE messages m SET body = NULL, deleted_at = $3, changed_at = $3
                 WHERE m.id = $1 AND m.conversation_id = $2 RETURNING ",
                message_columns!()
            ))
            .bind(message.0)
            .bind(conversation.0)
            .bind(now),
        };
        let row = query
            .fetch_one(&mut *tx)
            .await
            .db_context("updating the message")?;
        let updated = message_from_row(&row)?;
        tx.commit().await.db_context("committing")?;
        Ok(Some(updated))
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
        let rows = sqlx::query(sql)
            .bind(conversation.0)
            .bind(q.after_seq.unwrap_or(0))
            .bind(q.before_seq.unwrap_or(i64::MAX))
            .bind(i64::from(q.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .db_context("reading history")?;
        let messages = rows.iter().map(message_from_row).collect::<Result<_>>()?;
        Ok(page_from_rows(messages, q))
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
        let rows = sqlx::query(concat!(
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
        let mut new: HashMap<ConversationId, Vec<Message>> = HashMap::new();
        for row in &rows {
            let m = message_from_row(row)?;
            new.entry(m.conversation_id).or_default().push(m);
        }
        let mut changed: HashMap<ConversationId, Vec<Message>> = HashMap::new();
        if let Some(since) = changed_since {
            let changed_afters: Vec<i64> = cursors.iter().map(|c| c.changed_after).collect();
            let rows = sqlx::query(concat!(
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
            for row in &rows {
                let m = message_from_row(row)?;
                changed.entry(m.conversation_id).or_default().push(m);
            }
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

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool
            .begin()
            .await
            .db_context("beginning a transaction")
    }
}

/// Makes sure rows exist for these users (named in a conversation before they ever connected).
async fn ensure_users(conn: &mut sqlx::PgConnection, ids: &[&str]) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, created_at) SELECT u, $2 FROM UNNEST($1::text[]) AS t(u)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(ids)
    .bind(Timestamp::now().millis())
    .execute(conn)
    .await
    .db_context("recording users")?;
    Ok(())
}

async fn insert_members(
    conn: &mut sqlx::PgConnection,
    conversation: Uuid,
    members: &[(&UserId, Role)],
    now: i64,
) -> Result<()> {
    let users: Vec<&str> = members.iter().map(|(u, _)| u.as_str()).collect();
    let roles: Vec<&str> = members.iter().map(|(_, r)| r.as_str()).collect();
    sqlx::query(
        "INSERT INTO members (conversation_id, user_id, role, joined_at)
         SELECT $1, u, r, $4 FROM UNNEST($2::text[], $3::text[]) AS t(u, r)
         ON CONFLICT DO NOTHING",
    )
    .bind(conversation)
    .bind(&users)
    .bind(&roles)
    .bind(now)
    .execute(conn)
    .await
    .db_context("adding members")?;
    Ok(())
}

async fn load_one(conn: &mut sqlx::PgConnection, id: ConversationId) -> Result<Conversation> {
    let heads = load_heads(conn, &[id.0], false).await?;
    load_full(conn, heads)
        .await?
        .pop()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("conversation {id} vanished")))
}

async fn load_heads(
    conn: &mut sqlx::PgConnection,
    ids: &[Uuid],
    lock: bool,
) -> Result<Vec<ConversationHead>> {
    const SELECT: &str =
        "SELECT id, kind, title, created_at, last_seq FROM conversations WHERE id = ANY($1)";
    const SELECT_LOCKED: &str = "SELECT id, kind, title, created_at, last_seq FROM conversations
         WHERE id = ANY($1) ORDER BY id FOR UPDATE";
    let rows = sqlx::query(if lock { SELECT_LOCKED } else { SELECT })
        .bind(ids)
        .fetch_all(conn)
        .await
        .db_context("loading conversations")?;
    rows.iter().map(head_from_row).collect()
}

/// Attaches members and last messages to conversation heads: two more queries for any number.
async fn load_full(
    conn: &mut sqlx::PgConnection,
    heads: Vec<ConversationHead>,
) -> Result<Vec<Conversation>> {
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = heads.iter().map(|h| h.id.0).collect();
    let rows = sqlx::query(
        "SELECT mb.conversation_id, mb.user_id, u.name, mb.role, mb.joined_at, mb.last_read_seq
         FROM members mb JOIN users u ON u.id = mb.user_id
         WHERE mb.conversation_id = ANY($1)",
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
                ConversationId(r.get(0)),
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
    let (with_last, seqs): (Vec<Uuid>, Vec<i64>) = heads
        .iter()
        .filter(|h| h.last_seq > 0)
        .map(|h| (h.id.0, h.last_seq))
        .unzip();
    let last_messages = if with_last.is_empty() {
        Vec::new()
    } else {
        let rows = sqlx::query(concat!("SELECT ", message_columns!(), " FROM messages m
             JOIN UNNEST($1::uuid[], $2::bigint[]) AS k(c, s) ON m.conversation_id = k.c AND m.seq = k.s"))
        .bind(&with_last)
        .bind(&seqs)
        .fetch_all(&mut *conn)
        .await
        .db_context("loading last messages")?;
        rows.iter().map(message_from_row).collect::<Result<_>>()?
    };
    Ok(assemble(heads, members, last_messages))
}

fn head_from_row(r: &PgRow) -> Result<ConversationHead> {
    let kind: &str = r.get(1);
    Ok(ConversationHead {
        id: ConversationId(r.get(0)),
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

fn message_from_row(r: &PgRow) -> Result<Message> {
    Ok(Message {
        id: MessageId(r.try_get(0).db_context("reading a message")?),
        conversation_id: ConversationId(r.get(1)),
        seq: r.get(2),
        sender_id: UserId::from_db(r.get(3)),
        client_id: r.get(4),
        body: r.get(5),
        created_at: Timestamp(r.get(6)),
        edited_at: r.get::<Option<i64>, _>(7).map(Timestamp),
        deleted_at: r.get::<Option<i64>, _>(8).map(Timestamp),
    })
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(anyhow::anyhow!(
        "unexpected {what} {value:?} in the database"
    ))
}
