//! The Socket.IO transport, on socketioxide.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::handler::{FromMessage, FromMessageParts};
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Socket;

use super::{Connection, Realtime, Refusal};
use crate::hub::{Outbound, Outgoing};

/// Builds the Socket.IO layer serving `/socket.io/` with namespace `/`.
pub fn layer(realtime: Realtime, max_payload: usize) -> (SocketIoLayer, SocketIo) {
    let (layer, io) = SocketIo::builder()
        .max_payload(max_payload as u64)
        .ws_max_message_size(max_payload)
        .ws_max_frame_size(max_payload)
        .with_state(realtime)
        .build_layer();
    io.ns("/", on_connect.with(authenticate));
    (layer, io)
}

/// Everything happens in `authenticate`, before the client learns it is connected.
async fn on_connect(_: SocketRef) {}

/// socketioxide can only send a `connect_error` message, not its `data`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message)]
struct SioRefusal(Refusal);

/// Connect middleware: runs before the client is told it is connected, so nothing reaches an
/// unauthenticated socket, and the socket's event handlers exist before its first event.
async fn authenticate(
    s: SocketRef,
    TryData(auth): TryData<Value>,
    State(realtime): State<Realtime>,
) -> Result<(), SioRefusal> {
    let remote = s
        .req_parts()
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let conn = realtime
        .connect(
            auth.ok().as_ref(),
            remote,
            Arc::new(SocketOutbound(s.clone())),
        )
        .await
        .map_err(SioRefusal)?;
    s.extensions.insert(conn);
    s.on_fallback(async |_: Dispatched| {});
    s.on_disconnect(async |s: SocketRef, State(realtime): State<Realtime>| {
        if let Some(conn) = s.extensions.get::<Arc<Connection>>() {
            realtime.disconnect(&conn);
        }
    });
    Ok(())
}

/// An extractor that does the work: extractors run synchronously in the order events arrive,
/// while socketioxide spawns the handler itself as a task (which would lose the order).
struct Dispatched;

impl<A: Adapter> FromMessage<A> for Dispatched {
    type Error = Infallible;

    fn from_message(
        s: Arc<Socket<A>>,
        mut v: socketioxide::handler::Value,
        ack_id: Option<i64>,
    ) -> Result<Self, Infallible> {
        let Ok(Event(name)) = Event::from_message_parts(&s, &mut v, &ack_id) else {
            return Ok(Dispatched);
        };
        let Ok(State(realtime)) = State::<Realtime>::from_message_parts(&s, &mut v, &ack_id) else {
            return Ok(Dispatched);
        };
        let Some(conn) = s.extensions.get::<Arc<Connection>>() else {
            return Ok(Dispatched);
        };
        let Ok(TryData(payload)) = TryData::<Value>::from_message_parts(&s, &mut v, &ack_id);
        let ack = ack_id.map(|_| {
            let Ok(sender) = AckSender::from_message_parts(&s, &mut v, &ack_id);
            Box::new(move |envelope: Value| {
                let _ = sender.send(&envelope);
            }) as super::Ack
        });
        // A payload that isn't JSON at all still reaches the dispatcher, as `null`, so it can
        // answer `invalid_payload`.
        realtime.on_event(&conn, &name, payload.unwrap_or(Value::Null), ack);
        Ok(Dispatched)
    }
}

/// Delivers hub events to a socketioxide socket.
struct SocketOutbound(SocketRef);

impl Outbound for SocketOutbound {
    fn send(&self, event: &Outgoing) -> bool {
        let Ok(raw) = serde_json::from_str::<&RawValue>(&event.json) else {
            return false;
        };
        self.0.emit(event.event, raw).is_ok()
    }

    fn disconnect(&self) {
        let _ = self.0.clone().disconnect();
    }
}
