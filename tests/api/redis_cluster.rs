//! confab nodes over a real Redis Cluster (three primaries and their replicas, started by each
//! test): events ride sharded pub/sub spread over the shards, presence works across nodes, and
//! a primary killed mid-chat (its replica takes over) or a channel's slot moved to another
//! shard loses nothing acknowledged.

use std::time::Duration;

use confab_sio_client::{Client, Incoming};
use serde_json::{Value, json};

use crate::cluster::View;
use crate::helpers::*;
use crate::nodes::{NodeProcess, RedisCluster};

/// `n` in-process nodes on a fresh PostgreSQL schema and `redis`, with a Redis prefix of their
/// own, which is returned (channel names start with it). `None` when PostgreSQL is
/// unavailable outside CI.
async fn nodes_on(redis: &RedisCluster, n: usize) -> Option<(Vec<TestApp>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let database = shared_database(Backend::Postgres, dir.path()).await?;
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let seeds = redis.seeds();
    let settings = [
        ("CONFAB_DATABASE_URL", database.as_str()),
        ("CONFAB_REDIS_URL", seeds.as_str()),
        ("CONFAB_REDIS_CLUSTER", "true"),
        ("CONFAB_REDIS_PREFIX", prefix.as_str()),
        ("CONFAB_PRESENCE_GRACE_MS", "300"),
    ];
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(spawn_app_with(Backend::Postgres, &settings).await?);
    }
    Some((nodes, prefix))
}

/// Waits until `node` reports Redis healthy again (`/readyz` says `ready`).
async fn wait_ready(node: &TestApp) {
    let mut ready = Value::Null;
    for _ in 0..300 {
        ready = node.http().get("/readyz", None).await.1;
        if ready["status"] == "ready" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node did not become ready again: {ready}");
}

/// Sends `bodies` one after another without waiting, at a steady pace, calling `during` once
/// `at` of them are acked; returns the acked messages in seq order. Every send must be acked:
/// Redis is not on the path from send to ack.
async fn stream_sends(
    sender: &Client,
    conversation: &str,
    count: usize,
    at: usize,
    during: impl std::future::Future<Output = ()>,
) -> Vec<Value> {
    let mut during = std::pin::pin!(during);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut acked = Vec::new();
    let mut started = false;
    let mut done_during = false;
    let mut next = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while next < count || !in_flight.is_empty() || !done_during {
        tokio::select! {
            _ = tick.tick(), if next < count => {
                let payload = json!({
                    "conversation_id": conversation,
                    "client_id": format!("s{next}"),
                    "body": format!("message {next}"),
                });
                let send = sender.emit_with_ack("message:send", payload);
                in_flight.push(send);
                next += 1;
            }
            Some(result) = futures::StreamExt::next(&mut in_flight) => {
                let reply = result.expect("an ack");
                assert_eq!(reply["ok"], true, "{reply}");
                acked.push(reply["data"]["message"].clone());
                if acked.len() >= at {
                    started = true;
                }
            }
            _ = &mut during, if started && !done_during => done_during = true,
        }
    }
    acked.sort_by_key(|m| m["seq"].as_i64());
    acked
}

/// Waits for the `presence` event saying `user` is `online` (skipping any other).
async fn presence_of(client: &mut Client, user: &str, online: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = client
            .expect_event("presence", left)
            .await
            .unwrap_or_else(|e| panic!("no presence {user} online={online}: {e}"));
        let data = event.data();
        if data["user_id"] == user && data["online"] == online {
            return;
        }
    }
}

