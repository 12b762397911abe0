//! Routes that need the session's `session_key` or the app's access_token — which only the
//! server holds: `POST /phone`, `POST /decrypt`, `POST /userinfo/verify`, `GET /session/check`.
//! Handlers check the input's shape; `services::open_data` does the rest.

use super::extract::{ApiBody, Authed, Client};
use super::reply::{ok, Envelope, Reply, Valid};
use crate::error::{responses, ApiError, ErrorBody};
use crate::services::open_data::PhoneProof;
use crate::state::AppState;
use crate::wechat::PhoneInfo;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(phone))
        .routes(routes!(decrypt))
        .routes(routes!(verify_userinfo))
        .routes(routes!(check_session))
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::BadRequest(format!("`{name}` is required"))),
    }
}

/// The longest `response` taken (the schema's `maxLength`): Alipay's message is a few hundred
/// characters (its signature 344 for a 2048-bit key, 684 for 4096).
const MAX_ALIPAY_RESPONSE: usize = 2048;

#[derive(Deserialize, ToSchema)]
pub(super) struct PhoneBody {
    /// The code from the getPhoneNumber button's event (`e.detail.code`). Required, except for
    /// an Alipay session, which sends `response` instead.
    #[schema(value_type = String, required = true, pattern = "^[!-~]{1,128}$")]
    code: Option<String>,
    /// Alipay only: `my.getPhoneNumber`'s `res.response` string, as it is (signed by Alipay and
    /// encrypted under the app's AES key).
    #[schema(value_type = Option<String>, required = false, max_length = 2048)]
    response: Option<String>,
    /// `true`: ask WeChat even when the user's bound number is fresh.
    #[schema(required = false)]
    refresh: Option<bool>,
}

/// Exchanges the getPhoneNumber button's code for the phone number and binds it to the user.
/// A number bound within `WXLOGIN_PHONE_REUSE` is answered from the store (no paid WeChat
/// call) unless `refresh` is set; a number another user holds is 409 `phone_in_use`.
#[utoipa::path(post, path = "/phone", tag = "open data", security(("token" = [])),
    request_body = PhoneBody,
    responses(
        (status = 200, body = Envelope<PhoneInfo>),
        (status = 400, description = "bad_request, invalid_phone_code", body = ErrorBody),
        (status = 409, description = "phone_in_use", body = ErrorBody),
        responses::Unauthorized, responses::Unsupported, responses::TooLarge, responses::RateLimited,
        responses::Unavailable))]
pub(super) async fn phone(
    State(state): State<AppState>,
    authed: Authed,
    Client(client): Client,
    ApiBody(body): ApiBody<PhoneBody>,
) -> Reply<PhoneInfo> {
    // Checked before anything else, the limit and a fresh stored number included: malformed
    // input is a 400 whatever the state of the account, and costs no allowance. (Which proof
    // the session's platform takes — a code, or Alipay's response — the service says, after.)
    let proof = match body.response.as_deref().map(str::trim) {
        Some(response) if !response.is_empty() => {
            if response.chars().count() > MAX_ALIPAY_RESPONSE {
                return Err(ApiError::BadRequest("`response` is too large".into()));
            }
            PhoneProof::AlipayResponse(response)
        }
        _ => {
            let code = required(&body.code, "code")?;
            if code.len() > 128 || !code.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ApiError::BadRequest("`code` is not a phone code".into()));
            }
            PhoneProof::Code(code)
        }
    };
    state.limits.phone(authed.session.id).await?;
    let refresh = body.refresh.unwrap_or(false);
    let info = state
        .open_data
        .phone(&authed.session, proof, refresh, &client)
        .await?;
    Ok(ok(info))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DecryptBody {
    /// Base64 of AES-128-CBC ciphertext: whole 16-byte blocks, at most 32 KiB of text.
    #[schema(value_type = String, required = true,
        pattern = "^(?:[A-Za-z0-9+/]{64})*(?:[A-Za-z0-9+/]{21}[AQgw]==|[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/]{64})$")]
    encrypted_data: Option<String>,
    /// Base64 of 16 bytes.
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9+/]{21}[AQgw]==$")]
    iv: Option<String>,
}

/// Decrypts open data with the session's own session_key and checks the watermark.
#[utoipa::path(post, path = "/decrypt", tag = "open data", security(("token" = [])),
    request_body = DecryptBody,
    responses(
        (status = 200, description = "the decrypted JSON object", body = Envelope<Object>),
        (status = 400, description = "bad_request (input shape), decrypt_failed (log in again)", body = ErrorBody),
        responses::Unauthorized, responses::Unsupported, responses::TooLarge, responses::Unavailable))]
pub(super) async fn decrypt(
    State(state): State<AppState>,
    authed: Authed,
    ApiBody(body): ApiBody<DecryptBody>,
) -> Reply<serde_json::Value> {
    let data = required(&body.encrypted_data, "encryptedData")?;
    let iv = required(&body.iv, "iv")?;
    let value = state
        .open_data
        .decrypt(&authed.token, &authed.session, data, iv)
        .await?;
    Ok(ok(value))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct VerifyBody {
    /// `wx.getUserInfo`'s `rawData`, as it came.
    #[schema(value_type = String, required = true)]
    raw_data: Option<String>,
    /// Its `signature`: hex SHA-1.
    #[schema(value_type = String, required = true, pattern = "^[0-9a-fA-F]{40}$")]
    signature: Option<String>,
}

/// Checks `wx.getUserInfo`'s rawData signature against the session's session_key.
#[utoipa::path(post, path = "/userinfo/verify", tag = "open data", security(("token" = [])),
    request_body = VerifyBody,
    responses((status = 200, body = Envelope<Valid>),
        responses::BadRequest, responses::Unauthorized, responses::Unsupported, responses::TooLarge,
        responses::Unavailable))]
pub(super) async fn verify_userinfo(
    State(state): State<AppState>,
    authed: Authed,
    ApiBody(body): ApiBody<VerifyBody>,
) -> Reply<Valid> {
    let raw = body
        .raw_data
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("`rawData` is required".into()))?;
    let signature = required(&body.signature, "signature")?;
    if signature.len() != 40 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(
            "`signature` must be 40 hex digits (SHA-1)".into(),
        ));
    }
    let valid = state
        .open_data
        .verify_userinfo(&authed.token, &authed.session, raw, signature)
        .await?;
    Ok(ok(Valid { valid }))
}

/// Asks WeChat whether the session's session_key is still current. `valid: false` means the
/// client called `wx.login()` since and must log in again before collecting encrypted data.
#[utoipa::path(get, path = "/session/check", tag = "open data", security(("token" = [])),
    responses((status = 200, body = Envelope<Valid>), responses::Unauthorized, responses::Unsupported,
        responses::Unavailable))]
pub(super) async fn check_session(State(state): State<AppState>, authed: Authed) -> Reply<Valid> {
    let valid = state
        .open_data
        .check_session(&authed.token, &authed.session)
        .await?;
    Ok(ok(Valid { valid }))
}
