//! Redis Cluster: sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis ≥ 7) over the shards that
//! own each channel's hash slot.
//!
//! Commands and publishing go through the redis crate's cluster connection, which routes each
//! by slot and follows MOVED/ASK. Subscriptions don't: a sharded subscription lives on one
//! connection to the shard's primary, and the crate's own resubscription (1.8) sends every
//! channel a node owns in one `SSUBSCRIBE`, which the server refuses when they are in different
//! slots (CROSSSLOT), as confab's are. So this module keeps a connection per primary, subscribes
//! one channel per command, and on any fault (a connection lost or silent, a MOVED, the server
//! taking a channel back because its slot moved) rebuilds them all from a fresh slot map and
//! tells the hub, which has its clients `resync` (as after a single Redis restarts).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, RedisError, RedisResult, Value};
use tokio::sync::mpsc;

use super::redis::{
    Command, CommandLink, Health, Inbound, RETRY_MAX, RETRY_MIN, SUBSCRIBER_PING,
    SUBSCRIBER_PING_TIMEOUT, Signal, wait_offline,
};

/// Redis Cluster's hash slots.
const SLOTS: u16 = 16384;
/// Most subscription commands in flight at once while restoring subscriptions.
const RESUBSCRIBE_CONCURRENCY: usize = 1024;
/// Longest a rebuild (slot map, connections, every subscription) may take before it is tried
/// again from the start.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(10);

/// The hash slot of a key or channel: the CRC16 of its hash tag (what is between the first `{`
/// and the next `}`, when not empty), else of the whole name.
pub(super) fn slot(key: &[u8]) -> u16 {
    let tag = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tag.unwrap_or(key)) % SLOTS
}

/// A batch of `(channel, payload)` as `SPUBLISH` pipelines, one per hash slot (a pipeline must
/// stay within one), each with its messages in queue order, and how many messages each holds.
pub(super) fn spublish_by_slot(batch: &[(Bytes, Bytes)]) -> Vec<(usize, redis::Pipeline)> {
    let mut by_slot: HashMap<u16, (usize, redis::Pipeline)> = HashMap::new();
    for (channel, payload) in batch {
        let (count, pipe) = by_slot
            .entry(slot(channel))
            .or_insert_with(|| (0, redis::pipe()));
        pipe.cmd("SPUBLISH")
            .arg(&channel[..])
            .arg(&payload[..])
            .ignore();
        *count += 1;
    }
    by_slot.into_values().collect()
}

type Addr = (String, u16);

/// Which primary owns which slots.
struct SlotMap(Vec<(u16, u16, Addr)>);

impl SlotMap {
    fn owner(&self, slot: u16) -> Option<&Addr> {
        self.0
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, addr)| addr)
    }

    /// Asks any node of the cluster. A node reports an unknown or empty host for itself as
    /// `?` or `""`: that node is the one asked, whose host the seed names.
    async fn fetch(keys: &CommandLink, seed_host: &str) -> RedisResult<Self> {
        let value: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut keys.get())
            .await?;
        Self::parse(value, seed_host)
    }

    fn parse(value: Value, seed_host: &str) -> RedisResult<Self> {
        let bad = || RedisError::from((redis::ErrorKind::Parse, "unexpected CLUSTER SLOTS reply"));
        let Value::Array(ranges) = value else {
            return Err(bad());
        };
        let mut map = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(fields) = range else {
                return Err(bad());
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err(bad());
            };
            let host = match primary.first() {
                Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                Some(Value::SimpleString(h)) => h.clone(),
                _ => return Err(bad()),
            };
            let host = if host.is_empty() || host == "?" {
                seed_host.to_owned()
            } else {
                host
            };
            let Some(Value::Int(port)) = primary.get(1) else {
                return Err(bad());
            };
            map.push((*start as u16, *end as u16, (host, *port as u16)));
        }
        if map.is_empty() {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "the cluster has no slots assigned",
            )));
        }
        Ok(Self(map))
    }
}

