//! A faithful stand-in for WeChat's server API (SPEC §5), and for the login exchanges of QQ,
//! Douyin, Baidu and Kuaishou under `/qq`, `/douyin`, `/baidu`, `/kuaishou` (SPEC §7), used by
//! `serve --dev`, by our tests and by users' own integration tests.
//!
//! WeChat-compatible routes answer with WeChat's JSON shapes and errcodes, as HTTP 200 with
//! `errcode`, and `jscode2session` labels its JSON `text/plain` as WeChat does; each other
//! platform's route answers in that platform's shape. Control routes under `/_sim/` play the
//! client side (`wx.login()` and the others'), inject faults and count calls.
//! Depends on the clock, axum, and — openly — the open-data cryptography in `wechat::crypto`:
//! it must encrypt what the client decrypts, and that module is pinned to WeChat's published
//! samples by known-answer tests, so a mistake there cannot hide behind the simulator agreeing
//! with it. It shares nothing else with the client it stands in for (not the reply types, not
//! the errcode table), so a mistake in one of those is not mirrored in the other.

mod alipay;
mod douyin;
mod faults;
mod open_api;
mod state;
mod tokens;

pub use alipay::{
    alipay_public_key, DEV_AES_KEY as DEV_ALIPAY_AES_KEY, DEV_APP_KEY as DEV_ALIPAY_APP_KEY,
};
pub use douyin::DEV_APP_KEY as DEV_DOUYIN_PRIVATE_KEY;
pub use state::{SimApp, SimState};

use crate::domain::Platform;
use axum::extract::{Form, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// WeChat's routes plus the `/_sim/` control routes.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/sns/jscode2session", get(wechat_jscode2session))
        // QQ's server (api.q.qq.com) under a prefix: the same path and shapes as WeChat's.
        .route("/qq/sns/jscode2session", get(qq_jscode2session))
        // Douyin's (developer.toutiao.com), Baidu's (spapi.baidu.com) and Kuaishou's
        // (open.kuaishou.com) under theirs.
        .route(
            "/douyin/api/apps/v2/jscode2session",
            post(douyin_jscode2session),
        )
        .route(
            "/baidu/oauth/jscode2sessionkey",
            post(baidu_jscode2sessionkey),
        )
        .route(
            "/kuaishou/oauth2/mp/code2session",
            post(kuaishou_code2session),
        )
        // QQ's, Kuaishou's and Baidu's app tokens (Baidu's on openapi.baidu.com).
        .route(tokens::QQ, get(tokens::qq))
        .route(tokens::KUAISHOU, post(tokens::kuaishou))
        .route(tokens::BAIDU, post(tokens::baidu))
        // Douyin's open API host (open.douyin.com): its client_token and phone numbers.
        .route(douyin::CLIENT_TOKEN, post(douyin::client_token))
        .route(douyin::PHONE, post(douyin::phone_number))
        // Alipay's gateway (openapi.alipay.com), RSA2-signed both ways.
        .route(alipay::GATEWAY, post(alipay::gateway))
        .route("/cgi-bin/stable_token", post(open_api::stable_token))
        .route("/cgi-bin/token", get(open_api::token))
        .route(
            "/wxa/business/getuserphonenumber",
            post(open_api::phone_number),
        )
        .route("/wxa/checksession", get(open_api::check_session))
        .merge(control_router())
        .with_state(state)
}

/// The dev console: one page, no external assets, that walks through the whole flow.
const CONSOLE: &str = include_str!("console.html");

/// Only the `/_sim/` control routes and the dev console at `/_dev` (mounted on the main server
/// by `serve --dev`).
pub fn control_router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/_dev", get(|| async { axum::response::Html(CONSOLE) }))
        .route("/_sim/codes", post(issue_code))
        .route("/_sim/phone_codes", post(open_api::issue_phone_code))
        .route("/_sim/encrypt", post(open_api::encrypt))
        .route("/_sim/expire_token", post(open_api::expire_token))
        .route("/_sim/open_platform", post(open_platform))
        .route("/_sim/alipay_mode", post(alipay::set_mode))
        .route("/_sim/apps", get(list_apps).post(upsert_app))
        .route("/_sim/calls", get(calls).delete(reset_calls))
        .route(
            "/_sim/faults",
            get(faults::list).post(faults::add).delete(faults::clear),
        )
}

