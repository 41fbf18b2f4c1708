//! Socket.IO v5 packets: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`, carried in Engine.IO
//! message packets (so every encoded packet here starts with the Engine.IO message type `4`).

use std::io::Write as _;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::handler::ConnectError;

/// Event names a client may not use: the client library reserves them for its own events.
const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The most digits an attachment count or ack id may have; keeps the parsers' arithmetic trivially safe.
const MAX_DIGITS: usize = 15;

/// A packet from a client.
#[derive(Debug)]
pub(crate) enum Packet<'a> {
    /// `0[nsp,][{auth}]`
    Connect {
        nsp: &'a str,
        auth: Option<Box<RawValue>>,
    },
    /// `1[nsp,]`
    Disconnect { nsp: &'a str },
    /// `2[nsp,][id]["name",…]`, or `5<n>-…` with `n` binary attachments to follow.
    Event {
        nsp: &'a str,
        name: String,
        args: Vec<Box<RawValue>>,
        id: Option<u64>,
        attachments: usize,
    },
    /// `3[nsp,]<id>[…]`, or `6<n>-…` with `n` binary attachments to follow.
    Ack {
        nsp: &'a str,
        id: u64,
        args: Vec<Box<RawValue>>,
        attachments: usize,
    },
}

/// Why a client packet was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid Socket.IO packet: {0}")]
pub(crate) struct ParseError(pub(crate) &'static str);

impl<'a> Packet<'a> {
    /// Decodes the Socket.IO packet carried in an Engine.IO message.
    pub(crate) fn parse(text: &'a str) -> Result<Self, ParseError> {
        let h = Header::split(text)?;
        Self::from_parts(h.kind, h.nsp, h.id, h.payload, h.attachments)
    }

    /// A client packet from its parts, the payload as JSON text (empty for none). Both parsers end
    /// here, so that a MessagePack client's packets are checked exactly as a JSON client's are.
    pub(crate) fn from_parts(
        kind: u8,
        nsp: &'a str,
        id: Option<u64>,
        payload: &str,
        attachments: usize,
    ) -> Result<Self, ParseError> {
        match kind {
            0 => {
                if id.is_some() {
                    return Err(ParseError("CONNECT with an ack id"));
                }
                let auth = if payload.is_empty() {
                    None
                } else {
                    let raw: Box<RawValue> = serde_json::from_str(payload)
                        .map_err(|_| ParseError("CONNECT payload is not JSON"))?;
                    if !raw.get().starts_with('{') {
                        return Err(ParseError("CONNECT payload is not an object"));
                    }
                    Some(raw)
                };
                Ok(Packet::Connect { nsp, auth })
            }
            1 if payload.is_empty() && id.is_none() => Ok(Packet::Disconnect { nsp }),
            1 => Err(ParseError("DISCONNECT with a payload")),
            2 | 5 => {
                let mut args = parse_array(payload)?;
                if args.is_empty() {
                    return Err(ParseError("EVENT without a name"));
                }
                let first = args.remove(0);
                let name = event_name(&first)?;
                Ok(Packet::Event {
                    nsp,
                    name,
                    args,
                    id,
                    attachments,
                })
            }
            3 | 6 => {
                let id = id.ok_or(ParseError("ACK without an id"))?;
                let args = parse_array(payload)?;
                Ok(Packet::Ack {
                    nsp,
                    id,
                    args,
                    attachments,
                })
            }
            _ => Err(ParseError("CONNECT_ERROR from a client")),
        }
    }
}

/// The parts of an encoded packet (a client's or one of ours): type, attachment count, namespace, ack
/// id, and the JSON payload (empty when there is none).
pub(crate) struct Header<'a> {
    pub(crate) kind: u8,
    pub(crate) attachments: usize,
    pub(crate) nsp: &'a str,
    pub(crate) id: Option<u64>,
    pub(crate) payload: &'a str,
}

