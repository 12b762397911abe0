//! Operational routes: liveness and readiness (public), and the Prometheus metrics (operator).

use super::reply::{ok, Empty, Envelope, Reply};
use crate::error::responses;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The routes for the operator's eyes only.
pub(super) fn operator_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Envelope<Empty>)))]
pub(super) async fn healthz() -> Reply<Empty> {
    Ok(ok(Empty {}))
}

#[derive(Serialize, ToSchema)]
pub(super) struct ReadyData {
    store: &'static str,
}

/// Ready when the store of record answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Envelope<ReadyData>), responses::Unavailable))]
pub(super) async fn readyz(State(state): State<AppState>) -> Reply<ReadyData> {
    state.maintenance.ready().await?;
    Ok(ok(ReadyData { store: "ok" }))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub(super) async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::handle().render(),
    )
        .into_response()
}
