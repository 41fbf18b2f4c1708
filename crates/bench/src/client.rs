//! One simulated user's Socket.IO connection: the handshake, then a single task that owns the
//! WebSocket, answers heartbeats, writes the sends it is handed and reports acks and
//! deliveries to the [`Recorder`].
//!
//! Why not `confab_sio_client::Client`: that client hands every event to its owner as a
//! `serde_json::Value` through a queue, so reading a delivery takes a second task per
//! connection and a full JSON tree per message. A load generator only needs a few fields of
//! each frame, so this loop parses exactly those (borrowing from the frame) and records them
//! in place: one task and one small heap footprint per connection. The wire format itself
//! comes from `confab_sio_client::packet`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use confab_sio_client::packet::{self, EnginePacket};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::stats::{AckOutcome, Recorder};
use crate::wire::{self, Wire};

type WsStream = WebSocketStream<Wire<TcpStream>>;

/// tungstenite's read buffer; its 128 KiB default is sized for bulk transfer, and ten thousand
/// idle connections would pin over a gigabyte with it. Larger frames still get through.
const READ_BUFFER: usize = 4 * 1024;
/// Frames queued together are written out in one go up to this size.
const WRITE_BUFFER: usize = 4 * 1024;
/// Frames handled per wake-up before the task yields, so one busy socket (a large fan-out)
/// can't starve the others on a single-threaded runtime.
const FRAMES_PER_POLL: usize = 64;

/// A server to connect to, parsed once from `--url`.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    addr: SocketAddr,
    ws_url: String,
    /// Speak the MessagePack parser.
    msgpack: bool,
    /// Offer `permessage-deflate`.
    deflate: bool,
}

impl Target {
    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Parses `http://host:port` (or `ws://`); the host must resolve now.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .with_context(|| format!("--url {url:?}: expected http://host:port (no TLS)"))?;
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            bail!("--url {url:?}: give the server's root, without a path");
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
            .with_context(|| format!("--url {url:?}: resolving {with_port}"))?
            .next()
            .with_context(|| format!("--url {url:?}: {with_port} has no address"))?;
        Ok(Self {
            url: url.to_owned(),
            addr,
            ws_url: format!("ws://{with_port}/socket.io/?EIO=4&transport=websocket"),
            msgpack: false,
            deflate: false,
        })
    }

    /// The same server, spoken to with the MessagePack parser and/or offering compression.
    pub fn with_wire(mut self, msgpack: bool, deflate: bool) -> Self {
        self.msgpack = msgpack;
        self.deflate = deflate;
        self
    }

    /// Whether the server is on an IPv4 loopback address (so 127.0.0.x sources reach it).
    pub fn is_loopback_v4(&self) -> bool {
        matches!(self.addr.ip(), IpAddr::V4(ip) if ip.is_loopback())
    }
}

/// Why a connect failed, as a short key for counting (`"refused: unauthorized"`, `"timeout"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailure(pub String);

/// Connects to `target` as the holder of `token`: TCP (from `local` if given), the WebSocket
/// upgrade, Engine.IO OPEN, and the Socket.IO CONNECT with `{"token": …}`.
pub async fn connect(
    target: &Target,
    local: Option<IpAddr>,
    token: &str,
    timeout: Duration,
) -> Result<WsStream, ConnectFailure> {
    match tokio::time::timeout(timeout, handshake(target, local, token)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectFailure("timeout".into())),
    }
}

/// Lets the kernel pick the source port at `connect`, not at `bind`. A port picked at `bind`
/// must be free for every destination, so ports still in TIME_WAIT from an earlier run (60 s)
/// are excluded and a run that reconnects 10,000 users twice within a minute exhausts the
/// range; picked at `connect`, a port is only excluded for the same destination. Best effort:
/// without it binding still works, only with fewer ports.
fn bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option of the right size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

