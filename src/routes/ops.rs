//! Operational routes: liveness and readiness.

use crate::app::AppState;
use crate::error::{ok, ApiError};
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::Empty>)))]
pub(super) async fn healthz() -> Response {
    ok(json!({}))
}

/// Ready when the store of record answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::ReadyData>), (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.store.ping().await?;
    Ok(ok(json!({ "store": "ok" })))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
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
