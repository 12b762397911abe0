//! Operational routes: liveness and readiness.

use crate::app::AppState;
use crate::error::{ok, ApiError};
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

pub(super) async fn healthz() -> Response {
    ok(json!({}))
}

/// Ready when the store of record answers.
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.store.ping().await?;
    Ok(ok(json!({ "store": "ok" })))
}

/// Prometheus text format.
pub(super) async fn metrics() -> Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::handle().render(),
    )
        .into_response()
}
