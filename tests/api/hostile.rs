//! Hostile clients against the real `confab` binary, run as a child process so that its memory is its
//! own: each attack runs for 5 s (`CONFAB_HOSTILE_SECS`) from 127.0.0.2 with several connections, never
//! authenticating, while alice and bob chat from 127.0.0.1 and carol connects in the middle of it and
//! after it. The server's RSS must grow by less than what docs/SECURITY.md says one address can make it
//! hold, and the three must be served throughout.
//!
//! `CONFAB_HOSTILE_BIN=/path/to/confab` runs the same attacks against another build (an older one, to
//! see them succeed).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

use crate::helpers::*;
use crate::nodes::NodeProcess;

/// Where the attacks come from: the per-address limits apply to it, not to the users on 127.0.0.1.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Connections each attack keeps going at once.
const ATTACKERS: usize = 4;

/// What docs/SECURITY.md says one address that never authenticates can make a node hold: at most 32
/// unauthenticated sessions (`CONFAB_MAX_UNAUTHENTICATED_PER_IP`) of at most 260 KiB each (64 KiB of
/// queued output, a 64 KiB message being read and 64 KiB of fragments before it, 64 KiB of binary
/// attachments, a few KiB for the session itself).
const PER_ADDRESS_BOUND_KIB: u64 = 32 * 260;
/// Allowance for the allocator keeping freed memory, the runtime's buffers and the users' own traffic.
const SLACK_KIB: u64 = 24 * 1024;

/// One attack at a time: they are CPU-hungry, and each is measured alone.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn attack_time() -> Duration {
    let secs = std::env::var("CONFAB_HOSTILE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    Duration::from_secs(secs)
}

/// What an attack managed: sessions opened, refusals met, bytes sent.
#[derive(Default)]
struct Tally {
    sessions: AtomicU64,
    refused: AtomicU64,
    bytes: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts an attempt at a session (`Some` if it opened); after a refusal, waits a moment rather
    /// than spin.
    async fn opened<T>(&self, session: Option<T>) -> Option<T> {
        match session {
            Some(_) => Tally::add(&self.sessions, 1),
            None => {
                Tally::add(&self.refused, 1);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        session
    }
}

fn token(user: &str) -> String {
    sign(json!({ "sub": user, "exp": chrono_now() + 3600 }))
}

async fn connect_user(url: &str, user: &str) -> confab_sio_client::Client {
    let options = confab_sio_client::ConnectOptions::new(url.to_owned())
        .auth(json!({ "token": token(user) }));
    confab_sio_client::connect(options)
        .await
        .unwrap_or_else(|e| panic!("{user} could not connect: {e}"))
}

fn server_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .expect("the node's URL is http://ADDR")
}

/// A TCP connection from the attacker's address.
async fn tcp_from_attacker(url: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ATTACKER, 0))?;
    socket.connect(server_addr(url)).await
}

/// A WebSocket from the attacker's address (`query` is added to the Engine.IO one); `None` if refused.
async fn ws_from_attacker(url: &str, query: &str) -> Option<WebSocketStream<TcpStream>> {
    let stream = tcp_from_attacker(url).await.ok()?;
    let ws_url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket{query}",
        server_addr(url)
    );
    let handshake = client_async(ws_url, stream);
    match tokio::time::timeout(Duration::from_secs(2), handshake).await {
        Ok(Ok((ws, _))) => Some(ws),
        _ => None,
    }
}

/// An HTTP client whose connections come from the attacker's address.
fn http_from_attacker() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ATTACKER)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// Opens a polling session; its sid, or `None` if refused.
async fn polling_session(http: &reqwest::Client, url: &str) -> Option<String> {
    let response = http
        .get(format!("{url}/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let text = response.text().await.ok()?;
    let open: Value = serde_json::from_str(text.strip_prefix('0')?).ok()?;
    Some(open["sid"].as_str()?.to_owned())
}

/// Sends `message` over and over on `ws` until the deadline or until the server is gone, never reading.
async fn flood(
    ws: &mut WebSocketStream<TcpStream>,
    message: &Message,
    deadline: Instant,
    tally: &Tally,
) {
    let size = message.len() as u64;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, ws.send(message.clone())).await {
            Ok(Ok(())) => Tally::add(&tally.bytes, size),
            // Closed, or (the timeout) writes stalled because the server stopped reading.
            _ => return,
        }
    }
}

