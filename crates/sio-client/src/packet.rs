//! Encoding and decoding of the text packets this client speaks.
//!
//! Over WebSocket every Engine.IO v4 packet is one text frame: a one-digit type followed by its
//! payload. A Socket.IO v5 packet travels as the payload of an Engine.IO MESSAGE (`4`), so a
//! Socket.IO event looks like `42["name",…]` on the wire. Decoding never panics: anything the
//! server sends that does not fit the protocol becomes a [`DecodeError`].

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;

/// Why a frame from the server could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

impl DecodeError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The parameters of an Engine.IO session, from the server's OPEN packet (`0{…}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    /// The Engine.IO session id (not the Socket.IO sid).
    pub sid: String,
    /// How often the server sends a ping, in milliseconds.
    pub ping_interval: u64,
    /// How long the server waits for the pong, in milliseconds.
    pub ping_timeout: u64,
    /// The largest payload the server accepts (relevant to long-polling).
    #[serde(default)]
    pub max_payload: Option<u64>,
}

/// An Engine.IO packet, borrowing its payload from the frame it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `0{…}`: the session parameters, sent once when the connection opens.
    Open(OpenInfo),
    /// `1`: the server closes the session.
    Close,
    /// `2…`: a heartbeat from the server, to be answered with a pong carrying the same payload.
    Ping(&'a str),
    /// `3…`: an answer to a ping.
    Pong(&'a str),
    /// `4…`: a Socket.IO packet.
    Message(&'a str),
    /// `5`: the end of a transport upgrade (long-polling only).
    Upgrade,
    /// `6`: does nothing (long-polling only).
    Noop,
}

/// Decodes one WebSocket text frame as an Engine.IO packet.
pub fn decode_engine(frame: &str) -> Result<EnginePacket<'_>, DecodeError> {
    let kind = match frame.as_bytes().first() {
        Some(&kind @ b'0'..=b'6') => kind,
        Some(_) => {
            return Err(DecodeError::new(format!(
                "unknown Engine.IO packet type in {:?}",
                preview(frame)
            )));
        }
        None => return Err(DecodeError::new("empty Engine.IO packet")),
    };
    // The type is one ASCII digit, so slicing after it stays on a char boundary.
    let payload = &frame[1..];
    match kind {
        b'0' => serde_json::from_str(payload)
            .map(EnginePacket::Open)
            .map_err(|e| DecodeError::new(format!("bad Engine.IO OPEN payload: {e}"))),
        b'1' => Ok(EnginePacket::Close),
        b'2' => Ok(EnginePacket::Ping(payload)),
        b'3' => Ok(EnginePacket::Pong(payload)),
        b'4' => Ok(EnginePacket::Message(payload)),
        b'5' => Ok(EnginePacket::Upgrade),
        _ => Ok(EnginePacket::Noop),
    }
}

/// The answer to an Engine.IO ping: `3` followed by the ping's payload.
pub fn encode_pong(ping_payload: &str) -> String {
    format!("3{ping_payload}")
}

/// A Socket.IO packet sent by the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// `40{…}`: the namespace accepted the connection; the data holds `{"sid": …}`.
    Connect(Option<Value>),
    /// `41`: the server disconnected this socket from the namespace.
    Disconnect,
    /// `42[name, …args]`, or `42<id>[…]` when the server asks for an ack.
    Event {
        /// The event name.
        name: String,
        /// The arguments after the name.
        args: Vec<Value>,
        /// The id to ack with, when the server wants an ack.
        ack_id: Option<u64>,
    },
    /// `43<id>[…args]`: the answer to one of our events.
    Ack {
        /// The id of the event this answers.
        id: u64,
        /// The ack's arguments.
        args: Vec<Value>,
    },
    /// `44{"message": …, "data": …}`: the namespace refused the connection.
    ConnectError {
        /// Why, in words.
        message: String,
        /// Details, if the server sent any.
        data: Option<Value>,
    },
}

/// A decoded Socket.IO packet together with the namespace it is addressed to.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<'a> {
    /// `/` unless the packet names another namespace (`42/chat,[…]`).
    pub namespace: &'a str,
    /// The packet itself.
    pub packet: Packet,
}