async fn handshake(
    target: &Target,
    local: Option<IpAddr>,
    token: &str,
) -> Result<WsStream, ConnectFailure> {
    let io_failure = |what: &str, e: io::Error| ConnectFailure(format!("{what}: {}", io_kind(&e)));
    let tcp = match local {
        Some(local) => {
            let socket = match local {
                IpAddr::V4(_) => TcpSocket::new_v4(),
                IpAddr::V6(_) => TcpSocket::new_v6(),
            }
            .map_err(|e| io_failure("socket", e))?;
            bind_address_no_port(&socket);
            socket
                .bind(SocketAddr::new(local, 0))
                .map_err(|e| io_failure("bind", e))?;
            socket
                .connect(target.addr)
                .await
                .map_err(|e| io_failure("connect", e))?
        }
        None => TcpStream::connect(target.addr)
            .await
            .map_err(|e| io_failure("connect", e))?,
    };
    // Sends are small frames that should leave at once, not wait for Nagle.
    tcp.set_nodelay(true)
        .map_err(|e| io_failure("nodelay", e))?;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER);
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(target.ws_url.as_str())
            .map_err(|e| ConnectFailure(format!("request: {e}")))?;
    if target.deflate {
        request.headers_mut().insert(
            "sec-websocket-extensions",
            tungstenite::http::HeaderValue::from_static(
                "permessage-deflate; client_max_window_bits",
            ),
        );
    }
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(request, Wire::new(tcp), Some(config))
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(response) => {
                    ConnectFailure(format!("http {}", response.status().as_u16()))
                }
                tungstenite::Error::Io(e) => io_failure("upgrade", e),
                other => ConnectFailure(format!("upgrade: {other}")),
            })?;

    let protocol = |what: String| ConnectFailure(format!("protocol: {what}"));
    match packet::decode_engine(&next_text(&mut ws).await?) {
        Ok(EnginePacket::Open(_)) => {}
        Ok(other) => return Err(protocol(format!("expected OPEN, got {other:?}"))),
        Err(e) => return Err(protocol(e.to_string())),
    }
    let auth = serde_json::json!({ "token": token });
    ws.send(frame_for(
        target.msgpack,
        packet::encode_connect(Some(&auth)),
    ))
    .await
    .map_err(|e| ConnectFailure(format!("send: {e}")))?;
    loop {
        let text = next_text(&mut ws).await?;
        let payload = match packet::decode_engine(&text) {
            Ok(EnginePacket::Message(payload)) => payload,
            // A slow answer may let a heartbeat come first.
            Ok(EnginePacket::Ping(p)) => {
                ws.send(Message::text(packet::encode_pong(p)))
                    .await
                    .map_err(|e| ConnectFailure(format!("send: {e}")))?;
                continue;
            }
            Ok(EnginePacket::Pong(_) | EnginePacket::Noop) => continue,
            Ok(other) => return Err(protocol(format!("unexpected {other:?} before CONNECT"))),
            Err(e) => return Err(protocol(e.to_string())),
        };
        return match packet::decode_socketio(payload).map(|d| d.packet) {
            Ok(packet::Packet::Connect(_)) => Ok(ws),
            Ok(packet::Packet::ConnectError { message, data }) => {
                let reason = data
                    .as_ref()
                    .and_then(|d| d.get("reason").or_else(|| d.get("code")))
                    .and_then(Value::as_str)
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                Err(ConnectFailure(format!("refused: {message}{reason}")))
            }
            Ok(other) => Err(protocol(format!("expected CONNECT, got {other:?}"))),
            Err(e) => Err(protocol(e.to_string())),
        };
    }
}

/// A Socket.IO packet of the JSON parser (`4…`) as the connection's parser sends it.
fn frame_for(msgpack: bool, text: String) -> Message {
    match text.strip_prefix('4') {
        Some(packet) if msgpack => Message::binary(wire::to_msgpack(packet)),
        _ => Message::text(text),
    }
}