/// Runs `attack` from `ATTACKERS` connections for the attack time against a fresh node while its
/// users chat, then checks the node's growth and that its users were served. Returns the attack's tally.
async fn under_attack<F, Fut>(name: &str, attack: F) -> Arc<Tally>
where
    F: Fn(String, Instant, Arc<Tally>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("hostile.db").display());
    let settings = [
        ("CONFAB_DATABASE_URL", database.as_str()),
        ("CONFAB_JWT_SECRET", SECRET),
        ("CONFAB_DATA_DIR", dir.path().to_str().unwrap()),
    ];
    let node = match std::env::var("CONFAB_HOSTILE_BIN") {
        Ok(program) => NodeProcess::start_program(&program, &settings).await,
        Err(_) => NodeProcess::start(&settings).await,
    };
    let url = node.url.clone();
    let pid = node.pid();

    let alice = connect_user(&url, "alice").await;
    let mut bob = connect_user(&url, "bob").await;
    let id = group(&alice, "calm", &["bob", "carol"]).await;
    expect(&mut bob, "conversation:new").await;
    send(&alice, &id, "warmup", "warming up").await;
    expect(&mut bob, "message:new").await;
    let before = crate::nodes::rss_kib(pid);

    let secs = attack_time();
    let deadline = Instant::now() + secs;
    let tally = Arc::new(Tally::default());
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| tokio::spawn(attack(url.clone(), deadline, tally.clone())))
        .collect();
    // The peak counts, not what is left once the attack is over.
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        while Instant::now() < deadline + Duration::from_secs(1) {
            peak = peak.max(crate::nodes::rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak
    });
    let calm = async {
        let mut sent = 0;
        let mut carol_came = false;
        while Instant::now() < deadline {
            let m = send(&alice, &id, &format!("calm{sent}"), "are we fine?").await;
            let got = expect(&mut bob, "message:new").await;
            assert_eq!(got["message"], m, "bob receives every message, in order");
            sent += 1;
            if !carol_came && deadline.saturating_duration_since(Instant::now()) < secs / 2 {
                // A newcomer mid-attack gets in and is served.
                let carol = connect_user(&url, "carol").await;
                carol.ok("conversation:list", json!({})).await;
                carol_came = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(carol_came, "carol never tried to connect during the attack");
        sent
    };
    let sent = calm.await;
    for attacker in attackers {
        attacker.await.expect("an attacker panicked");
    }
    let peak = sampler.await.unwrap();

    // After the attack: a new connection works and is served.
    let mut carol = connect_user(&url, "carol").await;
    let m = send(&alice, &id, "after", "still here?").await;
    assert_eq!(expect(&mut carol, "message:new").await["message"], m);
    assert!(alice.is_connected() && bob.is_connected());

    let grew = peak.saturating_sub(before);
    eprintln!(
        "{name}: {} sessions opened, {} refused, {} MiB sent; {sent} calm messages; RSS {before} KiB, peak {peak} KiB (+{grew} KiB)",
        Tally::get(&tally.sessions),
        Tally::get(&tally.refused),
        Tally::get(&tally.bytes) >> 20,
    );
    assert!(
        Tally::get(&tally.sessions) > 0,
        "{name}: the attack never got a session: it tested nothing"
    );
    assert!(
        sent >= 2 * secs.as_secs(),
        "{name}: alice and bob were slowed to {sent} messages in {secs:?}"
    );
    assert!(
        grew < PER_ADDRESS_BOUND_KIB + SLACK_KIB,
        "{name}: RSS grew by {grew} KiB (from {before} to {peak}); the bound is {PER_ADDRESS_BOUND_KIB} KiB + {SLACK_KIB} KiB slack"
    );
    tally
}

/// (a) A WebSocket that never reads, sending `40/` + 60,000 × `n` + `,` (a CONNECT to a namespace that
/// doesn't exist) over and over; a new one whenever the server closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_asking_for_unknown_namespaces_without_reading() {
    let frame = Message::text(format!("40/{},", "n".repeat(60_000)));
    under_attack(
        "unknown namespaces over WebSocket",
        move |url, deadline, tally| {
            let frame = frame.clone();
            async move {
                while Instant::now() < deadline {
                    let Some(mut ws) = tally.opened(ws_from_attacker(&url, "").await).await else {
                        continue;
                    };
                    flood(&mut ws, &frame, deadline, &tally).await;
                }
            }
        },
    )
    .await;
}

