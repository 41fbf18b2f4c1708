//! The MessagePack parser of `socket.io-msgpack-parser` (npm): each Socket.IO packet is one MessagePack
//! map `{type, nsp, data, id}`, sent as one Engine.IO binary message (a binary WebSocket frame, or `b` +
//! base64 in a polling payload), with binary data inline (no attachments, no BINARY_EVENT/BINARY_ACK
//! types). The client's encoder is notepack.io, so its conventions are followed: `fixext 1` of type 0 is
//! `undefined`, `fixext 8` of type 0 is a `Date`, and `ext` of type 0 is an `ArrayBuffer`.
//!
//! confab-sio keeps one representation inside: JSON. A packet from a MessagePack client is transcoded
//! at the edge into the JSON text the JSON parser would have produced (binary data becoming
//! `{"_placeholder":true,"num":N}` and attachments, as a JSON client's would), so the application sees
//! the same [`IncomingEvent`](crate::IncomingEvent) whichever parser the client uses. Outgoing packets
//! are encoded in JSON and transcoded to MessagePack once per packet ([`Packet`](crate::Packet) caches
//! it), not once per recipient.
//!
//! Hostile input: every length is checked against what is left of the message before anything is
//! allocated, nesting is bounded, and the JSON written is at most a few times the message's size
//! (which the transport already bounded).

use std::io::Write as _;

use bytes::Bytes;
use serde_json::Value;

use super::packet::{Header, Packet, ParseError};

/// Deepest nesting of arrays and maps in a client packet (the packet map and its `data` array
/// included). serde_json refuses deeper JSON anyway (128), and no chat payload comes close.
const MAX_DEPTH: usize = 100;

/// `{type: 1, nsp: "/"}`: the server disconnects the socket.
pub(crate) const DISCONNECT: Bytes = Bytes::from_static(b"\x82\xa4type\x01\xa3nsp\xa1/");

/// What a MessagePack client packet decodes to: the packet, as the JSON parser would have produced
/// it, and its binary data in order (the placeholders in the packet's arguments point into it).
pub(crate) struct Decoded<'a> {
    pub(crate) packet: Packet<'a>,
    pub(crate) binary: Vec<Bytes>,
}

/// Limits on one packet's binary data (`Config::max_attachments`, `Config::max_attachments_size`).
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_binaries: usize,
    pub(crate) max_binary_size: usize,
}

/// Decodes a client packet.
pub(crate) fn decode(message: &Bytes, limits: Limits) -> Result<Decoded<'_>, ParseError> {
    let mut reader = Reader {
        data: message,
        pos: 0,
        binary: Vec::new(),
        binary_size: 0,
        limits,
    };
    let Some(fields) = reader.map_len()? else {
        return Err(ParseError("a MessagePack packet must be a map"));
    };
    let mut kind = None;
    let mut nsp = None;
    let mut id = None;
    let mut data: Option<String> = None;
    for _ in 0..fields {
        let key = reader.str()?;
        match key {
            "type" => kind = Some(reader.uint()?),
            "nsp" => nsp = Some(reader.str()?),
            "id" => {
                id = match reader.peek()? {
                    FIXEXT1 => {
                        reader.undefined()?;
                        None
                    }
                    _ => Some(reader.uint()?),
                }
            }
            "data" => {
                let mut json = Vec::new();
                if reader.value(&mut json, 1)? {
                    // Valid UTF-8: the writer only emits JSON text.
                    data = Some(String::from_utf8(json).map_err(|_| ParseError("bad data"))?);
                }
            }
            // socket.io-client adds `options` ({compress}); anything else is ignored as well.
            _ => reader.skip(1)?,
        }
    }
    if reader.pos != message.len() {
        return Err(ParseError("bytes after the MessagePack packet"));
    }
    let kind = match kind {
        Some(k @ 0..=3) => k as u8,
        _ => return Err(ParseError("bad MessagePack packet type")),
    };
    let nsp = nsp.ok_or(ParseError("a MessagePack packet without nsp"))?;
    let id = match id {
        Some(id) if id > MAX_ID => return Err(ParseError("ack id too large")),
        id => id,
    };
    let payload = data.as_deref().unwrap_or("");
    // The JSON parser's checks apply unchanged: an event's data is a non-empty array whose first
    // element names it, an ack's is an array, a CONNECT's an object.
    let packet = Packet::from_parts(kind, nsp, id, payload, 0)?;
    Ok(Decoded {
        packet,
        binary: reader.binary,
    })
}