impl SimState {
    /// Every WeChat-compatible route starts here: count the call, then play the next injected
    /// fault for this route, if any (its reply replaces the normal one).
    pub(crate) async fn enter(&self, path: &str) -> Option<Response> {
        self.count_call(path);
        faults::apply(self, path).await
    }
}

/// WeChat's reply: JSON labelled `text/plain`, as `jscode2session` really sends it.
fn wechat_reply(body: Value) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], body.to_string()).into_response()
}

fn wechat_error(errcode: i64, errmsg: &str) -> Response {
    wechat_reply(json!({ "errcode": errcode, "errmsg": errmsg }))
}

/// An injected `errcode` fault's reply in the shape of the platform whose route `path` is.
pub(super) fn error_reply(path: &str, code: i64, msg: &str) -> Response {
    if path.starts_with("/alipay/") {
        // `errmsg` names the sub_code when it looks like one (`isv.code-invalid`).
        let sub_code = if msg.contains('.') { msg } else { "" };
        alipay::error(&code.to_string(), msg, sub_code, msg)
    } else if path.starts_with("/douyin-open/oauth/") {
        douyin::token_error(code, msg)
    } else if path.starts_with("/douyin/") || path.starts_with("/douyin-open/") {
        Json(json!({ "err_no": code, "err_tips": msg })).into_response()
    } else if path.starts_with("/kuaishou/") {
        Json(json!({ "result": code, "error_msg": msg })).into_response()
    } else if path.starts_with("/baidu/") || path.starts_with("/baidu-open/") {
        Json(json!({ "errno": code, "error": msg, "error_description": msg })).into_response()
    } else {
        wechat_error(code, msg)
    }
}

/// Douyin's `jscode2session`: JSON `{appid, secret, code, anonymous_code?}`; `err_no` 0 is
/// success, the session under `data`.
async fn douyin_jscode2session(
    State(sim): State<Arc<SimState>>,
    body: Option<Json<HashMap<String, Value>>>,
) -> Response {
    if let Some(reply) = sim.enter("/douyin/api/apps/v2/jscode2session").await {
        return reply;
    }
    let error = |err_no: i64, tips: &str| {
        Json(json!({ "err_no": err_no, "err_tips": tips, "log_id": "sim" })).into_response()
    };
    let Some(Json(b)) = body else {
        return error(40014, "bad params");
    };
    let field = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("");
    let code = Some(field("code")).filter(|c| !c.is_empty());
    let anonymous_code = Some(field("anonymous_code")).filter(|c| !c.is_empty());
    if code.is_none() && anonymous_code.is_none() {
        return error(40014, "bad params: code or anonymous_code is required");
    }
    if let Err((code, _)) = sim.check_credentials(Platform::Douyin, field("appid"), field("secret"))
    {
        return match code {
            40013 => error(40015, "bad appid"),
            _ => error(40017, "bad secret"),
        };
    }
    // session_key, openid and unionid only for a `code`; anonymous_openid only for an
    // `anonymous_code` (each empty otherwise, as Douyin sends them).
    match sim.redeem_douyin(field("appid"), code, anonymous_code) {
        Ok((user, anonymous_openid)) => {
            let user = user.unwrap_or(state::SimUser {
                user: String::new(),
                openid: String::new(),
                unionid: None,
                session_key: String::new(),
            });
            Json(json!({
                "err_no": 0,
                "err_tips": "success",
                "log_id": "sim",
                "data": {
                    "session_key": user.session_key,
                    "openid": user.openid,
                    "anonymous_openid": anonymous_openid.unwrap_or_default(),
                    "unionid": user.unionid.unwrap_or_default(),
                },
            }))
            .into_response()
        }
        Err(true) => error(40019, "bad anonymous_code"),
        Err(false) => error(40018, "bad code"),
    }
}

