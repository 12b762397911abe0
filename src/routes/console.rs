//! The admin console at `/admin/`: one page, its script and its style sheet, compiled into the
//! binary. Served with a Content-Security-Policy that allows only this origin's script, style
//! and API (no inline script, nothing from outside), and mounted only with the admin API. The
//! page holds no data: it asks for the admin token and calls the admin API with it.

use crate::server::TrailingSlash;
use crate::state::AppState;
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// Avatars may be served from `WXLOGIN_PUBLIC_URL` on another host, hence `https:` for images.
const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // The server trims a trailing slash before routing; the page is served only at
        // `/admin/`, where its relative links (`console.js`, `users`, …) resolve under `/admin/`.
        .route("/admin", get(page))
        .route(
            "/admin/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/admin/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

async fn page(req: Request) -> Response {
    if req.extensions().get::<TrailingSlash>().is_some() {
        asset("text/html; charset=utf-8", INDEX)
    } else {
        // Relative, so it also works under a proxy's path prefix.
        Redirect::permanent("admin/").into_response()
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}