/// One generation of subscriber connections: one per primary that owns a subscribed channel.
struct Shards {
    map: SlotMap,
    conns: HashMap<Addr, MultiplexedConnection>,
    /// The seed's connection settings (password, user, database), for every node, in RESP3:
    /// sharded messages arrive as push messages.
    template: redis::ConnectionInfo,
    generation: u64,
    pushes: mpsc::UnboundedSender<(u64, PushInfo)>,
}

impl Shards {
    async fn connect(&mut self, addr: &Addr) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = self.conns.get(addr) {
            return Ok(conn.clone());
        }
        let info = self
            .template
            .clone()
            .set_addr(redis::ConnectionAddr::Tcp(addr.0.clone(), addr.1));
        let client = redis::Client::open(info)?;
        let (pushes, generation) = (self.pushes.clone(), self.generation);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(SUBSCRIBER_PING_TIMEOUT))
            .set_push_sender(move |info: PushInfo| pushes.send((generation, info)));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.conns.insert(addr.clone(), conn.clone());
        Ok(conn)
    }

    async fn conn_for(&mut self, channel: &str) -> RedisResult<MultiplexedConnection> {
        let addr = self
            .map
            .owner(slot(channel.as_bytes()))
            .cloned()
            .ok_or_else(|| {
                RedisError::from((
                    redis::ErrorKind::Client,
                    "no node serves the channel's slot",
                ))
            })?;
        self.connect(&addr).await
    }

    /// One channel per command: channels in different slots can't share one.
    async fn send(&mut self, command: &str, channel: &str) -> RedisResult<()> {
        let mut conn = self.conn_for(channel).await?;
        redis::cmd(command).arg(channel).exec_async(&mut conn).await
    }

    async fn subscribe_all(&mut self, channels: &HashSet<String>) -> RedisResult<()> {
        let mut targets = Vec::with_capacity(channels.len());
        for channel in channels {
            targets.push((self.conn_for(channel).await?, channel.clone()));
        }
        futures::stream::iter(targets)
            .map(|(mut conn, channel)| async move {
                redis::cmd("SSUBSCRIBE")
                    .arg(channel)
                    .exec_async(&mut conn)
                    .await
            })
            .buffer_unordered(RESUBSCRIBE_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// Every connection answers in time, or why not.
    async fn ping(&self) -> Result<(), String> {
        let answers = futures::future::join_all(self.conns.iter().map(|(addr, conn)| {
            let mut conn = conn.clone();
            async move {
                let answer = tokio::time::timeout(
                    SUBSCRIBER_PING_TIMEOUT,
                    redis::cmd("PING").query_async::<Value>(&mut conn),
                )
                .await;
                match answer {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("{}:{}: {e}", addr.0, addr.1)),
                    Err(_) => Err(format!(
                        "{}:{}: the subscriber connection stopped answering",
                        addr.0, addr.1
                    )),
                }
            }
        }))
        .await;
        answers.into_iter().collect()
    }
}

