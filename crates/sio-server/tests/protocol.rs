//! The server's protocol behaviour, checked with raw HTTP requests and WebSocket frames.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Server, get, post, raw_http};
use confab_sio::{Config, DisconnectReason};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::{WebSocketStream, client_async};

type Ws = WebSocketStream<TcpStream>;

const POLLING: &str = "/socket.io/?EIO=4&transport=polling";

async fn ws_open(server: &Server, query: &str) -> Ws {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket{query}",
        server.addr
    );
    client_async(url, stream)
        .await
        .expect("WebSocket handshake")
        .0
}

/// The next text message (pings are answered).
async fn recv_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the connection is open")
            .expect("a valid frame");
        match msg {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).await.unwrap(),
            Message::Text(t) => return t.as_str().to_owned(),
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Reads until the server closes; returns the close code, if it sent a close frame.
async fn closed(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("closed within 5 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// A WebSocket connected to `/` with the given auth name.
async fn ws_connected(server: &Server, name: &str) -> Ws {
    let mut ws = ws_open(server, "").await;
    assert!(recv_text(&mut ws).await.starts_with("0{"));
    ws.send(Message::text(format!(
        r#"40{{"token":"ok","name":"{name}"}}"#
    )))
    .await
    .unwrap();
    assert!(recv_text(&mut ws).await.starts_with(r#"40{"sid":""#));
    ws
}

/// The sid of a polling handshake's open packet.
fn sid_of(open: &common::RawResponse) -> String {
    assert_eq!(open.status, 200, "{}", open.text());
    let handshake: Value = serde_json::from_str(&open.text()[1..]).unwrap();
    handshake["sid"].as_str().unwrap().to_owned()
}

/// A `GET` waiting on a polling session, and a WebSocket opened to upgrade it.
async fn start_upgrade(
    server: &Server,
    sid: &str,
) -> (tokio::task::JoinHandle<common::RawResponse>, Ws) {
    let addr = server.addr;
    let url = format!("{POLLING}&sid={sid}");
    let pending = tokio::spawn(async move { get(addr, &url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    (pending, ws_open(server, &format!("&sid={sid}")).await)
}

/// Asserts that a polling session no longer exists.
async fn assert_gone(server: &Server, sid: &str) {
    let answer = get(server.addr, &format!("{POLLING}&sid={sid}")).await;
    assert_eq!(answer.status, 400, "session {sid}: {}", answer.text());
}

/// A polling session, not connected.
async fn polling_session(server: &Server) -> String {
    sid_of(&get(server.addr, POLLING).await)
}

async fn polling_open(server: &Server, name: &str) -> String {
    let sid = polling_session(server).await;
    let body = format!(r#"40{{"token":"ok","name":"{name}"}}"#);
    assert_eq!(
        post(
            server.addr,
            &format!("{POLLING}&sid={sid}"),
            body.as_bytes()
        )
        .await
        .text(),
        "ok"
    );
    let connected = get(server.addr, &format!("{POLLING}&sid={sid}")).await;
    assert!(
        connected.text().starts_with(r#"40{"sid":""#),
        "{}",
        connected.text()
    );
    sid
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn engine_errors_are_answered_with_the_engine_io_json() {
    let server = Server::start(Config::default()).await;
    let cases = [
        (
            format!("{POLLING}&sid=aaaaaaaaaaaaaaaaaaaa"),
            r#"{"code":1,"message":"Session ID unknown"}"#,
        ),
        (
            format!("{POLLING}&sid=not-a-sid"),
            r#"{"code":1,"message":"Session ID unknown"}"#,
        ),
        (
            "/socket.io/?EIO=3&transport=polling".into(),
            r#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
        (
            "/socket.io/?transport=polling".into(),
            r#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
        (
            "/socket.io/?EIO=4&transport=tobi".into(),
            r#"{"code":0,"message":"Transport unknown"}"#,
        ),
        (
            "/socket.io/?EIO=4".into(),
            r#"{"code":0,"message":"Transport unknown"}"#,
        ),
    ];
    for (path, body) in cases {
        let response = get(server.addr, &path).await;
        assert_eq!((response.status, response.text()), (400, body), "{path}");
        assert_eq!(response.header("content-type"), Some("application/json"));
    }
    let response = post(server.addr, POLLING, b"").await;
    assert_eq!(
        (response.status, response.text()),
        (400, r#"{"code":2,"message":"Bad handshake method"}"#)
    );
    // Other paths belong to the application.
    assert_eq!(get(server.addr, "/healthz").await.text(), "ok");
    assert_eq!(get(server.addr, "/nope").await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn polling_carries_events_acks_and_binary_attachments() {
    let server = Server::start(Config::default()).await;
    let open = get(server.addr, POLLING).await;
    let handshake: Value = serde_json::from_str(&open.text()[1..]).unwrap();
    assert_eq!(handshake["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(handshake["pingInterval"], 25000);
    assert_eq!(handshake["pingTimeout"], 20000);
    assert_eq!(handshake["maxPayload"], 65536);

    let sid = polling_open(&server, "polling").await;
    let url = format!("{POLLING}&sid={sid}");
    assert_eq!(
        post(server.addr, &url, b"42[\"echo\",1]\x1e427[\"echo\",2]")
            .await
            .text(),
        "ok"
    );
    assert_eq!(
        get(server.addr, &url).await.text(),
        "42[\"echo\",1]\x1e42[\"echo\",2]\x1e437[2]"
    );

    let binary = b"451-[\"echo\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID";
    assert_eq!(post(server.addr, &url, binary).await.text(), "ok");
    let echoed = get(server.addr, &url).await;
    assert_eq!(echoed.body, binary.to_vec());
    assert_eq!(
        echoed.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );

    // A body just under maxPayload (64 KiB) passes, however hyper buffers it.
    let large = format!("42[\"echo\",\"{}\"]", "y".repeat(60_000));
    assert_eq!(post(server.addr, &url, large.as_bytes()).await.text(), "ok");
    assert_eq!(get(server.addr, &url).await.body, large.into_bytes());
    server.stop().await;
}

#[tokio::test]
async fn a_second_concurrent_get_closes_the_session() {
    let server = Server::start(Config::default()).await;
    let sid = polling_open(&server, "overlap").await;
    let url = format!("{POLLING}&sid={sid}");
    let addr = server.addr;
    let first = tokio::spawn({
        let url = url.clone();
        async move { get(addr, &url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(addr, &url).await.status, 400);
    let first = first.await.unwrap();
    assert_eq!((first.status, first.text()), (200, "1"));
    assert_eq!(get(addr, &url).await.status, 400);
    assert_eq!(
        server.records().disconnects["overlap"],
        vec![DisconnectReason::TransportError]
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_and_malformed_polling_bodies_close_the_session() {
    let server = Server::start(Config {
        max_payload: 1000,
        ..Config::default()
    })
    .await;
    let sid = polling_open(&server, "big").await;
    let url = format!("{POLLING}&sid={sid}");
    let big = format!("42[\"echo\",\"{}\"]", "x".repeat(2000));
    assert_eq!(post(server.addr, &url, big.as_bytes()).await.status, 413);
    assert_eq!(get(server.addr, &url).await.status, 400);
    assert_eq!(
        server.records().disconnects["big"],
        vec![DisconnectReason::TransportError]
    );
    assert!(!server.records().events.contains_key("big"));

    let sid = polling_open(&server, "garbage").await;
    let url = format!("{POLLING}&sid={sid}");
    assert_eq!(post(server.addr, &url, b"abc").await.status, 400);
    assert_eq!(get(server.addr, &url).await.status, 400);
    assert_eq!(
        server.records().disconnects["garbage"],
        vec![DisconnectReason::ParseError]
    );
    server.stop().await;
}

#[tokio::test]
async fn requests_are_screened_and_cors_headers_added() {
    let server = Server::start(Config::default()).await;
    let evil = "origin: http://evil.example\r\n";
    let refused = raw_http(
        server.addr,
        format!("GET {POLLING} HTTP/1.1\r\nhost: t\r\n{evil}connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.text(), r#"{"code":"forbidden","reason":"origin"}"#);

    // The direct WebSocket path answers the refusal on the raw stream.
    let handshake = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: t\r\n{evil}upgrade: websocket\r\n\
         connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let refused = raw_http(server.addr, handshake.as_bytes()).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.text(), r#"{"code":"forbidden","reason":"origin"}"#);

    let preflight = |origin: &str| {
        format!(
            "OPTIONS {POLLING} HTTP/1.1\r\nhost: t\r\norigin: {origin}\r\n\
             access-control-request-method: POST\r\nconnection: close\r\n\r\n"
        )
    };
    assert_eq!(
        raw_http(server.addr, preflight("http://evil.example").as_bytes())
            .await
            .status,
        403
    );
    let allowed = raw_http(server.addr, preflight("http://app.example").as_bytes()).await;
    assert_eq!(allowed.status, 204);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("http://app.example")
    );

    let good = "origin: http://app.example\r\n";
    let open = raw_http(
        server.addr,
        format!("GET {POLLING} HTTP/1.1\r\nhost: t\r\n{good}connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        open.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    let sid = sid_of(&open);
    // Later requests of the session carry the same headers.
    let later = post(
        server.addr,
        &format!("{POLLING}&sid={sid}"),
        br#"40{"token":"ok"}"#,
    )
    .await;
    assert_eq!(
        later.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    let later = get(server.addr, &format!("{POLLING}&sid={sid}")).await;
    assert_eq!(
        later.header("access-control-allow-credentials"),
        Some("true")
    );
    server.stop().await;
}

#[tokio::test]
async fn admission_refusals_are_answered_and_open_nothing() {
    let server = Server::start(Config::default()).await;
    let no = "x-admit: no\r\n";
    let polling = raw_http(
        server.addr,
        format!("GET {POLLING} HTTP/1.1\r\nhost: t\r\n{no}connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let websocket = raw_http(
        server.addr,
        format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: t\r\n{no}upgrade: websocket\r\n\
             connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    for refused in [polling, websocket] {
        assert_eq!(refused.status, 429);
        assert_eq!(refused.header("retry-after"), Some("7"));
        assert_eq!(refused.text(), r#"{"code":"rate_limited"}"#);
    }
    // A preflight opens nothing, so it is screened (check_request) but not admitted.
    let preflight = raw_http(
        server.addr,
        format!("OPTIONS {POLLING} HTTP/1.1\r\nhost: t\r\n{no}origin: http://app.example\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(server.sio.session_count(), 0);
    assert_eq!(server.sio.handler().pending.load(Ordering::SeqCst), 0);
    server.stop().await;
}

/// A WebSocket whose handshake carries `x-tag: tag`.
async fn ws_open_tagged(server: &Server, tag: &str) -> Ws {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut request = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert("x-tag", tag.parse().unwrap());
    client_async(request, stream).await.unwrap().0
}

#[tokio::test]
async fn a_session_keeps_only_its_admission_value_until_it_connects() {
    let server = Server::start(Config {
        connect_timeout: Duration::from_millis(1000),
        ..Config::default()
    })
    .await;
    let pending = || server.sio.handler().pending.load(Ordering::SeqCst);
    let open = raw_http(
        server.addr,
        format!(
            "GET {POLLING} HTTP/1.1\r\nhost: t\r\nx-tag: from-polling\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let sid = sid_of(&open);
    let mut ws = ws_open_tagged(&server, "from-websocket").await;
    assert!(recv_text(&mut ws).await.starts_with("0{"));
    assert_eq!(pending(), 2);

    // Each CONNECT is handed what its session's request left: the tag, not the request.
    let url = format!("{POLLING}&sid={sid}");
    assert_eq!(
        post(server.addr, &url, br#"40{"token":"ok","name":"p"}"#)
            .await
            .text(),
        "ok"
    );
    assert!(get(server.addr, &url).await.text().starts_with("40{"));
    ws.send(Message::text(r#"40{"token":"ok","name":"w"}"#))
        .await
        .unwrap();
    assert!(recv_text(&mut ws).await.starts_with("40{"));
    assert_eq!(server.records().tags["p"], "from-polling");
    assert_eq!(server.records().tags["w"], "from-websocket");
    // Connected: nothing of the admission is kept.
    eventually("the admission values dropped", || pending() == 0).await;

    // Sessions that never connect keep theirs until the connect timeout closes them, on both transports.
    let sid = polling_session(&server).await;
    let mut silent = ws_open_tagged(&server, "silent").await;
    assert!(recv_text(&mut silent).await.starts_with("0{"));
    assert_eq!(pending(), 2);
    assert_eq!(closed(&mut silent).await, Some(CloseCode::Policy));
    eventually("both closed", || pending() == 0).await;
    assert_gone(&server, &sid).await;
    server.stop().await;
}

#[tokio::test]
async fn the_connect_timeout_holds_across_an_upgrade() {
    let server = Server::start(Config {
        connect_timeout: Duration::from_secs(3),
        ..Config::default()
    })
    .await;
    let opened = std::time::Instant::now();
    let sid = polling_session(&server).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ws = ws_open(&server, &format!("&sid={sid}")).await;
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "3probe");
    ws.send(Message::text("5")).await.unwrap();
    // Never connects: closed 3 s after the session opened, not 3 s after the upgrade.
    assert_eq!(closed(&mut ws).await, Some(CloseCode::Policy));
    let lived = opened.elapsed();
    assert!(
        lived < Duration::from_millis(3700),
        "closed {lived:?} after opening"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_websocket_frame_is_refused_from_its_header() {
    let server = Server::start(Config {
        max_payload: 1000,
        ..Config::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\n\
              connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 4096];
    let n = stream.read(&mut head).await.unwrap();
    let text = String::from_utf8_lossy(&head[..n]);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
    // A binary frame header announcing 1 GiB, and no payload: the server must not wait for (or buffer) it.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 30).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    stream.write_all(&frame).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    // After the open packet: a close frame with 1009 (message too big).
    let close = [0x88, 0x02, 0x03, 0xF1];
    assert!(
        rest.windows(4).any(|w| w == close),
        "no 1009 close frame in {rest:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn events_before_the_connect_completes_are_dropped() {
    let server = Server::start(Config::default()).await;
    let mut ws = ws_open(&server, "").await;
    assert!(recv_text(&mut ws).await.starts_with("0{"));
    ws.send(Message::text(r#"42["echo","before connect"]"#))
        .await
        .unwrap();
    // A connect that takes 300 ms: events meanwhile are dropped too.
    ws.send(Message::text(r#"40{"token":"slow","name":"early"}"#))
        .await
        .unwrap();
    ws.send(Message::text(r#"42["echo","while connecting"]"#))
        .await
        .unwrap();
    assert!(recv_text(&mut ws).await.starts_with(r#"40{"sid":""#));
    ws.send(Message::text(r#"42["echo","connected"]"#))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut ws).await, r#"42["echo","connected"]"#);
    assert_eq!(server.records().events["early"], vec!["echo"]);
    server.stop().await;
}

#[tokio::test]
async fn packets_sent_during_the_connect_follow_its_answer() {
    let server = Server::start(Config::default()).await;
    let mut ws = ws_open(&server, "").await;
    assert!(recv_text(&mut ws).await.starts_with("0{"));
    ws.send(Message::text(r#"40{"token":"greet","name":"greeted"}"#))
        .await
        .unwrap();
    let first = recv_text(&mut ws).await;
    assert!(first.starts_with(r#"40{"sid":""#), "{first}");
    assert_eq!(recv_text(&mut ws).await, r#"42["greeting","hello"]"#);
    server.stop().await;
}

#[tokio::test]
async fn malformed_socket_io_packets_close_the_connection() {
    let server = Server::start(Config::default()).await;
    for (name, bad) in [
        ("bad-json", r#"42["echo""#),
        ("reserved", r#"42["disconnect"]"#),
        ("type", "49"),
    ] {
        let mut ws = ws_connected(&server, name).await;
        ws.send(Message::text(bad)).await.unwrap();
        closed(&mut ws).await;
        eventually(name, || server.records().disconnects.contains_key(name)).await;
        assert_eq!(
            server.records().disconnects[name],
            vec![DisconnectReason::ParseError],
            "{name}"
        );
    }
    // Too many attachments, and an attachment nobody announced.
    let mut ws = ws_connected(&server, "attachments").await;
    ws.send(Message::text(r#"4599-["echo"]"#)).await.unwrap();
    closed(&mut ws).await;
    let mut ws = ws_connected(&server, "stray-binary").await;
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    closed(&mut ws).await;
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_namespace_is_refused_once_and_the_connection_closed() {
    let server = Server::start(Config::default()).await;
    // Connected to `/`, then asking for another namespace, twice in a row.
    let mut ws = ws_connected(&server, "namespaces").await;
    ws.send(Message::text("40/admin,")).await.unwrap();
    ws.send(Message::text("40/admin,")).await.unwrap();
    assert_eq!(
        recv_text(&mut ws).await,
        r#"44/admin,{"message":"Invalid namespace"}"#
    );
    assert_eq!(closed(&mut ws).await, Some(CloseCode::Normal));
    eventually("the disconnect", || {
        server.records().disconnects.contains_key("namespaces")
    })
    .await;
    assert_eq!(
        server.records().disconnects["namespaces"],
        vec![DisconnectReason::ParseError]
    );
    // Not connected at all.
    let mut ws = ws_open(&server, "").await;
    assert!(recv_text(&mut ws).await.starts_with("0{"));
    ws.send(Message::text("40/x,")).await.unwrap();
    assert_eq!(
        recv_text(&mut ws).await,
        r#"44/x,{"message":"Invalid namespace"}"#
    );
    assert_eq!(closed(&mut ws).await, Some(CloseCode::Normal));
    // Over polling, a body full of them gets one answer, then the close packet in the next
    // response (in the same one, the official client would act on the close first).
    let sid = polling_session(&server).await;
    let url = format!("{POLLING}&sid={sid}");
    let body = vec!["40/a,"; 10_000].join("\x1e");
    assert_eq!(post(server.addr, &url, body.as_bytes()).await.text(), "ok");
    assert_eq!(
        get(server.addr, &url).await.text(),
        "44/a,{\"message\":\"Invalid namespace\"}"
    );
    assert_eq!(get(server.addr, &url).await.text(), "1");
    assert_eq!(
        get(server.addr, &url).await.status,
        400,
        "the session is gone"
    );
    eventually("no session left", || server.sio.session_count() == 0).await;
    server.stop().await;
}

/// The official client probes a WebSocket upgrade as soon as the session opens, while its first
/// `CONNECT` goes out in a `POST`. A refusal queued for the polling side must survive a probe that
/// comes before the `GET` that takes it: the probe is turned away, the session is not ended.
#[tokio::test]
async fn a_probe_of_a_closing_session_does_not_lose_the_refusal() {
    let server = Server::start(Config::default()).await;
    let sid = polling_session(&server).await;
    let url = format!("{POLLING}&sid={sid}");
    assert_eq!(post(server.addr, &url, b"40/other,").await.text(), "ok");
    let mut ws = ws_open(&server, &format!("&sid={sid}")).await;
    ws.send(Message::text("2probe")).await.unwrap();
    // No upgrade of a session that is closing: the WebSocket is closed, with no `3probe`.
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Close(frame)))) => {
            assert_eq!(frame.map(|f| f.code), Some(CloseCode::Away))
        }
        other => panic!("expected the WebSocket closed, got {other:?}"),
    }
    assert_eq!(
        get(server.addr, &url).await.text(),
        r#"44/other,{"message":"Invalid namespace"}"#
    );
    assert_eq!(get(server.addr, &url).await.text(), "1");
    assert_gone(&server, &sid).await;
    server.stop().await;
}

#[tokio::test]
async fn repeated_probes_queue_one_noop() {
    let server = Server::start(Config::default()).await;
    let sid = polling_open(&server, "prober").await;
    let url = format!("{POLLING}&sid={sid}");
    let addr = server.addr;
    let (pending, mut ws) = start_upgrade(&server, &sid).await;
    for _ in 0..100 {
        ws.send(Message::text("2probe")).await.unwrap();
    }
    for _ in 0..100 {
        assert_eq!(recv_text(&mut ws).await, "3probe");
    }
    assert_eq!(pending.await.unwrap().text(), "6");
    // Nothing else was queued for the polling side: the next GET carries only the application's packet.
    assert_eq!(
        post(addr, &url, br#"42["echo","after"]"#).await.text(),
        "ok"
    );
    assert_eq!(get(addr, &url).await.text(), r#"42["echo","after"]"#);
    // Shutting down ends the polling session, and so the WebSocket still probing it.
    server.stop().await;
    assert_eq!(closed(&mut ws).await, Some(CloseCode::Away));
}

#[tokio::test]
async fn a_probing_websocket_ends_with_its_polling_session() {
    let server = Server::start(Config {
        connect_timeout: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    let sid = polling_session(&server).await;
    let started = std::time::Instant::now();
    let mut ws = ws_open(&server, &format!("&sid={sid}")).await;
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "3probe");
    // Never upgrades nor connects: the session's connect timeout ends it, and the probe with it (not
    // the upgrade timeout, 10 s later).
    assert_eq!(closed(&mut ws).await, Some(CloseCode::Away));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_paused_then_disconnected() {
    let bound = 64 * 1024;
    let config = Config {
        max_queued_bytes: bound,
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let server = Server::start(config).await;
    let mut ws = ws_connected(&server, "deaf").await;
    // Never reads; floods echo requests and answers pings blindly, so only paused reads can end it.
    let event = format!(r#"42["echo","{}"]"#, "x".repeat(10_000));
    let flood = async {
        for i in 0u64.. {
            if ws.send(Message::text(event.clone())).await.is_err() {
                return i;
            }
            if i % 4 == 0 && ws.send(Message::text("3")).await.is_err() {
                return i;
            }
        }
        unreachable!()
    };
    let sent = tokio::time::timeout(Duration::from_secs(20), flood).await;
    let sent = match sent {
        Ok(sent) => sent,
        // Writes stalled for good (the server stopped reading and has not closed), or never did.
        Err(_) => {
            let records = server.records();
            panic!(
                "the connection is still open after 20 s; the server read {:?} echo requests, its queue peaked at {} bytes",
                records.events.get("deaf").map(Vec::len),
                records.max_queued_bytes
            )
        }
    };
    eventually("the disconnect", || {
        server.records().disconnects.contains_key("deaf")
    })
    .await;
    assert_eq!(
        server.records().disconnects["deaf"],
        vec![DisconnectReason::PingTimeout]
    );
    let read = server.records().events["deaf"].len() as u64;
    let most = server.records().max_queued_bytes;
    eprintln!("sent {sent} echo requests, the server read {read}; queue peaked at {most} bytes");
    assert!(read < sent, "the server stopped reading: {read} of {sent}");
    // The bound, plus the one packet that may overshoot it.
    assert!(
        most <= bound + 10_100,
        "the queue held {most} bytes (bound {bound})"
    );
    server.stop().await;
}

#[tokio::test]
async fn replies_a_client_never_fetches_close_the_session_at_the_bound() {
    // A long connect timeout, so that only the bound can end the session.
    let server = Server::start(Config {
        connect_timeout: Duration::from_secs(60),
        ..Config::default()
    })
    .await;
    // A polling session that never connects and never polls, and asks to connect again and again: each
    // refusal (`44…`) is queued until its bytes pass the bound for unconnected sessions.
    let sid = polling_session(&server).await;
    let url = format!("{POLLING}&sid={sid}");
    let mut posts = 0;
    while posts < 5_000 {
        let answer = post(server.addr, &url, br#"40{"name":"refused"}"#).await;
        if answer.status != 200 {
            break;
        }
        posts += 1;
    }
    eprintln!("{posts} refused CONNECTs before the session was closed");
    assert!(posts < 5_000, "the session was never closed");
    // About 64 KiB of refusals (each some 140 bytes with its queue slot), not fewer: the bound is what
    // closed it.
    assert!(posts >= 400, "closed after only {posts} refusals");
    assert_eq!(get(server.addr, &url).await.status, 400);
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_still_closes_the_session() {
    let server = Server::start(Config::default()).await;
    let mut ws = ws_connected(&server, "panicky").await;
    ws.send(Message::text(r#"42["panic"]"#)).await.unwrap();
    closed(&mut ws).await;
    eventually("the disconnect", || {
        server.records().disconnects.contains_key("panicky")
    })
    .await;
    assert_eq!(
        server.records().disconnects["panicky"],
        vec![DisconnectReason::TransportError]
    );
    assert_eq!(server.sio.session_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn quiet_clients_are_closed_by_the_connect_and_ping_timeouts() {
    let config = Config {
        connect_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let server = Server::start(config).await;
    // No CONNECT at all.
    let mut ws = ws_open(&server, "").await;
    assert!(recv_text(&mut ws).await.starts_with("0{"));
    closed(&mut ws).await;

    // Connected, but pings go unanswered: read raw, never reply.
    let mut ws = ws_open(&server, "").await;
    ws.send(Message::text(r#"40{"token":"ok","name":"silent"}"#))
        .await
        .unwrap();
    let mut saw_ping = false;
    while let Some(Ok(msg)) = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
    {
        saw_ping |= msg.to_text().ok() == Some("2");
    }
    assert!(saw_ping);
    eventually("the ping timeout", || {
        server.records().disconnects.contains_key("silent")
    })
    .await;
    assert_eq!(
        server.records().disconnects["silent"],
        vec![DisconnectReason::PingTimeout]
    );

    // A polling client that stops polling.
    let sid = polling_open(&server, "gone").await;
    eventually("the polling ping timeout", || {
        server.records().disconnects.contains_key("gone")
    })
    .await;
    assert_eq!(
        server.records().disconnects["gone"],
        vec![DisconnectReason::PingTimeout]
    );
    assert_gone(&server, &sid).await;
    server.stop().await;
}

#[tokio::test]
async fn polling_upgrades_to_websocket_with_probe_and_noop() {
    let server = Server::start(Config::default()).await;
    let sid = polling_open(&server, "upgrader").await;
    let url = format!("{POLLING}&sid={sid}");
    let addr = server.addr;
    let (pending, mut ws) = start_upgrade(&server, &sid).await;
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "3probe");
    assert_eq!(
        pending.await.unwrap().text(),
        "6",
        "the pending GET ends with a noop"
    );
    // Queued during the upgrade: delivered over the WebSocket once it completes.
    assert_eq!(
        post(addr, &url, br#"42["echo","buffered"]"#).await.text(),
        "ok"
    );
    ws.send(Message::text("5")).await.unwrap();
    assert_eq!(recv_text(&mut ws).await, r#"42["echo","buffered"]"#);
    ws.send(Message::text(r#"42["echo","upgraded"]"#))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut ws).await, r#"42["echo","upgraded"]"#);
    assert_eq!(
        get(addr, &url).await.status,
        400,
        "polling is over for this session"
    );
    // A second WebSocket for the session: "the server MUST close the WebSocket connection" (the
    // reference server accepts the handshake, then closes it); the session goes on untouched.
    let mut again = ws_open(&server, &format!("&sid={sid}")).await;
    assert_eq!(closed(&mut again).await, Some(CloseCode::Policy));
    ws.send(Message::text(r#"42["echo","still here"]"#))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut ws).await, r#"42["echo","still here"]"#);
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_on_a_keep_alive_connection_goes_through_hyper() {
    let server = Server::start(Config::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("\r\n\r\nok"));
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let (mut ws, _) = client_async(url, stream).await.unwrap();
    assert!(recv_text(&mut ws).await.starts_with("0{"));
    ws.send(Message::text(r#"40{"token":"ok","name":"keep-alive"}"#))
        .await
        .unwrap();
    assert!(recv_text(&mut ws).await.starts_with("40{"));
    ws.send(Message::text(r#"42["echo",{"via":"hyper"}]"#))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut ws).await, r#"42["echo",{"via":"hyper"}]"#);
    server.stop().await;
}

/// A WebSocket opened by hand, for frames a library client won't send. Returns the stream after the 101.
async fn raw_ws(server: &Server, query: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /socket.io/?EIO=4&transport=websocket{query} HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\n\
                 connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "the 101 head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A masked client close frame with any payload, encoded by tungstenite.
fn client_close_frame(payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        opcode: OpCode::Control(Control::Close),
        mask: Some([0x12, 0x34, 0x56, 0x78]),
        ..FrameHeader::default()
    };
    let mut out = Vec::new();
    Frame::from_payload(header, payload.to_vec().into())
        .format(&mut out)
        .unwrap();
    out
}

/// A server frame: opcode and payload.
async fn server_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.ok()?;
    let len = match head[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            stream.read_exact(&mut l).await.ok()?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            stream.read_exact(&mut l).await.ok()?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0F, payload))
}

/// Reads server frames until a close frame and returns its status code (`None`: the stream ended first).
async fn server_close_code(stream: &mut TcpStream) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some((opcode, payload)) = server_frame(stream).await {
            if opcode == 0x8 {
                return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
        None
    })
    .await
    .expect("closed within 5 s")
}

#[tokio::test]
async fn close_frames_with_invalid_codes_or_reasons_are_answered_as_rfc_6455_says() {
    let server = Server::start(Config::default()).await;
    let close = |code: u16, reason: &[u8]| [&code.to_be_bytes()[..], reason].concat();
    let cases: [(Vec<u8>, u16); 11] = [
        (close(1000, b"bye"), 1000),
        (close(1001, b""), 1000),
        (close(4000, "é".as_bytes()), 1000),
        (close(1012, b""), 1000),
        // Codes a peer must never send (RFC 6455 section 7.4): a protocol error.
        (close(999, b""), 1002),
        (close(0, b""), 1002),
        (close(1004, b""), 1002),
        (close(1005, b""), 1002),
        (close(1006, b""), 1002),
        (close(2999, b""), 1002),
        (close(5000, b""), 1002),
    ];
    for (payload, expected) in cases {
        let mut ws = raw_ws(&server, "").await;
        ws.write_all(&client_close_frame(&payload)).await.unwrap();
        assert_eq!(
            server_close_code(&mut ws).await,
            Some(expected),
            "close frame {payload:?}"
        );
    }
    // A reason that is not UTF-8: invalid data.
    let mut ws = raw_ws(&server, "").await;
    ws.write_all(&client_close_frame(&close(1000, &[0xff, 0xfe])))
        .await
        .unwrap();
    assert_eq!(server_close_code(&mut ws).await, Some(1007));
    server.stop().await;
}

#[tokio::test]
async fn http_1_0_websocket_upgrades_are_refused() {
    let server = Server::start(Config::default()).await;
    let upgrade = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.0\r\nhost: t\r\nupgrade: websocket\r\n\
                   connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let refused = raw_http(server.addr, upgrade.as_bytes()).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    // The same on a keep-alive connection, where hyper reads the request.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("\r\n\r\nok"));
    stream.write_all(upgrade.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.0 400"),
        "{answer}"
    );
    assert_eq!(server.sio.session_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn request_heads_are_bounded() {
    let server = Server::start(Config::default()).await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(raw_http(server.addr, request.as_bytes()).await.status, 431);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_websockets_so_clients_reconnect() {
    let server = Server::start(Config::default()).await;
    let mut ws = ws_connected(&server, "at-shutdown").await;
    let sio = server.sio.clone();
    let stopping = tokio::spawn(server.stop());
    assert_eq!(closed(&mut ws).await, Some(CloseCode::Away));
    stopping.await.unwrap();
    let records = sio.handler().records.lock().unwrap();
    assert_eq!(
        records.disconnects["at-shutdown"],
        vec![DisconnectReason::ServerShutdown]
    );
    assert_eq!(sio.session_count(), 0);
}

#[tokio::test]
async fn the_engine_mounts_in_a_plain_axum_app() {
    let sio = confab_sio::SocketIo::new(Config::default(), common::TestHandler::default());
    let app = axum::Router::new().route_service("/socket.io/", sio.service());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let open = get(addr, POLLING).await;
    assert_eq!(open.status, 200);
    assert!(open.text().starts_with(r#"0{"sid":""#));
    let stream = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = client_async(url, stream).await.unwrap();
    assert!(recv_text(&mut ws).await.starts_with("0{"));
    ws.send(Message::text(r#"40{"token":"ok","name":"axum"}"#))
        .await
        .unwrap();
    assert!(recv_text(&mut ws).await.starts_with("40{"));
    ws.send(Message::text(r#"421["echo","axum"]"#))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut ws).await, r#"42["echo","axum"]"#);
    assert_eq!(recv_text(&mut ws).await, r#"431["axum"]"#);
}

/// `{type, nsp, data?, id?}` as socket.io-msgpack-parser (notepack.io) writes it.
fn msgpack_packet(kind: u8, data: Option<&rmpv::Value>, id: Option<u64>) -> Vec<u8> {
    let mut map = vec![
        (rmpv::Value::from("type"), rmpv::Value::from(kind)),
        (rmpv::Value::from("nsp"), rmpv::Value::from("/")),
    ];
    if let Some(data) = data {
        map.push((rmpv::Value::from("data"), data.clone()));
    }
    if let Some(id) = id {
        map.push((rmpv::Value::from("id"), rmpv::Value::from(id)));
    }
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &rmpv::Value::Map(map)).unwrap();
    out
}

fn msgpack_field<'a>(packet: &'a rmpv::Value, name: &str) -> Option<&'a rmpv::Value> {
    packet
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

#[tokio::test]
async fn a_msgpack_client_is_recognised_by_its_first_packet_on_both_transports() {
    use base64::Engine as _;
    let server = Server::start(Config::default()).await;
    let auth = rmpv::Value::Map(vec![
        ("token".into(), "ok".into()),
        ("name".into(), "msgpack-raw".into()),
    ]);
    let decode = |bytes: &[u8]| rmpv::decode::read_value(&mut &bytes[..]).unwrap();

    // WebSocket: a binary CONNECT, answered in MessagePack; a binary event with an ack.
    let mut ws = ws_open(&server, "").await;
    assert!(recv_text(&mut ws).await.starts_with("0{"));
    ws.send(Message::binary(msgpack_packet(0, Some(&auth), None)))
        .await
        .unwrap();
    let answer = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => break decode(&b),
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).await.unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(msgpack_field(&answer, "type"), Some(&rmpv::Value::from(0)));
    assert!(msgpack_field(&answer, "data").is_some_and(|d| msgpack_field(d, "sid").is_some()));
    let event = rmpv::Value::Array(vec![
        "echo".into(),
        rmpv::Value::Binary(vec![1, 2, 3]),
        "x".into(),
    ]);
    ws.send(Message::binary(msgpack_packet(2, Some(&event), Some(5))))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => got.push(decode(&b)),
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).await.unwrap(),
            other => panic!("{other:?}"),
        }
    }
    // The echo (an event) and the ack, binary data inline as it came.
    assert_eq!(msgpack_field(&got[0], "data"), Some(&event));
    assert_eq!(msgpack_field(&got[1], "type"), Some(&rmpv::Value::from(3)));
    assert_eq!(msgpack_field(&got[1], "id"), Some(&rmpv::Value::from(5)));
    assert_eq!(
        msgpack_field(&got[1], "data"),
        Some(&rmpv::Value::Array(vec![
            rmpv::Value::Binary(vec![1, 2, 3]),
            "x".into()
        ]))
    );
    // A text Socket.IO packet from a MessagePack client is a protocol error.
    ws.send(Message::text(r#"42["echo"]"#)).await.unwrap();
    closed(&mut ws).await;

    // Polling: the same CONNECT as `b` + base64, answered the same way.
    let sid = polling_session(&server).await;
    let url = format!("{POLLING}&sid={sid}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = format!("b{}", b64.encode(msgpack_packet(0, Some(&auth), None)));
    assert_eq!(post(server.addr, &url, body.as_bytes()).await.text(), "ok");
    let answer = get(server.addr, &url).await;
    let bytes = b64
        .decode(answer.text().strip_prefix('b').expect("a binary packet"))
        .unwrap();
    assert_eq!(
        msgpack_field(&decode(&bytes), "type"),
        Some(&rmpv::Value::from(0))
    );

    // Garbage as a first binary packet: the connection closes, the server goes on.
    let mut ws = ws_open(&server, "").await;
    recv_text(&mut ws).await;
    ws.send(Message::binary(vec![0xdd, 0xff, 0xff, 0xff, 0xff]))
        .await
        .unwrap();
    closed(&mut ws).await;
    assert_eq!(
        server.records().connects.get("msgpack-raw").copied(),
        Some(2)
    );
    server.stop().await;
}
