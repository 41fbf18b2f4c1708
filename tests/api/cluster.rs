//! Several confab nodes sharing PostgreSQL and Redis: one chat, routed by interest, nothing lost
//! when a node or Redis fails.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confab_sio_client::{Client, Incoming};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::nodes::{NodeProcess, RedisServer};
use crate::proxy::Proxy;

/// A cluster on PostgreSQL: `n` in-process nodes sharing a fresh schema and a Redis prefix of
/// their own. `None` when PostgreSQL is unavailable outside CI.
pub(crate) async fn cluster(
    n: usize,
    redis_url: &str,
    extra: &[(&str, &str)],
) -> Option<Vec<TestApp>> {
    let dir = tempfile::tempdir().unwrap();
    let database = shared_database(Backend::Postgres, dir.path()).await?;
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let mut settings = vec![
        ("CONFAB_DATABASE_URL", database.as_str()),
        ("CONFAB_REDIS_URL", redis_url),
        ("CONFAB_REDIS_PREFIX", prefix.as_str()),
    ];
    settings.extend_from_slice(extra);
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(spawn_app_with(Backend::Postgres, &settings).await?);
    }
    Some(nodes)
}

pub(crate) const REDIS: &str = "redis://127.0.0.1:6379";

/// Settings for child-process nodes sharing `database` and a Redis prefix of their own.
fn node_settings<'a>(
    database: &'a str,
    prefix: &'a str,
    data_dir: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CONFAB_DATABASE_URL", database),
        ("CONFAB_REDIS_URL", REDIS),
        ("CONFAB_REDIS_PREFIX", prefix),
        ("CONFAB_JWT_SECRET", SECRET),
        ("CONFAB_NODE_TIMEOUT_SECS", "3"),
        ("CONFAB_DATA_DIR", data_dir),
        ("CONFAB_SERVER_API_KEYS", SERVER_KEY),
    ]
}

/// Connects `user` to the node at `url` with a valid token.
async fn connect_to(url: &str, user: &str) -> Client {
    let token = sign(json!({ "sub": user, "exp": chrono_now() + 3600 }));
    confab_sio_client::connect(
        confab_sio_client::ConnectOptions::new(url).auth(json!({ "token": token })),
    )
    .await
    .unwrap_or_else(|e| panic!("{user} connects to {url}: {e}"))
}

