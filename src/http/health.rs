//! Liveness and readiness.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(async || "ok"))
        .route("/readyz", get(ready))
}

/// Ready when the database answers. A load balancer stops sending clients here otherwise.
async fn ready(State(state): State<AppState>) -> (StatusCode, axum::Json<serde_json::Value>) {
    match state.chat.store().ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({ "status": "ready", "database": "ok" })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({ "status": "unavailable", "database": e.to_string(), "reason": "database unreachable" }),
            ),
        ),
    }
}
