//! Local delivery: which sockets on this process belong to which user, and which local users are
//! in which conversation. Events are serialized once and handed to every recipient socket.
//!
//! Everything here is synchronous: delivering means pushing onto each socket's outgoing queue,
//! which never waits. Callers that deliver in seq order therefore get delivery in seq order.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use confab_sio::Packet;
use serde::Serialize;

use crate::domain::{ConversationId, UserId};

/// A process-unique number for a connected socket.
pub type SocketKey = u64;

/// A server→client event, encoded once as a Socket.IO packet and shared by every recipient
/// (each socket queues the same bytes).
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub packet: Packet,
}

impl Outgoing {
    pub fn new(event: &'static str, payload: &impl Serialize) -> Self {
        Self {
            packet: Packet::event(event, payload).expect("event payloads serialize"),
        }
    }
}

/// Whom a delivery leaves out.
#[derive(Clone, Copy, Debug)]
pub enum Except<'a> {
    Nobody,
    /// The socket that caused the event: it gets an ack instead.
    Socket(SocketKey),
    /// Every socket of the user who caused it (typing, presence: nobody needs their own).
    User(&'a UserId),
}

impl Except<'_> {
    pub fn socket(key: Option<SocketKey>) -> Self {
        key.map_or(Except::Nobody, Except::Socket)
    }

    fn skips(&self, user: &UserId, key: SocketKey) -> bool {
        match self {
            Except::Nobody => false,
            Except::Socket(k) => *k == key,
            Except::User(u) => *u == user,
        }
    }
}

/// Where a socket's outgoing events go: implemented by the Socket.IO layer.
pub trait Outbound: Send + Sync + 'static {
    /// Queues an event without waiting. `false` when the socket is gone or can't keep up;
    /// such a socket is disconnected and its client resynchronizes when it reconnects.
    fn send(&self, event: &Outgoing) -> bool;
    /// Closes the socket from the server side.
    fn disconnect(&self);
}

#[derive(Default)]
struct UserEntry {
    sockets: Vec<(SocketKey, Arc<dyn Outbound>)>,
    conversations: HashSet<ConversationId>,
}

#[derive(Default)]
struct Local {
    users: HashMap<UserId, UserEntry>,
    /// Local users with sockets, per conversation. Only conversations with someone online here
    /// have an entry, so memory follows this node's users, not the whole database.
    conversations: HashMap<ConversationId, HashSet<UserId>>,
}

/// The registry of this process's sockets. Cheap to clone.
///
/// A std `RwLock` is enough: it is never held across an `.await`, and deliveries (the common
/// case) only read.
#[derive(Clone, Default)]
pub struct Hub {
    local: Arc<RwLock<Local>>,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a socket of `user`. Returns `true` when it is the user's first socket here.
    pub fn register(&self, user: &UserId, key: SocketKey, outbound: Arc<dyn Outbound>) -> bool {
        let mut local = self.local.write().unwrap();
        let entry = local.users.entry(user.clone()).or_default();
        entry.sockets.push((key, outbound));
        entry.sockets.len() == 1
    }

    /// Records that `user` is a member of `conversations` (loaded when their socket connected).
    pub fn add_conversations(&self, user: &UserId, conversations: &[ConversationId]) {
        let mut local = self.local.write().unwrap();
        let Local {
            users,
            conversations: by_conv,
        } = &mut *local;
        let Some(entry) = users.get_mut(user) else {
            return;
        };
        for c in conversations {
            if entry.conversations.insert(*c) {
                by_conv.entry(*c).or_default().insert(user.clone());
            }
        }
    }

    /// Removes a socket. When it was the user's last socket here, returns the conversations
    /// they were in (whose members may need to hear they left).
    pub fn unregister(&self, user: &UserId, key: SocketKey) -> Option<Vec<ConversationId>> {
        let mut local = self.local.write().unwrap();
        let Local {
            users,
            conversations: by_conv,
        } = &mut *local;
        let entry = users.get_mut(user)?;
        entry.sockets.retain(|(k, _)| *k != key);
        if !entry.sockets.is_empty() {
            return None;
        }
        let entry = users.remove(user).expect("entry exists");
        for c in &entry.conversations {
            if let Some(set) = by_conv.get_mut(c) {
                set.remove(user);
                if set.is_empty() {
                    by_conv.remove(c);
                }
            }
        }
        Some(entry.conversations.into_iter().collect())
    }

    /// Whether `user` has a socket here.
    pub fn is_online(&self, user: &UserId) -> bool {
        self.local.read().unwrap().users.contains_key(user)
    }

    /// How many sockets `user` has here.
    pub fn socket_count(&self, user: &UserId) -> usize {
        self.local
            .read()
            .unwrap()
            .users
            .get(user)
            .map_or(0, |u| u.sockets.len())
    }

    /// Whether `user`, connected here, is a member of `conversation` (as far as this process
    /// knows: memberships are loaded at connect and kept current by `join`/`leave`).
    pub fn is_member(&self, user: &UserId, conversation: ConversationId) -> bool {
        self.local
            .read()
            .unwrap()
            .users
            .get(user)
            .is_some_and(|u| u.conversations.contains(&conversation))
    }

