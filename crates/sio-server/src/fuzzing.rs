//! The fuzz body for confab-sio's packet decoding, shared by the `sio_packets` target in confab's
//! `fuzz/` (through the `fuzzing` feature) and by the seeded smoke test below, which runs on stable.
//!
//! It panics when a property fails:
//! - text (Engine.IO packets, polling payloads, Socket.IO packets): decoding never panics, and
//!   whatever decodes re-encodes, with the server's own encoders, to something that decodes to
//!   the same packet;
//! - binary (the bytes of a WebSocket stream): the frame reader never panics, yields text only
//!   when it is UTF-8, never a message over its limit, and the same messages and error however
//!   the stream is split into reads.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;
use tokio::io::AsyncWrite;

use crate::engine::packet::{self as eio, Frame, PayloadItem};
use crate::socketio::packet::{self as sio, Packet};
use crate::ws::frame::{FrameReader, Message};
use crate::ws::io::WsIo;

/// Small, so fuzzed frames reach the size checks.
const MAX_MESSAGE: usize = 256;

/// Decodes `data` as text packets (when it is UTF-8) and as a client's WebSocket byte stream.
pub fn packets(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        text_packets(text);
    }
    websocket_stream(data);
}

fn text_packets(text: &str) {
    // An Engine.IO packet, and the Socket.IO packet in it.
    if let Ok(eio::Packet::Message(inner)) = eio::Packet::parse(text) {
        socketio_packet(inner);
    }
    socketio_packet(text);
    polling_payload(text);
}

fn socketio_packet(text: &str) {
    let Ok(packet) = Packet::parse(text) else {
        return;
    };
    let encoded = match &packet {
        Packet::Connect { nsp, auth } => {
            let mut out = String::from("0");
            if *nsp != "/" {
                out.push_str(nsp);
                out.push(',');
            }
            if let Some(auth) = auth {
                out.push_str(auth.get());
            }
            out
        }
        Packet::Disconnect { nsp } if *nsp == "/" => "1".to_owned(),
        Packet::Disconnect { nsp } => format!("1{nsp},"),
        Packet::Event {
            name,
            args,
            id,
            attachments,
            ..
        } => reencode(sio::event_raw(name, &refs(args), *id, *attachments)),
        Packet::Ack {
            id,
            args,
            attachments,
            ..
        } => reencode(sio::ack_raw(*id, &refs(args), *attachments)),
    };
    let again = Packet::parse(&encoded)
        .unwrap_or_else(|e| panic!("{text:?} re-encoded as {encoded:?}, which fails: {e}"));
    // The encoders write events and acks for `/` only, so compare those without the namespace.
    assert_eq!(
        summary(
            &again,
            matches!(packet, Packet::Event { .. } | Packet::Ack { .. })
        ),
        summary(
            &packet,
            matches!(packet, Packet::Event { .. } | Packet::Ack { .. })
        ),
        "{text:?} re-encoded as {encoded:?}"
    );
}

fn refs(args: &[Box<RawValue>]) -> Vec<&RawValue> {
    args.iter().map(|a| &**a).collect()
}

/// The Socket.IO part of an encoded packet (after the Engine.IO type `4`).
fn reencode(bytes: Bytes) -> String {
    assert_eq!(bytes.first(), Some(&b'4'));
    String::from_utf8(bytes[1..].to_vec()).expect("the encoders write UTF-8")
}

fn summary(packet: &Packet<'_>, ignore_nsp: bool) -> String {
    let text = format!("{packet:?}");
    if ignore_nsp {
        let nsp = match packet {
            Packet::Event { nsp, .. } | Packet::Ack { nsp, .. } => nsp,
            _ => unreachable!(),
        };
        text.replacen(&format!("nsp: {nsp:?}"), "", 1)
    } else {
        text
    }
}

fn polling_payload(text: &str) {
    let items: Result<Vec<PayloadItem<'_>>, _> = eio::decode_payload(text).collect();
    let Ok(items) = items else {
        return;
    };
    let frames: Vec<Frame> = items
        .iter()
        .map(|item| match item {
            PayloadItem::Text(t) => {
                assert!(!t.is_empty() && !t.starts_with('b') && !t.contains('\u{1e}'));
                Frame::Text(Bytes::copy_from_slice(t.as_bytes()))
            }
            PayloadItem::Binary(b) => Frame::Binary(b.clone()),
        })
        .collect();
    let encoded = eio::encode_payload(&frames);
    let encoded = std::str::from_utf8(&encoded).expect("payloads are UTF-8");
    let again: Vec<_> = eio::decode_payload(encoded).collect();
    let items: Vec<_> = items.into_iter().map(Ok).collect();
    assert_eq!(again, items, "{text:?} re-encoded as {encoded:?}");
}

/// A stream over fixed bytes that hands out at most `step` of them per read, then end of stream.
struct Scripted {
    input: Bytes,
    step: usize,
}

