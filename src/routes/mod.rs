//! The HTTP API, one file per resource; each exposes its own `router()` carrying its handlers'
//! OpenAPI paths, and its reply types. Handlers are thin: parse, call a service, shape the
//! reply. They reach the stores, Redis and WeChat only through the services in `AppState`.

mod admin;
mod avatar;
mod console;
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
pub(crate) use middleware::Observe;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Bodies are small JSON objects; anything bigger is a mistake or an attack.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The routes, split by who may reach them.
pub struct Routers {
    /// The mini-program API, health checks and the API docs.
    pub public: Router,
    /// `/metrics` and the admin API (when on), with health checks and docs of their own; `None`
    /// when they are served with the public routes.
    pub operator: Option<Router>,
}

/// Every route, with the OpenAPI document they make at `/openapi.json`. With
/// `separate_operator`, the operator routes (`/admin…`, `/metrics`) are left off the public
/// router and served by a router of their own (`WXLOGIN_ADMIN_LISTEN`).
pub fn routers(
    state: AppState,
    admin_tokens: Option<crate::domain::AdminTokens>,
    separate_operator: bool,
) -> Routers {
    let public = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .merge(login::router())
        .merge(me::router())
        .merge(session::router())
        .merge(open_data::router())
        .merge(ops::router());
    let mut operator = OpenApiRouter::new().merge(ops::operator_router());
    if let Some(tokens) = admin_tokens {
        operator = operator.merge(admin::router(tokens));
    }
    if separate_operator {
        let operator = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
            .merge(ops::router())
            .merge(operator);
        Routers {
            public: finish(public, state.clone()),
            operator: Some(finish(operator, state)),
        }
    } else {
        Routers {
            public: finish(public.merge(operator), state),
            operator: None,
        }
    }
}

/// The routes with their docs, fallbacks and body limit, each route noting its template for the
/// request metrics.
fn finish(api: OpenApiRouter<AppState>, state: AppState) -> Router {
    let (router, openapi) = api.split_for_parts();
    router
        .merge(docs::router(openapi))
        .route_layer(tower::layer::layer_fn(middleware::NoteRoute::new))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
