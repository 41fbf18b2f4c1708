//! Attachments: upload, send, download, and everything a stranger would try with them.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// A 3×2 PNG's signature and header, then `len` bytes of (pretend) pixel data.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = vec![
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0,
        0, 3, 0, 0, 0, 2, 8, 6, 0, 0, 0, 0x9a, 0x8c, 0x5e, 0xbd,
    ];
    bytes.extend((0..len).map(|i| (i % 251) as u8));
    bytes
}

/// Uploads `bytes` as a raw body with `content_type`; returns the status and the answer.
async fn upload(
    app: &TestApp,
    token: &str,
    content_type: &str,
    name: Option<&str>,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let mut url = format!("{}/api/attachments", app.url);
    if let Some(name) = name {
        url = format!("{url}?name={name}");
    }
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// Uploads and expects success: the attachment object.
async fn uploaded(app: &TestApp, token: &str, content_type: &str, bytes: Vec<u8>) -> Value {
    let (status, body) = upload(app, token, content_type, Some("cat.png"), bytes).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["attachment"].clone()
}

/// GET with an optional token and extra headers.
async fn get(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", app.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Files in the server's attachments directory.
fn stored_files(app: &TestApp) -> usize {
    std::fs::read_dir(app.data_dir().join("attachments"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .count()
        })
        .unwrap_or(0)
}

async fn send_with(
    client: &confab_sio_client::Client,
    conversation: &str,
    client_id: &str,
    ids: &[&Value],
) -> Value {
    client
        .emit_with_ack(
            "message:send",
            json!({ "conversation_id": conversation, "client_id": client_id, "body": "look", "attachment_ids": ids }),
        )
        .await
        .expect("an ack")
}

both_backends! {
    async fn erasing_a_user_takes_their_files_with_their_words(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "pics", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        let alice_token = app.token("alice");
        let sent = uploaded(&app, &alice_token, "image/png", png(100)).await;
        let unsent = uploaded(&app, &alice_token, "image/png", png(200)).await;
        let ack = send_with(&alice, &id, "e1", &[&sent["id"]]).await;
        assert_eq!(ack["ok"], true, "{ack}");
        expect(&mut bob, "message:new").await;
        let path = format!("/api/attachments/{}", sent["id"].as_str().unwrap());
        assert_eq!(get(&app, &path, Some(&app.token("bob")), &[]).await.status(), 200);

        let (status, body) = app.http().delete("/api/server/users/alice", Some(SERVER_KEY)).await;
        assert_eq!(status, 200, "{body}");
        // Bob sees the message deleted without its file, and can't download it any more.
        let updated = expect(&mut bob, "message:updated").await["message"].clone();
        assert_eq!(updated["attachments"], Value::Null, "{updated}");
        assert_eq!(get(&app, &path, Some(&app.token("bob")), &[]).await.status(), 404);
        let history = bob.ok("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(history["messages"][0]["attachments"], Value::Null);
        // Nor is her unsent upload served (to anyone: her tokens are refused now).
        let unsent_path = format!("/api/attachments/{}", unsent["id"].as_str().unwrap());
        assert_eq!(get(&app, &unsent_path, Some(&app.token("bob")), &[]).await.status(), 404);
    }
}

both_backends! {
    async fn an_image_is_uploaded_sent_and_downloaded_by_members(app: TestApp) {
        let alice_token = app.token("alice");
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "pics", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;

        let bytes = png(1000);
        let attachment = uploaded(&app, &alice_token, "image/png", bytes.clone()).await;
        assert_eq!(attachment["content_type"], "image/png");
        assert_eq!(attachment["size"], bytes.len());
        assert_eq!((attachment["width"].as_u64(), attachment["height"].as_u64()), (Some(3), Some(2)));
        assert_eq!(attachment["name"], "cat.png");

        // A message with only a file needs no text.
        let data = alice
            .ok("message:send", json!({ "conversation_id": id, "client_id": "p1", "attachment_ids": [attachment["id"]] }))
            .await;
        let message = &data["message"];
        assert_eq!(message["attachments"], json!([attachment]));
        assert_eq!(message["body"], "");
        let new = expect(&mut bob, "message:new").await;
        assert_eq!(new["message"], *message);
        let history = bob.ok("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(history["messages"][0]["attachments"], json!([attachment]));

        let path = format!("/api/attachments/{}", attachment["id"].as_str().unwrap());
        let response = get(&app, &path, Some(&app.token("bob")), &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "image/png");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert!(header(&response, "content-disposition").starts_with("inline"), "images show inline");
        assert_eq!(header(&response, "accept-ranges"), "bytes");
        let etag = header(&response, "etag").to_owned();
        assert!(!etag.is_empty());
        assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
        // Cached: the browser asks again, and is told its copy is current.
        let response = get(&app, &path, Some(&app.token("bob")), &[("if-none-match", &etag)]).await;
        assert_eq!(response.status(), 304);

        // Over HTTP too.
        let second = uploaded(&app, &alice_token, "application/octet-stream", png(10)).await;
        let (status, body) = app
            .http()
            .post(&format!("/api/conversations/{id}/messages"), Some(&alice_token), &json!({ "client_id": "h1", "body": "two", "attachment_ids": [second["id"]] }))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["data"]["message"]["attachments"][0]["id"], second["id"]);
        assert_eq!(body["data"]["message"]["attachments"][0]["content_type"], "image/png", "the bytes decide, not the claim");
    }

    async fn disguised_and_unknown_types_are_refused(app: TestApp) {
        let alice = app.token("alice");
        let html = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>".to_vec();
        for (declared, bytes) in [
            ("image/png", html.clone()),
            ("text/html", html.clone()),
            ("application/octet-stream", html),
            ("image/png", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec()),
            ("image/png", b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>".to_vec()),
            ("text/plain", png(10)),
            ("image/png", b"PK\x03\x04\x14\x00\x00\x00".to_vec()),
            ("image/png", Vec::new()),
        ] {
            let (status, body) = upload(&app, &alice, declared, None, bytes).await;
            assert_eq!(status, 400, "{declared}: {body}");
            assert_eq!(body["error"]["code"], "invalid_payload");
            assert_eq!(body["error"]["field"], "content_type", "{body}");
        }
        assert_eq!(stored_files(&app), 0, "nothing refused is kept");

        // Plain text is text: saved, not shown, and said to be UTF-8.
        let text = uploaded(&app, &alice, "text/csv", "a,b\n1,2\n".as_bytes().to_vec()).await;
        assert_eq!(text["content_type"], "text/plain");
        assert!(text.get("width").is_none());
        let response = get(&app, &format!("/api/attachments/{}", text["id"].as_str().unwrap()), Some(&alice), &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "text/plain; charset=utf-8");
        assert!(header(&response, "content-disposition").starts_with("attachment"), "{:?}", response.headers());
        assert!(header(&response, "content-security-policy").contains("sandbox"));
        // A PDF is saved too.
        let pdf = uploaded(&app, &alice, "application/pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n".to_vec()).await;
        assert_eq!(pdf["content_type"], "application/pdf");
        let response = get(&app, &format!("/api/attachments/{}", pdf["id"].as_str().unwrap()), Some(&alice), &[]).await;
        assert!(header(&response, "content-disposition").starts_with("attachment; filename=\"cat.png\""));
    }

    async fn attachments_are_the_uploaders_own_and_sent_once(app: TestApp) {
        let alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let id = group(&alice, "t", &["bob"]).await;
        let a = uploaded(&app, &app.token("alice"), "image/png", png(10)).await;

        // Someone else's upload can't be sent, and isn't confirmed to exist.
        let reply = send_with(&bob, &id, "b1", &[&a["id"]]).await;
        assert_eq!(reply["error"]["code"], "invalid_payload", "{reply}");
        assert_eq!(reply["error"]["field"], "attachment_ids[0]");
        let unknown = json!(uuid::Uuid::now_v7().to_string());
        let reply = send_with(&alice, &id, "a0", &[&unknown]).await;
        assert_eq!(reply["error"]["field"], "attachment_ids[0]", "{reply}");
        let reply = send_with(&alice, &id, "a0", &[&a["id"], &a["id"]]).await;
        assert_eq!(reply["error"]["code"], "invalid_payload", "listed twice: {reply}");
        let many: Vec<Value> = (0..11).map(|_| json!(uuid::Uuid::now_v7().to_string())).collect();
        let reply = alice
            .emit_with_ack("message:send", json!({ "conversation_id": id, "client_id": "a0", "body": "x", "attachment_ids": many }))
            .await
            .unwrap();
        assert_eq!(reply["error"]["code"], "too_large", "{reply}");

        let reply = send_with(&alice, &id, "a1", &[&a["id"]]).await;
        assert_eq!(reply["ok"], true, "{reply}");
        let message = reply["data"]["message"].clone();
        // A retry of that send is answered with it, not refused for reusing the attachment.
        let retry = send_with(&alice, &id, "a1", &[&a["id"]]).await;
        assert_eq!(retry["data"]["message"], message, "{retry}");
        // Another message can't take it again.
        let reply = send_with(&alice, &id, "a2", &[&a["id"]]).await;
        assert_eq!(reply["error"]["field"], "attachment_ids[0]", "{reply}");
        // Nothing was stored for the refused sends: seqs have no gap.
        let ok = send(&alice, &id, "a3", "after").await;
        assert_eq!(ok["seq"], 2);
    }

    async fn only_members_download(app: TestApp) {
        let alice_token = app.token("alice");
        let alice = app.connect("alice").await;
        let id = group(&alice, "t", &["bob"]).await;
        let a = uploaded(&app, &alice_token, "image/png", png(10)).await;
        let path = format!("/api/attachments/{}", a["id"].as_str().unwrap());
        // Unsent: the uploader's alone.
        assert_eq!(get(&app, &path, Some(&alice_token), &[]).await.status(), 200);
        assert_eq!(get(&app, &path, Some(&app.token("bob")), &[]).await.status(), 404);
        send_with(&alice, &id, "a1", &[&a["id"]]).await;
        assert_eq!(get(&app, &path, Some(&app.token("bob")), &[]).await.status(), 200);
        // Strangers get what a missing attachment gets.
        let mallory = app.token("mallory");
        let response = get(&app, &path, Some(&mallory), &[]).await;
        assert_eq!(response.status(), 404);
        let missing = get(&app, &format!("/api/attachments/{}", uuid::Uuid::now_v7()), Some(&mallory), &[]).await;
        assert_eq!(missing.status(), 404);
        assert_eq!(response.text().await.unwrap(), missing.text().await.unwrap());
        assert_eq!(get(&app, &format!("{path}/link"), Some(&mallory), &[]).await.status(), 404);
        assert_eq!(get(&app, &path, None, &[]).await.status(), 401);
        assert_eq!(get(&app, "/api/attachments/not-an-id", Some(&mallory), &[]).await.status(), 400);
        // A member who is removed loses access.
        alice.ok("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["bob"] })).await;
        assert_eq!(get(&app, &path, Some(&app.token("bob")), &[]).await.status(), 404);
    }

    async fn ranges_are_served(app: TestApp) {
        let token = app.token("alice");
        let bytes = png(5000);
        let a = uploaded(&app, &token, "image/png", bytes.clone()).await;
        let path = format!("/api/attachments/{}", a["id"].as_str().unwrap());
        let r = get(&app, &path, Some(&token), &[("range", "bytes=0-3")]).await;
        assert_eq!(r.status(), 206);
        assert_eq!(header(&r, "content-range"), format!("bytes 0-3/{}", bytes.len()));
        assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[..4]);
        let r = get(&app, &path, Some(&token), &[("range", "bytes=-10")]).await;
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[bytes.len() - 10..]);
        let r = get(&app, &path, Some(&token), &[("range", "bytes=100-199")]).await;
        assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[100..200]);
        let r = get(&app, &path, Some(&token), &[("range", &format!("bytes={}-", bytes.len()))]).await;
        assert_eq!(r.status(), 416);
        assert_eq!(header(&r, "content-range"), format!("bytes */{}", bytes.len()));
        // Several ranges: the whole file, as HTTP allows.
        let r = get(&app, &path, Some(&token), &[("range", "bytes=0-1,5-6")]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), bytes.len());
    }

    async fn signed_links_work_without_a_token_until_they_expire(app: TestApp) {
        let alice = app.connect("alice").await;
        let id = group(&alice, "t", &["bob"]).await;
        let bytes = png(100);
        let a = uploaded(&app, &app.token("alice"), "image/png", bytes.clone()).await;
        send_with(&alice, &id, "a1", &[&a["id"]]).await;
        let path = format!("/api/attachments/{}", a["id"].as_str().unwrap());
        let response = get(&app, &format!("{path}/link"), Some(&app.token("bob")), &[]).await;
        assert_eq!(response.status(), 200);
        let link: Value = response.json().await.unwrap();
        let url = link["data"]["url"].as_str().unwrap().to_owned();
        assert!(url.starts_with(&path), "{url}");
        assert!(link["data"]["expires_at"].is_string());
        let r = get(&app, &url, None, &[]).await;
        assert_eq!(r.status(), 200);
        assert!(header(&r, "cache-control").contains("max-age="), "{:?}", r.headers());
        assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
        // Tampered: another user, another attachment, another expiry, another signature.
        let tampered = [
            url.replace("u=bob", "u=mallory"),
            url.replace(a["id"].as_str().unwrap(), &uuid::Uuid::now_v7().to_string()),
            url.replace("exp=", "exp=9"),
            // The signature's last digit changed (to another digit than it was).
            format!("{}{}", &url[..url.len() - 1], if url.ends_with('0') { '1' } else { '0' }),
        ];
        for bad in tampered {
            let status = get(&app, &bad, None, &[]).await.status();
            assert!(status == 401 || status == 404, "{bad}: {status}");
        }
        // A link made for bob stops working once bob is no longer a member.
        alice.ok("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["bob"] })).await;
        assert_eq!(get(&app, &url, None, &[]).await.status(), 404);
    }

    async fn deleting_a_message_deletes_its_files(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "t", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        let a = uploaded(&app, &app.token("alice"), "image/png", png(100)).await;
        let reply = send_with(&alice, &id, "a1", &[&a["id"]]).await;
        expect(&mut bob, "message:new").await;
        assert_eq!(stored_files(&app), 1);
        let message_id = reply["data"]["message"]["id"].clone();
        let deleted = alice.ok("message:delete", json!({ "conversation_id": id, "message_id": message_id })).await;
        assert!(deleted["message"].get("attachments").is_none(), "{deleted}");
        let updated = expect(&mut bob, "message:updated").await;
        assert!(updated["message"].get("attachments").is_none(), "{updated}");
        let path = format!("/api/attachments/{}", a["id"].as_str().unwrap());
        assert_eq!(get(&app, &path, Some(&app.token("bob")), &[]).await.status(), 404);
        assert_eq!(get(&app, &path, Some(&app.token("alice")), &[]).await.status(), 404);
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        while stored_files(&app) > 0 {
            assert!(tokio::time::Instant::now() < deadline, "the file outlived its message");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The size limit holds while the upload streams: a body without a length is cut off once it
/// passes the limit, and a declared length over it is refused before the body is read.
#[tokio::test]
async fn oversize_uploads_are_refused_as_they_stream() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("CONFAB_MAX_ATTACHMENT_BYTES", "100000")],
    )
    .await
    .unwrap();
    let token = app.token("alice");
    // Exactly the limit is fine.
    let (status, body) = upload(&app, &token, "image/png", None, png(100_000 - 33)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = upload(&app, &token, "image/png", None, png(100_000)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");

    // Chunked, with no length: 8 MiB offered, refused once past 100 KB.
    let (answer, sent) = chunked_upload(&app, &token, 128).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(sent < 8 * 1024 * 1024, "the server read all {sent} bytes");
    assert_eq!(
        stored_files(&app),
        1,
        "only the upload within the limit is kept"
    );

    // A declared length over the limit: refused at once.
    let r = reqwest::Client::new()
        .post(format!("{}/api/attachments", app.url))
        .bearer_auth(&token)
        .header("content-type", "image/png")
        .body(png(200_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

/// A browser's form upload: `multipart/form-data` with the file in a `file` field.
#[tokio::test]
async fn multipart_forms_upload_their_file() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let boundary = "----confabtestboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../holiday.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    let bytes = png(3000);
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let token = app.token("alice");
    let r = reqwest::Client::new()
        .post(format!("{}/api/attachments", app.url))
        .bearer_auth(&token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let answer: Value = r.json().await.unwrap();
    let a = &answer["data"]["attachment"];
    assert_eq!(a["name"], "holiday.png", "only the last path component");
    assert_eq!(a["size"], bytes.len());
    let r = get(
        &app,
        &format!("/api/attachments/{}", a["id"].as_str().unwrap()),
        Some(&token),
        &[],
    )
    .await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn uploads_are_rate_limited_per_user() {
    let app = spawn_app_with(Backend::Sqlite, &[("CONFAB_RATE_UPLOAD", "1/2")])
        .await
        .unwrap();
    let alice = app.token("alice");
    for _ in 0..2 {
        uploaded(&app, &alice, "image/png", png(10)).await;
    }
    let (status, body) = upload(&app, &alice, "image/png", None, png(10)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["retry_after_ms"].as_u64().is_some());
    // Another user is unaffected.
    uploaded(&app, &app.token("bob"), "image/png", png(10)).await;
}

/// Uploads never sent are deleted after a while, bytes and all.
#[tokio::test]
async fn unsent_uploads_are_swept() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("CONFAB_UNSENT_ATTACHMENT_TTL_SECS", "1"),
            ("CONFAB_ATTACHMENT_SWEEP_SECS", "1"),
        ],
    )
    .await
    .unwrap();
    let token = app.token("alice");
    let a = uploaded(&app, &token, "image/png", png(10)).await;
    assert_eq!(stored_files(&app), 1);
    let path = format!("/api/attachments/{}", a["id"].as_str().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored_files(&app) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unsent upload was never swept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(&app, &path, Some(&token), &[]).await.status(), 404);
    // And it can no longer be sent.
    let alice = app.connect("alice").await;
    let id = group(&alice, "t", &[]).await;
    let reply = send_with(&alice, &id, "a1", &[&a["id"]]).await;
    assert_eq!(reply["error"]["field"], "attachment_ids[0]", "{reply}");
}

/// Offers `chunks` × 64 KiB of PNG as a chunked upload with no length; returns the head of the
/// answer and how many bytes were sent before the server stopped taking them.
async fn chunked_upload(app: &TestApp, token: &str, chunks: usize) -> (String, usize) {
    let addr = app.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/attachments HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let chunk = png(64 * 1024);
        let mut sent = 0usize;
        for _ in 0..chunks {
            let frame = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk.clone(),
                b"\r\n".to_vec(),
            ]
            .concat();
            if writer.write_all(&frame).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(20), reader.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            other => panic!("no answer to the chunked upload: {other:?}"),
        }
    }
    drop(reader);
    let sent = sender.await.unwrap();
    (String::from_utf8_lossy(&answer).into_owned(), sent)
}

/// moto's S3 server on a free loopback port, stopped when dropped.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moto_server` (`pip install 'moto[server]'`); `None` outside CI when it isn't installed.
async fn moto() -> Option<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = match std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if !services_required() => {
            eprintln!("moto_server is not installed ({e}); skipping the S3 test");
            return None;
        }
        Err(e) => panic!("moto_server (pip install 'moto[server]') is required in CI: {e}"),
    };
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(&moto.endpoint).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "moto_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(moto)
}

impl Moto {
    /// How many keys `bucket` holds under `prefix`, and how many multipart uploads are open.
    async fn list(&self, bucket: &str, prefix: &str) -> (usize, usize) {
        let keys = reqwest::get(format!(
            "{}/{bucket}?list-type=2&prefix={prefix}",
            self.endpoint
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        let uploads = reqwest::get(format!("{}/{bucket}?uploads", self.endpoint))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (
            keys.matches("<Key>").count(),
            uploads.matches("<UploadId>").count(),
        )
    }
}

/// Several nodes share their attachments in S3-compatible storage: here moto's server, a real
/// S3 API on loopback. Multipart uploads, ranges, an upload refused midway that leaves nothing,
/// another node serving the same file, and a deleted message's file removed from the bucket.
#[tokio::test]
async fn attachments_are_kept_in_s3_compatible_storage() {
    let Some(moto) = moto().await else {
        return;
    };
    let bucket = "confab-test";
    let created = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{created:?}");
    let dir = tempfile::tempdir().unwrap();
    let database = shared_database(Backend::Sqlite, dir.path()).await.unwrap();
    let settings = [
        ("CONFAB_DATABASE_URL", database.as_str()),
        ("CONFAB_ATTACHMENTS_URL", "s3://confab-test/uploads"),
        ("AWS_ENDPOINT", moto.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("CONFAB_MAX_ATTACHMENT_BYTES", "7000000"),
    ];
    let app = spawn_app_with(Backend::Sqlite, &settings).await.unwrap();
    let token = app.token("alice");
    // Over one 5 MiB part: a real multipart upload.
    let big = png(6_000_000);
    let a = uploaded(&app, &token, "image/png", big.clone()).await;
    let small = uploaded(&app, &token, "text/plain", b"notes".to_vec()).await;
    assert_eq!(moto.list(bucket, "uploads/").await, (2, 0));
    assert_eq!(stored_files(&app), 0, "nothing on local disk");

    let path = format!("/api/attachments/{}", a["id"].as_str().unwrap());
    let r = get(
        &app,
        &path,
        Some(&token),
        &[("range", "bytes=5999000-5999099")],
    )
    .await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &big[5999000..5999100]);

    // Another node on the same bucket and database serves it too.
    let other = app.with(&settings).await;
    let r = get(&other, &path, Some(&token), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), big.as_slice());

    // Past the limit as it streams (after a part went to S3): the multipart upload is
    // aborted, and nothing stays.
    let (answer, _) = chunked_upload(&app, &token, 160).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(moto.list(bucket, "uploads/").await, (2, 0));

    let alice = app.connect("alice").await;
    let id = group(&alice, "t", &[]).await;
    let reply = send_with(&alice, &id, "a1", &[&small["id"]]).await;
    let message_id = reply["data"]["message"]["id"].clone();
    alice
        .ok(
            "message:delete",
            json!({ "conversation_id": id, "message_id": message_id }),
        )
        .await;
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    while moto.list(bucket, "uploads/").await.0 > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted message's file is still in the bucket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
