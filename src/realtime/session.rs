//! Session expiry: a socket's session ends when its token does.
//!
//! One task serves every socket from a queue ordered by deadline, rather than a timer task per
//! socket: idle sockets cost a queue entry, not a task.
//!
//! `session:expiring` is sent once per expiry: `warning` before it, or halfway through what is
//! left when the session is shorter than twice that. Sending it at once for a short session
//! would ask a client that refreshes on it (with a token as short) to refresh again at once,
//! for as long as the session lasts. A refresh that doesn't move the expiry is refused before
//! it gets here (`Realtime::refresh`), so nothing re-sends a warning for the same expiry.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::UserSocket;
use crate::domain::Timestamp;
use crate::hub::{Outgoing, SocketKey};
use crate::protocol::events::{SessionExpired, SessionExpiring};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Time to emit `session:expiring` about the expiry (ms since the epoch) it was planned for.
    Warn { expires: i64 },
    /// Time to emit `session:expired` and disconnect.
    Expire,
}

#[derive(Default)]
struct Queue {
    /// (deadline in ms since the epoch, socket, what is due), earliest first.
    due: BTreeSet<(i64, SocketKey, Due)>,
    sockets: HashMap<SocketKey, Weak<UserSocket>>,
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
        ));
        sessions
    }

    /// Schedules `conn`'s warning and expiry from its current `expires_at`.
    pub fn schedule(&self, conn: &Arc<UserSocket>) {
        let expires = conn.expires_at.load(Ordering::Relaxed);
        let warn = warn_at(Timestamp::now().millis(), expires, self.warning);
        {
            let mut queue = self.queue.lock().unwrap();
            queue.sockets.insert(conn.key, Arc::downgrade(conn));
            queue.due.insert((warn, conn.key, Due::Warn { expires }));
            queue.due.insert((expires, conn.key, Due::Expire));
        }
        self.changed.notify_one();
    }

    /// A socket closed: forget it. Its queue entries are skipped when they come due.
    pub fn remove(&self, key: SocketKey) {
        self.queue.lock().unwrap().sockets.remove(&key);
    }
}

/// When to warn of an expiry at `expires` (ms since the epoch), scheduled at `now`: `warning`
/// before it, but not before halfway from now to it.
fn warn_at(now: i64, expires: i64, warning: Duration) -> i64 {
    let warning = i64::try_from(warning.as_millis()).unwrap_or(i64::MAX);
    let halfway = now.saturating_add(expires.saturating_sub(now) / 2);
    expires.saturating_sub(warning).max(halfway)
}

async fn run(queue: Weak<Mutex<Queue>>, changed: Arc<Notify>) {
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
                fire(&conn, deadline, what, &queue);
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

fn fire(conn: &UserSocket, deadline: i64, what: Due, queue: &Mutex<Queue>) {
    let expires = conn.expires_at.load(Ordering::Relaxed);
    match what {
        // A refresh moved the expiry: these entries are stale (the new ones are queued).
        Due::Expire if deadline != expires => {}
        Due::Warn { expires: planned } if planned != expires => {}
        Due::Warn { .. } => {
            let event = Outgoing::of(&SessionExpiring {
                expires_at: Timestamp(expires),
            });
            conn.outbound.send(&event);
        }
        Due::Expire => {
            queue.lock().unwrap().sockets.remove(&conn.key);
            let event = Outgoing::of(&SessionExpired {
                expires_at: Timestamp(expires),
            });
            conn.outbound.send(&event);
            conn.outbound.disconnect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_comes_its_time_before_expiry_or_halfway_if_that_is_later() {
        let minute = Duration::from_secs(60);
        // A 15-minute session: a minute before its end.
        assert_eq!(warn_at(0, 900_000, minute), 840_000);
        // Exactly twice the warning: both rules agree.
        assert_eq!(warn_at(0, 120_000, minute), 60_000);
        // 65 s left: halfway, not 5 s from now.
        assert_eq!(warn_at(1_000, 66_000, minute), 33_500);
        // Already over (the handshake refuses such tokens): due at once, before the expiry.
        assert!(warn_at(5_000, 4_000, minute) <= 5_000);
    }
}
