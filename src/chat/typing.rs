//! Typing indicators: in memory only, expired by the server, coalesced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::domain::{ConversationId, UserId};
use crate::hub::{Except, Hub, Outgoing, SocketKey};
use crate::protocol::events::Typing as TypingEvent;

/// Repeated `typing:start` broadcast at most this often per user and conversation.
const COALESCE: Duration = Duration::from_secs(1);
/// How often expired states are looked for; the precision of the expiry.
const SWEEP: Duration = Duration::from_millis(200);

struct State {
    expires: Instant,
    last_broadcast: Instant,
    /// The socket that last said "typing": its disconnect ends the state.
    socket: SocketKey,
}

type States = Mutex<HashMap<(ConversationId, UserId), State>>;

/// Who is typing where. Cheap to clone.
#[derive(Clone)]
pub struct Typing {
    hub: Hub,
    ttl: Duration,
    /// A std Mutex: held only for map updates, never across an await.
    states: Arc<States>,
}

impl Typing {
    /// `ttl`: how long a `typing:start` lasts without another one.
    pub fn new(hub: Hub, ttl: Duration) -> Self {
        let states = Arc::new(States::default());
        tokio::spawn(sweep(Arc::downgrade(&states), hub.clone()));
        Self { hub, ttl, states }
    }

    /// `user` is typing in `conversation` (membership already checked).
    pub fn start(&self, user: &UserId, socket: SocketKey, conversation: ConversationId) {
        let now = Instant::now();
        let announce = {
            let mut states = self.states.lock().unwrap();
            let state = states.entry((conversation, user.clone())).or_insert(State {
                expires: now,
                // Far enough back that the first start is announced.
                last_broadcast: now.checked_sub(COALESCE).unwrap_or(now),
                socket,
            });
            state.expires = now + self.ttl;
            state.socket = socket;
            let due = now.duration_since(state.last_broadcast) >= COALESCE;
            if due {
                state.last_broadcast = now;
            }
            due
        };
        if announce {
            announce_typing(&self.hub, conversation, user, true);
        }
    }

    /// `user` stopped typing in `conversation`.
    pub fn stop(&self, user: &UserId, conversation: ConversationId) {
        let removed = self
            .states
            .lock()
            .unwrap()
            .remove(&(conversation, user.clone()))
            .is_some();
        if removed {
            announce_typing(&self.hub, conversation, user, false);
        }
    }

    /// A socket closed: whatever it was typing ends.
    pub fn socket_closed(&self, user: &UserId, socket: SocketKey) {
        let ended: Vec<ConversationId> = {
            let mut states = self.states.lock().unwrap();
            let ended: Vec<_> = states
                .iter()
                .filter(|((_, u), s)| u == user && s.socket == socket)
                .map(|((c, _), _)| *c)
                .collect();
            for c in &ended {
                states.remove(&(*c, user.clone()));
            }
            ended
        };
        for conversation in ended {
            announce_typing(&self.hub, conversation, user, false);
        }
    }
}

fn announce_typing(hub: &Hub, conversation: ConversationId, user: &UserId, typing: bool) {
    let event = Outgoing::of(&TypingEvent {
        conversation_id: conversation,
        user_id: user,
        typing,
    });
    hub.to_conversation(conversation, &event, Except::User(user));
}

/// Ends states whose time ran out, telling the conversation. Stops when the service is gone.
async fn sweep(states: Weak<States>, hub: Hub) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(states) = states.upgrade() else {
            return;
        };
        let now = Instant::now();
        let expired: Vec<(ConversationId, UserId)> = {
            let mut states = states.lock().unwrap();
            let expired: Vec<_> = states
                .iter()
                .filter(|(_, s)| s.expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &expired {
                states.remove(k);
            }
            expired
        };
        for (conversation, user) in expired {
            announce_typing(&hub, conversation, &user, false);
        }
    }
}