/// (b) Polling POSTs of 10,900 × `40/a,` (all a body may hold), never a GET for the answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_posts_asking_for_unknown_namespaces_without_fetching_answers() {
    let body = vec!["40/a,"; 10_900].join("\x1e");
    under_attack(
        "unknown namespaces over polling",
        move |url, deadline, tally| {
            let body = body.clone();
            async move {
                let http = http_from_attacker();
                while Instant::now() < deadline {
                    let Some(sid) = tally.opened(polling_session(&http, &url).await).await else {
                        continue;
                    };
                    let post = format!("{url}/socket.io/?EIO=4&transport=polling&sid={sid}");
                    while Instant::now() < deadline {
                        let response = http.post(&post).body(body.clone()).send().await;
                        match response {
                            Ok(r) if r.status().is_success() => {
                                Tally::add(&tally.bytes, body.len() as u64)
                            }
                            _ => break,
                        }
                    }
                }
            }
        },
    )
    .await;
}

/// (c) A polling session's upgrade WebSocket sending `2probe` over and over, never reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_probing_over_and_over_without_reading() {
    under_attack("repeated probes", |url, deadline, tally| async move {
        let http = http_from_attacker();
        let probe = Message::text("2probe");
        while Instant::now() < deadline {
            let Some(sid) = tally.opened(polling_session(&http, &url).await).await else {
                continue;
            };
            let Some(mut ws) = ws_from_attacker(&url, &format!("&sid={sid}")).await else {
                continue;
            };
            flood(&mut ws, &probe, deadline, &tally).await;
        }
    })
    .await;
}

/// (d) As many handshakes as the server answers, polling and WebSocket, each with 14 KB of headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_handshakes_with_large_headers() {
    let padding = "p".repeat(14_000);
    let tally = under_attack(
        "handshakes with 14 KB of headers",
        move |url, deadline, tally| {
            let padding = padding.clone();
            async move {
                let http = http_from_attacker();
                let mut round = 0u64;
                while Instant::now() < deadline {
                    round += 1;
                    let opened = if round % 4 == 0 {
                        raw_ws_handshake(&url, &padding).await
                    } else {
                        http.get(format!("{url}/socket.io/?EIO=4&transport=polling"))
                            .header("x-padding", &padding)
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success())
                    };
                    Tally::add(&tally.bytes, padding.len() as u64);
                    // No pause after a refusal: as many handshakes as the server answers.
                    let counter = if opened {
                        &tally.sessions
                    } else {
                        &tally.refused
                    };
                    Tally::add(counter, 1);
                }
            }
        },
    )
    .await;
    // At the default 20 sessions a second (burst 40), nearly all of them.
    let (opened, refused) = (Tally::get(&tally.sessions), Tally::get(&tally.refused));
    assert!(
        opened <= 40 + 20 * attack_time().as_secs() + 10,
        "{opened} sessions opened from one address"
    );
    assert!(refused > 0, "nothing was refused");
}

