//! A test server: a handler with a few scripted behaviours, records of what it saw, and helpers to start it
//! and to talk raw HTTP to it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confab_sio::{
    ConnectError, DisconnectReason, Handler, IncomingEvent, Packet, Refusal, RequestInfo,
    ResponseHeaders, Socket, SocketIo, Transport,
};
use http::{HeaderValue, StatusCode};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// What the test handler saw, by the `name` each client puts in its auth payload.
#[derive(Default)]
pub struct Records {
    pub disconnects: HashMap<String, Vec<DisconnectReason>>,
    pub events: HashMap<String, Vec<String>>,
    pub connects: HashMap<String, usize>,
    /// The `x-tag` of the request that opened each connected socket's session, by name.
    pub tags: HashMap<String, String>,
    /// The most bytes any socket's outgoing queue held after an `echo` was queued.
    pub max_queued_bytes: usize,
}

#[derive(Default)]
pub struct TestHandler {
    pub records: Mutex<Records>,
    /// Admission values alive: sessions opened that have no connected socket yet.
    pub pending: Arc<AtomicUsize>,
}

/// What a session keeps until its socket connects: the `x-tag` header of the request that opened it, and
/// a count of the values alive.
pub struct Pending {
    tag: Option<String>,
    live: Arc<AtomicUsize>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Session {
    label: String,
    auth: Value,
    seq: Mutex<Vec<u64>>,
}

fn arg(args: &[Box<RawValue>], i: usize) -> Value {
    args.get(i)
        .and_then(|a| serde_json::from_str(a.get()).ok())
        .unwrap_or(Value::Null)
}

impl Handler for TestHandler {
    type Session = Session;
    type Pending = Pending;

    /// Refuses requests from the origin `http://evil.example` with 403; answers others with CORS headers.
    fn check_request(&self, req: &RequestInfo<'_>) -> Result<ResponseHeaders, Refusal> {
        let origin = req.headers.get("origin").cloned();
        if origin.as_ref().is_some_and(|o| o == "http://evil.example") {
            return Err(Refusal::json(
                StatusCode::FORBIDDEN,
                &json!({"code": "forbidden", "reason": "origin"}),
            ));
        }
        let mut headers = ResponseHeaders::new();
        if let Some(origin) = origin {
            headers.insert("access-control-allow-origin", origin);
            headers.insert(
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            );
        }
        Ok(headers)
    }

    /// Refuses sessions whose request says `x-admit: no` with 429 and `retry-after: 7`; keeps `x-tag`.
    fn admit(&self, req: &RequestInfo<'_>) -> Result<Pending, Refusal> {
        if req.headers.get("x-admit").is_some_and(|v| v == "no") {
            return Err(Refusal::json(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"code": "rate_limited"}),
            )
            .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("7")));
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        Ok(Pending {
            tag: req
                .headers
                .get("x-tag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            live: self.pending.clone(),
        })
    }

