//! Presence across nodes, kept in Redis: the Redis side of `chat::presence`.
//!
//! Keys (under the configured prefix):
//! - `online:{user}`: the set of nodes where the user has sockets. The user is online while it
//!   is not empty; the node that adds the first member announces "online", the node that
//!   removes the last announces "offline", so a user on several nodes changes state once.
//! - `node:{node}`: a heartbeat that expires. A node whose heartbeat is gone has died without
//!   saying goodbye: another node removes it from its users' sets (`node-users:{node}` lists
//!   them) and announces those who are left with no node at all as offline.
//! - `nodes`: the nodes to watch.
//!
//! Each command or script here touches one key, so every one of them works on a Redis Cluster
//! without hash tags, and the keys spread over the shards. Where two steps on one key must be
//! atomic they are a script, not a MULTI/EXEC transaction: the cluster client follows a slot that
//! moved (MOVED, after a failover or a reshard) for a single command, but fails a transaction on
//! it until its next refresh of the slot map, which left users registered nowhere for up to ten
//! seconds after a failover (tests/api/redis_cluster.rs caught it). Where one change spans two
//! keys, the two steps are ordered so that a node dying between them leaves nothing the reaper
//! can't clean up.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use super::CommandLink;
use crate::domain::UserId;

/// What one look for dead nodes found.
#[derive(Debug, Default)]
pub struct Reaped {
    /// The dead nodes this node cleaned up (each is cleaned up by one node only).
    pub nodes: Vec<String>,
    /// Their users who are now on no node at all.
    pub offline: Vec<UserId>,
    /// When the earliest heartbeat of the nodes still alive lapses, if none is renewed before:
    /// looking again then finds a dead node at its timeout, not up to a beat later.
    pub next_lapse: Option<Duration>,
}

/// Adds ARGV[1] to the set KEYS[1]: `{added, members now}`.
static ADD_AND_COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local added = redis.call('SADD', KEYS[1], ARGV[1]) \
         return {added, redis.call('SCARD', KEYS[1])}",
    )
});

/// Removes ARGV[1] from the set KEYS[1]: the members left.
static REMOVE_AND_COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('SREM', KEYS[1], ARGV[1]) \
         return redis.call('SCARD', KEYS[1])",
    )
});

pub struct ClusterPresence {
    conn: CommandLink,
    prefix: String,
    node: String,
    /// A node silent this long is dead.
    node_timeout: Duration,
}

