//! The HTTP API, one file per resource; each exposes its own `router()` carrying its handlers'
//! OpenAPI paths, and its reply types. Handlers are thin: parse, call a service, shape the
//! reply. They reach the stores, Redis and WeChat only through the services in `AppState`.

mod admin;
mod avatar;
mod docs;
mod extract;
mod login;
mod me;
mod middleware;
mod open_data;
mod ops;
mod reply;
mod session;

pub use avatar::image_of;
pub use extract::{decode_body, token_text};

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Bodies are small JSON objects; anything bigger is a mistake or an attack.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Every route, with the OpenAPI document they make at `/openapi.json`.
pub fn router(state: AppState, admin_token: Option<secrecy::SecretString>) -> Router {
    let mut api = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .merge(login::router())
        .merge(me::router())
        .merge(session::router())
        .merge(open_data::router())
        .merge(ops::router());
    if let Some(token) = admin_token {
        api = api.merge(admin::router(token));
    }
    let (router, openapi) = api.split_for_parts();
    router
        .merge(docs::router(openapi))
        .route_layer(axum::middleware::from_fn(crate::metrics::track_http))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(middleware::log_server_errors))
        .with_state(state)
}
