//! Liveness and readiness.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;

use super::AppState;
use crate::chat::RedisState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(async || "ok"))
        .route("/readyz", get(ready))
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    database: &'static str,
    redis: String,
}

/// Ready when the database answers and the server isn't shutting down: a load balancer stops
/// sending clients here otherwise. Redis being down makes the node "degraded" but still ready:
/// it keeps serving its local users, and taking every node out would be an outage.
async fn ready(State(state): State<AppState>) -> (StatusCode, axum::Json<Readiness>) {
    let database = state.chat.ping_database().await;
    if let Err(e) = &database {
        // The answer only says what is wrong, not why.
        e.log();
    }
    let redis = state.chat.redis();
    let shutting_down = state.shutting_down.load(Ordering::Relaxed);
    let (status, summary) = match (&database, shutting_down) {
        (_, true) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (Ok(()), _) if matches!(redis, RedisState::Down(_)) => (StatusCode::OK, "degraded"),
        (Ok(()), _) => (StatusCode::OK, "ready"),
    };
    let readiness = Readiness {
        status: summary,
        database: if database.is_ok() {
            "ok"
        } else {
            "unreachable"
        },
        redis: match redis {
            RedisState::NotConfigured => "not configured".into(),
            RedisState::Up => "ok".into(),
            RedisState::Down(problem) => problem,
        },
    };
    (status, axum::Json(readiness))
}
