//! The Engine.IO v4 and Socket.IO v5 specifications (socketio/engine.io-protocol and
//! socketio/socket.io-protocol), section by section, with a raw client: the cases of their test suites
//! that apply to a server of the main namespace only, against a handler that behaves like the suites'
//! reference server (it emits `auth` on connect, answers `message` with `message-back` and acknowledges
//! `message-with-ack` with its arguments), configured as the suites expect (ping interval 300 ms, ping
//! timeout 200 ms, max payload 1,000,000, connect timeout 1 s).
//!
//! Where confab-sio knowingly differs it says so (the suites' `/custom` namespace cases: confab-sio
//! serves `/` only and refuses other namespaces).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use confab_sio::{
    ConnectError, DisconnectReason, Handler, IncomingEvent, Packet, Refusal, RequestInfo,
    ResponseHeaders, Socket, SocketIo,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{WebSocketStream, client_async};

mod common;
use common::{get, post, raw_http};

type Ws = WebSocketStream<TcpStream>;

const PING_INTERVAL: u64 = 300;
const PING_TIMEOUT: u64 = 200;

/// The suites' reference server, in confab-sio's terms.
struct Reference;

impl Handler for Reference {
    type Session = ();
    type Pending = ();

    fn check_request(&self, _: &RequestInfo<'_>) -> Result<ResponseHeaders, Refusal> {
        Ok(ResponseHeaders::new())
    }