impl WsIo for Scripted {
    fn poll_read_into(
        &mut self,
        _: &mut Context<'_>,
        buf: &mut BytesMut,
        _needed: usize,
    ) -> Poll<io::Result<usize>> {
        let n = self.step.min(self.input.len());
        buf.extend_from_slice(&self.input.split_to(n));
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Every message the reader yields from `data`, and how the stream ended.
fn read_all(initial: &[u8], rest: &[u8], step: usize) -> (Vec<Message>, String) {
    let mut reader = FrameReader::new(BytesMut::from(initial), MAX_MESSAGE, true);
    let mut io = Scripted {
        input: Bytes::copy_from_slice(rest),
        step,
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut messages = Vec::new();
    loop {
        match reader.poll_next(&mut io, &mut cx) {
            Poll::Ready(Ok(Some(message))) => messages.push(message),
            Poll::Ready(Ok(None)) => return (messages, "end".into()),
            Poll::Ready(Err(e)) => return (messages, e.to_string()),
            Poll::Pending => unreachable!("the scripted stream is always ready"),
        }
    }
}

fn websocket_stream(data: &[u8]) {
    let whole = read_all(&[], data, data.len().max(1));
    for (message_index, message) in whole.0.iter().enumerate() {
        match message {
            Message::Text(t) => {
                assert!(t.len() <= MAX_MESSAGE);
                let text = std::str::from_utf8(t).expect("text messages are UTF-8");
                // Message by message, as the WebSocket transport hands them to Engine.IO.
                if message_index < 16 {
                    text_packets(text);
                }
            }
            Message::Binary(b) => assert!(b.len() <= MAX_MESSAGE),
            Message::Ping(p) => assert!(p.len() <= 125),
            Message::Pong | Message::Close(_) => {}
        }
    }
    for step in [1, 3] {
        assert_eq!(
            read_all(&[], data, step),
            whole,
            "read {step} bytes at a time"
        );
    }
    // Bytes that arrived with the HTTP head are the start of the stream like any other.
    let split = data.len() / 2;
    assert_eq!(read_all(&data[..split], &data[split..], 7), whole);
}

/// The seeded smoke run shared by every fuzz body's test (here and in confab): each seed of a
/// committed corpus, then deterministic libFuzzer-style mutations of them, so every stable
/// `cargo test` runs the bodies without cargo-fuzz.
pub mod smoke {
    use std::path::Path;

    /// Xorshift: reproducible without a dependency.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n.max(1) as u64) as usize
        }
    }

    /// The files of a seed corpus, sorted so runs are reproducible.
    pub fn seeds(dir: &Path) -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 5, "too few seeds in {}", dir.display());
        seeds
    }

    /// One mutation: flip, insert, delete, splice another seed, or insert a token that steers
    /// into the parsers' branches.
    pub fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>], tokens: &[&str]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(out.len() + 1);
            match rng.below(6) {
                0 if !out.is_empty() => {
                    let i = rng.below(out.len());
                    out[i] ^= 1 << rng.below(8);
                }
                1 => out.insert(at, rng.next_u64() as u8),
                2 if at < out.len() => {
                    let end = (at + 1 + rng.below(8)).min(out.len());
                    out.drain(at..end);
                }
                3 => {
                    let other = &seeds[rng.below(seeds.len())];
                    let from = rng.below(other.len());
                    let to = (from + rng.below(32)).min(other.len());
                    out.splice(at..at, other[from..to].iter().copied());
                }
                _ => {
                    let token = tokens[rng.below(tokens.len())].as_bytes();
                    out.splice(at..at, token.iter().copied());
                }
            }
        }
        out
    }

    /// Runs `body` over every seed in `dir` and `mutations` mutations of them; fails naming the
    /// input that panicked.
    pub fn run(dir: &Path, body: fn(&[u8]), tokens: &[&str], mutations: usize) {
        let seeds = seeds(dir);
        for seed in &seeds {
            body(seed);
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..mutations {
            let pick = rng.below(seeds.len());
            let input = mutate(&mut rng, &seeds[pick], &seeds, tokens);
            let outcome = std::panic::catch_unwind(|| body(&input));
            assert!(
                outcome.is_ok(),
                "{} failed on {:?}",
                dir.display(),
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    //! The fuzz body over the seed corpus in confab's `fuzz/seeds/sio_packets/` plus deterministic
    //! mutations of it, so every `cargo test` runs it on stable.

    use super::*;

    const TOKENS: &[&str] = &[
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "-",
        "/",
        ",",
        "/admin,",
        "[",
        "]",
        "{",
        "}",
        "\"",
        "\"a\"",
        "12",
        "999999999999999",
        "null",
        "é",
        "\u{1e}",
        "b",
        "AQID",
        "=",
        " ",
        "{\"_placeholder\":true,\"num\":0}",
        "\u{81}\u{fe}",
        "\u{7f}",
    ];

    #[test]
    fn packets_smoke() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/sio_packets");
        smoke::run(&dir, packets, TOKENS, 5000);
    }
}
