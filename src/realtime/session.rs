//! Session expiry: a socket's session ends when its token does.
//!
//! One task serves every socket from a queue ordered by deadline, rather than a timer task per
//! socket: idle sockets cost a queue entry, not a task.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::Connection;
use crate::domain::Timestamp;
use crate::hub::{Outgoing, SocketKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Time to emit `session:expiring`.
    Warn,
    /// Time to emit `session:expired` and disconnect.
    Expire,
}

#[derive(Default)]
struct Queue {
    /// (deadline in ms since the epoch, socket, what is due), earliest first.
    due: BTreeSet<(i64, SocketKey, Due)>,
    sockets: HashMap<SocketKey, Weak<Connection>>,
}

#[derive(Serialize)]
struct Expiry {
    expires_at: Timestamp,
}

/// The expiry schedule of every connected socket. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    /// A std Mutex: never held across an await.
    queue: Arc<Mutex<Queue>>,
    changed: Arc<Notify>,
    warning: Duration,
}

impl Sessions {
    /// `warning`: how long before expiry `session:expiring` is sent.
    pub fn new(warning: Duration) -> Self {
        let sessions = Self {
            queue: Arc::default(),
            changed: Arc::default(),
            warning,
        };
        tokio::spawn(run(
            Arc::downgrade(&sessions.queue),
            sessions.changed.clone(),
            warning.as_millis() as i64,
        ));
        sessions
    }

    /// Schedules `conn`'s warning and expiry from its current `expires_at`.
    pub fn schedule(&self, conn: &Arc<Connection>) {
        let expires = conn.expires_at.load(Ordering::Relaxed);
        let warn = expires - self.warning.as_millis() as i64;
        {
            let mut queue = self.queue.lock().unwrap();
            queue.sockets.insert(conn.key, Arc::downgrade(conn));
            queue.due.insert((warn, conn.key, Due::Warn));
            queue.due.insert((expires, conn.key, Due::Expire));
        }
        self.changed.notify_one();
    }

    /// A socket closed: forget it. Its queue entries are skipped when they come due.
    pub fn remove(&self, key: SocketKey) {
        self.queue.lock().unwrap().sockets.remove(&key);
    }
}

async fn run(queue: Weak<Mutex<Queue>>, changed: Arc<Notify>, warning_ms: i64) {
    loop {
        let next = {
            let Some(queue) = queue.upgrade() else {
                return;
            };
            let mut due = Vec::new();
            let next = {
                let mut q = queue.lock().unwrap();
                let now = Timestamp::now().millis();
                while let Some(&first) = q.due.first() {
                    if first.0 > now {
                        break;
                    }
                    q.due.pop_first();
                    if let Some(conn) = q.sockets.get(&first.1).and_then(Weak::upgrade) {
                        due.push((first, conn));
                    }
                }
                q.due.first().map(|f| f.0 - now)
            };
            for ((deadline, _, what), conn) in due {
                fire(&conn, deadline, what, warning_ms, &queue);
            }
            next
        };
        // Sleep until the next deadline, or until a schedule change may have made it earlier.
        let wait = next.map_or(Duration::from_secs(3600), |ms| {
            Duration::from_millis(ms.max(0) as u64)
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = changed.notified() => {}
        }
    }
}

fn fire(conn: &Connection, deadline: i64, what: Due, warning_ms: i64, queue: &Mutex<Queue>) {
    let expires = conn.expires_at.load(Ordering::Relaxed);
    match what {
        // A refresh moved the expiry: these entries are stale (the new ones are queued).
        Due::Expire if deadline != expires => {}
        Due::Warn if deadline != expires - warning_ms => {}
        Due::Warn => {
            let event = Outgoing::new(
                "session:expiring",
                &Expiry {
                    expires_at: Timestamp(expires),
                },
            );
            conn.outbound.send(&event);
        }
        Due::Expire => {
            queue.lock().unwrap().sockets.remove(&conn.key);
            let event = Outgoing::new(
                "session:expired",
                &Expiry {
                    expires_at: Timestamp(expires),
                },
            );
            conn.outbound.send(&event);
            conn.outbound.disconnect();
        }
    }
}
