//! This node's sockets: the state behind the hub's lock, and delivery to it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Except, Outbound, Outgoing, SocketKey};
use crate::bus::Channel;
use crate::domain::{ConversationId, UserId};

/// A change in what this node needs to hear from the others.
pub enum Interest {
    Gained(Channel),
    Lost(Channel),
}

#[derive(Default)]
struct UserEntry {
    sockets: Vec<(SocketKey, Arc<dyn Outbound>)>,
    conversations: HashSet<ConversationId>,
    /// Set from `Local::clock` at every change to `conversations` (and when the entry is made),
    /// so a reconciliation that read the database before a change can tell and not undo it
    /// (see `reconcile`). A hub-wide clock, not a per-user count: a user who disconnects and
    /// comes back never gets a version seen before.
    version: u64,
}

/// What a reconciliation with the database did for one user.
#[derive(Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// The user has no socket here any more.
    Gone,
    /// Their memberships changed here since the snapshot: the database read may predate the
    /// change, so nothing was applied (read again).
    Changed,
    /// Joined and left that many conversations to match the database.
    Applied { joined: usize, left: usize },
}

#[derive(Default)]
pub struct Local {
    users: HashMap<UserId, UserEntry>,
    /// Local users with sockets, per conversation. Only conversations with someone online here
    /// have an entry, so memory (and bus subscriptions) follow this node's users, not the
    /// database.
    conversations: HashMap<ConversationId, HashSet<UserId>>,
    /// Which of those are large groups (`domain::is_large`), whose presence, typing and
    /// receipts stay with the user concerned. Kept only for conversations in `conversations`.
    large: HashSet<ConversationId>,
    clock: u64,
}

impl Local {
    pub fn register(
        &mut self,
        user: &UserId,
        key: SocketKey,
        outbound: Arc<dyn Outbound>,
    ) -> (bool, Vec<Interest>) {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.users.entry(user.clone()).or_insert_with(|| UserEntry {
            version: clock,
            ..UserEntry::default()
        });
        entry.sockets.push((key, outbound));
        let first = entry.sockets.len() == 1;
        let changes = if first {
            vec![Interest::Gained(Channel::User(user.clone()))]
        } else {
            Vec::new()
        };
        (first, changes)
    }

    pub fn add_conversations(
        &mut self,
        user: &UserId,
        conversations: &[ConversationId],
    ) -> Vec<Interest> {
        let mut changes = Vec::new();
        let Some(entry) = self.users.get_mut(user) else {
            return changes;
        };
        self.clock += 1;
        entry.version = self.clock;
        for c in conversations {
            if entry.conversations.insert(*c) {
                let members = self.conversations.entry(*c).or_default();
                if members.is_empty() {
                    changes.push(Interest::Gained(Channel::Conversation(*c)));
                }
                members.insert(user.clone());
            }
        }
        changes
    }

    /// Records the member counts of conversations with local members (others are ignored).
    pub fn set_sizes(&mut self, sizes: &[(ConversationId, i64)]) {
        for (c, count) in sizes {
            if !self.conversations.contains_key(c) {
                continue;
            }
            if crate::domain::is_large(*count) {
                self.large.insert(*c);
            } else {
                self.large.remove(c);
            }
        }
    }

    pub fn is_large(&self, conversation: ConversationId) -> bool {
        self.large.contains(&conversation)
    }

    /// Removes a socket; for a user's last one, also returns their small conversations (where
    /// presence is announced).
    pub fn unregister(
        &mut self,
        user: &UserId,
        key: SocketKey,
    ) -> (Option<Vec<ConversationId>>, Vec<Interest>) {
        let Some(entry) = self.users.get_mut(user) else {
            return (None, Vec::new());
        };
        entry.sockets.retain(|(k, _)| *k != key);
        if !entry.sockets.is_empty() {
            return (None, Vec::new());
        }
        let entry = self.users.remove(user).expect("entry exists");
        let small: Vec<ConversationId> = entry
            .conversations
            .iter()
            .filter(|c| !self.large.contains(c))
            .copied()
            .collect();
        let mut changes = vec![Interest::Lost(Channel::User(user.clone()))];
        for c in &entry.conversations {
            self.forget_member(*c, user, &mut changes);
        }
        (Some(small), changes)
    }

    pub fn leave(&mut self, user: &UserId, conversation: ConversationId) -> Vec<Interest> {
        let mut changes = Vec::new();
        if let Some(entry) = self.users.get_mut(user) {
            self.clock += 1;
            entry.version = self.clock;
            if entry.conversations.remove(&conversation) {
                self.forget_member(conversation, user, &mut changes);
            }
        }
        changes
    }

