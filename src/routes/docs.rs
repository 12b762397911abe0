//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations and the
//! types below, served at `/openapi.json`, with Swagger UI (vendored in the binary: no CDN) at
//! `/docs`.

use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error reply: `status` and `error` are stable (see docs/errors.md).
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    #[schema(example = 4)]
    status: u16,
    #[schema(example = "not logged in, or the session expired: log in again")]
    msg: String,
    #[schema(example = "unauthorized")]
    error: String,
}

/// The success envelope of the reference Django view.
#[derive(Serialize, ToSchema)]
pub(crate) struct Envelope<T> {
    #[schema(example = 0)]
    status: u16,
    #[schema(example = "ok")]
    msg: String,
    data: T,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct UserBrief {
    id: i64,
    openid: String,
    unionid: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LoginData {
    /// `wxl_` + 43 base64url characters. Send it as `Authorization: Bearer …` or `token: …`.
    token: String,
    /// Seconds until the sooner of the idle timeout and the absolute lifetime.
    expires_in: u64,
    user: UserBrief,
    new_user: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MeData {
    id: i64,
    appid: String,
    openid: String,
    unionid: Option<String>,
    phone: Option<String>,
    phone_country_code: Option<String>,
    /// RFC 3339.
    created_at: String,
    last_login_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Empty {}

#[derive(Serialize, ToSchema)]
pub(crate) struct Valid {
    valid: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuthData {
    user_id: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReadyData {
    store: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AdminUsers {
    users: Vec<MeData>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AdminSession {
    id: i64,
    appid: String,
    created_at: String,
    last_seen_at: String,
    expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AdminSessions {
    sessions: Vec<AdminSession>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Revoked {
    revoked: u64,
}

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

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wxlogin",
        description = "Login and sessions for WeChat Mini Programs. Errors: `{status, msg, error}`; the table is in docs/errors.md. Every route accepts a trailing slash."
    ),
    paths(
        super::login::login,
        super::session::me,
        super::session::logout,
        super::session::auth,
        super::open_data::phone,
        super::open_data::decrypt,
        super::open_data::verify_userinfo,
        super::open_data::check_session,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        super::admin::find_users,
        super::admin::list_sessions,
        super::admin::revoke_user,
        super::admin::revoke_session,
        super::admin::stats,
    ),
    components(schemas(ErrorBody, crate::wechat::PhoneInfo, crate::store::Stats)),
    modifiers(&Security)
)]
pub(crate) struct ApiDoc;

pub(super) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    // Swagger UI under /docs/ui/ (it redirects its bare path to a trailing slash, which our
    // trailing-slash normalisation would undo); /docs points at its index page.
    let ui: Router<S> = utoipa_swagger_ui::SwaggerUi::new("/docs/ui")
        .url("/openapi.json", ApiDoc::openapi())
        .into();
    Router::new()
        .route(
            "/docs",
            get(|| async { Redirect::to("/docs/ui/index.html") }),
        )
        .merge(ui)
}
