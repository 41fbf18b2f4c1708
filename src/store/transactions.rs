//! The write transactions (and the loading of whole conversations), written once for both
//! databases.
//!
//! Each transaction is a fixed sequence of steps (begin, lock, decide, write, read back,
//! commit), and each step is one statement that a backend writes in its own SQL: [`Backend`].
//! So PostgreSQL and SQLite follow the same steps in the same order, and a rule handed in by
//! `chat::policy` is run inside the transaction that applies its decision, on both.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sqlx::Transaction;

use super::assemble::{ConversationHead, assemble};
use super::plan::{by_send_key, direct_key, plan_batch};
use super::rows::{MemberRow, MessageRow, StoredAttachment, messages};
use super::{
    MembershipChange, MembershipPlan, MessageChange, NewMessage, OutboxEvent, SendOutcome,
};
use crate::domain::{
    AttachmentId, Conversation, ConversationId, ConversationTitle, ExternalId, MEMBERS_PAGE,
    Message, MessageBody, MessageId, Role, Timestamp, UserId,
};
use crate::error::{Error, Result};

/// A connection of backend `B` (a transaction dereferences to one).
pub(crate) type Conn<B> = <<B as Backend>::Db as sqlx::Database>::Connection;

/// A change to a message, once policy decided there is one.
pub(crate) enum Rewrite {
    Edit(MessageBody),
    Delete,
}

/// The statements the transactions are made of, in one database's SQL.
///
/// Methods taking `&mut Conn<Self>` run inside the caller's transaction. "Lock" means: until
/// the transaction ends, no other transaction changes what was read. On PostgreSQL that is a
/// row lock (`FOR UPDATE`); on SQLite, where every write transaction runs on the single writer
/// connection, holding the transaction is the lock.
pub(crate) trait Backend: Sync {
    type Db: sqlx::Database;

    async fn begin(&self) -> Result<Transaction<'static, Self::Db>>;