/// The next text frame of the handshake (a MessagePack packet as the JSON parser's text).
async fn next_text(ws: &mut WsStream) -> Result<String, ConnectFailure> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Binary(bytes))) => {
                return wire::from_msgpack(&bytes)
                    .map(|packet| format!("4{packet}"))
                    .ok_or_else(|| ConnectFailure("protocol: binary frame".into()));
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(ConnectFailure("closed during the handshake".into()));
            }
            Some(Ok(_)) => continue,
            Some(Err(tungstenite::Error::Io(e))) => {
                return Err(ConnectFailure(format!("read: {}", io_kind(&e))));
            }
            Some(Err(e)) => return Err(ConnectFailure(format!("read: {e}"))),
        }
    }
}

fn io_kind(e: &io::Error) -> String {
    match e.raw_os_error() {
        // EADDRNOTAVAIL and EMFILE are the ones a big run hits; name them plainly.
        Some(libc::EADDRNOTAVAIL) => "no free source port (EADDRNOTAVAIL)".into(),
        Some(libc::EMFILE) => "too many open files (EMFILE)".into(),
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        _ => format!("{:?}", e.kind()),
    }
}

/// A conversation the generator sends to, with its send payload prefix prepared once.
#[derive(Debug)]
pub struct Conversation {
    pub id: String,
    /// `{"conversation_id":"…","client_id":"` — the start of every send's payload.
    payload_prefix: String,
}

impl Conversation {
    pub fn new(id: &str) -> Self {
        let payload_prefix = format!("{{\"conversation_id\":{},\"client_id\":\"", Value::from(id));
        Self {
            id: id.to_owned(),
            payload_prefix,
        }
    }
}

/// What every connection shares: where to report, and the message body to send.
pub struct Shared {
    pub recorder: Arc<Recorder>,
    /// The body, already JSON-encoded with its quotes.
    body_json: String,
    /// Instead of `body_json`, a body of words from a vocabulary of this size ([`words_body`]).
    words: Option<u32>,
    /// Speak the MessagePack parser.
    msgpack: bool,
}

impl Shared {
    pub fn new(recorder: Arc<Recorder>, body: &str, msgpack: bool) -> Self {
        Self {
            recorder,
            body_json: Value::from(body).to_string(),
            words: None,
            msgpack,
        }
    }

    /// Sends text to search instead of one fixed body: see [`words_body`].
    pub fn with_words(mut self, vocabulary: u32) -> Self {
        self.words = Some(vocabulary.max(1));
        self
    }
}

/// Words in each [`words_body`].
pub const WORDS_PER_BODY: usize = 12;

/// The body of message `msg` of `phase` for search benchmarks: [`WORDS_PER_BODY`] words `w0`,
/// `w1`, … from a vocabulary of `vocabulary`, skewed like real text (word `wN` is drawn with
/// probability about N^(-2/3), as `floor(vocabulary × r³)` for uniform r): of 5,000 words, `w0` is
/// in about half the messages and `w1000` in one in 400. The same (phase, msg) always gives
/// the same text, so a run can be repeated.
pub fn words_body(vocabulary: u32, phase: u32, msg: u32) -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(
        (u64::from(phase) << 32 | u64::from(msg)) ^ 0x5eed_5eed_5eed_5eed,
    );
    let mut body = String::with_capacity(WORDS_PER_BODY * 6);
    for i in 0..WORDS_PER_BODY {
        let r: f64 = rng.random();
        let word = ((f64::from(vocabulary) * r * r * r) as u32).min(vocabulary - 1);
        if i > 0 {
            body.push(' ');
        }
        let _ = write!(body, "w{word}");
    }
    body
}

/// The `client_id` of message `msg` of phase `phase`; deliveries are matched back by it.
pub fn client_id(phase: u32, msg: u32) -> String {
    format!("p{phase}m{msg}")
}

/// The inverse of [`client_id`].
pub fn parse_client_id(id: &str) -> Option<(u32, u32)> {
    let (phase, msg) = id.strip_prefix('p')?.split_once('m')?;
    Some((phase.parse().ok()?, msg.parse().ok()?))
}

