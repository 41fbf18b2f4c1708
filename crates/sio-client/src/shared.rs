//! The state a [`Client`](crate::Client) shares with its connection task.
//!
//! Two queues cross between them: the outbox (frames the client wants sent) and the inbox
//! (events and the final disconnection, for the client to read). They are plain `VecDeque`s
//! behind one mutex, with a `Notify` for each direction, instead of channels: an empty
//! `VecDeque` allocates nothing, whereas a tokio channel allocates a block of slots up front,
//! and a load generator holds thousands of mostly idle connections.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::{Notify, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::{Error, Incoming};

/// How many frames may wait in the outbox before senders wait for the connection task.
///
/// Heartbeat answers skip this limit, so a client that emits faster than the socket drains can
/// slow itself down but not miss a pong.
const OUTBOX_LIMIT: usize = 64;

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the client: the inbox has something, or the connection is closed.
    inbox_ready: Notify,
    /// Wakes the connection task: the outbox has something.
    outbox_ready: Notify,
    /// Wakes senders waiting for the outbox to shrink (or for the connection to close).
    outbox_space: Notify,
    next_ack_id: AtomicU64,
}

#[derive(Default)]
struct State {
    inbox: VecDeque<Incoming>,
    outbox: VecDeque<Message>,
    /// Emits waiting for their ack, by ack id.
    acks: HashMap<u64, oneshot::Sender<Vec<Value>>>,
    /// Set once, when the connection ends or the client closes it: from then on nothing is
    /// sent, nothing more reaches the inbox, and pending acks fail with `Closed`.
    closed: bool,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::default(),
            inbox_ready: Notify::new(),
            outbox_ready: Notify::new(),
            outbox_space: Notify::new(),
            next_ack_id: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, but if something ever did, the queues are
        // still consistent: each operation is a single push, pop or insert.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // --- the client's side ---

    /// Queues a frame for sending, waiting while the outbox is full.
    ///
    /// The frame is queued at once, and only then does the sender wait for room: frames emitted
    /// one after another are sent in that order even while the outbox is full (a server that
    /// keeps a socket's events in order can only do so if the client sends them in order).
    pub(crate) async fn send(&self, frame: Message) -> Result<(), Error> {
        {
            let mut state = self.state();
            if state.closed {
                return Err(Error::Closed);
            }
            state.outbox.push_back(frame);
        }
        self.outbox_ready.notify_one();
        loop {
            // Register for the wake-up before looking, so one that comes in between is not lost.
            let space = self.outbox_space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                // Once queued, the frame shares the fate of every frame queued before a close:
                // that is for acks and the inbox to tell, not for this wait.
                let state = self.state();
                if state.closed || state.outbox.len() <= OUTBOX_LIMIT {
                    return Ok(());
                }
            }
            space.await;
        }
    }

    /// Reserves an ack id and the receiver its answer will arrive on.
    pub(crate) fn register_ack(&self) -> Result<(u64, oneshot::Receiver<Vec<Value>>), Error> {
        let mut state = self.state();
        if state.closed {
            return Err(Error::Closed);
        }
        let id = self.next_ack_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        state.acks.insert(id, tx);
        Ok((id, rx))
    }

    /// Drops a pending ack (it timed out, or its emit was abandoned).
    pub(crate) fn forget_ack(&self, id: u64) {
        self.state().acks.remove(&id);
    }

    /// The next item of the inbox; `None` once the connection is closed and the inbox empty.
    pub(crate) async fn recv(&self) -> Option<Incoming> {
        loop {
            {
                let mut state = self.state();
                if let Some(incoming) = state.inbox.pop_front() {
                    return Some(incoming);
                }
                if state.closed {
                    return None;
                }
            }
            // There is one reader (the client, through `&mut self`), so `notify_one`'s stored
            // permit covers a push that happens between the check above and this wait.
            self.inbox_ready.notified().await;
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Closes the connection from the client's side: queues `frames` (ending with a WebSocket
    /// close) for the task to send, and refuses everything after. Returns false if the
    /// connection was already closed.
    pub(crate) fn close_locally(&self, frames: impl IntoIterator<Item = Message>) -> bool {
        {
            let mut state = self.state();
            if state.closed {
                return false;
            }
            state.outbox.extend(frames);
            Self::close(&mut state);
        }
        self.outbox_ready.notify_one();
        self.outbox_space.notify_waiters();
        true
    }

    fn close(state: &mut State) {
        state.closed = true;
        // Dropping the senders wakes every waiting emit with `Closed`.
        state.acks.clear();
    }

    // --- the connection task's side ---

    /// Waits until the outbox may have something to send.
    pub(crate) async fn outbox_ready(&self) {
        self.outbox_ready.notified().await;
    }

    /// Takes the next frame to send.
    pub(crate) fn pop_outgoing(&self) -> Option<Message> {
        let frame = self.state().outbox.pop_front();
        if frame.is_some() {
            self.outbox_space.notify_waiters();
        }
        frame
    }

    /// Whether the outbox has frames waiting.
    pub(crate) fn has_outgoing(&self) -> bool {
        !self.state().outbox.is_empty()
    }

    /// Queues a frame ahead of the others and of the limit, for the task's own answers (pongs).
    /// Returns false, queueing nothing, once the connection is closed: a closed connection
    /// needs no heartbeat, and nothing may follow the WebSocket close frame.
    pub(crate) fn push_urgent(&self, frame: Message) -> bool {
        let mut state = self.state();
        if !state.closed {
            state.outbox.push_front(frame);
        }
        !state.closed
    }

    /// Hands an event to the client.
    pub(crate) fn deliver(&self, incoming: Incoming) {
        {
            let mut state = self.state();
            if state.closed {
                return;
            }
            state.inbox.push_back(incoming);
        }
        self.inbox_ready.notify_one();
    }

    /// Completes the emit waiting for ack `id`, if it is still waiting.
    pub(crate) fn resolve_ack(&self, id: u64, args: Vec<Value>) {
        let waiting = self.state().acks.remove(&id);
        if let Some(tx) = waiting {
            // The emit may have just given up; then there is nobody to tell.
            let _ = tx.send(args);
        }
    }

    /// Records that the connection has ended, with the reason the client will see.
    pub(crate) fn finish(&self, reason: String) {
        {
            let mut state = self.state();
            if state.closed {
                return;
            }
            state.inbox.push_back(Incoming::Disconnected { reason });
            Self::close(&mut state);
        }
        self.inbox_ready.notify_one();
        self.outbox_space.notify_waiters();
    }
}
