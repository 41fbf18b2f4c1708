//! The Redis side of the bus: one connection that publishes, one that subscribes, each
//! reconnecting by itself.
//!
//! Publishing goes through a queue drained by one task, which sends whatever has queued up as a
//! single pipeline (on a Redis Cluster, one per hash slot): callers never wait for Redis, and
//! order is kept (one writer, and a channel's messages in one pipeline). Subscribing is a
//! dedicated pub/sub connection whose channel set this module keeps, so that after Redis comes
//! back every subscription is restored (on a cluster, `cluster.rs` keeps one per shard).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};

/// Messages waiting to be published beyond this are dropped (and counted): Redis is down or
/// far behind, and clients will fill the gap with `sync`.
const PUBLISH_QUEUE: usize = 64 * 1024;
/// Most messages sent to Redis in one pipeline.
const PUBLISH_BATCH: usize = 512;
/// Wait between attempts to reach Redis again.
pub(super) const RETRY_MIN: Duration = Duration::from_millis(100);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(2);

/// A message that arrived on a subscribed channel.
pub struct Inbound {
    pub channel: Vec<u8>,
    pub payload: Bytes,
}

/// What the subscriber connection reports besides messages.
pub enum Signal {
    Message(Inbound),
    /// The subscriber connection was re-established and every channel re-subscribed: messages
    /// published meanwhile were missed.
    Reconnected,
    /// Publishing works again after messages of this node were dropped (Redis down or far
    /// behind): other nodes missed them, and their subscribers may have reconnected (and told
    /// their clients to resync) before these were dropped.
    PublishRestored,
}

pub(super) enum Command {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// Whether Redis is reachable, with the last error when it isn't.
#[derive(Default)]
pub struct Health {
    pub(super) subscriber_up: AtomicBool,
    publisher_up: AtomicBool,
    /// Set when a message could not be published; the publisher clears it, and says so with
    /// `Signal::PublishRestored`, once a publish or ping succeeds again.
    dropped: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Health {
    /// `None` when both connections work, else why not.
    pub fn problem(&self) -> Option<String> {
        if self.subscriber_up.load(Ordering::Relaxed) && self.publisher_up.load(Ordering::Relaxed) {
            return None;
        }
        Some(
            self.last_error
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| "connecting to Redis".into()),
        )
    }

    pub(super) fn failed(&self, flag: &AtomicBool, error: impl std::fmt::Display) {
        if flag.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %error, "lost Redis");
        }
        *self.last_error.lock().unwrap() = Some(format!("redis: {error}"));
        metrics::gauge!("confab_redis_up").set(0.0);
    }

    pub(super) fn recovered(&self, flag: &AtomicBool) {
        if !flag.swap(true, Ordering::Relaxed) {
            tracing::info!("connected to Redis");
        }
        let up =
            self.subscriber_up.load(Ordering::Relaxed) && self.publisher_up.load(Ordering::Relaxed);
        metrics::gauge!("confab_redis_up").set(if up { 1.0 } else { 0.0 });
    }
}

/// How command connections are made: to one Redis, or to a Redis Cluster (routed by slot).
#[derive(Clone)]
pub(super) enum Connector {
    Single(redis::Client, ConnectionManagerConfig),
    Cluster(redis::cluster::ClusterClient),
}

impl Connector {
    /// A connection that connects (and reconnects) by itself: it never waits for Redis here.
    fn connect(&self) -> anyhow::Result<Conn> {
        Ok(match self {
            Self::Single(client, config) => Conn::Single(
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .context("setting up the Redis connection")?,
            ),
            // Connects to the seed nodes in the background; follows MOVED/ASK and refreshes
            // its slot map by itself.
            Self::Cluster(client) => Conn::Cluster(
                client
                    .get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new()),
            ),
        })
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// A connection for commands that comes back by itself. `ConnectionManager` (and the cluster
/// connection) reconnect when a connection drops, but not when it goes silent (a partition
/// without a reset): every command then times out on the same dead connection, for as long as
/// TCP takes to give up. So a timeout replaces it. Cheap to clone.
#[derive(Clone)]
pub struct CommandLink {
    connector: Connector,
    /// A std Mutex is enough: it is held only to clone or swap the handle, never across an
    /// await.
    conn: Arc<Mutex<Conn>>,
    /// Whether the operator was told that the one Redis configured is a cluster's node.
    told_cluster: Arc<AtomicBool>,
}

impl CommandLink {
    fn new(connector: Connector) -> anyhow::Result<Self> {
        let conn = connector.connect()?;
        Ok(Self {
            connector,
            conn: Arc::new(Mutex::new(conn)),
            told_cluster: Arc::default(),
        })
    }

