//! The wire formats confab's settings control: `permessage-deflate` on WebSockets, negotiated when a
//! client offers it unless `ws_compression` is off. (MessagePack needs no setting: the official client
//! with socket.io-msgpack-parser runs in official_client.rs.)

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The `sec-websocket-extensions` of the 101 answering a handshake that offers what browsers offer.
async fn negotiated(app: &TestApp) -> Option<String> {
    let authority = app.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: {authority}\r\nupgrade: websocket\r\n\
                 connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
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
    head.lines()
        .find_map(|l| l.strip_prefix("sec-websocket-extensions: "))
        .map(str::to_owned)
}

#[tokio::test]
async fn websocket_compression_is_negotiated_unless_turned_off() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    assert_eq!(
        negotiated(&app).await.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let off = app.with(&[("CONFAB_WS_COMPRESSION", "false")]).await;
    assert_eq!(negotiated(&off).await, None);
}