/// Checks Redis is there (or skips outside CI).
async fn redis_available() -> bool {
    match tokio::net::TcpStream::connect("127.0.0.1:6379").await {
        Ok(_) => true,
        Err(e) if !services_required() => {
            eprintln!("Redis unreachable ({e}); skipping cluster tests");
            false
        }
        Err(e) => panic!("Redis is required in CI: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_nodes_chat_as_if_on_one() {
    if !redis_available().await {
        return;
    }
    let Some(nodes) = cluster(2, REDIS, &[]).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let mut carol = b.connect("carol").await;

    let id = group(&alice, "across", &["bob"]).await;
    assert_eq!(
        expect(&mut bob, "conversation:new").await["conversation"]["id"],
        id.as_str()
    );
    let m = send(&alice, &id, "a1", "hello from node a").await;
    assert_eq!(expect(&mut bob, "message:new").await["message"], m);
    let reply = send(&bob, &id, "b1", "hello from node b").await;
    assert_eq!(expect(&mut alice, "message:new").await["message"], reply);
    assert_eq!(reply["seq"], 2);

    // Membership: carol (on b) is added by alice (on a) and receives without reconnecting.
    alice
        .ok(
            "conversation:members:add",
            json!({ "conversation_id": id, "user_ids": ["carol"] }),
        )
        .await;
    assert_eq!(
        expect(&mut carol, "conversation:new").await["conversation"]["id"],
        id.as_str()
    );
    let members = expect(&mut bob, "conversation:members").await;
    assert_eq!(members["changed"][0]["user_id"], "carol");
    let m3 = send(&alice, &id, "a2", "welcome carol").await;
    assert_eq!(expect(&mut carol, "message:new").await["message"], m3);
    assert_eq!(expect(&mut bob, "message:new").await["message"], m3);

    // Edits, typing and receipts cross too.
    let edited = alice
        .ok(
            "message:edit",
            json!({ "conversation_id": id, "message_id": m["id"], "body": "edited" }),
        )
        .await;
    assert_eq!(
        expect(&mut carol, "message:updated").await["message"],
        edited["message"]
    );
    alice
        .ok("typing:start", json!({ "conversation_id": id }))
        .await;
    assert_eq!(expect(&mut carol, "typing").await["user_id"], "alice");
    carol
        .ok(
            "conversation:read",
            json!({ "conversation_id": id, "seq": 3 }),
        )
        .await;
    assert_eq!(expect(&mut alice, "receipt").await["user_id"], "carol");

    // Removal on a stops delivery on b at once.
    alice
        .ok(
            "conversation:members:remove",
            json!({ "conversation_id": id, "user_ids": ["bob"] }),
        )
        .await;
    assert_eq!(
        expect(&mut bob, "conversation:removed").await["conversation_id"],
        id.as_str()
    );
    send(&alice, &id, "a3", "bob is gone").await;
    expect(&mut carol, "message:new").await;
    expect_none(&mut bob, "message:new").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_traffic_of_its_own_users() {
    if !redis_available().await {
        return;
    }
    let Some(nodes) = cluster(3, REDIS, &[]).await else {
        return;
    };
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    // Node c has users of its own, in a conversation of their own.
    let dave = c.connect("dave").await;
    let _erin = c.connect("erin").await;
    let theirs = group(&dave, "elsewhere", &["erin"]).await;
    send(&dave, &theirs, "d1", "unrelated").await;

    let id = group(&alice, "a and b", &["bob"]).await;
    expect(&mut bob, "conversation:new").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = |node: &TestApp| {
        node.bus_stats
            .as_ref()
            .unwrap()
            .received
            .load(Ordering::Relaxed)
    };
    let before = (received(a), received(b), received(c));
    for i in 0..50 {
        send(&alice, &id, &format!("m{i}"), "for bob only").await;
    }
    for _ in 0..50 {
        expect(&mut bob, "message:new").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = (received(a), received(b), received(c));
    assert!(
        after.1 - before.1 >= 50,
        "b received the conversation's traffic: {before:?} → {after:?}"
    );
    assert_eq!(
        after.2, before.2,
        "c, with no member online, received none of it"
    );
    assert_eq!(
        after.0, before.0,
        "a, the sender's node, doesn't get its own traffic back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_several_nodes_is_online_once_and_offline_once() {
    if !redis_available().await {
        return;
    }
    let Some(nodes) = cluster(3, REDIS, &[("CONFAB_PRESENCE_GRACE_MS", "300")]).await else {
        return;
    };
    let mut alice = nodes[2].connect("alice").await;
    let bob_a = nodes[0].connect("bob").await;
    group(&bob_a, "pair", &["alice"]).await;
    expect(&mut alice, "conversation:new").await;
    drop(bob_a);
    let offline = expect(&mut alice, "presence").await;
    assert_eq!(
        (offline["user_id"].as_str(), offline["online"].as_bool()),
        (Some("bob"), Some(false))
    );

    let bob_a = nodes[0].connect("bob").await;
    let online = expect(&mut alice, "presence").await;
    assert_eq!(online["online"], true);
    let bob_b = nodes[1].connect("bob").await;
    expect_none(&mut alice, "presence").await;
    let seen = alice
        .ok("presence:get", json!({ "user_ids": ["bob"] }))
        .await;
    assert_eq!(seen["presence"][0]["online"], true);
    bob_a.disconnect().await;
    alice
        .expect_no_event("presence", Duration::from_millis(800))
        .await
        .expect("still online on b");
    bob_b.disconnect().await;
    let offline = alice
        .expect_event("presence", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(offline.data()["online"], false);
    alice
        .expect_no_event("presence", Duration::from_millis(500))
        .await
        .expect("offline once");
}

/// What one client has seen of a conversation, by seq: built from `message:new` and `sync`, the
/// way the protocol tells client authors to.
#[derive(Default)]
pub(crate) struct View {
    pub(crate) by_seq: BTreeMap<i64, Value>,
    /// `message:new` events for a seq already seen (expected 0 without failures).
    pub(crate) duplicates: usize,
}

impl View {
    pub(crate) fn take(&mut self, message: &Value) -> bool {
        let seq = message["seq"].as_i64().unwrap();
        self.by_seq.insert(seq, message.clone()).is_none()
    }

    fn drain_events(&mut self, client: &mut Client) -> bool {
        let mut connected = true;
        while let Some(incoming) = client_try_next(client) {
            match incoming {
                Incoming::Event(e) if e.name == "message:new" => {
                    if !self.take(&e.data()["message"]) {
                        self.duplicates += 1;
                    }
                }
                Incoming::Event(_) => {}
                Incoming::Disconnected { .. } => connected = false,
            }
        }
        connected
    }

    pub(crate) async fn sync(&mut self, client: &Client, conversation: &str) {
        loop {
            let cursor = self.by_seq.keys().next_back().copied().unwrap_or(0);
            // Fill holes too: ask from the first gap.
            let first_gap = (1..=cursor)
                .find(|s| !self.by_seq.contains_key(s))
                .map_or(cursor, |s| s - 1);
            let data = client
                .ok("sync", json!({ "cursors": { conversation: first_gap } }))
                .await;
            let update = &data["updates"][0];
            for m in update["messages"].as_array().unwrap() {
                self.take(m);
            }
            if update["has_more"] != true {
                return;
            }
        }
    }

    pub(crate) fn assert_gap_free(&self, expected: &[Value], who: &str) {
        let seqs: Vec<i64> = self.by_seq.keys().copied().collect();
        let want: Vec<i64> = (1..=expected.len() as i64).collect();
        assert_eq!(
            seqs, want,
            "{who} sees every message once, in seq order, with no gaps"
        );
        for m in expected {
            let seq = m["seq"].as_i64().unwrap();
            assert_eq!(
                self.by_seq[&seq]["id"], m["id"],
                "{who}: seq {seq} is the acked message"
            );
        }
    }
}

/// The next already-received event, without waiting.
fn client_try_next(client: &mut Client) -> Option<Incoming> {
    futures::FutureExt::now_or_never(client.next_event()).flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_degrades_then_heals_and_sync_fills_the_gap() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let Some(nodes) = cluster(2, &redis.url(), &[]).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.connect("alice").await;
    let mut alice_tab = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    let id = group(&alice, "outage", &["bob"]).await;
    expect(&mut bob, "conversation:new").await;
    let mut acked = vec![send(&alice, &id, "before", "before the outage").await];
    expect(&mut bob, "message:new").await;

    redis.stop().await;
    // Nodes keep serving their own users: persist, ack, local delivery.
    let mut ready = Value::Null;
    for _ in 0..50 {
        ready = a.http().get("/readyz", None).await.1;
        if ready["status"] == "degraded" {
            break;
        }
        let m = send(
            &alice,
            &id,
            &format!("probe{}", acked.len()),
            "are you there",
        )
        .await;
        acked.push(m);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(
        ready["redis"]
            .as_str()
            .is_some_and(|r| r.starts_with("redis")),
        "{ready}"
    );
    for i in 0..5 {
        acked.push(send(&alice, &id, &format!("during{i}"), "during the outage").await);
    }
    let mut tab_view = View::default();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tab_view.drain_events(&mut alice_tab);
    assert_eq!(tab_view.by_seq.len(), acked.len(), "local delivery went on");

    redis.restart().await;
    // Subscriptions are restored and local clients are told to resync.
    bob.expect_event("resync", Duration::from_secs(10))
        .await
        .expect("a resync hint");
    let mut ready = Value::Null;
    for _ in 0..100 {
        ready = b.http().get("/readyz", None).await.1;
        if ready["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready["status"], "ready", "{ready}");
    let mut bob_view = View::default();
    bob_view.drain_events(&mut bob);
    bob_view.take(&acked[0]);
    bob_view.sync(&bob, &id).await;
    bob_view.assert_gap_free(&acked, "bob");
    // And live delivery across nodes works again.
    let after = send(&alice, &id, "after", "redis is back").await;
    assert_eq!(expect(&mut bob, "message:new").await["message"], after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_acked_and_its_users_go_offline() {
    if !redis_available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = shared_database(Backend::Postgres, dir.path()).await else {
        return;
    };
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let mut settings = node_settings(&database, &prefix, dir.path().to_str().unwrap());
    settings.extend([
        ("CONFAB_PRESENCE_GRACE_MS", "200"),
        ("CONFAB_RATE_SEND", "100000/100000"),
        ("CONFAB_RATE_OTHER", "100000/100000"),
        ("CONFAB_RATE_MEMBERS", "100000/100000"),
    ]);
    let mut doomed = NodeProcess::start(&settings).await;
    let survivor = NodeProcess::start(&settings).await;
    let alice = connect_to(&doomed.url, "alice").await;
    let mut bob = connect_to(&survivor.url, "bob").await;
    let id = group(&alice, "doomed", &["bob"]).await;
    expect(&mut bob, "conversation:new").await;

    // Alice sends a steady stream without waiting for acks; the node dies mid-stream, once 50
    // sends are acked (not after a fixed time, which on a fast or slow machine may fall before
    // the first ack or after the last).
    let pending: Vec<_> = (0..200)
        .map(|i| {
            let payload = json!({ "conversation_id": id, "client_id": format!("k{i}"), "body": format!("{i}") });
            (format!("k{i}"), payload)
        })
        .collect();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut killed = false;
    let mut next = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    while next < pending.len() || !in_flight.is_empty() {
        tokio::select! {
            _ = tick.tick(), if next < pending.len() => {
                let (key, payload) = pending[next].clone();
                let send = alice.emit_with_ack("message:send", payload);
                in_flight.push(async move { (key, send.await) });
                next += 1;
            }
            Some((key, result)) = futures::StreamExt::next(&mut in_flight) => {
                if result.is_ok_and(|r| r["ok"] == true) {
                    acked.insert(key);
                }
                if acked.len() == 50 && !killed {
                    doomed.kill().await;
                    killed = true;
                }
            }
        }
    }
    assert!(killed, "the node was killed mid-stream");
    assert!(
        acked.len() < pending.len(),
        "some sends were not acked because of the kill: {}",
        acked.len()
    );

    // Alice reconnects to the survivor and retries everything unacked with the same client_id,
    // as a client's outbox does.
    let alice = connect_to(&survivor.url, "alice").await;
    for (key, payload) in &pending {
        if !acked.contains(key) {
            alice.ok("message:send", payload.clone()).await;
        }
    }
    let history = alice
        .ok(
            "message:history",
            json!({ "conversation_id": id, "limit": 200 }),
        )
        .await;
    let stored: Vec<Value> = history["messages"].as_array().unwrap().clone();
    let keys: Vec<&str> = stored
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = keys.iter().copied().collect();
    assert_eq!(
        keys.len(),
        200,
        "every message stored once ({} acked before the kill)",
        acked.len()
    );
    assert_eq!(unique.len(), 200, "no duplicates");
    for key in &acked {
        assert!(
            unique.contains(key.as_str()),
            "acked {key} survived the kill"
        );
    }
    // Bob, who stayed on the survivor, ends with exactly that after syncing.
    let mut view = View::default();
    view.drain_events(&mut bob);
    view.sync(&bob, &id).await;
    view.assert_gap_free(&stored, "bob");

    // The dead node's user goes offline for the others within the node timeout... unless, as
    // here, she came back on the survivor: then she stays online.
    let seen = bob
        .ok("presence:get", json!({ "user_ids": ["alice"] }))
        .await;
    assert_eq!(seen["presence"][0]["online"], true);
}

/// Two child-process nodes on a fresh database; `behind` reaches Redis through a proxy the test
/// can freeze (a partition between that node and Redis, with no hook in the server).
struct ProxiedPair {
    proxy: Proxy,
    behind: NodeProcess,
    direct: NodeProcess,
    /// Holds the nodes' data directory.
    _dir: tempfile::TempDir,
}

/// `None` when Redis or PostgreSQL is unavailable outside CI.
async fn proxied_pair(node_timeout_secs: &str) -> Option<ProxiedPair> {
    if !redis_available().await {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let database = shared_database(Backend::Postgres, dir.path()).await?;
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let proxied = proxy.redis_url();
    let settings: Vec<(&str, &str)> =
        node_settings(&database, &prefix, dir.path().to_str().unwrap())
            .into_iter()
            .map(|(k, v)| match k {
                "CONFAB_NODE_TIMEOUT_SECS" => (k, node_timeout_secs),
                _ => (k, v),
            })
            .collect();
    let behind_settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|&(k, v)| match k {
            "CONFAB_REDIS_URL" => (k, proxied.as_str()),
            _ => (k, v),
        })
        .collect();
    let behind = NodeProcess::start(&behind_settings).await;
    let direct = NodeProcess::start(&settings).await;
    Some(ProxiedPair {
        proxy,
        behind,
        direct,
        _dir: dir,
    })
}

/// A node that commits and acks a message, then dies before publishing it, leaves it stranded:
/// stored, but never broadcast, and members elsewhere see no seq gap until some later message.
/// The node that reaps the dead one asks the whole cluster to `resync`, so they find it with
/// no further message sent.
///
/// The doomed node reaches Redis through a proxy the test cuts before the send: a real network
/// partition makes the publish vanish, with no hook in the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stranded_by_a_dead_node_reaches_the_others_without_another_message() {
    let Some(ProxiedPair {
        proxy,
        behind: mut doomed,
        direct: survivor,
        _dir: _data,
    }) = proxied_pair("3").await
    else {
        return;
    };
    let alice = connect_to(&doomed.url, "alice").await;
    let mut bob = connect_to(&survivor.url, "bob").await;
    let id = group(&alice, "stranded", &["bob"]).await;
    expect(&mut bob, "conversation:new").await;
    let first = send(&alice, &id, "s1", "before").await;
    assert_eq!(expect(&mut bob, "message:new").await["message"], first);

    proxy.freeze(true);
    let stranded = send(&alice, &id, "s2", "committed and acked, never published").await;
    assert_eq!(stranded["seq"], 2);
    doomed.kill().await;
    drop(alice);
    let started = Instant::now();
    // Nothing else is sent. Bob gets no `message:new` (it never left the dead node) but, once
    // the dead node is reaped, a `resync`.
    loop {
        match bob.next_event_timeout(Duration::from_secs(15)).await {
            Some(Incoming::Event(e)) if e.name == "resync" => break,
            Some(Incoming::Event(e)) if e.name == "message:new" => {
                panic!("the message was not stranded after all: {:?}", e.data())
            }
            Some(Incoming::Event(_)) => {}
            other => panic!("no resync after the node died: {other:?}"),
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "within about the node timeout: {took:?}"
    );
    // Bob does what the protocol says on `resync`: sync from his cursor.
    let data = bob
        .ok("sync", json!({ "cursors": { id.as_str(): 1 } }))
        .await;
    assert_eq!(data["updates"][0]["messages"], json!([stranded]));
}

/// A node cut off from Redis without a reset (a partition: packets vanish) can't publish, but
/// the other nodes' links are fine, so nothing tells their clients that events were missed.
/// When the cut-off node can publish again it says so on the cluster channel, and the others
/// ask their clients to `resync`. The cut-off node's subscriber notices the silence by itself
/// (it pings) and reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_could_not_publish_tells_the_others_to_resync() {
    // A node timeout far beyond the test, so the cut-off node isn't reaped as dead: that too
    // makes the others resync, and would hide what is tested here.
    let Some(ProxiedPair {
        proxy,
        behind: cut,
        direct: other,
        _dir: _data,
    }) = proxied_pair("120").await
    else {
        return;
    };
    let alice = connect_to(&cut.url, "alice").await;
    let mut bob = connect_to(&other.url, "bob").await;
    let id = group(&alice, "partition", &["bob"]).await;
    expect(&mut bob, "conversation:new").await;
    let first = send(&alice, &id, "p1", "before").await;
    assert_eq!(expect(&mut bob, "message:new").await["message"], first);

    // The path goes silent, long enough for the publish to time out and be dropped, then
    // heals: new connections get through, so the node recovers once it gives up on the old.
    proxy.freeze(true);
    let missed = send(&alice, &id, "p2", "committed, its publish lost").await;
    assert_eq!(missed["seq"], 2);
    // Until the node has given the publish up (its response timeout): healed sooner, the
    // publish would go through on a new connection after all. Waited for, not slept for: a
    // busy machine stretches the timeout.
    let metrics = Http {
        base: cut.url.clone(),
        client: reqwest::Client::new(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = metrics.get("/metrics", None).await;
        let dropped = text.as_str().unwrap_or("").lines().any(|l| {
            l.starts_with("confab_bus_dropped_total")
                && l.split_whitespace()
                    .last()
                    .and_then(|v| v.parse::<f64>().ok())
                    >= Some(1.0)
        });
        if dropped {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the publish was never given up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.admit_new();
    loop {
        match bob.next_event_timeout(Duration::from_secs(20)).await {
            Some(Incoming::Event(e)) if e.name == "resync" => break,
            Some(Incoming::Event(e)) if e.name == "message:new" => {
                panic!("the publish was not lost after all: {:?}", e.data())
            }
            Some(Incoming::Event(_)) => {}
            other => panic!("no resync after the node could publish again: {other:?}"),
        }
    }
    let data = bob
        .ok("sync", json!({ "cursors": { id.as_str(): 1 } }))
        .await;
    assert_eq!(data["updates"][0]["messages"], json!([missed]));

    // The cut-off node's subscriber noticed the silence, reconnected and told its own clients
    // to resync; from then on both directions work again.
    let mut alice = alice;
    alice
        .expect_event("resync", Duration::from_secs(20))
        .await
        .expect("the cut-off node's subscriber reconnects by itself");
    let after = send(&bob, &id, "p3", "after").await;
    assert_eq!(expect(&mut alice, "message:new").await["message"], after);
}

/// The sum of the samples of `series` on the node at `url`: a metric name (all its labels) or
/// one labelled series (`name{label="value"}`).
async fn metric(url: &str, series: &str) -> f64 {
    let http = Http {
        base: url.to_owned(),
        client: reqwest::Client::new(),
    };
    let (_, text) = http.get("/metrics", None).await;
    text.as_str()
        .unwrap_or("")
        .lines()
        .filter(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// Waits until metric `name` on the node at `url` reaches `at_least`.
async fn wait_metric(url: &str, name: &str, at_least: f64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(url, name).await < at_least {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until metric `name` on the node at `url` is positive and has stopped moving for
/// longer than a publish takes to time out: every publish queued so far is then given up.
async fn wait_settled(url: &str, name: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let (mut last, mut since) = (0.0, tokio::time::Instant::now());
    loop {
        let now = metric(url, name).await;
        if now != last {
            (last, since) = (now, tokio::time::Instant::now());
        } else if now > 0.0 && since.elapsed() > Duration::from_secs(5) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Joins and leaves reach other nodes only as bus messages. Made while their node can't
/// publish, they are lost: without a repair, a member removed meanwhile would keep receiving
/// the conversation's live events on the other node (a privacy leak), and a member added would
/// get none until they reconnect; and a user banned meanwhile would keep their sockets there.
/// When the other node is told it missed messages, it reloads its users' memberships (and bans)
/// from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memberships_changed_while_a_node_could_not_publish_are_reconciled_on_the_others() {
    // As above: the cut-off node must not be reaped as dead, which would hide what is tested.
    let Some(ProxiedPair {
        proxy,
        behind: cut,
        direct: other,
        _dir: _data,
    }) = proxied_pair("120").await
    else {
        return;
    };
    let alice = connect_to(&cut.url, "alice").await;
    let mut bob = connect_to(&other.url, "bob").await;
    let mut carol = connect_to(&other.url, "carol").await;
    let mut dave = connect_to(&other.url, "dave").await;
    let id = group(&alice, "reconciled", &["bob", "dave"]).await;
    expect(&mut bob, "conversation:new").await;
    expect(&mut dave, "conversation:new").await;
    let first = send(&alice, &id, "r1", "before").await;
    assert_eq!(expect(&mut bob, "message:new").await["message"], first);
    let reconciled = "confab_membership_reconciliations_total";
    let before = metric(&other.url, reconciled).await;

    proxy.freeze(true);
    alice
        .ok(
            "conversation:members:remove",
            json!({ "conversation_id": id, "user_ids": ["bob"] }),
        )
        .await;
    alice
        .ok(
            "conversation:members:add",
            json!({ "conversation_id": id, "user_ids": ["carol"] }),
        )
        .await;
    let host_app = Http {
        base: cut.url.clone(),
        client: reqwest::Client::new(),
    };
    let (status, _) = host_app
        .post("/api/server/users/dave/ban", Some(SERVER_KEY), &json!({}))
        .await;
    assert_eq!(status, 200);
    // Every publish of both changes given up (they may be spread over several batches, each
    // timing out in turn): healed sooner, a later batch would go through after all.
    wait_settled(
        &cut.url,
        "confab_bus_dropped_total",
        "the cut-off node never gave up its publishes",
    )
    .await;
    proxy.admit_new();
    for (name, client) in [
        ("bob", &mut bob),
        ("carol", &mut carol),
        ("dave", &mut dave),
    ] {
        loop {
            match client.next_event_timeout(Duration::from_secs(20)).await {
                Some(Incoming::Event(e)) if e.name == "resync" => break,
                Some(Incoming::Event(e))
                    if ["conversation:removed", "conversation:new", "session:ended"]
                        .contains(&e.name.as_str()) =>
                {
                    panic!("the change reached {name} after all: {:?}", e.data())
                }
                Some(Incoming::Event(_)) => {}
                other => panic!("{name} got no resync: {other:?}"),
            }
        }
    }
    wait_metric(
        &other.url,
        reconciled,
        before + 1.0,
        "the other node never reconciled its memberships",
    )
    .await;
    let corrected = "confab_membership_corrections_total";
    assert_eq!(
        metric(&other.url, &format!("{corrected}{{change=\"left\"}}")).await,
        1.0,
        "Bob's lost leave"
    );
    assert_eq!(
        metric(&other.url, &format!("{corrected}{{change=\"joined\"}}")).await,
        1.0,
        "Carol's lost join"
    );
    assert_eq!(
        metric(&other.url, &format!("{corrected}{{change=\"banned\"}}")).await,
        1.0,
        "Dave's lost ban"
    );
    assert_eq!(
        expect(&mut dave, "session:ended").await,
        json!({ "reason": "banned", "until": null })
    );

    let after = send(&alice, &id, "r2", "after the outage").await;
    assert_eq!(expect(&mut carol, "message:new").await["message"], after);
    // Bob and Carol are on the same node, which queues one bus message to every local member
    // in one go: had Bob been sent it, it would be in his queue by now.
    bob.expect_no_event("message:new", QUIET)
        .await
        .expect("a removed member gets no live events");
    let data = bob
        .ok("sync", json!({ "cursors": { id.as_str(): 1 } }))
        .await;
    assert!(
        !data.to_string().contains("after the outage"),
        "a removed member's sync doesn't return it: {data}"
    );
    // The node's own view follows too: typing is checked against it.
    bob.fails("typing:start", json!({ "conversation_id": id }))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_of_a_crashed_node_are_marked_offline_by_the_others() {
    use redis::AsyncCommands;
    if !redis_available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = shared_database(Backend::Postgres, dir.path()).await else {
        return;
    };
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let mut settings = node_settings(&database, &prefix, dir.path().to_str().unwrap());
    // Beats every 2 s.
    settings.retain(|(k, _)| *k != "CONFAB_NODE_TIMEOUT_SECS");
    settings.push(("CONFAB_NODE_TIMEOUT_SECS", "6"));
    let mut redis = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut doomed = NodeProcess::start(&settings).await;
    let doomed_id = loop {
        let nodes: Vec<String> = redis.smembers(format!("{prefix}:nodes")).await.unwrap();
        if let Some(id) = nodes.into_iter().next() {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let heartbeat_left = async |redis: &mut redis::aio::MultiplexedConnection| -> i64 {
        redis
            .pttl(format!("{prefix}:node:{doomed_id}"))
            .await
            .unwrap()
    };
    // Start the survivor a second into the doomed node's beat, so that their beats are out of
    // step: a reaper that looked only at its own beats would find the death about a second
    // late, which the bound below tells apart.
    while heartbeat_left(&mut redis).await > 5_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let survivor = spawn_app_with(Backend::Postgres, &settings).await.unwrap();
    let carol = connect_to(&doomed.url, "carol").await;
    let mut dave = survivor.connect("dave").await;
    group(&carol, "pair", &["dave"]).await;
    expect(&mut dave, "conversation:new").await;
    // The death is due when the doomed node's last heartbeat lapses: read it just before.
    let left = heartbeat_left(&mut redis).await;
    assert!(left > 0, "the doomed node beats");
    let lapse = Instant::now() + Duration::from_millis(left as u64);
    doomed.kill().await;
    drop(carol);
    let offline = dave
        .expect_event("presence", Duration::from_secs(15))
        .await
        .expect("carol goes offline");
    assert_eq!(offline.data()["user_id"], "carol");
    assert_eq!(offline.data()["online"], false);
    assert!(offline.data()["last_seen_at"].is_string());
    // Promised: within the node timeout of the death. The heartbeat lapses at most that long
    // after the death, and the others look right then (the slack is for a loaded machine);
    // before, they looked only at their own beats and took up to a beat longer.
    let late = Instant::now().saturating_duration_since(lapse);
    assert!(
        late < Duration::from_millis(600),
        "found {late:?} after the heartbeat lapsed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_finishes_sends_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("c.db").display());
    let settings = [
        ("CONFAB_DATABASE_URL", database.as_str()),
        ("CONFAB_JWT_SECRET", SECRET),
        ("CONFAB_DATA_DIR", dir.path().to_str().unwrap()),
        ("CONFAB_RATE_SEND", "100000/100000"),
    ];
    let mut node = NodeProcess::start(&settings).await;
    let mut alice = connect_to(&node.url, "alice").await;
    let id = group(&alice, "bye", &[]).await;
    let payload =
        |i: usize| json!({ "conversation_id": id, "client_id": format!("k{i}"), "body": "x" });
    let sends =
        futures::future::join_all((0..50).map(|i| alice.emit_with_ack("message:send", payload(i))));
    let started = Instant::now();
    let (results, status) = tokio::join!(sends, node.terminate(Duration::from_secs(15)));
    let status = status.expect("exits within the bound");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let mut told = false;
    while let Some(incoming) = alice.next_event_timeout(Duration::from_secs(2)).await {
        match incoming {
            Incoming::Event(e) if e.name == "server:shutdown" => told = true,
            Incoming::Disconnected { .. } => break,
            _ => {}
        }
    }
    assert!(told, "clients are told before the connection closes");
    // Sends the node received before closing were committed and acked; any that weren't acked
    // are retried against the next node with the same client_id, and nothing is doubled.
    let acked: Vec<usize> = (0..50)
        .filter(|i| results[*i].as_ref().is_ok_and(|r| r["ok"] == true))
        .collect();
    // The promise: sends already on their way when the signal came are stored and acked. All 50
    // were written before SIGTERM, and the node reads on through its grace period.
    assert_eq!(
        acked.len(),
        50,
        "every send in flight is acked: {results:?}"
    );
    let node = NodeProcess::start(&settings).await;
    let alice = connect_to(&node.url, "alice").await;
    for i in (0..50).filter(|i| !acked.contains(i)) {
        alice.ok("message:send", payload(i)).await;
    }
    let page = alice
        .ok(
            "message:history",
            json!({ "conversation_id": id, "limit": 200 }),
        )
        .await;
    let stored: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(stored.len(), 50, "each message once: {stored:?}");
    for i in acked {
        assert_eq!(
            results[i].as_ref().unwrap()["data"]["message"]["seq"],
            page["messages"][i]["seq"]
        );
    }
}
