//! `POST /login`: a `wx.login()` code in, our token out.

use super::extract::{token_text, ApiBody, Client, ClientIp};
use super::reply::{ok, Envelope, Reply};
use crate::domain::{ClientInfo, JsCode, LoginCode, Platform, SessionToken};
use crate::error::{responses, ApiError, ErrorBody};
use crate::services::ratelimit::ClientKey;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct LoginBody {
    /// The code from `wx.login()` (or the platform's own). Required, except on Douyin, where
    /// `anonymous_code` may stand alone; missing or empty with neither: 400 `missing_code`.
    #[schema(value_type = String, required = true, pattern = "^[!-~]{1,128}$")]
    code: Option<String>,
    /// Douyin only: `tt.login()`'s `anonymousCode`. Alone, it logs in a user not signed in to
    /// Douyin (an identity whose openid is `anon:` + Douyin's `anonymous_openid`); beside
    /// `code`, that anonymous identity becomes the signed-in one. Another platform's app: 400.
    #[schema(value_type = String, required = false, pattern = "^[!-~]{1,128}$")]
    anonymous_code: Option<String>,
    /// Picks the app; without it, the default app (see `services/apps.rs`).
    #[schema(value_type = String, required = false, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    appid: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct UserBrief {
    id: i64,
    openid: String,
    unionid: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct LoginData {
    /// `wxl_` + 43 base64url characters. Send it as `Authorization: Bearer …` or `token: …`.
    token: String,
    /// Seconds until the sooner of the idle timeout and the absolute lifetime.
    expires_in: u64,
    user: UserBrief,
    new_user: bool,
}

#[utoipa::path(post, path = "/login", tag = "mini program",
    request_body(content = LoginBody, description = "JSON, or a urlencoded form"),
    responses(
        (status = 200, body = Envelope<LoginData>),
        (status = 400, description = "missing_code, bad_request, unknown_app", body = ErrorBody),
        (status = 401, description = "invalid_code, code_used", body = ErrorBody),
        (status = 403, description = "user_blocked, banned", body = ErrorBody),
        responses::TooLarge, responses::RateLimited, responses::Unavailable,
    ))]
pub(super) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Client(client): Client,
    headers: HeaderMap,
    body: Result<ApiBody<LoginBody>, ApiError>,
) -> Reply<LoginData> {
    // Failed logins are what the limit counts (each attempt counts while it runs, and a good
    // one is taken back): a flood of junk codes is stopped, even sent all at once, while the
    // real users behind one carrier NAT, who log in fine, are not counted.
    let counted = state.limits.login_attempt(ClientKey::of(ip)).await?;
    let result = attempt(&state, client, &headers, body).await;
    match &result {
        Ok(_) => crate::metrics::login("ok"),
        Err(e) => crate::metrics::login(e.parts().2),
    }
    let mistake = result.as_ref().err().is_some_and(is_client_mistake);
    state.limits.login_done(counted, mistake).await;
    result
}

/// A failure the client caused (a rejected or reused code, a bad body, an unknown app): what
/// the login limit counts. A ban, a limit or an outage on our side is not one.
fn is_client_mistake(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::MissingCode
            | ApiError::InvalidCode
            | ApiError::CodeUsed
            | ApiError::BadRequest(_)
            | ApiError::UnknownApp(_)
            | ApiError::PayloadTooLarge
    )
}

async fn attempt(
    state: &AppState,
    client: ClientInfo,
    headers: &HeaderMap,
    body: Result<ApiBody<LoginBody>, ApiError>,
) -> Reply<LoginData> {
    let ApiBody(body) = body?;
    let parse = |field: &Option<String>| match field.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => JsCode::parse(text)
            .map(Some)
            .map_err(|e| ApiError::BadRequest(e.0.into())),
    };
    let code = LoginCode::new(parse(&body.code)?, parse(&body.anonymous_code)?)
        .ok_or(ApiError::MissingCode)?;
    let app = state.apps.for_login(body.appid.as_deref())?;
    if code.anonymous().is_some() && app.platform != Platform::Douyin {
        return Err(ApiError::BadRequest(
            "anonymous_code is Douyin's: this app's platform has no anonymous login".into(),
        ));
    }
    // A client that logs in again while holding a token is replacing it: revoke the old one.
    let previous = token_text(headers)
        .and_then(SessionToken::parse)
        .map(|t| t.hash());
    let outcome = state.login.login(&app, code, previous, client).await?;
    Ok(ok(LoginData {
        token: outcome.token.expose().to_owned(),
        expires_in: outcome.expires_in,
        user: UserBrief {
            id: outcome.user_id,
            openid: outcome.openid.0,
            unionid: outcome.unionid.map(|u| u.0),
        },
        new_user: outcome.new_user,
    }))
}