/// The first element of a push message's data, as a channel name.
fn push_channel(data: &[Value]) -> Option<&[u8]> {
    match data.first()? {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// The subscriber of a cluster node: keeps the wanted channel set, subscribed on the shards
/// that own them, across failovers, resharding and reconnections.
pub(super) async fn subscriber(
    keys: CommandLink,
    seed: redis::ConnectionInfo,
    mut commands: mpsc::UnboundedReceiver<Command>,
    signals: mpsc::UnboundedSender<Signal>,
    health: Arc<Health>,
) {
    let seed_host = match seed.addr() {
        redis::ConnectionAddr::Tcp(host, _) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let template = seed.clone().set_redis_settings(
        seed.redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3),
    );
    let (push_tx, mut pushes) = mpsc::unbounded_channel();
    let mut channels: HashSet<String> = HashSet::new();
    let mut generation = 0u64;
    let mut retry = RETRY_MIN;
    let mut connected_before = false;
    loop {
        generation += 1;
        let build = async {
            let mut shards = Shards {
                map: SlotMap::fetch(&keys, &seed_host).await?,
                conns: HashMap::new(),
                template: template.clone(),
                generation,
                pushes: push_tx.clone(),
            };
            shards.subscribe_all(&channels).await?;
            Ok::<_, RedisError>(shards)
        };
        let built = match tokio::time::timeout(REBUILD_TIMEOUT, build).await {
            Ok(Ok(shards)) => Ok(shards),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("restoring the sharded subscriptions timed out".to_owned()),
        };
        let mut shards = match built {
            Ok(shards) => shards,
            Err(e) => {
                health.failed(&health.subscriber_up, e);
                if !wait_offline(retry, &mut commands, &mut channels).await {
                    return;
                }
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        retry = RETRY_MIN;
        health.recovered(&health.subscriber_up);
        if connected_before {
            let _ = signals.send(Signal::Reconnected);
        }
        connected_before = true;
        // Unsubscriptions this node asked for whose confirmation hasn't arrived: any other
        // `sunsubscribe` is the server taking a channel away (its slot moved).
        let mut leaving: HashMap<String, usize> = HashMap::new();
        let mut ping = tokio::time::interval(SUBSCRIBER_PING);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        let problem = loop {
            tokio::select! {
                _ = ping.tick() => {
                    if let Err(e) = shards.ping().await {
                        break e;
                    }
                }
                push = pushes.recv() => {
                    let Some((from, push)) = push else { return };
                    match push.kind {
                        PushKind::SMessage => {
                            let (Some(channel), Some(Value::BulkString(payload))) =
                                (push_channel(&push.data), push.data.get(1))
                            else {
                                continue;
                            };
                            metrics::counter!("confab_bus_received_total").increment(1);
                            let inbound = Inbound {
                                channel: channel.to_vec(),
                                payload: Bytes::copy_from_slice(payload),
                            };
                            if signals.send(Signal::Message(inbound)).is_err() {
                                return;
                            }
                        }
                        // A connection of an earlier generation is gone already.
                        _ if from != generation => {}
                        PushKind::Disconnection => break "a shard's connection closed".to_owned(),
                        PushKind::SUnsubscribe => {
                            let Some(channel) = push_channel(&push.data) else { continue };
                            let channel = String::from_utf8_lossy(channel).into_owned();
                            match leaving.get_mut(&channel) {
                                Some(n) if *n > 1 => *n -= 1,
                                Some(_) => {
                                    leaving.remove(&channel);
                                }
                                None if channels.contains(&channel) => {
                                    break format!("the cluster moved the slot of {channel}");
                                }
                                None => {}
                            }
                        }
                        _ => {}
                    }
                }
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return };
                    let result = match cmd {
                        Command::Subscribe(channel, done) => {
                            let result = if channels.insert(channel.clone()) {
                                shards.send("SSUBSCRIBE", &channel).await
                            } else {
                                Ok(())
                            };
                            let _ = done.send(());
                            result
                        }
                        Command::Unsubscribe(channel) => {
                            if channels.remove(&channel) {
                                *leaving.entry(channel.clone()).or_default() += 1;
                                shards.send("SUNSUBSCRIBE", &channel).await
                            } else {
                                Ok(())
                            }
                        }
                    };
                    if let Err(e) = result {
                        break e.to_string();
                    }
                }
            }
        };
        health.failed(&health.subscriber_up, format!("redis cluster: {problem}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slots Redis documents (`CLUSTER KEYSLOT`), hash tags included.
    #[test]
    fn slots_match_redis() {
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(
            slot(b"foo{}{bar}"),
            slot(b"foo{}{bar}"),
            "an empty tag hashes it all"
        );
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn a_batch_is_split_by_slot_in_order() {
        let batch: Vec<(Bytes, Bytes)> = ["a", "b", "a", "c", "a"]
            .iter()
            .enumerate()
            .map(|(i, c)| (Bytes::from(*c), Bytes::from(i.to_string())))
            .collect();
        let mut pipes = spublish_by_slot(&batch);
        pipes.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        assert_eq!(pipes.len(), 3);
        assert_eq!(pipes[0].0, 3);
        let mut expected = redis::pipe();
        for i in ["0", "2", "4"] {
            expected.cmd("SPUBLISH").arg("a").arg(i).ignore();
        }
        assert_eq!(
            pipes[0].1.get_packed_pipeline(),
            expected.get_packed_pipeline()
        );
    }
}