/// Baidu's OAuth errors: HTTP 400 with `{error, error_description}`.
fn baidu_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Baidu's `jscode2sessionkey`: a form `code, client_id, sk` (the AppKey and AppSecret).
async fn baidu_jscode2sessionkey(
    State(sim): State<Arc<SimState>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(reply) = sim.enter("/baidu/oauth/jscode2sessionkey").await {
        return reply;
    }
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    if field("code").is_empty() || field("client_id").is_empty() || field("sk").is_empty() {
        return Json(json!({
            "errno": 10010100,
            "error": "parameter is invalid",
            "error_description": "code, client_id and sk are required",
        }))
        .into_response();
    }
    if sim
        .check_credentials(Platform::Baidu, field("client_id"), field("sk"))
        .is_err()
    {
        return baidu_error("invalid_client", "unknown client id");
    }
    match sim.redeem_code(field("client_id"), field("code")) {
        Ok(user) => {
            Json(json!({ "openid": user.openid, "session_key": user.session_key })).into_response()
        }
        Err(_) => baidu_error("invalid_grant", "Invalid authorization code"),
    }
}

/// Kuaishou's `code2session`: a form `app_id, app_secret, js_code`; `result` 1 is success.
async fn kuaishou_code2session(
    State(sim): State<Arc<SimState>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(reply) = sim.enter("/kuaishou/oauth2/mp/code2session").await {
        return reply;
    }
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let error = |result: i64, error: &str, msg: &str| {
        Json(json!({ "result": result, "error": error, "error_msg": msg })).into_response()
    };
    if field("js_code").is_empty() {
        return error(100200100, "invalid_request", "js_code is required");
    }
    if sim
        .check_credentials(Platform::Kuaishou, field("app_id"), field("app_secret"))
        .is_err()
    {
        return error(100200101, "invalid_client", "invalid app_id or app_secret");
    }
    match sim.redeem_code(field("app_id"), field("js_code")) {
        Ok(user) => Json(json!({
            "result": 1,
            "open_id": user.openid,
            "session_key": user.session_key,
        }))
        .into_response(),
        Err(_) => error(100200105, "invalid_grant", "invalid code"),
    }
}

async fn wechat_jscode2session(
    State(sim): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    jscode2session(&sim, Platform::Weixin, "/sns/jscode2session", &q).await
}

/// QQ's `jscode2session`: WeChat's shape; a reused code is 40029 there too, as QQ documents no
/// code of its own for it.
async fn qq_jscode2session(
    State(sim): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    jscode2session(&sim, Platform::Qq, "/qq/sns/jscode2session", &q).await
}

async fn jscode2session(
    sim: &SimState,
    platform: Platform,
    path: &str,
    q: &HashMap<String, String>,
) -> Response {
    if let Some(reply) = sim.enter(path).await {
        return reply;
    }
    let field = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if let Err((code, msg)) = sim.check_credentials(platform, field("appid"), field("secret")) {
        return wechat_error(code, msg);
    }
    if field("grant_type") != "authorization_code" {
        return wechat_error(40002, "invalid grant_type");
    }
    if field("js_code").is_empty() {
        return wechat_error(41008, "missing code");
    }
    let redeemed = match sim.redeem_code(field("appid"), field("js_code")) {
        Err((40163, _)) if platform == Platform::Qq => Err((40029, "invalid code")),
        other => other,
    };
    match redeemed {
        Ok(user) => {
            let mut body = json!({ "session_key": user.session_key, "openid": user.openid });
            if let Some(u) = user.unionid {
                body["unionid"] = json!(u);
            }
            wechat_reply(body)
        }
        Err((code, msg)) => wechat_error(code, msg),
    }
}

#[derive(Deserialize)]
struct CodeRequest {
    platform: Option<String>,
    appid: Option<String>,
    user: String,
    /// Douyin: the device the `anonymous_code` is for (the user's, unless named).
    device: Option<String>,
    /// Douyin: `false` plays a device not signed in to Douyin (an `anonymous_code` only).
    signed_in: Option<bool>,
}