    fn admit(&self, _: &RequestInfo<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    async fn connect(
        &self,
        socket: Socket,
        auth: Option<&RawValue>,
        _: &(),
    ) -> Result<(), ConnectError> {
        // `socket.emit("auth", socket.handshake.auth)`: queued now, delivered after the `40`.
        let auth = auth.map_or("{}", RawValue::get).to_owned();
        let _ = socket.send(&Packet::event_raw(
            "auth",
            &RawValue::from_string(auth).unwrap(),
        ));
        Ok(())
    }

    fn event(&self, _: &Arc<()>, socket: &Socket, event: IncomingEvent) {
        match event.name.as_str() {
            "message" => {
                let _ = socket.send(&Packet::binary_event(
                    "message-back",
                    &event.args,
                    event.binary,
                ));
            }
            "message-with-ack" => {
                if let Some(ack) = event.ack {
                    let _ = ack.send_binary(&event.args, event.binary);
                }
            }
            _ => {}
        }
    }

    fn disconnect(&self, _: Arc<()>, _: &Socket, _: DisconnectReason) {}
}

struct Server {
    addr: std::net::SocketAddr,
    sio: SocketIo<Reference>,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    async fn start() -> Server {
        let config = confab_sio::Config {
            ping_interval: Duration::from_millis(PING_INTERVAL),
            ping_timeout: Duration::from_millis(PING_TIMEOUT),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_millis(1000),
            ..confab_sio::Config::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sio = SocketIo::new(config, Reference);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(confab_sio::serve(
            listener,
            sio.clone(),
            axum::Router::new(),
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            sio,
            stop: Some(stop),
        }
    }

    fn polling(&self, sid: &str) -> String {
        format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
    }

    async fn ws(&self, query: &str) -> Ws {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let url = format!("ws://{}/socket.io/?{query}", self.addr);
        client_async(url, stream)
            .await
            .expect("WebSocket handshake")
            .0
    }

    /// A polling session's sid (`initLongPollingSession`).
    async fn polling_session(&self) -> String {
        let open = get(self.addr, "/socket.io/?EIO=4&transport=polling").await;
        let handshake: Value = serde_json::from_str(&open.text()[1..]).unwrap();
        handshake["sid"].as_str().unwrap().to_owned()
    }

    /// A WebSocket connected to `/` (`initSocketIOConnection`), past the `40` and the `auth` event.
    async fn socket_io(&self) -> Ws {
        let mut ws = self.ws("EIO=4&transport=websocket").await;
        next(&mut ws).await; // Engine.IO handshake
        ws.send(Message::text("40")).await.unwrap();
        next(&mut ws).await; // Socket.IO handshake
        next(&mut ws).await; // "auth" packet
        ws
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The next message, whatever it is (pings included: the suites see them too).
async fn next(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the WebSocket is open")
            .expect("a valid frame")
        {
            Message::Frame(_) => continue,
            other => return other,
        }
    }
}

fn text(message: Message) -> String {
    match message {
        Message::Text(t) => t.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The next message that isn't a ping (`waitForPackets`).
async fn next_packet(ws: &mut Ws) -> Message {
    loop {
        match next(ws).await {
            Message::Text(t) if t.as_str() == "2" => continue,
            other => return other,
        }
    }
}

/// Reads until the server closes the WebSocket; the close code, if it sent one.
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

fn open_packet(body: &str) -> Value {
    assert!(body.starts_with('0'), "{body}");
    let value: Value = serde_json::from_str(&body[1..]).unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ]
    );
    assert!(value["sid"].is_string());
    assert_eq!(value["pingInterval"], PING_INTERVAL);
    assert_eq!(value["pingTimeout"], PING_TIMEOUT);
    assert_eq!(value["maxPayload"], 1_000_000);
    value
}

// Engine.IO: handshake.

#[tokio::test]
async fn handshake_over_polling() {
    let server = Server::start().await;
    let open = get(server.addr, "/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(open.status, 200);
    assert_eq!(
        open_packet(open.text())["upgrades"],
        serde_json::json!(["websocket"])
    );

    // "If a mandatory query parameter is missing, then the server MUST respond with an HTTP 400".
    for path in [
        "/socket.io/?transport=polling",
        "/socket.io/?EIO=abc&transport=polling",
        "/socket.io/?EIO=4",
        "/socket.io/?EIO=4&transport=abc",
    ] {
        assert_eq!(get(server.addr, path).await.status, 400, "{path}");
    }
    // An invalid method for a handshake.
    assert_eq!(
        post(server.addr, "/socket.io/?EIO=4&transport=polling", b"")
            .await
            .status,
        400
    );
    let put = raw_http(
        server.addr,
        b"PUT /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(put.status, 400);
}

#[tokio::test]
async fn handshake_over_websocket() {
    let server = Server::start().await;
    let mut ws = server.ws("EIO=4&transport=websocket").await;
    assert_eq!(
        open_packet(&text(next(&mut ws).await))["upgrades"],
        serde_json::json!([])
    );
    // Missing or invalid parameters: no session (the reference server answers the upgrade with 400,
    // as confab-sio does).
    for query in [
        "transport=websocket",
        "EIO=abc&transport=websocket",
        "EIO=4",
        "EIO=4&transport=abc",
    ] {
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let url = format!("ws://{}/socket.io/?{query}", server.addr);
        assert!(client_async(url, stream).await.is_err(), "{query}");
    }
    assert_eq!(server.sio.session_count(), 1);
}

// Engine.IO: heartbeat.

#[tokio::test]
async fn heartbeat_over_polling() {
    let server = Server::start().await;
    let sid = server.polling_session().await;
    for _ in 0..3 {
        let poll = get(server.addr, &server.polling(&sid)).await;
        assert_eq!((poll.status, poll.text()), (200, "2"));
        assert_eq!(
            post(server.addr, &server.polling(&sid), b"3").await.status,
            200
        );
    }
    // No pong: the session is closed.
    let sid = server.polling_session().await;
    tokio::time::sleep(Duration::from_millis(PING_INTERVAL + PING_TIMEOUT + 100)).await;
    assert_eq!(get(server.addr, &server.polling(&sid)).await.status, 400);
}

#[tokio::test]
async fn heartbeat_over_websocket() {
    let server = Server::start().await;
    let mut ws = server.ws("EIO=4&transport=websocket").await;
    next(&mut ws).await;
    for _ in 0..3 {
        assert_eq!(text(next(&mut ws).await), "2");
        ws.send(Message::text("3")).await.unwrap();
    }
    // No pong (and no CONNECT): closed.
    let mut quiet = server.ws("EIO=4&transport=websocket").await;
    closed(&mut quiet).await;
}

// Engine.IO: upgrade.

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let server = Server::start().await;
    let sid = server.polling_session().await;
    let mut ws = server
        .ws(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await;
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(text(next(&mut ws).await), "3probe");
    // "send a noop packet to any pending GET request (if applicable)".
    let poll = get(server.addr, &server.polling(&sid)).await;
    assert_eq!((poll.status, poll.text()), (200, "6"));
    ws.send(Message::text("5")).await.unwrap();
    // Socket.IO on the upgraded transport.
    ws.send(Message::text("40")).await.unwrap();
    assert!(text(next_packet(&mut ws).await).starts_with("40{\"sid\":"));

    // HTTP requests with the same sid after the upgrade are refused.
    assert_eq!(get(server.addr, &server.polling(&sid)).await.status, 400);

    // "A client MUST NOT open more than one WebSocket connection per session. Should it happen, the
    // server MUST close the WebSocket connection."
    let mut second = server
        .ws(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await;
    assert_eq!(closed(&mut second).await, Some(CloseCode::Policy));
    // The first one is untouched.
    assert_eq!(text(next_packet(&mut ws).await), r#"42["auth",{}]"#);
    ws.send(Message::text(r#"42["message","still"]"#))
        .await
        .unwrap();
    assert_eq!(
        text(next_packet(&mut ws).await),
        r#"42["message-back","still"]"#
    );
}

#[tokio::test]
async fn a_second_websocket_for_a_websocket_session_is_closed() {
    let server = Server::start().await;
    let mut ws = server.ws("EIO=4&transport=websocket").await;
    let sid = open_packet(&text(next(&mut ws).await))["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut second = server
        .ws(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await;
    assert_eq!(closed(&mut second).await, Some(CloseCode::Policy));
    // An unknown sid is an HTTP error, as in the reference server.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA",
        server.addr
    );
    assert!(client_async(url, stream).await.is_err());
    ws.send(Message::text("40")).await.unwrap();
    assert!(text(next_packet(&mut ws).await).starts_with("40"));
}

// Engine.IO: packet encodings.

#[tokio::test]
async fn polling_payloads_carry_several_packets_and_base64_binary() {
    let server = Server::start().await;
    let sid = server.polling_session().await;
    let url = server.polling(&sid);
    assert_eq!(post(server.addr, &url, b"40").await.text(), "ok");
    let connected = get(server.addr, &url).await;
    assert!(
        connected.text().starts_with("40{\"sid\":"),
        "{}",
        connected.text()
    );
    if !connected.text().contains("auth") {
        assert_eq!(get(server.addr, &url).await.text(), r#"42["auth",{}]"#);
    }
    // Several packets in one body, binary ones as `b` + base64, and the same in the answer.
    let body =
        "42[\"message\",1]\u{1e}451-[\"message\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQIDBA==";
    assert_eq!(post(server.addr, &url, body.as_bytes()).await.text(), "ok");
    let poll = get(server.addr, &url).await;
    let packets: Vec<&str> = poll.text().split('\u{1e}').collect();
    assert_eq!(
        packets,
        [
            r#"42["message-back",1]"#,
            r#"451-["message-back",{"_placeholder":true,"num":0}]"#,
            "bAQIDBA==",
        ]
    );
    // An invalid packet closes the session.
    let sid = server.polling_session().await;
    assert_eq!(
        post(server.addr, &server.polling(&sid), b"abc")
            .await
            .status,
        400
    );
    assert_eq!(get(server.addr, &server.polling(&sid)).await.status, 400);
}

#[tokio::test]
async fn websocket_frames_carry_one_packet_each() {
    let server = Server::start().await;
    let mut ws = server.socket_io().await;
    ws.send(Message::text(
        "451-[\"message\",{\"_placeholder\":true,\"num\":0}]",
    ))
    .await
    .unwrap();
    ws.send(Message::binary(vec![1, 2, 3, 4])).await.unwrap();
    assert_eq!(
        text(next_packet(&mut ws).await),
        r#"451-["message-back",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(
        next_packet(&mut ws).await,
        Message::binary(Bytes::from_static(&[1, 2, 3, 4]))
    );
    // An invalid packet closes the connection.
    let mut other = server.ws("EIO=4&transport=websocket").await;
    next(&mut other).await;
    other.send(Message::text("abc")).await.unwrap();
    closed(&mut other).await;
}

// Engine.IO: close.

#[tokio::test]
async fn a_close_packet_ends_a_polling_session_and_its_pending_get_with_a_noop() {
    let server = Server::start().await;
    let sid = server.polling_session().await;
    let url = server.polling(&sid);
    let addr = server.addr;
    let pending = {
        let url = url.clone();
        tokio::spawn(async move { get(addr, &url).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(post(addr, &url, b"1").await.status, 200);
    let answer = pending.await.unwrap();
    // The reference server ends the pending GET with a noop.
    assert_eq!((answer.status, answer.text()), (200, "6"));
    assert_eq!(get(addr, &url).await.status, 400);
}

#[tokio::test]
async fn a_close_packet_ends_a_websocket_session() {
    let server = Server::start().await;
    let mut ws = server.ws("EIO=4&transport=websocket").await;
    next(&mut ws).await;
    ws.send(Message::text("1")).await.unwrap();
    closed(&mut ws).await;
}

#[tokio::test]
async fn a_server_side_close_ends_a_pending_get_with_a_close_packet() {
    // Duplicate GETs: the session is closed by the server, and the first GET gets `1`.
    let server = Server::start().await;
    let sid = server.polling_session().await;
    let url = server.polling(&sid);
    let addr = server.addr;
    let first = {
        let url = url.clone();
        tokio::spawn(async move { get(addr, &url).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(addr, &format!("{url}&t=burst")).await.status, 400);
    let first = first.await.unwrap();
    assert_eq!((first.status, first.text()), (200, "1"));
    assert_eq!(get(addr, &url).await.status, 400);
}

// Socket.IO: connect.

#[tokio::test]
async fn connect_to_the_main_namespace() {
    let server = Server::start().await;
    for (connect, auth) in [("40", "{}"), (r#"40{"token":"123"}"#, r#"{"token":"123"}"#)] {
        let mut ws = server.ws("EIO=4&transport=websocket").await;
        next(&mut ws).await;
        ws.send(Message::text(connect)).await.unwrap();
        let answer = text(next(&mut ws).await);
        let handshake: Value = serde_json::from_str(answer.strip_prefix("40").unwrap()).unwrap();
        assert_eq!(handshake.as_object().unwrap().len(), 1);
        assert!(handshake["sid"].is_string());
        assert_eq!(text(next(&mut ws).await), format!(r#"42["auth",{auth}]"#));
    }
}

#[tokio::test]
async fn connect_to_an_unknown_namespace_is_refused() {
    let server = Server::start().await;
    // The suites' `/custom` namespace doesn't exist here: refused like `/random`.
    for nsp in ["/random", "/custom"] {
        let mut ws = server.ws("EIO=4&transport=websocket").await;
        next(&mut ws).await;
        ws.send(Message::text(format!("40{nsp}"))).await.unwrap();
        assert_eq!(
            text(next(&mut ws).await),
            format!(r#"44{nsp},{{"message":"Invalid namespace"}}"#)
        );
    }
}

#[tokio::test]
async fn an_invalid_handshake_or_none_closes_the_connection() {
    let server = Server::start().await;
    let mut ws = server.ws("EIO=4&transport=websocket").await;
    next(&mut ws).await;
    ws.send(Message::text("4abc")).await.unwrap();
    closed(&mut ws).await;
    // No CONNECT within the connect timeout.
    let mut quiet = server.ws("EIO=4&transport=websocket").await;
    let started = std::time::Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), quiet.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                quiet.send(Message::text("3")).await.unwrap()
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
}

// Socket.IO: disconnect.

#[tokio::test]
async fn disconnecting_from_the_main_namespace_keeps_the_engine_io_session() {
    let server = Server::start().await;
    let mut ws = server.socket_io().await;
    ws.send(Message::text("41")).await.unwrap();
    // The reference server ends the socket only: the Engine.IO session goes on (its next ping).
    assert_eq!(text(next(&mut ws).await), "2");
    ws.send(Message::text("3")).await.unwrap();
    assert_eq!(server.sio.session_count(), 1);
    // A session without a connected socket is bounded by the connect timeout again (a
    // confab-sio bound, re-armed at the next heartbeat).
    closed(&mut ws).await;
    assert_eq!(server.sio.session_count(), 0);
}

#[tokio::test]
async fn connecting_again_after_a_disconnect_is_refused() {
    let server = Server::start().await;
    let mut ws = server.socket_io().await;
    ws.send(Message::text("41")).await.unwrap();
    ws.send(Message::text("40")).await.unwrap();
    assert_eq!(
        text(next_packet(&mut ws).await),
        r#"44{"message":"Session ended: reconnect with a new session"}"#
    );
    closed(&mut ws).await;
}

// Socket.IO: messages and acknowledgements.

#[tokio::test]
async fn events_acks_and_binary_attachments() {
    let server = Server::start().await;
    let mut ws = server.socket_io().await;

    ws.send(Message::text(r#"42["message",1,"2",{"3":[true]}]"#))
        .await
        .unwrap();
    assert_eq!(
        text(next_packet(&mut ws).await),
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );

    ws.send(Message::text(
        r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    ))
    .await
    .unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    ws.send(Message::binary(vec![4, 5, 6])).await.unwrap();
    assert_eq!(
        text(next_packet(&mut ws).await),
        r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(next_packet(&mut ws).await, Message::binary(vec![1, 2, 3]));
    assert_eq!(next_packet(&mut ws).await, Message::binary(vec![4, 5, 6]));

    ws.send(Message::text(
        r#"42456["message-with-ack",1,"2",{"3":[false]}]"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        text(next_packet(&mut ws).await),
        r#"43456[1,"2",{"3":[false]}]"#
    );

    ws.send(Message::text(
        r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    ))
    .await
    .unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    ws.send(Message::binary(vec![4, 5, 6])).await.unwrap();
    assert_eq!(
        text(next_packet(&mut ws).await),
        r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(next_packet(&mut ws).await, Message::binary(vec![1, 2, 3]));
    assert_eq!(next_packet(&mut ws).await, Message::binary(vec![4, 5, 6]));
}

#[tokio::test]
async fn invalid_socket_io_packets_close_the_connection() {
    let server = Server::start().await;
    for bad in [
        "4abc",
        "42{}",
        r#"42abc["message-with-ack",1,"2",{"3":[false]}]"#,
    ] {
        let mut ws = server.socket_io().await;
        ws.send(Message::text(bad)).await.unwrap();
        closed(&mut ws).await;
    }
}
