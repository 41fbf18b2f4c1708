//! Serving on a `TcpListener`: WebSocket handshakes for the Engine.IO path are answered on the raw stream;
//! everything else goes to hyper.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_service::Service;

use crate::SocketIo;
use crate::engine::{Engine, TaskCount};
use crate::handler::Handler;
use crate::http::{BoxError, Handshake, RemoteAddr, WsAccept};
use crate::ws::handshake;

/// The first read of a request head; it grows (up to `Config::max_request_head`) only for larger heads.
const HEAD_CHUNK: usize = 1024;

/// Serves Socket.IO on `listener` until `shutdown` completes.
///
/// Each connection's request head is read into a small buffer. A WebSocket handshake for the Engine.IO path
/// is answered right there and the session runs on the bare `TcpStream`, so an idle WebSocket costs one
/// task and no HTTP machinery. Any other request goes to hyper (HTTP/1.1, with the bytes already read
/// replayed first): the Engine.IO path (polling, and WebSocket upgrades arriving on a keep-alive
/// connection) to the engine, every other path to `app` (an axum `Router` or any tower `Service`). Every
/// request carries a [`RemoteAddr`] extension.
///
/// When `shutdown` completes: stop accepting, close every session ([`SocketIo::shutdown`]), let in-flight
/// HTTP requests finish, wait for WebSocket close frames to go out, and return.
pub async fn serve<H, S, B>(
    listener: TcpListener,
    sio: SocketIo<H>,
    app: S,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    H: Handler,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let engine = sio.engine.clone();
    // Tells HTTP connections to finish their request in flight and close.
    let (stop, stopped) = watch::channel(false);
    let http_connections = Arc::new(TaskCount::default());
    tokio::pin!(shutdown);
    let mut last_accept_warning: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = connection(engine.clone(), app.clone(), stream, remote, stopped.clone());
                    let count = http_connections.clone();
                    tokio::spawn(async move {
                        let _counted = count.enter();
                        conn.await
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning; connections that
                    // close will free some. Warn at most once a second.
                    if last_accept_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accept failed");
                        last_accept_warning = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    tracing::info!("shutting down: closing sessions, finishing in-flight requests");
    sio.shutdown();
    let _ = stop.send(true);
    http_connections.wait_idle().await;
    sio.wait_closed().await;
    Ok(())
}

/// Serves one TCP connection.
async fn connection<H, S, B>(
    engine: Arc<Engine<H>>,
    app: S,
    mut stream: TcpStream,
    remote: SocketAddr,
    stop: watch::Receiver<bool>,
) where
    H: Handler,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let config = &engine.config;
    let head = tokio::time::timeout(
        config.request_head_timeout,
        read_head(&mut stream, config.max_request_head),
    )
    .await;
    let buf = match head {
        Ok(Ok(Head::Complete(buf))) => buf,
        Ok(Ok(Head::Closed)) => return,
        Ok(Ok(Head::TooLarge)) => {
            let _ = stream
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            Box::pin(lingering_close(stream)).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "reading a request head failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "no request head within the timeout");
            return;
        }
    };

    if let Some(direct) = direct_websocket(&engine, &buf, remote) {
        let (head_len, result) = direct;
        match result {
            Ok(accepted) => {
                if let Err(e) = write_switching_protocols(&mut stream, &accepted).await {
                    tracing::debug!(%remote, error = %e, "writing the 101 failed");
                    return;
                }
                // Keep only bytes that arrived after the head (normally none), in a buffer of their own,
                // so that the head buffer is freed now.
                let rest = if buf.len() > head_len {
                    BytesMut::from(&buf[head_len..])
                } else {
                    BytesMut::new()
                };
                drop(buf);
                // The session gets a task of its own, sized for it alone; this one (sized for the HTTP
                // path as well) ends here.
                engine.run_websocket(accepted.plan, stream, rest, accepted.deflate);
            }
            Err(response) => {
                if write_raw_response(&mut stream, response).await.is_ok() {
                    Box::pin(lingering_close(stream)).await;
                }
            }
        }
        return;
    }

    // Boxed, so that this future (and so each connection's task while it reads a head) stays small.
    Box::pin(serve_http(engine, app, buf, stream, remote, stop)).await;
}

/// Serves an HTTP/1.1 connection with hyper, replaying the bytes already read.
async fn serve_http<H, S, B>(
    engine: Arc<Engine<H>>,
    app: S,
    buf: BytesMut,
    stream: TcpStream,
    remote: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    H: Handler,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let head_timeout = engine.config.request_head_timeout;
    let max_head = engine.config.max_request_head;
    let io = TokioIo::new(Prefixed {
        prefix: buf.freeze(),
        inner: stream,
    });
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let engine = engine.clone();
        let mut app = app.clone();
        async move {
            req.extensions_mut().insert(RemoteAddr(remote));
            if engine.config.is_engine_path(req.uri().path()) {
                let response = engine.handle_http(req, remote).await;
                Ok::<_, Infallible>(
                    response.map(|b| Full::new(b).map_err(|never| match never {}).boxed_unsync()),
                )
            } else {
                poll_fn(|cx| app.poll_ready(cx)).await?;
                let response = app.call(req).await?;
                Ok(response.map(|b| b.map_err(Into::into).boxed_unsync()))
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        // The same head limit as the direct path (hyper's minimum is 8 KiB): larger heads get a 431.
        .max_buf_size(max_head.max(8192))
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { drop(stop.wait_for(|stop| *stop).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
    }
}

enum Head {
    Complete(BytesMut),
    Closed,
    TooLarge,
}

/// Reads until a complete request head is buffered (or something that isn't HTTP/1 arrives: hyper answers
/// that).
async fn read_head(stream: &mut TcpStream, max: usize) -> io::Result<Head> {
    let mut buf = BytesMut::with_capacity(HEAD_CHUNK);
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= max {
                return Ok(Head::TooLarge);
            }
            buf.reserve(buf.capacity().min(max - buf.len()));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(if buf.is_empty() {
                Head::Closed
            } else {
                Head::Complete(buf)
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        match httparse::Request::new(&mut headers).parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            // Complete, or not something we parse: either way hyper (or the direct path) takes it from here.
            Ok(httparse::Status::Complete(_)) | Err(_) => return Ok(Head::Complete(buf)),
        }
    }
}

/// If the head is a WebSocket handshake for the Engine.IO path, the head's length and the engine's decision.
fn direct_websocket<H: Handler>(
    engine: &Engine<H>,
    buf: &[u8],
    remote: SocketAddr,
) -> Option<(usize, Handshake<H>)> {
    let mut raw_headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut raw_headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    if req.method != Some("GET") {
        return None;
    }
    // An HTTP/1.0 upgrade is answered here too, with the 400 `websocket_handshake` gives it.
    let version = if req.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let uri = Uri::from_str(req.path?).ok()?;
    if !engine.config.is_engine_path(uri.path()) {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    if !handshake::wants_websocket(&headers) {
        return None;
    }
    Some((
        head_len,
        engine.websocket_handshake(&Method::GET, version, &uri, &headers, remote),
    ))
}

async fn write_switching_protocols<H: Handler>(
    stream: &mut TcpStream,
    accepted: &WsAccept<H>,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ");
    out.extend_from_slice(accepted.accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if accepted.deflate {
        out.extend_from_slice(b"sec-websocket-extensions: ");
        out.extend_from_slice(crate::ws::deflate::RESPONSE.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &accepted.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    stream.write_all(&out).await
}

/// Writes a complete response and ends the connection (used for refused handshakes on the direct path).
async fn write_raw_response(stream: &mut TcpStream, response: Response<Bytes>) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            parts.status.as_u16(),
            parts.status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    stream.write_all(&out).await
}

/// Closes a connection whose request was not read to its end: stop writing, then read and discard what
/// the client still sends for a moment. Closing with unread bytes would make the kernel reset the
/// connection, and the client could lose the response it was about to read.
async fn lingering_close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut scratch = [0u8; 4096];
        let mut total = 0usize;
        while let Ok(n @ 1..) = stream.read(&mut scratch).await {
            total += n;
            if total > 256 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// A stream with bytes already read from it put back in front.
struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Release the head buffer as soon as it's replayed.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::{ConnectError, IncomingEvent, Refusal, RequestInfo, ResponseHeaders};
    use crate::socket::Socket;
    use serde_json::value::RawValue;

    struct Nothing;

    impl Handler for Nothing {
        type Session = ();
        type Pending = ();
        fn check_request(&self, _: &RequestInfo<'_>) -> Result<ResponseHeaders, Refusal> {
            Ok(ResponseHeaders::new())
        }
        fn admit(&self, _: &RequestInfo<'_>) -> Result<(), Refusal> {
            Ok(())
        }
        async fn connect(
            &self,
            _: Socket,
            _: Option<&RawValue>,
            _: &(),
        ) -> Result<(), ConnectError> {
            Ok(())
        }
        fn event(&self, _: &Arc<()>, _: &Socket, _: IncomingEvent) {}
        fn disconnect(&self, _: Arc<()>, _: &Socket, _: crate::DisconnectReason) {}
    }

    /// The WebSocket task's future is most of what an idle connection costs: keep an eye on its size.
    #[tokio::test]
    async fn websocket_task_stays_small() {
        let engine = Engine::new(crate::Config::default(), Nothing);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let plan = crate::http::WsPlan::New(Arc::new(()), addr);
        let task = engine.start_websocket(plan, stream, BytesMut::new(), true);
        let size = std::mem::size_of_val(&task);
        eprintln!("WebSocket task future: {size} bytes");
        assert!(
            size <= 1024,
            "the WebSocket task future grew to {size} bytes"
        );
    }
}
