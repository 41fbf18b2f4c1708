//! How the frame reader gets bytes from a stream.

use std::io;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Reads of at most this size go through a buffer on the stack, and only the bytes received are copied
/// to the heap: a connection whose readiness turns out to be stale allocates nothing.
const STACK_READ: usize = 4096;

/// A stream a WebSocket runs on. Reading goes through [`WsIo::poll_read_into`] so that it can wait for
/// data *without* a heap buffer: an idle connection then holds no read buffer at all.
pub(crate) trait WsIo: AsyncWrite + Unpin + Send + 'static {
    /// Appends what is available to `buf`; `needed` is how many more bytes the reader knows it needs (a
    /// large value means a large frame is arriving, which is worth reserving for). `Ok(0)` means the peer
    /// closed its side.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        needed: usize,
    ) -> Poll<io::Result<usize>>;
}

impl WsIo for TcpStream {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        needed: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            let result = if needed <= STACK_READ {
                let mut chunk = [0u8; STACK_READ];
                self.try_read(&mut chunk)
                    .inspect(|&n| buf.extend_from_slice(&chunk[..n]))
            } else {
                buf.reserve(needed);
                self.try_read_buf(buf)
            };
            match result {
                Ok(n) => return Poll::Ready(Ok(n)),
                // The readiness was stale; `try_read` cleared it, so polling again registers the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Any other stream (such as a connection hyper upgraded), read through an ordinary `AsyncRead` call into
/// a stack buffer. This path is only taken by WebSocket upgrades that arrive on a keep-alive HTTP
/// connection, which browsers don't do.
pub(crate) struct Generic<T>(pub(crate) T);

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> WsIo for Generic<T> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        _needed: usize,
    ) -> Poll<io::Result<usize>> {
        let mut chunk = [0u8; STACK_READ];
        let mut read_buf = ReadBuf::new(&mut chunk);
        ready!(std::pin::Pin::new(&mut self.0).poll_read(cx, &mut read_buf))?;
        buf.extend_from_slice(read_buf.filled());
        Poll::Ready(Ok(read_buf.filled().len()))
    }
}
impl<T: AsyncWrite + Unpin> AsyncWrite for Generic<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
