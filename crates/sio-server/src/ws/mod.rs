//! The WebSocket protocol (RFC 6455), server side: the opening handshake and a frame codec that holds no
//! buffer while a connection is idle.

pub(crate) mod deflate;
pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod io;

pub(crate) use frame::{CloseCode, FrameReader, FrameWriter, Message};
pub(crate) use io::WsIo;
