//! The client against a hand-scripted server, for what a real Socket.IO server won't do on
//! demand: exact wire checks, malformed frames, silence, slow reading and dropped sockets.

use std::time::{Duration, Instant};

use confab_sio_client::{ConnectError, ConnectOptions, Error, Incoming, connect};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

const WAIT: Duration = Duration::from_secs(5);
const OPEN: &str = r#"0{"sid":"eio-1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

type ServerWs = WebSocketStream<TcpStream>;

/// A listener on a port of its own, and client options pointing at it.
async fn listen() -> (TcpListener, ConnectOptions) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, ConnectOptions::new(url))
}

/// Accepts one WebSocket, sends `open`, and returns the socket with the client's CONNECT frame.
async fn accept_with(listener: &TcpListener, open: &str) -> (ServerWs, String) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    ws.send(Message::text(open)).await.unwrap();
    let connect = next_text(&mut ws).await;
    (ws, connect)
}

/// Accepts one client and lets it into the namespace.
async fn accept(listener: &TcpListener) -> ServerWs {
    let (mut ws, connect) = accept_with(listener, OPEN).await;
    assert!(connect.starts_with("40"), "{connect}");
    ws.send(Message::text(r#"40{"sid":"sio-1"}"#))
        .await
        .unwrap();
    ws
}

/// Connects a client to a scripted server and returns both ends.
async fn pair(
    opts: ConnectOptions,
    listener: &TcpListener,
) -> (confab_sio_client::Client, ServerWs) {
    let (client, ws) = tokio::join!(connect(opts), accept(listener));
    (client.unwrap(), ws)
}

async fn next_text(ws: &mut ServerWs) -> String {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the client sent nothing in time")
            .expect("the client closed the socket")
            .expect("the socket failed");
        match message {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn expect_disconnected(client: &mut confab_sio_client::Client) -> String {
    match client.next_event_timeout(WAIT).await {
        Some(Incoming::Disconnected { reason }) => reason,
        other => panic!("expected a disconnection, got {other:?}"),
    }
}

/// Reads until the client's close frame; fails on anything else but heartbeats.
async fn expect_close_frame(ws: &mut ServerWs) {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Text(text))) if text.as_str() == "3" => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
// The callback's signature is tungstenite's, large error variant included.
#[allow(clippy::result_large_err)]
async fn handshake_request_and_connect_packets() {
    let (listener, opts) = listen().await;
    let opts = opts
        .header("Origin", "https://app.example")
        .header("X-Test", "1")
        .auth(json!({ "token": "t" }));
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut seen = None;
        let mut ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, res: Response| {
            seen = Some((req.uri().to_string(), req.headers().clone()));
            Ok(res)
        })
        .await
        .unwrap();
        ws.send(Message::text(OPEN)).await.unwrap();
        let connect = next_text(&mut ws).await;
        ws.send(Message::text(r#"40{"sid":"sio-1"}"#))
            .await
            .unwrap();
        (seen.unwrap(), connect, ws)
    };
    let (client, ((uri, headers), connect_frame, _ws)) = tokio::join!(connect(opts), server);
    let client = client.unwrap();

    assert_eq!(uri, "/socket.io/?EIO=4&transport=websocket");
    assert_eq!(headers["origin"], "https://app.example");
    assert_eq!(headers["x-test"], "1");
    assert_eq!(connect_frame, r#"40{"token":"t"}"#);
    assert_eq!(client.sid(), "sio-1");
    assert_eq!(client.engine().sid, "eio-1");
    assert_eq!(client.engine().ping_interval, 25000);

    // Without auth the CONNECT is a bare `40`.
    let (listener, opts) = listen().await;
    let (client, (_ws, connect_frame)) = tokio::join!(connect(opts), async {
        let (mut ws, connect) = accept_with(&listener, OPEN).await;
        ws.send(Message::text("40{\"sid\":\"s\"}")).await.unwrap();
        (ws, connect)
    });
    client.unwrap();
    assert_eq!(connect_frame, "40");
}

#[tokio::test]
async fn refusal_carries_message_and_data() {
    let (listener, opts) = listen().await;
    let (client, _ws) = tokio::join!(connect(opts), async {
        let (mut ws, _) = accept_with(&listener, OPEN).await;
        let refusal =
            r#"44{"message":"unauthorized","data":{"code":"unauthorized","reason":"expired"}}"#;
        ws.send(Message::text(refusal)).await.unwrap();
        ws
    });
    match client.unwrap_err() {
        ConnectError::Refused { message, data } => {
            assert_eq!(message, "unauthorized");
            assert_eq!(
                data,
                Some(json!({ "code": "unauthorized", "reason": "expired" }))
            );
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn pings_during_the_handshake_are_answered() {
    let (listener, opts) = listen().await;
    let (client, pong) = tokio::join!(connect(opts), async {
        let (mut ws, _) = accept_with(&listener, OPEN).await;
        ws.send(Message::text("2")).await.unwrap();
        let pong = next_text(&mut ws).await;
        ws.send(Message::text(r#"40{"sid":"s"}"#)).await.unwrap();
        (pong, ws)
    });
    client.unwrap();
    assert_eq!(pong.0, "3");
}

#[tokio::test]
async fn bad_handshakes_are_protocol_errors() {
    for (open, answer) in [
        ("0{}", ""),
        ("not an open packet", ""),
        (OPEN, "40"),
        (OPEN, r#"40{"nosid":1}"#),
        (OPEN, r#"42["too early"]"#),
        (OPEN, "1"),
        (OPEN, "garbage"),
    ] {
        let (listener, opts) = listen().await;
        let (client, _ws) = tokio::join!(connect(opts), async {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            ws.send(Message::text(open)).await.unwrap();
            if !answer.is_empty() {
                next_text(&mut ws).await;
                ws.send(Message::text(answer)).await.unwrap();
            }
            ws
        });
        let error = client.unwrap_err();
        assert!(
            matches!(error, ConnectError::Protocol(_)),
            "{open} / {answer}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let (listener, opts) = listen().await;
    let started = Instant::now();
    // The listener's backlog completes the TCP handshake; nobody ever answers the upgrade.
    let error = connect(opts.connect_timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectError::Timeout), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(listener);
}

#[tokio::test]
async fn answers_pings_with_their_payload() {
    let (listener, opts) = listen().await;
    let (_client, mut ws) = pair(opts, &listener).await;
    ws.send(Message::text("2")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3");
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
}

#[tokio::test]
async fn a_stalled_client_does_not_answer_pings() {
    let (listener, opts) = listen().await;
    let (client, mut ws) = pair(opts.answer_pings(false), &listener).await;
    ws.send(Message::text("2")).await.unwrap();
    // Give the ping time to arrive, then check the next frame is the event, not a pong.
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.emit("after", json!(1)).await.unwrap();
    assert_eq!(next_text(&mut ws).await, r#"42["after",1]"#);
}

#[tokio::test]
async fn a_silent_server_is_a_ping_timeout() {
    let (listener, opts) = listen().await;
    let open =
        r#"0{"sid":"e","upgrades":[],"pingInterval":100,"pingTimeout":100,"maxPayload":1000}"#;
    let (client, _ws) = tokio::join!(connect(opts), async {
        let (mut ws, _) = accept_with(&listener, open).await;
        ws.send(Message::text(r#"40{"sid":"s"}"#)).await.unwrap();
        ws
    });
    let mut client = client.unwrap();
    let started = Instant::now();
    assert_eq!(expect_disconnected(&mut client).await, "ping timeout");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(!client.is_connected());
}

#[tokio::test]
async fn heartbeats_keep_a_quiet_connection_alive() {
    let (listener, opts) = listen().await;
    let open =
        r#"0{"sid":"e","upgrades":[],"pingInterval":100,"pingTimeout":100,"maxPayload":1000}"#;
    let (client, ws) = tokio::join!(connect(opts), async {
        let (mut ws, _) = accept_with(&listener, open).await;
        ws.send(Message::text(r#"40{"sid":"s"}"#)).await.unwrap();
        ws
    });
    let mut client = client.unwrap();
    let mut ws = ws;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ws.send(Message::text("2")).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "3");
    }
    assert!(client.is_connected());
    assert_eq!(
        client.next_event_timeout(Duration::from_millis(10)).await,
        None
    );
}

#[tokio::test]
async fn noise_and_other_namespaces_are_ignored() {
    let (listener, opts) = listen().await;
    let (mut client, mut ws) = pair(opts, &listener).await;
    for frame in [
        "6",
        "3",
        "5",
        r#"42/admin,["secret"]"#,
        "41/admin",
        r#"43/admin,0[]"#,
    ] {
        ws.send(Message::text(frame)).await.unwrap();
    }
    ws.send(Message::Ping(vec![1, 2].into())).await.unwrap();
    ws.send(Message::text(r#"42["real",{"x":1},2]"#))
        .await
        .unwrap();
    let event = client.expect_event("real", WAIT).await.unwrap();
    assert_eq!(event.args, vec![json!({ "x": 1 }), json!(2)]);
    assert_eq!(
        client.next_event_timeout(Duration::from_millis(50)).await,
        None
    );
    assert!(client.is_connected());
}

#[tokio::test]
async fn malformed_frames_end_the_connection_without_a_panic() {
    let frames: Vec<Message> = [
        "",
        "9",
        "x",
        "é",
        "4",
        "4x",
        "42",
        "42{",
        "42[]",
        "42[1]",
        r#"42"str""#,
        "43[1]",
        "43",
        "439999999999999999999999[]",
        "40",
        r#"44{"message":"late"}"#,
        OPEN,
        r#"451-["bin",{"_placeholder":true,"num":0}]"#,
        r#"461-0[{"_placeholder":true,"num":0}]"#,
    ]
    .into_iter()
    .map(Message::text)
    .chain([Message::binary(vec![1, 2, 3])])
    .collect();

    for frame in frames {
        let (listener, opts) = listen().await;
        let (mut client, mut ws) = pair(opts, &listener).await;
        ws.send(frame.clone()).await.unwrap();
        let reason = expect_disconnected(&mut client).await;
        assert!(
            reason.starts_with("parse error: ") || reason.starts_with("protocol error: "),
            "{frame:?}: {reason}"
        );
        assert!(!client.is_connected());
        // The client still closes the WebSocket properly.
        expect_close_frame(&mut ws).await;
    }
}

#[tokio::test]
async fn server_disconnect_packet() {
    let (listener, opts) = listen().await;
    let (mut client, mut ws) = pair(opts, &listener).await;
    ws.send(Message::text(r#"42["last"]"#)).await.unwrap();
    ws.send(Message::text("41")).await.unwrap();
    assert_eq!(
        client.expect_event("last", WAIT).await.unwrap().name,
        "last"
    );
    assert_eq!(
        expect_disconnected(&mut client).await,
        "io server disconnect"
    );
    assert_eq!(client.next_event().await, None);
    expect_close_frame(&mut ws).await;
}

#[tokio::test]
async fn engine_close_packet_and_close_frame() {
    let (listener, opts) = listen().await;
    let (mut client, mut ws) = pair(opts, &listener).await;
    ws.send(Message::text("1")).await.unwrap();
    assert_eq!(expect_disconnected(&mut client).await, "transport close");

    let (listener, opts) = listen().await;
    let (mut client, mut ws) = pair(opts, &listener).await;
    ws.close(None).await.unwrap();
    assert_eq!(expect_disconnected(&mut client).await, "transport close");

    let (listener, opts) = listen().await;
    let (mut client, ws) = pair(opts, &listener).await;
    // A socket dropped without a close frame is told apart from a closed one.
    drop(ws);
    let reason = expect_disconnected(&mut client).await;
    assert!(reason.starts_with("transport error: "), "{reason}");
}

#[tokio::test]
async fn acks_are_matched_by_id_and_unknown_ids_ignored() {
    let (listener, opts) = listen().await;
    let (client, mut ws) = pair(opts, &listener).await;
    let server = async {
        let first = next_text(&mut ws).await;
        let second = next_text(&mut ws).await;
        ws.send(Message::text("4399[\"stray\"]")).await.unwrap();
        ws.send(Message::text("431[\"second\",2]")).await.unwrap();
        ws.send(Message::text("430[\"first\"]")).await.unwrap();
        (first, second)
    };
    let (first, second, (sent_first, sent_second)) = tokio::join!(
        client.emit_with_ack("q", json!({ "n": 1 })),
        async {
            // Make sure the first emit takes id 0.
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.emit_args_with_ack("q", &[json!(2), json!(3)]).await
        },
        server,
    );
    assert_eq!(sent_first, r#"420["q",{"n":1}]"#);
    assert_eq!(sent_second, r#"421["q",2,3]"#);
    assert_eq!(first.unwrap(), json!("first"));
    assert_eq!(second.unwrap(), vec![json!("second"), json!(2)]);
}

#[tokio::test]
async fn a_pending_ack_fails_when_the_connection_dies() {
    let (listener, opts) = listen().await;
    let (client, mut ws) = pair(opts, &listener).await;
    let (answer, ()) = tokio::join!(client.emit_with_ack("q", json!(1)), async {
        next_text(&mut ws).await;
        drop(ws);
    });
    assert!(matches!(answer, Err(Error::Closed)), "{answer:?}");
    assert!(matches!(
        client.emit("q", json!(1)).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        client.send_raw("2".into()).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn disconnect_sends_41_then_a_close_frame() {
    let (listener, opts) = listen().await;
    let (client, mut ws) = pair(opts, &listener).await;
    let ((), ()) = tokio::join!(client.disconnect(), async {
        assert_eq!(next_text(&mut ws).await, "41");
        expect_close_frame(&mut ws).await;
        // Answer the close, as a server does, so disconnect() can finish promptly.
        while let Some(Ok(_)) = ws.next().await {}
    });
}

#[tokio::test]
async fn disconnect_gives_up_on_a_server_that_never_answers_the_close() {
    let (listener, opts) = listen().await;
    let (client, ws) = pair(opts, &listener).await;
    // The server neither reads nor answers: the client gives up after its close grace.
    let started = Instant::now();
    client.disconnect().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(ws);
}

#[tokio::test]
async fn drop_abruptly_sends_no_close_frame() {
    let (listener, opts) = listen().await;
    let (client, mut ws) = pair(opts, &listener).await;
    client.drop_abruptly();
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        None | Some(Err(_)) => {}
        Some(Ok(message)) => panic!("expected the socket to just go away, got {message:?}"),
    }
}

#[tokio::test]
async fn raw_frames_go_out_verbatim() {
    let (listener, opts) = listen().await;
    let (client, mut ws) = pair(opts, &listener).await;
    client.send_raw("42[\"x\"".into()).await.unwrap();
    client.send_raw(String::new()).await.unwrap();
    client
        .send_raw_binary(vec![0, 159, 146, 150])
        .await
        .unwrap();
    client.emit_args("none", &[]).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "42[\"x\"");
    assert_eq!(next_text(&mut ws).await, "");
    let binary = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(binary, Message::binary(vec![0, 159, 146, 150]));
    assert_eq!(next_text(&mut ws).await, r#"42["none"]"#);
}

#[tokio::test]
async fn large_events_arrive_whole() {
    let (listener, opts) = listen().await;
    let (mut client, mut ws) = pair(opts, &listener).await;
    let body = "x".repeat(1 << 20);
    ws.send(Message::text(format!(r#"42["big","{body}"]"#)))
        .await
        .unwrap();
    let event = client.expect_event("big", WAIT).await.unwrap();
    assert_eq!(event.data().as_str().map(str::len), Some(1 << 20));
}

#[tokio::test]
async fn reading_goes_on_while_writes_are_blocked() {
    let (listener, opts) = listen().await;
    let (mut client, mut ws) = pair(opts, &listener).await;
    let client_events = async {
        // Far more than the socket buffers hold, while the server isn't reading: emits block.
        let emitting = async {
            let chunk = "y".repeat(16 * 1024);
            for i in 0..1000 {
                client
                    .emit("bulk", json!({ "i": i, "pad": chunk }))
                    .await
                    .unwrap();
            }
        };
        tokio::pin!(emitting);
        let stuck = tokio::time::timeout(Duration::from_millis(300), &mut emitting).await;
        assert!(stuck.is_err(), "the emits should be waiting for the server");
        emitting.await;
    };
    let server = async {
        // While the client's writes are stuck, its reads must still work.
        tokio::time::sleep(Duration::from_millis(100)).await;
        ws.send(Message::text(r#"42["while-blocked"]"#))
            .await
            .unwrap();
        ws.send(Message::text("2")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let unblocked_at = Instant::now();
        let mut pongs = 0;
        let mut next = 0;
        while next < 1000 {
            let frame = next_text(&mut ws).await;
            if frame == "3" {
                pongs += 1;
                continue;
            }
            let payload: serde_json::Value = serde_json::from_str(&frame[2..]).unwrap();
            assert_eq!(payload[1]["i"], next, "events out of order");
            next += 1;
        }
        assert_eq!(pongs, 1);
        unblocked_at
    };
    let ((), unblocked_at) = tokio::join!(client_events, server);
    let event = client.expect_event("while-blocked", WAIT).await.unwrap();
    assert!(
        event.received_at < unblocked_at,
        "the event was only read once the writes went through"
    );
}

#[tokio::test]
async fn a_close_during_stuck_writes_gives_up_after_a_grace() {
    let (listener, opts) = listen().await;
    let (client, mut ws) = pair(opts, &listener).await;
    let chunk = "z".repeat(16 * 1024);
    let fill = async {
        loop {
            client.emit("fill", json!(chunk)).await.unwrap();
        }
    };
    let stuck = tokio::time::timeout(Duration::from_millis(300), fill).await;
    assert!(stuck.is_err(), "the emits should be waiting for the server");

    // The close frame queues behind writes that cannot go out; the connection task must give
    // up on its own rather than live on with the server.
    drop(client);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // Read the raw bytes and never answer: the client must end the connection by itself. (How
    // much of its backlog, close frame included, reached the kernel before it gave up depends
    // on the kernel's buffer tuning; a client that waited for our answer would hang here.)
    let tcp = ws.get_mut();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the client kept the connection open, waiting for the server"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_emitters_lose_nothing_and_keep_their_order() {
    const TASKS: u64 = 8;
    const EACH: u64 = 500;
    let (listener, opts) = listen().await;
    let (client, mut ws) = pair(opts, &listener).await;
    let client = std::sync::Arc::new(client);
    let emitters: Vec<_> = (0..TASKS)
        .map(|task| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    client.emit("n", json!([task, i])).await.unwrap();
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    let mut next = [0u64; TASKS as usize];
    for _ in 0..TASKS * EACH {
        let frame = next_text(&mut ws).await;
        let payload: serde_json::Value = serde_json::from_str(&frame[2..]).unwrap();
        let (task, i) = (
            payload[1][0].as_u64().unwrap(),
            payload[1][1].as_u64().unwrap(),
        );
        assert_eq!(i, next[task as usize], "task {task}'s emits out of order");
        next[task as usize] += 1;
    }
    for emitter in emitters {
        emitter.await.unwrap();
    }
}
