//! The simulator's WeChat APIs beyond login: access tokens, phone numbers, checksession, and
//! the `/_sim/` helpers that stand in for the client's getPhoneNumber button and open data.

use super::state::{random_bytes, PhoneCode, CODE_TTL_MS};
use super::{bad_request, wechat_error, SimState};
use crate::clock::Millis;
use crate::domain::Platform;
use crate::wechat::crypto;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

const TOKEN_TTL_MS: Millis = 7200 * 1000;

fn ok_reply(mut body: Value) -> Response {
    body["errcode"] = json!(0);
    body["errmsg"] = json!("ok");
    Json(body).into_response()
}

impl SimState {
    /// The app's current token if still valid, else a new one (normal-mode stable_token).
    pub(super) fn stable_token(&self, appid: &str, force: bool) -> (String, Millis) {
        let now = self.now();
        let mut inner = self.lock();
        match inner.access_tokens.get(appid) {
            Some((token, exp)) if !force && *exp > now => (token.clone(), (*exp - now) / 1000),
            _ => {
                let token = format!("SIM_AT_{}", hex::encode(random_bytes::<24>()));
                inner
                    .access_tokens
                    .insert(appid.to_owned(), (token.clone(), now + TOKEN_TTL_MS));
                (token, TOKEN_TTL_MS / 1000)
            }
        }
    }

    /// Spends a phone code of `appid`: its number and country code; `Err(true)` for a used or
    /// expired code, `Err(false)` for one it never issued to this app.
    pub(super) fn redeem_phone_code(
        &self,
        appid: &str,
        code: &str,
    ) -> Result<(String, Value), bool> {
        let now = self.now();
        let mut inner = self.lock();
        let pc = inner
            .phone_codes
            .get_mut(code)
            .filter(|p| p.appid == appid)
            .ok_or(false)?;
        if pc.used || now - pc.issued_at >= CODE_TTL_MS {
            return Err(true);
        }
        pc.used = true;
        Ok((pc.phone.clone(), pc.country_code.clone()))
    }

    /// Which app a token belongs to, or WeChat's errcode for it.
    pub(super) fn check_token(&self, token: &str) -> Result<String, (i64, &'static str)> {
        let now = self.now();
        let inner = self.lock();
        for (appid, (current, exp)) in &inner.access_tokens {
            if current == token {
                return if *exp > now {
                    Ok(appid.clone())
                } else {
                    Err((42001, "access_token expired"))
                };
            }
        }
        Err((
            40001,
            "invalid credential, access_token is invalid or not latest",
        ))
    }
}

#[derive(Deserialize)]
pub(super) struct StableTokenBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

pub(super) async fn stable_token(
    State(sim): State<Arc<SimState>>,
    body: Option<Json<StableTokenBody>>,
) -> Response {
    let path = "/cgi-bin/stable_token";
    if let Some(reply) = sim.enter(path).await {
        return reply;
    }
    let Some(Json(b)) = body else {
        return wechat_error(47001, "data format error");
    };
    let (appid, secret) = (b.appid.unwrap_or_default(), b.secret.unwrap_or_default());
    if let Err((code, msg)) = sim.check_credentials(Platform::Weixin, &appid, &secret) {
        return wechat_error(code, msg);
    }
    if b.grant_type.as_deref() != Some("client_credential") {
        return wechat_error(40002, "invalid grant_type");
    }
    let (token, expires_in) = sim.stable_token(&appid, b.force_refresh);
    Json(json!({ "access_token": token, "expires_in": expires_in })).into_response()
}

/// The old `/cgi-bin/token`: every call mints a new token and invalidates the previous one,
/// which is exactly how several instances calling it clobber each other.
pub(super) async fn token(
    State(sim): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = "/cgi-bin/token";
    if let Some(reply) = sim.enter(path).await {
        return reply;
    }
    let field = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if let Err((code, msg)) =
        sim.check_credentials(Platform::Weixin, field("appid"), field("secret"))
    {
        return wechat_error(code, msg);
    }
    let (token, expires_in) = sim.stable_token(field("appid"), true);
    Json(json!({ "access_token": token, "expires_in": expires_in })).into_response()
}

/// `phoneNumber` as WeChat and Douyin give it: the bare number in mainland China, else with
/// its country code.
pub(super) fn full_number(country: &Value, phone: &str) -> String {
    match country {
        Value::String(c) if c == "86" => phone.to_owned(),
        Value::Number(n) if n.as_u64() == Some(86) => phone.to_owned(),
        Value::String(c) => format!("+{c} {phone}"),
        other => format!("+{other} {phone}"),
    }
}

#[derive(Deserialize)]
pub(super) struct PhoneBody {
    code: Option<String>,
}

pub(super) async fn phone_number(
    State(sim): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
    body: Option<Json<PhoneBody>>,
) -> Response {
    let path = "/wxa/business/getuserphonenumber";
    if let Some(reply) = sim.enter(path).await {
        return reply;
    }
    let appid = match sim.check_token(q.get("access_token").map(String::as_str).unwrap_or("")) {
        Ok(a) => a,
        Err((code, msg)) => return wechat_error(code, msg),
    };
    let Some(code) = body.and_then(|Json(b)| b.code).filter(|c| !c.is_empty()) else {
        return wechat_error(41008, "missing code");
    };
    let Ok((phone, country)) = sim.redeem_phone_code(&appid, &code) else {
        return wechat_error(40029, "invalid code");
    };
    let now = sim.now();
    ok_reply(json!({
        "phone_info": {
            "phoneNumber": full_number(&country, &phone),
            "purePhoneNumber": phone,
            "countryCode": country,
            "watermark": { "timestamp": now / 1000, "appid": appid },
        }
    }))
}