/// Decodes the payload of an Engine.IO MESSAGE as a Socket.IO packet.
///
/// The layout is `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`. Binary packets
/// (types 5 and 6) are not supported and are reported as errors.
pub fn decode_socketio(payload: &str) -> Result<Decoded<'_>, DecodeError> {
    let Some(&kind) = payload.as_bytes().first() else {
        return Err(DecodeError::new("empty Socket.IO packet"));
    };
    if matches!(kind, b'5' | b'6') {
        return Err(DecodeError::new(
            "binary Socket.IO packets (45/46) are not supported",
        ));
    }
    if !(b'0'..=b'4').contains(&kind) {
        return Err(DecodeError::new(format!(
            "unknown Socket.IO packet type in {:?}",
            preview(payload)
        )));
    }
    let rest = &payload[1..];

    let (namespace, rest) = match rest.strip_prefix('/') {
        // A namespace runs up to the first comma, or to the end of a packet without data ("41/chat").
        Some(_) => match rest.find(',') {
            Some(comma) => (&rest[..comma], &rest[comma + 1..]),
            None => (rest, ""),
        },
        None => ("/", rest),
    };

    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack_id = if digits == 0 {
        None
    } else {
        let id = rest[..digits]
            .parse::<u64>()
            .map_err(|_| DecodeError::new("ack id out of range"))?;
        Some(id)
    };
    let json = &rest[digits..];
    let data = if json.is_empty() {
        None
    } else {
        Some(
            serde_json::from_str::<Value>(json)
                .map_err(|e| DecodeError::new(format!("bad JSON in Socket.IO packet: {e}")))?,
        )
    };

    let packet = match kind {
        b'0' => Packet::Connect(data),
        b'1' => Packet::Disconnect,
        b'2' => {
            let mut args = into_array(data, "EVENT")?.into_iter();
            let Some(Value::String(name)) = args.next() else {
                return Err(DecodeError::new(
                    "EVENT data must start with the event name",
                ));
            };
            Packet::Event {
                name,
                args: args.collect(),
                ack_id,
            }
        }
        b'3' => Packet::Ack {
            id: ack_id.ok_or_else(|| DecodeError::new("ACK without an id"))?,
            args: into_array(data, "ACK")?,
        },
        _ => decode_connect_error(data)?,
    };
    Ok(Decoded { namespace, packet })
}

fn into_array(data: Option<Value>, what: &str) -> Result<Vec<Value>, DecodeError> {
    match data {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(DecodeError::new(format!(
            "{what} data must be a JSON array"
        ))),
    }
}

fn decode_connect_error(data: Option<Value>) -> Result<Packet, DecodeError> {
    match data {
        Some(Value::Object(mut fields)) => match fields.remove("message") {
            Some(Value::String(message)) => Ok(Packet::ConnectError {
                message,
                data: fields.remove("data"),
            }),
            _ => Err(DecodeError::new("CONNECT_ERROR without a message")),
        },
        // Socket.IO v4 servers sent the message as a bare string; accepting it costs nothing.
        Some(Value::String(message)) => Ok(Packet::ConnectError {
            message,
            data: None,
        }),
        _ => Err(DecodeError::new("CONNECT_ERROR data must be an object")),
    }
}

/// `40` or `40{auth}`: asks to join the default namespace.
pub fn encode_connect(auth: Option<&Value>) -> String {
    match auth {
        Some(auth) => format!("40{auth}"),
        None => "40".to_owned(),
    }
}

/// `41`: leaves the default namespace.
pub fn encode_disconnect() -> String {
    "41".to_owned()
}

/// `42["event",…args]`, or `42<id>["event",…args]` when an ack is wanted.
pub fn encode_event(event: &str, args: &[Value], ack_id: Option<u64>) -> String {
    let mut frame = String::from("42");
    // Writing into a String cannot fail, and a serde_json::Value always serialises, so the
    // results of write! are safe to ignore. Value's Display is its compact JSON.
    if let Some(id) = ack_id {
        let _ = write!(frame, "{id}");
    }
    let _ = write!(frame, "[{}", Value::from(event));
    for arg in args {
        let _ = write!(frame, ",{arg}");
    }
    frame.push(']');
    frame
}

