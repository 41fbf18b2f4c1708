//! Delivery: which sockets on this process belong to which user, which local users are in which
//! conversation, and (with Redis) the other nodes. Events are encoded once and the same bytes are
//! handed to every recipient socket.
//!
//! Delivering is synchronous: it pushes onto each socket's outgoing queue, which never waits, and
//! onto the bus's publish queue, which never waits either. Callers that deliver in seq order
//! therefore get delivery in seq order on this node, and publication in seq order to the others.

mod local;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use confab_sio::Packet;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::bus::{Bus, Channel, Control, Received, Signal};
use crate::domain::{ConversationId, UserId};
use crate::protocol::ServerEvent;
use crate::protocol::events::Resync;
pub use local::Reconciled;
use local::{Interest, Local};

/// A process-unique number for a connected socket.
pub type SocketKey = u64;

/// A server→client event, encoded once as a Socket.IO packet and shared by every recipient
/// (each socket queues the same bytes).
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub packet: Packet,
}

impl Outgoing {
    /// Encodes an event once, for any number of recipients.
    pub fn of<E: ServerEvent>(event: &E) -> Self {
        Self::new(E::NAME, event)
    }

    fn new(event: &'static str, payload: &impl Serialize) -> Self {
        Self {
            packet: Packet::event(event, payload).expect("event payloads serialize"),
        }
    }

    fn from_frame(frame: Bytes) -> Self {
        Self {
            packet: Packet::from_encoded(frame),
        }
    }

    fn frame(&self) -> &[u8] {
        self.packet.as_bytes()
    }
}

/// Whom a delivery leaves out.
#[derive(Clone, Copy, Debug)]
pub enum Except<'a> {
    Nobody,
    /// The socket that caused the event: it gets an ack instead. (Socket keys are local, so
    /// other nodes deliver to all of the user's sockets there.)
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

    fn user(&self) -> Option<String> {
        match self {
            Except::User(u) => Some(u.to_string()),
            _ => None,
        }
    }
}

/// Where a socket's outgoing events go: implemented by the Socket.IO layer.
pub trait Outbound: Send + Sync + 'static {
    /// Queues an event without waiting. `false` when the socket can't keep up; such a socket
    /// is disconnected and its client resynchronizes when it reconnects.
    fn send(&self, event: &Outgoing) -> bool;
    /// Closes the socket from the server side.
    fn disconnect(&self);
}

/// Subscriptions a change started, to wait for before telling a client it is connected: a
/// message published between its `sync` and its subscription would otherwise be missed.
#[must_use]
#[derive(Default)]
pub struct Pending(Vec<oneshot::Receiver<()>>);

impl Pending {
    /// Waits for Redis to confirm, but no longer than `limit` (Redis may be down; the node
    /// serves its local users meanwhile).
    pub async fn wait(self, limit: Duration) {
        let all = futures::future::join_all(self.0);
        let _ = tokio::time::timeout(limit, all).await;
    }
}

/// Recently delivered presence news, so that a user in several conversations with someone hears
/// each change once though it arrives once per conversation.
type PresenceSeen = Mutex<HashMap<u64, (Instant, HashSet<UserId>)>>;
const PRESENCE_DEDUP_WINDOW: Duration = Duration::from_secs(30);

struct Inner {
    /// A std `RwLock`: never held across an `.await`, and deliveries (the common case) read.
    local: RwLock<Local>,
    bus: Option<Bus>,
    presence_seen: PresenceSeen,
    /// Bumped whenever bus messages from or to this node may have been lost (exactly the events
    /// that make clients `resync`). Memberships held here may then disagree with the database (a
    /// join or leave travels to other nodes only as a bus message): the chat layer, which owns
    /// the store, watches it and reconciles (`membership_versions`, `reconcile`). Presence
    /// watches it too, and registers the users here again in Redis.
    missed: watch::Sender<u64>,
}