    async fn connect(
        &self,
        socket: Socket,
        auth: Option<&RawValue>,
        pending: &Pending,
    ) -> Result<Session, ConnectError> {
        let auth: Value = auth
            .and_then(|a| serde_json::from_str(a.get()).ok())
            .unwrap_or(Value::Null);
        match auth.get("token").and_then(Value::as_str) {
            None => {
                return Err(ConnectError::new("unauthorized")
                    .with_data(json!({"code": "unauthorized", "reason": "missing"})));
            }
            Some("expired") => {
                return Err(ConnectError::new("unauthorized")
                    .with_data(json!({"code": "unauthorized", "reason": "expired"})));
            }
            Some("slow") => tokio::time::sleep(Duration::from_millis(300)).await,
            Some("greet") => {
                // An application that queues a packet before its connect completes (a message for
                // the user arriving meanwhile): it must still reach the client after the `40`.
                socket.emit("greeting", "hello").unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(_) => {}
        }
        let label = auth
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("anonymous")
            .to_owned();
        let mut records = self.records.lock().unwrap();
        *records.connects.entry(label.clone()).or_default() += 1;
        if let Some(tag) = &pending.tag {
            records.tags.insert(label.clone(), tag.clone());
        }
        drop(records);
        Ok(Session {
            label,
            auth,
            seq: Mutex::new(Vec::new()),
        })
    }

    fn event(&self, session: &Arc<Session>, socket: &Socket, event: IncomingEvent) {
        self.records
            .lock()
            .unwrap()
            .events
            .entry(session.label.clone())
            .or_default()
            .push(event.name.clone());
        let IncomingEvent {
            name,
            args,
            binary,
            ack,
        } = event;
        match name.as_str() {
            "echo" => {
                let _ = socket.send(&Packet::binary_event("echo", &args, binary.clone()));
                if let Some(ack) = ack {
                    let _ = ack.send_binary(&args, binary);
                }
                let queued = socket.queued_bytes();
                let mut records = self.records.lock().unwrap();
                records.max_queued_bytes = records.max_queued_bytes.max(queued);
            }
            "auth:get" => {
                if let Some(ack) = ack {
                    let _ = ack.send(&session.auth);
                }
            }
            "transport" => {
                let t = match socket.transport() {
                    Transport::Polling => "polling",
                    Transport::WebSocket => "websocket",
                };
                if let Some(ack) = ack {
                    let _ = ack.send(t);
                }
            }
            "seq" => {
                if let Some(n) = arg(&args, 0).as_u64() {
                    session.seq.lock().unwrap().push(n);
                }
            }
            "seq:check" => {
                let seq = std::mem::take(&mut *session.seq.lock().unwrap());
                let ordered = seq.iter().enumerate().all(|(i, n)| *n == i as u64);
                if let Some(ack) = ack {
                    let _ = ack.send(&json!({"count": seq.len(), "ordered": ordered}));
                }
            }
            "ask" => {
                // Server → client event with an ack; answers the client's ack with the client's answer.
                let reply =
                    socket.emit_with_ack("question", &arg(&args, 0), Duration::from_secs(5));
                tokio::spawn(async move {
                    let answer = match reply.await {
                        Ok(reply) => reply
                            .args
                            .first()
                            .and_then(|a| serde_json::from_str(a.get()).ok()),
                        Err(e) => Some(json!({"error": e.to_string()})),
                    };
                    if let Some(ack) = ack {
                        let _ = ack.send(&answer.unwrap_or(Value::Null));
                    }
                });
            }
            "kick" => socket.disconnect(),
            "panic" => panic!("the test handler panics on request"),
            "records" => {
                let records = self.records.lock().unwrap();
                let disconnects: HashMap<&String, Vec<&str>> = records
                    .disconnects
                    .iter()
                    .map(|(k, v)| (k, v.iter().map(|r| r.as_str()).collect()))
                    .collect();
                let body = json!({"disconnects": disconnects, "events": records.events, "connects": records.connects});
                drop(records);
                if let Some(ack) = ack {
                    let _ = ack.send(&body);
                }
            }
            _ => {}
        }
    }

    fn disconnect(&self, session: Arc<Session>, _socket: &Socket, reason: DisconnectReason) {
        self.records
            .lock()
            .unwrap()
            .disconnects
            .entry(session.label.clone())
            .or_default()
            .push(reason);
    }
}

/// A running test server.
pub struct Server {
    pub addr: SocketAddr,
    pub sio: SocketIo<TestHandler>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(config: confab_sio::Config) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sio = SocketIo::new(config, TestHandler::default());
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(confab_sio::serve(listener, sio.clone(), app, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            sio,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.sio.handler().records.lock().unwrap()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("shutdown took too long")
            .unwrap()
            .unwrap();
    }
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Sends `request` (a complete HTTP/1.1 request; `connection: close` is expected) and reads the answer.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A server refusing a request may stop reading it: a failed write still leaves an answer to read.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_all = async {
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            out.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("response");
    parse_response(&out)
}

pub fn parse_response(out: &[u8]) -> RawResponse {
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    let head = std::str::from_utf8(&out[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut body = out[end..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked")
    {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `GET path` with `connection: close`.
pub async fn get(addr: SocketAddr, path: &str) -> RawResponse {
    raw_http(
        addr,
        format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

/// `POST path` with a text body and `connection: close`.
pub async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> RawResponse {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    raw_http(addr, &request).await
}

/// Waits (up to 5 s) until `check` holds.
pub async fn eventually_async(mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for a condition");
}
