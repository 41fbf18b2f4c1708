//! Memberships held by the hub, brought back in line with the database after joins or leaves
//! may have been lost on the bus.
//!
//! A join or leave made on one node reaches the others only as a bus message. When the bus may
//! have lost messages (the hub says so: `Hub::memberships_stale`, in every case where it asks
//! clients to `resync`), a lost join would leave a member without live events, and a lost leave
//! would keep sending a removed member the conversation's events. So this task reloads the
//! memberships of every user with a socket here and makes the hub match, and closes the sockets
//! here of users banned meanwhile (the ban's `EndSessions` rides the same bus).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::domain::{ConversationId, Timestamp, UserId};
use crate::error::Result;
use crate::hub::{Hub, Outgoing, Reconciled};
use crate::protocol::events::SessionEnded;
use crate::store::Store;

/// Users per database read: one query each, run one after the other, so even a node with
/// 20,000 users costs the database a few dozen small queries and holds the hub's lock only for
/// one user's change at a time.
const BATCH: usize = 500;
/// Reads for a user whose memberships keep changing here during the read (each change came
/// live, so the bus works again for them; after this many the rest is left to the next pass).
const ATTEMPTS: usize = 3;
/// Pause before trying again after the database failed.
const RETRY: Duration = Duration::from_secs(1);

/// Reconciles after every `memberships_stale` change, until the hub is gone. Several changes
/// during one pass make one more pass.
pub(super) fn start(hub: Hub, store: Store) {
    let mut stale = hub.memberships_stale();
    tokio::spawn(async move {
        while stale.changed().await.is_ok() {
            loop {
                match reconcile(&hub, &store).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "reconciling memberships failed; retrying");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        }
    });
}

/// One pass over this node's users.
async fn reconcile(hub: &Hub, store: &Store) -> Result<()> {
    let users = hub.local_users();
    let (mut joined, mut left, mut ended, mut unsettled) = (0, 0, 0, 0);
    for batch in users.chunks(BATCH) {
        let mut todo = batch.to_vec();
        // A ban's `EndSessions` travels on the user's channel too, and may have been lost with
        // the rest: the banned user's sockets here would stay open, receiving and sending.
        // Their memberships stay (a ban can be lifted), so it is the sockets that must go.
        for (user, until, erased) in store.banned_among(&todo, Timestamp::now()).await? {
            if hub.is_online(&user) {
                let reason = if erased { "erased" } else { "banned" };
                hub.end_sessions_here(&user, &Outgoing::of(&SessionEnded { reason, until }));
                ended += 1;
            }
        }
        for _ in 0..ATTEMPTS {
            if todo.is_empty() {
                break;
            }
            // The versions first, then the read: a change applied here after this point moves
            // its user's version, and `Hub::reconcile` then leaves that user alone.
            let versions = hub.membership_versions(&todo);
            let mut stored: HashMap<UserId, HashSet<ConversationId>> = HashMap::new();
            for (conversation, user) in store.memberships_of(&todo).await? {
                stored.entry(user).or_default().insert(conversation);
            }
            let none = HashSet::new();
            let mut again = Vec::new();
            for (user, version) in todo.into_iter().zip(versions) {
                let Some(version) = version else { continue };
                match hub.reconcile(&user, version, stored.get(&user).unwrap_or(&none)) {
                    Reconciled::Applied { joined: j, left: l } => {
                        joined += j;
                        left += l;
                    }
                    Reconciled::Changed => again.push(user),
                    Reconciled::Gone => {}
                }
            }
            todo = again;
        }
        unsettled += todo.len();
        tokio::task::yield_now().await;
    }
    metrics::counter!("confab_membership_corrections_total", "change" => "joined")
        .increment(joined as u64);
    metrics::counter!("confab_membership_corrections_total", "change" => "left")
        .increment(left as u64);
    metrics::counter!("confab_membership_corrections_total", "change" => "banned")
        .increment(ended as u64);
    metrics::counter!("confab_membership_reconciliations_total").increment(1);
    if joined + left + ended > 0 || unsettled > 0 {
        tracing::warn!(
            users = users.len(),
            joined,
            left,
            banned = ended,
            unsettled,
            "memberships reconciled with the database after lost bus messages"
        );
    } else {
        tracing::info!(
            users = users.len(),
            "memberships reconciled: nothing was lost"
        );
    }
    Ok(())
}