    /// The conversations of `user`, connected here.
    pub fn conversations_of(&self, user: &UserId) -> Vec<ConversationId> {
        self.local
            .read()
            .unwrap()
            .users
            .get(user)
            .map(|u| u.conversations.iter().copied().collect())
            .unwrap_or_default()
    }

    /// `user` joined `conversation`: their local sockets start receiving its events.
    pub fn join(&self, user: &UserId, conversation: ConversationId) {
        self.add_conversations(user, &[conversation]);
    }

    /// `user` left `conversation`: their local sockets stop receiving its events from now on.
    pub fn leave(&self, user: &UserId, conversation: ConversationId) {
        let mut local = self.local.write().unwrap();
        let Local {
            users,
            conversations: by_conv,
        } = &mut *local;
        if let Some(entry) = users.get_mut(user) {
            entry.conversations.remove(&conversation);
        }
        if let Some(set) = by_conv.get_mut(&conversation) {
            set.remove(user);
            if set.is_empty() {
                by_conv.remove(&conversation);
            }
        }
    }

    /// Delivers to every local socket of every member of `conversation`, except `except`.
    pub fn to_conversation(&self, conversation: ConversationId, event: &Outgoing, except: Except) {
        let failed = {
            let local = self.local.read().unwrap();
            let Some(members) = local.conversations.get(&conversation) else {
                return;
            };
            let mut failed = Vec::new();
            for user in members {
                if let Some(entry) = local.users.get(user) {
                    deliver(user, &entry.sockets, event, except, &mut failed);
                }
            }
            failed
        };
        disconnect_all(failed);
    }

    /// Delivers to every local socket of `user`, except `except`.
    pub fn to_user(&self, user: &UserId, event: &Outgoing, except: Except) {
        self.to_users(std::iter::once(user), event, except);
    }

    /// Delivers once to every local socket of each of `users`, except `except`.
    pub fn to_users<'u>(
        &self,
        users: impl IntoIterator<Item = &'u UserId>,
        event: &Outgoing,
        except: Except,
    ) {
        let failed = {
            let local = self.local.read().unwrap();
            let mut failed = Vec::new();
            for user in users {
                if let Some(entry) = local.users.get(user) {
                    deliver(user, &entry.sockets, event, except, &mut failed);
                }
            }
            failed
        };
        disconnect_all(failed);
    }

    /// The local users who share one of `conversations`: whom presence news concerns.
    pub fn local_members_of(&self, conversations: &[ConversationId]) -> HashSet<UserId> {
        let local = self.local.read().unwrap();
        conversations
            .iter()
            .filter_map(|c| local.conversations.get(c))
            .flatten()
            .cloned()
            .collect()
    }

    /// Number of locally connected sockets and users.
    pub fn counts(&self) -> (usize, usize) {
        let local = self.local.read().unwrap();
        let sockets = local.users.values().map(|u| u.sockets.len()).sum();
        (sockets, local.users.len())
    }
}

fn deliver(
    user: &UserId,
    sockets: &[(SocketKey, Arc<dyn Outbound>)],
    event: &Outgoing,
    except: Except,
    failed: &mut Vec<Arc<dyn Outbound>>,
) {
    for (key, socket) in sockets {
        if !except.skips(user, *key) && !socket.send(event) {
            failed.push(socket.clone());
        }
    }
}

/// Sockets that couldn't take an event are closed outside the lock: their clients reconnect and
/// resynchronize, which is better than silently missing a message.
fn disconnect_all(failed: Vec<Arc<dyn Outbound>>) {
    for socket in failed {
        metrics::counter!("confab_slow_consumer_disconnects_total").increment(1);
        socket.disconnect();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Outbound for Recorder {
        fn send(&self, event: &Outgoing) -> bool {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(event.packet.as_bytes()).into_owned());
            true
        }
        fn disconnect(&self) {}
    }

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn delivers_to_members_sockets_except_the_origin() {
        let hub = Hub::new();
        let conv = ConversationId::new();
        let (a1, a2, b) = (
            Arc::new(Recorder::default()),
            Arc::new(Recorder::default()),
            Arc::new(Recorder::default()),
        );
        assert!(hub.register(&user("a"), 1, a1.clone()));
        assert!(!hub.register(&user("a"), 2, a2.clone()));
        hub.register(&user("b"), 3, b.clone());
        hub.add_conversations(&user("a"), &[conv]);
        hub.add_conversations(&user("b"), &[conv]);
        hub.to_conversation(conv, &Outgoing::new("x", &1), Except::Socket(1));
        assert_eq!(a1.0.lock().unwrap().len(), 0);
        assert_eq!(a2.0.lock().unwrap().len(), 1);
        assert_eq!(b.0.lock().unwrap().len(), 1);

        hub.leave(&user("b"), conv);
        hub.to_conversation(conv, &Outgoing::new("x", &2), Except::Nobody);
        assert_eq!(b.0.lock().unwrap().len(), 1);
        assert_eq!(a1.0.lock().unwrap().len(), 1);

        assert!(hub.unregister(&user("a"), 1).is_none());
        assert_eq!(hub.unregister(&user("a"), 2), Some(vec![conv]));
        assert_eq!(hub.counts(), (1, 1));
        assert!(hub.local.read().unwrap().conversations.is_empty());
    }
}
