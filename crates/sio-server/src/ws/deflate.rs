//! `permessage-deflate` (RFC 7692), negotiated with no context takeover in either direction, so that a
//! connection keeps no compression state at all: each message is compressed, and each client message
//! inflated, on its own, with a compressor and a decompressor kept per thread (a zlib deflate state with
//! a 15-bit window holds about 256 KB; one per connection would dwarf a 2 KB idle connection).
//!
//! Inflating is bounded: a compressed message that inflates past the payload limit is refused (close
//! 1009) as soon as the output passes it, without inflating the rest (a decompression bomb).
//!
//! flate2 with its zlib-rs backend: pure Rust (no C toolchain), faster than miniz_oxide, and it resets a
//! stream without reallocating it.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::{HeaderMap, HeaderValue, header};

/// The extension as confab-sio accepts it: neither side keeps its compression context between
/// messages (RFC 7692 section 7.1.1: a server may ask this of the client, and promise it itself).
pub(crate) const RESPONSE: HeaderValue = HeaderValue::from_static(
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
);

/// The empty stored block a sync flush ends with; RFC 7692 section 7.2.1 removes it from each message
/// and the receiver puts it back before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib's default level, as the reference server (Node's `ws`) uses. Measured with zlib-rs on a
/// 330-byte chat event: level 1 (zlib-rs's quick strategy) 2 µs but only 330 → 276 bytes; levels 2 to 9
/// 10-16 µs (mostly resetting the hash table) for 221 bytes. On 9.9 KB of history: level 1 404 bytes,
/// level 6 317 bytes in 20 µs.
const LEVEL: u32 = 6;

/// Whether the client offers `permessage-deflate` in a form we accept: the first offer whose
/// parameters are all known and honoured. We compress with a 15-bit window, so an offer that limits
/// the server's window (`server_max_window_bits` below 15) is declined; the client's window may be
/// anything (one decompressor with a 15-bit window inflates them all).
pub(crate) fn negotiate(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(acceptable)
}

fn acceptable(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if parts.next() != Some("permessage-deflate") {
        return false;
    }
    let mut seen = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        // "An extension negotiation offer ... MUST NOT include multiple instances" of a parameter.
        if seen.contains(&name) {
            return false;
        }
        seen.push(name);
        let ok = match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => true,
            ("client_max_window_bits", None) => true,
            ("client_max_window_bits", Some(bits)) => window_bits(bits).is_some(),
            ("server_max_window_bits", Some(bits)) => window_bits(bits) == Some(15),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn window_bits(value: &str) -> Option<u8> {
    // RFC 7692: 1*DIGIT without leading zeros, 8 to 15.
    if value.starts_with('0') {
        return None;
    }
    value.parse().ok().filter(|b| (8..=15).contains(b))
}

thread_local! {
    static DEFLATER: RefCell<Option<Compress>> = const { RefCell::new(None) };
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
    static RECENT: RefCell<Recent> = const { RefCell::new(Recent { entries: Vec::new(), next: 0 }) };
}

/// The last few payloads compressed on this thread, by identity: a broadcast queues the same `Bytes`
/// on every recipient, and without context takeover its compressed form is the same for all of them,
/// so it is compressed once per thread rather than once per recipient. An entry keeps its source
/// alive, so its address can't be reused for other bytes while it is here.
struct Recent {
    entries: Vec<(Bytes, Bytes)>,
    next: usize,
}

const RECENT_ENTRIES: usize = 8;
/// Larger payloads aren't kept (the cache would hold them alive).
const RECENT_MAX: usize = 64 * 1024;

/// [`deflate`], reusing the result for the same bytes (the same `Bytes`, by address) compressed lately.
pub(crate) fn deflate_shared(payload: &Bytes) -> Bytes {
    if payload.len() > RECENT_MAX {
        return deflate(payload);
    }
    let same =
        |(src, _): &&(Bytes, Bytes)| src.as_ptr() == payload.as_ptr() && src.len() == payload.len();
    if let Some(hit) = RECENT.with(|r| r.borrow().entries.iter().find(same).map(|(_, c)| c.clone()))
    {
        return hit;
    }
    let compressed = deflate(payload);
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        let entry = (payload.clone(), compressed.clone());
        if r.entries.len() < RECENT_ENTRIES {
            r.entries.push(entry);
        } else {
            let i = r.next;
            r.entries[i] = entry;
            r.next = (i + 1) % RECENT_ENTRIES;
        }
    });
    compressed
}

/// Compresses one message (its payload, RSV1 to be set on its first frame).
pub(crate) fn deflate(payload: &[u8]) -> Bytes {
    DEFLATER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let deflater = cell.get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        deflater.reset();
        deflate_with(deflater, payload)
    })
}