/// The largest ack id the JSON parser accepts (15 digits), so both parsers agree.
const MAX_ID: u64 = 999_999_999_999_999;

const FIXEXT1: u8 = 0xd4;

struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
    binary: Vec<Bytes>,
    binary_size: usize,
    limits: Limits,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Result<u8, ParseError> {
        self.data
            .get(self.pos)
            .copied()
            .ok_or(ParseError("truncated MessagePack"))
    }

    fn byte(&mut self) -> Result<u8, ParseError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    /// The next `n` bytes, after checking that they are there.
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let data: &'a Bytes = self.data;
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= data.len())
            .ok_or(ParseError("truncated MessagePack"))?;
        let out = &data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn be(&mut self, n: usize) -> Result<u64, ParseError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A length, checked against what is left: every element takes at least one byte, so a
    /// length larger than the rest of the message is a lie, refused before anything is allocated.
    fn len(&mut self, n: usize) -> Result<usize, ParseError> {
        let len = self.be(n)? as usize;
        if len > self.data.len() - self.pos {
            return Err(ParseError("a MessagePack length past the end"));
        }
        Ok(len)
    }

    fn map_len(&mut self) -> Result<Option<usize>, ParseError> {
        Ok(match self.peek()? {
            b @ 0x80..=0x8f => {
                self.pos += 1;
                Some(usize::from(b & 0x0f))
            }
            0xde => {
                self.pos += 1;
                Some(self.len(2)?)
            }
            0xdf => {
                self.pos += 1;
                Some(self.len(4)?)
            }
            _ => None,
        })
    }

    fn str(&mut self) -> Result<&'a str, ParseError> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.len(1)?,
            0xda => self.len(2)?,
            0xdb => self.len(4)?,
            _ => return Err(ParseError("expected a MessagePack string")),
        };
        std::str::from_utf8(self.take(len)?).map_err(|_| ParseError("a string is not UTF-8"))
    }

    fn uint(&mut self) -> Result<u64, ParseError> {
        match self.byte()? {
            b @ 0x00..=0x7f => Ok(u64::from(b)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            // A JavaScript number that is an integer may arrive as a float (or a signed int).
            0xcb => {
                let f = f64::from_bits(self.be(8)?);
                if f >= 0.0 && f.fract() == 0.0 && f < 9.007_199_254_740_992e15 {
                    Ok(f as u64)
                } else {
                    Err(ParseError("expected a non-negative integer"))
                }
            }
            b @ (0xd0..=0xd3) => {
                let n = 1usize << (b - 0xd0);
                let raw = self.be(n)?;
                let shift = 64 - 8 * n as u32;
                let v = ((raw << shift) as i64) >> shift;
                u64::try_from(v).map_err(|_| ParseError("expected a non-negative integer"))
            }
            _ => Err(ParseError("expected a non-negative integer")),
        }
    }

    /// `undefined` (notepack's `fixext 1` of type 0).
    fn undefined(&mut self) -> Result<(), ParseError> {
        match self.take(3)? {
            [FIXEXT1, 0, _] => Ok(()),
            _ => Err(ParseError("unsupported MessagePack extension")),
        }
    }

    fn binary(&mut self, len: usize, out: &mut Vec<u8>) -> Result<(), ParseError> {
        if self.binary.len() >= self.limits.max_binaries {
            return Err(ParseError("too many binary values"));
        }
        self.binary_size += len;
        if self.binary_size > self.limits.max_binary_size {
            return Err(ParseError("binary values too large"));
        }
        let start = self.pos;
        self.take(len)?;
        let _ = write!(
            out,
            r#"{{"_placeholder":true,"num":{}}}"#,
            self.binary.len()
        );
        // A slice of the message: no copy.
        self.binary.push(self.data.slice(start..start + len));
        Ok(())
    }

    /// Transcodes one value to JSON, appended to `out`. `false` (and nothing written) for
    /// `undefined`, which JSON has no word for: the caller leaves it out of a map, or writes `null`
    /// in an array, as `JSON.stringify` does.
    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<bool, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError("MessagePack nested too deep"));
        }
        let marker = self.byte()?;
        match marker {
            0x00..=0x7f => {
                let _ = write!(out, "{marker}");
            }
            0xe0..=0xff => {
                let _ = write!(out, "{}", marker as i8);
            }
            0x80..=0x8f | 0xde | 0xdf => {
                self.pos -= 1;
                let len = self.map_len()?.expect("a map marker");
                out.push(b'{');
                let mut first = true;
                for _ in 0..len {
                    let mark = out.len();
                    if !first {
                        out.push(b',');
                    }
                    self.key(out)?;
                    out.push(b':');
                    if self.value(out, depth + 1)? {
                        first = false;
                    } else {
                        out.truncate(mark);
                    }
                }
                out.push(b'}');
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                let len = match marker {
                    0xdc => self.len(2)?,
                    0xdd => self.len(4)?,
                    b => usize::from(b & 0x0f),
                };
                out.push(b'[');
                for i in 0..len {
                    if i > 0 {
                        out.push(b',');
                    }
                    if !self.value(out, depth + 1)? {
                        out.extend_from_slice(b"null");
                    }
                }
                out.push(b']');
            }
            0xa0..=0xbf | 0xd9..=0xdb => {
                self.pos -= 1;
                let s = self.str()?;
                serde_json::to_writer(&mut *out, s).map_err(|_| ParseError("bad string"))?;
            }
            0xc0 => out.extend_from_slice(b"null"),
            0xc2 => out.extend_from_slice(b"false"),
            0xc3 => out.extend_from_slice(b"true"),
            0xc4 => {
                let len = self.len(1)?;
                self.binary(len, out)?;
            }
            0xc5 => {
                let len = self.len(2)?;
                self.binary(len, out)?;
            }
            0xc6 => {
                let len = self.len(4)?;
                self.binary(len, out)?;
            }
            // ext 8/16/32: notepack's ArrayBuffer (type 0), what browsers send for binary data.
            0xc7..=0xc9 => {
                let len = self.len(1 << (marker - 0xc7))?;
                if self.byte()? != 0 {
                    return Err(ParseError("unsupported MessagePack extension"));
                }
                self.binary(len, out)?;
            }
            0xca => {
                let f = f32::from_bits(self.be(4)? as u32);
                serde_json::to_writer(&mut *out, &f).map_err(|_| ParseError("bad float"))?;
            }
            0xcb => {
                let f = f64::from_bits(self.be(8)?);
                serde_json::to_writer(&mut *out, &f).map_err(|_| ParseError("bad float"))?;
            }
            0xcc..=0xcf => {
                self.pos -= 1;
                let n = self.uint()?;
                let _ = write!(out, "{n}");
            }
            0xd0..=0xd3 => {
                let n = 1usize << (marker - 0xd0);
                let raw = self.be(n)?;
                let shift = 64 - 8 * n as u32;
                let _ = write!(out, "{}", ((raw << shift) as i64) >> shift);
            }
            FIXEXT1 => {
                self.pos -= 1;
                self.undefined()?;
                return Ok(false);
            }
            // fixext 8 of type 0: a Date, as milliseconds since the epoch; JSON carries its ISO form,
            // as `JSON.stringify` would have.
            0xd7 => {
                if self.byte()? != 0 {
                    return Err(ParseError("unsupported MessagePack extension"));
                }
                let raw = self.be(8)?;
                let ms = ((raw >> 32) as i32 as i64) * (1 << 32) + (raw & 0xffff_ffff) as i64;
                let _ = write!(out, "\"{}\"", iso_date(ms));
            }
            _ => return Err(ParseError("unsupported MessagePack value")),
        }
        Ok(true)
    }

    /// A map key as a JSON string: a string, or a number (which JavaScript turns into its text).
    fn key(&mut self, out: &mut Vec<u8>) -> Result<(), ParseError> {
        match self.peek()? {
            0xa0..=0xbf | 0xd9..=0xdb => {
                let s = self.str()?;
                serde_json::to_writer(&mut *out, s).map_err(|_| ParseError("bad key"))?;
            }
            0x00..=0x7f | 0xcc..=0xcf | 0xd0..=0xd3 | 0xe0..=0xff => {
                out.push(b'"');
                self.value(out, MAX_DEPTH)?;
                out.push(b'"');
            }
            _ => return Err(ParseError("a map key that is not a string")),
        }
        Ok(())
    }

    /// Skips one value (of a key the packet doesn't use), with the same checks.
    fn skip(&mut self, depth: usize) -> Result<(), ParseError> {
        let mut scratch = Vec::new();
        let before = (self.binary.len(), self.binary_size);
        self.value(&mut scratch, depth)?;
        self.binary.truncate(before.0);
        self.binary_size = before.1;
        Ok(())
    }
}