/// Reads `client`'s events for `window`: `message:new` into `view`; whether a `resync` came.
async fn watch(client: &mut Client, view: &mut View, window: Duration) -> bool {
    let mut resync = false;
    let deadline = tokio::time::Instant::now() + window;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return resync;
        }
        match client.next_event_timeout(left).await {
            Some(Incoming::Event(e)) if e.name == "message:new" => {
                view.take(&e.data()["message"]);
            }
            Some(Incoming::Event(e)) if e.name == "resync" => resync = true,
            Some(Incoming::Event(_)) => {}
            Some(Incoming::Disconnected { .. }) => panic!("the client was disconnected"),
            None => return resync,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_chat_and_share_presence_over_sharded_pub_sub() {
    let Some(redis) = RedisCluster::start().await else {
        return;
    };
    let Some((nodes, prefix)) = nodes_on(&redis, 2).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;

    // Enough conversations that their channels land on every shard.
    let mut ids = Vec::new();
    for i in 0..12 {
        let id = group(&alice, &format!("g{i}"), &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        ids.push(id);
    }
    for (i, id) in ids.iter().enumerate() {
        let m = send(&alice, id, &format!("a{i}"), "from node a").await;
        assert_eq!(expect(&mut bob, "message:new").await["message"], m);
    }
    let mut alice = alice;
    let reply = send(&bob, &ids[0], "b0", "from node b").await;
    assert_eq!(expect(&mut alice, "message:new").await["message"], reply);

    // The channels are shard channels, spread over the primaries; no classic channel is used.
    let primaries: Vec<u16> = redis
        .nodes(redis.ports[0])
        .await
        .into_iter()
        .filter(|n| n.primary && !n.slots.is_empty())
        .map(|n| n.port)
        .collect();
    assert_eq!(primaries.len(), 3);
    let mut per_shard = Vec::new();
    for &port in &primaries {
        let mut conn = redis.conn(port).await;
        let sharded: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let classic: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            classic,
            Vec::<String>::new(),
            "no classic pub/sub on {port}"
        );
        per_shard.push(sharded.len());
    }
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "every shard carries some of the channels: {per_shard:?}"
    );
    assert!(
        per_shard.iter().sum::<usize>() >= ids.len(),
        "each conversation has its channel: {per_shard:?}"
    );

    // Bob removed from a group: his node, with no member left there, unsubscribes; its own
    // unsubscription is not taken for the cluster moving the channel (no resync).
    alice
        .ok(
            "conversation:members:remove",
            json!({ "conversation_id": ids[1], "user_ids": ["bob"] }),
        )
        .await;
    expect(&mut bob, "conversation:removed").await;
    let channel = format!("{prefix}:c:{}", ids[1]);
    let mut owner = redis.conn(redis.owner(&channel).await.port).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(&channel)
            .query_async(&mut owner)
            .await
            .unwrap();
        if subscribers == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b still subscribed: {subscribers}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bob.expect_no_event("resync", Duration::from_secs(1))
        .await
        .expect("no resync for an unsubscription of its own");
    let m = send(&alice, &ids[2], "a-after", "still here").await;
    assert_eq!(expect(&mut bob, "message:new").await["message"], m);

    // Presence across nodes: bob (on b) is online for alice (on a); he leaves, she hears it
    // once; he comes back on her node, she hears that.
    let seen = alice
        .ok("presence:get", json!({ "user_ids": ["bob"] }))
        .await;
    assert_eq!(seen["presence"][0]["online"], true);
    bob.disconnect().await;
    presence_of(&mut alice, "bob", false).await;
    let _bob = a.connect("bob").await;
    presence_of(&mut alice, "bob", true).await;
    // Node b's view of presence, from the cluster's keys (bob's own socket is on a now).
    let bob_b = b.connect("bob").await;
    let seen = bob_b
        .ok("presence:get", json!({ "user_ids": ["alice"] }))
        .await;
    assert_eq!(seen["presence"][0]["online"], true, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_chat_fails_over_and_nothing_acked_is_lost() {
    let Some(mut redis) = RedisCluster::start().await else {
        return;
    };
    let Some((nodes, prefix)) = nodes_on(&redis, 2).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let id = group(&alice, "failover", &["bob"]).await;
    expect(&mut bob, "conversation:new").await;
    // The primary serving the conversation's channel (where bob's node subscribed).
    let doomed = redis.owner(&format!("{prefix}:c:{id}")).await;

    // Alice streams 120 sends; the primary is killed once 30 are acked. Bob keeps reading.
    let mut view = View::default();
    let mut resync = false;
    let acked = {
        let sends = stream_sends(&alice, &id, 120, 30, async {
            redis.kill(doomed.port).await;
        });
        tokio::pin!(sends);
        loop {
            tokio::select! {
                acked = &mut sends => break acked,
                told = watch(&mut bob, &mut view, Duration::from_millis(50)) => resync |= told,
            }
        }
    };
    assert_eq!(acked.len(), 120, "every send acked while Redis failed over");
    let live = view.by_seq.len();

    // The replica takes over; bob's node restores its subscriptions there and tells him to
    // resync. (Other events may come first: drain them into the view.)
    redis.wait_healthy().await;
    let promoted = redis.owner(&format!("{prefix}:c:{id}")).await;
    assert_ne!(promoted.port, doomed.port, "a replica took the slots over");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !resync {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob was never told to resync"
        );
        resync = watch(&mut bob, &mut view, Duration::from_millis(200)).await;
    }
    wait_ready(a).await;
    wait_ready(b).await;
    watch(&mut bob, &mut view, Duration::from_millis(200)).await;
    let before_sync = view.by_seq.len();
    view.sync(&bob, &id).await;
    view.assert_gap_free(&acked, "bob");
    eprintln!(
        "failover: {} acked; bob had {live} live when the sends ended, {before_sync} before syncing, \
         {} from sync",
        acked.len(),
        acked.len() - before_sync
    );

    // Live delivery works again both ways, through the promoted primary.
    let after = send(&alice, &id, "after", "after the failover").await;
    assert_eq!(expect(&mut bob, "message:new").await["message"], after);
    let reply = send(&bob, &id, "reply", "heard you").await;
    assert_eq!(expect(&mut alice, "message:new").await["message"], reply);
    let seen = bob
        .ok("presence:get", json!({ "user_ids": ["alice"] }))
        .await;
    assert_eq!(seen["presence"][0]["online"], true, "{seen}");
}

/// Redis loses what a node wrote without the node's heartbeat lapsing: a primary that fails
/// over loses the writes its replica had not received yet (Redis Cluster acknowledges before it
/// replicates). Here the lost write is a user's presence, removed from the shard by hand just
/// before that shard fails over (`CLUSTER FAILOVER` on its replica, which also takes the node's
/// subscriptions there away). The node registers its users again on the new primary at once:
/// the user is online again for everyone, without waiting for a heartbeat that never lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lost_in_a_failover_is_registered_again() {
    let Some(redis) = RedisCluster::start().await else {
        return;
    };
    let Some((nodes, prefix)) = nodes_on(&redis, 2).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    // A user whose presence key and whose own channel (which node a subscribes to) are on one
    // shard: that shard's failover is then one node a takes part in.
    // CRC16 is linear: two keys that differ only in their prefix, with suffixes of one length,
    // have slots a fixed XOR apart, which may never land on one shard. So the names differ in
    // length, each giving the pair another chance.
    let mut user = None;
    for i in 0..60 {
        let u = format!("alice{}", "x".repeat(i));
        let key = redis.owner(&format!("{prefix}:online:{u}")).await;
        if key.port == redis.owner(&format!("{prefix}:u:{u}")).await.port {
            user = Some(u);
            break;
        }
    }
    let user = user.expect("one of 60 names of different lengths has both on one of three shards");
    let alice = a.connect(&user).await;
    let mut bob = b.connect("bob").await;
    group(&alice, "lost", &["bob"]).await;
    expect(&mut bob, "conversation:new").await;
    let online = |seen: Value| seen["presence"][0]["online"] == true;
    assert!(online(
        bob.ok("presence:get", json!({ "user_ids": [user] })).await
    ));

    // The write is lost: the user is offline for bob, and nothing would bring them back.
    let key = format!("{prefix}:online:{user}");
    let primary = redis.owner(&key).await;
    let (): () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis.conn(primary.port).await)
        .await
        .unwrap();
    assert!(!online(
        bob.ok("presence:get", json!({ "user_ids": [user] })).await
    ));

    // Its shard fails over.
    let replica = redis
        .nodes(primary.port)
        .await
        .into_iter()
        .find(|n| n.replica_of.as_deref() == Some(primary.id.as_str()) && !n.failed)
        .expect("the primary has a replica");
    let (): () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query_async(&mut redis.conn(replica.port).await)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while redis.owner(&key).await.port != replica.port {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failover did not happen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.wait_healthy().await;

    // Bob hears the user is online, and presence:get says so (the heartbeat, every 5 s, would
    // never have noticed: its own key was not lost). The announcement travels over the bus, and
    // when bob's node was subscribed to the failed shard too it may be lost with the rest of
    // what passed there meanwhile; bob's node then says `resync` once its subscription is back,
    // and a client refreshes presence on it (the JavaScript client's catch-up does): the user
    // must then be online.
    // Within less than a heartbeat (5 s): the re-registration must work at once, not at a later
    // beat once the Redis client has refreshed its map of the slots.
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(3);
    let mut seen = Vec::new();
    let how = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match bob.next_event_timeout(left).await {
            Some(Incoming::Event(e)) if e.name == "presence" => {
                let data = e.data();
                if data["user_id"] == user.as_str() && data["online"] == true {
                    break "the presence event";
                }
                seen.push(format!("presence {data}"));
            }
            Some(Incoming::Event(e)) if e.name == "resync" => break "resync, then presence:get",
            Some(Incoming::Event(e)) => seen.push(e.name.clone()),
            other => panic!("neither presence nor resync for {user} (saw {seen:?}): {other:?}"),
        }
    };
    while !online(bob.ok("presence:get", json!({ "user_ids": [user] })).await) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} still offline after {how} (saw {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "online again {:?} after the failover ({how})",
        started.elapsed()
    );
}

