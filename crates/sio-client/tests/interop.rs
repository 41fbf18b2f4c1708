//! The client against a real Socket.IO server: socketioxide under axum, on a port of its own.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use confab_sio_client::{ConnectError, ConnectOptions, Error, Incoming, connect};
use serde_json::{Value, json};
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;
use socketioxide::{SocketIo, SocketIoBuilder};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

/// A Socket.IO server for the tests, with handlers that echo, ack, emit and disconnect on
/// demand. It reports each socket's disconnection reason on `disconnects`.
struct TestServer {
    url: String,
    disconnects: mpsc::UnboundedReceiver<(String, DisconnectReason)>,
}

impl TestServer {
    async fn start() -> Self {
        Self::start_with(|builder| builder).await
    }

    async fn start_with(configure: impl FnOnce(SocketIoBuilder) -> SocketIoBuilder) -> Self {
        let (layer, io) = configure(SocketIo::builder()).build_layer();
        let (disconnect_tx, disconnects) = mpsc::unbounded_channel();
        io.ns(
            "/",
            (move |s: SocketRef, TryData(auth): TryData<Value>| {
                let disconnect_tx = disconnect_tx.clone();
                async move { on_connect(s, auth.ok(), disconnect_tx) }
            })
            .with(refuse_bad_tokens),
        );
        let app = axum::Router::new()
            .layer(layer)
            .layer(middleware::from_fn(refuse_evil_origin));

        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            url: format!("http://{addr}"),
            disconnects,
        }
    }

    fn options(&self) -> ConnectOptions {
        ConnectOptions::new(self.url.clone())
    }

    /// The next socket the server saw disconnect, and why.
    async fn next_disconnect(&mut self) -> (String, DisconnectReason) {
        tokio::time::timeout(WAIT, self.disconnects.recv())
            .await
            .expect("the server saw no disconnection in time")
            .expect("the server stopped")
    }
}

fn on_connect(
    s: SocketRef,
    auth: Option<Value>,
    disconnect_tx: mpsc::UnboundedSender<(String, DisconnectReason)>,
) {
    let peer = s
        .req_parts()
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string());
    s.emit(
        "welcome",
        &json!({ "sid": s.id.to_string(), "auth": auth, "peer": peer }),
    )
    .unwrap();

    s.on("echo", async |s: SocketRef, Data(data): Data<Value>| {
        s.emit("echo", &data).unwrap();
    });
    s.on(
        "echo_ack",
        async |Data(data): Data<Value>, ack: AckSender| {
            ack.send(&data).unwrap();
        },
    );
    s.on("two_args_ack", async |ack: AckSender| {
        ack.send(&("first", 2)).unwrap();
    });
    // Acks after `delay_ms`, so concurrent emits get their answers out of order.
    s.on(
        "slow_ack",
        async |Data(data): Data<Value>, ack: AckSender| {
            let delay = data["delay_ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            ack.send(&data).unwrap();
        },
    );
    s.on("no_ack", async |_ack: AckSender| {});
    // Emits one event per name given, in order.
    s.on(
        "burst",
        async |s: SocketRef, Data(names): Data<Vec<String>>| {
            for (i, name) in names.iter().enumerate() {
                s.emit(name.as_str(), &json!({ "i": i })).unwrap();
            }
        },
    );
    s.on("ask", async |s: SocketRef| {
        // The client does not answer; the server's ack just times out.
        let _ = s.emit_with_ack::<_, Value>("question", &json!({ "q": 1 }));
    });
    s.on("kick", async |s: SocketRef| {
        s.disconnect().unwrap();
    });
    s.on_disconnect(move |s: SocketRef, reason: DisconnectReason| {
        let disconnect_tx = disconnect_tx.clone();
        async move {
            let _ = disconnect_tx.send((s.id.to_string(), reason));
        }
    });
}

/// Connect middleware: `{"token": "bad"}` is refused, anything else accepted.
async fn refuse_bad_tokens(TryData(auth): TryData<Value>) -> Result<(), String> {
    match auth {
        Ok(auth) if auth["token"] == "bad" => Err("unauthorized".into()),
        _ => Ok(()),
    }
}