/// `Date.prototype.toISOString` of a time in milliseconds since the epoch.
fn iso_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+07}")
    };
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Transcodes one of our encoded packets (an Engine.IO message `4…` in the JSON parser's format, and
/// its attachments) into the MessagePack packet a `socket.io-msgpack-parser` client reads. Binary
/// placeholders become the attachments' bytes, inline.
pub(crate) fn encode(frame: &[u8], attachments: &[Bytes]) -> Result<Bytes, serde_json::Error> {
    let text = frame
        .strip_prefix(b"4")
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or_else(|| invalid("not a Socket.IO message"))?;
    let header = Header::split(text).map_err(|e| invalid(e.0))?;
    // The MessagePack parser has no binary types: binary data travels inline.
    let kind = match header.kind {
        5 => 2,
        6 => 3,
        k => k,
    };
    let data: Option<Value> = if header.payload.is_empty() {
        None
    } else {
        Some(serde_json::from_str(header.payload)?)
    };
    let fields = 2 + usize::from(data.is_some()) + usize::from(header.id.is_some());
    let mut out = Vec::with_capacity(header.payload.len() + 32);
    rmp::encode::write_map_len(&mut out, fields as u32).map_err(io)?;
    rmp::encode::write_str(&mut out, "type").map_err(io)?;
    rmp::encode::write_uint(&mut out, u64::from(kind)).map_err(io)?;
    rmp::encode::write_str(&mut out, "nsp").map_err(io)?;
    rmp::encode::write_str(&mut out, header.nsp).map_err(io)?;
    if let Some(data) = &data {
        rmp::encode::write_str(&mut out, "data").map_err(io)?;
        let binary = if header.attachments > 0 {
            attachments
        } else {
            &[]
        };
        write_value(&mut out, data, binary)?;
    }
    if let Some(id) = header.id {
        rmp::encode::write_str(&mut out, "id").map_err(io)?;
        rmp::encode::write_uint(&mut out, id).map_err(io)?;
    }
    Ok(Bytes::from(out))
}

/// The `data` of an event (a JSON array of the name and arguments) in MessagePack, for
/// [`event_with_id`].
pub(crate) fn event_data(json: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let value: Value = serde_json::from_slice(json)?;
    let mut out = Vec::with_capacity(json.len() + 8);
    write_value(&mut out, &value, &[])?;
    Ok(out)
}

/// `{type: 2, nsp: "/", data, id}`: an event asking for an acknowledgement, from [`event_data`].
pub(crate) fn event_with_id(data: &[u8], id: u64) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 32);
    out.extend_from_slice(b"\x84\xa4type\x02\xa3nsp\xa1/\xa4data");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\xa2id");
    let _ = rmp::encode::write_uint(&mut out, id);
    Bytes::from(out)
}