/// The registry of this process's sockets, and its link to the other nodes. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Hub {
    /// A hub alone (`bus: None`) or in a cluster. With a bus, `signals` is its incoming stream;
    /// a task applies it until the hub is dropped.
    pub fn new(bus: Option<(Bus, mpsc::UnboundedReceiver<Signal>)>) -> Self {
        let (bus, signals) = match bus {
            Some((bus, signals)) => (Some(bus), Some(signals)),
            None => (None, None),
        };
        let hub = Self {
            inner: Arc::new(Inner {
                local: RwLock::default(),
                bus,
                presence_seen: Mutex::default(),
                missed: watch::Sender::new(0),
            }),
        };
        if let Some(signals) = signals {
            tokio::spawn(receive(Arc::downgrade(&hub.inner), signals));
        }
        if let Some(bus) = &hub.inner.bus {
            // Restored after Redis comes back, like every subscription; nobody waits for it.
            drop(bus.subscribe(&Channel::Cluster));
        }
        hub
    }

    pub fn bus(&self) -> Option<&Bus> {
        self.inner.bus.as_ref()
    }

    /// Applies interest changes to the bus: subscribe when the first local party appears,
    /// unsubscribe when the last goes. Called with the lock held, so that the bus sees the
    /// changes in the order they happened.
    fn apply(&self, changes: Vec<Interest>) -> Pending {
        let mut pending = Pending::default();
        let Some(bus) = &self.inner.bus else {
            return pending;
        };
        for change in changes {
            match change {
                Interest::Gained(channel) => pending.0.push(bus.subscribe(&channel)),
                Interest::Lost(channel) => bus.unsubscribe(&channel),
            }
        }
        pending
    }

    /// Adds a socket of `user`. Returns whether it is the user's first socket here.
    pub fn register(
        &self,
        user: &UserId,
        key: SocketKey,
        outbound: Arc<dyn Outbound>,
    ) -> (bool, Pending) {
        let mut local = self.inner.local.write().unwrap();
        let (first, changes) = local.register(user, key, outbound);
        (first, self.apply(changes))
    }

    /// Records that `user` is a member of `conversations` (loaded when their socket connected).
    pub fn add_conversations(&self, user: &UserId, conversations: &[ConversationId]) -> Pending {
        let mut local = self.inner.local.write().unwrap();
        let changes = local.add_conversations(user, conversations);
        self.apply(changes)
    }

    /// Removes a socket. When it was the user's last socket here, returns the conversations
    /// they were in whose members may need to hear they left: not large groups, where presence
    /// is not announced (docs/PROTOCOL.md, "Large groups").
    pub fn unregister(&self, user: &UserId, key: SocketKey) -> Option<Vec<ConversationId>> {
        let mut local = self.inner.local.write().unwrap();
        let (gone, changes) = local.unregister(user, key);
        let _ = self.apply(changes);
        gone
    }

    /// `user` joined `conversation`: their sockets, here and on other nodes, start receiving it.
    pub fn join(&self, user: &UserId, conversation: ConversationId) {
        let _ = self.add_conversations(user, &[conversation]);
        if let Some(bus) = &self.inner.bus {
            bus.publish(
                &Channel::User(user.clone()),
                Control::Join { c: conversation },
                &[],
            );
        }
    }

    /// `user` left `conversation`: their sockets, here and on other nodes, stop receiving it.
    pub fn leave(&self, user: &UserId, conversation: ConversationId) {
        self.leave_locally(user, conversation);
        if let Some(bus) = &self.inner.bus {
            bus.publish(
                &Channel::User(user.clone()),
                Control::Leave { c: conversation },
                &[],
            );
        }
    }

    fn leave_locally(&self, user: &UserId, conversation: ConversationId) {
        let mut local = self.inner.local.write().unwrap();
        let changes = local.leave(user, conversation);
        let _ = self.apply(changes);
    }

    /// Delivers to every socket of every member of `conversation`, on every node, except
    /// `except`.
    pub fn to_conversation(&self, conversation: ConversationId, event: &Outgoing, except: Except) {
        self.inner
            .local
            .read()
            .unwrap()
            .to_conversation(conversation, event, except);
        if let Some(bus) = &self.inner.bus {
            bus.publish(
                &Channel::Conversation(conversation),
                Control::Event { x: except.user() },
                event.frame(),
            );
        }
    }

    /// Delivers to every socket of `user`, on every node, except `except`.
    pub fn to_user(&self, user: &UserId, event: &Outgoing, except: Except) {
        self.inner
            .local
            .read()
            .unwrap()
            .to_user(user, event, except);
        if let Some(bus) = &self.inner.bus {
            bus.publish(
                &Channel::User(user.clone()),
                Control::Event { x: except.user() },
                event.frame(),
            );
        }
    }

    /// Tells the members of `conversations` (once each, on every node) about `subject`'s
    /// presence.
    /// Users in `hidden` (those the subject blocked) are not told.
    pub fn announce_presence(
        &self,
        subject: &UserId,
        conversations: &[ConversationId],
        event: &Outgoing,
        hidden: &[UserId],
    ) {
        {
            let local = self.inner.local.read().unwrap();
            let mut recipients = local.members_of(conversations);
            for user in hidden {
                recipients.remove(user);
            }
            local.to_users(&recipients, event, Except::User(subject));
        }
        if let Some(bus) = &self.inner.bus {
            let id = rand::random();
            for c in conversations {
                bus.publish(
                    &Channel::Conversation(*c),
                    Control::Presence {
                        id,
                        user: subject.to_string(),
                        h: hidden.iter().map(UserId::to_string).collect(),
                    },
                    event.frame(),
                );
            }
        }
    }

    /// Changes whenever bus messages from or to this node may have been lost (the subscriber
    /// reconnected, a node died, another node dropped messages): memberships here may have
    /// missed joins or leaves made on other nodes, and Redis may have lost what this node wrote
    /// to it (a failed-over primary loses writes it had not yet replicated). The receiver sees
    /// the latest change only.
    pub fn bus_missed(&self) -> watch::Receiver<u64> {
        self.inner.missed.subscribe()
    }

    /// Each of `users`' membership version here (`None`: no socket here), to take before
    /// reading their memberships from the database and pass to `reconcile`.
    pub fn membership_versions(&self, users: &[UserId]) -> Vec<Option<u64>> {
        self.inner.local.read().unwrap().versions(users)
    }

    /// Makes `user`'s memberships here match `stored`, read from the database after
    /// `membership_versions` returned `version`, unless they changed here meanwhile (then the
    /// caller reads again). Subscribes to and unsubscribes from conversation channels
    /// accordingly. Nothing is published: every node reconciles its own users.
    pub fn reconcile(
        &self,
        user: &UserId,
        version: u64,
        stored: &HashSet<ConversationId>,
    ) -> Reconciled {
        let mut local = self.inner.local.write().unwrap();
        let (outcome, changes) = local.reconcile(user, version, stored);
        let _ = self.apply(changes);
        outcome
    }

    /// Bus messages from or to this node may have been lost: clients here are told to `resync`
    /// (events), and the `bus_missed` watch is bumped (memberships, presence).
    fn missed_here(&self) {
        self.inner.missed.send_modify(|n| *n += 1);
        self.to_everyone_here(&resync());
    }

    /// Sends `event` to every socket on this node (shutdown notices, resync hints).
    pub fn to_everyone_here(&self, event: &Outgoing) {
        self.inner.local.read().unwrap().to_everyone(event);
    }

    /// Node `node` was found dead. It may have committed messages it never published (killed
    /// between the commit and the publish), and clients only notice a missing message at the
    /// next one in its conversation, which may never come. So every node, this one included,
    /// tells its sockets to `resync`.
    pub fn node_died(&self, node: &str) {
        tracing::info!(node, "a node died: asking every client to resync");
        // It may also have died between committing a membership change and publishing it.
        self.missed_here();
        if let Some(bus) = &self.inner.bus {
            bus.publish(
                &Channel::Cluster,
                Control::NodeDied {
                    node: node.to_owned(),
                },
                &[],
            );
        }
    }

    /// Ends every session of `user`, on every node: each socket gets `event`, then is closed.
    pub fn end_sessions(&self, user: &UserId, event: &Outgoing) {
        self.end_sessions_here(user, event);
        if let Some(bus) = &self.inner.bus {
            bus.publish(
                &Channel::User(user.clone()),
                Control::EndSessions,
                event.frame(),
            );
        }
    }

    /// Ends `user`'s sessions on this node only (each socket gets `event`, then is closed).
    pub fn end_sessions_here(&self, user: &UserId, event: &Outgoing) {
        // Collected first: closing a socket unregisters it, which takes the lock.
        let sockets = self.inner.local.read().unwrap().sockets_of(user);
        for socket in sockets {
            socket.send(event);
            socket.disconnect();
        }
    }

    /// Whether `user` has a socket here.
    pub fn is_online(&self, user: &UserId) -> bool {
        self.inner.local.read().unwrap().is_online(user)
    }

    /// How many sockets `user` has here.
    pub fn socket_count(&self, user: &UserId) -> usize {
        self.inner.local.read().unwrap().socket_count(user)
    }

    /// Whether `user`, connected here, is a member of `conversation` (as far as this process
    /// knows: memberships are loaded at connect and kept current by `join`/`leave`).
    pub fn is_member(&self, user: &UserId, conversation: ConversationId) -> bool {
        self.inner
            .local
            .read()
            .unwrap()
            .is_member(user, conversation)
    }

    /// The conversations of `user`, connected here, but large groups: where their presence is
    /// announced.
    pub fn small_conversations_of(&self, user: &UserId) -> Vec<ConversationId> {
        self.inner
            .local
            .read()
            .unwrap()
            .small_conversations_of(user)
    }

    /// Records conversations' member counts (at a member's connect, and after membership
    /// changes), for [`Hub::is_large`]. Only conversations with local members are kept.
    pub fn set_sizes(&self, sizes: &[(ConversationId, i64)]) {
        self.inner.local.write().unwrap().set_sizes(sizes);
    }

    /// Whether `conversation` is a large group, as of its last recorded count here (a local
    /// member's connect or a membership change seen here). Large groups get no presence,
    /// typing or others' receipts: each would cost a delivery per member.
    pub fn is_large(&self, conversation: ConversationId) -> bool {
        self.inner.local.read().unwrap().is_large(conversation)
    }

    /// The users with sockets here.
    pub fn local_users(&self) -> Vec<UserId> {
        self.inner.local.read().unwrap().users()
    }

    /// Number of locally connected sockets and users.
    pub fn counts(&self) -> (usize, usize) {
        self.inner.local.read().unwrap().counts()
    }
}