/// What a connection is asked to do.
enum Command {
    /// `message:send` of message `msg` of phase `phase`.
    Send {
        conversation: Arc<Conversation>,
        phase: u32,
        msg: u32,
    },
    /// Any event with an ack, answered with the ack's first argument.
    Request {
        event: &'static str,
        payload: Value,
        reply: oneshot::Sender<Value>,
    },
    /// Leave and close the WebSocket.
    Close,
}

/// Commands waiting for a connection task. A `VecDeque` behind a mutex plus a stored waker
/// instead of a channel: an empty `VecDeque` allocates nothing, a channel allocates its first
/// block of slots up front, and most of ten thousand connections are idle.
#[derive(Default)]
struct Mailbox {
    state: Mutex<MailboxState>,
}

#[derive(Default)]
struct MailboxState {
    queue: VecDeque<Command>,
    waker: Option<Waker>,
    /// Set when the connection task ends; commands are refused from then on.
    dead: bool,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, MailboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a command; returns it back if the connection is gone.
    fn push(&self, command: Command) -> Result<(), Command> {
        let waker = {
            let mut state = self.lock();
            if state.dead {
                return Err(command);
            }
            state.queue.push_back(command);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// The next command; when there is none, `waker` is stored to be woken by the next push.
    fn pop(&self, waker: &Waker) -> Option<Command> {
        let mut state = self.lock();
        let command = state.queue.pop_front();
        if command.is_none() && !state.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            state.waker = Some(waker.clone());
        }
        command
    }

    fn kill(&self) {
        let mut state = self.lock();
        state.dead = true;
        // Dropping queued requests fails their callers at once.
        state.queue.clear();
    }
}

/// The generator's side of one connection: hand it work.
#[derive(Clone)]
pub struct Handle {
    mailbox: Arc<Mailbox>,
}

impl Handle {
    /// Asks the connection to send message `msg` of `phase`; false if the connection is gone.
    pub fn send_message(&self, conversation: &Arc<Conversation>, phase: u32, msg: u32) -> bool {
        self.mailbox
            .push(Command::Send {
                conversation: conversation.clone(),
                phase,
                msg,
            })
            .is_ok()
    }

    /// Emits `event` with `payload` and waits up to `timeout` for the ack's first argument.
    pub async fn request(
        &self,
        event: &'static str,
        payload: Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let (reply, answer) = oneshot::channel();
        if self
            .mailbox
            .push(Command::Request {
                event,
                payload,
                reply,
            })
            .is_err()
        {
            bail!("{event}: the connection is closed");
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => bail!("{event}: the connection closed before the ack"),
            Err(_) => bail!("{event}: no ack within {timeout:?}"),
        }
    }

    /// Asks the connection to leave and close.
    pub fn close(&self) {
        let _ = self.mailbox.push(Command::Close);
    }

    /// Whether the connection is still up.
    pub fn is_alive(&self) -> bool {
        !self.mailbox.lock().dead
    }
}

/// What an ack id is waiting for.
enum Pending {
    Send { phase: u32, msg: u32 },
    Request(oneshot::Sender<Value>),
}

/// The connection task's state.
pub struct Connection {
    ws: WsStream,
    mailbox: Arc<Mailbox>,
    shared: Arc<Shared>,
    /// Frames to write, in order.
    outgoing: VecDeque<Message>,
    /// Whether frames were handed to the sink since the last completed flush.
    unflushed: bool,
    next_ack_id: u64,
    /// Acks awaited, oldest first; a short list, searched linearly.
    pending: Vec<(u64, Pending)>,
    /// The last seq delivered per conversation, to check delivery order.
    last_seq: Vec<(Box<str>, u64)>,
    /// Set once the generator asked to close.
    closing: bool,
}

/// Creates the connection task's state and the handle to drive it.
pub fn attach(ws: WsStream, shared: Arc<Shared>) -> (Connection, Handle) {
    let mailbox = Arc::new(Mailbox::default());
    let connection = Connection {
        ws,
        mailbox: mailbox.clone(),
        shared,
        outgoing: VecDeque::new(),
        unflushed: false,
        next_ack_id: 0,
        pending: Vec::new(),
        last_seq: Vec::new(),
        closing: false,
    };
    (connection, Handle { mailbox })
}

/// How a connection ended.
enum Ending {
    /// The generator closed it.
    Closed,
    /// It ended on its own, for this reason.
    Lost(String),
}

/// The fields of a `message:new` the generator reads.
#[derive(Deserialize)]
struct NewMessage<'a> {
    #[serde(borrow)]
    message: MessageFields<'a>,
}

