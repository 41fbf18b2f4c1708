//! Storage: the one place that knows SQL. PostgreSQL for production, SQLite for running alone;
//! both implement the same operations with the same semantics and pass the same tests.
//!
//! The store knows nothing about sockets. Rules that decide *what* to change (who may add
//! members, who may edit a message) live in `chat::policy` and are handed in as closures, so
//! they are written once, while the store makes each decision and its write one atomic step.
//!
//! What the backends share is written once: the write transactions (`transactions.rs`, over
//! each backend's statements), the rules of a batch (`plan.rs`), the shaping of rows into
//! objects (`assemble.rs`) and the rows themselves, decoded by column name (`rows.rs`).

mod assemble;
mod checkpoint;
mod plan;
mod postgres;
mod rows;
mod sqlite;
mod transactions;
mod writer;

use anyhow::bail;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use writer::{SendReply, Writer};

use crate::domain::{
    Attachment, AttachmentId, Ban, ClientId, Conversation, ConversationId, ConversationKind,
    ConversationTitle, DisplayName, ExternalId, Member, MemberCursor, Message, MessageBody,
    MessageId, Role, SearchQuery, Timestamp, UserId,
};
use crate::error::{Error, Result};
pub use crate::protocol::replies::{Page, SyncUpdate};
use crate::protocol::requests::SyncCursor;

/// A message to be written by the group-commit writer.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    /// `None`: a system message, from the host app's server (no membership needed).
    pub sender_id: Option<UserId>,
    pub client_id: ClientId,
    pub body: MessageBody,
    /// Uploads to claim for it, in order: the sender's own, not yet in a message.
    pub attachment_ids: Vec<AttachmentId>,
}

/// What became of one [`NewMessage`].
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// Newly stored: broadcast it.
    Stored(Message),
    /// A retry of a message already stored (same sender, conversation and client id): answer
    /// with the stored one and broadcast nothing.
    Duplicate(Message),
    /// The sender is not a member, or there is no such conversation.
    NotFound,
    /// A direct conversation whose other member blocked the sender.
    Blocked,
    /// Refused for what it carries (an attachment that isn't the sender's to send).
    Refused(Error),
}

/// Which slice of a conversation's history to read.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery {
    pub before_seq: Option<i64>,
    pub after_seq: Option<i64>,
    pub limit: u32,
}

impl HistoryQuery {
    /// Reading forward (oldest first from `after_seq`) or backward (newest first below
    /// `before_seq`, or from the end).
    pub fn ascending(&self) -> bool {
        self.after_seq.is_some()
    }
}

/// Membership changes decided by policy, applied atomically by the store.
#[derive(Debug, Default, Clone)]
pub struct MembershipPlan {
    pub add: Vec<UserId>,
    pub remove: Vec<UserId>,
    /// Role changes of existing members (ownership hand-over).
    pub set_role: Vec<(UserId, Role)>,
    /// Members leaving by their own choice: recorded, so others can't add them back.
    pub departures: Vec<UserId>,
}

impl MembershipPlan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.remove.is_empty()
            && self.set_role.is_empty()
            && self.departures.is_empty()
    }
}

/// A conversation before and after a membership change, and the change. `before` and `after`
/// hold the first members in member order and the users the request involved, not every
/// member of a large group (`member_count` has the whole count): see
/// [`Store::change_members`].
#[derive(Debug, Clone)]
pub struct MembershipChange {
    pub before: Conversation,
    pub after: Conversation,
    /// What was applied (empty: nothing changed).
    pub plan: MembershipPlan,
}

/// What to do to a message, decided by policy.
#[derive(Debug, Clone)]
pub enum MessageChange {
    Edit(MessageBody),
    Delete,
    /// Nothing to write (deleting what is already deleted): return the message as it is.
    Unchanged,
}

// The host app's side: the webhook outbox.

/// A webhook event to record in the outbox, in the transaction of what caused it.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub id: uuid::Uuid,
    pub kind: &'static str,
    /// The event's `data`, as JSON text.
    pub data: String,
    /// `false` for `message.created`, whose recipients the sender adds at its first claim.
    pub resolved: bool,
    pub created_at: i64,
}

impl OutboxEvent {
    pub fn new(kind: &'static str, data: &impl serde::Serialize, resolved: bool) -> Self {
        let now = Timestamp::now().millis();
        Self {
            id: uuid::Uuid::now_v7(),
            kind,
            data: serde_json::to_string(data).expect("event data serializes"),
            resolved,
            created_at: now,
        }
    }
}