/// The hint that events may have been missed: clients call `sync`.
fn resync() -> Outgoing {
    Outgoing::of(&Resync {})
}

/// Applies what other nodes sent, until the hub is gone.
async fn receive(hub: Weak<Inner>, mut signals: mpsc::UnboundedReceiver<Signal>) {
    while let Some(signal) = signals.recv().await {
        let Some(inner) = hub.upgrade() else {
            return;
        };
        let hub = Hub { inner };
        match signal {
            Signal::Message(m) => {
                let Some(bus) = hub.inner.bus.as_ref() else {
                    return;
                };
                if let Some(received) = bus.decode(&m.channel, m.payload) {
                    hub.apply_remote(received);
                }
            }
            Signal::Reconnected => {
                // Whatever other nodes published while we were cut off is lost to us; clients
                // here are told to catch up with `sync` rather than wait for a seq gap that
                // may never come.
                tracing::info!("bus restored: asking local clients to resync");
                hub.missed_here();
            }
            Signal::PublishRestored => {
                // Local sockets had everything (local delivery doesn't use Redis); the other
                // nodes' did not. Memberships here are right too: this node applied its own
                // joins and leaves before publishing them.
                tracing::info!("publishing restored after drops: asking other nodes to resync");
                if let Some(bus) = hub.bus() {
                    bus.publish(&Channel::Cluster, Control::Missed, &[]);
                }
            }
        }
    }
}

