//! Alipay's gateway, as far as a login needs it: `POST /alipay/gateway.do` with method
//! `alipay.system.oauth.token`. It checks the app's RSA2 signature with the app's public key
//! (derived from what the simulator was given of the app: its public key, or its private key),
//! and signs every reply with the simulated Alipay's own key pair, whose public half is
//! [`alipay_public_key`] — what wxlogin must be configured with to believe it.

use super::state::SimState;
use crate::domain::Platform;
use crate::wechat::alipay;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use ring::signature::RsaKeyPair;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The gateway route, under the simulator's `/alipay` prefix.
pub(super) const GATEWAY: &str = "/alipay/gateway.do";

/// The simulated Alipay's private key: a public test key, never a secret.
const ALIPAY_KEY: &str = include_str!("alipay_key.pem");

/// The private key of `serve --dev`'s Alipay test app: a public test key, never a secret.
pub const DEV_APP_KEY: &str = include_str!("alipay_dev_app_key.pem");

fn alipay_key() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| alipay::private_key(ALIPAY_KEY).expect("the simulator's key parses"))
}

/// The simulated Alipay's public key (base64 SubjectPublicKeyInfo): configure an Alipay app
/// that talks to the simulator with it (`alipay_public_key`).
pub fn alipay_public_key() -> String {
    alipay::public_key_of(alipay_key())
}

/// The content-encryption key of `serve --dev`'s Alipay test app: a public test key.
pub const DEV_AES_KEY: &str = "d3hsb2dpbi1kZXYtYWVzIQ==";

/// What `my.getPhoneNumber` gives the client (`res.response`): `mobile`, or Alipay's refusal
/// `refuse` (a subCode), sealed under the app's AES key and signed by the simulated Alipay.
pub(super) fn phone_response(
    sim: &SimState,
    appid: &str,
    mobile: &str,
    refuse: Option<&str>,
) -> Result<String, String> {
    let aes_key = sim.lock().aes_keys.get(appid).cloned().ok_or_else(|| {
        format!("Alipay app {appid:?} has no AES key here: POST /_sim/apps with \"phone_key\"")
    })?;
    let plain = match refuse {
        None => json!({ "code": "10000", "msg": "Success", "mobile": mobile }),
        Some(sub_code) => json!({
            "code": "40003",
            "msg": "Insufficient Conditions",
            "subCode": sub_code,
            "subMsg": sub_code,
        }),
    };
    crate::wechat::crypto::alipay::seal_phone(alipay_key(), &aes_key, &plain.to_string())
        .ok_or_else(|| "the app's AES key is not base64 of 16 bytes".into())
}

#[derive(serde::Deserialize)]
pub(super) struct ModeBody {
    appid: Option<String>,
    mode: String,
}

/// `POST /_sim/alipay_mode {"appid"?, "mode": "open_id" | "user_id" | "both"}`: which id the
/// app's logins carry — open_id (the default, Alipay's newer mode), user_id (the older one), or
/// both (an app Alipay is moving to open_id).
pub(super) async fn set_mode(
    State(sim): State<Arc<SimState>>,
    body: Option<axum::Json<ModeBody>>,
) -> Response {
    let Some(axum::Json(body)) = body else {
        return super::bad_request("send JSON {\"appid\"?, \"mode\": \"open_id|user_id|both\"}");
    };
    let app = match sim.resolve_app(Some(Platform::Alipay), body.appid.as_deref()) {
        Ok(app) => app,
        Err(why) => return super::bad_request(&why),
    };
    let mut inner = sim.lock();
    match body.mode.as_str() {
        "open_id" => {
            inner.alipay_modes.remove(&app.appid);
        }
        "user_id" | "both" => {
            inner
                .alipay_modes
                .insert(app.appid.clone(), body.mode.clone());
        }
        _ => return super::bad_request("mode is open_id, user_id or both"),
    }
    axum::http::StatusCode::NO_CONTENT.into_response()
}

