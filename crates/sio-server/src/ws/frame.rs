//! WebSocket frames, server side: a reader that unmasks and reassembles client messages, refusing
//! oversized ones from their header, and a writer that sends queued payloads with vectored writes, without
//! copying them into a write buffer.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use super::deflate::{self, InflateError};
use super::io::WsIo;

/// How many frames one vectored write may carry.
const WRITE_BATCH: usize = 32;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// A text message; its bytes are valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// A close frame, with its status code if it had one.
    Close(Option<u16>),
}

/// A WebSocket close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CloseCode(pub(crate) u16);

impl CloseCode {
    pub(crate) const NORMAL: CloseCode = CloseCode(1000);
    pub(crate) const GOING_AWAY: CloseCode = CloseCode(1001);
    pub(crate) const PROTOCOL: CloseCode = CloseCode(1002);
    pub(crate) const INVALID_DATA: CloseCode = CloseCode(1007);
    pub(crate) const POLICY: CloseCode = CloseCode(1008);
    pub(crate) const TOO_BIG: CloseCode = CloseCode(1009);
}

/// Why a WebSocket connection fails.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    #[error("WebSocket protocol violation: {0}")]
    Protocol(&'static str),
    #[error("a message of at least {0} bytes exceeds the limit")]
    TooBig(u64),
    #[error("a text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("a compressed message is not valid DEFLATE data")]
    BadDeflate,
    #[error("WebSocket I/O failed: {0}")]
    Io(#[from] io::Error),
}

impl WsError {
    /// The close code to send the client, when the connection can still carry one.
    pub(crate) fn close_code(&self) -> Option<CloseCode> {
        match self {
            WsError::Protocol(_) => Some(CloseCode::PROTOCOL),
            WsError::TooBig(_) => Some(CloseCode::TOO_BIG),
            WsError::InvalidUtf8 | WsError::BadDeflate => Some(CloseCode::INVALID_DATA),
            WsError::Io(_) => None,
        }
    }
}

enum Parsed {
    Message(Message),
    /// A fragment was added to the message being reassembled.
    Fragment,
    /// At least this many more bytes are needed.
    NeedMore(usize),
}

/// Reads client frames. Between messages it holds no buffer: bytes are read into a fresh buffer when the
/// stream is readable, and the buffer is let go as soon as it has been consumed.
pub(crate) struct FrameReader {
    buf: BytesMut,
    /// A fragmented message being reassembled: its kind, and the payload so far.
    fragments: Option<(Kind, BytesMut)>,
    /// A `u32` (no payload limit comes near 4 GiB) keeps the reader, and so an idle connection, as
    /// small as before the `deflate` flag.
    max_message: u32,
    /// `permessage-deflate` was negotiated: a message whose first frame has RSV1 set is compressed.
    deflate: bool,
}

/// What a message is: text or binary, compressed or not.
#[derive(Clone, Copy)]
struct Kind {
    text: bool,
    compressed: bool,
}

impl FrameReader {
    /// A reader starting with bytes already read from the stream (after the HTTP head), if any.
    /// `max_message` bounds a message as it arrives (compressed) and once inflated.
    pub(crate) fn new(initial: BytesMut, max_message: usize, deflate: bool) -> Self {
        Self {
            buf: initial,
            fragments: None,
            max_message: u32::try_from(max_message).unwrap_or(u32::MAX),
            deflate,
        }
    }

    /// The next message, `Ok(None)` at the end of the stream.
    pub(crate) fn poll_next(
        &mut self,
        io: &mut impl WsIo,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Message>, WsError>> {
        loop {
            match self.parse()? {
                Parsed::Message(message) => {
                    if self.buf.is_empty() {
                        // Drop our handle on the read buffer; the message's bytes keep what they need.
                        self.buf = BytesMut::new();
                    }
                    return Poll::Ready(Ok(Some(message)));
                }
                Parsed::Fragment => continue,
                Parsed::NeedMore(needed) => {
                    let read = ready!(io.poll_read_into(cx, &mut self.buf, needed))?;
                    if read == 0 {
                        return Poll::Ready(Ok(None));
                    }
                }
            }
        }
    }

    fn parse(&mut self) -> Result<Parsed, WsError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(Parsed::NeedMore(2 - b.len()));
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = b[0] & 0x0F;
        // RSV1 marks a compressed message (RFC 7692), on its first frame only; RSV2 and RSV3 mean
        // nothing here.
        let rsv1 = b[0] & 0x40 != 0;
        if b[0] & 0x30 != 0 || (rsv1 && !self.deflate) {
            return Err(WsError::Protocol("reserved bits set without an extension"));
        }
        if b[1] & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let (len, header_len) = match b[1] & 0x7F {
            126 if b.len() < 4 => return Ok(Parsed::NeedMore(4 - b.len())),
            126 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4 + 4),
            127 if b.len() < 10 => return Ok(Parsed::NeedMore(10 - b.len())),
            127 => {
                let len = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("frame length has its top bit set"));
                }
                (len, 10 + 4)
            }
            short => (u64::from(short), 2 + 4),
        };
        let is_control = opcode & 0x8 != 0;
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
            _ => return Err(WsError::Protocol("unknown opcode")),
        }
        if is_control && (!fin || len > 125) {
            return Err(WsError::Protocol(
                "control frames must be final and at most 125 bytes",
            ));
        }
        if rsv1 && (is_control || opcode == OP_CONTINUATION) {
            return Err(WsError::Protocol("RSV1 on a control or continuation frame"));
        }
        if !is_control {
            // Refuse an oversized message from its header, before buffering any of it.
            let so_far = self
                .fragments
                .as_ref()
                .map_or(0, |(_, acc)| acc.len() as u64);
            if so_far + len > u64::from(self.max_message) {
                return Err(WsError::TooBig(so_far + len));
            }
        }
        let total = header_len + len as usize;
        if b.len() < total {
            return Ok(Parsed::NeedMore(total - b.len()));
        }
        let mask: [u8; 4] = b[header_len - 4..header_len].try_into().expect("4 bytes");
        self.buf.advance(header_len);
        let mut payload = self.buf.split_to(len as usize);
        unmask(&mut payload, mask);

        match opcode {
            OP_TEXT | OP_BINARY => {
                if self.fragments.is_some() {
                    return Err(WsError::Protocol(
                        "a new message started inside a fragmented one",
                    ));
                }
                let kind = Kind {
                    text: opcode == OP_TEXT,
                    compressed: rsv1,
                };
                if fin {
                    return finish(kind, payload, self.max_message as usize).map(Parsed::Message);
                }
                self.fragments = Some((kind, payload));
                Ok(Parsed::Fragment)
            }
            OP_CONTINUATION => {
                let Some((_, acc)) = self.fragments.as_mut() else {
                    return Err(WsError::Protocol("a continuation frame without a message"));
                };
                acc.extend_from_slice(&payload);
                if !fin {
                    return Ok(Parsed::Fragment);
                }
                let (kind, acc) = self.fragments.take().expect("checked above");
                finish(kind, acc, self.max_message as usize).map(Parsed::Message)
            }
            OP_CLOSE => match payload.len() {
                0 => Ok(Parsed::Message(Message::Close(None))),
                1 => Err(WsError::Protocol("a close frame with a 1-byte body")),
                _ => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    if !close_code_allowed(code) {
                        return Err(WsError::Protocol("a close code a peer may not send"));
                    }
                    std::str::from_utf8(&payload[2..]).map_err(|_| WsError::InvalidUtf8)?;
                    Ok(Parsed::Message(Message::Close(Some(code))))
                }
            },
            OP_PING => Ok(Parsed::Message(Message::Ping(payload.freeze()))),
            _ => Ok(Parsed::Message(Message::Pong)),
        }
    }
}

