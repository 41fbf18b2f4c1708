//! Memberships held by the hub, brought back in line with the database after joins or leaves
//! may have been lost on the bus.
//!
//! A join or leave made on one node reaches the others only as a bus message. When the bus may
//! have lost messages (the hub says so: `Hub::bus_missed`, in every case where it asks
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

/// Reconciles after every `bus_missed` change, until the hub is gone. Several changes
/// during one pass make one more pass.
pub(super) fn start(hub: Hub, store: Store) {
    let mut missed = hub.bus_missed();
    tokio::spawn(async move {
        while missed.changed().await.is_ok() {
            loop {
                match reconcile(&hub, &store).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "reconciling memberships failed; retrying");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        }
    });
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    joined: usize,
    left: usize,
    /// Users whose sockets were closed for a ban.
    ended: usize,
    /// Users left as they were: their memberships kept changing during every read.
    unsettled: usize,
}

/// One pass over this node's users.
async fn reconcile(hub: &Hub, store: &Store) -> Result<Tally> {
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
    Ok(Tally {
        joined,
        left,
        ended,
        unsettled,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::domain::ConversationTitle;
    use crate::hub::{Except, Outbound};

    struct Nowhere;
    impl Outbound for Nowhere {
        fn send(&self, _: &Outgoing) -> bool {
            true
        }
        fn disconnect(&self) {}
    }

    /// The cost of one pass on a node with 20,000 users in two groups of 20 each, 1% of them
    /// missing a join and 1% holding a stale membership: how long the pass takes, and how long
    /// a delivery on the node waits meanwhile (the pass takes the hub's lock once per user).
    /// `RECONCILE_DB` picks the database (a fresh SQLite file by default):
    /// `RECONCILE_DB=postgres://root@127.0.0.1/bench cargo test --release --lib
    /// a_pass_over_20000_users -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement"]
    async fn a_pass_over_20000_users() {
        const USERS: usize = 20_000;
        const GROUP: usize = 20;
        let dir = tempfile::tempdir().unwrap();
        let url = std::env::var("RECONCILE_DB")
            .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("r.db").display()));
        let store = Store::connect(&url, 4, "simple").await.unwrap();
        let users: Vec<UserId> = (0..USERS)
            .map(|i| UserId::parse(&format!("u{i}")).unwrap())
            .collect();
        let title = ConversationTitle::parse("g").unwrap();
        // Groups of 20 consecutive users, and again shifted by 10: two groups each.
        let started = Instant::now();
        for offset in [0, GROUP / 2] {
            let shifted: Vec<&UserId> = users.iter().cycle().skip(offset).take(USERS).collect();
            for members in shifted.chunks(GROUP) {
                let others: Vec<UserId> = members[1..].iter().map(|u| (*u).clone()).collect();
                store
                    .create_group(members[0], &title, &others)
                    .await
                    .unwrap();
            }
        }
        eprintln!(
            "set up {} groups in {:?}",
            2 * USERS / GROUP,
            started.elapsed()
        );
        let hub = Hub::default();
        let mut stored = HashMap::<UserId, Vec<ConversationId>>::new();
        for (c, u) in store.memberships_of(&users).await.unwrap() {
            stored.entry(u).or_default().push(c);
        }
        let stale = ConversationId::new();
        for (i, user) in users.iter().enumerate() {
            let _ = hub.register(user, i as u64, Arc::new(Nowhere));
            let mut held = stored[user].clone();
            match i % 100 {
                0 => drop(held.pop()),
                1 => held.push(stale),
                _ => {}
            }
            let _ = hub.add_conversations(user, &held);
        }
        // A delivery every millisecond to one of the groups, timed, while the pass runs.
        let done = Arc::new(AtomicBool::new(false));
        let prober = tokio::spawn({
            let (hub, done) = (hub.clone(), done.clone());
            let target = stored[&users[0]][0];
            let event = Outgoing::of(&crate::protocol::events::Resync {});
            async move {
                let mut waits = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    hub.to_conversation(target, &event, Except::Nobody);
                    waits.push(t.elapsed());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                waits
            }
        });
        let started = Instant::now();
        let tally = reconcile(&hub, &store).await.unwrap();
        let took = started.elapsed();
        done.store(true, Ordering::Relaxed);
        let mut waits = prober.await.unwrap();
        waits.sort();
        let at = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize];
        eprintln!(
            "{}: one pass over {USERS} users took {took:?}; {tally:?}; deliveries during it: \
             {} timed, p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
            store.backend(),
            waits.len(),
            at(0.5),
            at(0.99),
            at(0.999),
            waits.last().unwrap(),
        );
        assert_eq!(
            tally,
            Tally {
                joined: USERS / 100,
                left: USERS / 100,
                ended: 0,
                unsettled: 0
            }
        );
    }
}
