//! Opening a connection: TCP, the WebSocket upgrade, Engine.IO OPEN and the Socket.IO CONNECT.
//!
//! This runs in the caller's task; only a fully connected socket is handed to a connection
//! task, so a failed connect leaves nothing running behind it.

use std::io;
use std::net::{IpAddr, SocketAddr};

use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue, Uri};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::connection::WsStream;
use crate::packet::{self, Decoded, EnginePacket, OpenInfo, Packet};
use crate::{ConnectError, ConnectOptions};

/// The read buffer tungstenite keeps for each connection. Its default (128 KiB) suits bulk
/// transfer, not thousands of chat connections; larger frames still get through, the buffer
/// just grows for them. Going lower saves nothing: the 4 KiB buffer tungstenite's handshake
/// reads the HTTP response into is reused as the read buffer. (Measured: about 6.7 KB of heap
/// per idle connection in all, 4 KiB of it this buffer.)
const WS_READ_BUFFER: usize = 4 * 1024;
/// Frames queued by one flush are gathered up to this size before a write to the socket.
const WS_WRITE_BUFFER: usize = 4 * 1024;

/// A connection that has joined the default namespace.
pub(crate) struct Established {
    pub ws: WsStream,
    pub open: OpenInfo,
    /// The Socket.IO sid, from `40{"sid": …}`.
    pub sid: String,
    pub local_addr: SocketAddr,
}

/// Connects, upgrades, and joins the default namespace.
pub(crate) async fn establish(opts: &ConnectOptions) -> Result<Established, ConnectError> {
    let target = Target::parse(&opts.url, &opts.path)?;
    let tcp = connect_tcp(&target.host, target.port, opts.local_addr).await?;
    let local_addr = tcp.local_addr()?;

    let mut request = target
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Protocol(format!("bad URL {:?}: {e}", target.ws_url)))?;
    for (name, value) in &opts.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ConnectError::Protocol(format!("bad header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| ConnectError::Protocol(format!("bad value for header {name}: {e}")))?;
        request.headers_mut().append(name, value);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER);
    let (mut ws, _response) =
        tokio_tungstenite::client_async_with_config(request, tcp, Some(config)).await?;

    let open = match packet::decode_engine(&next_text(&mut ws).await?) {
        Ok(EnginePacket::Open(open)) => open,
        Ok(other) => return Err(protocol(format!("expected Engine.IO OPEN, got {other:?}"))),
        Err(e) => return Err(protocol(e)),
    };
    let sid = join_namespace(&mut ws, opts).await?;
    Ok(Established {
        ws,
        open,
        sid,
        local_addr,
    })
}

/// Where to connect, taken apart from the options' URL and path.
struct Target {
    host: String,
    port: u16,
    /// `ws://host:port{path}?EIO=4&transport=websocket[&query from the URL]`.
    ws_url: String,
}

impl Target {
    fn parse(url: &str, path: &str) -> Result<Self, ConnectError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ConnectError::Protocol(format!("bad URL {url:?}: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "ws") => {}
            Some("https" | "wss") => {
                return Err(protocol("TLS (https/wss) is not supported"));
            }
            _ => return Err(protocol(format!("URL {url:?} needs an http or ws scheme"))),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| protocol(format!("URL {url:?} has no host")))?;
        // The URL's path names a namespace in Socket.IO clients; only "/" is supported.
        if !matches!(uri.path(), "" | "/") {
            return Err(protocol(format!(
                "namespace {:?} is not supported: only \"/\"",
                uri.path()
            )));
        }
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let mut ws_url = format!("ws://{authority}{path}?EIO=4&transport=websocket");
        if let Some(query) = uri.query().filter(|q| !q.is_empty()) {
            ws_url.push('&');
            ws_url.push_str(query);
        }
        Ok(Self {
            // An IPv6 host comes in brackets ("[::1]"), which address lookup does not want.
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            ws_url,
        })
    }
}

