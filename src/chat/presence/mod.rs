//! Presence: a user is online while at least one of their sockets is connected, on any node.
//!
//! Going offline waits a grace period, so a tab reload (disconnect, reconnect a moment later)
//! is not announced as offline-then-online. `last_seen_at` is written when the user really goes.
//! Alone, a node knows presence from its own sockets; in a cluster, `cluster` keeps it in Redis.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

pub use crate::bus::ClusterPresence;
use crate::domain::{ConversationId, Timestamp, UserId};
use crate::hub::{Hub, Outgoing};
use crate::protocol::events::PresenceState;
use crate::store::Store;

/// Tracks who is online and announces changes. Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    store: Store,
    grace: Duration,
    /// Users whose last socket here closed and whose grace period is running.
    going: Mutex<Going>,
    /// Wakes the task that ends grace periods when the first one starts.
    started: Arc<Notify>,
    generation: AtomicU64,
    cluster: Option<ClusterPresence>,
}

/// Grace periods running, served by one task in deadline order (as session expiry is), so a
/// disconnect costs a queue entry, not a timer task.
#[derive(Default)]
struct Going {
    /// When each grace period ends. They are all equally long, so the order they started in is
    /// the order they end in.
    due: VecDeque<(Instant, UserId, u64)>,
    /// Each user's running grace period: its generation (an entry of `due` with another one is
    /// stale: the user came back meanwhile) and the conversations to tell.
    users: HashMap<UserId, (u64, Vec<ConversationId>)>,
}

impl Presence {
    pub fn new(hub: Hub, store: Store, grace: Duration, cluster: Option<ClusterPresence>) -> Self {
        let presence = Self {
            inner: Arc::new(Inner {
                hub,
                store,
                grace,
                going: Mutex::default(),
                started: Arc::default(),
                generation: AtomicU64::default(),
                cluster,
            }),
        };
        tokio::spawn(end_grace_periods(
            Arc::downgrade(&presence.inner),
            presence.inner.started.clone(),
        ));
        if presence.inner.cluster.is_some() {
            tokio::spawn(heartbeat(Arc::downgrade(&presence.inner)));
        }
        presence
    }

    /// A socket of `user` connected (and its memberships are loaded into the hub).
    pub async fn connected(&self, user: &UserId, first_socket: bool) {
        if !first_socket {
            return;
        }
        if self
            .inner
            .going
            .lock()
            .unwrap()
            .users
            .remove(user)
            .is_some()
        {
            // Back within the grace period: nobody was told they left.
            return;
        }
        let first_anywhere = match &self.inner.cluster {
            None => true,
            Some(cluster) => cluster.arrive(user).await.unwrap_or_else(|e| {
                // Redis is down: this node can only speak for itself.
                tracing::debug!(error = %e, "presence without Redis");
                true
            }),
        };
        if first_anywhere {
            self.announce_online(user).await;
        }
    }

    async fn announce_online(&self, user: &UserId) {
        // Not large groups: an arrival there would cost a delivery per member, so n² as they
        // all connect (docs/PROTOCOL.md, "Large groups"). Their members ask `presence:get`.
        let conversations = self.inner.hub.small_conversations_of(user);
        self.announce(
            &conversations,
            &PresenceState {
                user_id: user.clone(),
                online: true,
                last_seen_at: None,
            },
        )
        .await;
    }

    /// The last socket of `user` here closed; they were in `conversations`. They go offline
    /// when the grace period ends, unless they came back.
    pub fn disconnected(&self, user: &UserId, conversations: Vec<ConversationId>) {
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let mut going = self.inner.going.lock().unwrap();
        going
            .due
            .push_back((Instant::now() + self.inner.grace, user.clone(), generation));
        going
            .users
            .insert(user.clone(), (generation, conversations));
        if going.due.len() == 1 {
            self.inner.started.notify_one();
        }
    }

    /// A grace period ended: the user goes offline here, and everywhere if no node has them.
    async fn departed(&self, user: UserId, conversations: Vec<ConversationId>) {
        let gone_everywhere = match &self.inner.cluster {
            None => true,
            Some(cluster) => cluster.depart(&user).await.unwrap_or(true),
        };
        if gone_everywhere {
            self.went_offline(&user, &conversations).await;
        }
    }

    /// Records and announces that `user` is offline everywhere.
    async fn went_offline(&self, user: &UserId, conversations: &[ConversationId]) {
        let now = Timestamp::now();
        if let Err(e) = self.inner.store.set_last_seen(user, Some(now)).await {
            tracing::warn!(user = %user, error = e.cause_chain(), "recording last seen");
        }
        self.announce(
            conversations,
            &PresenceState {
                user_id: user.clone(),
                online: false,
                last_seen_at: Some(now),
            },
        )
        .await;
    }