/// Resharding: the slot of a conversation's channel moves to another primary (the way
/// `redis-cli --cluster reshard` moves it, keys and all). The old primary drops the node's
/// subscription; the node subscribes again where the slot went and has its clients resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_whose_slot_moves_follows_it_to_the_new_shard() {
    let Some(redis) = RedisCluster::start().await else {
        return;
    };
    let Some((nodes, prefix)) = nodes_on(&redis, 2).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let id = group(&alice, "reshard", &["bob"]).await;
    expect(&mut bob, "conversation:new").await;
    let first = send(&alice, &id, "r1", "before").await;
    assert_eq!(expect(&mut bob, "message:new").await["message"], first);

    let channel = format!("{prefix}:c:{id}");
    let slot = redis.slot(&channel).await;
    let from = redis.owner(&channel).await;
    let to = redis
        .nodes(from.port)
        .await
        .into_iter()
        .find(|n| n.primary && !n.slots.is_empty() && n.port != from.port)
        .unwrap();
    migrate_slot(&redis, slot, &from, &to).await;
    assert_eq!(redis.owner(&channel).await.port, to.port);

    bob.expect_event("resync", Duration::from_secs(20))
        .await
        .expect("bob's node noticed its channel moved");
    let mut view = View::default();
    view.take(&first);
    let second = send(&alice, &id, "r2", "after the move").await;
    watch(&mut bob, &mut view, Duration::from_millis(500)).await;
    view.sync(&bob, &id).await;
    view.assert_gap_free(&[first, second], "bob");
    let third = send(&alice, &id, "r3", "live on the new shard").await;
    assert_eq!(expect(&mut bob, "message:new").await["message"], third);
    let mut conn = redis.conn(to.port).await;
    let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(&channel)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        subscribers, 2,
        "both nodes (each has a member) subscribed again on the new shard"
    );
}

