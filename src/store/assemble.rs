//! Shaping rows into the objects clients see: conversations with their members and last
//! message, history pages and sync updates. Pure functions shared by both backends.

use std::collections::HashMap;

use super::{HistoryQuery, Page, SyncUpdate};
use crate::domain::{
    Conversation, ConversationId, ConversationKind, Member, Message, ReadState, Timestamp,
};
use crate::protocol::requests::SyncCursor;

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
                member_count: h.member_count,
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
    pub member_count: i64,
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
