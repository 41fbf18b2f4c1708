//! The Engine.IO path over HTTP: query parsing, error answers, routing of polling and WebSocket requests,
//! and the tower `Service` for mounting the engine in another server.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::engine::websocket::{self, Mode};
use crate::engine::{Connection, Engine};
use crate::handler::{Handler, Refusal, RequestInfo};
use crate::sid::Sid;
use crate::socket::Transport;
use crate::ws::{CloseCode, WsIo, deflate, handshake, io::Generic};

/// The error type of request and response bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body of [`EngineService`].
pub type EngineBody = Full<Bytes>;

/// The peer's address, as a request extension. [`serve`](crate::serve) adds it to every request (the
/// application's too); when mounting [`EngineService`] elsewhere, add it yourself so handlers see the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// The Engine.IO error codes and messages (answered with `400`, or `403` for `Forbidden`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum EngineError {
    TransportUnknown,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    UnsupportedVersion,
    ShuttingDown,
}

pub(crate) fn engine_error(error: EngineError) -> Response<Bytes> {
    let (status, body): (StatusCode, &'static [u8]) = match error {
        EngineError::TransportUnknown => (
            StatusCode::BAD_REQUEST,
            br#"{"code":0,"message":"Transport unknown"}"#,
        ),
        EngineError::UnknownSid => (
            StatusCode::BAD_REQUEST,
            br#"{"code":1,"message":"Session ID unknown"}"#,
        ),
        EngineError::BadHandshakeMethod => (
            StatusCode::BAD_REQUEST,
            br#"{"code":2,"message":"Bad handshake method"}"#,
        ),
        EngineError::BadRequest => (
            StatusCode::BAD_REQUEST,
            br#"{"code":3,"message":"Bad request"}"#,
        ),
        EngineError::UnsupportedVersion => (
            StatusCode::BAD_REQUEST,
            br#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
        EngineError::ShuttingDown => (
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"code":4,"message":"Shutting down"}"#,
        ),
    };
    json_response(status, Bytes::from_static(body))
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn refusal_response(refusal: Refusal) -> Response<Bytes> {
    let mut response = json_response(refusal.status, refusal.body);
    for (name, value) in refusal.headers {
        if let Some(name) = name {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// The Engine.IO query parameters we look at. Their values are plain ASCII, so they are not
/// percent-decoded (a sid with escapes is simply unknown).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Query<'a> {
    pub(crate) eio: Option<&'a str>,
    pub(crate) transport: Option<&'a str>,
    pub(crate) sid: Option<&'a str>,
}

impl<'a> Query<'a> {
    pub(crate) fn parse(query: Option<&'a str>) -> Self {
        let mut out = Query::default();
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "EIO" => out.eio = Some(value),
                "transport" => out.transport = Some(value),
                "sid" => out.sid = Some(value),
                _ => {}
            }
        }
        out
    }
}

/// The engine's answer to a WebSocket handshake: accepted, or the HTTP response refusing it.
pub(crate) type Handshake<H> = Result<WsAccept<H>, Response<Bytes>>;

/// How an accepted WebSocket handshake continues once the `101` is out.
pub(crate) enum WsPlan<H: Handler> {
    /// A new session, admitted with this value, for a client at this address.
    New(Arc<H::Pending>, SocketAddr),
    /// An upgrade of this polling session.
    Upgrade(Arc<Connection<H>>),
    /// A WebSocket for a session that already has one (upgraded, upgrading, or opened as a
    /// WebSocket): the specification says the server MUST close it, and the reference server accepts
    /// the handshake and closes the WebSocket at once. The session is left alone.
    Refuse,
}

/// An accepted WebSocket handshake.
pub(crate) struct WsAccept<H: Handler> {
    /// The `Sec-WebSocket-Accept` value.
    pub(crate) accept: HeaderValue,
    /// `permessage-deflate` was offered and is accepted (the `101` says so).
    pub(crate) deflate: bool,
    /// Extra headers for the `101` (from `check_request`).
    pub(crate) headers: HeaderMap,
    pub(crate) plan: WsPlan<H>,
}

impl<H: Handler> Engine<H> {
    /// Decides on a WebSocket handshake for the Engine.IO path: accepted, or the error answer to send.
    #[allow(clippy::result_large_err)] // the error is the response itself, on a cold path
    pub(crate) fn websocket_handshake(
        &self,
        method: &Method,
        version: Version,
        uri: &Uri,
        headers: &HeaderMap,
        remote_addr: SocketAddr,
    ) -> Handshake<H> {
        let query = Query::parse(uri.query());
        if query.eio != Some("4") {
            return Err(engine_error(EngineError::UnsupportedVersion));
        }
        if query.transport != Some("websocket") {
            return Err(engine_error(EngineError::TransportUnknown));
        }
        let accept = handshake::accept(method, version, headers).map_err(|e| {
            tracing::debug!(error = %e, "bad WebSocket handshake");
            let mut response = engine_error(EngineError::BadRequest);
            if e == handshake::HandshakeError::Version {
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            response
        })?;
        let deflate = self.config.per_message_deflate && deflate::negotiate(headers);
        match query.sid {
            None => {
                if self.is_shutting_down() {
                    return Err(engine_error(EngineError::ShuttingDown));
                }
                let request = RequestInfo {
                    method,
                    uri,
                    headers,
                    remote_addr,
                };
                let extra = self
                    .handler
                    .check_request(&request)
                    .map_err(refusal_response)?;
                let pending = self.handler.admit(&request).map_err(refusal_response)?;
                Ok(WsAccept {
                    accept,
                    deflate,
                    headers: extra,
                    plan: WsPlan::New(Arc::new(pending), remote_addr),
                })
            }
            Some(sid) => {
                let conn = Sid::parse(sid)
                    .and_then(|sid| self.session(&sid))
                    .ok_or_else(|| engine_error(EngineError::UnknownSid))?;
                let upgrade = conn.polling.as_ref().filter(|polling| {
                    conn.socket.transport() == Transport::Polling && polling.begin_upgrade()
                });
                Ok(match upgrade {
                    Some(polling) => WsAccept {
                        accept,
                        deflate,
                        headers: polling.headers.clone(),
                        plan: WsPlan::Upgrade(conn),
                    },
                    None => {
                        tracing::debug!(sid = %conn.sid, "a second WebSocket for a session: closing it");
                        WsAccept {
                            accept,
                            deflate: false,
                            headers: HeaderMap::new(),
                            plan: WsPlan::Refuse,
                        }
                    }
                })
            }
        }
    }

    /// Starts the WebSocket session of an accepted handshake on `io`, after the `101` was sent; the
    /// returned future runs it (spawn it).
    pub(crate) fn start_websocket<IO: WsIo>(
        self: &Arc<Self>,
        plan: WsPlan<H>,
        io: IO,
        initial: BytesMut,
        deflate: bool,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (conn, mode) = match plan {
            WsPlan::New(pending, remote_addr) => (
                self.open(Transport::WebSocket, remote_addr, pending, None),
                Mode::New,
            ),
            WsPlan::Upgrade(conn) => (conn, Mode::Upgrade),
            WsPlan::Refuse => unreachable!("refused WebSockets are closed by `refuse_websocket`"),
        };
        websocket::start(self.clone(), conn, io, initial, mode, deflate)
    }

    /// Runs an accepted handshake's WebSocket once the `101` is out: the session's, or (for
    /// [`WsPlan::Refuse`]) a close frame and the end of the connection.
    pub(crate) fn run_websocket<IO: WsIo>(
        self: &Arc<Self>,
        plan: WsPlan<H>,
        io: IO,
        initial: BytesMut,
        deflate: bool,
    ) {
        match plan {
            WsPlan::Refuse => {
                tokio::spawn(refuse_websocket(io));
            }
            plan => {
                tokio::spawn(self.start_websocket(plan, io, initial, deflate));
            }
        }
    }

    /// Answers an HTTP request on the Engine.IO path.
    pub(crate) async fn handle_http<B>(
        self: &Arc<Self>,
        mut req: Request<B>,
        remote_addr: SocketAddr,
    ) -> Response<Bytes>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if req.method() == Method::OPTIONS {
            // A CORS preflight: the application decides, through the same hook as for new sessions.
            let request = request_info(&req, remote_addr);
            return match self.handler.check_request(&request) {
                Ok(extra) => {
                    let mut response = Response::new(Bytes::new());
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    *response.headers_mut() = extra;
                    response
                }
                Err(refusal) => refusal_response(refusal),
            };
        }
        let query = Query::parse(req.uri().query());
        if query.eio != Some("4") {
            return engine_error(EngineError::UnsupportedVersion);
        }
        match query.transport {
            Some("websocket") => {
                let accepted = self.websocket_handshake(
                    req.method(),
                    req.version(),
                    req.uri(),
                    req.headers(),
                    remote_addr,
                );
                let accepted = match accepted {
                    Ok(accepted) => accepted,
                    Err(response) => return response,
                };
                // Reached through hyper: a WebSocket on a keep-alive connection, or the engine mounted as a
                // service in another server. hyper hands the stream over once the 101 is written.
                let on_upgrade = hyper::upgrade::on(&mut req);
                let engine = self.clone();
                let mut response = Response::new(Bytes::new());
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let headers = response.headers_mut();
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                headers.insert(header::SEC_WEBSOCKET_ACCEPT, accepted.accept);
                if accepted.deflate {
                    headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, deflate::RESPONSE);
                }
                let deflate = accepted.deflate;
                for (name, value) in &accepted.headers {
                    headers.append(name, value.clone());
                }
                let plan = accepted.plan;
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(upgraded) => {
                            let io = Generic(TokioIo::new(upgraded));
                            engine.run_websocket(plan, io, BytesMut::new(), deflate);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "HTTP upgrade failed");
                            if let WsPlan::Upgrade(conn) = plan {
                                if let Some(polling) = &conn.polling {
                                    polling.end_upgrade();
                                }
                            }
                        }
                    }
                });
                response
            }
            Some("polling") => match query.sid {
                None if req.method() == Method::GET => {
                    if self.is_shutting_down() {
                        return engine_error(EngineError::ShuttingDown);
                    }
                    let request = request_info(&req, remote_addr);
                    let extra = match self.handler.check_request(&request) {
                        Ok(extra) => extra,
                        Err(refusal) => return refusal_response(refusal),
                    };
                    let pending = match self.handler.admit(&request) {
                        Ok(pending) => pending,
                        Err(refusal) => return refusal_response(refusal),
                    };
                    let conn = self.open(
                        Transport::Polling,
                        remote_addr,
                        Arc::new(pending),
                        Some(extra),
                    );
                    self.polling_open(conn)
                }
                None => engine_error(EngineError::BadHandshakeMethod),
                Some(sid) => {
                    let Some(conn) = Sid::parse(sid).and_then(|sid| self.session(&sid)) else {
                        return engine_error(EngineError::UnknownSid);
                    };
                    if conn.polling.is_none() {
                        return engine_error(EngineError::BadRequest);
                    }
                    match *req.method() {
                        Method::GET => self.polling_get(&conn).await,
                        Method::POST => {
                            let (parts, body) = req.into_parts();
                            self.polling_post(&conn, &parts.headers, body).await
                        }
                        _ => engine_error(EngineError::BadRequest),
                    }
                }
            },
            _ => engine_error(EngineError::TransportUnknown),
        }
    }
}

