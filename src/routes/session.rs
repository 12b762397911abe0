//! Ending sessions and proving them: `POST /logout`, and `GET /auth` for reverse proxies
//! (nginx `auth_request`, Traefik ForwardAuth). The account itself (`/me…`) is `me.rs`.

use super::extract::{token_text, ApiBody, Authed, Client};
use super::reply::{ok, Empty, Envelope, Reply};
use crate::domain::SessionToken;
use crate::error::{responses, ApiError};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(auth))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct LogoutBody {
    /// `true`: end every session of this user, on every device.
    all: Option<bool>,
}

/// Revokes this token (or, with `{"all": true}`, every session of the user) on every instance
/// before answering.
#[utoipa::path(post, path = "/logout", tag = "mini program", security(("token" = [])),
    request_body(content = LogoutBody, description = "optional"),
    responses((status = 200, body = Envelope<Empty>), responses::BadRequest, responses::Unauthorized, responses::Unavailable))]
pub(super) async fn logout(
    State(state): State<AppState>,
    authed: Result<Authed, ApiError>,
    Client(client): Client,
    headers: HeaderMap,
    ApiBody(body): ApiBody<LogoutBody>,
) -> Reply<Empty> {
    let authed = match authed {
        Ok(authed) => authed,
        Err(ApiError::Unauthorized) => {
            // The session is gone already; perhaps this is the retry of a logout answered 503
            // because Redis could not be told. One round trip to Redis finishes that (or fails
            // again with 503); the answer is then 401 as for any ended session. Nothing is
            // written to the store for a token that has no session.
            if token_text(&headers).and_then(SessionToken::parse).is_some() {
                state.sessions.broadcast_end(&[]).await?;
            }
            return Err(ApiError::Unauthorized);
        }
        Err(other) => return Err(other),
    };
    if body.all == Some(true) {
        state
            .sessions
            .revoke_user(authed.session.user_id, &client)
            .await?;
    } else {
        state.sessions.revoke(&authed.token, &client).await?;
    }
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
            ("X-Wxlogin-User-Id" = i64), ("X-Wxlogin-Openid" = String), ("X-Wxlogin-Appid" = String), ("X-Wxlogin-Unionid" = String), ("X-Wxlogin-Platform" = String))),
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
    if let Ok(v) = HeaderValue::from_str(&s.platform) {
        headers.insert("x-wxlogin-platform", v);
    }
    Ok(response)
}