/// HTTP middleware: requests from `https://evil.example` get a 403.
async fn refuse_evil_origin(request: Request, next: Next) -> Response {
    let origin = request.headers().get("origin");
    if origin.is_some_and(|origin| origin == "https://evil.example") {
        return (http::StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    next.run(request).await
}

#[tokio::test]
async fn connects_with_auth() {
    let server = TestServer::start().await;
    let mut client = connect(server.options().auth(json!({ "token": "good" })))
        .await
        .unwrap();
    assert!(client.is_connected());
    assert!(!client.sid().is_empty());
    assert!(!client.engine().sid.is_empty());

    let welcome = client.expect_event("welcome", WAIT).await.unwrap();
    assert_eq!(welcome.data()["auth"], json!({ "token": "good" }));
    assert_eq!(welcome.data()["sid"], client.sid());
    client.disconnect().await;
}

#[tokio::test]
async fn connects_without_auth() {
    let server = TestServer::start().await;
    let mut client = connect(server.options()).await.unwrap();
    let welcome = client.expect_event("welcome", WAIT).await.unwrap();
    // The client sends a bare `40`; socketioxide hands its handlers an empty object then.
    assert_eq!(welcome.data()["auth"], json!({}));
}

#[tokio::test]
async fn connect_middleware_refusal_is_reported() {
    let server = TestServer::start().await;
    let error = connect(server.options().auth(json!({ "token": "bad" })))
        .await
        .unwrap_err();
    match error {
        ConnectError::Refused { message, data } => {
            assert_eq!(message, "unauthorized");
            assert_eq!(data, None);
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_upgrade_reports_the_http_status() {
    let server = TestServer::start().await;
    let error = connect(server.options().header("Origin", "https://evil.example"))
        .await
        .unwrap_err();
    match error {
        ConnectError::Http { status, body } => {
            assert_eq!(status, 403);
            assert_eq!(body, "origin not allowed");
        }
        other => panic!("expected Http, got {other:?}"),
    }

    // Another origin gets through the same middleware.
    connect(server.options().header("Origin", "https://fine.example"))
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_path_is_an_http_error() {
    let server = TestServer::start().await;
    let error = connect(server.options().path("/nothing-here/"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConnectError::Http { status: 404, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_an_io_error() {
    // Bind and drop a listener to find a port where nothing listens.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = connect(ConnectOptions::new(format!("http://{addr}")))
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectError::Io(_)), "{error:?}");
}

#[tokio::test]
async fn binds_to_the_given_source_address() {
    let server = TestServer::start().await;
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut client = connect(server.options().local_addr(source)).await.unwrap();
    assert_eq!(client.local_addr().ip(), source);
    let welcome = client.expect_event("welcome", WAIT).await.unwrap();
    assert_eq!(welcome.data()["peer"], "127.0.0.2");
}

#[tokio::test]
async fn emits_and_receives() {
    let server = TestServer::start().await;
    let mut client = connect(server.options()).await.unwrap();
    client
        .emit("echo", json!({ "body": "hé \"there\"", "n": 1 }))
        .await
        .unwrap();
    let echo = client.expect_event("echo", WAIT).await.unwrap();
    assert_eq!(echo.data(), &json!({ "body": "hé \"there\"", "n": 1 }));
    assert_eq!(echo.args.len(), 1);
    assert!(echo.received_at <= Instant::now());
}

#[tokio::test]
async fn emit_with_ack_returns_the_first_ack_argument() {
    let server = TestServer::start().await;
    let client = connect(server.options()).await.unwrap();
    let answer = client
        .emit_with_ack("echo_ack", json!({ "ok": true }))
        .await
        .unwrap();
    assert_eq!(answer, json!({ "ok": true }));

    let all = client
        .emit_args_with_ack("two_args_ack", &[])
        .await
        .unwrap();
    assert_eq!(all, vec![json!("first"), json!(2)]);
    let first = client
        .emit_with_ack("two_args_ack", Value::Null)
        .await
        .unwrap();
    assert_eq!(first, json!("first"));
}

#[tokio::test]
async fn missing_ack_times_out_and_the_connection_goes_on() {
    let server = TestServer::start().await;
    let client = connect(server.options().ack_timeout(Duration::from_millis(200)))
        .await
        .unwrap();
    let started = Instant::now();
    let error = client.emit_with_ack("no_ack", json!({})).await.unwrap_err();
    assert!(matches!(error, Error::AckTimeout), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));

    let answer = client.emit_with_ack("echo_ack", json!(5)).await.unwrap();
    assert_eq!(answer, json!(5));
}

#[tokio::test]
async fn concurrent_acks_are_matched_by_id() {
    let server = TestServer::start().await;
    let client = Arc::new(connect(server.options()).await.unwrap());
    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                // Later emits are answered sooner, so acks come back in reverse order.
                let data = json!({ "i": i, "delay_ms": (20 - i) * 10 });
                let answer = client.emit_with_ack("slow_ack", data.clone()).await;
                (data, answer)
            })
        })
        .collect();
    for task in tasks {
        let (sent, answer) = task.await.unwrap();
        assert_eq!(answer.unwrap(), sent);
    }
}

#[tokio::test]
async fn expect_event_keeps_the_other_events() {
    let server = TestServer::start().await;
    let mut client = connect(server.options()).await.unwrap();
    client.expect_event("welcome", WAIT).await.unwrap();

    client
        .emit("burst", json!(["a", "b", "target", "c"]))
        .await
        .unwrap();
    let target = client.expect_event("target", WAIT).await.unwrap();
    assert_eq!(target.data(), &json!({ "i": 2 }));

    // A name that was passed over is found among the kept events.
    let c = client.expect_event("c", WAIT).await.unwrap();
    assert_eq!(c.data(), &json!({ "i": 3 }));

    client
        .expect_no_event("target", Duration::from_millis(100))
        .await
        .unwrap();
    let error = client
        .expect_no_event("b", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::UnexpectedEvent(event) if event.name == "b"),
        "{error:?}"
    );

    let Some(Incoming::Event(a)) = client.next_event_timeout(WAIT).await else {
        panic!("the passed-over event was lost");
    };
    assert_eq!((a.name.as_str(), a.data()), ("a", &json!({ "i": 0 })));
    assert_eq!(
        client.next_event_timeout(Duration::from_millis(100)).await,
        None
    );
    assert!(matches!(
        client
            .expect_event("never", Duration::from_millis(100))
            .await,
        Err(Error::Timeout)
    ));
}

#[tokio::test]
async fn events_asking_for_an_ack_are_delivered() {
    let server = TestServer::start().await;
    let mut client = connect(server.options()).await.unwrap();
    client.emit("ask", Value::Null).await.unwrap();
    let question = client.expect_event("question", WAIT).await.unwrap();
    assert_eq!(question.data(), &json!({ "q": 1 }));
    assert!(client.is_connected());
}

#[tokio::test]
async fn answers_pings() {
    // Pings every 50 ms; the timeout is roomier so a busy test machine can't fail it.
    let mut server = TestServer::start_with(|b| {
        b.ping_interval(Duration::from_millis(50))
            .ping_timeout(Duration::from_millis(500))
    })
    .await;
    let mut client = connect(server.options()).await.unwrap();
    assert_eq!(client.engine().ping_interval, 50);
    assert_eq!(client.engine().ping_timeout, 500);

    // Many heartbeats pass; a client that answers them stays connected.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(client.is_connected());
    let answer = client.emit_with_ack("echo_ack", json!("still here")).await;
    assert_eq!(answer.unwrap(), json!("still here"));
    client
        .expect_no_event("never", Duration::from_millis(10))
        .await
        .unwrap();
    assert!(server.disconnects.try_recv().is_err());
}

#[tokio::test]
async fn not_answering_pings_gets_the_client_disconnected() {
    let mut server = TestServer::start_with(|b| {
        b.ping_interval(Duration::from_millis(100))
            .ping_timeout(Duration::from_millis(100))
    })
    .await;
    let mut client = connect(server.options().answer_pings(false)).await.unwrap();
    let started = Instant::now();
    client.expect_event("welcome", WAIT).await.unwrap();

    let Some(Incoming::Disconnected { reason }) = client.next_event_timeout(WAIT).await else {
        panic!("the stalled client was not disconnected");
    };
    assert_eq!(reason, "transport close");
    // socketioxide pings as soon as the session opens and gives up pingTimeout later.
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!client.is_connected());
    assert_eq!(client.next_event().await, None);

    let (sid, why) = server.next_disconnect().await;
    assert_eq!(sid, client.sid());
    assert_eq!(why, DisconnectReason::HeartbeatTimeout);
}

#[tokio::test]
async fn server_side_disconnect() {
    let mut server = TestServer::start().await;
    let mut client = connect(server.options()).await.unwrap();
    client.expect_event("welcome", WAIT).await.unwrap();
    client.emit("kick", Value::Null).await.unwrap();

    let next = client.next_event_timeout(WAIT).await;
    assert_eq!(
        next,
        Some(Incoming::Disconnected {
            reason: "io server disconnect".into()
        })
    );
    assert!(!client.is_connected());
    assert_eq!(client.next_event().await, None);
    assert!(matches!(
        client.emit("echo", json!(1)).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        client.emit_with_ack("echo_ack", json!(1)).await,
        Err(Error::Closed)
    ));
    assert_eq!(
        server.next_disconnect().await.1,
        DisconnectReason::ServerNSDisconnect
    );
}

#[tokio::test]
async fn expect_event_reports_the_disconnection_and_keeps_it() {
    let server = TestServer::start().await;
    let mut client = connect(server.options()).await.unwrap();
    client.emit("kick", Value::Null).await.unwrap();
    assert!(matches!(
        client.expect_event("never", WAIT).await,
        Err(Error::Closed)
    ));
    // The welcome came before the disconnection and is still there, then the disconnection.
    assert!(matches!(
        client.expect_event("welcome", WAIT).await,
        Ok(event) if event.name == "welcome"
    ));
    assert!(matches!(
        client.next_event().await,
        Some(Incoming::Disconnected { .. })
    ));
    assert_eq!(client.next_event().await, None);
}

#[tokio::test]
async fn client_disconnect_reaches_the_server() {
    let mut server = TestServer::start().await;
    let client = connect(server.options()).await.unwrap();
    let sid = client.sid().to_owned();
    let started = Instant::now();
    client.disconnect().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "disconnect waited for nothing"
    );
    assert_eq!(
        server.next_disconnect().await,
        (sid, DisconnectReason::ClientNSDisconnect)
    );
}