    /// The membership version of each of `users` (`None`: not here), to pass to `reconcile`.
    pub fn versions(&self, users: &[UserId]) -> Vec<Option<u64>> {
        users
            .iter()
            .map(|u| self.users.get(u).map(|e| e.version))
            .collect()
    }

    /// Makes `user`'s memberships here those of the database, `stored`, read after `version`
    /// was taken. Every join or leave applied here follows its commit, so a version unchanged
    /// since the snapshot means the read saw every change this node knows of, and whatever
    /// else differs is a join or leave whose bus message was lost. A version that moved means
    /// a change landed meanwhile, which the read may predate: applying it could undo that
    /// change, so nothing is applied.
    pub fn reconcile(
        &mut self,
        user: &UserId,
        version: u64,
        stored: &HashSet<ConversationId>,
    ) -> (Reconciled, Vec<Interest>) {
        let Some(entry) = self.users.get(user) else {
            return (Reconciled::Gone, Vec::new());
        };
        if entry.version != version {
            return (Reconciled::Changed, Vec::new());
        }
        let missing: Vec<ConversationId> =
            stored.difference(&entry.conversations).copied().collect();
        let extra: Vec<ConversationId> = entry.conversations.difference(stored).copied().collect();
        let mut changes = self.add_conversations(user, &missing);
        for c in &extra {
            changes.extend(self.leave(user, *c));
        }
        let outcome = Reconciled::Applied {
            joined: missing.len(),
            left: extra.len(),
        };
        (outcome, changes)
    }

    fn forget_member(&mut self, c: ConversationId, user: &UserId, changes: &mut Vec<Interest>) {
        if let Some(set) = self.conversations.get_mut(&c) {
            set.remove(user);
            if set.is_empty() {
                self.conversations.remove(&c);
                self.large.remove(&c);
                changes.push(Interest::Lost(Channel::Conversation(c)));
            }
        }
    }

    pub fn to_conversation(&self, conversation: ConversationId, event: &Outgoing, except: Except) {
        let Some(members) = self.conversations.get(&conversation) else {
            return;
        };
        self.to_users(members, event, except);
    }

    pub fn to_user(&self, user: &UserId, event: &Outgoing, except: Except) {
        self.to_users(std::iter::once(user), event, except);
    }

    /// Delivers once to every local socket of each of `users`, except `except`. Sockets that
    /// can't take it are closed (outside this call's loop): their clients reconnect and
    /// resynchronize, which beats silently missing a message.
    pub fn to_users<'u>(
        &self,
        users: impl IntoIterator<Item = &'u UserId>,
        event: &Outgoing,
        except: Except,
    ) {
        let mut failed = Vec::new();
        let mut delivered = 0u64;
        for user in users {
            let Some(entry) = self.users.get(user) else {
                continue;
            };
            for (key, socket) in &entry.sockets {
                if except.skips(user, *key) {
                    continue;
                }
                if socket.send(event) {
                    delivered += 1;
                } else {
                    failed.push(socket.clone());
                }
            }
        }
        metrics::counter!("confab_deliveries_total").increment(delivered);
        for socket in failed {
            metrics::counter!("confab_slow_consumer_disconnects_total").increment(1);
            socket.disconnect();
        }
    }

    /// The user's sockets here.
    pub fn sockets_of(&self, user: &UserId) -> Vec<Arc<dyn Outbound>> {
        self.users
            .get(user)
            .map(|e| e.sockets.iter().map(|(_, s)| s.clone()).collect())
            .unwrap_or_default()
    }

    pub fn to_everyone(&self, event: &Outgoing) {
        self.to_users(self.users.keys(), event, Except::Nobody);
    }

    /// The local users who share one of `conversations`.
    pub fn members_of(&self, conversations: &[ConversationId]) -> HashSet<UserId> {
        conversations
            .iter()
            .filter_map(|c| self.conversations.get(c))
            .flatten()
            .cloned()
            .collect()
    }

    pub fn is_online(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    pub fn socket_count(&self, user: &UserId) -> usize {
        self.users.get(user).map_or(0, |u| u.sockets.len())
    }

    pub fn is_member(&self, user: &UserId, conversation: ConversationId) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.conversations.contains(&conversation))
    }

    /// The user's conversations that are not large groups.
    pub fn small_conversations_of(&self, user: &UserId) -> Vec<ConversationId> {
        self.users
            .get(user)
            .map(|u| {
                u.conversations
                    .iter()
                    .filter(|c| !self.large.contains(c))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn users(&self) -> Vec<UserId> {
        self.users.keys().cloned().collect()
    }

    pub fn counts(&self) -> (usize, usize) {
        let sockets = self.users.values().map(|u| u.sockets.len()).sum();
        (sockets, self.users.len())
    }
}