/// A claimed outbox row, leased to this node until it is settled.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    #[sqlx(try_from = "rows::DbUuid")]
    pub id: uuid::Uuid,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub data: String,
    pub resolved: bool,
    pub created_at: i64,
    pub attempts: i32,
}

/// What became of one attempt at sending an outbox row.
#[derive(Debug, Clone)]
pub enum OutboxSettle {
    /// The receiver took it (2xx), or there is nothing to send: deleted.
    Done,
    /// Try again at `at` (unix ms).
    Retry { at: i64, error: String },
    /// Given up: kept, marked failed, for the operator.
    Failed { error: String },
}

/// The storage backend.
#[derive(Clone)]
pub enum Store {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

/// Calls the same method (or generic transaction) on whichever backend this is.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Postgres($s) => $call,
            Store::Sqlite($s) => $call,
        }
    };
}

impl Store {
    /// Connects to the database named by `url` and brings its schema up to date.
    /// `search_language`: PostgreSQL's text search configuration for message search
    /// (`simple`, `english`, …); SQLite's tokenizer serves every language alike.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        search_language: &str,
    ) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Its errors name the server and database themselves.
            let store = PgStore::connect(url, max_connections, search_language).await?;
            Ok(Self::Postgres(store))
        } else if url.starts_with("sqlite:") {
            let store = SqliteStore::connect(url, max_connections).await?;
            Ok(Self::Sqlite(store))
        } else {
            bail!("unsupported database url {url:?}: expected sqlite://… or postgres://…")
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        dispatch!(self, s => s.ping().await)
    }

    /// Records the user (and their latest display name) and returns their conversations, each
    /// with its member count. Called on every connect, so it is one round trip.
    pub async fn touch_user(
        &self,
        user: &UserId,
        name: Option<&DisplayName>,
    ) -> Result<Vec<(ConversationId, i64)>> {
        dispatch!(self, s => s.touch_user(user, name).await)
    }

    /// Records the user and their latest display name (without loading anything).
    pub async fn remember_user(&self, user: &UserId, name: Option<&DisplayName>) -> Result<()> {
        dispatch!(self, s => s.remember_user(user, name).await)
    }

    /// Messages after `after` in `conversation` that are neither deleted nor `user`'s own.
    pub async fn unread_count(
        &self,
        conversation: ConversationId,
        user: &UserId,
        after: i64,
    ) -> Result<i64> {
        dispatch!(self, s => s.unread_count(conversation, user, after).await)
    }

    /// The conversations `user` is a member of, each with its member count.
    pub async fn memberships(&self, user: &UserId) -> Result<Vec<(ConversationId, i64)>> {
        dispatch!(self, s => s.memberships(user).await)
    }

    /// Up to `limit` members of `conversation` in member order, after `after` (from the first
    /// without), and how many members it has; `Ok(None)` when `viewer` is not a member (or
    /// there is no such conversation). The order is by role, then join time, then id: members
    /// joining meanwhile come after the others of their role, so a walk through the pages sees
    /// every member who stayed, exactly once.
    pub async fn members_page(
        &self,
        conversation: ConversationId,
        viewer: &UserId,
        after: Option<&MemberCursor>,
        limit: usize,
    ) -> Result<Option<(Vec<Member>, i64)>> {
        dispatch!(self, s => s.members_page(conversation, viewer, after, limit).await)
    }

    /// The memberships of `users` (a batch: one query).
    pub async fn memberships_of(&self, users: &[UserId]) -> Result<Vec<(ConversationId, UserId)>> {
        dispatch!(self, s => s.memberships_of(users).await)
    }

    /// Those of `users` banned at `now`: each with the ban's end (`None`: for good) and whether
    /// they were erased (a ban for good too).
    pub async fn banned_among(
        &self,
        users: &[UserId],
        now: Timestamp,
    ) -> Result<Vec<(UserId, Option<Timestamp>, bool)>> {
        dispatch!(self, s => s.banned_among(users, now).await)
    }

    /// The direct conversation between `a` and `b`, created if needed. `true` when created now.
    pub async fn create_direct(&self, a: &UserId, b: &UserId) -> Result<(Conversation, bool)> {
        let what = transactions::Creation::Direct(a, b);
        dispatch!(self, s => transactions::create(s, what, None).await)
    }

    /// A new group owned by `owner` with `members` (which must not contain `owner`).
    pub async fn create_group(
        &self,
        owner: &UserId,
        title: &ConversationTitle,
        members: &[UserId],
    ) -> Result<Conversation> {
        let what = transactions::Creation::Group {
            owner,
            title,
            members,
        };
        Ok(dispatch!(self, s => transactions::create(s, what, None).await)?.0)
    }

    /// The user's conversations, most recent activity first.
    pub async fn conversations_of(&self, user: &UserId) -> Result<Vec<Conversation>> {
        dispatch!(self, s => s.conversations_of(user).await)
    }

    /// Moves `user`'s read mark in `conversation` forward to `seq` (clamped to the last seq).
    /// `Ok(None)` when not a member; otherwise the mark after the call and whether it moved.
    pub async fn mark_read(
        &self,
        conversation: ConversationId,
        user: &UserId,
        seq: i64,
    ) -> Result<Option<(i64, bool)>> {
        dispatch!(self, s => s.mark_read(conversation, user, seq).await)
    }

    /// When each of `users` was last seen, for those who share a conversation with `viewer`.
    /// Others are left out, so presence can't be probed.
    pub async fn last_seen(
        &self,
        viewer: &UserId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, Option<Timestamp>)>> {
        dispatch!(self, s => s.last_seen(viewer, users).await)
    }

    /// Records when `user` went offline (`None`: online again).
    pub async fn set_last_seen(&self, user: &UserId, at: Option<Timestamp>) -> Result<()> {
        dispatch!(self, s => s.set_last_seen(user, at).await)
    }

    pub async fn is_member(&self, conversation: ConversationId, user: &UserId) -> Result<bool> {
        dispatch!(self, s => s.is_member(conversation, user).await)
    }

    /// Locks the conversation, lets `decide` plan a membership change from its current state
    /// (and which of the users the request `names` left it by their own choice), and applies
    /// the plan in the same transaction. `Ok(None)` when there is no such conversation.
    ///
    /// The state `decide` sees holds the members the request `involves` (the users it names,
    /// and whoever asks) and the first members in member order (enough to find an heir
    /// whoever leaves), with the whole count in `member_count`: a change costs O(request),
    /// not O(group), so a group of 100,000 joined one member at a time costs O(n) in all.
    pub async fn change_members<F>(
        &self,
        conversation: ConversationId,
        names: &[UserId],
        involves: &[UserId],
        decide: F,
    ) -> Result<Option<MembershipChange>>
    where
        F: FnOnce(&Conversation, &[UserId]) -> Result<MembershipPlan> + Send,
    {
        dispatch!(self, s => transactions::change_members(s, conversation, names, involves, decide).await)
    }

    /// Every member's id: for telling every member of a large group of a role change (rare).
    pub async fn member_ids(&self, conversation: ConversationId) -> Result<Vec<UserId>> {
        dispatch!(self, s => s.member_ids(conversation).await)
    }

    /// Writes a batch of messages in one transaction (the group-commit writer's call), assigning
    /// each conversation's next seqs in batch order. Duplicates (retries) and non-members are
    /// answered without writing.
    ///
    /// Non-members and retries are rare, so the first attempt doesn't look for them: its insert
    /// skips rows whose sender isn't a member or whose idempotency key is already stored, and if
    /// it skipped any, the backend rolls back and the batch is planned again, this time looking
    /// both up.
    pub async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<SendOutcome>> {
        dispatch!(self, s => transactions::insert_messages(s, batch).await)
    }

    /// Locks the message, lets `decide` choose a change given the caller's role in the
    /// conversation (`None`: not a member), and applies it. `Ok(None)`: no such message in that
    /// conversation.
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
        dispatch!(self, s => transactions::change_message(s, conversation, message, user, decide).await)
    }

    pub async fn history(&self, conversation: ConversationId, query: HistoryQuery) -> Result<Page> {
        dispatch!(self, s => s.history(conversation, query).await)
    }

    /// For each cursor of a conversation `user` is a member of: up to `limit` messages after it,
    /// and (with `changed_since`) up to `limit` messages at or below it, after its
    /// `changed_after`, changed since then. Each list is read with one row more than `limit`, to
    /// learn whether there are more.
    pub async fn sync(
        &self,
        user: &UserId,
        cursors: &[SyncCursor],
        limit: u32,
        changed_since: Option<Timestamp>,
    ) -> Result<Vec<SyncUpdate>> {
        dispatch!(self, s => s.sync(user, cursors, limit, changed_since).await)
    }

    // The host app's side (server API, moderation, webhooks).

    /// For the server API: a direct conversation between `a` and `b` (found if the pair has
    /// one), or with `external_id`, the conversation that id already names. `true` when created.
    pub async fn create_direct_for_app(
        &self,
        a: &UserId,
        b: &UserId,
        external_id: Option<&ExternalId>,
    ) -> Result<(Conversation, bool)> {
        let what = transactions::Creation::Direct(a, b);
        dispatch!(self, s => transactions::create(s, what, external_id).await)
    }

    /// For the server API: a new group, or with `external_id`, the conversation that id
    /// already names. `true` when created.
    pub async fn create_group_for_app(
        &self,
        owner: &UserId,
        title: &ConversationTitle,
        members: &[UserId],
        external_id: Option<&ExternalId>,
    ) -> Result<(Conversation, bool)> {
        let what = transactions::Creation::Group {
            owner,
            title,
            members,
        };
        dispatch!(self, s => transactions::create(s, what, external_id).await)
    }

    /// Bans a user (replacing a ban they had).
    pub async fn ban(&self, ban: &Ban) -> Result<()> {
        dispatch!(self, s => s.ban(ban).await)
    }

    /// Lifts a user's ban; `false` when they had none.
    pub async fn unban(&self, user: &UserId) -> Result<bool> {
        dispatch!(self, s => s.unban(user).await)
    }

    /// The user's ban in force at `now`, if any.
    pub async fn ban_of(&self, user: &UserId, now: Timestamp) -> Result<Option<Ban>> {
        dispatch!(self, s => s.ban_of(user, now).await)
    }

    /// Erases a user: their name dropped, a ban for good recorded, the bodies of their messages
    /// deleted (returned, as they are now). Their memberships are ended by the caller, one
    /// conversation at a time ([`Store::change_members`]). Idempotent.
    pub async fn erase_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<Message>> {
        dispatch!(self, s => s.erase_user(user, now).await)
    }

    /// `blocker` blocks (`on`) or unblocks `blocked`; idempotent.
    pub async fn set_block(&self, blocker: &UserId, blocked: &UserId, on: bool) -> Result<()> {
        dispatch!(self, s => s.set_block(blocker, blocked, on).await)
    }

    /// Whether `blocker` blocked `blocked`.
    pub async fn is_blocked(&self, blocker: &UserId, blocked: &UserId) -> Result<bool> {
        dispatch!(self, s => s.is_blocked(blocker, blocked).await)
    }

    /// Webhooks on: the transactions record outbox events, and `written` is signalled after
    /// each commit that recorded some.
    pub fn enable_outbox(&mut self, written: std::sync::Arc<tokio::sync::Notify>) {
        dispatch!(self, s => s.outbox = Some(written))
    }

    /// Leases up to `limit` due outbox rows to this node until `lease_until` (unix ms). Rows
    /// still to be resolved (`message.created`) are due only once created by `settled_before`.
    pub async fn claim_outbox(
        &self,
        now: i64,
        settled_before: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        dispatch!(self, s => s.claim_outbox(now, settled_before, lease_until, limit).await)
    }

    /// Completes a `message.created` row's data (or, `None`, deletes it: nobody to tell).
    pub async fn resolve_outbox(&self, id: uuid::Uuid, data: Option<&str>) -> Result<()> {
        dispatch!(self, s => s.resolve_outbox(id, data).await)
    }

    pub async fn settle_outbox(&self, id: uuid::Uuid, settle: &OutboxSettle) -> Result<()> {
        dispatch!(self, s => s.settle_outbox(id, settle, Timestamp::now().millis()).await)
    }

    /// Outbox rows still to be sent (not given up).
    pub async fn outbox_depth(&self) -> Result<i64> {
        dispatch!(self, s => s.outbox_depth().await)
    }

    /// A conversation's kind, member count and members; a large group's members are not
    /// loaded (empty): see `domain::MEMBERS_PAGE`.
    pub async fn kind_and_members(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<(ConversationKind, i64, Vec<UserId>)>> {
        dispatch!(self, s => s.kind_and_members(conversation).await)
    }

    /// Whom `blocker` blocked.
    pub async fn blocked_by(&self, blocker: &UserId) -> Result<Vec<UserId>> {
        dispatch!(self, s => s.blocked_by(blocker).await)
    }
    // Attachments.

    /// Records an upload whose bytes are stored, unclaimed.
    pub async fn insert_attachment(
        &self,
        uploader: &UserId,
        attachment: &Attachment,
        now: Timestamp,
    ) -> Result<()> {
        dispatch!(self, s => s.insert_attachment(uploader, attachment, now).await)
    }

    /// How many uploads of `uploader` no message has claimed yet (and none deleted).
    pub async fn unclaimed_count(&self, uploader: &UserId) -> Result<i64> {
        dispatch!(self, s => s.unclaimed_count(uploader).await)
    }

    /// The attachment, if `viewer` may download it: its uploader before a message claims it,
    /// the members of the message's conversation after; never once deleted.
    pub async fn visible_attachment(
        &self,
        viewer: &UserId,
        id: AttachmentId,
    ) -> Result<Option<Attachment>> {
        dispatch!(self, s => s.visible_attachment(viewer, id).await)
    }

    /// Marks deleted the uploads left unclaimed since before `cutoff`, atomically with respect
    /// to a send claiming them (which skips deleted ones), and returns every deleted
    /// attachment whose bytes are still to go (at most `limit`).
    pub async fn doomed_attachments(
        &self,
        cutoff: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<AttachmentId>> {
        dispatch!(self, s => s.doomed_attachments(cutoff, now, limit).await)
    }

    /// Messages matching `query` in the conversations `user` is a member of now (only
    /// `conversation`, if given), not deleted, older than `before` if given: newest first, at
    /// most `limit`.
    pub async fn search(
        &self,
        user: &UserId,
        query: &SearchQuery,
        conversation: Option<ConversationId>,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        dispatch!(self, s => s.search(user, query, conversation, before, limit).await)
    }

    /// Forgets deleted attachments whose bytes are gone.
    pub async fn forget_attachments(&self, ids: &[AttachmentId]) -> Result<()> {
        dispatch!(self, s => s.forget_attachments(ids).await)
    }
}

/// A database error, with what was being done, classified: a database that can't be reached
/// is `unavailable` (the client may retry), anything else is `internal` (a bug to look at).
pub(crate) fn db_error(e: sqlx::Error, what: &'static str) -> Error {
    let unavailable = is_unavailable(&e);
    let e = anyhow::Error::new(e).context(what);
    if unavailable {
        Error::Unavailable(e.into())
    } else {
        Error::Internal(e.into())
    }
}

/// `.db_context("what")` on a sqlx result: [`db_error`].
pub(crate) trait DbContext<T> {
    fn db_context(self, what: &'static str) -> Result<T>;
}

impl<T> DbContext<T> for std::result::Result<T, sqlx::Error> {
    fn db_context(self, what: &'static str) -> Result<T> {
        self.map_err(|e| db_error(e, what))
    }
}

/// Errors that mean "the database is not there right now", as opposed to "the query is wrong".
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        _ if is_connection_lost(e) => true,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            // PostgreSQL: class 08 (connection exception), 57P01..57P03 (admin shutdown, crash
            // shutdown, cannot connect now), 53300 (too many connections).
            // SQLite: SQLITE_BUSY (5) / SQLITE_LOCKED (6) after the busy timeout.
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            code.starts_with("08")
                || code.starts_with("57P0")
                || code == "53300"
                || code == "5"
                || code == "6"
        }
        _ => false,
    }
}

