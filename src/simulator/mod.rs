//! A faithful stand-in for WeChat's server API (SPEC §5), used by `serve --dev`, by our tests and
//! by users' own integration tests.
//!
//! WeChat-compatible routes answer with WeChat's JSON shapes and errcodes, as HTTP 200 with
//! `errcode`, and `jscode2session` labels its JSON `text/plain` as WeChat does. Control routes
//! under `/_sim/` play the client side (`wx.login()`), inject faults and count calls.
//! Depends on the clock, axum, and — openly — the open-data cryptography in `wechat::crypto`:
//! it must encrypt what the client decrypts, and that module is pinned to WeChat's published
//! samples by known-answer tests, so a mistake there cannot hide behind the simulator agreeing
//! with it. It shares nothing else with the client it stands in for (not the reply types, not
//! the errcode table), so a mistake in one of those is not mirrored in the other.

mod faults;
mod open_api;
mod state;

pub use state::{SimApp, SimState};

use crate::domain::Platform;
use axum::extract::{Query, State};
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
}

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
    match sim.issue_code(platform, req.appid.as_deref(), &req.user) {
        Ok(issued) => Json(json!({
            "code": issued.code,
            "platform": issued.platform.as_str(),
            "appid": issued.appid,
            "openid": issued.openid,
            "unionid": issued.unionid,
            "session_key": issued.session_key,
            "expires_in": state::CODE_TTL_MS / 1000,
        }))
        .into_response(),
        Err(why) => bad_request(&why),
    }
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

fn bad_request(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))).into_response()
}