pub(super) async fn check_session(
    State(sim): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = "/wxa/checksession";
    if let Some(reply) = sim.enter(path).await {
        return reply;
    }
    let field = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let appid = match sim.check_token(field("access_token")) {
        Ok(a) => a,
        Err((code, msg)) => return wechat_error(code, msg),
    };
    if field("sig_method") != "hmac_sha256" {
        return wechat_error(87009, "invalid signature");
    }
    let key = {
        let inner = sim.lock();
        match inner.openids.get(field("openid")) {
            Some((a, user)) if *a == appid => {
                inner.session_keys.get(&(a.clone(), user.clone())).cloned()
            }
            _ => None,
        }
    };
    match key {
        Some(k) if crypto::session_signature(&k, "") == field("signature") => ok_reply(json!({})),
        Some(_) => wechat_error(87009, "invalid signature"),
        None => wechat_error(40003, "invalid openid"),
    }
}

#[derive(Deserialize)]
pub(super) struct PhoneCodeRequest {
    appid: Option<String>,
    #[serde(default = "default_phone")]
    phone: String,
    /// `"86"` or `86`: WeChat has sent both; echoed back as given.
    #[serde(default = "default_country")]
    country_code: Value,
    /// Alipay: the subCode of a refusal (`isv.invalid-auth-relations`) instead of a number.
    refuse: Option<String>,
}

fn default_phone() -> String {
    "13800138000".into()
}

fn default_country() -> Value {
    json!("86")
}

/// What the getPhoneNumber button's `e.detail.code` would be; for an Alipay app, what
/// `my.getPhoneNumber` gives instead: `{"response"}`, sealed and signed.
pub(super) async fn issue_phone_code(
    State(sim): State<Arc<SimState>>,
    body: Option<Json<PhoneCodeRequest>>,
) -> Response {
    let Some(Json(req)) = body else {
        return bad_request("send JSON {\"appid\"?, \"phone\"?, \"country_code\"?}");
    };
    let appid = match sim.resolve_app(None, req.appid.as_deref()) {
        Ok(a) if a.platform == Platform::Alipay => {
            return match super::alipay::phone_response(
                &sim,
                &a.appid,
                &req.phone,
                req.refuse.as_deref(),
            ) {
                Ok(response) => Json(json!({ "response": response })).into_response(),
                Err(why) => bad_request(&why),
            }
        }
        Ok(a) => a.appid.clone(),
        Err(why) => return bad_request(&why),
    };
    let code = hex::encode(random_bytes::<16>());
    let now = sim.now();
    sim.lock().phone_codes.insert(
        code.clone(),
        PhoneCode {
            appid,
            phone: req.phone,
            country_code: req.country_code,
            issued_at: now,
            used: false,
        },
    );
    Json(json!({ "code": code })).into_response()
}

#[derive(Deserialize)]
pub(super) struct EncryptRequest {
    appid: Option<String>,
    user: String,
    data: Value,
}

/// encryptedData + iv for `data` (watermark added) under the user's current session_key, as
/// `wx.getUserProfile` / `wx.getWeRunData` would hand the client.
pub(super) async fn encrypt(
    State(sim): State<Arc<SimState>>,
    body: Option<Json<EncryptRequest>>,
) -> Response {
    let Some(Json(req)) = body else {
        return bad_request("send JSON {\"appid\"?, \"user\", \"data\": {...}}");
    };
    let (platform, appid) = match sim.resolve_app(None, req.appid.as_deref()) {
        Ok(a) => (a.platform, a.appid.clone()),
        Err(why) => return bad_request(&why),
    };
    let Some(key) = sim.session_key(&appid, &req.user) else {
        return bad_request("this user has no session_key yet: issue a code first");
    };
    let mut data = req.data;
    if !data.is_object() {
        return bad_request("data must be a JSON object");
    }
    let iv = random_bytes::<16>();
    let encrypted = match platform {
        // Baidu's format: no watermark, the AppKey after the JSON.
        Platform::Baidu => crypto::baidu::encrypt(
            &key,
            data.to_string().as_bytes(),
            &appid,
            &iv,
            &random_bytes::<16>(),
        ),
        // Kuaishou documents no watermark.
        Platform::Kuaishou => crypto::encrypt(&key, data.to_string().as_bytes(), &iv),
        _ => {
            data["watermark"] = json!({ "appid": appid, "timestamp": sim.now() / 1000 });
            crypto::encrypt(&key, data.to_string().as_bytes(), &iv)
        }
    };
    match encrypted {
        Ok(encrypted) => {
            Json(json!({ "encryptedData": encrypted, "iv": STANDARD.encode(iv) })).into_response()
        }
        Err(_) => bad_request("the user's session_key is unusable"),
    }
}

#[derive(Deserialize)]
pub(super) struct ExpireRequest {
    appid: Option<String>,
}

/// Makes the app's current access_token expire now (tests of refresh behaviour).
pub(super) async fn expire_token(
    State(sim): State<Arc<SimState>>,
    body: Option<Json<ExpireRequest>>,
) -> Response {
    let appid = match sim.resolve_app(None, body.and_then(|Json(b)| b.appid).as_deref()) {
        Ok(a) => a.appid.clone(),
        Err(why) => return bad_request(&why),
    };
    let now = sim.now();
    if let Some((_, exp)) = sim.lock().access_tokens.get_mut(&appid) {
        *exp = now;
    }
    axum::http::StatusCode::NO_CONTENT.into_response()
}
