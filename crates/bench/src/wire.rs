//! What goes over the wire besides the JSON text the generator reads: the bytes themselves (counted
//! for "bytes on the wire per delivered message"), `permessage-deflate`, and the MessagePack parser.
//!
//! tungstenite has no `permessage-deflate`, so the stream under it is wrapped: server frames with RSV1
//! (compressed, RFC 7692, no context takeover as confab negotiates it) are inflated before tungstenite
//! reads them; the generator's own frames go uncompressed (RSV1 is per message: the client may). The
//! MessagePack parser is spoken by transcoding: the generator keeps building and reading the JSON
//! parser's text, and frames are transcoded at this edge (client CPU, not the server's).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use flate2::{Decompress, FlushDecompress};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from and written to every server socket, TCP payload (WebSocket frames and the HTTP
/// handshake).
pub static BYTES_IN: AtomicU64 = AtomicU64::new(0);
pub static BYTES_OUT: AtomicU64 = AtomicU64::new(0);

/// A server stream as tungstenite sees it: counted, and with compressed frames inflated.
pub struct Wire<S> {
    inner: S,
    /// Bytes read and not yet looked at (a frame still arriving).
    raw: Vec<u8>,
    /// Bytes ready for tungstenite.
    ready: Vec<u8>,
    /// Past the HTTP head: bytes are frames.
    framing: bool,
    /// The head wasn't a 101: bytes go through untouched.
    passthrough: bool,
}

impl<S> Wire<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            raw: Vec::new(),
            ready: Vec::new(),
            framing: false,
            passthrough: false,
        }
    }

    /// Moves complete frames from `raw` to `ready`, inflating compressed ones.
    fn process(&mut self) -> io::Result<()> {
        if !self.framing {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(());
            };
            let switching = self.raw.starts_with(b"HTTP/1.1 101");
            self.ready.extend(self.raw.drain(..end + 4));
            if !switching {
                // A refusal: its body is no frames; pass everything through as it comes.
                self.ready.append(&mut self.raw);
                self.framing = true;
                self.passthrough = true;
                return Ok(());
            }
            self.framing = true;
        }
        if self.passthrough {
            self.ready.append(&mut self.raw);
            return Ok(());
        }
        loop {
            let b = &self.raw[..];
            if b.len() < 2 {
                return Ok(());
            }
            let (len, header) = match b[1] & 0x7F {
                126 if b.len() < 4 => return Ok(()),
                126 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
                127 if b.len() < 10 => return Ok(()),
                127 => (
                    u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize,
                    10,
                ),
                n => (usize::from(n), 2),
            };
            if b.len() < header + len {
                return Ok(());
            }
            if b[0] & 0x40 == 0 {
                self.ready.extend(self.raw.drain(..header + len));
                continue;
            }
            let first = b[0] & !0x40;
            let payload = inflate(&b[header..header + len])?;
            self.raw.drain(..header + len);
            self.ready.push(first);
            match payload.len() {
                n if n < 126 => self.ready.push(n as u8),
                n if n <= 0xFFFF => {
                    self.ready.push(126);
                    self.ready.extend((n as u16).to_be_bytes());
                }
                n => {
                    self.ready.push(127);
                    self.ready.extend((n as u64).to_be_bytes());
                }
            }
            self.ready.extend(payload);
        }
    }
}

fn inflate(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(data.len() * 4 + 256);
    loop {
        let before = d.total_in() as usize;
        d.decompress_vec(&input[before..], &mut out, FlushDecompress::Sync)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity());
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Wire<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.ready.is_empty() {
                let n = self.ready.len().min(buf.remaining());
                buf.put_slice(&self.ready[..n]);
                self.ready.drain(..n);
                if self.ready.is_empty() && self.ready.capacity() > 4096 {
                    self.ready = Vec::new();
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut read))?;
            let filled = read.filled();
            if filled.is_empty() {
                // The end: hand over what's left as is (tungstenite reports the truncation).
                let rest = std::mem::take(&mut self.raw);
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                self.ready = rest;
                continue;
            }
            BYTES_IN.fetch_add(filled.len() as u64, Ordering::Relaxed);
            self.raw.extend_from_slice(filled);
            self.process()?;
            if self.raw.is_empty() && self.raw.capacity() > 4096 {
                self.raw = Vec::new();
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        BYTES_OUT.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One of the JSON parser's Socket.IO packets (without the Engine.IO `4`) as
/// socket.io-msgpack-parser encodes it.
pub fn to_msgpack(packet: &str) -> Vec<u8> {
    let kind = packet.as_bytes()[0] - b'0';
    let rest = &packet[1..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id: Option<u64> = rest[..digits].parse().ok();
    let json = &rest[digits..];
    let mut map = vec![
        (rmpv::Value::from("type"), rmpv::Value::from(kind)),
        (rmpv::Value::from("nsp"), rmpv::Value::from("/")),
    ];
    if !json.is_empty() {
        let data: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        map.push((rmpv::Value::from("data"), from_json(&data)));
    }
    if let Some(id) = id {
        map.push((rmpv::Value::from("id"), rmpv::Value::from(id)));
    }
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &rmpv::Value::Map(map)).expect("writing to a Vec");
    out
}

/// A MessagePack packet from the server as the JSON parser's text (without the Engine.IO `4`), or
/// `None` if it isn't one.
pub fn from_msgpack(bytes: &[u8]) -> Option<String> {
    let value = rmpv::decode::read_value(&mut &bytes[..]).ok()?;
    let map = value.as_map()?;
    let field = |name: &str| {
        map.iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    };
    let kind = field("type")?.as_u64()?;
    let mut out = kind.to_string();
    if let Some(id) = field("id").and_then(rmpv::Value::as_u64) {
        out.push_str(&id.to_string());
    }
    if let Some(data) = field("data") {
        out.push_str(&to_json(data).to_string());
    }
    Some(out)
}

fn from_json(value: &Value) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::from(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => rmpv::Value::from(u),
            (_, Some(i)) => rmpv::Value::from(i),
            _ => rmpv::Value::from(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::Array(a) => rmpv::Value::Array(a.iter().map(from_json).collect()),
        Value::Object(o) => rmpv::Value::Map(
            o.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

fn to_json(value: &rmpv::Value) -> Value {
    match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::from(*b),
        rmpv::Value::Integer(i) => i
            .as_u64()
            .map(Value::from)
            .or_else(|| i.as_i64().map(Value::from))
            .unwrap_or(Value::Null),
        rmpv::Value::F32(f) => Value::from(f64::from(*f)),
        rmpv::Value::F64(f) => Value::from(*f),
        rmpv::Value::String(s) => Value::from(s.as_str().unwrap_or_default()),
        rmpv::Value::Binary(_) | rmpv::Value::Ext(..) => Value::Null,
        rmpv::Value::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        rmpv::Value::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_round_trips_the_packets_the_generator_uses() {
        for packet in [
            r#"0{"token":"t"}"#,
            r#"27["message:send",{"conversation_id":"c","client_id":"p0m1","body":"hi"}]"#,
            r#"37[{"ok":true,"data":{"n":-1,"x":2.5}}]"#,
            "1",
        ] {
            assert_eq!(from_msgpack(&to_msgpack(packet)).as_deref(), Some(packet));
        }
    }
}