/// Whether a peer may send this close code (RFC 6455 section 7.4 and the IANA registry): the defined
/// codes except those reserved for "no code" (1005), "abnormal closure" (1006) and "TLS failure" (1015),
/// and the ranges for libraries (3000-3999) and applications (4000-4999). Anything else is a protocol
/// error, answered with 1002, as tungstenite and the Autobahn suite expect.
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn finish(kind: Kind, payload: BytesMut, max: usize) -> Result<Message, WsError> {
    let payload = if kind.compressed {
        // Inflated with the same bound as any message: a bomb stops at the limit.
        deflate::inflate(&payload, max).map_err(|e| match e {
            InflateError::TooBig(n) => WsError::TooBig(n),
            InflateError::Invalid => WsError::BadDeflate,
        })?
    } else {
        payload
    };
    if kind.text {
        std::str::from_utf8(&payload).map_err(|_| WsError::InvalidUtf8)?;
        Ok(Message::Text(payload.freeze()))
    } else {
        Ok(Message::Binary(payload.freeze()))
    }
}

fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        for (b, m) in chunk.iter_mut().zip(mask) {
            *b ^= m;
        }
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

struct OutFrame {
    opcode: u8,
    payload: Bytes,
}

/// Writes server frames (unmasked) from a queue of payloads, several per vectored write.
pub(crate) struct FrameWriter {
    queue: VecDeque<OutFrame>,
    /// Bytes of the front frame (header included) already written.
    offset: u32,
    /// With `permessage-deflate`, messages of at least this many bytes are compressed; `u32::MAX`
    /// when it wasn't negotiated.
    deflate_min: u32,
}

