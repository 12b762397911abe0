//! The HTTP API, one file per resource. Handlers are thin: parse, call a service, shape the reply.

mod admin;
pub(crate) mod docs;
mod extract;
mod login;
mod open_data;
mod ops;
mod session;

pub use extract::{decode_body, token_text};

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

/// Bodies are small JSON objects; anything bigger is a mistake or an attack.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState, admin_token: Option<secrecy::SecretString>) -> Router {
    let mut router = Router::new();
    if let Some(token) = admin_token {
        router = router.merge(admin::router(token));
    }
    router
        .route("/login", post(login::login))
        .route("/me", get(session::me))
        .route("/logout", post(session::logout))
        // nginx's auth_request subrequest keeps the original request's method; the ordinary
        // methods are accepted, TRACE and CONNECT are not.
        .route(
            "/auth",
            get(session::auth)
                .post(session::auth)
                .put(session::auth)
                .patch(session::auth)
                .delete(session::auth)
                .options(session::auth),
        )
        .route("/phone", post(open_data::phone))
        .route("/decrypt", post(open_data::decrypt))
        .route("/userinfo/verify", post(open_data::verify_userinfo))
        .route("/session/check", get(open_data::check_session))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(docs::router())
        .route_layer(axum::middleware::from_fn(crate::metrics::track_http))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
