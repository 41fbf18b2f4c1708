//! Presence: a user is online while at least one of their sockets is connected.
//!
//! Going offline waits a grace period, so a tab reload (disconnect, reconnect a moment later)
//! is not announced as offline-then-online. `last_seen_at` is written when the user really goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::domain::{ConversationId, Timestamp, UserId};
use crate::hub::{Except, Hub, Outgoing};
use crate::store::Store;

/// One user's presence, as clients see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PresenceState {
    pub user_id: UserId,
    pub online: bool,
    pub last_seen_at: Option<Timestamp>,
}

/// Tracks who is online and announces changes. Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    hub: Hub,
    store: Store,
    grace: Duration,
    /// Users whose last socket closed and whose grace period is running, with a generation
    /// number so that a timer started before a reconnect can tell it is stale.
    going: Arc<Mutex<HashMap<UserId, u64>>>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Presence {
    pub fn new(hub: Hub, store: Store, grace: Duration) -> Self {
        Self {
            hub,
            store,
            grace,
            going: Arc::default(),
            generation: Arc::default(),
        }
    }

    /// Online: has a socket, or lost the last one less than the grace period ago.
    pub fn is_online(&self, user: &UserId) -> bool {
        self.hub.is_online(user) || self.going.lock().unwrap().contains_key(user)
    }

    /// A socket of `user` connected (and its memberships are loaded into the hub).
    pub fn connected(&self, user: &UserId, first_socket: bool) {
        if !first_socket {
            return;
        }
        if self.going.lock().unwrap().remove(user).is_some() {
            // Back within the grace period: nobody was told they left.
            return;
        }
        let conversations = self.hub.conversations_of(user);
        self.announce(
            &conversations,
            &PresenceState {
                user_id: user.clone(),
                online: true,
                last_seen_at: None,
            },
        );
    }

    /// The last socket of `user` closed; they were in `conversations`.
    pub fn disconnected(&self, user: &UserId, conversations: Vec<ConversationId>) {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.going.lock().unwrap().insert(user.clone(), generation);
        let this = self.clone();
        let user = user.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.grace).await;
            {
                let mut going = this.going.lock().unwrap();
                if going.get(&user) != Some(&generation) || this.hub.is_online(&user) {
                    return;
                }
                going.remove(&user);
            }
            let now = Timestamp::now();
            if let Err(e) = this.store.set_last_seen(&user, Some(now)).await {
                tracing::warn!(user = %user, error = format!("{e:#}"), "recording last seen");
            }
            this.announce(
                &conversations,
                &PresenceState {
                    user_id: user.clone(),
                    online: false,
                    last_seen_at: Some(now),
                },
            );
        });
    }

    /// Tells every local member of `conversations` (once each, never the user themself).
    fn announce(&self, conversations: &[ConversationId], state: &PresenceState) {
        let event = Outgoing::new("presence", state);
        let recipients = self.hub.local_members_of(conversations);
        self.hub
            .to_users(&recipients, &event, Except::User(&state.user_id));
    }

    /// The presence of `users` as `viewer` may see it: real for users who share a conversation
    /// with the viewer, "offline, never seen" for anyone else.
    pub async fn get(
        &self,
        viewer: &UserId,
        users: &[UserId],
    ) -> crate::error::Result<Vec<PresenceState>> {
        let visible: HashMap<UserId, Option<Timestamp>> = self
            .store
            .last_seen(viewer, users)
            .await?
            .into_iter()
            .collect();
        Ok(users
            .iter()
            .map(|u| match visible.get(u) {
                Some(last_seen) => {
                    let online = self.is_online(u);
                    PresenceState {
                        user_id: u.clone(),
                        online,
                        last_seen_at: if online { None } else { *last_seen },
                    }
                }
                None => PresenceState {
                    user_id: u.clone(),
                    online: false,
                    last_seen_at: None,
                },
            })
            .collect())
    }
}