    /// Makes sure rows exist for these users (named before they ever connected).
    async fn ensure_users(c: &mut Conn<Self>, users: &[&UserId]) -> Result<()>;
    /// Inserts a direct conversation unless one with `key` exists; `true` when inserted.
    async fn insert_direct(
        c: &mut Conn<Self>,
        id: ConversationId,
        key: &str,
        now: i64,
    ) -> Result<bool>;
    /// The direct conversation with `key`, which exists.
    async fn find_direct(c: &mut Conn<Self>, key: &str) -> Result<ConversationId>;
    async fn insert_group(
        c: &mut Conn<Self>,
        id: ConversationId,
        title: &ConversationTitle,
        now: i64,
    ) -> Result<()>;
    /// Adds members (an existing member is left as it is), and counts them in the
    /// conversation's `member_count`.
    async fn insert_members(
        c: &mut Conn<Self>,
        id: ConversationId,
        members: &[(&UserId, Role)],
        now: i64,
    ) -> Result<()>;
    /// Removes members, and uncounts them from the conversation's `member_count`.
    async fn remove_members(c: &mut Conn<Self>, id: ConversationId, users: &[UserId])
    -> Result<()>;
    async fn set_role(
        c: &mut Conn<Self>,
        id: ConversationId,
        user: &UserId,
        role: Role,
    ) -> Result<()>;
    async fn record_departures(
        c: &mut Conn<Self>,
        id: ConversationId,
        users: &[UserId],
        now: i64,
    ) -> Result<()>;
    /// Which of `users` left the conversation by their own choice.
    async fn departed(
        c: &mut Conn<Self>,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<Vec<UserId>>;
    /// The members of these conversations, with their names: all of them, or (`first`) only
    /// the first that many of each in member order.
    async fn members(
        c: &mut Conn<Self>,
        ids: &[ConversationId],
        first: Option<usize>,
    ) -> Result<Vec<MemberRow>>;
    /// The messages at these (conversation, seq) places.
    async fn last_messages(
        c: &mut Conn<Self>,
        last: &[(ConversationId, i64)],
    ) -> Result<Vec<MessageRow>>;
    /// The conversation's row (without members), locked if `lock`.
    async fn head(
        c: &mut Conn<Self>,
        id: ConversationId,
        lock: bool,
    ) -> Result<Option<ConversationHead>>;
    /// Those of `users` who are members of the conversation, with their names.
    async fn members_named(
        c: &mut Conn<Self>,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<Vec<MemberRow>>;
    /// Conversations with their members and last message, locked if `lock`.
    async fn load_conversations(
        c: &mut Conn<Self>,
        ids: &[ConversationId],
        lock: bool,
    ) -> Result<Vec<Conversation>>;

    async fn role_of(
        c: &mut Conn<Self>,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<Option<Role>>;
    /// The message, locked; `None` when there is no such message in that conversation.
    async fn lock_message(
        c: &mut Conn<Self>,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<Option<Message>>;
    async fn rewrite_message(
        c: &mut Conn<Self>,
        conversation: ConversationId,
        message: MessageId,
        rewrite: Rewrite,
        now: i64,
    ) -> Result<Message>;

    /// Each conversation's last seq, locked (PostgreSQL locks in id order, so that concurrent
    /// batches can't deadlock). Conversations that don't exist are missing from the answer.
    async fn lock_seqs(
        c: &mut Conn<Self>,
        conversations: &[ConversationId],
    ) -> Result<HashMap<ConversationId, i64>>;
    /// Which (conversation, sender) pairs of the batch are memberships.
    async fn senders_who_are_members(
        c: &mut Conn<Self>,
        batch: &[NewMessage],
    ) -> Result<HashSet<(ConversationId, UserId)>>;
    /// The stored messages with the idempotency keys of the batch's messages (retries).
    async fn stored_sends(c: &mut Conn<Self>, batch: &[NewMessage]) -> Result<Vec<Message>>;
    /// Inserts the messages whose sender is a member and whose idempotency key is new, and
    /// moves each conversation's last seq; returns how many messages were inserted.
    async fn insert_batch(
        c: &mut Conn<Self>,
        messages: &[&Message],
        last_seqs: &HashMap<ConversationId, i64>,
    ) -> Result<u64>;

    // The host app's side (server API, moderation, webhooks).

    /// The conversation the host app's `external_id` names, if any.
    async fn find_external(c: &mut Conn<Self>, external_id: &str)
    -> Result<Option<ConversationId>>;
    /// Records that `external_id` names `id`, unless it names one already; `true` when recorded.
    async fn insert_external(
        c: &mut Conn<Self>,
        external_id: &str,
        id: ConversationId,
    ) -> Result<bool>;
    /// Webhooks on: the signal to give after committing outbox events.
    fn outbox(&self) -> Option<&tokio::sync::Notify>;
    /// Records webhook events (in the caller's transaction).
    async fn insert_outbox(c: &mut Conn<Self>, events: &[OutboxEvent]) -> Result<()>;
    /// Which (conversation, sender) pairs of the batch are direct conversations whose other
    /// member blocked the sender.
    async fn blocked_senders(
        c: &mut Conn<Self>,
        batch: &[NewMessage],
    ) -> Result<HashSet<(ConversationId, UserId)>>;
    // Attachments.

    /// These attachments (those that exist), locked until the transaction ends.
    async fn lock_attachments(
        c: &mut Conn<Self>,
        ids: &[AttachmentId],
    ) -> Result<Vec<StoredAttachment>>;
    /// Records that each attachment belongs to the message (and conversation) given with it.
    async fn claim_attachments(
        c: &mut Conn<Self>,
        claims: &[(AttachmentId, MessageId, ConversationId)],
    ) -> Result<()>;
    /// Marks a deleted message's attachments deleted: no longer served, and their bytes are
    /// the sweeper's to delete.
    async fn discard_attachments(c: &mut Conn<Self>, message: MessageId, now: i64) -> Result<()>;
}

/// Attaches members (all, or the `first` that many of each) and last messages to conversation
/// heads: two more statements for any number of conversations.
pub(crate) async fn complete<B: Backend>(
    c: &mut Conn<B>,
    heads: Vec<ConversationHead>,
    first: Option<usize>,
) -> Result<Vec<Conversation>> {
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<ConversationId> = heads.iter().map(|h| h.id).collect();
    let members = B::members(c, &ids, first)
        .await?
        .into_iter()
        .map(MemberRow::into_member)
        .collect::<Result<_>>()?;
    let last: Vec<(ConversationId, i64)> = heads
        .iter()
        .filter(|h| h.last_seq > 0)
        .map(|h| (h.id, h.last_seq))
        .collect();
    let last_messages = if last.is_empty() {
        Vec::new()
    } else {
        messages(B::last_messages(c, &last).await?)
    };
    Ok(assemble(heads, members, last_messages))
}

async fn commit<B: Backend>(tx: Transaction<'static, B::Db>) -> Result<()> {
    let started = Instant::now();
    let result = tx
        .commit()
        .await
        .map_err(|e| super::db_error(e, "committing"));
    let took = started.elapsed();
    if took >= SLOW_COMMIT {
        // A commit is where the database's own pauses land (an fsync behind a checkpoint):
        // `CONFAB_LOG=info,confab::store=debug` lines them up with the writer's slow batches.
        tracing::debug!(ms = took.as_millis() as u64, "slow commit");
    }
    result
}

/// A commit taking this long is logged at debug.
const SLOW_COMMIT: Duration = Duration::from_millis(10);

/// Loads one conversation that must exist (the transaction just wrote it).
async fn reload<B: Backend>(c: &mut Conn<B>, id: ConversationId) -> Result<Conversation> {
    B::load_conversations(c, &[id], false)
        .await?
        .pop()
        .ok_or_else(|| Error::internal(anyhow::anyhow!("conversation {id} vanished")))
}

/// What to create: a direct conversation between two users, or a group.
#[derive(Clone, Copy)]
pub(crate) enum Creation<'a> {
    Direct(&'a UserId, &'a UserId),
    Group {
        owner: &'a UserId,
        title: &'a ConversationTitle,
        /// Without the owner.
        members: &'a [UserId],
    },
}

/// Creates a conversation (a direct one is found when the pair has one); `true` when created
/// now. With the host app's `external_id`, the conversation it already names is returned
/// instead, and a new one is recorded under it in the same transaction. The unique keys (the
/// pair's, the external id's) decide between requests creating the same thing at once, on any
/// number of nodes: the loser rolls back and finds the winner's.
pub(crate) async fn create<B: Backend>(
    backend: &B,
    what: Creation<'_>,
    external_id: Option<&ExternalId>,
) -> Result<(Conversation, bool)> {
    // Two rounds: the second finds what a concurrent request recorded under the external id.
    for _ in 0..2 {
        let mut tx = backend.begin().await?;
        if let Some(external) = external_id {
            if let Some(id) = B::find_external(&mut tx, external.as_str()).await? {
                let conversation = reload::<B>(&mut tx, id).await?;
                commit::<B>(tx).await?;
                return Ok((conversation, false));
            }
        }
        let (id, created) = insert_conversation::<B>(&mut tx, what).await?;
        if let Some(external) = external_id {
            if !B::insert_external(&mut tx, external.as_str(), id).await? {
                tx.rollback()
                    .await
                    .map_err(|e| super::db_error(e, "rolling back"))?;
                continue;
            }
        }
        let conversation = reload::<B>(&mut tx, id).await?;
        let outbox = created && backend.outbox().is_some();
        if outbox {
            let data = serde_json::json!({ "conversation": conversation });
            B::insert_outbox(
                &mut tx,
                &[OutboxEvent::new("conversation.created", &data, true)],
            )
            .await?;
        }
        commit::<B>(tx).await?;
        wake_outbox(backend, outbox);
        return Ok((conversation, created));
    }
    Err(Error::internal(anyhow::anyhow!(
        "an external id was taken and then not found"
    )))
}

/// The creating step of [`create`]: the conversation's id, and whether it is new.
async fn insert_conversation<B: Backend>(
    c: &mut Conn<B>,
    what: Creation<'_>,
) -> Result<(ConversationId, bool)> {
    let now = Timestamp::now().millis();
    let new = ConversationId::new();
    match what {
        Creation::Direct(a, b) => {
            let key = direct_key(a, b);
            B::ensure_users(c, &[a, b]).await?;
            if B::insert_direct(c, new, &key, now).await? {
                B::insert_members(c, new, &[(a, Role::Member), (b, Role::Member)], now).await?;
                Ok((new, true))
            } else {
                Ok((B::find_direct(c, &key).await?, false))
            }
        }
        Creation::Group {
            owner,
            title,
            members,
        } => {
            let mut everyone = vec![owner];
            everyone.extend(members);
            B::ensure_users(c, &everyone).await?;
            B::insert_group(c, new, title, now).await?;
            let mut roles = vec![(owner, Role::Owner)];
            roles.extend(members.iter().map(|m| (m, Role::Member)));
            B::insert_members(c, new, &roles, now).await?;
            Ok((new, true))
        }
    }
}

/// A conversation as a membership change sees it (locked if `lock`): the first members in
/// member order and those of `involves` who are members, with the whole `member_count`. The
/// first `MEMBERS_PAGE`, and at least one more than `involves` holds, so that whoever leaves,
/// the heir (the first in member order who stays) is among them.
async fn load_for_change<B: Backend>(
    c: &mut Conn<B>,
    id: ConversationId,
    lock: bool,
    involves: &[UserId],
) -> Result<Option<Conversation>> {
    let Some(head) = B::head(c, id, lock).await? else {
        return Ok(None);
    };
    let first = MEMBERS_PAGE.max(involves.len() + 1);
    let mut rows = B::members(c, &[id], Some(first)).await?;
    if !involves.is_empty() {
        rows.extend(B::members_named(c, id, involves).await?);
    }
    let mut seen = HashSet::new();
    let mut members = Vec::with_capacity(rows.len());
    for row in rows {
        let (conversation, member) = row.into_member()?;
        if seen.insert(member.user_id.clone()) {
            members.push((conversation, member));
        }
    }
    let last_messages = if head.last_seq > 0 {
        messages(B::last_messages(c, &[(id, head.last_seq)]).await?)
    } else {
        Vec::new()
    };
    Ok(assemble(vec![head], members, last_messages).pop())
}

/// See [`Store::change_members`](super::Store::change_members).
pub(crate) async fn change_members<B, F>(
    backend: &B,
    id: ConversationId,
    names: &[UserId],
    involves: &[UserId],
    decide: F,
) -> Result<Option<MembershipChange>>
where
    B: Backend,
    F: FnOnce(&Conversation, &[UserId]) -> Result<MembershipPlan> + Send,
{
    let mut tx = backend.begin().await?;
    // The lock serialises membership changes with each other and with message writes, which
    // lock the same conversation.
    let Some(before) = load_for_change::<B>(&mut tx, id, true, involves).await? else {
        return Ok(None);
    };
    let departed = if names.is_empty() {
        Vec::new()
    } else {
        B::departed(&mut tx, id, names).await?
    };
    let plan = decide(&before, &departed)?;
    if plan.is_empty() {
        return Ok(Some(MembershipChange {
            after: before.clone(),
            before,
            plan,
        }));
    }
    let now = Timestamp::now().millis();
    if !plan.add.is_empty() {
        let users: Vec<&UserId> = plan.add.iter().collect();
        B::ensure_users(&mut tx, &users).await?;
        let roles: Vec<_> = plan.add.iter().map(|u| (u, Role::Member)).collect();
        B::insert_members(&mut tx, id, &roles, now).await?;
    }
    if !plan.remove.is_empty() {
        B::remove_members(&mut tx, id, &plan.remove).await?;
    }
    for (user, role) in &plan.set_role {
        B::set_role(&mut tx, id, user, *role).await?;
    }
    if !plan.departures.is_empty() {
        B::record_departures(&mut tx, id, &plan.departures, now).await?;
    }
    let after = load_for_change::<B>(&mut tx, id, false, involves)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("conversation {id} vanished")))?;
    let mut events = Vec::new();
    if backend.outbox().is_some() {
        for (kind, users) in [
            ("member.added", &plan.add),
            ("member.removed", &plan.remove),
        ] {
            if !users.is_empty() {
                let data = serde_json::json!({ "conversation_id": id, "user_ids": users });
                events.push(OutboxEvent::new(kind, &data, true));
            }
        }
        B::insert_outbox(&mut tx, &events).await?;
    }
    commit::<B>(tx).await?;
    wake_outbox(backend, !events.is_empty());
    Ok(Some(MembershipChange {
        before,
        after,
        plan,
    }))
}

/// See [`Store::change_message`](super::Store::change_message).
pub(crate) async fn change_message<B, F>(
    backend: &B,
    conversation: ConversationId,
    message: MessageId,
    user: &UserId,
    decide: F,
) -> Result<Option<Message>>
where
    B: Backend,
    F: FnOnce(&Message, Option<Role>) -> Result<MessageChange> + Send,
{
    let mut tx = backend.begin().await?;
    let role = B::role_of(&mut tx, conversation, user).await?;
    let Some(current) = B::lock_message(&mut tx, conversation, message).await? else {
        return Ok(None);
    };
    let rewrite = match decide(&current, role)? {
        MessageChange::Unchanged => return Ok(Some(current)),
        MessageChange::Edit(body) => Rewrite::Edit(body),
        MessageChange::Delete => Rewrite::Delete,
    };
    let now = Timestamp::now().millis();
    if matches!(rewrite, Rewrite::Delete) && !current.attachments.is_empty() {
        B::discard_attachments(&mut tx, message, now).await?;
    }
    let updated = B::rewrite_message(&mut tx, conversation, message, rewrite, now).await?;
    commit::<B>(tx).await?;
    Ok(Some(updated))
}

/// See [`Store::insert_messages`](super::Store::insert_messages): one optimistic attempt, and
/// one that looks everything up when the first met a non-member or a retry.
pub(crate) async fn insert_messages<B: Backend>(
    backend: &B,
    batch: &[NewMessage],
) -> Result<Vec<SendOutcome>> {
    if let Some(outcomes) = try_insert_messages(backend, batch, false).await? {
        return Ok(outcomes);
    }
    try_insert_messages(backend, batch, true)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("a retried send conflicted twice")))
}