/// A gateway reply: `member` (the method's `…_response` or `error_response`) and Alipay's
/// signature over its exact text.
fn signed(member: &str, value: Value) -> Response {
    let text = value.to_string();
    let sign = alipay::sign(alipay_key(), text.as_bytes());
    let body = format!(
        "{{{}:{text},\"sign\":{}}}",
        Value::from(member),
        Value::from(sign)
    );
    (
        [(axum::http::header::CONTENT_TYPE, "text/html;charset=utf-8")],
        body,
    )
        .into_response()
}

/// An `error_response`, signed as Alipay signs them.
pub(super) fn error(code: &str, msg: &str, sub_code: &str, sub_msg: &str) -> Response {
    signed(
        "error_response",
        json!({ "code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg }),
    )
}

/// The app's public key (RSAPublicKey) from what the simulator holds of it.
fn app_public_key(held: &str) -> Option<Vec<u8>> {
    alipay::public_key(held).ok().or_else(|| {
        alipay::private_key(held)
            .ok()
            .map(|k| ring::signature::KeyPair::public_key(&k).as_ref().to_vec())
    })
}

/// `POST /alipay/gateway.do`: the parameters in the query (as Alipay's Java SDK sends the
/// system ones) and the form, merged.
pub(super) async fn gateway(
    State(sim): State<Arc<SimState>>,
    Query(query): Query<HashMap<String, String>>,
    form: axum::body::Bytes,
) -> Response {
    if let Some(reply) = sim.enter(GATEWAY).await {
        return reply;
    }
    let mut params = query;
    if let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&form) {
        params.extend(fields);
    }
    let field = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let invalid =
        |sub_code: &str, sub_msg: &str| error("40002", "Invalid Arguments", sub_code, sub_msg);
    if field("app_id").is_empty() {
        return error(
            "40001",
            "Missing Required Arguments",
            "isv.missing-app-id",
            "缺少AppID参数",
        );
    }
    if field("method") != alipay::OAUTH_TOKEN {
        return invalid("isv.invalid-method", "不存在的方法名");
    }
    let Ok(app) = sim.resolve_app(Some(Platform::Alipay), Some(field("app_id"))) else {
        return invalid("isv.invalid-app-id", "无效的AppID参数");
    };
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let content = alipay::sign_content(&pairs);
    let verified = field("sign_type") == "RSA2"
        && app_public_key(&app.secret)
            .is_some_and(|key| alipay::verify(&key, content.as_bytes(), field("sign")));
    if !verified {
        return invalid("isv.invalid-signature", "验签出错");
    }
    if field("grant_type") != "authorization_code" || field("code").is_empty() {
        return invalid("isv.code-invalid", "授权码code无效");
    }
    match sim.redeem_code(&app.appid, field("code")) {
        Ok(user) => {
            let mode = sim.lock().alipay_modes.get(&app.appid).cloned();
            let mut token = json!({
                "open_id": user.openid,
                "access_token": format!("authusrB{}", &user.openid[1..]),
                "expires_in": "1296000",
                "refresh_token": format!("authusrB{}r", &user.openid[1..]),
                "re_expires_in": "2592000",
                "auth_start": alipay::timestamp(std::time::SystemTime::now()),
            });
            if let Some(unionid) = user.unionid {
                token["union_id"] = Value::from(unionid);
            }
            // The older mode gives the member's user_id instead; an app moving gives both.
            match mode.as_deref() {
                Some("user_id") => {
                    token["user_id"] = Value::from(SimState::alipay_user_id(&user.user));
                    token.as_object_mut().map(|t| t.remove("open_id"));
                }
                Some("both") => {
                    token["user_id"] = Value::from(SimState::alipay_user_id(&user.user))
                }
                _ => {}
            }
            signed(alipay::OAUTH_TOKEN_RESPONSE, token)
        }
        Err(_) => invalid("isv.code-invalid", "授权码code无效"),
    }
}