    /// Tells every member of `conversations`, on every node (once each, never the user), but
    /// those the user blocked. Without the list of them (the database is down) nobody is told:
    /// a blocked user must not learn the blocker's presence.
    async fn announce(&self, conversations: &[ConversationId], state: &PresenceState) {
        let hidden = match self.inner.store.blocked_by(&state.user_id).await {
            Ok(hidden) => hidden,
            Err(e) => {
                tracing::warn!(user = %state.user_id, error = e.cause_chain(), "presence not announced: loading blocks");
                return;
            }
        };
        let event = Outgoing::of(state);
        self.inner
            .hub
            .announce_presence(&state.user_id, conversations, &event, &hidden);
    }

    /// This node is going away. Its heartbeat is removed so that the other nodes take its users
    /// off within one heartbeat period: by then most clients have reconnected to another node
    /// (and stay online without a flap); those who haven't are announced offline.
    pub async fn retire(&self) {
        if let Some(cluster) = &self.inner.cluster
            && let Err(e) = cluster.retire().await
        {
            tracing::warn!(error = %e, "leaving the cluster");
        }
    }

    /// The presence of `users` as `viewer` may see it: real for users who share a conversation
    /// with the viewer, "offline, never seen" for anyone else.
    pub async fn get(
        &self,
        viewer: &UserId,
        users: &[UserId],
    ) -> crate::error::Result<Vec<PresenceState>> {
        let visible: HashMap<UserId, Option<Timestamp>> = self
            .inner
            .store
            .last_seen(viewer, users)
            .await?
            .into_iter()
            .collect();
        let shown: Vec<UserId> = users
            .iter()
            .filter(|u| visible.contains_key(*u))
            .cloned()
            .collect();
        let online = self.online(&shown).await;
        Ok(users
            .iter()
            .map(|u| {
                let (online, last_seen_at) = match visible.get(u) {
                    Some(_) if online.get(u).copied().unwrap_or(false) => (true, None),
                    Some(last_seen) => (false, *last_seen),
                    None => (false, None),
                };
                PresenceState {
                    user_id: u.clone(),
                    online,
                    last_seen_at,
                }
            })
            .collect())
    }

    /// A socket here, or a grace period running here.
    fn is_here(&self, user: &UserId) -> bool {
        self.inner.hub.is_online(user) || self.inner.going.lock().unwrap().users.contains_key(user)
    }

    /// Online here (or in the grace period here), or on another node.
    pub async fn online(&self, users: &[UserId]) -> HashMap<UserId, bool> {
        let mut online: HashMap<UserId, bool> =
            users.iter().map(|u| (u.clone(), self.is_here(u))).collect();
        if let Some(cluster) = &self.inner.cluster {
            match cluster.online(users).await {
                Ok(elsewhere) => {
                    for (u, on) in users.iter().zip(elsewhere) {
                        *online.get_mut(u).expect("all users are keys") |= on;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "presence without Redis"),
            }
        }
        online
    }
}

/// Ends grace periods as they come due: those whose user is still away depart (each on a task
/// of its own, as it may wait on Redis and the database). Stops when the service is gone.
async fn end_grace_periods(presence: Weak<Inner>, started: Arc<Notify>) {
    /// How often an idle task looks whether the service is gone.
    const IDLE_CHECK: Duration = Duration::from_secs(60);
    loop {
        let next = {
            let Some(inner) = presence.upgrade() else {
                return;
            };
            let mut going = inner.going.lock().unwrap();
            let now = Instant::now();
            let mut ended = Vec::new();
            while let Some((at, _, _)) = going.due.front() {
                if *at > now {
                    break;
                }
                let (_, user, generation) = going.due.pop_front().expect("a front entry");
                let current = going
                    .users
                    .get(&user)
                    .is_some_and(|(g, _)| *g == generation);
                if current && !inner.hub.is_online(&user) {
                    let (_, conversations) = going.users.remove(&user).expect("checked above");
                    ended.push((user, conversations));
                }
            }
            let next = going.due.front().map(|(at, _, _)| *at);
            drop(going);
            for (user, conversations) in ended {
                let presence = Presence {
                    inner: inner.clone(),
                };
                tokio::spawn(async move { presence.departed(user, conversations).await });
            }
            next
        };
        // Until the next grace period ends, or one starts when none was running.
        let wake = next.unwrap_or_else(|| Instant::now() + IDLE_CHECK);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = started.notified(), if next.is_none() => {}
        }
    }
}

