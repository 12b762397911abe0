//! Douyin's open API host (`open.douyin.com`), as far as phone numbers need it, under
//! `/douyin-open`: `stable_client_token` (the same token while it lives, as its page says) and
//! `get_phonenumber_info` (the getPhoneNumber button's code → the number as JSON with the app's
//! watermark, RSA PKCS#1 v1.5-encrypted under the app's public key, which the simulator holds
//! as the developer uploads it to Douyin's console).

use super::state::SimState;
use crate::domain::Platform;
use crate::wechat::crypto::douyin;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

// Douyin's paths end in '/', which the server trims before routing (`NormalizePathLayer`).
pub(super) const CLIENT_TOKEN: &str = "/douyin-open/oauth/stable_client_token";
pub(super) const PHONE: &str = "/douyin-open/api/apps/v1/get_phonenumber_info";

/// The private key of `serve --dev`'s Douyin test app (for its phone numbers): a public test
/// key, never a secret.
pub const DEV_APP_KEY: &str = include_str!("douyin_dev_app_key.pem");

/// A token-route error, in its shape.
pub(super) fn token_error(code: i64, description: &str) -> Response {
    Json(json!({
        "data": { "error_code": code, "description": description },
        "message": "error",
    }))
    .into_response()
}

/// An open-API error, in its shape.
pub(super) fn open_error(err_no: i64, tips: &str) -> Response {
    Json(json!({ "err_no": err_no, "err_tips": tips, "log_id": "sim" })).into_response()
}

/// `POST /oauth/stable_client_token/ {client_key, client_secret, grant_type}`.
pub(super) async fn client_token(
    State(sim): State<Arc<SimState>>,
    body: Option<Json<HashMap<String, Value>>>,
) -> Response {
    if let Some(reply) = sim.enter(CLIENT_TOKEN).await {
        return reply;
    }
    let Some(Json(b)) = body else {
        return token_error(10002, "参数错误");
    };
    let field = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("");
    if field("grant_type") != "client_credential" || field("client_key").is_empty() {
        return token_error(10002, "参数错误");
    }
    match sim.check_credentials(
        Platform::Douyin,
        field("client_key"),
        field("client_secret"),
    ) {
        Err((40013, _)) => token_error(10003, "client_key 不存在"),
        Err(_) => token_error(10013, "client_key 或者 client_secret 报错"),
        Ok(()) => {
            let (token, expires_in) = sim.stable_token(field("client_key"), false);
            Json(json!({
                "data": {
                    "access_token": token,
                    "description": "",
                    "error_code": 0,
                    "expires_in": expires_in,
                },
                "message": "success",
            }))
            .into_response()
        }
    }
}

/// `POST /api/apps/v1/get_phonenumber_info/ {code}` with the `access-token` header.
pub(super) async fn phone_number(
    State(sim): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Option<Json<HashMap<String, Value>>>,
) -> Response {
    if let Some(reply) = sim.enter(PHONE).await {
        return reply;
    }
    let token = headers
        .get("access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let appid = match sim.check_token(token) {
        Ok(appid) => appid,
        Err((42001, _)) => return open_error(28001008, "access_token expired"),
        Err(_) => return open_error(28001003, "access_token invalid"),
    };
    let code = body
        .and_then(|Json(b)| b.get("code").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    if code.is_empty() {
        return open_error(28001007, "invalid parameter");
    }
    let now = sim.now();
    let (phone, country) = match sim.redeem_phone_code(&appid, &code) {
        Ok(found) => found,
        Err(true) => return open_error(28005187, "code expired"),
        Err(false) => return open_error(28001007, "invalid parameter"),
    };
    let Some(public) = sim.lock().douyin_keys.get(&appid).cloned() else {
        return open_error(28001007, "no public key uploaded for this app");
    };
    let plain = json!({
        "phoneNumber": super::open_api::full_number(&country, &phone),
        "purePhoneNumber": phone,
        "countryCode": country,
        "watermark": { "appid": appid, "timestamp": now / 1000 },
    });
    match douyin::seal_phone(&public, plain.to_string().as_bytes()) {
        Some(data) => {
            Json(json!({ "err_no": 0, "err_tips": "success", "log_id": "sim", "data": data }))
                .into_response()
        }
        None => open_error(-1, "system error"),
    }
}