impl Hub {
    fn apply_remote(&self, received: Received) {
        let Received {
            channel,
            control,
            frame,
        } = received;
        match (channel, control) {
            (Channel::Conversation(c), Control::Event { x }) => {
                let except_user = x.and_then(|x| UserId::parse(x.as_str()).ok());
                let except = except_user.as_ref().map_or(Except::Nobody, Except::User);
                self.inner.local.read().unwrap().to_conversation(
                    c,
                    &Outgoing::from_frame(frame),
                    except,
                );
            }
            (Channel::User(u), Control::Event { .. }) => {
                self.inner.local.read().unwrap().to_user(
                    &u,
                    &Outgoing::from_frame(frame),
                    Except::Nobody,
                );
            }
            (Channel::Conversation(c), Control::Presence { id, user, h }) => {
                let Ok(subject) = UserId::parse(&user) else {
                    return;
                };
                let event = Outgoing::from_frame(frame);
                let local = self.inner.local.read().unwrap();
                let mut recipients = local.members_of(&[c]);
                for hidden in &h {
                    if let Ok(hidden) = UserId::parse(hidden) {
                        recipients.remove(&hidden);
                    }
                }
                {
                    let mut seen = self.inner.presence_seen.lock().unwrap();
                    let now = Instant::now();
                    seen.retain(|_, (at, _)| now.duration_since(*at) < PRESENCE_DEDUP_WINDOW);
                    let (_, served) = seen.entry(id).or_insert_with(|| (now, HashSet::new()));
                    recipients.retain(|r| served.insert(r.clone()));
                }
                local.to_users(&recipients, &event, Except::User(&subject));
            }
            (Channel::User(u), Control::Join { c }) => {
                let _ = self.add_conversations(&u, &[c]);
            }
            (Channel::User(u), Control::Leave { c }) => self.leave_locally(&u, c),
            (Channel::User(u), Control::EndSessions) => {
                self.end_sessions_here(&u, &Outgoing::from_frame(frame));
            }
            (Channel::Cluster, Control::NodeDied { node }) => {
                tracing::info!(
                    node,
                    "another node reaped a dead one: asking local clients to resync"
                );
                self.missed_here();
            }
            (Channel::Cluster, Control::Missed) => {
                tracing::info!("another node dropped messages: asking local clients to resync");
                self.missed_here();
            }
            // Joins and leaves only travel on user channels, presence on conversations, deaths
            // on the cluster channel.
            (channel, control) => {
                tracing::debug!(?channel, ?control, "ignoring a misrouted bus message");
            }
        }
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
        let hub = Hub::default();
        let conv = ConversationId::new();
        let (a1, a2, b) = (
            Arc::new(Recorder::default()),
            Arc::new(Recorder::default()),
            Arc::new(Recorder::default()),
        );
        assert!(hub.register(&user("a"), 1, a1.clone()).0);
        assert!(!hub.register(&user("a"), 2, a2.clone()).0);
        let _ = hub.register(&user("b"), 3, b.clone());
        let _ = hub.add_conversations(&user("a"), &[conv]);
        let _ = hub.add_conversations(&user("b"), &[conv]);
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
    }