fn write_value(
    out: &mut Vec<u8>,
    value: &Value,
    attachments: &[Bytes],
) -> Result<(), serde_json::Error> {
    match value {
        Value::Null => rmp::encode::write_nil(out).map_err(io)?,
        Value::Bool(b) => rmp::encode::write_bool(out, *b).map_err(io)?,
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                rmp::encode::write_uint(out, u).map_err(io)?;
            } else if let Some(i) = n.as_i64() {
                rmp::encode::write_sint(out, i).map_err(io)?;
            } else {
                rmp::encode::write_f64(out, n.as_f64().unwrap_or(f64::NAN)).map_err(io)?;
            }
        }
        Value::String(s) => rmp::encode::write_str(out, s).map_err(io)?,
        Value::Array(items) => {
            rmp::encode::write_array_len(out, items.len() as u32).map_err(io)?;
            for item in items {
                write_value(out, item, attachments)?;
            }
        }
        Value::Object(map) => {
            if let Some(bin) = placeholder(map).and_then(|n| attachments.get(n)) {
                rmp::encode::write_bin(out, bin).map_err(io)?;
                return Ok(());
            }
            rmp::encode::write_map_len(out, map.len() as u32).map_err(io)?;
            for (key, item) in map {
                rmp::encode::write_str(out, key).map_err(io)?;
                write_value(out, item, attachments)?;
            }
        }
    }
    Ok(())
}

