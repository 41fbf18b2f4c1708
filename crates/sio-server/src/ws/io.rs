//! How the frame reader gets bytes from a stream.

use std::io;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A stream a WebSocket runs on. Reading goes through [`WsIo::poll_read_into`] so that a `TcpStream` can wait
/// for readiness *without* a buffer and allocate one only when bytes have arrived: an idle connection then
/// holds no read buffer at all.
pub(crate) trait WsIo: AsyncWrite + Unpin + Send + 'static {
    /// Reads what is available into `buf` (reserving at least `hint` bytes first if it has less room).
    /// `Ok(0)` means the peer closed its side.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        hint: usize,
    ) -> Poll<io::Result<usize>>;
}

impl WsIo for TcpStream {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        hint: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            if buf.capacity() - buf.len() < hint {
                buf.reserve(hint);
            }
            match self.try_read_buf(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                // The readiness was stale; `try_read_buf` cleared it, so polling again registers the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Any other stream (such as a connection hyper upgraded), read through an ordinary `AsyncRead` call.
/// The buffer stays reserved while waiting; this path is only taken by WebSocket upgrades that arrive on a
/// keep-alive HTTP connection, which browsers don't do.
pub(crate) struct Generic<T>(pub(crate) T);

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> WsIo for Generic<T> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        hint: usize,
    ) -> Poll<io::Result<usize>> {
        let start = buf.len();
        buf.resize(start + hint, 0);
        let mut read_buf = ReadBuf::new(&mut buf[start..]);
        let result = std::pin::Pin::new(&mut self.0).poll_read(cx, &mut read_buf);
        let n = read_buf.filled().len();
        buf.truncate(start + n);
        match result {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
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