/// One attempt at a batch; `Ok(None)` when the insert skipped a row the plan didn't expect it
/// to (a non-member or a retry that `look_up` would have found), after rolling back.
async fn try_insert_messages<B: Backend>(
    backend: &B,
    batch: &[NewMessage],
    look_up: bool,
) -> Result<Option<Vec<SendOutcome>>> {
    let mut ids: Vec<ConversationId> = batch.iter().map(|m| m.conversation_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut tx = backend.begin().await?;

    // 1. Lock the conversations and read their last seq.
    let last_seq = B::lock_seqs(&mut tx, &ids).await?;

    // 2. Only when a first attempt skipped a row: which senders are members, and which sends
    //    are retries of stored messages. Read after the lock, so a membership change that
    //    committed while we waited for it is seen.
    let (members, existing, blocked) = if look_up {
        let members = B::senders_who_are_members(&mut tx, batch).await?;
        let existing = by_send_key(B::stored_sends(&mut tx, batch).await?);
        let blocked = B::blocked_senders(&mut tx, batch).await?;
        (Some(members), existing, blocked)
    } else {
        (None, HashMap::new(), HashSet::new())
    };

    // Attachments to claim, locked: only a batch that carries some pays for this.
    let attachment_ids: Vec<AttachmentId> = batch
        .iter()
        .flat_map(|m| m.attachment_ids.iter().copied())
        .collect();
    let attachments: HashMap<AttachmentId, StoredAttachment> = if attachment_ids.is_empty() {
        HashMap::new()
    } else {
        B::lock_attachments(&mut tx, &attachment_ids)
            .await?
            .into_iter()
            .map(|a| (a.attachment.id, a))
            .collect()
    };

    let (outcomes, new_last) = plan_batch(
        batch,
        &last_seq,
        // Until a skipped row says otherwise, every sender is taken to be a member: the insert
        // checks it.
        |c, u| members.as_ref().is_none_or(|m| m.contains(&(c, u.clone()))),
        |c, u| blocked.contains(&(c, u.clone())),
        existing,
        &attachments,
        Timestamp::now(),
    );
    if !look_up
        && outcomes
            .iter()
            .any(|o| matches!(o, SendOutcome::Refused(_)))
    {
        // A retry of a stored send finds its attachments claimed (by itself): look retries up
        // before refusing anything.
        tx.rollback()
            .await
            .map_err(|e| super::db_error(e, "rolling back"))?;
        return Ok(None);
    }

    // 3. Insert the new messages and move each conversation's last seq.
    let stored: Vec<&Message> = outcomes
        .iter()
        .filter_map(|o| match o {
            SendOutcome::Stored(m) => Some(m),
            _ => None,
        })
        .collect();
    if !stored.is_empty() {
        let inserted = B::insert_batch(&mut tx, &stored, &new_last).await?;
        if inserted != stored.len() as u64 {
            // A non-member or a retry we didn't look up: its seq would leave a gap. Start
            // over, looking them up.
            tx.rollback()
                .await
                .map_err(|e| super::db_error(e, "rolling back"))?;
            return Ok(None);
        }
        if backend.outbox().is_some() {
            // Resolved by the sender: who of the members is away is known to the nodes.
            let events: Vec<OutboxEvent> = stored
                .iter()
                .map(|m| {
                    OutboxEvent::new(
                        "message.created",
                        &serde_json::json!({ "message": m }),
                        false,
                    )
                })
                .collect();
            B::insert_outbox(&mut tx, &events).await?;
        }
        // Claimed in the transaction that stores the message: both happen, or neither.
        let claims: Vec<(AttachmentId, MessageId, ConversationId)> = stored
            .iter()
            .flat_map(|m| {
                m.attachments
                    .iter()
                    .map(|a| (a.id, m.id, m.conversation_id))
            })
            .collect();
        if !claims.is_empty() {
            B::claim_attachments(&mut tx, &claims).await?;
        }
    }
    commit::<B>(tx).await?;
    wake_outbox(backend, !stored.is_empty());
    Ok(Some(outcomes))
}

/// Wakes the webhook sender after a commit that recorded events (`recorded`).
fn wake_outbox<B: Backend>(backend: &B, recorded: bool) {
    if recorded && let Some(written) = backend.outbox() {
        written.notify_one();
    }
}
