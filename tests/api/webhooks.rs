//! Webhooks, against a real HTTP receiver in the test process: signed, at least once, through
//! a receiver that is down, a node killed with events queued, and several nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::oneshot;

use crate::helpers::*;
use crate::nodes::{NodeProcess, free_port};

const WEBHOOK_SECRET: &str = "whsec-test-0123456789abcdef";

/// What the receiver got: each request's signature header and body.
#[derive(Clone, Default)]
struct Inbox {
    requests: Arc<Mutex<Vec<(String, String)>>>,
    /// Requests still to be refused with 503 (a receiver having trouble).
    refuse: Arc<AtomicUsize>,
}

impl Inbox {
    /// The events received, parsed, in arrival order (after checking each signature).
    fn events(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(signature, body)| {
                verify(signature, body);
                serde_json::from_str(body).unwrap()
            })
            .collect()
    }

    fn of_type(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// Waits until `n` events of `kind` arrived; returns them.
    async fn wait_for(&self, kind: &str, n: usize, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.of_type(kind);
            if got.len() >= n {
                return got;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{} of {n} {kind} events arrived: {got:?}", got.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks a `Confab-Signature` the way a receiver does.
fn verify(header: &str, body: &str) {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (t, v1) = (t.expect("t"), v1.expect("v1"));
    let age = chrono_now() - t.parse::<i64>().unwrap();
    assert!((0..300).contains(&age), "a fresh timestamp: {age}");
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature verifies");
}

/// A receiver on `port`; dropping the handle stops it.
struct Receiver {
    _stop: oneshot::Sender<()>,
}

async fn receive(inbox: &Inbox, port: u16) -> Receiver {
    async fn hook(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let refused = inbox
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let signature = headers
            .get("confab-signature")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = String::from_utf8(body.to_vec()).unwrap();
        inbox.requests.lock().unwrap().push((signature, body));
        StatusCode::NO_CONTENT
    }
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Receiver { _stop: stop }
}

fn hook_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/hook")
}

/// The presence grace period of the webhook tests' nodes: who is away is judged this long
/// after a message.
const GRACE: Duration = Duration::from_millis(300);

/// Settings of a node that sends webhooks to `port`, retrying fast.
fn webhook_settings(url: &str) -> Vec<(&str, &str)> {
    vec![
        ("CONFAB_PRESENCE_GRACE_MS", "300"),
        ("CONFAB_WEBHOOK_URL", url),
        ("CONFAB_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("CONFAB_WEBHOOK_BACKOFF_MS", "100"),
        ("CONFAB_WEBHOOK_TIMEOUT_MS", "2000"),
    ]
}

async fn as_app(base: &str, path: &str, body: Value) -> (u16, Value) {
    let http = Http {
        base: base.to_owned(),
        client: reqwest::Client::new(),
    };
    http.post(path, Some(SERVER_KEY), &body).await
}

/// Posts system messages `0..n` into `conversation` through `base`.
async fn post_system(base: &str, conversation: &str, range: std::ops::Range<usize>) {
    for i in range {
        let (status, body) = as_app(
            base,
            &format!("/api/server/conversations/{conversation}/messages"),
            json!({ "client_id": format!("s{i}"), "body": format!("update {i}") }),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Asserts no event id came twice.
fn assert_no_repeats(events: &[Value]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in events {
        *seen
            .entry(e["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "sent twice: {repeated:?}");
}

both_backends! {
    async fn events_are_signed_and_name_the_members_who_are_away(app: TestApp) {
        let inbox = Inbox::default();
        let port = free_port();
        let _receiver = receive(&inbox, port).await;
        let url = hook_url(port);
        let app = app.with(&webhook_settings(&url)).await;
        let alice = app.connect("alice").await;
        let (status, body) = as_app(&app.url, "/api/server/conversations", json!({ "kind": "group", "title": "Order 7", "owner_id": "alice", "member_ids": ["bob"], "external_id": "order-7" })).await;
        assert_eq!(status, 201);
        let id = body["data"]["conversation"]["id"].as_str().unwrap().to_owned();
        let created = inbox.wait_for("conversation.created", 1, EVENT_WAIT).await;
        assert_eq!(created[0]["data"]["conversation"]["id"], id.as_str());
        assert!(created[0]["id"].is_string() && created[0]["created_at"].is_string(), "{}", created[0]);

        // Bob has no socket: he is named.
        let sent = send(&alice, &id, "a1", "is it shipped?").await;
        let event = inbox.wait_for("message.created", 1, EVENT_WAIT).await.remove(0);
        assert_eq!(event["data"], json!({ "conversation_id": id, "conversation_kind": "group", "message": sent, "offline_member_ids": ["bob"] }));
        // Once he is connected, a message to him is no event (nobody to email).
        let bob = app.connect("bob").await;
        send(&alice, &id, "a2", "tracking number follows").await;
        // A system message is for both; Alice is online, Bob too: still nothing (waited for
        // past the grace period, when who is away is judged).
        post_system(&app.url, &id, 0..1).await;
        tokio::time::sleep(GRACE * 4).await;
        assert_eq!(inbox.of_type("message.created").len(), 1);
        // Bob closes the app just before a message: judged after the grace period, he is away.
        bob.disconnect().await;
        let sent = send(&alice, &id, "a3", "shipped!").await;
        let events = inbox.wait_for("message.created", 2, EVENT_WAIT).await;
        assert_eq!(events[1]["data"]["message"], sent);
        assert_eq!(events[1]["data"]["offline_member_ids"], json!(["bob"]));

        // Members added and removed, so the app can mirror them.
        let (status, _) = as_app(&app.url, &format!("/api/server/conversations/{id}/members"), json!({ "user_ids": ["carol"] })).await;
        assert_eq!(status, 200);
        let added = inbox.wait_for("member.added", 1, EVENT_WAIT).await;
        assert_eq!(added[0]["data"], json!({ "conversation_id": id, "user_ids": ["carol"] }));
        let (status, _) = app.http().delete(&format!("/api/server/conversations/{id}/members/carol"), Some(SERVER_KEY)).await;
        assert_eq!(status, 200);
        let removed = inbox.wait_for("member.removed", 1, EVENT_WAIT).await;
        assert_eq!(removed[0]["data"], json!({ "conversation_id": id, "user_ids": ["carol"] }));
        // Conversations users create are events too.
        alice.ok("conversation:create", json!({ "kind": "direct", "user_id": "dave" })).await;
        inbox.wait_for("conversation.created", 2, EVENT_WAIT).await;
        assert_no_repeats(&inbox.events());
    }

    async fn a_receiver_that_is_down_for_a_while_gets_everything(app: TestApp) {
        let inbox = Inbox::default();
        let port = free_port();
        let url = hook_url(port);
        let app = app.with(&webhook_settings(&url)).await;
        let (_, body) = as_app(&app.url, "/api/server/conversations", json!({ "kind": "group", "title": "t", "owner_id": "o", "member_ids": ["m"] })).await;
        let id = body["data"]["conversation"]["id"].as_str().unwrap().to_owned();
        post_system(&app.url, &id, 0..5).await;
        // Nothing listens: connections are refused, and retried.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Up, but failing a few requests first (503).
        inbox.refuse.store(3, Ordering::SeqCst);
        let _receiver = receive(&inbox, port).await;
        let messages = inbox.wait_for("message.created", 5, Duration::from_secs(20)).await;
        inbox.wait_for("conversation.created", 1, EVENT_WAIT).await;
        let bodies: std::collections::BTreeSet<&str> = messages.iter().map(|e| e["data"]["message"]["body"].as_str().unwrap()).collect();
        assert_eq!(bodies.len(), 5);
        for e in &messages {
            assert_eq!(e["data"]["message"]["kind"], "system");
            let mut away: Vec<&str> = e["data"]["offline_member_ids"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
            away.sort_unstable();
            assert_eq!(away, ["m", "o"], "a system message is for every member");
        }
        assert_no_repeats(&inbox.events());
        let (_, metrics) = app.http().get("/metrics", None).await;
        let metrics = metrics.as_str().unwrap().to_owned();
        assert!(metrics.contains("confab_webhook_attempts_total{result=\"error\"}"), "{metrics}");
        assert!(metrics.contains("confab_webhook_queue_depth"), "{metrics}");
    }
}

both_backends! {
    // An erasure takes the words out of events not yet delivered too: the app must not email
    // text its author erased.
    async fn erasing_a_user_drops_their_undelivered_message_events(app: TestApp) {
        let inbox = Inbox::default();
        let port = free_port();
        let url = hook_url(port);
        let app = app.with(&webhook_settings(&url)).await;
        let (_, body) = as_app(&app.url, "/api/server/conversations", json!({ "kind": "group", "title": "t", "owner_id": "o", "member_ids": ["eve", "m"] })).await;
        let id = body["data"]["conversation"]["id"].as_str().unwrap().to_owned();
        let path = format!("/api/server/conversations/{id}/messages");
        let (status, _) = as_app(&app.url, &path, json!({ "client_id": "e1", "sender_id": "eve", "body": "my private text" })).await;
        assert_eq!(status, 201);
        let (status, _) = as_app(&app.url, &path, json!({ "client_id": "o1", "sender_id": "o", "body": "still here" })).await;
        assert_eq!(status, 201);
        // The receiver is down while Eve is erased.
        let (status, _) = app.http().delete("/api/server/users/eve", Some(SERVER_KEY)).await;
        assert_eq!(status, 200);
        let _receiver = receive(&inbox, port).await;
        let messages = inbox.wait_for("message.created", 1, Duration::from_secs(20)).await;
        inbox.wait_for("member.removed", 1, EVENT_WAIT).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let bodies: Vec<Value> = inbox.of_type("message.created").iter().map(|e| e["data"]["message"]["body"].clone()).collect();
        assert_eq!(bodies, [json!("still here")], "{messages:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_an_event_when_asked() {
    let inbox = Inbox::default();
    let port = free_port();
    let _receiver = receive(&inbox, port).await;
    let url = hook_url(port);
    let mut settings = webhook_settings(&url);
    settings.push(("CONFAB_WEBHOOK_ALL_MESSAGES", "true"));
    let app = spawn_app_with(Backend::Sqlite, &settings).await.unwrap();
    let alice = app.connect("alice").await;
    let _bob = app.connect("bob").await;
    let id = group(&alice, "g", &["bob"]).await;
    send(&alice, &id, "a1", "hi").await;
    let event = inbox
        .wait_for("message.created", 1, EVENT_WAIT)
        .await
        .remove(0);
    assert_eq!(event["data"]["offline_member_ids"], json!([]));
}

/// A large group's messages don't name who of its members is away (a presence lookup per
/// member per message, and an email to thousands); the app's conversation.created event carries
/// the first page of members and the count. With every message asked for, they are events
/// with no one named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_groups_messages_name_nobody_away() {
    let inbox = Inbox::default();
    let port = free_port();
    let _receiver = receive(&inbox, port).await;
    let url = hook_url(port);
    let members: Vec<String> = (0..150).map(|i| format!("away{i}")).collect();
    for all in [false, true] {
        let mut settings = webhook_settings(&url);
        if all {
            settings.push(("CONFAB_WEBHOOK_ALL_MESSAGES", "true"));
        }
        let app = spawn_app_with(Backend::Sqlite, &settings).await.unwrap();
        let alice = app.connect("alice").await;
        let (status, body) = as_app(
            &app.url,
            "/api/server/conversations",
            json!({ "kind": "group", "title": "big", "owner_id": "alice", "member_ids": members }),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let id = body["data"]["conversation"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let created = inbox
            .wait_for("conversation.created", if all { 2 } else { 1 }, EVENT_WAIT)
            .await;
        let conversation = &created.last().unwrap()["data"]["conversation"];
        assert_eq!(conversation["member_count"], 151);
        assert_eq!(conversation["members"].as_array().unwrap().len(), 100);
        // 150 members away, yet no event (or, with every message asked for, one naming none).
        let sent = send(&alice, &id, "a1", "hello, everyone").await;
        if all {
            let event = inbox
                .wait_for("message.created", 1, EVENT_WAIT)
                .await
                .remove(0);
            assert_eq!(event["data"]["message"], sent);
            assert_eq!(event["data"]["offline_member_ids"], json!([]));
        } else {
            tokio::time::sleep(GRACE * 4).await;
            assert_eq!(inbox.of_type("message.created").len(), 0);
        }
    }
}

/// confab is killed (SIGKILL) with events queued for a receiver that is down; restarted, it
/// sends them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_when_confab_is_killed_arrive_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("shared.db").display());
    let data_dir = dir.path().display().to_string();
    let inbox = Inbox::default();
    let port = free_port();
    let url = hook_url(port);
    let mut settings = webhook_settings(&url);
    settings.extend([
        ("CONFAB_DATABASE_URL", database.as_str()),
        ("CONFAB_DATA_DIR", data_dir.as_str()),
        ("CONFAB_JWT_SECRET", SECRET),
        ("CONFAB_SERVER_API_KEYS", SERVER_KEY),
    ]);
    let mut node = NodeProcess::start(&settings).await;
    let (_, body) = as_app(
        &node.url,
        "/api/server/conversations",
        json!({ "kind": "group", "title": "t", "owner_id": "o" }),
    )
    .await;
    let id = body["data"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    post_system(&node.url, &id, 0..4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.kill().await;

    let _receiver = receive(&inbox, port).await;
    let _node = NodeProcess::start(&settings).await;
    inbox
        .wait_for("message.created", 4, Duration::from_secs(20))
        .await;
    inbox.wait_for("conversation.created", 1, EVENT_WAIT).await;
    assert_no_repeats(&inbox.events());
}

/// Two nodes on one PostgreSQL: each event is sent once, by one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_send_each_event_once() {
    let inbox = Inbox::default();
    let port = free_port();
    let _receiver = receive(&inbox, port).await;
    let url = hook_url(port);
    let Some(nodes) =
        crate::cluster::cluster(2, crate::cluster::REDIS, &webhook_settings(&url)).await
    else {
        return;
    };
    let (_, body) = as_app(
        &nodes[0].url,
        "/api/server/conversations",
        json!({ "kind": "group", "title": "t", "owner_id": "o" }),
    )
    .await;
    let id = body["data"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::join!(
        post_system(&nodes[0].url, &id, 0..20),
        post_system(&nodes[1].url, &id, 20..40),
    );
    inbox
        .wait_for("message.created", 40, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let events = inbox.events();
    assert_eq!(
        events.len(),
        41,
        "40 messages and the conversation, each once"
    );
    assert_no_repeats(&events);
}