    /// Whether this is a Redis Cluster: a pipeline or transaction must then stay within one
    /// hash slot.
    pub fn is_cluster(&self) -> bool {
        self.connector.is_cluster()
    }

    /// The current connection. Every command sent through it reports its failure back here,
    /// so no caller has to remember to.
    pub fn get(&self) -> CommandConnection {
        CommandConnection {
            conn: self.conn.lock().unwrap().clone(),
            link: self.clone(),
        }
    }

    /// Called with a command's error: after a timeout, the next command uses a new connection.
    fn failed(&self, error: &redis::RedisError) {
        // One Redis configured, and it redirects: it is a node of a Redis Cluster. Pub/sub
        // would seem to work (classic PUBLISH reaches every node of a cluster) while presence
        // fails for most users, so say what to change.
        if !self.is_cluster()
            && error.redirect_node().is_some()
            && !self.told_cluster.swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                error = %error,
                "CONFAB_REDIS_URL is a node of a Redis Cluster (it answers MOVED): set CONFAB_REDIS_CLUSTER=true"
            );
        }
        if !error.is_timeout() {
            return;
        }
        match self.connector.connect() {
            Ok(fresh) => {
                tracing::debug!("Redis stopped answering: replacing the connection");
                *self.conn.lock().unwrap() = fresh;
            }
            Err(e) => tracing::warn!(error = %e, "replacing the Redis connection"),
        }
    }
}

/// A connection from [`CommandLink::get`]: a connection whose errors go back to its link.
pub struct CommandConnection {
    conn: Conn,
    link: CommandLink,
}

impl CommandConnection {
    fn checked<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &result {
            self.link.failed(e);
        }
        result
    }

    /// An error the server answered comes back as a value (it becomes an `Err` only when the
    /// caller converts the reply): looked for here too.
    fn answered(&self, value: &redis::Value) {
        match value {
            redis::Value::ServerError(e) => self.link.failed(&e.clone().into()),
            // A transaction's replies, inside EXEC's.
            redis::Value::Array(values) => values.iter().for_each(|v| {
                if let redis::Value::ServerError(e) = v {
                    self.link.failed(&e.clone().into());
                }
            }),
            _ => {}
        }
    }
}

