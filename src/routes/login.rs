//! `POST /login`: a `wx.login()` code in, our token out.

use super::extract::{token_text, ApiBody};
use crate::app::AppState;
use crate::domain::{JsCode, SessionToken};
use crate::error::{ok, ApiError};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct LoginBody {
    /// The code from `wx.login()`. Missing or empty: 400 `missing_code`.
    #[schema(value_type = String, required = true, pattern = "^[!-~]{1,128}$")]
    code: Option<String>,
    /// Needed only when several apps are configured.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    appid: Option<String>,
}

#[utoipa::path(post, path = "/login", tag = "mini program",
    request_body(content = LoginBody, description = "JSON, or a urlencoded form"),
    responses(
        (status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::LoginData>),
        (status = 400, description = "missing_code, bad_request, unknown_app", body = crate::routes::docs::ErrorBody),
        (status = 401, description = "invalid_code, code_used", body = crate::routes::docs::ErrorBody),
        (status = 403, description = "user_blocked", body = crate::routes::docs::ErrorBody),
        (status = 413, description = "payload_too_large", body = crate::routes::docs::ErrorBody),
        (status = 429, description = "rate_limited, wechat_rate_limited", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "wechat_unavailable, wechat_misconfigured, store_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
    ))]
pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiBody(body): ApiBody<LoginBody>,
) -> Result<Response, ApiError> {
    let ip = state.limiter.client_ip(peer.ip(), &headers);
    state
        .rate_limit("login", &ip.to_string(), state.rate_limit_login)
        .await?;
    let code = match body.code.as_deref().map(str::trim) {
        None | Some("") => return Err(ApiError::MissingCode),
        Some(text) => JsCode::parse(text).map_err(|e| ApiError::BadRequest(e.0.into()))?,
    };
    let app = state.app_for(body.appid.as_deref())?;
    // A client that logs in again while holding a token is replacing it: revoke the old one.
    let previous = token_text(&headers)
        .and_then(SessionToken::parse)
        .map(|t| t.hash());
    let outcome = match state.login.login(app, code, previous).await {
        Ok(o) => o,
        Err(e) => {
            let e = ApiError::from(e);
            crate::metrics::login(e.parts().2);
            return Err(e);
        }
    };
    crate::metrics::login("ok");
    Ok(ok(json!({
        "token": outcome.token.expose(),
        "expires_in": outcome.expires_in,
        "user": {
            "id": outcome.user_id,
            "openid": outcome.openid.0,
            "unionid": outcome.unionid.map(|u| u.0),
        },
        "new_user": outcome.new_user,
    })))
}
