//! Routes that need the session's `session_key` or the app's access_token — which only the
//! server holds: `POST /phone`, `POST /decrypt`, `POST /userinfo/verify`, `GET /session/check`.

use super::extract::{ApiBody, Authed};
use crate::app::AppState;
use crate::error::{ok, ApiError};
use crate::wechat::crypto::{self, OpenDataError};
use crate::wechat::WechatError;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::BadRequest(format!("`{name}` is required"))),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct PhoneBody {
    code: Option<String>,
}

/// Exchanges the getPhoneNumber button's code for the phone number and stores it on the user.
#[utoipa::path(post, path = "/phone", tag = "open data", security(("token" = [])),
    request_body = PhoneBody,
    responses(
        (status = 200, body = crate::routes::docs::Envelope<crate::wechat::PhoneInfo>),
        (status = 400, description = "bad_request, invalid_phone_code", body = crate::routes::docs::ErrorBody),
        (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 413, description = "payload_too_large", body = crate::routes::docs::ErrorBody),
        (status = 429, description = "rate_limited", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn phone(
    State(state): State<AppState>,
    authed: Authed,
    ApiBody(body): ApiBody<PhoneBody>,
) -> Result<Response, ApiError> {
    state
        .rate_limit(
            "phone",
            &authed.session.id.to_string(),
            state.rate_limit_phone,
        )
        .await?;
    let code = required(&body.code, "code")?;
    if code.len() > 128 {
        return Err(ApiError::BadRequest("`code` is not a phone code".into()));
    }
    let app = state.app(&authed.session.appid)?;
    let info = state
        .tokens
        .with_token(app, |token| {
            let wechat = state.wechat.clone();
            let code = code.to_owned();
            async move { wechat.phone_number(&token, &code).await }
        })
        .await
        .map_err(|e| match e {
            WechatError::InvalidCode | WechatError::CodeUsed => ApiError::InvalidPhoneCode,
            other => other.into(),
        })?;
    state
        .store
        .set_phone(
            authed.session.user_id,
            &info.phone_number,
            &info.country_code,
        )
        .await?;
    Ok(ok(info))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DecryptBody {
    encrypted_data: Option<String>,
    iv: Option<String>,
}

/// Decrypts open data with the session's own session_key and checks the watermark.
#[utoipa::path(post, path = "/decrypt", tag = "open data", security(("token" = [])),
    request_body = DecryptBody,
    responses(
        (status = 200, description = "the decrypted JSON object", body = crate::routes::docs::Envelope<Object>),
        (status = 400, description = "bad_request (input shape), decrypt_failed (log in again)", body = crate::routes::docs::ErrorBody),
        (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 413, description = "payload_too_large", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn decrypt(
    State(state): State<AppState>,
    authed: Authed,
    ApiBody(body): ApiBody<DecryptBody>,
) -> Result<Response, ApiError> {
    let data = required(&body.encrypted_data, "encryptedData")?;
    let iv = required(&body.iv, "iv")?;
    let key = authed.session_key(&state).await?;
    match crypto::decrypt(key.expose(), data, iv, Some(authed.session.appid.as_str())) {
        Ok(value) => Ok(ok(value)),
        Err(OpenDataError::Malformed(why)) => Err(ApiError::BadRequest(why.into())),
        Err(OpenDataError::DecryptFailed) => Err(ApiError::DecryptFailed),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct VerifyBody {
    raw_data: Option<String>,
    signature: Option<String>,
}

/// Checks `wx.getUserInfo`'s rawData signature against the session's session_key.
#[utoipa::path(post, path = "/userinfo/verify", tag = "open data", security(("token" = [])),
    request_body = VerifyBody,
    responses((status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::Valid>), (status = 400, description = "bad_request (or the route's own 400s)", body = crate::routes::docs::ErrorBody),
        (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 413, description = "payload_too_large", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn verify_userinfo(
    State(state): State<AppState>,
    authed: Authed,
    ApiBody(body): ApiBody<VerifyBody>,
) -> Result<Response, ApiError> {
    let raw = body
        .raw_data
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("`rawData` is required".into()))?;
    let signature = required(&body.signature, "signature")?;
    let key = authed.session_key(&state).await?;
    let valid = crypto::verify_raw_data(raw, signature, key.expose());
    Ok(ok(json!({ "valid": valid })))
}

/// Asks WeChat whether the session's session_key is still current. `valid: false` means the
/// client called `wx.login()` since and must log in again before collecting encrypted data.
#[utoipa::path(get, path = "/session/check", tag = "open data", security(("token" = [])),
    responses((status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::Valid>), (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn check_session(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Response, ApiError> {
    let s = &authed.session;
    let app = state.app(&s.appid)?;
    let signature = crypto::session_signature(authed.session_key(&state).await?.expose(), "");
    let valid = state
        .tokens
        .with_token(app, |token| {
            let (wechat, openid, signature) =
                (state.wechat.clone(), s.openid.0.clone(), signature.clone());
            async move { wechat.check_session(&token, &openid, &signature).await }
        })
        .await?;
    Ok(ok(json!({ "valid": valid })))
}