/// The start of a frame, for error messages: enough to recognise it, short enough to read.
fn preview(frame: &str) -> &str {
    match frame.char_indices().nth(40) {
        Some((end, _)) => &frame[..end],
        None => frame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sio(payload: &str) -> Packet {
        let decoded = decode_socketio(payload).expect(payload);
        assert_eq!(decoded.namespace, "/");
        decoded.packet
    }

    #[test]
    fn decodes_open() {
        let frame = r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(
            decode_engine(frame).unwrap(),
            EnginePacket::Open(OpenInfo {
                sid: "abc".into(),
                ping_interval: 25000,
                ping_timeout: 20000,
                max_payload: Some(1_000_000),
            })
        );
        assert!(decode_engine("0").is_err());
        assert!(decode_engine(r#"0{"sid":"abc"}"#).is_err());
    }

    #[test]
    fn decodes_engine_packets() {
        assert_eq!(decode_engine("1").unwrap(), EnginePacket::Close);
        assert_eq!(decode_engine("2").unwrap(), EnginePacket::Ping(""));
        assert_eq!(
            decode_engine("2probe").unwrap(),
            EnginePacket::Ping("probe")
        );
        assert_eq!(decode_engine("3").unwrap(), EnginePacket::Pong(""));
        assert_eq!(decode_engine("40").unwrap(), EnginePacket::Message("0"));
        assert_eq!(decode_engine("5").unwrap(), EnginePacket::Upgrade);
        assert_eq!(decode_engine("6").unwrap(), EnginePacket::Noop);
    }

    #[test]
    fn rejects_bad_engine_packets() {
        for frame in ["", "7", "x", "é", "\u{1F600}4", " 4"] {
            assert!(decode_engine(frame).is_err(), "{frame:?}");
        }
    }

    #[test]
    fn encodes_pong() {
        assert_eq!(encode_pong(""), "3");
        assert_eq!(encode_pong("probe"), "3probe");
    }

    #[test]
    fn decodes_connect() {
        assert_eq!(
            sio(r#"0{"sid":"s1"}"#),
            Packet::Connect(Some(json!({"sid": "s1"})))
        );
        assert_eq!(sio("0"), Packet::Connect(None));
    }

    #[test]
    fn decodes_connect_error() {
        assert_eq!(
            sio(r#"4{"message":"unauthorized","data":{"reason":"expired"}}"#),
            Packet::ConnectError {
                message: "unauthorized".into(),
                data: Some(json!({"reason": "expired"})),
            }
        );
        assert_eq!(
            sio(r#"4{"message":"nope"}"#),
            Packet::ConnectError {
                message: "nope".into(),
                data: None
            }
        );
        assert_eq!(
            sio(r#"4"old style""#),
            Packet::ConnectError {
                message: "old style".into(),
                data: None
            }
        );
        assert!(decode_socketio("4").is_err());
        assert!(decode_socketio(r#"4{"data":1}"#).is_err());
    }

    #[test]
    fn decodes_events() {
        assert_eq!(
            sio(r#"2["hello",1,{"a":[true]}]"#),
            Packet::Event {
                name: "hello".into(),
                args: vec![json!(1), json!({"a": [true]})],
                ack_id: None,
            }
        );
        assert_eq!(
            sio(r#"27["ask"]"#),
            Packet::Event {
                name: "ask".into(),
                args: vec![],
                ack_id: Some(7),
            }
        );
    }

    #[test]
    fn decodes_acks() {
        assert_eq!(
            sio(r#"312["ok",2]"#),
            Packet::Ack {
                id: 12,
                args: vec![json!("ok"), json!(2)]
            }
        );
        assert_eq!(
            sio("30[]"),
            Packet::Ack {
                id: 0,
                args: vec![]
            }
        );
        assert!(decode_socketio("3[1]").is_err(), "an ack needs an id");
        assert!(decode_socketio("31").is_err(), "an ack needs data");
        assert!(decode_socketio("399999999999999999999999[]").is_err());
    }

    #[test]
    fn decodes_namespaces() {
        let decoded = decode_socketio(r#"2/chat,["x"]"#).unwrap();
        assert_eq!(decoded.namespace, "/chat");
        let decoded = decode_socketio("1/chat").unwrap();
        assert_eq!(decoded.namespace, "/chat");
        assert_eq!(decoded.packet, Packet::Disconnect);
        let decoded = decode_socketio(r#"3/chat,5[]"#).unwrap();
        assert_eq!(
            decoded.packet,
            Packet::Ack {
                id: 5,
                args: vec![]
            }
        );
        assert_eq!(sio("1"), Packet::Disconnect);
    }

    #[test]
    fn rejects_bad_socketio_packets() {
        for payload in [
            "",
            "7",
            "x",
            "é",
            "2",
            "2{}",
            "2[]",
            "2[1]",
            r#"2["a""#,
            r#"2"a""#,
            "51-[\"x\",{\"_placeholder\":true,\"num\":0}]",
            "61-0[{\"_placeholder\":true,\"num\":0}]",
            "2/chat",
        ] {
            assert!(decode_socketio(payload).is_err(), "{payload:?}");
        }
    }

    #[test]
    fn encodes_connect_and_disconnect() {
        assert_eq!(encode_connect(None), "40");
        assert_eq!(
            encode_connect(Some(&json!({"token": "t"}))),
            r#"40{"token":"t"}"#
        );
        assert_eq!(encode_disconnect(), "41");
    }

    #[test]
    fn encodes_events() {
        assert_eq!(encode_event("ping", &[], None), r#"42["ping"]"#);
        assert_eq!(
            encode_event("msg", &[json!({"body": "hi \"you\""}), json!(2)], None),
            r#"42["msg",{"body":"hi \"you\""},2]"#
        );
        assert_eq!(
            encode_event("a\"b", &[json!(null)], Some(13)),
            r#"4213["a\"b",null]"#
        );
    }

    #[test]
    fn encoded_events_decode_back() {
        let args = vec![json!("x"), json!([1, 2]), json!({"k": "é\u{1F600}"})];
        let frame = encode_event("round", &args, Some(3));
        let EnginePacket::Message(payload) = decode_engine(&frame).unwrap() else {
            panic!("not a message: {frame}");
        };
        assert_eq!(
            sio(payload),
            Packet::Event {
                name: "round".into(),
                args,
                ack_id: Some(3)
            }
        );
    }

    #[test]
    fn previews_are_short_and_on_char_boundaries() {
        let long = "é".repeat(100);
        assert_eq!(preview(&long).chars().count(), 40);
        assert_eq!(preview("short"), "short");
    }
}