/// The RSV1 bit, in a frame's first byte: the message is compressed.
const RSV1: u8 = 0x40;

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new(None)
    }
}

impl FrameWriter {
    /// A writer; `deflate_min` is the compression threshold when `permessage-deflate` was negotiated.
    pub(crate) fn new(deflate_min: Option<usize>) -> Self {
        Self {
            queue: VecDeque::new(),
            offset: 0,
            deflate_min: deflate_min.map_or(u32::MAX, |m| u32::try_from(m).unwrap_or(u32::MAX)),
        }
    }

    pub(crate) fn text(&mut self, payload: Bytes) {
        self.data(OP_TEXT, payload);
    }

    pub(crate) fn binary(&mut self, payload: Bytes) {
        self.data(OP_BINARY, payload);
    }

    fn data(&mut self, opcode: u8, payload: Bytes) {
        let (opcode, payload) = if payload.len() as u64 >= u64::from(self.deflate_min) {
            (opcode | RSV1, deflate::deflate_shared(&payload))
        } else {
            (opcode, payload)
        };
        self.queue.push_back(OutFrame { opcode, payload });
    }

    pub(crate) fn pong(&mut self, payload: Bytes) {
        self.queue.push_back(OutFrame {
            opcode: OP_PONG,
            payload,
        });
    }

    pub(crate) fn close(&mut self, code: CloseCode) {
        self.queue.push_back(OutFrame {
            opcode: OP_CLOSE,
            payload: Bytes::copy_from_slice(&code.0.to_be_bytes()),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Writes everything queued and flushes the stream.
    pub(crate) fn poll_flush<IO: AsyncWrite + Unpin>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let written = ready!(self.poll_write_some(io, cx))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(written);
        }
        Pin::new(io).poll_flush(cx)
    }

    fn poll_write_some<IO: AsyncWrite + Unpin>(
        &self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let count = self.queue.len().min(WRITE_BATCH);
        let mut headers = [[0u8; 10]; WRITE_BATCH];
        let mut header_lens = [0usize; WRITE_BATCH];
        for (i, frame) in self.queue.iter().take(count).enumerate() {
            header_lens[i] = encode_header(&mut headers[i], frame.opcode, frame.payload.len());
        }
        let mut slices = [IoSlice::new(&[]); 2 * WRITE_BATCH];
        let mut n = 0;
        for (i, frame) in self.queue.iter().take(count).enumerate() {
            let header = &headers[i][..header_lens[i]];
            let skip = if i == 0 { self.offset as usize } else { 0 };
            if skip < header.len() {
                slices[n] = IoSlice::new(&header[skip..]);
                n += 1;
                if !frame.payload.is_empty() {
                    slices[n] = IoSlice::new(&frame.payload);
                    n += 1;
                }
            } else {
                slices[n] = IoSlice::new(&frame.payload[skip - header.len()..]);
                n += 1;
            }
        }
        Pin::new(io).poll_write_vectored(cx, &slices[..n])
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.queue.front() else {
                break;
            };
            let total = header_len(front.payload.len()) + front.payload.len();
            let left = total - self.offset as usize;
            if written >= left {
                written -= left;
                self.queue.pop_front();
                self.offset = 0;
            } else {
                // Less than the front frame, which is at most a packet: fits in a u32.
                self.offset += written as u32;
                written = 0;
            }
        }
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            // Idle connections should hold nothing: give the queue's memory back after each burst.
            self.queue = VecDeque::new();
        }
    }
}

fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// `opcode` may carry [`RSV1`].
fn encode_header(out: &mut [u8; 10], opcode: u8, len: usize) -> usize {
    out[0] = 0x80 | opcode;
    match header_len(len) {
        2 => out[1] = len as u8,
        4 => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        }
    }
    header_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// A stream over a fixed input that hands out at most `step` bytes per read.
    struct Scripted {
        input: Vec<u8>,
        pos: usize,
        step: usize,
        output: Vec<u8>,
    }

    impl Scripted {
        fn new(input: Vec<u8>, step: usize) -> Self {
            Self {
                input,
                pos: 0,
                step,
                output: Vec::new(),
            }
        }
    }

    impl WsIo for Scripted {
        fn poll_read_into(
            &mut self,
            _: &mut Context<'_>,
            buf: &mut BytesMut,
            _needed: usize,
        ) -> Poll<io::Result<usize>> {
            let n = self.step.min(self.input.len() - self.pos);
            buf.extend_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Scripted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            // Accept at most 3 bytes per call to exercise partial writes.
            let n = data.len().min(3);
            self.output.extend_from_slice(&data[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Encodes a masked client frame.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
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

    fn read_all(input: Vec<u8>, step: usize, max: usize) -> Vec<Result<Message, String>> {
        read_with(input, step, max, false)
    }

    fn read_with(
        input: Vec<u8>,
        step: usize,
        max: usize,
        deflate: bool,
    ) -> Vec<Result<Message, String>> {
        let mut io = Scripted::new(input, step);
        let mut reader = FrameReader::new(BytesMut::new(), max, deflate);
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        loop {
            match reader.poll_next(&mut io, &mut cx) {
                Poll::Ready(Ok(Some(m))) => out.push(Ok(m)),
                Poll::Ready(Ok(None)) => return out,
                Poll::Ready(Err(e)) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
                Poll::Pending => unreachable!("the scripted stream is always ready"),
            }
        }
    }

    #[test]
    fn reads_messages_byte_by_byte_and_whole() {
        let big = vec![b'x'; 70_000];
        let mut input = client_frame(true, OP_TEXT, b"4hello");
        input.extend(client_frame(true, OP_BINARY, &[1, 2, 3]));
        input.extend(client_frame(true, OP_PING, b"p"));
        input.extend(client_frame(true, OP_TEXT, &big[..300]));
        input.extend(client_frame(true, OP_BINARY, &big));
        input.extend(client_frame(true, OP_CLOSE, &1000u16.to_be_bytes()));
        for step in [1, 7, 100_000] {
            let got = read_all(input.clone(), step, 100_000);
            assert_eq!(
                got,
                vec![
                    Ok(Message::Text(Bytes::from_static(b"4hello"))),
                    Ok(Message::Binary(Bytes::from_static(&[1, 2, 3]))),
                    Ok(Message::Ping(Bytes::from_static(b"p"))),
                    Ok(Message::Text(Bytes::copy_from_slice(&big[..300]))),
                    Ok(Message::Binary(Bytes::copy_from_slice(&big))),
                    Ok(Message::Close(Some(1000))),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn reassembles_fragments_around_control_frames() {
        let mut input = client_frame(false, OP_TEXT, b"4he");
        input.extend(client_frame(true, OP_PING, b""));
        input.extend(client_frame(false, OP_CONTINUATION, b"ll"));
        input.extend(client_frame(true, OP_CONTINUATION, b"o"));
        let got = read_all(input, 2, 1000);
        assert_eq!(
            got,
            vec![
                Ok(Message::Ping(Bytes::new())),
                Ok(Message::Text(Bytes::from_static(b"4hello")))
            ]
        );
    }

    #[test]
    fn refuses_protocol_violations() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0x81, 0x01, b'a'], "masked"),
            (vec![0xC1, 0x80, 0, 0, 0, 0], "reserved"),
            (client_frame(true, 0x3, b""), "opcode"),
            (client_frame(false, OP_PING, b""), "control"),
            (client_frame(true, OP_PING, &[0; 126]), "control"),
            (client_frame(true, OP_CONTINUATION, b"x"), "continuation"),
            (
                [
                    client_frame(false, OP_TEXT, b"a"),
                    client_frame(true, OP_TEXT, b"b"),
                ]
                .concat(),
                "inside",
            ),
            (client_frame(true, OP_TEXT, &[0xff, 0xfe]), "UTF-8"),
            (client_frame(true, OP_CLOSE, &[3]), "1-byte"),
            (
                client_frame(true, OP_CLOSE, &999u16.to_be_bytes()),
                "close code",
            ),
            (
                client_frame(true, OP_CLOSE, &1005u16.to_be_bytes()),
                "close code",
            ),
            (client_frame(true, OP_CLOSE, &[0x03, 0xE8, 0xff]), "UTF-8"),
            (
                vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                "top bit",
            ),
        ];
        for (input, needle) in cases {
            let got = read_all(input, 1000, 1000);
            let last = got.last().unwrap().as_ref().unwrap_err();
            assert!(last.contains(needle), "{last} should mention {needle}");
        }
    }

    #[test]
    fn refuses_oversized_messages_from_the_header() {
        // Only the header is supplied: the reader must refuse before waiting for the payload.
        let mut input = client_frame(true, OP_BINARY, &vec![0; 2000]);
        input.truncate(8);
        let got = read_all(input, 1000, 1000);
        assert_eq!(
            got,
            vec![Err(
                "a message of at least 2000 bytes exceeds the limit".into()
            )]
        );
        // Fragments add up.
        let mut input = client_frame(false, OP_TEXT, &[b'a'; 600]);
        input.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 600]));
        let got = read_all(input, 1000, 1000);
        assert!(got.last().unwrap().as_ref().unwrap_err().contains("1200"));
    }

    #[test]
    fn writes_frames_with_partial_writes() {
        let mut io = Scripted::new(Vec::new(), 0);
        let mut writer = FrameWriter::default();
        writer.text(Bytes::from_static(b"42[\"a\"]"));
        writer.binary(Bytes::from(vec![7u8; 300]));
        writer.binary(Bytes::from(vec![9u8; 70_000]));
        writer.pong(Bytes::new());
        writer.close(CloseCode::NORMAL);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            writer.poll_flush(&mut io, &mut cx),
            Poll::Ready(Ok(()))
        ));
        assert!(writer.is_empty());
        let mut expected = vec![0x81, 7];
        expected.extend_from_slice(b"42[\"a\"]");
        expected.extend_from_slice(&[0x82, 126, 1, 44]);
        expected.extend(vec![7u8; 300]);
        expected.extend_from_slice(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        expected.extend(vec![9u8; 70_000]);
        expected.extend_from_slice(&[0x8A, 0]);
        expected.extend_from_slice(&[0x88, 2, 0x03, 0xE8]);
        assert_eq!(io.output, expected);
    }

    /// A masked client frame with RSV1 set (the message is compressed).
    fn compressed_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = client_frame(fin, opcode, payload);
        frame[0] |= RSV1;
        frame
    }

    #[test]
    fn reads_compressed_messages_when_negotiated() {
        let text = br#"42["message:send",{"body":"hello hello hello hello"}]"#;
        let deflated = deflate::deflate(text);
        let mut input = compressed_frame(true, OP_TEXT, &deflated);
        // Fragmented: RSV1 on the first frame only.
        input.extend(compressed_frame(false, OP_BINARY, &deflated[..3]));
        input.extend(client_frame(true, OP_CONTINUATION, &deflated[3..]));
        // An uncompressed message between compressed ones.
        input.extend(client_frame(true, OP_TEXT, b"3"));
        for step in [1, 5, 1000] {
            assert_eq!(
                read_with(input.clone(), step, 1000, true),
                vec![
                    Ok(Message::Text(Bytes::from_static(text))),
                    Ok(Message::Binary(Bytes::from_static(text))),
                    Ok(Message::Text(Bytes::from_static(b"3"))),
                ]
            );
        }
        // Not negotiated: RSV1 is a protocol error.
        let got = read_with(
            compressed_frame(true, OP_TEXT, &deflated),
            1000,
            1000,
            false,
        );
        assert!(got[0].as_ref().unwrap_err().contains("reserved"));
        // RSV1 on a continuation or a control frame, RSV2: protocol errors even when negotiated.
        for (bad, needle) in [
            (
                [
                    client_frame(false, OP_TEXT, b"a"),
                    compressed_frame(true, OP_CONTINUATION, b"b"),
                ]
                .concat(),
                "RSV1",
            ),
            (compressed_frame(true, OP_PING, b""), "RSV1"),
            (
                {
                    let mut f = client_frame(true, OP_TEXT, b"a");
                    f[0] |= 0x20;
                    f
                },
                "reserved",
            ),
        ] {
            let got = read_with(bad, 1000, 1000, true);
            let last = got.last().unwrap().as_ref().unwrap_err();
            assert!(last.contains(needle), "{last} should mention {needle}");
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_at_the_limit() {
        // 10 MiB of zeros compress to about 10 KiB: under the limit on the wire, far over it inflated.
        let bomb = deflate::deflate_best(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 * 1024);
        let got = read_with(
            compressed_frame(true, OP_BINARY, &bomb),
            4096,
            64 * 1024,
            true,
        );
        assert_eq!(
            got,
            vec![Err(
                "a message of at least 65537 bytes exceeds the limit".into()
            )]
        );
        // Corrupt DEFLATE data, and compressed text that isn't UTF-8 once inflated.
        let got = read_with(
            compressed_frame(true, OP_TEXT, &[0xff; 8]),
            1000,
            1000,
            true,
        );
        assert!(got[0].as_ref().unwrap_err().contains("DEFLATE"));
        let got = read_with(
            compressed_frame(true, OP_TEXT, &deflate::deflate(&[0xff, 0xfe])),
            1000,
            1000,
            true,
        );
        assert!(got[0].as_ref().unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn writes_compressed_frames_from_the_threshold_on() {
        let mut io = Scripted::new(Vec::new(), 0);
        let mut writer = FrameWriter::new(Some(100));
        let small = Bytes::from_static(b"42[\"small\"]");
        let big = Bytes::from(br#"{"body":"hello hello hello"}"#.repeat(20));
        writer.text(small.clone());
        writer.binary(big.clone());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(writer.poll_flush(&mut io, &mut cx).is_ready());
        let mut expected = vec![0x81, small.len() as u8];
        expected.extend_from_slice(&small);
        let deflated = deflate::deflate(&big);
        expected.extend_from_slice(&[0x80 | RSV1 | OP_BINARY, deflated.len() as u8]);
        expected.extend_from_slice(&deflated);
        assert_eq!(io.output, expected);
        assert!(deflated.len() < big.len() / 4);
    }

    #[test]
    fn random_bytes_never_panic_the_reader() {
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half the time, start with a plausible masked header so the deeper paths run too.
            if next() % 2 == 0 && input.len() > 2 {
                input[1] |= 0x80;
                input[0] &= 0x8F;
            }
            let _ = read_with(input, 1 + (next() % 5) as usize, 32, next() % 2 == 0);
        }
    }
}