impl ClusterPresence {
    pub fn new(conn: CommandLink, prefix: &str, node: &str, node_timeout: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            node_timeout,
        }
    }

    /// How often this node renews its heartbeat and looks for dead nodes: three beats per
    /// timeout, so one lost beat doesn't make a live node look dead.
    pub fn heartbeat_interval(&self) -> Duration {
        self.node_timeout / 3
    }

    fn online_key(&self, user: &str) -> String {
        format!("{}:online:{user}", self.prefix)
    }

    fn node_key(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    fn node_users_key(&self, node: &str) -> String {
        format!("{}:node-users:{node}", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// `user` has a socket on this node. `true` when no node had them before: announce online.
    pub async fn arrive(&self, user: &UserId) -> redis::RedisResult<bool> {
        // The node's list first: a node that dies before the second step has its user in a
        // list the reaper cleans, never in an online set that nobody would clean.
        let (): () = self
            .conn
            .get()
            .sadd(self.node_users_key(&self.node), user.as_str())
            .await?;
        let (added, count): (i64, i64) = ADD_AND_COUNT
            .key(self.online_key(user.as_str()))
            .arg(&self.node)
            .invoke_async(&mut self.conn.get())
            .await?;
        Ok(added == 1 && count == 1)
    }

    /// `user` has no socket left on this node. `true` when no node has them now: announce
    /// offline.
    pub async fn depart(&self, user: &UserId) -> redis::RedisResult<bool> {
        // The reverse order of `arrive`.
        let count: i64 = REMOVE_AND_COUNT
            .key(self.online_key(user.as_str()))
            .arg(&self.node)
            .invoke_async(&mut self.conn.get())
            .await?;
        let (): () = self
            .conn
            .get()
            .srem(self.node_users_key(&self.node), user.as_str())
            .await?;
        Ok(count == 0)
    }

    /// Which of `users` have a socket on some node. One command per user, sent together (the
    /// connection pipelines them): on a cluster their keys are on different shards.
    pub async fn online(&self, users: &[UserId]) -> redis::RedisResult<Vec<bool>> {
        futures::future::try_join_all(users.iter().map(|u| {
            let mut conn = self.conn.get();
            let key = self.online_key(u.as_str());
            async move { conn.exists(key).await }
        }))
        .await
    }

    /// Renews this node's heartbeat. `true` when it had lapsed (Redis restarted and lost
    /// everything, or other nodes took us for dead): the caller must re-register its users.
    pub async fn heartbeat(&self) -> redis::RedisResult<bool> {
        let ttl = self.node_timeout.as_millis() as u64;
        // Two keys (on a cluster, two shards): two commands, sent together.
        let (mut beat, mut listed) = (self.conn.get(), self.conn.get());
        let mut set = redis::cmd("SET");
        set.arg(self.node_key(&self.node))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .arg("GET");
        let (previous, ()): (Option<String>, ()) = futures::try_join!(
            set.query_async(&mut beat),
            listed.sadd(self.nodes_key(), &self.node),
        )?;
        Ok(previous.is_none())
    }

    /// Registers users again after Redis may have lost them; returns those that no other node
    /// had, who must be announced online again. Several users at a time (their keys may be on
    /// different shards), so a node with thousands of users is done in a moment.
    pub async fn reassert(&self, users: &[UserId]) -> redis::RedisResult<Vec<UserId>> {
        /// Users registered at once.
        const AT_ONCE: usize = 64;
        let mut fresh = Vec::new();
        for batch in users.chunks(AT_ONCE) {
            let arrived =
                futures::future::try_join_all(batch.iter().map(|u| self.arrive(u))).await?;
            fresh.extend(
                batch
                    .iter()
                    .zip(arrived)
                    .filter(|(_, first)| *first)
                    .map(|(u, _)| u.clone()),
            );
        }
        Ok(fresh)
    }

    /// Finds nodes whose heartbeat expired, takes over the clean-up of one at a time (a lock
    /// that expires, so a node dying mid-clean-up doesn't block it forever), removes the dead
    /// node from its users' sets, and returns the nodes this node reaped and the users left
    /// offline by them.
    pub async fn reap(&self) -> redis::RedisResult<Reaped> {
        let mut conn = self.conn.get();
        let nodes: Vec<String> = conn.smembers(self.nodes_key()).await?;
        let mut reaped = Reaped::default();
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            // Milliseconds left on its heartbeat; negative once it's gone.
            let left: i64 = conn.pttl(self.node_key(&node)).await?;
            if left >= 0 {
                let left = Duration::from_millis(left as u64);
                reaped.next_lapse = Some(reaped.next_lapse.map_or(left, |n| n.min(left)));
                continue;
            }
            let claimed: Option<String> = redis::cmd("SET")
                .arg(format!("{}:reap:{node}", self.prefix))
                .arg(&self.node)
                .arg("NX")
                .arg("PX")
                .arg(30_000)
                .query_async(&mut conn)
                .await?;
            if claimed.is_none() {
                continue;
            }
            reaped.nodes.push(node.clone());
            let users: Vec<String> = conn.smembers(self.node_users_key(&node)).await?;
            tracing::warn!(
                node,
                users = users.len(),
                "a node died: marking its users offline"
            );
            for user in users {
                let count: i64 = REMOVE_AND_COUNT
                    .key(self.online_key(&user))
                    .arg(&node)
                    .invoke_async(&mut conn)
                    .await?;
                if count == 0
                    && let Ok(user) = UserId::parse(&user)
                {
                    reaped.offline.push(user);
                }
            }
            // Its list before its entry in `nodes`: if this node dies in between, the next
            // reaper finds the dead node again, with nothing left to do but forget it.
            let (): () = conn.del(self.node_users_key(&node)).await?;
            let (): () = conn.srem(self.nodes_key(), &node).await?;
        }
        Ok(reaped)
    }

    /// Removes this node's heartbeat, so other nodes reap it at their next heartbeat.
    pub async fn retire(&self) -> redis::RedisResult<()> {
        let (): () = self.conn.get().del(self.node_key(&self.node)).await?;
        Ok(())
    }
}
