//! Cross-node fan-out over Redis, routed by interest.
//!
//! Every conversation and every user has a channel. A node subscribes to a conversation's
//! channel while one of its local users is a member, and to a user's channel while that user has
//! a socket on it; so a node receives only the traffic of its own users, and adding nodes adds
//! no traffic to the others. (The Socket.IO Redis adapters send every room broadcast to every
//! node.)
//!
//! Events travel as the Socket.IO packet already encoded by the sending node, so receivers push
//! the same bytes to their sockets without parsing them.
//!
//! On a Redis Cluster (`CONFAB_REDIS_CLUSTER`), the same channels ride sharded pub/sub: each
//! lives on the shard that owns its hash slot, and the channel names carry no hash tag, so
//! conversations and users spread over every shard (only the rare `cluster` channel is one).
//!
//! Everything confab does with Redis is here: the channels (`redis.rs` holds the connections,
//! `cluster.rs` the sharded subscriptions) and the cluster's presence keys (`presence.rs`).

mod cluster;
mod presence;
mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use self::presence::{ClusterPresence, Reaped};
pub use self::redis::{CommandLink, Health, RedisLink, Signal};
use crate::domain::{ConversationId, UserId};

/// Counts of what this node exchanged over the bus (tests and operators look at them).
#[derive(Debug, Default)]
pub struct BusStats {
    /// Messages this node published.
    pub published: AtomicU64,
    /// Messages from other nodes this node received (its subscriptions at work).
    pub received: AtomicU64,
}

/// What a bus message asks the receiving node to do.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "k")]
pub enum Control {
    /// Deliver the attached packet to local sockets on this channel's conversation or user,
    /// except those of user `x`.
    #[serde(rename = "e")]
    Event {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        x: Option<String>,
    },
    /// Presence news, deduplicated by `id` across a user's conversations.
    /// `h`: users who must not hear it (those `user` blocked).
    #[serde(rename = "p")]
    Presence {
        id: u64,
        user: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        h: Vec<String>,
    },
    /// The channel's user joined conversation `c`: their sockets here start receiving it.
    #[serde(rename = "j")]
    Join { c: ConversationId },
    /// The channel's user left conversation `c`.
    #[serde(rename = "l")]
    Leave { c: ConversationId },
    /// On the cluster channel: node `node` died, and messages it committed may never have been
    /// published. Every node tells its sockets to `resync`.
    #[serde(rename = "d")]
    NodeDied { node: String },
    /// On the cluster channel: the sending node could not publish some messages (Redis was
    /// down or far behind). Every other node tells its sockets to `resync`.
    #[serde(rename = "m")]
    Missed,
    // The host app's side (server API, moderation, webhooks).
    /// On a user channel: deliver the attached packet (`session:ended`) to the user's sockets
    /// here, then disconnect them (the user was banned or erased).
    #[serde(rename = "k")]
    EndSessions,
}

#[derive(Serialize, Deserialize)]
struct Header {
    /// The sending node: nodes ignore their own messages (they delivered locally already).
    n: String,
    #[serde(flatten)]
    control: Control,
}

/// Where a bus message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    Conversation(ConversationId),
    User(UserId),
    /// Every node subscribes to it: news for the whole cluster.
    Cluster,
}

/// A decoded bus message.
pub struct Received {
    pub channel: Channel,
    pub control: Control,
    /// The encoded Socket.IO packet, for `Event` and `Presence`.
    pub frame: Bytes,
}

/// The bus of one node. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    link: RedisLink,
    node: Arc<str>,
    prefix: Arc<str>,
    pub stats: Arc<BusStats>,
}

impl Bus {
    /// Connects to Redis (without waiting for it) and returns the bus and its incoming stream.
    /// With `cluster`, `url` lists seed nodes of a Redis Cluster (comma-separated).
    pub async fn start(
        url: &str,
        cluster: bool,
        prefix: &str,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<Signal>)> {
        let (link, signals) = RedisLink::start(url, cluster)
            .await
            .context("starting the Redis bus")?;
        let node = hex::encode(rand::random::<[u8; 8]>());
        tracing::info!(node, "joining the cluster over Redis");
        Ok((
            Self {
                link,
                node: node.into(),
                prefix: prefix.into(),
                stats: Arc::default(),
            },
            signals,
        ))
    }

