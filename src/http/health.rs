//! Liveness and readiness.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(async || "ok"))
        .route("/readyz", get(ready))
}

/// Ready when the database answers and the server isn't shutting down: a load balancer stops
/// sending clients here otherwise. Redis being down makes the node "degraded" but still ready:
/// it keeps serving its local users, and taking every node out would be an outage.
async fn ready(State(state): State<AppState>) -> (StatusCode, axum::Json<Value>) {
    let database = state.chat.store().ping().await;
    let redis = match state.chat.hub().bus() {
        None => json!("not configured"),
        Some(bus) => match bus.health().problem() {
            None => json!("ok"),
            Some(problem) => json!(problem),
        },
    };
    let shutting_down = state.shutting_down.load(Ordering::Relaxed);
    let redis_ok = redis == "ok" || redis == "not configured";
    let (status, summary) = match (&database, shutting_down) {
        (_, true) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (Ok(()), _) if !redis_ok => (StatusCode::OK, "degraded"),
        (Ok(()), _) => (StatusCode::OK, "ready"),
    };
    let database = match database {
        Ok(()) => json!("ok"),
        Err(e) => {
            // Logs the cause; the answer only says what is wrong, not why.
            let _ = e.body();
            json!("unreachable")
        }
    };
    (
        status,
        axum::Json(json!({ "status": summary, "database": database, "redis": redis })),
    )
}
