//! The Socket.IO transport: confab-sio's `Handler`, connecting its sockets to the dispatcher.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode, header};
use confab_sio::{
    ConnectError, DisconnectReason, Handler, IncomingEvent, Refusal as HttpRefusal, RequestInfo,
    ResponseHeaders, SendError, Socket,
};
use serde_json::value::RawValue;

use super::admission::{Admission, Admitted, Refused, SessionLimits};
use super::{Realtime, UserSocket};
use crate::error::Error;
use crate::http::{OriginPolicy, TrustedProxies};
use crate::hub::{Outbound, Outgoing};
use crate::protocol::{Envelope, Reply, envelope};

/// confab's Socket.IO handler.
pub struct SioHandler {
    realtime: Realtime,
    origins: OriginPolicy,
    /// Behind a load balancer, who the client is for the per-address limits.
    proxies: TrustedProxies,
    admission: Admission,
    /// How long an unauthenticated session may last, for `Retry-After` when they are all taken.
    connect_timeout: Duration,
}

impl SioHandler {
    pub fn new(
        realtime: Realtime,
        origins: OriginPolicy,
        proxies: TrustedProxies,
        sessions: &SessionLimits,
    ) -> Self {
        Self {
            realtime,
            origins,
            proxies,
            admission: Admission::new(sessions),
            connect_timeout: sessions.connect_timeout,
        }
    }

    /// The answer to a session that wasn't admitted: `429` (this address) or `503` (this node), with
    /// `Retry-After`, and the error envelope the HTTP API uses.
    fn refusal(&self, refused: Refused) -> HttpRefusal {
        // A place frees up at the latest when the oldest session's connect timeout ends.
        let free_within = self.connect_timeout.as_millis() as u64;
        let (error, wait_ms) = match refused {
            Refused::RateLimited { retry_after_ms } => {
                (Error::RateLimited { retry_after_ms }, retry_after_ms)
            }
            // Too many sessions from this address have not authenticated yet.
            Refused::AddressFull => (
                Error::RateLimited {
                    retry_after_ms: free_within,
                },
                free_within,
            ),
            // Too many sessions on this node have not authenticated yet.
            Refused::NodeFull => (
                Error::Unavailable(
                    anyhow::anyhow!("the node's unauthenticated sessions are all taken").into(),
                ),
                free_within,
            ),
        };
        let status = StatusCode::from_u16(envelope::status(&error))
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let seconds = wait_ms.div_ceil(1000).max(1);
        HttpRefusal::json(status, &envelope::failure(&error))
            .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }
}

impl Handler for SioHandler {
    type Session = Arc<UserSocket>;
    /// The client's address and its place among the unauthenticated sessions: all a session keeps of
    /// its request until it connects.
    type Pending = Admitted;

    /// Screens a new Engine.IO session (or a CORS preflight) by its `Origin`: browsers on other
    /// origins are refused before any session exists. Allowed cross-origin requests get the CORS
    /// headers that let the browser read the answers.
    fn check_request(&self, req: &RequestInfo<'_>) -> Result<ResponseHeaders, HttpRefusal> {
        if let Err(refused) = self.origins.check(req.headers) {
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

    /// A new session, limited by client address (behind a load balancer, who `X-Forwarded-For`
    /// says, believed only from a trusted proxy): its rate of new sessions, and how many it and the
    /// node hold unauthenticated.
    fn admit(&self, req: &RequestInfo<'_>) -> Result<Admitted, HttpRefusal> {
        let client = self.proxies.client_addr(req.remote_addr.ip(), req.headers);
        self.admission.admit(client).map_err(|refused| {
            tracing::debug!(%client, ?refused, "session refused");
            self.refusal(refused)
        })
    }

    async fn connect(
        &self,
        socket: Socket,
        auth: Option<&RawValue>,
        pending: &Admitted,
    ) -> Result<Arc<UserSocket>, ConnectError> {
        self.realtime
            .connect(
                auth.map(RawValue::get),
                Some(pending.client),
                Arc::new(SocketOutbound(socket)),
            )
            .await
            .map_err(|refusal| ConnectError::new(refusal.message).with_data(refusal.data()))
    }

    fn event(&self, conn: &Arc<Arc<UserSocket>>, socket: &Socket, event: IncomingEvent) {
        let ack = event.ack.map(|ack| {
            let socket = socket.clone();
            Box::new(move |envelope: &Envelope<'_, Reply>| {
                if let Err(SendError::Full) = ack.send(envelope) {
                    // The client asks and doesn't read the answers: like a full queue on delivery.
                    metrics::counter!("confab_slow_consumer_disconnects_total").increment(1);
                    socket.disconnect();
                }
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