/// A connection that was working is gone: the socket broke, or PostgreSQL closed it (57P01 /
/// 57P02, what a server shutting down fast or after a crash leaves on every connection, read by
/// its next query; also what ending one backend leaves). Another connection may work at once.
pub(crate) fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57P01" | "57P02")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::ConversationTitle;

    /// `memberships_of` answers a batch of users in one query (SQLite here; PostgreSQL is
    /// exercised by the cluster tests, which reconcile through it).
    #[tokio::test]
    async fn memberships_of_a_batch_of_users() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let store = Store::connect(&url, 2, "simple").await.unwrap();
        let [alice, bob, carol, nobody] =
            ["alice", "bob", "carol", "nobody"].map(|u| UserId::parse(u).unwrap());
        let title = ConversationTitle::parse("t").unwrap();
        let group = store
            .create_group(&alice, &title, std::slice::from_ref(&bob))
            .await
            .unwrap();
        let (direct, _) = store.create_direct(&bob, &carol).await.unwrap();
        let got: BTreeSet<(ConversationId, UserId)> = store
            .memberships_of(&[bob.clone(), carol.clone(), nobody])
            .await
            .unwrap()
            .into_iter()
            .collect();
        let want = BTreeSet::from([
            (group.id, bob.clone()),
            (direct.id, bob.clone()),
            (direct.id, carol.clone()),
        ]);
        assert_eq!(got, want);
        assert!(store.memberships_of(&[]).await.unwrap().is_empty());

        // Bans in force only: a lapsed one is not listed; an erasure is a ban for good.
        let now = Timestamp::now();
        for (user, until) in [(&alice, None), (&carol, Some(Timestamp(now.millis() - 1)))] {
            let ban = Ban {
                user_id: user.clone(),
                until,
                reason: None,
            };
            store.ban(&ban).await.unwrap();
        }
        store.erase_user(&bob, now).await.unwrap();
        let mut banned = store
            .banned_among(&[alice.clone(), bob.clone(), carol], now)
            .await
            .unwrap();
        banned.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(banned, vec![(alice, None, false), (bob, None, true)]);
    }
}