impl redis::aio::ConnectionLike for CommandConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let result = match &mut self.conn {
                Conn::Single(c) => c.req_packed_command(cmd).await,
                Conn::Cluster(c) => c.req_packed_command(cmd).await,
            };
            if let Ok(value) = &result {
                self.answered(value);
            }
            self.checked(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let result = match &mut self.conn {
                Conn::Single(c) => c.req_packed_commands(pipeline, offset, count).await,
                Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count).await,
            };
            if let Ok(values) = &result {
                values.iter().for_each(|v| self.answered(v));
            }
            self.checked(result)
        })
    }

    fn get_db(&self) -> i64 {
        match &self.conn {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

/// The handle to both connections. Cheap to clone.
#[derive(Clone)]
pub struct RedisLink {
    publish: mpsc::Sender<(Bytes, Bytes)>,
    commands: mpsc::UnboundedSender<Command>,
    pub health: Arc<Health>,
    /// A connection for commands on keys: presence and heartbeats. (Publishing has its own, so
    /// heartbeats never queue behind a large pipeline.)
    pub keys: CommandLink,
}

impl RedisLink {
    /// Starts both connections. Doesn't wait for Redis: a node starts (and serves its local
    /// users) while Redis is down, and joins the cluster once it is reachable.
    ///
    /// `url` is one Redis, or with `cluster` one or more seed nodes of a Redis Cluster
    /// (comma-separated): events then ride sharded pub/sub, each channel on the shard that owns
    /// its hash slot.
    pub async fn start(
        url: &str,
        cluster: bool,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<Signal>)> {
        let (connector, seed) = if cluster {
            let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
            let client = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                .connection_timeout(Duration::from_secs(1))
                .response_timeout(Duration::from_secs(2))
                .min_retry_wait(RETRY_MIN.as_millis() as u64)
                .max_retry_wait(RETRY_MAX.as_millis() as u64)
                .build()
                .context("parsing the Redis Cluster seed urls")?;
            let seed = redis::IntoConnectionInfo::into_connection_info(seeds[0])
                .context("parsing the Redis Cluster seed url")?;
            (Connector::Cluster(client), Some(seed))
        } else {
            let client = redis::Client::open(url).context("parsing the Redis url")?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(1)
                .set_max_delay(RETRY_MAX);
            (Connector::Single(client, config), None)
        };
        let keys = CommandLink::new(connector.clone())?;
        let publishing = CommandLink::new(connector.clone())?;
        let health = Arc::new(Health::default());
        let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (signals, signals_rx) = mpsc::unbounded_channel();
        tokio::spawn(publisher(
            publishing,
            publish_rx,
            health.clone(),
            signals.clone(),
        ));
        match (connector, seed) {
            (Connector::Cluster(_), Some(seed)) => {
                tokio::spawn(super::cluster::subscriber(
                    keys.clone(),
                    seed,
                    commands_rx,
                    signals,
                    health.clone(),
                ));
            }
            (Connector::Single(client, _), _) => {
                tokio::spawn(subscriber(client, commands_rx, signals, health.clone()));
            }
            (Connector::Cluster(_), None) => unreachable!("a cluster has a seed"),
        }
        Ok((
            Self {
                publish,
                commands,
                health,
                keys,
            },
            signals_rx,
        ))
    }

    /// Queues a message for publishing; never waits.
    pub fn publish(&self, channel: Bytes, payload: Bytes) {
        if self.publish.try_send((channel, payload)).is_err() {
            metrics::counter!("confab_bus_dropped_total").increment(1);
            self.health.dropped.store(true, Ordering::Relaxed);
        }
    }

    /// Subscribes to `channel`. The receiver completes once Redis confirmed it (or at once when
    /// Redis is down: the subscription is restored when it comes back).
    pub fn subscribe(&self, channel: String) -> oneshot::Receiver<()> {
        let (done, confirmed) = oneshot::channel();
        let _ = self.commands.send(Command::Subscribe(channel, done));
        confirmed
    }

    pub fn unsubscribe(&self, channel: String) {
        let _ = self.commands.send(Command::Unsubscribe(channel));
    }
}

/// How often an idle publisher pings Redis, so health reflects reality without traffic.
const IDLE_PING: Duration = Duration::from_secs(1);
/// How often the subscriber pings Redis, and how long it waits for the answer. A connection
/// cut without a reset (a partition, a dead load balancer) would otherwise look healthy
/// forever while no message arrives.
pub(super) const SUBSCRIBER_PING: Duration = Duration::from_secs(5);
pub(super) const SUBSCRIBER_PING_TIMEOUT: Duration = Duration::from_secs(2);

async fn publisher(
    conn: CommandLink,
    mut queue: mpsc::Receiver<(Bytes, Bytes)>,
    health: Arc<Health>,
    signals: mpsc::UnboundedSender<Signal>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    // After a success: if anything was dropped before it, the cluster hears of it.
    let published = |health: &Health| {
        health.recovered(&health.publisher_up);
        if health.dropped.swap(false, Ordering::Relaxed) {
            let _ = signals.send(Signal::PublishRestored);
        }
    };
    loop {
        let received = tokio::select! {
            n = queue.recv_many(&mut batch, PUBLISH_BATCH) => n,
            _ = tokio::time::sleep(IDLE_PING) => {
                match redis::cmd("PING").query_async::<()>(&mut conn.get()).await {
                    Ok(()) => published(&health),
                    Err(e) => health.failed(&health.publisher_up, &e),
                }
                continue;
            }
        };
        if received == 0 {
            return;
        }
        // One Redis: one pipeline of PUBLISH. A cluster: SPUBLISH, one pipeline per hash slot
        // (a pipeline must stay within a slot), sent together; each keeps its messages' order.
        let pipes = if conn.is_cluster() {
            super::cluster::spublish_by_slot(&batch)
        } else {
            let mut pipe = redis::pipe();
            for (channel, payload) in &batch {
                pipe.cmd("PUBLISH")
                    .arg(&channel[..])
                    .arg(&payload[..])
                    .ignore();
            }
            vec![(batch.len(), pipe)]
        };
        let results = futures::future::join_all(
            pipes
                .iter()
                .map(|(_, pipe)| async { pipe.query_async::<()>(&mut conn.get()).await }),
        )
        .await;
        let mut failure = None;
        for ((count, _), result) in pipes.iter().zip(results) {
            match result {
                Ok(()) => {
                    metrics::counter!("confab_bus_published_total").increment(*count as u64);
                }
                Err(e) => {
                    // Not retried: by the time Redis is back, clients have moved on; they fill
                    // the gap with `sync` (and are told to: `Signal::Reconnected` on the other
                    // nodes, `Signal::PublishRestored` here).
                    metrics::counter!("confab_bus_dropped_total").increment(*count as u64);
                    failure = Some(e);
                }
            }
        }
        match failure {
            None => published(&health),
            Some(e) => {
                health.dropped.store(true, Ordering::Relaxed);
                health.failed(&health.publisher_up, &e);
            }
        }
        batch.clear();
    }
}

async fn subscriber(
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<Command>,
    signals: mpsc::UnboundedSender<Signal>,
    health: Arc<Health>,
) {
    let mut channels: HashSet<String> = HashSet::new();
    let mut retry = RETRY_MIN;
    let mut connected_before = false;
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                health.failed(&health.subscriber_up, &e);
                if !wait_offline(retry, &mut commands, &mut channels).await {
                    return;
                }
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        if !channels.is_empty() {
            let all: Vec<&String> = channels.iter().collect();
            if let Err(e) = sink.subscribe(all).await {
                health.failed(&health.subscriber_up, &e);
                continue;
            }
        }
        retry = RETRY_MIN;
        health.recovered(&health.subscriber_up);
        if connected_before {
            let _ = signals.send(Signal::Reconnected);
        }
        connected_before = true;
        let mut ping = tokio::time::interval(SUBSCRIBER_PING);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        loop {
            tokio::select! {
                _ = ping.tick() => {
                    let answer = tokio::time::timeout(
                        SUBSCRIBER_PING_TIMEOUT,
                        sink.ping::<redis::Value>(),
                    )
                    .await;
                    match answer {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            health.failed(&health.subscriber_up, &e);
                            break;
                        }
                        Err(_) => {
                            health.failed(&health.subscriber_up, "the subscriber connection stopped answering");
                            break;
                        }
                    }
                }
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        health.failed(&health.subscriber_up, "the subscriber connection closed");
                        break;
                    };
                    metrics::counter!("confab_bus_received_total").increment(1);
                    let inbound = Inbound {
                        channel: msg.get_channel_name().as_bytes().to_vec(),
                        payload: Bytes::copy_from_slice(msg.get_payload_bytes()),
                    };
                    if signals.send(Signal::Message(inbound)).is_err() {
                        return;
                    }
                }
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return };
                    let result = match cmd {
                        Command::Subscribe(channel, done) => {
                            let result = if channels.insert(channel.clone()) {
                                sink.subscribe(&channel).await
                            } else {
                                Ok(())
                            };
                            let _ = done.send(());
                            result
                        }
                        Command::Unsubscribe(channel) => {
                            if channels.remove(&channel) {
                                sink.unsubscribe(&channel).await
                            } else {
                                Ok(())
                            }
                        }
                    };
                    if let Err(e) = result {
                        health.failed(&health.subscriber_up, &e);
                        break;
                    }
                }
            }
        }
    }
}

/// While Redis is unreachable, (un)subscribing only changes the set restored on reconnect.
/// Waits `retry` before the next attempt to subscribe, keeping the channel set current
/// meanwhile and keeping no one waiting for a confirmation that can't come yet. `false` when
/// the command link closed (the bus is gone).
pub(super) async fn wait_offline(
    retry: Duration,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    channels: &mut HashSet<String>,
) -> bool {
    let deadline = tokio::time::sleep(retry);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return true,
            cmd = commands.recv() => match cmd {
                Some(cmd) => apply_offline(channels, cmd),
                None => return false,
            },
        }
    }
}

pub(super) fn apply_offline(channels: &mut HashSet<String>, cmd: Command) {
    match cmd {
        Command::Subscribe(channel, done) => {
            channels.insert(channel);
            let _ = done.send(());
        }
        Command::Unsubscribe(channel) => {
            channels.remove(&channel);
        }
    }
}
