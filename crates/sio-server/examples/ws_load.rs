//! Opens many idle Socket.IO WebSocket connections against a server and reports the server's RSS per
//! connection. Run it in its own process next to the server (for example `examples/echo.rs`):
//!
//! ```sh
//! PING_INTERVAL_MS=5000 target/release/examples/echo &
//! target/release/examples/ws_load --pid $! --connections 10000
//! ```
//!
//! Options: `--url` (default `ws://127.0.0.1:3001/socket.io/?EIO=4&transport=websocket`), `--connections`
//! (default 10000), `--sources` (client addresses to bind, default `127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5`,
//! so that ephemeral ports don't run out), `--pid` (the server's pid, to read its RSS), `--settle-secs`
//! (idle time before measuring, default 15; make it longer than the server's ping interval so every
//! connection has been through a heartbeat), `--broadcasts` (after measuring, emit this many `broadcast`
//! events with an ack, for `examples/fanout.rs`, and report how fast they reach every client),
//! `--deflate` (offer `permessage-deflate` as browsers do, and check the server accepted it: the idle
//! cost of a connection with compression negotiated), `--msgpack` (connect with the MessagePack
//! parser's CONNECT, as `socket.io-msgpack-parser` does).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

struct Options {
    url: String,
    connections: usize,
    sources: Vec<IpAddr>,
    pid: Option<u32>,
    settle: Duration,
    broadcasts: usize,
    deflate: bool,
    msgpack: bool,
}

fn options() -> Options {
    let mut o = Options {
        url: "ws://127.0.0.1:3001/socket.io/?EIO=4&transport=websocket".into(),
        connections: 10_000,
        sources: ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect(),
        pid: None,
        settle: Duration::from_secs(15),
        broadcasts: 0,
        deflate: false,
        msgpack: false,
    };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.retain(|a| match a.as_str() {
        "--deflate" => {
            o.deflate = true;
            false
        }
        "--msgpack" => {
            o.msgpack = true;
            false
        }
        _ => true,
    });
    for pair in args.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--url" => o.url = value,
            "--connections" => o.connections = value.parse().expect("--connections N"),
            "--sources" => {
                o.sources = value
                    .split(',')
                    .map(|s| s.parse().expect("an IP address"))
                    .collect()
            }
            "--pid" => o.pid = Some(value.parse().expect("--pid PID")),
            "--settle-secs" => {
                o.settle = Duration::from_secs(value.parse().expect("--settle-secs N"))
            }
            "--broadcasts" => o.broadcasts = value.parse().expect("--broadcasts N"),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// The process's resident set size in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `{type: 0, nsp: "/"}`: a CONNECT as socket.io-msgpack-parser encodes it.
const MSGPACK_CONNECT: &[u8] = b"\x82\xa4type\x00\xa3nsp\xa1/";

#[allow(clippy::too_many_arguments)]
async fn connect_one(
    url: &str,
    server: SocketAddr,
    source: IpAddr,
    pings: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    deflate: bool,
    msgpack: bool,
) -> Result<(), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| e.to_string())?;
    let stream = socket.connect(server).await.map_err(|e| e.to_string())?;
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if deflate {
        request.headers_mut().insert(
            "sec-websocket-extensions",
            HeaderValue::from_static("permessage-deflate; client_max_window_bits"),
        );
    }
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| e.to_string())?;
    if deflate != response.headers().contains_key("sec-websocket-extensions") {
        return Err(format!(
            "permessage-deflate offered: {deflate}, accepted: {:?}",
            response.headers().get("sec-websocket-extensions")
        ));
    }
    let open = ws
        .next()
        .await
        .ok_or("closed before the handshake")?
        .map_err(|e| e.to_string())?;
    if !open.to_text().unwrap_or("").starts_with('0') {
        return Err(format!("unexpected handshake {open:?}"));
    }
    let connect = if msgpack {
        Message::binary(MSGPACK_CONNECT)
    } else {
        Message::text("40")
    };
    ws.send(connect).await.map_err(|e| e.to_string())?;
    loop {
        if msgpack {
            match ws
                .next()
                .await
                .ok_or("closed before CONNECT was answered")?
            {
                Ok(Message::Binary(_)) => break,
                Ok(Message::Text(t)) if t.as_str() == "2" => {
                    ws.send(Message::text("3"))
                        .await
                        .map_err(|e| e.to_string())?;
                    continue;
                }
                other => return Err(format!("unexpected answer to CONNECT: {other:?}")),
            }
        }
        let msg = ws
            .next()
            .await
            .ok_or("closed before CONNECT was answered")?
            .map_err(|e| e.to_string())?;
        match msg.to_text().unwrap_or("") {
            "2" => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| e.to_string())?,
            t if t.starts_with("40") => break,
            t => return Err(format!("unexpected answer to CONNECT: {t}")),
        }
    }
    // Stay idle, answering pings, until the server closes or the process exits.
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let text = msg.to_text().unwrap_or("");
            if text == "2" {
                pings.fetch_add(1, Ordering::Relaxed);
                if ws.send(Message::text("3")).await.is_err() {
                    break;
                }
            } else if text.starts_with(r#"42["broadcast""#) {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok(())
}

