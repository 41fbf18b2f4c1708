//! The REST API and the health checks.

use serde_json::json;

use crate::helpers::*;

both_backends! {
    async fn the_api_creates_lists_sends_and_reads(app: TestApp) {
        let http = app.http();
        let alice = app.token("alice");
        let mut bob_socket = app.connect("bob").await;
        let (status, body) = http.post("/api/conversations", Some(&alice), &json!({ "kind": "group", "title": "ops", "member_ids": ["bob"] })).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["ok"], true);
        let id = body["data"]["conversation"]["id"].as_str().unwrap().to_owned();
        let owner = &body["data"]["conversation"]["members"][0];
        assert_eq!((owner["user_id"].as_str(), owner["name"].as_str()), (Some("alice"), Some("User alice")), "the token's name is recorded");
        expect(&mut bob_socket, "conversation:new").await;

        let (status, body) = http.post(&format!("/api/conversations/{id}/messages"), Some(&alice), &json!({ "client_id": "h1", "body": "deploy done" })).await;
        assert_eq!(status, 201, "{body}");
        let message = body["data"]["message"].clone();
        assert_eq!(message["seq"], 1);
        // Broadcast to sockets exactly like message:send.
        assert_eq!(expect(&mut bob_socket, "message:new").await["message"], message);
        // A retry is answered 200 with the same message, and not broadcast again.
        let (status, body) = http.post(&format!("/api/conversations/{id}/messages"), Some(&alice), &json!({ "client_id": "h1", "body": "deploy done" })).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["message"], message);
        expect_none(&mut bob_socket, "message:new").await;

        let (status, body) = http.get(&format!("/api/conversations/{id}/messages?limit=10&after_seq=0"), Some(&alice)).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["messages"], json!([message]));
        assert_eq!(body["data"]["has_more"], false);
        let (status, body) = http.get("/api/conversations", Some(&app.token("bob"))).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["conversations"][0]["id"], id.as_str());
        let (status, _) = http.post("/api/conversations", Some(&alice), &json!({ "kind": "direct", "user_id": "bob" })).await;
        assert_eq!(status, 201);
        let (status, _) = http.post("/api/conversations", Some(&alice), &json!({ "kind": "direct", "user_id": "bob" })).await;
        assert_eq!(status, 200, "an existing direct conversation is not created again");
    }

    async fn api_errors_use_the_envelope_and_fitting_statuses(app: TestApp) {
        let http = app.http();
        let alice = app.token("alice");
        let (status, body) = http.get("/api/conversations", None).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "unauthorized");
        assert_eq!(body["error"]["reason"], "missing");
        let (status, body) = http.get("/api/conversations", Some("garbage")).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["reason"], "invalid");
        let now = chrono_now();
        let expired = sign(json!({ "sub": "alice", "exp": now - 600 }));
        let (_, body) = http.get("/api/conversations", Some(&expired)).await;
        assert_eq!(body["error"]["reason"], "expired");

        let (status, body) = http.post_raw("/api/conversations", Some(&alice), "{not json".into()).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "invalid_payload");
        let (status, body) = http.post("/api/conversations", Some(&alice), &json!({ "kind": "group", "title": 5 })).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some("title")));

        let missing = uuid::Uuid::now_v7();
        let (status, body) = http.get(&format!("/api/conversations/{missing}/messages"), Some(&alice)).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "not_found");
        let (status, _) = http.get("/api/conversations/not-an-id/messages", Some(&alice)).await;
        assert_eq!(status, 400);
        // An unknown path (a base URL with a trailing slash gives `//api/…`) answers the
        // envelope, so a client parsing JSON learns what went wrong.
        for path in ["/api/no-such-route", "//api/conversations"] {
            let (status, body) = http.get(path, Some(&alice)).await;
            assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{path}: {body}");
            assert!(body["error"]["message"].as_str().unwrap().contains("trailing slash"), "{body}");
        }
        let (status, body) = http.get(&format!("/api/conversations/{missing}/messages?limit=abc"), Some(&alice)).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some("limit")));

        let (_, body) = http.post("/api/conversations", Some(&alice), &json!({ "kind": "group", "title": "t", "member_ids": [] })).await;
        let id = body["data"]["conversation"]["id"].as_str().unwrap().to_owned();
        let (status, body) = http.post(&format!("/api/conversations/{id}/messages"), Some(&alice), &json!({ "client_id": "k", "body": "x".repeat(5001) })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (413, Some("too_large")));
        let huge = json!({ "client_id": "k", "body": "x".repeat(70_000) });
        let (status, body) = http.post(&format!("/api/conversations/{id}/messages"), Some(&alice), &huge).await;
        assert_eq!((status, body["error"]["code"].as_str()), (413, Some("too_large")), "over the 64 KiB body limit");
        let (status, _) = http.post(&format!("/api/conversations/{id}/messages"), Some(&app.token("mallory")), &json!({ "client_id": "k", "body": "x" })).await;
        assert_eq!(status, 404);
    }

    async fn health_and_readiness(app: TestApp) {
        let http = app.http();
        let (status, _) = http.get("/healthz", None).await;
        assert_eq!(status, 200);
        let (status, body) = http.get("/readyz", None).await;
        assert_eq!(status, 200);
        assert_eq!(body["database"], "ok");
    }

    async fn other_origins_are_refused(app: TestApp) {
        let client = reqwest::Client::new();
        let url = format!("{}/api/conversations", app.url);
        let response = client.get(&url).header("origin", "https://evil.example").bearer_auth(app.token("alice")).send().await.unwrap();
        assert_eq!(response.status(), 403);
        let same = client.get(&url).header("origin", app.url.as_str()).bearer_auth(app.token("alice")).send().await.unwrap();
        assert_eq!(same.status(), 200);
        // The Socket.IO handshake too.
        let refused = confab_sio_client::connect(
            app.options().auth(json!({ "token": app.token("alice") })).header("Origin", "https://evil.example"),
        )
        .await;
        assert!(
            matches!(refused, Err(confab_sio_client::ConnectError::Http { status: 403, .. })),
            "{:?}",
            refused.err().map(|e| e.to_string())
        );
    }
}

