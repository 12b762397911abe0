//! Routes for a logged-in client: `GET /me`, `POST /logout`, and `GET /auth` for reverse
//! proxies (nginx `auth_request`, Traefik ForwardAuth).

use super::extract::Authed;
use super::reply::{ok, Empty, Envelope, Reply};
use crate::clock::rfc3339;
use crate::error::{responses, ApiError};
use crate::state::AppState;
use crate::store::UserRecord;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(logout))
        .routes(routes!(auth))
}

/// A user as `/me` and the admin API show it (the schema clients read as `MeData`).
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

impl From<UserRecord> for MeData {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            appid: u.appid.to_string(),
            openid: u.openid.0,
            unionid: u.unionid.map(|x| x.0),
            phone: u.phone,
            phone_country_code: u.phone_country_code,
            created_at: rfc3339(u.created_at),
            last_login_at: rfc3339(u.last_login_at),
        }
    }
}

#[utoipa::path(get, path = "/me", tag = "mini program", security(("token" = [])),
    responses((status = 200, body = Envelope<MeData>), responses::Unauthorized, responses::Unavailable))]
pub(super) async fn me(State(state): State<AppState>, authed: Authed) -> Reply<MeData> {
    let user = state.users.of_session(authed.session.user_id).await?;
    Ok(ok(user.into()))
}

#[utoipa::path(post, path = "/logout", tag = "mini program", security(("token" = [])),
    responses((status = 200, body = Envelope<Empty>), responses::Unauthorized, responses::Unavailable))]
pub(super) async fn logout(State(state): State<AppState>, authed: Authed) -> Reply<Empty> {
    state.sessions.revoke(&authed.token).await?;
    Ok(ok(Empty {}))
}

#[derive(Serialize, ToSchema)]
pub(super) struct AuthData {
    user_id: i64,
}

/// 200 with the user's identity in headers for the proxy to forward, else 401.
#[utoipa::path(method(get, head, post, put, patch, delete, options), path = "/auth", tag = "reverse proxy", security(("token" = [])),
    description = "Forward-auth for nginx auth_request / Traefik ForwardAuth. The ordinary methods are accepted, as nginx keeps the original method in its subrequest.",
    responses(
        (status = 200, body = Envelope<AuthData>, headers(
            ("X-Wxlogin-User-Id" = i64), ("X-Wxlogin-Openid" = String), ("X-Wxlogin-Appid" = String), ("X-Wxlogin-Unionid" = String))),
        responses::Unauthorized, responses::Unavailable))]
pub(super) async fn auth(authed: Authed) -> Result<Response, ApiError> {
    let s = &authed.session;
    let mut response = ok(AuthData { user_id: s.user_id }).into_response();
    let headers = response.headers_mut();
    headers.insert("x-wxlogin-user-id", HeaderValue::from(s.user_id));
    // openid and appid are ASCII by construction; a value that is not is left out, not a panic.
    if let Ok(v) = HeaderValue::from_str(&s.openid.0) {
        headers.insert("x-wxlogin-openid", v);
    }
    if let Ok(v) = HeaderValue::from_str(s.appid.as_str()) {
        headers.insert("x-wxlogin-appid", v);
    }
    if let Some(Ok(v)) = s.unionid.as_ref().map(|u| HeaderValue::from_str(&u.0)) {
        headers.insert("x-wxlogin-unionid", v);
    }
    Ok(response)
}