    /// A reconciliation makes memberships match the database: a lost join is joined (events
    /// arrive), a lost leave is left (events stop).
    #[test]
    fn reconciling_joins_what_is_missing_and_leaves_what_is_extra() {
        let hub = Hub::default();
        let (kept, lost_join, lost_leave) = (
            ConversationId::new(),
            ConversationId::new(),
            ConversationId::new(),
        );
        let b = Arc::new(Recorder::default());
        let _ = hub.register(&user("b"), 1, b.clone());
        let _ = hub.add_conversations(&user("b"), &[kept, lost_leave]);
        let [Some(version)] = hub.membership_versions(&[user("b")])[..] else {
            panic!("b is here");
        };
        let stored = HashSet::from([kept, lost_join]);
        assert_eq!(
            hub.reconcile(&user("b"), version, &stored),
            Reconciled::Applied { joined: 1, left: 1 }
        );
        for c in [kept, lost_join, lost_leave] {
            hub.to_conversation(c, &Outgoing::new("x", &1), Except::Nobody);
        }
        assert_eq!(
            b.0.lock().unwrap().len(),
            2,
            "kept and lost_join, not lost_leave"
        );
        assert!(!hub.is_member(&user("b"), lost_leave));

        // Once in line, another pass changes nothing.
        let [Some(version)] = hub.membership_versions(&[user("b")])[..] else {
            panic!("b is here");
        };
        assert_eq!(
            hub.reconcile(&user("b"), version, &stored),
            Reconciled::Applied { joined: 0, left: 0 }
        );
    }