#[tokio::test]
async fn dropping_the_client_closes_the_connection() {
    let mut server = TestServer::start().await;
    let client = connect(server.options()).await.unwrap();
    let sid = client.sid().to_owned();
    drop(client);
    assert_eq!(
        server.next_disconnect().await,
        (sid, DisconnectReason::TransportClose)
    );
}

#[tokio::test]
async fn abrupt_drop_looks_like_a_network_failure() {
    let mut server = TestServer::start().await;
    let client = connect(server.options()).await.unwrap();
    let sid = client.sid().to_owned();
    client.drop_abruptly();
    let (seen, reason) = server.next_disconnect().await;
    assert_eq!(seen, sid);
    // No close frame and no 41: the server only sees the socket go away.
    assert_eq!(reason, DisconnectReason::TransportError);
}

#[tokio::test]
async fn raw_frames_reach_the_server() {
    let server = TestServer::start().await;
    let mut client = connect(server.options()).await.unwrap();
    client
        .send_raw(r#"42["echo",{"raw":true}]"#.into())
        .await
        .unwrap();
    let echo = client.expect_event("echo", WAIT).await.unwrap();
    assert_eq!(echo.data(), &json!({ "raw": true }));
}

#[tokio::test]
async fn garbage_gets_the_client_disconnected_without_a_panic() {
    let mut server = TestServer::start().await;
    let mut client = connect(server.options()).await.unwrap();
    client.expect_event("welcome", WAIT).await.unwrap();
    client.send_raw("4garbage".into()).await.unwrap();
    client
        .send_raw_binary(vec![0xff, 0x00, 0x42])
        .await
        .unwrap();

    let next = client.next_event_timeout(WAIT).await;
    assert!(
        matches!(&next, Some(Incoming::Disconnected { .. })),
        "{next:?}"
    );
    assert_eq!(
        server.next_disconnect().await.1,
        DisconnectReason::PacketParsingError
    );
}

#[tokio::test]
async fn many_clients_at_once() {
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(connect(server.options()).await.unwrap());
    }
    let answers = futures_util::future::join_all(
        clients
            .iter()
            .enumerate()
            .map(|(i, client)| client.emit_with_ack("echo_ack", json!(i))),
    )
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), json!(i));
    }
}