impl<'a> Header<'a> {
    pub(crate) fn split(text: &'a str) -> Result<Self, ParseError> {
        let bytes = text.as_bytes();
        let kind = match bytes.first() {
            Some(c @ b'0'..=b'6') => c - b'0',
            _ => return Err(ParseError("unknown packet type")),
        };
        let mut pos = 1;

        let mut attachments = 0;
        if kind == 5 || kind == 6 {
            let digits = count_digits(&bytes[pos..]);
            if digits == 0 || digits > MAX_DIGITS || bytes.get(pos + digits) != Some(&b'-') {
                return Err(ParseError("bad attachment count"));
            }
            attachments = text[pos..pos + digits]
                .parse()
                .map_err(|_| ParseError("bad attachment count"))?;
            pos += digits + 1;
        }

        let mut nsp = "/";
        if bytes.get(pos) == Some(&b'/') {
            let end = text[pos..].find(',').map_or(text.len(), |i| pos + i);
            nsp = &text[pos..end];
            pos = (end + 1).min(text.len());
        }

        let digits = count_digits(&bytes[pos..]);
        let id = if digits == 0 {
            None
        } else if digits > MAX_DIGITS {
            return Err(ParseError("ack id too long"));
        } else {
            let id = text[pos..pos + digits]
                .parse()
                .map_err(|_| ParseError("bad ack id"))?;
            pos += digits;
            Some(id)
        };
        Ok(Header {
            kind,
            attachments,
            nsp,
            id,
            payload: &text[pos..],
        })
    }
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn parse_array(payload: &str) -> Result<Vec<Box<RawValue>>, ParseError> {
    serde_json::from_str(payload).map_err(|_| ParseError("payload is not a JSON array"))
}

/// The first array element names the event: a string that isn't reserved, or a number (the JS client
/// allows numeric names).
fn event_name(first: &RawValue) -> Result<String, ParseError> {
    let text = first.get();
    if text.starts_with('"') {
        let name: String = serde_json::from_str(text).map_err(|_| ParseError("bad event name"))?;
        if RESERVED_EVENTS.contains(&name.as_str()) {
            return Err(ParseError("reserved event name"));
        }
        Ok(name)
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(ParseError("event name is not a string"))
    }
}

/// The start of an encoded packet: Engine.IO message type, Socket.IO type, attachment count, ack id.
fn header(kind: u8, attachments: usize, id: Option<u64>, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity + 24);
    out.push(b'4');
    out.push(b'0' + kind);
    if kind == 5 || kind == 6 {
        let _ = write!(out, "{attachments}-");
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
    out
}

/// `40{"sid":"…"}`: the namespace is connected.
pub(crate) fn connect_ok(sid: &str) -> Bytes {
    Bytes::from(format!(r#"40{{"sid":"{sid}"}}"#))
}

/// `44[nsp,]{"message":…,"data":…}`: the connection to the namespace is refused.
pub(crate) fn connect_error(nsp: &str, err: &ConnectError) -> Bytes {
    #[derive(Serialize)]
    struct Body<'a> {
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a serde_json::Value>,
    }
    let mut out = b"44".to_vec();
    if nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    let body = Body {
        message: &err.message,
        data: err.data.as_ref(),
    };
    serde_json::to_writer(&mut out, &body).expect("a string and a JSON value always serialise");
    Bytes::from(out)
}

/// `41`: the server disconnects the socket from the namespace.
pub(crate) const DISCONNECT: Bytes = Bytes::from_static(b"41");

/// `42[id]["name",data]` (or `45<n>-…` when `attachments > 0`).
pub(crate) fn event<T: Serialize + ?Sized>(
    name: &str,
    data: &T,
    id: Option<u64>,
    attachments: usize,
) -> Result<Bytes, serde_json::Error> {
    let kind = if attachments > 0 { 5 } else { 2 };
    let mut out = header(kind, attachments, id, name.len() + 64);
    serde_json::to_writer(&mut out, &(name, data))?;
    Ok(Bytes::from(out))
}

/// `42[id]["name",arg1,arg2…]` from raw JSON arguments (or `45<n>-…` when `attachments > 0`).
pub(crate) fn event_raw(
    name: &str,
    args: &[&RawValue],
    id: Option<u64>,
    attachments: usize,
) -> Bytes {
    let kind = if attachments > 0 { 5 } else { 2 };
    let size = name.len() + args.iter().map(|a| a.get().len() + 1).sum::<usize>() + 8;
    let mut out = header(kind, attachments, id, size);
    out.push(b'[');
    serde_json::to_writer(&mut out, name).expect("a string always serialises");
    for arg in args {
        out.push(b',');
        out.extend_from_slice(arg.get().as_bytes());
    }
    out.push(b']');
    Bytes::from(out)
}

/// `43<id>[arg1,arg2…]` (or `46<n>-<id>…` when `attachments > 0`).
pub(crate) fn ack_raw(id: u64, args: &[&RawValue], attachments: usize) -> Bytes {
    let kind = if attachments > 0 { 6 } else { 3 };
    let size = args.iter().map(|a| a.get().len() + 1).sum::<usize>() + 2;
    let mut out = header(kind, attachments, Some(id), size);
    out.push(b'[');
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(arg.get().as_bytes());
    }
    out.push(b']');
    Bytes::from(out)
}

/// `43<id>[data]`.
pub(crate) fn ack<T: Serialize + ?Sized>(id: u64, data: &T) -> Result<Bytes, serde_json::Error> {
    let mut out = header(3, 0, Some(id), 64);
    out.push(b'[');
    serde_json::to_writer(&mut out, data)?;
    out.push(b']');
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn args_text(args: &[Box<RawValue>]) -> Vec<&str> {
        args.iter().map(|a| a.get()).collect()
    }

    #[test]
    fn parses_connect() {
        match Packet::parse("0").unwrap() {
            Packet::Connect {
                nsp: "/",
                auth: None,
            } => {}
            other => panic!("{other:?}"),
        }
        match Packet::parse(r#"0{"token":"abc"}"#).unwrap() {
            Packet::Connect {
                nsp: "/",
                auth: Some(a),
            } => assert_eq!(a.get(), r#"{"token":"abc"}"#),
            other => panic!("{other:?}"),
        }
        match Packet::parse(r#"0/admin,{"x":1}"#).unwrap() {
            Packet::Connect {
                nsp: "/admin",
                auth: Some(_),
            } => {}
            other => panic!("{other:?}"),
        }
        match Packet::parse("0/admin,").unwrap() {
            Packet::Connect {
                nsp: "/admin",
                auth: None,
            } => {}
            other => panic!("{other:?}"),
        }
        assert!(Packet::parse("0[1]").is_err());
        assert!(Packet::parse("0\"x\"").is_err());
        assert!(Packet::parse("0{").is_err());
    }

    #[test]
    fn parses_events_with_and_without_ack() {
        match Packet::parse(r#"2["hello",{"a":1},2]"#).unwrap() {
            Packet::Event {
                nsp: "/",
                name,
                args,
                id: None,
                attachments: 0,
            } => {
                assert_eq!(name, "hello");
                assert_eq!(args_text(&args), vec![r#"{"a":1}"#, "2"]);
            }
            other => panic!("{other:?}"),
        }
        match Packet::parse(r#"212["ping"]"#).unwrap() {
            Packet::Event {
                name,
                args,
                id: Some(12),
                ..
            } => {
                assert_eq!(name, "ping");
                assert!(args.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match Packet::parse(r#"2/chat,7["m"]"#).unwrap() {
            Packet::Event {
                nsp: "/chat",
                id: Some(7),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        match Packet::parse(r#"2[42,"x"]"#).unwrap() {
            Packet::Event { name, .. } => assert_eq!(name, "42"),
            other => panic!("{other:?}"),
        }
        assert!(Packet::parse("2[]").is_err());
        assert!(Packet::parse(r#"2{"a":1}"#).is_err());
        assert!(Packet::parse(r#"2["connect"]"#).is_err());
        assert!(Packet::parse(r#"2[null]"#).is_err());
        assert!(Packet::parse(r#"2["a""#).is_err());
        assert!(Packet::parse("2").is_err());
        assert!(Packet::parse(r#"2999999999999999999999["a"]"#).is_err());
    }

    #[test]
    fn parses_binary_placeholders() {
        let text = r#"52-["upload",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        match Packet::parse(text).unwrap() {
            Packet::Event {
                name,
                args,
                attachments: 2,
                id: None,
                ..
            } => {
                assert_eq!(name, "upload");
                assert_eq!(args.len(), 2);
                assert_eq!(args[1].get(), r#"{"_placeholder":true,"num":1}"#);
            }
            other => panic!("{other:?}"),
        }
        match Packet::parse(r#"61-4[{"_placeholder":true,"num":0}]"#).unwrap() {
            Packet::Ack {
                id: 4,
                attachments: 1,
                args,
                ..
            } => assert_eq!(args.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(Packet::parse(r#"5-["a"]"#).is_err());
        assert!(Packet::parse(r#"51["a"]"#).is_err());
        assert!(Packet::parse(r#"5x-["a"]"#).is_err());
    }

    #[test]
    fn parses_acks_and_disconnects() {
        match Packet::parse(r#"33["ok",1]"#).unwrap() {
            Packet::Ack {
                id: 3,
                args,
                attachments: 0,
                ..
            } => assert_eq!(args_text(&args), vec![r#""ok""#, "1"]),
            other => panic!("{other:?}"),
        }
        assert!(Packet::parse(r#"3["no id"]"#).is_err());
        assert!(matches!(
            Packet::parse("1").unwrap(),
            Packet::Disconnect { nsp: "/" }
        ));
        assert!(matches!(
            Packet::parse("1/x,").unwrap(),
            Packet::Disconnect { nsp: "/x" }
        ));
        assert!(Packet::parse("1{}").is_err());
        assert!(Packet::parse(r#"4{"message":"x"}"#).is_err());
        assert!(Packet::parse("7").is_err());
        assert!(Packet::parse("").is_err());
    }

    #[test]
    fn encodes_server_packets() {
        assert_eq!(connect_ok("abc"), Bytes::from_static(br#"40{"sid":"abc"}"#));
        let err = ConnectError::new("unauthorized")
            .with_data(json!({"code":"unauthorized","reason":"expired"}));
        assert_eq!(
            connect_error("/", &err),
            Bytes::from_static(br#"44{"message":"unauthorized","data":{"code":"unauthorized","reason":"expired"}}"#)
        );
        assert_eq!(
            connect_error("/other", &ConnectError::new("Invalid namespace")),
            Bytes::from_static(br#"44/other,{"message":"Invalid namespace"}"#)
        );
        assert_eq!(
            event("m", &json!({"a":1}), None, 0).unwrap(),
            Bytes::from_static(br#"42["m",{"a":1}]"#)
        );
        assert_eq!(
            event("m", &1, Some(9), 0).unwrap(),
            Bytes::from_static(br#"429["m",1]"#)
        );
        let a = raw(r#"{"x":[1,2]}"#);
        let b = raw(r#""s""#);
        assert_eq!(
            event_raw("e", &[&a, &b], None, 0),
            Bytes::from_static(br#"42["e",{"x":[1,2]},"s"]"#)
        );
        assert_eq!(
            event_raw("e", &[], None, 0),
            Bytes::from_static(br#"42["e"]"#)
        );
        let p = raw(r#"{"_placeholder":true,"num":0}"#);
        assert_eq!(
            event_raw("bin", &[&p], None, 1),
            Bytes::from_static(br#"451-["bin",{"_placeholder":true,"num":0}]"#)
        );
        assert_eq!(
            ack(5, &json!({"ok":true})).unwrap(),
            Bytes::from_static(br#"435[{"ok":true}]"#)
        );
        assert_eq!(
            ack_raw(5, &[&a, &b], 0),
            Bytes::from_static(br#"435[{"x":[1,2]},"s"]"#)
        );
        assert_eq!(
            ack_raw(5, &[&p], 1),
            Bytes::from_static(br#"461-5[{"_placeholder":true,"num":0}]"#)
        );
    }

    #[test]
    fn encoded_events_parse_back() {
        let data = json!({"text": "héllo \u{1e} \"quoted\"", "n": [1, 2.5, null]});
        let bytes = event("message:new", &data, Some(77), 0).unwrap();
        let text = std::str::from_utf8(&bytes[1..]).unwrap();
        match Packet::parse(text).unwrap() {
            Packet::Event {
                name,
                args,
                id: Some(77),
                ..
            } => {
                assert_eq!(name, "message:new");
                let back: serde_json::Value = serde_json::from_str(args[0].get()).unwrap();
                assert_eq!(back, data);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    /// Xorshift, so the property tests need no extra dependency and are reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Pieces that steer random input into the parsers' deeper branches.
    const PIECES: &[&str] = &[
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
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
        ":",
        "12",
        "99999999999999999999",
        "{\"_placeholder\":true,\"num\":0}",
        "null",
        "é",
        "\u{1e}",
        "b",
        "AQID",
        " ",
    ];

    fn random_text(rng: &mut Rng) -> String {
        let mut s = String::new();
        for _ in 0..rng.next() % 12 {
            if rng.next() % 4 == 0 {
                let bytes: Vec<u8> = (0..rng.next() % 6).map(|_| rng.next() as u8).collect();
                s.push_str(&String::from_utf8_lossy(&bytes));
            } else {
                s.push_str(PIECES[(rng.next() % PIECES.len() as u64) as usize]);
            }
        }
        s
    }

    #[test]
    fn random_input_never_panics_the_parsers() {
        let mut rng = Rng(0x9E3779B97F4A7C15);
        for _ in 0..50_000 {
            let text = random_text(&mut rng);
            let _ = Packet::parse(&text);
            let _ = crate::engine::packet::Packet::parse(&text);
            for item in crate::engine::packet::decode_payload(&text) {
                let _ = item;
            }
        }
    }

    #[test]
    fn random_events_round_trip() {
        const VALUES: &[&str] = &[
            "1",
            "-2.5e3",
            "null",
            "true",
            "\"é\\u001e\"",
            "{\"x\":[1,{}]}",
            "[]",
            "\"\"",
        ];
        let mut rng = Rng(0xD1B54A32D192ED03);
        for _ in 0..20_000 {
            let attachments = if rng.next() % 3 == 0 {
                (rng.next() % 4) as usize
            } else {
                0
            };
            let id = (rng.next() % 2 == 0).then(|| rng.next() % 1_000_000);
            let name = ["message:new", "a", "ünï", "x\"y"][(rng.next() % 4) as usize];
            let args: Vec<Box<RawValue>> = (0..rng.next() % 4)
                .map(|_| {
                    RawValue::from_string(
                        VALUES[(rng.next() % VALUES.len() as u64) as usize].to_owned(),
                    )
                    .unwrap()
                })
                .collect();
            let refs: Vec<&RawValue> = args.iter().map(|a| &**a).collect();
            let encoded = event_raw(name, &refs, id, attachments);
            let text = std::str::from_utf8(&encoded[1..]).unwrap();
            match Packet::parse(text) {
                Ok(Packet::Event {
                    nsp: "/",
                    name: n2,
                    args: a2,
                    id: i2,
                    attachments: t2,
                }) => {
                    assert_eq!((n2.as_str(), i2, t2), (name, id, attachments), "{text}");
                    let back: Vec<&str> = a2.iter().map(|a| a.get()).collect();
                    let sent: Vec<&str> = args.iter().map(|a| a.get()).collect();
                    assert_eq!(back, sent);
                }
                other => panic!("{text:?} did not parse back: {other:?}"),
            }
            // Every prefix of a valid packet is refused or parsed, never a panic.
            for cut in 0..text.len() {
                if text.is_char_boundary(cut) {
                    let _ = Packet::parse(&text[..cut]);
                }
            }
        }
    }
}