/// Opens the TCP connection, from `local_addr` when one is given.
async fn connect_tcp(
    host: &str,
    port: u16,
    local_addr: Option<IpAddr>,
) -> Result<TcpStream, ConnectError> {
    let mut last_error = None;
    for remote in tokio::net::lookup_host((host, port)).await? {
        let attempt = match local_addr {
            // Binding first is what picks the source address; port 0 lets the kernel choose
            // the port, out of that address's own range.
            Some(local) if local.is_ipv4() == remote.is_ipv4() => {
                let socket = match local {
                    IpAddr::V4(_) => TcpSocket::new_v4()?,
                    IpAddr::V6(_) => TcpSocket::new_v6()?,
                };
                match socket.bind(SocketAddr::new(local, 0)) {
                    Ok(()) => socket.connect(remote).await,
                    Err(e) => Err(e),
                }
            }
            Some(_) => continue,
            None => TcpStream::connect(remote).await,
        };
        match attempt {
            Ok(tcp) => {
                // Small frames (events, pongs) should leave at once, not wait for Nagle.
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(ConnectError::Io(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no usable address for {host}:{port}"),
        )
    })))
}

/// Sends the Socket.IO CONNECT and waits for its answer; returns the sid.
async fn join_namespace(ws: &mut WsStream, opts: &ConnectOptions) -> Result<String, ConnectError> {
    ws.send(Message::text(packet::encode_connect(opts.auth.as_ref())))
        .await?;
    loop {
        let text = next_text(ws).await?;
        let payload = match packet::decode_engine(&text).map_err(protocol)? {
            EnginePacket::Message(payload) => payload,
            // A slow answer may let a heartbeat come first.
            EnginePacket::Ping(payload) => {
                if opts.answer_pings {
                    ws.send(Message::text(packet::encode_pong(payload))).await?;
                }
                continue;
            }
            EnginePacket::Pong(_) | EnginePacket::Noop => continue,
            EnginePacket::Close => {
                return Err(protocol("the server closed the session before CONNECT"));
            }
            other => return Err(protocol(format!("unexpected {other:?} before CONNECT"))),
        };
        let Decoded { namespace, packet } = packet::decode_socketio(payload).map_err(protocol)?;
        if namespace != "/" {
            continue;
        }
        return match packet {
            Packet::Connect(Some(Value::Object(mut data))) => match data.remove("sid") {
                Some(Value::String(sid)) => Ok(sid),
                _ => Err(protocol("CONNECT answer without a sid")),
            },
            Packet::ConnectError { message, data } => Err(ConnectError::Refused { message, data }),
            other => Err(protocol(format!("expected CONNECT, got {other:?}"))),
        };
    }
}

/// The next text frame, skipping WebSocket-level pings and pongs.
async fn next_text(ws: &mut WsStream) -> Result<String, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                return Err(protocol("unexpected binary frame during the handshake"));
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(protocol(
                    "the server closed the WebSocket during the handshake",
                ));
            }
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

fn protocol(message: impl ToString) -> ConnectError {
    ConnectError::Protocol(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, path: &str) -> Target {
        Target::parse(url, path).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn builds_the_websocket_url() {
        let t = target("http://127.0.0.1:3001", "/socket.io/");
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 3001));
        assert_eq!(
            t.ws_url,
            "ws://127.0.0.1:3001/socket.io/?EIO=4&transport=websocket"
        );

        let t = target("ws://localhost/", "custom");
        assert_eq!((t.host.as_str(), t.port), ("localhost", 80));
        assert_eq!(t.ws_url, "ws://localhost/custom?EIO=4&transport=websocket");

        let t = target("http://[::1]:9000/?room=a", "/socket.io/");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(
            t.ws_url,
            "ws://[::1]:9000/socket.io/?EIO=4&transport=websocket&room=a"
        );
    }

    #[test]
    fn rejects_unsupported_urls() {
        for url in [
            "https://example.com",
            "wss://example.com",
            "ftp://example.com",
            "http://127.0.0.1:3001/chat",
            "127.0.0.1:3001",
            "not a url",
        ] {
            assert!(
                matches!(
                    Target::parse(url, "/socket.io/"),
                    Err(ConnectError::Protocol(_))
                ),
                "{url}"
            );
        }
    }
}
