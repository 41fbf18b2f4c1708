//! The embedded web app and its dev sign-in route.

use serde_json::json;

use crate::helpers::*;

/// A server in local mode: no key configured, so confab generates its own secret.
async fn local_app(settings: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("CONFAB_JWT_SECRET", "")];
    all.extend_from_slice(settings);
    spawn_app_with(Backend::Sqlite, &all)
        .await
        .expect("sqlite is always available")
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    reqwest::get(format!("{}{path}", app.url))
        .await
        .expect("request")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_types_and_cache_headers() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let page = get(&app, "/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert!(header(&page, "content-security-policy").contains("script-src 'self'"));
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let etag = header(&page, "etag").to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<div id="app">"#), "{html}");
    // A secret is configured: no "sign in as".
    assert!(html.contains(r#"<meta name="confab-dev-login" content="off">"#));
    // Every asset the page names is served, with its type, for good (the URL carries a hash).
    for (path, content_type) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        assert!(html.contains(path), "the page doesn't reference {path}");
        let asset = get(&app, path).await;
        assert_eq!(asset.status(), 200, "{path}");
        assert_eq!(header(&asset, "content-type"), content_type);
        assert!(header(&asset, "cache-control").contains("immutable"));
        assert!(!asset.bytes().await.unwrap().is_empty(), "{path} is empty");
    }
    assert_eq!(get(&app, "/assets/nope.js").await.status(), 404);

    let again = reqwest::Client::new()
        .get(format!("{}/", app.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}

#[tokio::test]
async fn dev_sign_in_does_not_exist_when_a_secret_is_configured() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let (status, _) = app
        .http()
        .post("/api/dev/token", None, &json!({ "sub": "alice" }))
        .await;
    assert_eq!(status, 404);
    // Nor when turned off in local mode.
    let app = local_app(&[("CONFAB_DEV_LOGIN", "false")]).await;
    let (status, _) = app
        .http()
        .post("/api/dev/token", None, &json!({ "sub": "alice" }))
        .await;
    assert_eq!(status, 404);
    let html = get(&app, "/").await.text().await.unwrap();
    assert!(html.contains(r#"content="off""#));
}

#[tokio::test]
async fn local_mode_signs_in_as_anyone() {
    let app = local_app(&[]).await;
    let html = get(&app, "/").await.text().await.unwrap();
    assert!(html.contains(r#"<meta name="confab-dev-login" content="on">"#));
    let http = app.http();
    let (status, body) = http
        .post(
            "/api/dev/token",
            None,
            &json!({ "sub": "alice", "name": "Alice\u{7}" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    assert!(body["data"]["expires_at"].is_string());
    // The token works for the API and the socket, and carries the (cleaned) name.
    let (status, _) = http.get("/api/conversations", Some(&token)).await;
    assert_eq!(status, 200);
    let alice = app
        .connect_auth(json!({ "token": token }))
        .await
        .expect("the minted token connects");
    let bob_token = http
        .post("/api/dev/token", None, &json!({ "sub": "bob" }))
        .await
        .1["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = http
        .post(
            "/api/conversations",
            Some(&bob_token),
            &json!({ "kind": "direct", "user_id": "alice" }),
        )
        .await;
    let members = &body["data"]["conversation"]["members"];
    let alice_member = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == "alice")
        .unwrap();
    assert_eq!(alice_member["name"], "Alice");
    drop(alice);

    let (status, body) = http
        .post("/api/dev/token", None, &json!({ "sub": "" }))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("sub"))
    );
    let (status, body) = http
        .post("/api/dev/token", None, &json!({ "name": "nobody" }))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_payload"))
    );
    // Another site's page can't mint tokens through the user's browser.
    let refused = reqwest::Client::new()
        .post(format!("{}/api/dev/token", app.url))
        .header("origin", "https://evil.example")
        .json(&json!({ "sub": "alice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn dev_sign_in_can_be_turned_on_beside_a_secret() {
    let app = spawn_app_with(Backend::Sqlite, &[("CONFAB_DEV_LOGIN", "true")])
        .await
        .unwrap();
    let (status, body) = app
        .http()
        .post("/api/dev/token", None, &json!({ "sub": "carol" }))
        .await;
    assert_eq!(status, 201, "{body}");
    // Signed with the configured secret, so tokens from the app and from here are alike.
    let token = body["data"]["token"].as_str().unwrap();
    app.connect_auth(json!({ "token": token }))
        .await
        .expect("connects");
}

/// A DNS-rebinding page points its own name at this server: its requests then carry its name
/// in both `Host` and `Origin`, so "same origin" would let it sign in as anyone.
#[tokio::test]
async fn a_rebound_host_name_is_refused_in_local_mode() {
    let app = local_app(&[]).await;
    let port = app.url.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::Client::new();
    let dev_token = |host: String| {
        client
            .post(format!("{}/api/dev/token", app.url))
            .header("host", &host)
            .header("origin", format!("http://{host}"))
            .json(&json!({ "sub": "alice" }))
            .send()
    };
    let refused = dev_token(format!("rebind.evil.example:{port}"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CONFAB_ALLOWED_HOSTS"),
        "{body}"
    );
    // The Socket.IO handshake too, on both transports.
    for query in ["transport=polling", "transport=websocket"] {
        let status = client
            .get(format!("{}/socket.io/?EIO=4&{query}", app.url))
            .header("host", format!("rebind.evil.example:{port}"))
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 403, "{query}");
    }
    // Names a rebinding page can't use are fine.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("chat.localhost:{port}"),
    ] {
        let status = dev_token(host.clone()).await.unwrap().status();
        assert_eq!(status, 201, "{host}");
    }

    // A name the operator lists is accepted.
    let listed = local_app(&[("CONFAB_ALLOWED_HOSTS", "demo.example, .lan.example")]).await;
    let port = listed.url.rsplit(':').next().unwrap().to_owned();
    for host in ["demo.example", "box.lan.example"] {
        let status = client
            .post(format!("{}/api/dev/token", listed.url))
            .header("host", format!("{host}:{port}"))
            .json(&json!({ "sub": "alice" }))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201, "{host}");
    }

    // With a key configured there is no sign-in to steal and the host is not checked: a
    // deployment is reached by whatever name its proxy forwards.
    let keyed = spawn_app(Backend::Sqlite).await.unwrap();
    let status = client
        .get(format!("{}/healthz", keyed.url))
        .header("host", "chat.example.com")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}
