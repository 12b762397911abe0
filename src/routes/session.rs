//! Routes for a logged-in client: `GET /me`, `POST /logout`, and `GET /auth` for reverse
//! proxies (nginx `auth_request`, Traefik ForwardAuth).

use super::extract::Authed;
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::error::{ok, ApiError};
use crate::store::UserRecord;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::json;

#[utoipa::path(get, path = "/me", tag = "mini program", security(("token" = [])),
    responses((status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::MeData>), (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn me(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Response, ApiError> {
    let user = state
        .store
        .find_user(authed.session.user_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(ok(user_json(&user)))
}

/// A user as `/me` and the admin API show it.
#[derive(serde::Serialize)]
pub(super) struct UserView<'a> {
    id: i64,
    appid: &'a str,
    openid: &'a str,
    unionid: Option<&'a str>,
    phone: Option<&'a str>,
    phone_country_code: Option<&'a str>,
    created_at: String,
    last_login_at: String,
}

pub(super) fn user_json(u: &UserRecord) -> UserView<'_> {
    UserView {
        id: u.id,
        appid: u.appid.as_str(),
        openid: &u.openid.0,
        unionid: u.unionid.as_ref().map(|x| x.0.as_str()),
        phone: u.phone.as_deref(),
        phone_country_code: u.phone_country_code.as_deref(),
        created_at: rfc3339(u.created_at),
        last_login_at: rfc3339(u.last_login_at),
    }
}

#[utoipa::path(post, path = "/logout", tag = "mini program", security(("token" = [])),
    responses((status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::Empty>), (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn logout(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Response, ApiError> {
    state.sessions.revoke(&authed.token).await?;
    Ok(ok(json!({})))
}

/// 200 with the user's identity in headers for the proxy to forward, else 401.
#[utoipa::path(method(get, head, post, put, patch, delete, options), path = "/auth", tag = "reverse proxy", security(("token" = [])),
    description = "Forward-auth for nginx auth_request / Traefik ForwardAuth. The ordinary methods are accepted, as nginx keeps the original method in its subrequest.",
    responses(
        (status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::AuthData>, headers(
            ("X-Wxlogin-User-Id" = i64), ("X-Wxlogin-Openid" = String), ("X-Wxlogin-Appid" = String), ("X-Wxlogin-Unionid" = String))),
        (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn auth(authed: Authed) -> Response {
    let s = &authed.session;
    let mut response = ok(json!({ "user_id": s.user_id }));
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
    response
}
