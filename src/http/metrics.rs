//! `GET /metrics`: Prometheus text format. See docs/OPERATIONS.md for what each metric means.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use crate::chat::RedisState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(state): State<AppState>) -> impl IntoResponse {
    // Gauges of current state are read at scrape time rather than kept up to date on every
    // connect and disconnect.
    let (sockets, users) = state.chat.counts();
    metrics::gauge!("confab_sockets").set(sockets as f64);
    metrics::gauge!("confab_users_online").set(users as f64);
    crate::telemetry::runtime::record();
    match state.chat.redis() {
        RedisState::NotConfigured => {}
        RedisState::Up => metrics::gauge!("confab_redis_up").set(1.0),
        RedisState::Down(_) => metrics::gauge!("confab_redis_up").set(0.0),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics().render(),
    )
}
