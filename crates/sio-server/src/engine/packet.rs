//! Engine.IO v4 packets: the one-character type prefix, the open packet, and the long-polling payload
//! format (packets joined by the record separator `\x1e`, binary ones as `b` + base64).

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use crate::config::Config;
use crate::sid::Sid;

/// The separator between packets in a long-polling payload.
pub(crate) const SEPARATOR: u8 = 0x1e;

/// A decoded text packet from a client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    /// `1`: the client closes the session.
    Close,
    /// `2<data>`: a ping; only `2probe` during an upgrade is legitimate from a v4 client.
    Ping(&'a str),
    /// `3<data>`: the answer to the server's ping (`3`) or to nothing (`3probe` is server → client).
    Pong(&'a str),
    /// `4<data>`: a message for the Socket.IO layer.
    Message(&'a str),
    /// `5`: the client completes an upgrade.
    Upgrade,
    /// `6`: nothing.
    Noop,
}

/// A client packet that isn't one of the above (empty, an unknown type, or `0`, which only servers send).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid Engine.IO packet")]
pub(crate) struct InvalidPacket;

impl<'a> Packet<'a> {
    /// Decodes a text packet.
    pub(crate) fn parse(text: &'a str) -> Result<Self, InvalidPacket> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(InvalidPacket)?;
        let data = chars.as_str();
        Ok(match kind {
            '1' => Packet::Close,
            '2' => Packet::Ping(data),
            '3' => Packet::Pong(data),
            '4' => Packet::Message(data),
            '5' => Packet::Upgrade,
            '6' => Packet::Noop,
            _ => return Err(InvalidPacket),
        })
    }
}

/// An outgoing Engine.IO packet as queued for a socket: a text packet including its type character
/// (`42[…]`, `2`, `6`…), or the raw bytes of a binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Text(Bytes),
    Binary(Bytes),
}

impl Frame {
    pub(crate) const PING: Frame = Frame::Text(Bytes::from_static(b"2"));
    pub(crate) const NOOP: Frame = Frame::Text(Bytes::from_static(b"6"));

    /// Length in a polling payload.
    fn polling_len(&self) -> usize {
        match self {
            Frame::Text(b) => b.len(),
            Frame::Binary(b) => 1 + b.len().div_ceil(3) * 4,
        }
    }
}

/// One message of a polling `POST` body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PayloadItem<'a> {
    Text(&'a str),
    Binary(Bytes),
}

/// Splits a polling body into its packets, decoding `b`-prefixed base64 ones. Yields `Err` for a packet
/// that is empty or isn't valid base64.
pub(crate) fn decode_payload(
    body: &str,
) -> impl Iterator<Item = Result<PayloadItem<'_>, InvalidPacket>> {
    body.split(SEPARATOR as char).map(|part| {
        if let Some(b64) = part.strip_prefix('b') {
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(|v| PayloadItem::Binary(Bytes::from(v)))
                .map_err(|_| InvalidPacket)
        } else if part.is_empty() {
            Err(InvalidPacket)
        } else {
            Ok(PayloadItem::Text(part))
        }
    })
}

/// Joins packets into a polling response body. A single text packet is returned as is, without copying.
pub(crate) fn encode_payload(frames: &[Frame]) -> Bytes {
    if let [Frame::Text(only)] = frames {
        return only.clone();
    }
    let len = frames.iter().map(Frame::polling_len).sum::<usize>() + frames.len().saturating_sub(1);
    let mut out = BytesMut::with_capacity(len);
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        match frame {
            Frame::Text(text) => out.put_slice(text),
            Frame::Binary(data) => {
                out.put_u8(b'b');
                let start = out.len();
                let b64_len = data.len().div_ceil(3) * 4;
                out.resize(start + b64_len, 0);
                let written = base64::engine::general_purpose::STANDARD
                    .encode_slice(data, &mut out[start..])
                    .expect("the slice was sized for the encoding");
                out.truncate(start + written);
            }
        }
    }
    out.freeze()
}

/// The handshake packet: `0{"sid","upgrades","pingInterval","pingTimeout","maxPayload"}`.
/// `upgrades` lists `websocket` only for a session opened by polling.
pub(crate) fn open_packet(sid: &Sid, can_upgrade: bool, config: &Config) -> Bytes {
    let upgrades = if can_upgrade {
        r#"["websocket"]"#
    } else {
        "[]"
    };
    Bytes::from(format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
        config.ping_interval.as_millis(),
        config.ping_timeout.as_millis(),
        config.max_payload
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_packet_type() {
        assert_eq!(Packet::parse("1"), Ok(Packet::Close));
        assert_eq!(Packet::parse("2probe"), Ok(Packet::Ping("probe")));
        assert_eq!(Packet::parse("3"), Ok(Packet::Pong("")));
        assert_eq!(Packet::parse("4hello"), Ok(Packet::Message("hello")));
        assert_eq!(Packet::parse("42[\"a\"]"), Ok(Packet::Message("2[\"a\"]")));
        assert_eq!(Packet::parse("5"), Ok(Packet::Upgrade));
        assert_eq!(Packet::parse("6"), Ok(Packet::Noop));
        assert_eq!(Packet::parse(""), Err(InvalidPacket));
        assert_eq!(Packet::parse("0{}"), Err(InvalidPacket));
        assert_eq!(Packet::parse("7"), Err(InvalidPacket));
        assert_eq!(Packet::parse("é"), Err(InvalidPacket));
    }

    #[test]
    fn decodes_polling_payloads() {
        let items: Vec<_> = decode_payload("4hello\x1ebAQIDBA==\x1e3").collect();
        assert_eq!(
            items,
            vec![
                Ok(PayloadItem::Text("4hello")),
                Ok(PayloadItem::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
                Ok(PayloadItem::Text("3")),
            ]
        );
        assert_eq!(decode_payload("4a\x1e").last(), Some(Err(InvalidPacket)));
        assert_eq!(decode_payload("b!!!").next(), Some(Err(InvalidPacket)));
        assert_eq!(decode_payload("").next(), Some(Err(InvalidPacket)));
    }

    #[test]
    fn encodes_polling_payloads() {
        let one = [Frame::Text(Bytes::from_static(b"42[\"x\"]"))];
        assert_eq!(encode_payload(&one), Bytes::from_static(b"42[\"x\"]"));
        let mixed = [
            Frame::Text(Bytes::from_static(b"4hello")),
            Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Frame::PING,
            Frame::Binary(Bytes::new()),
        ];
        assert_eq!(
            encode_payload(&mixed),
            Bytes::from_static(b"4hello\x1ebAQIDBA==\x1e2\x1eb")
        );
        assert_eq!(encode_payload(&[]), Bytes::new());
    }

    #[test]
    fn open_packet_has_the_handshake_fields() {
        let sid = Sid::random();
        let config = Config::default();
        let packet = open_packet(&sid, true, &config);
        assert_eq!(packet[0], b'0');
        let v: serde_json::Value = serde_json::from_slice(&packet[1..]).unwrap();
        assert_eq!(v["sid"], sid.as_str());
        assert_eq!(v["upgrades"], serde_json::json!(["websocket"]));
        assert_eq!(v["pingInterval"], 25000);
        assert_eq!(v["pingTimeout"], 20000);
        assert_eq!(v["maxPayload"], 65536);
        let ws = open_packet(&sid, false, &config);
        let v: serde_json::Value = serde_json::from_slice(&ws[1..]).unwrap();
        assert_eq!(v["upgrades"], serde_json::json!([]));
    }
}
