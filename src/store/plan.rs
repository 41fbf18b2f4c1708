//! How a batch of sends is written: the rules of group commit, pure functions shared by both
//! backends (seqs in batch order, retries answered with what was stored, non-members refused).

use std::collections::{HashMap, HashSet};

use super::rows::StoredAttachment;
use super::{NewMessage, SendOutcome};
use crate::domain::{
    Attachment, AttachmentId, ConversationId, Message, MessageId, MessageKind, Timestamp, UserId,
};
use crate::error::Error;

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
    is_blocked: impl Fn(ConversationId, &UserId) -> bool,
    mut existing: HashMap<SendKey, Message>,
    attachments: &HashMap<AttachmentId, StoredAttachment>,
    now: Timestamp,
) -> (Vec<SendOutcome>, HashMap<ConversationId, i64>) {
    let mut next = last_seq.clone();
    let mut claimed = HashSet::new();
    let outcomes = batch
        .iter()
        .map(|m| {
            let Some(seq) = next.get_mut(&m.conversation_id) else {
                return SendOutcome::NotFound;
            };
            // A system message (no sender) is the host app's: it needs no membership.
            if m.sender_id
                .as_ref()
                .is_some_and(|sender| !is_member(m.conversation_id, sender))
            {
                return SendOutcome::NotFound;
            }
            if m.sender_id
                .as_ref()
                .is_some_and(|sender| is_blocked(m.conversation_id, sender))
            {
                return SendOutcome::Blocked;
            }
            let key = (
                m.conversation_id,
                m.sender_id.clone(),
                m.client_id.as_str().to_owned(),
            );
            if let Some(stored) = existing.get(&key) {
                return SendOutcome::Duplicate(stored.clone());
            }
            let attached = match claim(m, attachments, &mut claimed) {
                Ok(attached) => attached,
                Err(e) => return SendOutcome::Refused(e),
            };
            *seq += 1;
            let message = Message {
                id: MessageId::new(),
                conversation_id: m.conversation_id,
                seq: *seq,
                sender_id: m.sender_id.clone(),
                kind: if m.sender_id.is_some() {
                    MessageKind::User
                } else {
                    MessageKind::System
                },
                client_id: m.client_id.as_str().to_owned(),
                body: Some(m.body.as_str().to_owned()),
                created_at: now,
                edited_at: None,
                deleted_at: None,
                attachments: attached,
            };
            // A second copy later in the same batch is a duplicate of this one.
            existing.insert(key, message.clone());
            SendOutcome::Stored(message)
        })
        .collect();
    next.retain(|id, seq| last_seq.get(id) != Some(seq));
    (outcomes, next)
}

/// The attachments `m` may claim, in its order: each one its sender's upload, not deleted, and
/// in no message yet (nor in an earlier one of this batch, which `claimed` remembers).
fn claim(
    m: &NewMessage,
    attachments: &HashMap<AttachmentId, StoredAttachment>,
    claimed: &mut HashSet<AttachmentId>,
) -> Result<Vec<Attachment>, Error> {
    let usable = |id: &AttachmentId| {
        attachments.get(id).filter(|a| {
            Some(&a.uploader) == m.sender_id.as_ref()
                && !a.claimed
                && !a.deleted
                && !claimed.contains(id)
        })
    };
    // Whose it is and whether it was used are not told apart: either way it is not the
    // sender's to send, and an id of someone else's upload must not be confirmed.
    let attached = m
        .attachment_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            usable(id).map(|a| a.attachment.clone()).ok_or_else(|| {
                Error::invalid(
                    format!("attachment_ids[{i}]"),
                    "is not an upload of yours that is still unsent",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    claimed.extend(m.attachment_ids.iter().copied());
    Ok(attached)
}

/// A send's idempotency key: conversation, sender and client id.
/// (No sender: a system message.)
pub(crate) type SendKey = (ConversationId, Option<UserId>, String);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientId, MessageBody};

    fn new(conv: ConversationId, sender: &str, client: &str) -> NewMessage {
        NewMessage {
            conversation_id: conv,
            sender_id: Some(UserId::parse(sender).unwrap()),
            client_id: ClientId::parse(client.into()).unwrap(),
            body: MessageBody::parse("hi".into(), 10).unwrap(),
            attachment_ids: Vec::new(),
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
            |_, _| false,
            HashMap::new(),
            &HashMap::new(),
            Timestamp(0),
        );
        let seqs: Vec<_> = out
            .iter()
            .map(|o| match o {
                SendOutcome::Stored(m) => format!("stored {}", m.seq),
                SendOutcome::Duplicate(m) => format!("dup {}", m.seq),
                SendOutcome::NotFound => "not found".into(),
                SendOutcome::Blocked => "blocked".into(),
                SendOutcome::Refused(e) => format!("refused {e}"),
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
            |_, _| false,
            HashMap::new(),
            &HashMap::new(),
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
