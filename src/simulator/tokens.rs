//! The app tokens of QQ (`api.q.qq.com/api/getToken`: each fetch replaces the last, as WeChat's
//! old `/cgi-bin/token`), Kuaishou (`open.kuaishou.com/oauth2/access_token`, client
//! credentials) and Baidu (`openapi.baidu.com/oauth/2.0/token`, client credentials, scope
//! `smartapp_snsapi_base`, a month), each in its platform's shape and error codes.

use super::state::SimState;
use crate::domain::Platform;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub(super) const QQ: &str = "/qq/api/getToken";
pub(super) const KUAISHOU: &str = "/kuaishou/oauth2/access_token";
pub(super) const BAIDU: &str = "/baidu-open/oauth/2.0/token";

fn field<'a>(f: &'a HashMap<String, String>, k: &str) -> &'a str {
    f.get(k).map(String::as_str).unwrap_or("")
}

/// `GET /api/getToken?grant_type=client_credential&appid&secret`.
pub(super) async fn qq(
    State(sim): State<Arc<SimState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(reply) = sim.enter(QQ).await {
        return reply;
    }
    let error =
        |code: i64, msg: &str| Json(json!({ "errcode": code, "errmsg": msg })).into_response();
    match sim.check_credentials(Platform::Qq, field(&q, "appid"), field(&q, "secret")) {
        Err((40013, _)) => return error(40013, "invalid appid"),
        Err(_) => return error(40001, "invalid appsecret"),
        Ok(()) => {}
    }
    if field(&q, "grant_type") != "client_credential" {
        return error(40002, "invalid grant_type");
    }
    let (token, expires_in) = sim.stable_token(field(&q, "appid"), true);
    Json(json!({ "access_token": token, "expires_in": expires_in })).into_response()
}

/// `POST /oauth2/access_token` form `app_id, app_secret, grant_type=client_credentials`.
pub(super) async fn kuaishou(
    State(sim): State<Arc<SimState>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(reply) = sim.enter(KUAISHOU).await {
        return reply;
    }
    let error = |result: i64, error: &str| {
        Json(json!({ "result": result, "error": error, "error_msg": error })).into_response()
    };
    if field(&f, "grant_type") != "client_credentials" || field(&f, "app_id").is_empty() {
        return error(100200100, "invalid_request");
    }
    if sim
        .check_credentials(
            Platform::Kuaishou,
            field(&f, "app_id"),
            field(&f, "app_secret"),
        )
        .is_err()
    {
        return error(100200101, "invalid_client");
    }
    let (token, expires_in) = sim.stable_token(field(&f, "app_id"), false);
    Json(json!({
        "result": 1,
        "access_token": token,
        "expires_in": expires_in,
        "token_type": "bearer",
    }))
    .into_response()
}

/// `POST /oauth/2.0/token` form `grant_type=client_credentials, client_id, client_secret,
/// scope=smartapp_snsapi_base`; errors as OAuth's, HTTP 401 for a client it does not know.
pub(super) async fn baidu(
    State(sim): State<Arc<SimState>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(reply) = sim.enter(BAIDU).await {
        return reply;
    }
    let error = |status: StatusCode, error: &str, description: &str| {
        (
            status,
            Json(json!({ "error": error, "error_description": description })),
        )
            .into_response()
    };
    if field(&f, "grant_type") != "client_credentials" {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type",
        );
    }
    if field(&f, "scope") != "smartapp_snsapi_base" {
        return error(StatusCode::BAD_REQUEST, "invalid_scope", "scope");
    }
    match sim.check_credentials(
        Platform::Baidu,
        field(&f, "client_id"),
        field(&f, "client_secret"),
    ) {
        Err((40013, _)) => error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client id",
        ),
        Err(_) => error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        ),
        Ok(()) => {
            let (token, expires_in) = sim.stable_token(field(&f, "client_id"), false);
            Json(json!({
                "access_token": token,
                "expires_in": expires_in,
                "scope": "smartapp_snsapi_base",
            }))
            .into_response()
        }
    }
}
