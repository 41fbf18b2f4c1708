//! `permessage-deflate` (RFC 7692) over raw sockets: negotiated when offered, compressed both ways
//! (from the threshold on, server → client), bounded when inflating (a decompression bomb is closed
//! with 1009), and off when the setting says so.

mod common;

use std::time::Duration;

use common::Server;
use confab_sio::{Config, DisconnectReason};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const ACCEPTED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Opens a WebSocket by hand, offering `extensions`; the stream and the 101's extensions header.
async fn open(server: &Server, extensions: Option<&str>) -> (TcpStream, Option<String>) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let offer = extensions
        .map(|e| format!("sec-websocket-extensions: {e}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!(
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\n\
                 connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "the 101 head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let accepted = head
        .lines()
        .find_map(|l| l.strip_prefix("sec-websocket-extensions: "))
        .map(str::to_owned);
    (stream, accepted)
}

fn deflate(data: &[u8], level: Compression) -> Vec<u8> {
    let mut c = Compress::new(level, false);
    let mut out = Vec::with_capacity(data.len() + 64);
    loop {
        let before = c.total_in() as usize;
        c.compress_vec(&data[before..], &mut out, FlushCompress::Sync)
            .unwrap();
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(data.len() * 4 + 1024);
    loop {
        let before = d.total_in() as usize;
        d.decompress_vec(&input[before..], &mut out, FlushDecompress::Sync)
            .unwrap();
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// A masked client frame: FIN, RSV1 if `compressed`, opcode.
fn frame(opcode: u8, compressed: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![0x80 | if compressed { 0x40 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A server frame: its first byte (FIN, RSV1, opcode) and payload. Pings are answered.
async fn next_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    loop {
        let read = async {
            let mut head = [0u8; 2];
            stream.read_exact(&mut head).await.unwrap();
            let len = match head[1] & 0x7F {
                126 => u64::from(stream.read_u16().await.unwrap()),
                127 => stream.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            stream.read_exact(&mut payload).await.unwrap();
            (head[0], payload)
        };
        let (first, payload) = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("a frame within 5 s");
        if first & 0x0F == 0x1 && payload == b"2" {
            stream.write_all(&frame(0x1, false, b"3")).await.unwrap();
            continue;
        }
        return (first, payload);
    }
}

#[tokio::test]
async fn permessage_deflate_is_negotiated_and_compresses_both_ways() {
    let server = Server::start(Config::default()).await;
    let (mut ws, accepted) = open(&server, Some(OFFER)).await;
    assert_eq!(accepted.as_deref(), Some(ACCEPTED));
    // The open packet and the CONNECT answer are under the threshold: sent as they are.
    let (first, open_packet) = next_frame(&mut ws).await;
    assert_eq!((first, open_packet[0]), (0x81, b'0'));
    let connect = deflate(
        br#"40{"token":"ok","name":"deflate"}"#,
        Compression::default(),
    );
    ws.write_all(&frame(0x1, true, &connect)).await.unwrap();
    let (first, answer) = next_frame(&mut ws).await;
    assert_eq!(first, 0x81, "uncompressed");
    assert!(answer.starts_with(br#"40{"sid":"#));

    // A large event, compressed: echoed compressed (RSV1), and smaller on the wire than in full.
    let event = format!(
        r#"42["echo",{{"body":"{}"}}]"#,
        "hello deflate ".repeat(400)
    );
    let compressed = deflate(event.as_bytes(), Compression::default());
    ws.write_all(&frame(0x1, true, &compressed)).await.unwrap();
    let (first, echoed) = next_frame(&mut ws).await;
    assert_eq!(first, 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
    assert!(echoed.len() < event.len() / 10, "{} bytes", echoed.len());
    assert!(
        inflate(&echoed) == event.as_bytes(),
        "the echo inflates to the event"
    );

    // An uncompressed message on the same connection is fine too (RSV1 is per message).
    ws.write_all(&frame(0x1, false, br#"42["echo","plain"]"#))
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut ws).await,
        (0x81, br#"42["echo","plain"]"#.to_vec())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_decompression_bomb_is_closed_with_1009() {
    let server = Server::start(Config::default()).await;
    let (mut ws, _) = open(&server, Some(OFFER)).await;
    next_frame(&mut ws).await;
    ws.write_all(&frame(
        0x1,
        true,
        &deflate(br#"40{"token":"ok","name":"bomb"}"#, Compression::default()),
    ))
    .await
    .unwrap();
    next_frame(&mut ws).await;
    // 50 MiB of one repeated byte: about 50 KB compressed, under the 64 KiB payload limit on the
    // wire, 800 times over it inflated.
    let inflated = [
        br#"42["echo",""#.as_slice(),
        &vec![b'a'; 50 << 20],
        br#""]"#,
    ]
    .concat();
    let bomb = deflate(&inflated, Compression::best());
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    ws.write_all(&frame(0x1, true, &bomb)).await.unwrap();
    let (first, payload) = next_frame(&mut ws).await;
    assert_eq!(first & 0x0F, 0x8, "a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
    common::eventually_async(|| {
        server
            .records()
            .disconnects
            .get("bomb")
            .is_some_and(|r| r == &[DisconnectReason::TransportError])
    })
    .await;
    assert!(!server.records().events.contains_key("bomb"));
    server.stop().await;
}

#[tokio::test]
async fn compression_can_be_turned_off() {
    let config = Config {
        per_message_deflate: false,
        ..Config::default()
    };
    let server = Server::start(config).await;
    let (mut ws, accepted) = open(&server, Some(OFFER)).await;
    assert_eq!(accepted, None);
    next_frame(&mut ws).await;
    // Not negotiated: a compressed frame is a protocol error.
    ws.write_all(&frame(0x1, true, &deflate(b"40", Compression::default())))
        .await
        .unwrap();
    let (first, payload) = next_frame(&mut ws).await;
    assert_eq!(first & 0x0F, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
    server.stop().await;
}

#[tokio::test]
async fn offers_we_cannot_honour_are_declined() {
    let server = Server::start(Config::default()).await;
    for offer in [
        "permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; mystery",
        "x-webkit-deflate-frame",
    ] {
        let (_, accepted) = open(&server, Some(offer)).await;
        assert_eq!(accepted, None, "{offer}");
    }
    let (_, accepted) = open(
        &server,
        Some("permessage-deflate; server_max_window_bits=10, permessage-deflate"),
    )
    .await;
    assert_eq!(accepted.as_deref(), Some(ACCEPTED), "the second offer");
    let (_, accepted) = open(&server, None).await;
    assert_eq!(accepted, None);
    server.stop().await;
}