/// A message compressed as well as DEFLATE can: what an attacker's bomb looks like.
#[cfg(test)]
pub(crate) fn deflate_best(payload: &[u8]) -> Bytes {
    deflate_with(&mut Compress::new(Compression::best(), false), payload)
}

fn deflate_with(deflater: &mut Compress, payload: &[u8]) -> Bytes {
    // Deflate never grows data by more than a few bytes per 16 KiB block, plus the flush.
    let mut out = Vec::with_capacity(payload.len() + payload.len() / 1000 + 64);
    let mut input = payload;
    loop {
        let before = deflater.total_in();
        let status = deflater
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("deflate of a buffer in memory cannot fail");
        input = &input[(deflater.total_in() - before) as usize..];
        // Done once all input is in and the flush's output fit (spare room left over).
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        debug_assert!(matches!(status, Status::Ok | Status::BufError));
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    Bytes::from(out)
}

/// Why a compressed message was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates past the limit (at least this many bytes).
    TooBig(u64),
    /// It is not valid DEFLATE data.
    Invalid,
}

/// Inflates one message, refusing it as soon as its output passes `max` bytes.
pub(crate) fn inflate(payload: &[u8], max: usize) -> Result<BytesMut, InflateError> {
    INFLATER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let inflater = cell.get_or_insert_with(|| Decompress::new(false));
        inflater.reset(false);
        // Start small (chat messages are), grow as needed, never past the limit plus one byte (which
        // is how "past the limit" shows).
        let mut out = Vec::with_capacity((payload.len() * 4).max(256).min(max + 1));
        for input in [payload, &TAIL[..]] {
            let mut input = input;
            loop {
                let before_in = inflater.total_in();
                let status = inflater
                    .decompress_vec(input, &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Invalid)?;
                input = &input[(inflater.total_in() - before_in) as usize..];
                if out.len() > max {
                    return Err(InflateError::TooBig(out.len() as u64));
                }
                if status == Status::StreamEnd {
                    // A final block (BFINAL): nothing may follow it in this message.
                    break;
                }
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
                if out.len() == out.capacity() {
                    let room = out.capacity().min(max + 1 - out.len()).max(1);
                    out.reserve_exact(room);
                } else if status == Status::BufError {
                    // No progress with input left and room in the output: truncated or corrupt.
                    return Err(InflateError::Invalid);
                }
            }
        }
        Ok(BytesMut::from(&out[..]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(value),
        );
        h
    }

    #[test]
    fn negotiates_what_browsers_and_node_offer() {
        // Chrome, Firefox and the `ws` package.
        assert!(negotiate(&offer(
            "permessage-deflate; client_max_window_bits"
        )));
        assert!(negotiate(&offer(
            "permessage-deflate; client_max_window_bits=10; server_no_context_takeover"
        )));
        assert!(negotiate(&offer(
            "permessage-deflate; server_max_window_bits=10, permessage-deflate"
        )));
        assert!(!negotiate(&offer(
            "permessage-deflate; server_max_window_bits=10"
        )));
        assert!(!negotiate(&offer(
            "permessage-deflate; client_max_window_bits=7"
        )));
        assert!(!negotiate(&offer("permessage-deflate; unknown")));
        assert!(!negotiate(&offer(
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover"
        )));
        assert!(!negotiate(&offer("x-webkit-deflate-frame")));
        assert!(!negotiate(&HeaderMap::new()));
    }

    #[test]
    fn round_trips_and_matches_the_rfc_example() {
        // RFC 7692 section 7.2.3.1: "Hello" compressed without context takeover.
        assert_eq!(
            &inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap()[..],
            b"Hello"
        );
        for payload in [
            b"".to_vec(),
            b"42[\"message:new\",{}]".to_vec(),
            br#"{"body":"hello hello hello hello hello"}"#.repeat(2000),
            (0..100_000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ] {
            let compressed = deflate(&payload);
            assert!(!compressed.ends_with(&TAIL));
            assert_eq!(
                &inflate(&compressed, payload.len()).unwrap()[..],
                &payload[..]
            );
        }
    }

    #[test]
    fn a_bomb_is_refused_as_soon_as_it_passes_the_limit() {
        let bomb = deflate_best(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "{} bytes", bomb.len());
        match inflate(&bomb, 64 * 1024) {
            Err(InflateError::TooBig(n)) => assert!(n > 64 * 1024 && n <= 64 * 1024 + 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff], 1000),
            Err(InflateError::Invalid)
        );
    }
}
