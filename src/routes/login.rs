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

#[derive(Deserialize)]
pub(super) struct LoginBody {
    code: Option<String>,
    appid: Option<String>,
}

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
