//! The OpenAPI document, collected from each route file's router (`utoipa-axum`) onto the base
//! below, served at `/openapi.json`, with Swagger UI (vendored in the binary: no CDN) at
//! `/docs`. It names no handler: the routers bring their own paths.

use crate::error::ErrorBody;
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("token", bearer());
        components.add_security_scheme("admin_token", bearer());
    }
}

/// The document's title, description, security schemes and shared schemas; the routers add
/// their paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wxlogin",
        description = "Login and sessions for WeChat Mini Programs. Errors: `{status, msg, error}`; the table is in docs/errors.md. Every route accepts a trailing slash."
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security)
)]
pub(super) struct ApiDoc;

pub(super) fn router<S: Clone + Send + Sync + 'static>(api: utoipa::openapi::OpenApi) -> Router<S> {
    // Swagger UI under /docs/ui/ (it redirects its bare path to a trailing slash, which our
    // trailing-slash normalisation would undo); /docs points at its index page.
    let ui: Router<S> = utoipa_swagger_ui::SwaggerUi::new("/docs/ui")
        .url("/openapi.json", api)
        .into();
    Router::new()
        .route(
            "/docs",
            get(|| async { Redirect::to("/docs/ui/index.html") }),
        )
        .merge(ui)
}
