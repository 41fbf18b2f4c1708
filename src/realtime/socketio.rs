//! The Socket.IO transport: confab-sio's `Handler`, connecting its sockets to the dispatcher.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderValue, Method, StatusCode, header};
use confab_sio::{
    ConnectError, DisconnectReason, Handler, IncomingEvent, Refusal as HttpRefusal, RequestInfo,
    ResponseHeaders, SendError, Socket,
};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Connection, Realtime};
use crate::error::Error;
use crate::http::{OriginPolicy, TrustedProxies};
use crate::hub::{Outbound, Outgoing};

/// confab's Socket.IO handler.
pub struct SioHandler {
    realtime: Realtime,
    origins: OriginPolicy,
    /// Behind a load balancer, who the client is for the per-address connect limit.
    proxies: TrustedProxies,
}

impl SioHandler {
    pub fn new(realtime: Realtime, origins: OriginPolicy, proxies: TrustedProxies) -> Self {
        Self {
            realtime,
            origins,
            proxies,
        }
    }
}

impl Handler for SioHandler {
    type Session = Arc<Connection>;
    /// The client's address, for the per-address connect limit: all a session keeps of its request.
    type Pending = IpAddr;

    /// Screens a new Engine.IO session (or a CORS preflight) by its `Origin`: browsers on other
    /// origins are refused before any session exists. Allowed cross-origin requests get the CORS
    /// headers that let the browser read the answers.
    fn check_request(&self, req: &RequestInfo<'_>) -> Result<ResponseHeaders, HttpRefusal> {
        if !self.origins.allows(req.headers) {
            return Err(HttpRefusal::json(
                StatusCode::FORBIDDEN,
                &Error::Forbidden("origin not allowed").envelope(),
            ));
        }
        let mut headers = ResponseHeaders::new();
        if let Some(origin) = req.headers.get(header::ORIGIN)
            && self.origins.is_listed(origin)
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
            if req.method == Method::OPTIONS {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, POST, OPTIONS"),
                );
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("content-type"),
                );
            }
        }
        Ok(headers)
    }

    /// Behind a load balancer, the client is who `X-Forwarded-For` says (believed only from a
    /// trusted proxy).
    fn admit(&self, req: &RequestInfo<'_>) -> Result<IpAddr, HttpRefusal> {
        Ok(self.proxies.client_addr(req.remote_addr.ip(), req.headers))
    }

    async fn connect(
        &self,
        socket: Socket,
        auth: Option<&RawValue>,
        client: &IpAddr,
    ) -> Result<Arc<Connection>, ConnectError> {
        // An auth payload that isn't JSON we can read is no token at all.
        let auth: Option<Value> = auth.and_then(|raw| serde_json::from_str(raw.get()).ok());
        self.realtime
            .connect(
                auth.as_ref(),
                Some(*client),
                Arc::new(SocketOutbound(socket)),
            )
            .await
            .map_err(|refusal| ConnectError::new(refusal.message).with_data(refusal.data))
    }

    fn event(&self, conn: &Arc<Arc<Connection>>, _socket: &Socket, event: IncomingEvent) {
        let ack = event.ack.map(|ack| {
            Box::new(move |envelope: Value| {
                let _ = ack.send(&envelope);
            }) as super::Ack
        });
        if !event.binary.is_empty() {
            let error = Error::InvalidPayload {
                field: None,
                message: "payload: binary attachments are not supported".into(),
            };
            if let Some(ack) = ack {
                ack(error.envelope());
            }
            return;
        }
        // The first argument is the payload. One that isn't JSON serde can hold (nesting too
        // deep, say) reaches the dispatcher as `null`, which it answers `invalid_payload`.
        let payload = event
            .args
            .first()
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or(Value::Null);
        self.realtime.on_event(conn, &event.name, payload, ack);
    }

    fn disconnect(&self, conn: Arc<Arc<Connection>>, _socket: &Socket, reason: DisconnectReason) {
        tracing::debug!(parent: &conn.span, %reason, "socket closed");
        self.realtime.disconnect(&conn);
    }
}

/// Delivers hub events to a confab-sio socket.
struct SocketOutbound(Socket);

impl Outbound for SocketOutbound {
    fn send(&self, event: &Outgoing) -> bool {
        match self.0.send(&event.packet) {
            Ok(()) | Err(SendError::Closed) => true,
            // Full: the client isn't reading. Reported, so the hub disconnects it.
            Err(_) => false,
        }
    }

    fn disconnect(&self) {
        self.0.disconnect();
    }
}