/// `{"_placeholder":true,"num":N}`: N.
fn placeholder(map: &serde_json::Map<String, Value>) -> Option<usize> {
    if map.len() != 2 || map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    map.get("num")?.as_u64().map(|n| n as usize)
}

fn invalid(what: &'static str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(what)
}

fn io(e: impl std::fmt::Display) -> serde_json::Error {
    <serde_json::Error as serde::ser::Error>::custom(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        max_binaries: 4,
        max_binary_size: 1024,
    };

    /// A client packet as notepack.io writes it.
    fn client(value: &rmpv::Value) -> Bytes {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        Bytes::from(out)
    }

    fn map(pairs: Vec<(&str, rmpv::Value)>) -> rmpv::Value {
        rmpv::Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    fn args(packet: &Packet<'_>) -> Vec<String> {
        match packet {
            Packet::Event { args, .. } | Packet::Ack { args, .. } => {
                args.iter().map(|a| a.get().to_owned()).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_what_socket_io_msgpack_parser_sends() {
        // socket.emit("hello", {a: 1, b: [true, null, 2.5, "é"]}, Buffer<1 2>, cb): with `options`,
        // which the client adds, and an ack id.
        let bytes = client(&map(vec![
            ("type", 2.into()),
            (
                "data",
                rmpv::Value::Array(vec![
                    "hello".into(),
                    map(vec![
                        ("a", 1.into()),
                        (
                            "b",
                            rmpv::Value::Array(vec![
                                true.into(),
                                rmpv::Value::Nil,
                                2.5.into(),
                                "é".into(),
                            ]),
                        ),
                    ]),
                    rmpv::Value::Binary(vec![1, 2]),
                ]),
            ),
            ("options", map(vec![("compress", true.into())])),
            ("id", 7.into()),
            ("nsp", "/".into()),
        ]));
        let decoded = decode(&bytes, LIMITS).unwrap();
        assert_eq!(
            args(&decoded.packet),
            [
                r#"{"a":1,"b":[true,null,2.5,"é"]}"#,
                r#"{"_placeholder":true,"num":0}"#
            ]
        );
        match decoded.packet {
            Packet::Event {
                nsp: "/",
                ref name,
                id: Some(7),
                attachments: 0,
                ..
            } => assert_eq!(name, "hello"),
            other => panic!("{other:?}"),
        }
        assert_eq!(decoded.binary, [Bytes::from_static(&[1, 2])]);
        // The attachment is a slice of the message, not a copy.
        assert!(bytes.as_ptr_range().contains(&decoded.binary[0].as_ptr()));
    }

    #[test]
    fn decodes_notepack_extensions() {
        // CONNECT with `data: undefined` (no auth); an ArrayBuffer (ext 0), a Date and undefined.
        let undefined = rmpv::Value::Ext(0, vec![0]);
        let connect = client(&map(vec![
            ("type", 0.into()),
            ("data", undefined.clone()),
            ("nsp", "/".into()),
        ]));
        assert!(matches!(
            decode(&connect, LIMITS).unwrap().packet,
            Packet::Connect {
                nsp: "/",
                auth: None
            }
        ));
        let date = rmpv::Value::Ext(0, 1_700_000_000_123u64.to_be_bytes().to_vec());
        let event = client(&map(vec![
            ("type", 2.into()),
            ("nsp", "/".into()),
            (
                "data",
                rmpv::Value::Array(vec![
                    "e".into(),
                    rmpv::Value::Ext(0, vec![9; 20]),
                    date,
                    undefined.clone(),
                    map(vec![("gone", undefined), ("kept", 1.into())]),
                ]),
            ),
        ]));
        let decoded = decode(&event, LIMITS).unwrap();
        assert_eq!(
            args(&decoded.packet),
            [
                r#"{"_placeholder":true,"num":0}"#,
                r#""2023-11-14T22:13:20.123Z""#,
                "null",
                r#"{"kept":1}"#
            ]
        );
        assert_eq!(decoded.binary, [Bytes::from(vec![9; 20])]);
        assert_eq!(iso_date(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_date(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso_date(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn refuses_what_the_json_parser_refuses_and_hostile_input() {
        let packet = |pairs| decode(&client(&map(pairs)), LIMITS).map(|d| d.packet).err();
        // Reserved names, an empty event, a CONNECT_ERROR from a client, no nsp, a string id.
        assert!(
            packet(vec![
                ("type", 2.into()),
                ("nsp", "/".into()),
                ("data", rmpv::Value::Array(vec!["connect".into()]))
            ])
            .is_some()
        );
        assert!(
            packet(vec![
                ("type", 2.into()),
                ("nsp", "/".into()),
                ("data", rmpv::Value::Array(vec![]))
            ])
            .is_some()
        );
        assert!(packet(vec![("type", 4.into()), ("nsp", "/".into())]).is_some());
        assert!(packet(vec![("type", 1.into())]).is_some());
        assert!(
            packet(vec![
                ("type", 3.into()),
                ("nsp", "/".into()),
                ("id", "1".into()),
                ("data", rmpv::Value::Array(vec![]))
            ])
            .is_some()
        );
        // Too many binaries, or too large.
        let bins = |n, size| {
            let mut data = vec![rmpv::Value::from("e")];
            data.extend((0..n).map(|_| rmpv::Value::Binary(vec![0; size])));
            packet(vec![
                ("type", 2.into()),
                ("nsp", "/".into()),
                ("data", rmpv::Value::Array(data)),
            ])
        };
        assert!(bins(4, 10).is_none());
        assert!(bins(5, 10).is_some());
        assert!(bins(2, 600).is_some());
        // Lengths that lie, nesting without end, truncation, trailing bytes.
        for hostile in [
            &b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\xdd\xff\xff\xff\xff"[..],
            b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\xc6\xff\xff\xff\xff",
            b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\xdb\xff\xff\xff\xff",
            b"\xdf\xff\xff\xff\xff",
            b"\x82\xa4type\x02\xa3nsp",
            b"\x81\xa4type\x01\x00",
            b"\xc0",
            b"",
        ] {
            assert!(
                decode(&Bytes::copy_from_slice(hostile), LIMITS).is_err(),
                "{hostile:?}"
            );
        }
        let mut deep = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1e".to_vec();
        deep.extend(std::iter::repeat_n(0x91, 100_000));
        deep.push(0xc0);
        assert!(decode(&Bytes::from(deep), LIMITS).is_err());
    }

    #[test]
    fn random_bytes_never_panic_the_decoder() {
        let mut seed = 0x9E3779B97F4A7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let valid = client(&map(vec![
            ("type", 2.into()),
            ("nsp", "/".into()),
            (
                "data",
                rmpv::Value::Array(vec!["e".into(), rmpv::Value::Binary(vec![1]), 1.5.into()]),
            ),
            ("id", 3.into()),
        ]));
        for _ in 0..20_000 {
            let mut bytes = valid.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            bytes.truncate(1 + (next() as usize) % bytes.len());
            let _ = decode(&Bytes::from(bytes), LIMITS);
        }
    }

    #[test]
    fn encodes_our_packets_for_msgpack_clients() {
        let decode_value = |b: &Bytes| rmpv::decode::read_value(&mut &b[..]).unwrap();
        let event = encode(br#"42["m",{"a":[1,-2,2.5,null,"x"]}]"#, &[]).unwrap();
        assert_eq!(
            decode_value(&event),
            map(vec![
                ("type", 2.into()),
                ("nsp", "/".into()),
                (
                    "data",
                    rmpv::Value::Array(vec![
                        "m".into(),
                        map(vec![(
                            "a",
                            rmpv::Value::Array(vec![
                                1.into(),
                                (-2).into(),
                                2.5.into(),
                                rmpv::Value::Nil,
                                "x".into()
                            ])
                        )])
                    ])
                ),
            ])
        );
        // Binary events and acks: the placeholders become the bytes, and the types plain ones.
        let binary = encode(
            br#"461-5[{"_placeholder":true,"num":0}]"#,
            &[Bytes::from_static(&[7, 8])],
        )
        .unwrap();
        assert_eq!(
            decode_value(&binary),
            map(vec![
                ("type", 3.into()),
                ("nsp", "/".into()),
                (
                    "data",
                    rmpv::Value::Array(vec![rmpv::Value::Binary(vec![7, 8])])
                ),
                ("id", 5.into()),
            ])
        );
        let refusal = encode(br#"44/x,{"message":"no"}"#, &[]).unwrap();
        assert_eq!(
            decode_value(&refusal),
            map(vec![
                ("type", 4.into()),
                ("nsp", "/x".into()),
                ("data", map(vec![("message", "no".into())])),
            ])
        );
        assert_eq!(encode(b"41", &[]).unwrap(), DISCONNECT);
        assert_eq!(
            decode_value(&event_with_id(&event_data(br#"["q",1]"#).unwrap(), 9)),
            map(vec![
                ("type", 2.into()),
                ("nsp", "/".into()),
                ("data", rmpv::Value::Array(vec!["q".into(), 1.into()])),
                ("id", 9.into()),
            ])
        );
        assert!(encode(b"42[", &[]).is_err());
        assert!(encode(b"x", &[]).is_err());
        // What we encode, a MessagePack client's decoder reads back (and so does ours).
        let sent = json!({"text": "héllo", "n": [1, 2.5, null, u64::MAX, -7]});
        let frame = crate::socketio::packet::event("message:new", &sent, Some(3), 0).unwrap();
        let encoded = encode(&frame, &[]).unwrap();
        let back = decode(&encoded, LIMITS).unwrap();
        let got: Value = serde_json::from_str(&args(&back.packet)[0]).unwrap();
        assert_eq!(got, sent);
    }
}