    pub fn node_id(&self) -> &str {
        &self.node
    }

    pub fn health(&self) -> &Health {
        &self.link.health
    }

    /// Presence kept in Redis for the whole cluster, as this node sees it: a node silent for
    /// `node_timeout` is dead.
    pub fn presence(&self, node_timeout: std::time::Duration) -> ClusterPresence {
        ClusterPresence::new(
            self.link.keys.clone(),
            &self.prefix,
            &self.node,
            node_timeout,
        )
    }

    fn channel_name(&self, channel: &Channel) -> String {
        match channel {
            Channel::Conversation(c) => format!("{}:c:{c}", self.prefix),
            Channel::User(u) => format!("{}:u:{u}", self.prefix),
            Channel::Cluster => format!("{}:cluster", self.prefix),
        }
    }

    fn parse_channel(&self, name: &[u8]) -> Option<Channel> {
        let name = std::str::from_utf8(name).ok()?;
        let rest = name.strip_prefix(&*self.prefix)?.strip_prefix(':')?;
        if rest == "cluster" {
            Some(Channel::Cluster)
        } else if let Some(id) = rest.strip_prefix("c:") {
            ConversationId::parse(id).map(Channel::Conversation)
        } else {
            let user = rest.strip_prefix("u:")?;
            UserId::parse(user).ok().map(Channel::User)
        }
    }

    /// Publishes `control` (and an encoded packet, possibly empty) on `channel`. Never waits.
    pub fn publish(&self, channel: &Channel, control: Control, frame: &[u8]) {
        let header = serde_json::to_vec(&Header {
            n: self.node.to_string(),
            control,
        })
        .expect("headers serialize");
        // [header length: u32][header JSON][frame]
        let mut payload = BytesMut::with_capacity(4 + header.len() + frame.len());
        payload.put_u32(header.len() as u32);
        payload.put_slice(&header);
        payload.put_slice(frame);
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        self.link
            .publish(Bytes::from(self.channel_name(channel)), payload.freeze());
    }

    /// Starts receiving `channel`; the receiver completes once Redis confirmed it.
    pub fn subscribe(&self, channel: &Channel) -> oneshot::Receiver<()> {
        self.link.subscribe(self.channel_name(channel))
    }

    pub fn unsubscribe(&self, channel: &Channel) {
        self.link.unsubscribe(self.channel_name(channel));
    }

    /// Decodes an incoming message. `None` for our own messages and for anything malformed.
    pub fn decode(&self, channel: &[u8], payload: Bytes) -> Option<Received> {
        let channel = self.parse_channel(channel)?;
        let len = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?) as usize;
        let header: Header = serde_json::from_slice(payload.get(4..4 + len)?).ok()?;
        if header.n == *self.node {
            return None;
        }
        // Counted here, after our own echoes are dropped: what other nodes sent us.
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        Some(Received {
            channel,
            control: header.control,
            frame: payload.slice(4 + len..),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A death announced by one node reaches another as a `NodeDied` on the cluster channel.
    #[tokio::test]
    async fn a_death_notice_round_trips_on_the_cluster_channel() {
        // Neither connects: starting a bus doesn't wait for Redis.
        let (a, _) = Bus::start("redis://127.0.0.1:1", false, "p").await.unwrap();
        let (b, _) = Bus::start("redis://127.0.0.1:1", false, "p").await.unwrap();
        assert_eq!(a.channel_name(&Channel::Cluster), "p:cluster");
        let header = serde_json::to_vec(&Header {
            n: a.node_id().to_owned(),
            control: Control::NodeDied { node: "x1".into() },
        })
        .unwrap();
        let mut payload = BytesMut::new();
        payload.put_u32(header.len() as u32);
        payload.put_slice(&header);
        let payload = payload.freeze();
        let received = b.decode(b"p:cluster", payload.clone()).expect("decoded");
        assert_eq!(received.channel, Channel::Cluster);
        assert_eq!(received.control, Control::NodeDied { node: "x1".into() });
        assert!(
            a.decode(b"p:cluster", payload).is_none(),
            "a node ignores its own"
        );
    }
}