/// Moves `slot` from one primary to another with its keys: IMPORTING, MIGRATING, MIGRATE,
/// then the new owner announced to every primary.
async fn migrate_slot(
    redis: &RedisCluster,
    slot: u16,
    from: &crate::nodes::ClusterNode,
    to: &crate::nodes::ClusterNode,
) {
    let mut source = redis.conn(from.port).await;
    let mut target = redis.conn(to.port).await;
    let set = |node: &str, state: &str| {
        let mut c = redis::cmd("CLUSTER");
        c.arg("SETSLOT").arg(slot).arg(state).arg(node.to_owned());
        c
    };
    let (): () = set(&from.id, "IMPORTING")
        .query_async(&mut target)
        .await
        .unwrap();
    let (): () = set(&to.id, "MIGRATING")
        .query_async(&mut source)
        .await
        .unwrap();
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(100)
            .query_async(&mut source)
            .await
            .unwrap();
        if keys.is_empty() {
            break;
        }
        let (): () = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to.port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query_async(&mut source)
            .await
            .unwrap();
    }
    for port in [to.port, from.port] {
        let (): () = set(&to.id, "NODE")
            .query_async(&mut redis.conn(port).await)
            .await
            .unwrap();
    }
    redis.wait_healthy().await;
}

/// A wrong setting: a cluster's node given as one Redis (CONFAB_REDIS_CLUSTER left out). Classic
/// pub/sub would seem to work, presence would fail for most users; the log says what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_configured_as_one_redis_is_named_in_the_log() {
    let Some(redis) = RedisCluster::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = shared_database(Backend::Postgres, dir.path()).await else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}", redis.ports[0]);
    let node = NodeProcess::start(&[
        ("CONFAB_DATABASE_URL", database.as_str()),
        ("CONFAB_REDIS_URL", url.as_str()),
        ("CONFAB_JWT_SECRET", SECRET),
        ("CONFAB_DATA_DIR", dir.path().to_str().unwrap()),
    ])
    .await;
    // Users whose presence keys hash to other shards than the configured node's.
    let mut users = Vec::new();
    for i in 0..6 {
        let token = sign(json!({ "sub": format!("u{i}"), "exp": chrono_now() + 3600 }));
        users.push(
            confab_sio_client::connect(
                confab_sio_client::ConnectOptions::new(&node.url).auth(json!({ "token": token })),
            )
            .await
            .unwrap(),
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if node
            .output()
            .iter()
            .any(|l| l.contains("set CONFAB_REDIS_CLUSTER=true"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no hint in the log: {:#?}",
            node.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// confab doesn't wait for Redis: nodes started before the cluster exists serve their own
/// users, then join it when it comes up, and cross-node delivery starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_before_the_cluster_join_it_when_it_comes_up() {
    let mut redis = RedisCluster::reserve();
    let Some((nodes, _)) = nodes_on(&redis, 2).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let solo = group(&alice, "alone", &[]).await;
    send(&alice, &solo, "e1", "before Redis").await;
    let (_, ready) = a.http().get("/readyz", None).await;
    assert_eq!(ready["status"], "degraded", "{ready}");

    if !redis.launch().await {
        return;
    }
    wait_ready(a).await;
    wait_ready(b).await;
    // (The group is made now: a membership change published while Redis is unreachable is
    // lost to the other nodes, which learn it when the member's socket reconnects; a
    // limitation of both Redis modes, not tested here.)
    let id = group(&alice, "early", &["bob"]).await;
    expect(&mut bob, "conversation:new").await;
    let later = send(&alice, &id, "e2", "after Redis came up").await;
    assert_eq!(expect(&mut bob, "message:new").await["message"], later);
    let reply = send(&bob, &id, "e3", "heard you").await;
    assert_eq!(expect(&mut alice, "message:new").await["message"], reply);
}