async fn polling_handshake(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = http.get(format!("{url}/socket.io/?EIO=4&transport=polling"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the server answers")
}

/// The sid of an open packet.
async fn sid_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let open: Value = serde_json::from_str(text.strip_prefix('0').unwrap()).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

/// A refusal's status, `Retry-After` and error object.
async fn refusal(response: reqwest::Response) -> (u16, u64, Value) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("a Retry-After header");
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["ok"], false, "{body}");
    (status, retry_after, body["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_are_limited_per_address_at_their_rate() {
    let app = spawn_app_with(Backend::Sqlite, &[("CONFAB_RATE_SESSION_PER_IP", "1/3")])
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for _ in 0..3 {
        sid_of(polling_handshake(&http, &app.url, &[]).await).await;
    }
    let (status, retry_after, error) = refusal(polling_handshake(&http, &app.url, &[]).await).await;
    assert_eq!((status, retry_after), (429, 1));
    assert_eq!(error["code"], "rate_limited");
    let wait = error["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((1..=1000).contains(&wait), "{error}");
    // A WebSocket counts the same.
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        app.url.replace("http://", "ws://")
    );
    match tokio_tungstenite::connect_async(&ws_url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 429, got {:?}", other.map(|_| ())),
    }
    // Waiting as told is enough.
    tokio::time::sleep(Duration::from_millis(wait + 20)).await;
    sid_of(polling_handshake(&http, &app.url, &[]).await).await;
    // The origin check comes first, and is answered as before.
    let evil = polling_handshake(&http, &app.url, &[("origin", "http://evil.example")]).await;
    assert_eq!(evil.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_sessions_are_capped_per_client_address_and_in_all() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("CONFAB_MAX_UNAUTHENTICATED_PER_IP", "2"),
            ("CONFAB_MAX_UNAUTHENTICATED", "3"),
            ("CONFAB_CONNECT_TIMEOUT_MS", "1500"),
            ("CONFAB_TRUSTED_PROXIES", "127.0.0.0/8"),
        ],
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    // Clients behind the (trusted) proxy on 127.0.0.1, told apart by X-Forwarded-For.
    let from = |client: &'static str| [("x-forwarded-for", client)];
    let first = sid_of(polling_handshake(&http, &app.url, &from("203.0.113.1")).await).await;
    sid_of(polling_handshake(&http, &app.url, &from("203.0.113.1")).await).await;
    let (status, retry_after, error) =
        refusal(polling_handshake(&http, &app.url, &from("203.0.113.1")).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (429, Some("rate_limited")),
        "{error}"
    );
    assert_eq!(retry_after, 2, "a place frees within the connect timeout");
    sid_of(polling_handshake(&http, &app.url, &from("203.0.113.2")).await).await;
    // Three unauthenticated in all: the node is full, for everyone.
    let (status, _, error) =
        refusal(polling_handshake(&http, &app.url, &from("203.0.113.3")).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (503, Some("unavailable")),
        "{error}"
    );

    // A session that authenticates gives its place back.
    let path = format!("{}/socket.io/?EIO=4&transport=polling&sid={first}", app.url);
    let connect = format!("40{}", json!({ "token": token("alice") }));
    let posted = http.post(&path).body(connect).send().await.unwrap();
    assert_eq!(posted.text().await.unwrap(), "ok");
    let answer = http.get(&path).send().await.unwrap().text().await.unwrap();
    assert!(answer.starts_with("40{"), "{answer}");
    sid_of(polling_handshake(&http, &app.url, &from("203.0.113.3")).await).await;

    // The others never authenticate: the connect timeout ends them, and their places come back.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for _ in 0..2 {
        sid_of(polling_handshake(&http, &app.url, &from("203.0.113.1")).await).await;
    }
    sid_of(polling_handshake(&http, &app.url, &from("203.0.113.2")).await).await;
}

/// A WebSocket handshake written by hand with a large header, from the attacker's address; whether it
/// was accepted (`101`). The connection is left open, as a client that wanders off would.
async fn raw_ws_handshake(url: &str, padding: &str) -> bool {
    let Ok(mut stream) = tcp_from_attacker(url).await else {
        return false;
    };
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: {}\r\nupgrade: websocket\r\n\
         connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         x-padding: {padding}\r\n\r\n",
        server_addr(url)
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head)).await;
    let accepted = matches!(read, Ok(Ok(_))) && &head[9..12] == b"101";
    if accepted {
        // Kept for a while without ever connecting, like a browser tab that never sends its CONNECT.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(stream);
        });
    }
    accepted
}

/// A signed-in client that keeps asking and never reads the answers: once an answer doesn't fit in its
/// queue it is disconnected, long before the ping timeout would notice it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_client_that_does_not_read_its_answers_is_disconnected() {
    use futures::StreamExt;

    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let alice = app.connect("alice").await;
    let id = group(&alice, "big", &["mallory"]).await;
    for i in 0..50 {
        send(&alice, &id, &format!("k{i}"), &"x".repeat(4000)).await;
    }
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        app.url.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let connect = format!("40{}", json!({ "token": app.token("mallory") }));
    ws.send(Message::text(connect)).await.unwrap();
    loop {
        let message = ws.next().await.expect("open").expect("a frame");
        if message.to_text().is_ok_and(|t| t.starts_with("40")) {
            break;
        }
    }
    // About 200 KB an answer; mallory reads none of them.
    let ask = Message::text(format!(
        "421[\"message:history\",{}]",
        json!({ "conversation_id": id, "limit": 50 })
    ));
    let started = Instant::now();
    let asked = tokio::time::timeout(Duration::from_secs(30), async {
        let mut asked = 0u64;
        while ws.send(ask.clone()).await.is_ok() {
            asked += 1;
        }
        asked
    })
    .await
    .expect("mallory is still connected after 30 s");
    let took = started.elapsed();
    eprintln!("disconnected after {asked} requests, {took:?}");
    // The ping timeout (45 s by default) is not what ended it.
    assert!(took < Duration::from_secs(20), "{took:?}");
    let m = send(&alice, &id, "after", "unaffected").await;
    assert_eq!(m["body"], "unaffected");
}