/// `POST /_sim/codes`: what the platform's `login()` gives the client. On Douyin it also gives
/// an `anonymous_code` for the device, as `tt.login()` does, and only that when
/// `"signed_in": false`.
async fn issue_code(State(sim): State<Arc<SimState>>, body: Option<Json<CodeRequest>>) -> Response {
    let Some(Json(req)) = body else {
        return bad_request(
            "send JSON {\"platform\"?: \"...\", \"appid\"?: \"...\", \"user\": \"...\"}",
        );
    };
    let platform = match req.platform.as_deref().map(|p| (p, Platform::parse(p))) {
        None => None,
        Some((_, Some(p))) => Some(p),
        Some((p, None)) => {
            return bad_request(&format!(
                "unknown platform {p:?}: one of {}",
                Platform::NAMES
            ))
        }
    };
    let app = match sim.resolve_app(platform, req.appid.as_deref()) {
        Ok(app) => app,
        Err(why) => return bad_request(&why),
    };
    let signed_in = req.signed_in.unwrap_or(true);
    let douyin = app.platform == Platform::Douyin;
    if !signed_in && !douyin {
        return bad_request("only Douyin logs in a user who is not signed in (signed_in: false)");
    }
    let mut reply = json!({
        "platform": app.platform.as_str(),
        "appid": app.appid,
        "expires_in": state::CODE_TTL_MS / 1000,
    });
    if signed_in {
        match sim.issue_code(Some(app.platform), Some(&app.appid), &req.user) {
            Ok(issued) => {
                reply["code"] = json!(issued.code);
                reply["openid"] = json!(issued.openid);
                reply["unionid"] = json!(issued.unionid);
                reply["session_key"] = json!(issued.session_key);
            }
            Err(why) => return bad_request(&why),
        }
    }
    if douyin {
        let device = req.device.as_deref().unwrap_or(&req.user);
        match sim.issue_anonymous_code(&app.appid, device) {
            Ok((code, openid)) => {
                reply["anonymous_code"] = json!(code);
                reply["anonymous_openid"] = json!(openid);
            }
            Err(why) => return bad_request(&why),
        }
    }
    Json(reply).into_response()
}

async fn calls(State(sim): State<Arc<SimState>>) -> Response {
    Json(sim.calls()).into_response()
}

async fn reset_calls(State(sim): State<Arc<SimState>>) -> Response {
    sim.reset_calls();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct OpenPlatformBody {
    appid: Option<String>,
    bound: bool,
}

/// `POST /_sim/open_platform {"appid"?, "bound"}`: an app bound to the Open Platform account
/// hands out unionids (the default); an unbound one does not, as WeChat does.
async fn open_platform(
    State(sim): State<Arc<SimState>>,
    Json(body): Json<OpenPlatformBody>,
) -> Response {
    let appid = match sim.resolve_app(None, body.appid.as_deref()) {
        Ok(app) => app.appid.clone(),
        Err(why) => return bad_request(&why),
    };
    sim.set_bound(&appid, body.bound);
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sim/apps`: the simulated apps, `[{"platform", "appid"}]` (no secret: the dev console
/// lists them to pick one).
async fn list_apps(State(sim): State<Arc<SimState>>) -> Json<Value> {
    Json(json!(sim
        .app_list()
        .into_iter()
        .map(|(platform, appid)| json!({ "platform": platform.as_str(), "appid": appid }))
        .collect::<Vec<_>>()))
}

#[derive(Deserialize)]
struct AppBody {
    platform: Option<String>,
    appid: String,
    secret: String,
    /// The platform's side of the app's phone key: an Alipay app's AES key (base64 of 16
    /// bytes), a Douyin app's RSA public (or private) key.
    phone_key: Option<String>,
}

/// `POST /_sim/apps {"platform"?, "appid", "secret", "phone_key"?}`: a new app the simulated platform knows
/// (as registering one on its console), or an existing one's secret reset (the old secret is
/// refused from then on).
async fn upsert_app(State(sim): State<Arc<SimState>>, body: Option<Json<AppBody>>) -> Response {
    let Some(Json(body)) = body else {
        return bad_request("send JSON {\"platform\"?, \"appid\", \"secret\"}");
    };
    let platform = match body.platform.as_deref() {
        None => Platform::Weixin,
        Some(p) => match Platform::parse(p) {
            Some(p) => p,
            None => return bad_request(&format!("unknown platform {p:?}")),
        },
    };
    if body.appid.is_empty() || body.secret.is_empty() {
        return bad_request("appid and secret must not be empty");
    }
    if let Some(key) = &body.phone_key {
        if let Err(why) = sim.set_phone_key(platform, &body.appid, key) {
            return bad_request(&why);
        }
    }
    sim.upsert_app(SimApp {
        platform,
        appid: body.appid,
        secret: body.secret,
    });
    StatusCode::NO_CONTENT.into_response()
}

fn bad_request(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))).into_response()
}
