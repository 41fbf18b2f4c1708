//! Storage: the one place that knows SQL. PostgreSQL for production, SQLite for running alone;
//! both implement the same operations with the same semantics and pass the same tests.
//!
//! The store knows nothing about sockets. Rules that decide *what* to change (who may add
//! members, who may edit a message) live in `chat::policy` and are handed in as closures, so
//! they are written once, while the store makes each decision and its write one atomic step.

mod postgres;
mod sqlite;
mod writer;

use std::collections::HashMap;

use anyhow::{Context, bail};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use writer::{SendReply, Writer};

use crate::domain::requests::SyncCursor;
use crate::domain::{
    ClientId, Conversation, ConversationId, ConversationKind, ConversationTitle, DisplayName,
    Member, Message, MessageBody, MessageId, ReadState, Role, Timestamp, UserId,
};
use crate::error::Result;

/// A message to be written by the group-commit writer.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    pub client_id: ClientId,
    pub body: MessageBody,
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

/// A page of messages in ascending seq.
#[derive(Debug, Clone)]
pub struct Page {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// One conversation's part of a `sync` answer.
#[derive(Debug, Clone)]
pub struct SyncUpdate {
    pub conversation_id: ConversationId,
    pub messages: Vec<Message>,
    pub has_more: bool,
    /// Messages at or below the cursor edited or deleted since the caller's last sync, after
    /// the cursor's `changed_after`.
    pub changed: Vec<Message>,
    /// More changes than `changed` holds: ask again from its last seq.
    pub changed_has_more: bool,
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

/// A conversation before and after a membership change.
#[derive(Debug, Clone)]
pub struct MembershipChange {
    pub before: Conversation,
    pub after: Conversation,
}

/// What to do to a message, decided by policy.
#[derive(Debug, Clone)]
pub enum MessageChange {
    Edit(MessageBody),
    Delete,
    /// Nothing to write (deleting what is already deleted): return the message as it is.
    Unchanged,
}

/// The storage backend.
#[derive(Clone)]
pub enum Store {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

/// Calls the same method on whichever backend this is.
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
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Its errors name the server and database themselves.
            let store = PgStore::connect(url, max_connections).await?;
            Ok(Self::Postgres(store))
        } else if url.starts_with("sqlite:") {
            let store = SqliteStore::connect(url, max_connections)
                .await
                .context("opening SQLite")?;
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

    /// Records the user (and their latest display name) and returns their conversations.
    /// Called on every connect, so it is one round trip.
    pub async fn touch_user(
        &self,
        user: &UserId,
        name: Option<&DisplayName>,
    ) -> Result<Vec<ConversationId>> {
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

    /// The conversations `user` is a member of.
    pub async fn memberships(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        dispatch!(self, s => s.memberships(user).await)
    }

    /// The direct conversation between `a` and `b`, created if needed. `true` when created now.
    pub async fn create_direct(&self, a: &UserId, b: &UserId) -> Result<(Conversation, bool)> {
        dispatch!(self, s => s.create_direct(a, b).await)
    }

    /// A new group owned by `owner` with `members` (which must not contain `owner`).
    pub async fn create_group(
        &self,
        owner: &UserId,
        title: &ConversationTitle,
        members: &[UserId],
    ) -> Result<Conversation> {
        dispatch!(self, s => s.create_group(owner, title, members).await)
    }

    pub async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        dispatch!(self, s => s.conversation(id).await)
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
    pub async fn change_members<F>(
        &self,
        conversation: ConversationId,
        names: &[UserId],
        decide: F,
    ) -> Result<Option<MembershipChange>>
    where
        F: FnOnce(&Conversation, &[UserId]) -> Result<MembershipPlan> + Send,
    {
        dispatch!(self, s => s.change_members(conversation, names, decide).await)
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
        if let Some(outcomes) = dispatch!(self, s => s.try_insert_messages(batch, false).await)? {
            return Ok(outcomes);
        }
        dispatch!(self, s => s.try_insert_messages(batch, true).await)?.ok_or_else(|| {
            crate::error::Error::Internal(anyhow::anyhow!("a retried send conflicted twice"))
        })
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
        dispatch!(self, s => s.change_message(conversation, message, user, decide).await)
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
}

/// The key that makes a direct conversation unique per pair, whichever side creates it.
pub(crate) fn direct_key(a: &UserId, b: &UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    // User ids can't contain control characters, so a newline can't be forged into one.
    format!("{lo}\n{hi}")
}

/// Assigns seqs to a batch, given each conversation's current `last_seq` and which senders are
/// members and which client ids are already stored. Shared by both backends, so the rules of a
/// batched send are written once.
///
/// Returns the outcome per message (in batch order) with `Stored` messages still to be written,
/// and each touched conversation's new `last_seq`.
pub(crate) fn plan_batch(
    batch: &[NewMessage],
    last_seq: &HashMap<ConversationId, i64>,
    is_member: impl Fn(ConversationId, &UserId) -> bool,
    mut existing: HashMap<SendKey, Message>,
    now: Timestamp,
) -> (Vec<SendOutcome>, HashMap<ConversationId, i64>) {
    let mut next = last_seq.clone();
    let outcomes = batch
        .iter()
        .map(|m| {
            let Some(seq) = next.get_mut(&m.conversation_id) else {
                return SendOutcome::NotFound;
            };
            if !is_member(m.conversation_id, &m.sender_id) {
                return SendOutcome::NotFound;
            }
            let key = (
                m.conversation_id,
                m.sender_id.clone(),
                m.client_id.as_str().to_owned(),
            );
            if let Some(stored) = existing.get(&key) {
                return SendOutcome::Duplicate(stored.clone());
            }
            *seq += 1;
            let message = Message {
                id: MessageId::new(),
                conversation_id: m.conversation_id,
                seq: *seq,
                sender_id: m.sender_id.clone(),
                client_id: m.client_id.as_str().to_owned(),
                body: Some(m.body.as_str().to_owned()),
                created_at: now,
                edited_at: None,
                deleted_at: None,
            };
            // A second copy later in the same batch is a duplicate of this one.
            existing.insert(key, message.clone());
            SendOutcome::Stored(message)
        })
        .collect();
    next.retain(|id, seq| last_seq.get(id) != Some(seq));
    (outcomes, next)
}

/// A send's idempotency key: conversation, sender and client id.
pub(crate) type SendKey = (ConversationId, UserId, String);

/// Stored messages by their idempotency key, as [`plan_batch`] takes them.
pub(crate) fn by_send_key(messages: Vec<Message>) -> HashMap<SendKey, Message> {
    messages
        .into_iter()
        .map(|m| {
            (
                (m.conversation_id, m.sender_id.clone(), m.client_id.clone()),
                m,
            )
        })
        .collect()
}

/// Builds conversation objects from their parts, keeping the order of `heads`.
pub(crate) fn assemble(
    heads: Vec<ConversationHead>,
    members: Vec<(ConversationId, Member)>,
    last_messages: Vec<Message>,
) -> Vec<Conversation> {
    let mut members_of: HashMap<ConversationId, Vec<Member>> = HashMap::new();
    for (conversation, member) in members {
        members_of.entry(conversation).or_default().push(member);
    }
    let mut last_of: HashMap<ConversationId, Message> = last_messages
        .into_iter()
        .map(|m| (m.conversation_id, m))
        .collect();
    heads
        .into_iter()
        .map(|h| {
            let mut members = members_of.remove(&h.id).unwrap_or_default();
            // Owner first, then admins, then by join time: a stable, useful order for clients.
            members.sort_by(|a, b| {
                b.role
                    .cmp(&a.role)
                    .then(a.joined_at.cmp(&b.joined_at))
                    .then_with(|| a.user_id.cmp(&b.user_id))
            });
            Conversation {
                id: h.id,
                kind: h.kind,
                title: h.title,
                members,
                created_at: h.created_at,
                last_seq: h.last_seq,
                last_message: last_of.remove(&h.id),
                read_state: h.read_state,
            }
        })
        .collect()
}

/// A conversation row, before members and last message are attached.
#[derive(Debug, Clone)]
pub(crate) struct ConversationHead {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub created_at: Timestamp,
    pub last_seq: i64,
    /// Filled in when listing a user's own conversations.
    pub read_state: Option<ReadState>,
}

/// Splits rows read for a sync (new messages, and changed ones at or below the cursor) into one
/// conversation's update.
pub(crate) fn sync_update(
    cursor: &SyncCursor,
    mut messages: Vec<Message>,
    mut changed: Vec<Message>,
    limit: u32,
) -> SyncUpdate {
    messages.sort_by_key(|m| m.seq);
    let has_more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    changed.retain(|m| m.seq > cursor.changed_after && m.seq <= cursor.after);
    changed.sort_by_key(|m| m.seq);
    let changed_has_more = changed.len() > limit as usize;
    changed.truncate(limit as usize);
    SyncUpdate {
        conversation_id: cursor.conversation_id,
        messages,
        has_more,
        changed,
        changed_has_more,
    }
}

/// How many rows to fetch for a page: one more than asked, to learn whether there are more.
pub(crate) fn page_from_rows(mut rows: Vec<Message>, query: HistoryQuery) -> Page {
    let limit = query.limit as usize;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    if !query.ascending() {
        rows.reverse();
    }
    Page {
        messages: rows,
        has_more,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(conv: ConversationId, sender: &str, client: &str) -> NewMessage {
        NewMessage {
            conversation_id: conv,
            sender_id: UserId::parse(sender).unwrap(),
            client_id: ClientId::parse(client.into()).unwrap(),
            body: MessageBody::parse("hi".into(), 10).unwrap(),
        }
    }

    #[test]
    fn a_batch_gets_consecutive_seqs_per_conversation_and_dedupes_within_itself() {
        let (a, b) = (ConversationId::new(), ConversationId::new());
        let batch = [
            new(a, "alice", "1"),
            new(b, "bob", "1"),
            new(a, "bob", "1"),
            new(a, "alice", "1"),
            new(a, "mallory", "1"),
        ];
        let last = HashMap::from([(a, 10), (b, 0)]);
        let (out, new_last) = plan_batch(
            &batch,
            &last,
            |_, u| u.as_str() != "mallory",
            HashMap::new(),
            Timestamp(0),
        );
        let seqs: Vec<_> = out
            .iter()
            .map(|o| match o {
                SendOutcome::Stored(m) => format!("stored {}", m.seq),
                SendOutcome::Duplicate(m) => format!("dup {}", m.seq),
                SendOutcome::NotFound => "not found".into(),
            })
            .collect();
        assert_eq!(
            seqs,
            ["stored 11", "stored 1", "stored 12", "dup 11", "not found"]
        );
        assert_eq!(new_last, HashMap::from([(a, 12), (b, 1)]));
    }

    #[test]
    fn unknown_conversations_are_not_found_and_leave_no_update() {
        let a = ConversationId::new();
        let (out, new_last) = plan_batch(
            &[new(a, "alice", "1")],
            &HashMap::new(),
            |_, _| true,
            HashMap::new(),
            Timestamp(0),
        );
        assert!(matches!(out[0], SendOutcome::NotFound));
        assert!(new_last.is_empty());
    }

    #[test]
    fn direct_keys_ignore_order() {
        let (a, b) = (UserId::parse("a").unwrap(), UserId::parse("b").unwrap());
        assert_eq!(direct_key(&a, &b), direct_key(&b, &a));
    }
}