#[tokio::test]
async fn allowlisted_origins_get_cors_headers() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("CONFAB_CORS_ORIGINS", "https://app.example")],
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/api/conversations", app.url);
    let preflight = client
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let response = client
        .get(&url)
        .header("origin", "https://app.example")
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let socket = confab_sio_client::connect(
        app.options()
            .auth(json!({ "token": app.token("alice") }))
            .header("Origin", "https://app.example"),
    )
    .await;
    assert!(socket.is_ok());
}

/// The documented promises of an outage: `/readyz` answers 503 (so a load balancer stops
/// sending clients), new sockets are refused `unavailable` (so clients retry, elsewhere), sends
/// are acked `unavailable`; and all of it heals when the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_gone_readiness_fails_and_connects_are_unavailable() {
    let Some(mut pg) = crate::nodes::PgServer::start().await else {
        return;
    };
    let app = spawn_app_with(Backend::Postgres, &[("CONFAB_DATABASE_URL", &pg.url())])
        .await
        .unwrap();
    let (status, body) = app.http().get("/readyz", None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    let alice = app.connect("alice").await;
    let id = group(&alice, "team", &[]).await;

    pg.stop().await;
    let (status, body) = app.http().get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["database"], "unreachable");
    match app.connect_auth(json!({ "token": app.token("bob") })).await {
        Err(confab_sio_client::ConnectError::Refused { message, data }) => {
            assert_eq!(message, "unavailable");
            assert_eq!(data, Some(json!({ "code": "unavailable" })));
        }
        other => panic!("expected unavailable, got {:?}", other.map(|_| ())),
    }
    let e = alice
        .fails(
            "message:send",
            json!({ "conversation_id": id, "client_id": "k1", "body": "hello?" }),
        )
        .await;
    assert_eq!(e["code"], "unavailable", "{e}");
    assert!(alice.is_connected(), "an outage doesn't drop sockets");

    pg.restart().await;
    let mut ready = 0;
    for _ in 0..100 {
        ready = app.http().get("/readyz", None).await.0;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 200, "readiness comes back with the database");
    app.connect("bob").await;
    // The retry, with the same client_id, is stored once.
    send(&alice, &id, "k1", "hello?").await;
}

/// While shutting down, a node is not ready and refuses new sockets `unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_is_not_ready_and_refuses_new_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = crate::nodes::NodeProcess::start(&[
        ("CONFAB_JWT_SECRET", SECRET),
        ("CONFAB_DATA_DIR", dir.path().to_str().unwrap()),
        // A long grace: the checks below run inside it.
        ("CONFAB_SHUTDOWN_GRACE_MS", "5000"),
    ])
    .await;
    let options = || confab_sio_client::ConnectOptions::new(node.url.clone());
    let token = sign(json!({ "sub": "alice", "exp": chrono_now() + 3600 }));
    let mut alice = confab_sio_client::connect(options().auth(json!({ "token": token })))
        .await
        .unwrap();
    let pid = node.pid() as i32;
    // SAFETY: a signal to our own child.
    unsafe { kill(pid, 15) };
    alice
        .expect_event("server:shutdown", std::time::Duration::from_secs(5))
        .await
        .expect("told to go elsewhere");
    let readyz = reqwest::get(format!("{}/readyz", node.url)).await.unwrap();
    assert_eq!(readyz.status(), 503);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(body["status"], "shutting down");
    let token = sign(json!({ "sub": "bob", "exp": chrono_now() + 3600 }));
    match confab_sio_client::connect(options().auth(json!({ "token": token }))).await {
        Err(confab_sio_client::ConnectError::Refused { message, data }) => {
            assert_eq!(message, "unavailable");
            assert_eq!(data, Some(json!({ "code": "unavailable" })));
        }
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a node shutting down accepted a new socket"),
    }
    assert!(
        node.terminate(std::time::Duration::from_secs(15))
            .await
            .is_some()
    );
}

unsafe extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

/// An operator reads docs/OPERATIONS.md to know what `/metrics` means: every metric the server
/// exports is in its table, and the runtime's and the writers' figures are there once a message
/// has been written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exported_metric_is_documented_and_the_runtime_is_watched() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let alice = app.connect("alice").await;
    let id = group(&alice, "ops", &["bob"]).await;
    send(&alice, &id, "m1", "hello").await;
    // The probe wakes every 20 ms.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, text) = app.http().get("/metrics", None).await;
    assert_eq!(status, 200);
    let text = text.as_str().expect("Prometheus text").to_owned();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(value("confab_runtime_wake_delay_seconds_count") >= 1.0);
    assert!(value("confab_runtime_workers") >= 1.0);
    assert!(value("confab_runtime_busy_seconds_total") > 0.0);
    assert!(value("confab_runtime_tasks") >= 1.0);
    assert!(
        value("confab_writer_wakes_total") >= 1.0,
        "the writer was woken by the send"
    );
    assert!(value("confab_writer_poll_seconds_total") > 0.0);
    assert!(
        value("confab_send_seconds_count") >= 1.0,
        "the send's time in the writer"
    );

    let operations =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md"))
            .unwrap();
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next())
        .collect();
    assert!(exported.len() > 10, "{text}");
    let undocumented: Vec<_> = exported
        .iter()
        .filter(|m| !operations.contains(&format!("`{m}")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/OPERATIONS.md's metrics table: {undocumented:?}"
    );
}