/// Closes a WebSocket the session can't take (1008), then waits briefly for the client's close frame
/// or the end of the stream, so that the close frame isn't lost to a reset.
async fn refuse_websocket<IO: WsIo>(mut io: IO) {
    use tokio::io::AsyncWriteExt as _;
    let code = CloseCode::POLICY.0.to_be_bytes();
    if io.write_all(&[0x88, 0x02, code[0], code[1]]).await.is_err() {
        return;
    }
    let _ = io.flush().await;
    let drain = async {
        let mut buf = BytesMut::new();
        while buf.len() < 4096 {
            match std::future::poll_fn(|cx| io.poll_read_into(cx, &mut buf, 1)).await {
                Ok(1..) => {}
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    let _ = io.shutdown().await;
}

fn request_info<B>(req: &Request<B>, remote_addr: SocketAddr) -> RequestInfo<'_> {
    RequestInfo {
        method: req.method(),
        uri: req.uri(),
        headers: req.headers(),
        remote_addr,
    }
}

/// The engine as a tower `Service` (see [`SocketIo::service`](crate::SocketIo::service)).
pub struct EngineService<H: Handler> {
    engine: Arc<Engine<H>>,
}

impl<H: Handler> EngineService<H> {
    pub(crate) fn new(engine: Arc<Engine<H>>) -> Self {
        Self { engine }
    }
}

impl<H: Handler> Clone for EngineService<H> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<H, B> tower_service::Service<Request<B>> for EngineService<H>
where
    H: Handler,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<EngineBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let engine = self.engine.clone();
        let remote = req
            .extensions()
            .get::<RemoteAddr>()
            .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |r| r.0);
        Box::pin(async move { Ok(engine.handle_http(req, remote).await.map(Full::new)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engine_queries() {
        let q = Query::parse(Some("EIO=4&transport=polling&t=N8hyd6w&sid=abc"));
        assert_eq!(
            q,
            Query {
                eio: Some("4"),
                transport: Some("polling"),
                sid: Some("abc")
            }
        );
        assert_eq!(Query::parse(None), Query::default());
        assert_eq!(Query::parse(Some("EIO&&=x")).eio, Some(""));
    }
}