#[derive(Deserialize)]
struct MessageFields<'a> {
    #[serde(borrow)]
    conversation_id: Cow<'a, str>,
    seq: u64,
    #[serde(borrow, default)]
    client_id: Option<Cow<'a, str>>,
}

/// The fields of an ack envelope the generator reads.
#[derive(Deserialize)]
struct Envelope<'a> {
    ok: bool,
    #[serde(borrow, default)]
    error: Option<ErrorFields<'a>>,
}

#[derive(Deserialize)]
struct ErrorFields<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
}

impl Connection {
    /// Runs the connection until it is closed or lost.
    pub async fn run(mut self) {
        let ending = poll_fn(|cx| self.poll_step(cx)).await;
        self.mailbox.kill();
        if let Ending::Lost(reason) = ending {
            self.shared.recorder.disconnected(&reason);
        }
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        let mut frames = 0;
        loop {
            // `pop` stores the waker when the mailbox is empty, so a later push wakes us.
            while let Some(command) = self.mailbox.pop(cx.waker()) {
                self.on_command(command);
            }
            if let Err(e) = self.poll_write(cx) {
                return Poll::Ready(self.lost(&e));
            }
            match self.ws.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Err(ending) = self.on_frame(frame, Instant::now()) {
                        return Poll::Ready(ending);
                    }
                    frames += 1;
                    if frames == FRAMES_PER_POLL {
                        // Write what the frames queued (pongs), then let other tasks run.
                        if let Err(e) = self.poll_write(cx) {
                            return Poll::Ready(self.lost(&e));
                        }
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(self.lost(&e)),
                Poll::Ready(None) => {
                    return Poll::Ready(if self.closing {
                        Ending::Closed
                    } else {
                        Ending::Lost("transport close".into())
                    });
                }
                // Everything queued so far was written (or waits for the socket, which will
                // wake us), and the mailbox has our waker.
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn lost(&self, e: &tungstenite::Error) -> Ending {
        match e {
            _ if self.closing => Ending::Closed,
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                Ending::Lost("transport close".into())
            }
            tungstenite::Error::Io(e) => Ending::Lost(format!("transport error: {}", io_kind(e))),
            other => Ending::Lost(format!("transport error: {other}")),
        }
    }

    /// Hands queued frames to the sink and flushes; stops where the socket is not ready (it
    /// wakes the task when it is).
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), tungstenite::Error> {
        while !self.outgoing.is_empty() {
            match self.ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    let frame = self.outgoing.pop_front().expect("not empty");
                    self.ws.start_send_unpin(frame)?;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
        if self.unflushed {
            match self.ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    fn ack_id(&mut self) -> u64 {
        let id = self.next_ack_id;
        self.next_ack_id += 1;
        id
    }

    fn on_command(&mut self, command: Command) {
        if self.closing {
            return;
        }
        match command {
            Command::Send {
                conversation,
                phase,
                msg,
            } => {
                let id = self.ack_id();
                // Words are plain ASCII: quoted, they are their own JSON.
                let words = self
                    .shared
                    .words
                    .map(|vocabulary| format!("\"{}\"", words_body(vocabulary, phase, msg)));
                let body_json = words.as_deref().unwrap_or(&self.shared.body_json);
                let mut frame =
                    String::with_capacity(conversation.payload_prefix.len() + body_json.len() + 48);
                // Writing to a String can't fail.
                let _ = write!(
                    frame,
                    "42{id}[\"message:send\",{}{}\",\"body\":{}}}]",
                    conversation.payload_prefix,
                    client_id(phase, msg),
                    body_json
                );
                self.outgoing
                    .push_back(frame_for(self.shared.msgpack, frame));
                self.pending.push((id, Pending::Send { phase, msg }));
                self.shared.recorder.sent(phase, msg, Instant::now());
            }
            Command::Request {
                event,
                payload,
                reply,
            } => {
                let id = self.ack_id();
                let frame = packet::encode_event(event, std::slice::from_ref(&payload), Some(id));
                self.outgoing
                    .push_back(frame_for(self.shared.msgpack, frame));
                self.pending.push((id, Pending::Request(reply)));
            }
            Command::Close => {
                self.closing = true;
                self.outgoing
                    .push_back(frame_for(self.shared.msgpack, packet::encode_disconnect()));
                self.outgoing.push_back(Message::Close(None));
            }
        }
    }

    fn on_frame(&mut self, frame: Message, now: Instant) -> Result<(), Ending> {
        match frame {
            Message::Text(text) => {
                self.shared.recorder.frame_in(text.len());
                self.on_engine_packet(text.as_str(), now)
            }
            Message::Close(_) => Err(if self.closing {
                Ending::Closed
            } else {
                Ending::Lost("transport close".into())
            }),
            Message::Binary(bytes) => match wire::from_msgpack(&bytes) {
                Some(packet) => {
                    self.shared.recorder.frame_in(bytes.len());
                    self.on_socketio_packet(&packet, now)
                }
                None => {
                    self.shared.recorder.unparsed();
                    Ok(())
                }
            },
            // tungstenite answers WebSocket pings itself.
            _ => Ok(()),
        }
    }

    fn on_engine_packet(&mut self, text: &str, now: Instant) -> Result<(), Ending> {
        match text.as_bytes().first() {
            Some(b'4') => self.on_socketio_packet(&text[1..], now),
            Some(b'2') => {
                // A heartbeat: answer at once, or the server drops us after pingTimeout.
                self.outgoing
                    .push_front(Message::text(packet::encode_pong(&text[1..])));
                Ok(())
            }
            Some(b'1') => Err(Ending::Lost("transport close".into())),
            Some(b'3' | b'5' | b'6') => Ok(()),
            _ => {
                self.shared.recorder.unparsed();
                Ok(())
            }
        }
    }

    fn on_socketio_packet(&mut self, payload: &str, now: Instant) -> Result<(), Ending> {
        let bytes = payload.as_bytes();
        match bytes.first() {
            Some(b'2') => {
                self.on_event(&payload[1..], now);
                Ok(())
            }
            Some(b'3') => {
                self.on_ack(&payload[1..], now);
                Ok(())
            }
            Some(b'1') => Err(Ending::Lost("io server disconnect".into())),
            _ => {
                self.shared.recorder.unparsed();
                Ok(())
            }
        }
    }

    /// `["name", payload]`: only `message:new` is measured; the rest is skipped unparsed.
    fn on_event(&mut self, json: &str, now: Instant) {
        const MESSAGE_NEW: &str = "[\"message:new\",";
        if !json.starts_with(MESSAGE_NEW) {
            self.shared.recorder.activity(now);
            return;
        }
        let Ok((_, new)) = serde_json::from_str::<(IgnoredAny, NewMessage<'_>)>(json) else {
            self.shared.recorder.unparsed();
            return;
        };
        let message = new.message;
        match self
            .last_seq
            .iter_mut()
            .find(|(id, _)| **id == *message.conversation_id)
        {
            Some((_, last)) => {
                if message.seq <= *last {
                    self.shared.recorder.out_of_order();
                } else {
                    *last = message.seq;
                }
            }
            None => self
                .last_seq
                .push((message.conversation_id.into(), message.seq)),
        }
        match message.client_id.as_deref().and_then(parse_client_id) {
            Some((phase, msg)) => self.shared.recorder.delivered(phase, msg, now),
            None => self.shared.recorder.activity(now),
        }
    }

    /// `<id>[args…]`: the answer to a send or a request.
    fn on_ack(&mut self, rest: &str, now: Instant) {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (Ok(id), json) = (rest[..digits].parse::<u64>(), &rest[digits..]) else {
            self.shared.recorder.unparsed();
            return;
        };
        let Some(position) = self.pending.iter().position(|(pending, _)| *pending == id) else {
            self.shared.recorder.unparsed();
            return;
        };
        match self.pending.remove(position).1 {
            Pending::Send { phase, msg } => {
                let outcome = match serde_json::from_str::<(Envelope<'_>,)>(json) {
                    Ok((Envelope { ok: true, .. },)) => AckOutcome::Ok,
                    Ok((Envelope {
                        error: Some(error), ..
                    },)) => AckOutcome::Error(error.code.into_owned()),
                    Ok(_) | Err(_) => AckOutcome::Error("bad_ack".into()),
                };
                self.shared.recorder.acked(phase, msg, now, outcome);
            }
            Pending::Request(reply) => {
                self.shared.recorder.activity(now);
                let value = serde_json::from_str::<Vec<Value>>(json)
                    .ok()
                    .and_then(|args| args.into_iter().next())
                    .unwrap_or(Value::Null);
                let _ = reply.send(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_round_trip() {
        assert_eq!(client_id(3, 41), "p3m41");
        assert_eq!(parse_client_id("p3m41"), Some((3, 41)));
        assert_eq!(parse_client_id("c-7f3a"), None);
        assert_eq!(parse_client_id("p3"), None);
        assert_eq!(parse_client_id("pxm1"), None);
    }

    #[test]
    fn send_payload_prefix_is_json() {
        let c = Conversation::new("01937a\"x");
        let payload = format!("{}p1m2\",\"body\":\"hi\"}}", c.payload_prefix);
        let v: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["conversation_id"], "01937a\"x");
        assert_eq!(v["client_id"], "p1m2");
    }

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:3001").unwrap();
        assert!(t.is_loopback_v4());
        assert_eq!(
            t.ws_url,
            "ws://127.0.0.1:3001/socket.io/?EIO=4&transport=websocket"
        );
        assert!(Target::parse("https://127.0.0.1:3001").is_err());
        assert!(Target::parse("http://127.0.0.1:3001/chat").is_err());
        assert_eq!(Target::parse("ws://127.0.0.1/").unwrap().addr.port(), 80);
    }

    #[test]
    fn reads_the_fields_it_needs() {
        let frame = r#"["message:new",{"message":{"id":"m","conversation_id":"c1","seq":7,"sender_id":"u","client_id":"p0m5","body":"x","created_at":"t","edited_at":null,"deleted_at":null}}]"#;
        let (_, new) = serde_json::from_str::<(IgnoredAny, NewMessage<'_>)>(frame).unwrap();
        assert_eq!(new.message.conversation_id, "c1");
        assert_eq!(new.message.seq, 7);
        assert_eq!(new.message.client_id.as_deref(), Some("p0m5"));

        let (ok,) =
            serde_json::from_str::<(Envelope<'_>,)>(r#"[{"ok":true,"data":{"message":{}}}]"#)
                .unwrap();
        assert!(ok.ok);
        let (err,) = serde_json::from_str::<(Envelope<'_>,)>(
            r#"[{"ok":false,"error":{"code":"rate_limited","retry_after_ms":5}}]"#,
        )
        .unwrap();
        assert_eq!(err.error.unwrap().code, "rate_limited");
    }
}
