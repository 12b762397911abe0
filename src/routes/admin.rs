//! `/admin/…`: find users, list and revoke sessions, counts. Mounted only when
//! `WXLOGIN_ADMIN_TOKEN` is set; every request needs `Authorization: Bearer <admin token>`,
//! compared in constant time.

use super::extract::{token_text, ApiPath, ApiQuery};
use super::session::user_json;
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::error::{ok, ApiError};
use crate::store::UserFilter;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub(super) fn router(admin_token: SecretString) -> Router<AppState> {
    let token = Arc::new(admin_token);
    Router::new()
        .route("/admin/users", get(find_users))
        .route(
            "/admin/users/{id}/sessions",
            get(list_sessions).delete(revoke_user),
        )
        .route("/admin/sessions/{id}", delete(revoke_session))
        .route("/admin/stats", get(stats))
        .route_layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let token = token.clone();
                async move { require_admin(&token, req, next).await }
            },
        ))
}

async fn require_admin(expected: &SecretString, req: Request, next: Next) -> Response {
    let given = token_text(req.headers()).unwrap_or("");
    let ok: bool = given
        .as_bytes()
        .ct_eq(expected.expose_secret().as_bytes())
        .into();
    if ok {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// `GET /admin/users?id=&openid=&unionid=&phone=` (at least one).
#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("admin_token" = [])), params(UserFilter),
    responses((status = 404, description = "not_found: the admin API is off (no WXLOGIN_ADMIN_TOKEN), or no such session", body = crate::routes::docs::ErrorBody), (status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::AdminUsers>), (status = 400, description = "bad_request (or the route's own 400s)", body = crate::routes::docs::ErrorBody),
        (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn find_users(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<UserFilter>,
) -> Result<Response, ApiError> {
    if filter.is_empty() {
        return Err(ApiError::BadRequest(
            "give at least one of id, openid, unionid, phone".into(),
        ));
    }
    let users = state.store.find_users(&filter).await?;
    Ok(ok(
        json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() }),
    ))
}

#[utoipa::path(get, path = "/admin/users/{id}/sessions", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "user id")),
    responses((status = 404, description = "not_found: the admin API is off (no WXLOGIN_ADMIN_TOKEN), or no such session", body = crate::routes::docs::ErrorBody), (status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::AdminSessions>), (status = 400, description = "bad_request (or the route's own 400s)", body = crate::routes::docs::ErrorBody),
        (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn list_sessions(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let sessions = state.store.list_sessions(id).await?;
    let shown: Vec<_> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "appid": s.appid,
                "created_at": rfc3339(s.created_at),
                "last_seen_at": rfc3339(s.last_seen_at),
                "expires_at": rfc3339(s.expires_at),
            })
        })
        .collect();
    Ok(ok(json!({ "sessions": shown })))
}

/// Revokes every session of a user, on every instance, before answering.
#[utoipa::path(delete, path = "/admin/users/{id}/sessions", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "user id")),
    responses((status = 404, description = "not_found: the admin API is off (no WXLOGIN_ADMIN_TOKEN), or no such session", body = crate::routes::docs::ErrorBody), (status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::Revoked>), (status = 400, description = "bad_request (or the route's own 400s)", body = crate::routes::docs::ErrorBody),
        (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn revoke_user(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let hashes = state.store.revoke_user_sessions(id).await?;
    for h in &hashes {
        state.sessions.forget(h).await;
    }
    tracing::info!(
        user_id = id,
        revoked = hashes.len(),
        "admin revoked a user's sessions"
    );
    Ok(ok(json!({ "revoked": hashes.len() })))
}

#[utoipa::path(delete, path = "/admin/sessions/{id}", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "session id")),
    responses((status = 404, description = "not_found: the admin API is off (no WXLOGIN_ADMIN_TOKEN), or no such session", body = crate::routes::docs::ErrorBody), (status = 200, body = crate::routes::docs::Envelope<crate::routes::docs::Revoked>), (status = 400, description = "bad_request (or the route's own 400s)", body = crate::routes::docs::ErrorBody),
        (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn revoke_session(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let hash = state
        .store
        .revoke_session_by_id(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.sessions.forget(&hash).await;
    tracing::info!(session_id = id, "admin revoked a session");
    Ok(ok(json!({ "revoked": 1 })))
}

#[utoipa::path(get, path = "/admin/stats", tag = "admin", security(("admin_token" = [])),
    responses((status = 404, description = "not_found: the admin API is off (no WXLOGIN_ADMIN_TOKEN), or no such session", body = crate::routes::docs::ErrorBody), (status = 200, body = crate::routes::docs::Envelope<crate::store::Stats>), (status = 401, description = "unauthorized", body = crate::routes::docs::ErrorBody),
        (status = 503, description = "store_unavailable / wechat_unavailable", body = crate::routes::docs::ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub(super) async fn stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(ok(state.store.stats(state.clock.now_ms()).await?))
}