    /// A join or leave applied between the version snapshot and the reconciliation (the
    /// database read may predate it) is not undone: the user is left alone, to be read again.
    #[test]
    fn a_change_made_during_a_reconciliation_is_not_undone() {
        let hub = Hub::default();
        let (joined, left) = (ConversationId::new(), ConversationId::new());
        let _ = hub.register(&user("b"), 1, Arc::new(Recorder::default()));
        let _ = hub.add_conversations(&user("b"), &[left]);
        let [Some(version)] = hub.membership_versions(&[user("b")])[..] else {
            panic!("b is here");
        };
        // What the database said when read, before these two changes committed.
        let stale = HashSet::from([left]);
        hub.join(&user("b"), joined);
        hub.leave(&user("b"), left);
        assert_eq!(
            hub.reconcile(&user("b"), version, &stale),
            Reconciled::Changed
        );
        assert!(hub.is_member(&user("b"), joined));
        assert!(!hub.is_member(&user("b"), left));

        // Read again after the changes: nothing to correct.
        let [Some(version)] = hub.membership_versions(&[user("b")])[..] else {
            panic!("b is here");
        };
        assert_eq!(
            hub.reconcile(&user("b"), version, &HashSet::from([joined])),
            Reconciled::Applied { joined: 0, left: 0 }
        );
    }

    /// A user who disconnects and reconnects during a reconciliation loaded their memberships
    /// afresh: their new entry never carries a version seen before.
    #[test]
    fn a_user_back_during_a_reconciliation_is_not_reconciled_with_an_old_read() {
        let hub = Hub::default();
        let c = ConversationId::new();
        let _ = hub.register(&user("b"), 1, Arc::new(Recorder::default()));
        let versions = hub.membership_versions(&[user("b"), user("nobody")]);
        assert!(
            versions[1].is_none(),
            "no socket here: nothing to reconcile"
        );
        let version = versions[0].unwrap();
        assert!(hub.unregister(&user("b"), 1).is_some());
        assert_eq!(
            hub.reconcile(&user("b"), version, &HashSet::from([c])),
            Reconciled::Gone
        );
        let _ = hub.register(&user("b"), 2, Arc::new(Recorder::default()));
        assert_eq!(
            hub.reconcile(&user("b"), version, &HashSet::from([c])),
            Reconciled::Changed
        );
        assert!(!hub.is_member(&user("b"), c));
    }

    /// Every case where clients are told to `resync` also marks memberships stale, except
    /// this node's own dropped publishes: it applied its own joins and leaves before publishing.
    #[tokio::test]
    async fn memberships_are_marked_stale_when_bus_messages_may_have_been_lost() {
        let (bus, _) = Bus::start("redis://127.0.0.1:1", false, "p").await.unwrap();
        let (signals, rx) = mpsc::unbounded_channel();
        let hub = Hub::new(Some((bus, rx)));
        let mut stale = hub.bus_missed();
        signals.send(Signal::PublishRestored).unwrap();
        signals.send(Signal::Reconnected).unwrap();
        tokio::time::timeout(Duration::from_secs(5), stale.changed())
            .await
            .expect("marked stale")
            .unwrap();
        assert_eq!(*stale.borrow_and_update(), 1, "once: for Reconnected only");
        hub.node_died("x1");
        assert!(stale.has_changed().unwrap(), "a local reaping marks it too");
    }
}