#[tokio::main]
async fn main() {
    let o = options();
    let authority = o
        .url
        .split("//")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("ws://host:port/…");
    let server: SocketAddr = tokio::net::lookup_host(authority)
        .await
        .unwrap()
        .next()
        .unwrap();
    let before = o.pid.and_then(rss_kib);
    println!("server RSS before: {before:?} KiB");

    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(256));
    let pings = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(o.connections);
    let (deflate, msgpack) = (o.deflate, o.msgpack);
    for i in 0..o.connections {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let (url, source, pings, failures, received) = (
            o.url.clone(),
            o.sources[i % o.sources.len()],
            pings.clone(),
            failures.clone(),
            received.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if let Err(e) =
                connect_one(&url, server, source, pings, received, deflate, msgpack).await
            {
                if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("connection failed: {e}");
                }
            }
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let failed = failures.load(Ordering::Relaxed);
    let open = o.connections - failed;
    println!(
        "{open} connections open ({failed} failed) in {:.1?}",
        started.elapsed()
    );

    tokio::time::sleep(o.settle).await;
    let after = o.pid.and_then(rss_kib);
    println!(
        "server RSS after {:?} idle: {after:?} KiB; pings answered: {}",
        o.settle,
        pings.load(Ordering::Relaxed)
    );
    if let (Some(before), Some(after)) = (before, after) {
        let per = (after.saturating_sub(before) as f64 * 1024.0) / open.max(1) as f64;
        println!(
            "RSS per idle connection: {per:.0} bytes ({:.2} KiB)",
            per / 1024.0
        );
    }
    if o.broadcasts > 0 {
        broadcast(&o, server, open, &received).await;
    }
}

/// Emits `broadcast` events from one more client and waits until every open connection got each one.
async fn broadcast(o: &Options, server: SocketAddr, open: usize, received: &AtomicUsize) {
    let stream = tokio::net::TcpStream::connect(server).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(o.url.as_str(), stream)
        .await
        .unwrap();
    let _open = ws.next().await;
    ws.send(Message::text("40")).await.unwrap();
    let _connected = ws.next().await;
    let payload = chat_message_payload();
    let started = Instant::now();
    let mut queue_micros = Vec::new();
    for i in 0..o.broadcasts {
        ws.send(Message::text(format!(r#"42{i}["broadcast",{payload}]"#)))
            .await
            .unwrap();
        // Wait for the ack, skipping our own copy of the broadcast.
        loop {
            let msg = ws.next().await.unwrap().unwrap();
            let text = msg.to_text().unwrap_or("");
            if text.starts_with(&format!("43{i}[")) {
                if let Some(m) = text.split("\"micros\":").nth(1) {
                    let digits: String = m.chars().take_while(char::is_ascii_digit).collect();
                    queue_micros.push(digits.parse::<u64>().unwrap_or(0));
                }
                break;
            }
        }
    }
    let expected = o.broadcasts * open;
    while received.load(Ordering::Relaxed) < expected && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let delivered = received.load(Ordering::Relaxed);
    queue_micros.sort_unstable();
    println!(
        "{} broadcasts of {} bytes to {open} sockets: {delivered}/{expected} deliveries in {elapsed:.2?} \
         ({:.0} deliveries/s); queueing one broadcast on every socket took {} µs (median)",
        o.broadcasts,
        payload.len(),
        delivered as f64 / elapsed.as_secs_f64(),
        queue_micros
            .get(queue_micros.len() / 2)
            .copied()
            .unwrap_or(0),
    );
}

/// A chat-message-sized payload.
fn chat_message_payload() -> String {
    let body = "x".repeat(120);
    format!(
        r#"{{"message":{{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","conversation_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c","seq":42,"sender_id":"alice","body":"{body}"}}}}"#
    )
}