/// Splits the users a re-registration covered (`users`; `fresh`: those it registered anew) by
/// whether they are still `here` (a socket, or a grace period running) now that it is done:
/// those registered anew and here are announced online; those no longer here departed while it
/// ran and are taken off again. Returns (to announce, to take off).
fn after_reassert(
    users: &[UserId],
    fresh: Vec<UserId>,
    here: impl Fn(&UserId) -> bool,
) -> (Vec<UserId>, Vec<UserId>) {
    let fresh: HashSet<UserId> = fresh.into_iter().collect();
    let (mut announce, mut gone) = (Vec::new(), Vec::new());
    for user in users {
        if !here(user) {
            gone.push(user.clone());
        } else if fresh.contains(user) {
            announce.push(user.clone());
        }
    }
    (announce, gone)
}

/// Keeps this node's heartbeat, restores its users after Redis lost them, and marks the users
/// of nodes that died offline.
///
/// It beats every third of the node timeout, and looks for dead nodes at each beat and also
/// right after the earliest other node's heartbeat would lapse: a node that dies is found at its
/// timeout (counted from its last beat, so at most the timeout after its death), not up to a
/// beat later.
///
/// Redis may lose what this node wrote without its heartbeat lapsing: a Redis Cluster primary
/// that fails over loses the writes its replica had not yet received, and the heartbeat key may
/// live on another shard; another node may take this one for dead (and take its users off) in
/// the moment before its heartbeat is renewed. Each of these also makes the hub say that bus
/// messages may have been lost, so the users here are registered again then too.
async fn heartbeat(presence: std::sync::Weak<Inner>) {
    /// Redis drops an expired key when it is next touched; looking a moment after the lapse
    /// finds it gone.
    const AFTER_LAPSE: Duration = Duration::from_millis(10);
    let Some((interval, mut missed)) = presence.upgrade().and_then(|p| {
        let interval = p.cluster.as_ref()?.heartbeat_interval();
        Some((interval, p.hub.bus_missed()))
    }) else {
        return;
    };
    let mut next_beat = tokio::time::Instant::now();
    let mut next_look = next_beat;
    // Registering the users here again is due (and is retried at each beat until it works).
    let mut reassert = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_beat.min(next_look)) => {}
            changed = missed.changed() => match changed {
                Ok(()) => reassert = true,
                Err(_) => return,
            },
        }
        // Stops with the server.
        let Some(inner) = presence.upgrade() else {
            return;
        };
        let presence = Presence { inner };
        let Some(cluster) = &presence.inner.cluster else {
            return;
        };
        let now = tokio::time::Instant::now();
        if now >= next_beat {
            next_beat = now + interval;
            match cluster.heartbeat().await {
                Ok(lapsed) => reassert |= lapsed,
                Err(e) => {
                    tracing::debug!(error = %e, "presence heartbeat");
                    next_look = next_beat;
                    continue;
                }
            }
        }
        if reassert {
            let users = presence.inner.hub.local_users();
            match cluster.reassert(&users).await {
                Ok(fresh) => {
                    reassert = false;
                    // A user may have left, and their grace period ended, while the registration
                    // was on its way (it takes as long as Redis does, and a troubled Redis is why
                    // it runs): their departure may have reached Redis first. They are taken off
                    // again, quietly: their going offline was announced.
                    let (announce, gone) = after_reassert(&users, fresh, |u| presence.is_here(u));
                    for user in gone {
                        // Unless they came back meanwhile.
                        if presence.is_here(&user) {
                            continue;
                        }
                        if let Err(e) = cluster.depart(&user).await {
                            tracing::debug!(error = %e, "taking a departed user off again");
                        }
                    }
                    for user in announce {
                        presence.announce_online(&user).await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "re-registering users"),
            }
        }
        if now < next_look {
            continue;
        }
        next_look = next_beat;
        match cluster.reap().await {
            Ok(reaped) => {
                if let Some(lapse) = reaped.next_lapse {
                    next_look = next_look.min(tokio::time::Instant::now() + lapse + AFTER_LAPSE);
                }
                for node in &reaped.nodes {
                    presence.inner.hub.node_died(node);
                }
                for user in reaped.offline {
                    let conversations: Vec<ConversationId> = presence
                        .inner
                        .store
                        .memberships(&user)
                        .await
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(_, count)| !crate::domain::is_large(*count))
                        .map(|(c, _)| c)
                        .collect();
                    presence.went_offline(&user, &conversations).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "looking for dead nodes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<UserId> {
        names.iter().map(|n| UserId::parse(n).unwrap()).collect()
    }

    #[test]
    fn a_reassertion_announces_who_is_still_here_and_takes_off_who_left_meanwhile() {
        // a: registered anew and here; b: was registered, here; c: registered anew, left (its
        // departure may have reached Redis before the registration); d: was registered, left.
        let users = ids(&["a", "b", "c", "d"]);
        let here: HashSet<UserId> = ids(&["a", "b"]).into_iter().collect();
        let (announce, gone) = after_reassert(&users, ids(&["a", "c"]), |u| here.contains(u));
        assert_eq!(announce, ids(&["a"]));
        assert_eq!(gone, ids(&["c", "d"]));
    }
}
