//! The Socket.IO transport: confab-sio's `Handler`, connecting its sockets to the dispatcher.

use std::sync::Arc;

use axum::http::{HeaderValue, Method, StatusCode, header};
use confab_sio::{
    ConnectError, DisconnectReason, Handler, IncomingEvent, Refusal as HttpRefusal, RequestInfo,
    ResponseHeaders, SendError, Socket,
};
use serde_json::value::RawValue;

use super::{Realtime, UserSocket};
use crate::error::Error;
use crate::http::{OriginPolicy, TrustedProxies};
use crate::hub::{Outbound, Outgoing};
use crate::protocol::{Envelope, Reply, envelope};

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
    type Session = Arc<UserSocket>;

    /// Screens a new Engine.IO session (or a CORS preflight) by its `Origin`: browsers on other
    /// origins are refused before any session exists. Allowed cross-origin requests get the CORS
    /// headers that let the browser read the answers.
    fn check_request(&self, req: &RequestInfo) -> Result<ResponseHeaders, HttpRefusal> {
        if let Err(refused) = self.origins.check(&req.headers) {
            refused.log();
            // The refused origin may read the answer, so the page can show why.
            let mut refusal =
                HttpRefusal::json(StatusCode::FORBIDDEN, &envelope::failure(&refused.error()));
            if let Some(origin) = req.headers.get(header::ORIGIN) {
                refusal = refusal.with_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            }
            return Err(refusal);
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

    async fn connect(
        &self,
        socket: Socket,
        auth: Option<&RawValue>,
        req: &RequestInfo,
    ) -> Result<Arc<UserSocket>, ConnectError> {
        self.realtime
            .connect(
                auth.map(RawValue::get),
                Some(self.proxies.client_addr(req.remote_addr.ip(), &req.headers)),
                Arc::new(SocketOutbound(socket)),
            )
            .await
            .map_err(|refusal| ConnectError::new(refusal.message).with_data(refusal.data()))
    }

    fn event(&self, conn: &Arc<Arc<UserSocket>>, _socket: &Socket, event: IncomingEvent) {
        let ack = event.ack.map(|ack| {
            Box::new(move |envelope: &Envelope<'_, Reply>| {
                let _ = ack.send(envelope);
            }) as super::AckSender
        });
        if !event.binary.is_empty() {
            let error = Error::InvalidPayload {
                field: None,
                message: "payload: binary attachments are not supported".into(),
            };
            if let Some(ack) = ack {
                ack(&Envelope::Err(&error));
            }
            return;
        }
        // The first argument is the payload, parsed once, from its raw JSON, by the request it
        // is for. An event without one has `null`.
        let payload = event.args.first().map_or("null", |raw| raw.get());
        self.realtime.on_event(conn, &event.name, payload, ack);
    }

    fn disconnect(&self, conn: Arc<Arc<UserSocket>>, _socket: &Socket, reason: DisconnectReason) {
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
