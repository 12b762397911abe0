//! `/admin/…`: find users, list and revoke sessions, counts. Mounted only when
//! `WXLOGIN_ADMIN_TOKEN` is set; every request needs `Authorization: Bearer <admin token>`,
//! compared in constant time.

use super::extract::{token_text, ApiPath, ApiQuery};
use super::reply::{ok, Envelope, Reply};
use super::session::MeData;
use crate::clock::rfc3339;
use crate::error::{responses, ApiError, ErrorBody};
use crate::state::AppState;
use crate::store::{SessionSummary, Stats, UserFilter};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router(admin_token: SecretString) -> OpenApiRouter<AppState> {
    let token = Arc::new(admin_token);
    OpenApiRouter::new()
        .routes(routes!(find_users))
        .routes(routes!(list_sessions, revoke_user))
        .routes(routes!(revoke_session))
        .routes(routes!(stats))
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

/// 404 on the admin routes: the admin API is off, or the session does not exist.
/// Documentation only, like `error::responses`.
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
#[response(
    status = 404,
    description = "not_found: the admin API is off (no WXLOGIN_ADMIN_TOKEN), or no such session"
)]
struct AdminNotFound(#[to_schema] ErrorBody);

#[derive(Serialize, ToSchema)]
pub(super) struct AdminUsers {
    users: Vec<MeData>,
}

/// `GET /admin/users?id=&openid=&unionid=&phone=` (at least one).
#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("admin_token" = [])), params(UserFilter),
    responses((status = 200, body = Envelope<AdminUsers>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn find_users(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<UserFilter>,
) -> Reply<AdminUsers> {
    let users = state.users.find(&filter).await?;
    Ok(ok(AdminUsers {
        users: users.into_iter().map(MeData::from).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub(super) struct AdminSession {
    id: i64,
    appid: String,
    /// RFC 3339.
    created_at: String,
    last_seen_at: String,
    expires_at: String,
}

impl From<SessionSummary> for AdminSession {
    fn from(s: SessionSummary) -> Self {
        Self {
            id: s.id,
            appid: s.appid,
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            expires_at: rfc3339(s.expires_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct AdminSessions {
    sessions: Vec<AdminSession>,
}

#[utoipa::path(get, path = "/admin/users/{id}/sessions", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "user id")),
    responses((status = 200, body = Envelope<AdminSessions>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn list_sessions(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<AdminSessions> {
    let sessions = state.sessions.list(id).await?;
    Ok(ok(AdminSessions {
        sessions: sessions.into_iter().map(AdminSession::from).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub(super) struct Revoked {
    revoked: u64,
}

/// Revokes every session of a user, on every instance, before answering.
#[utoipa::path(delete, path = "/admin/users/{id}/sessions", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "user id")),
    responses((status = 200, body = Envelope<Revoked>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn revoke_user(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<Revoked> {
    let revoked = state.sessions.revoke_user(id).await?;
    Ok(ok(Revoked {
        revoked: revoked as u64,
    }))
}

#[utoipa::path(delete, path = "/admin/sessions/{id}", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "session id")),
    responses((status = 200, body = Envelope<Revoked>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn revoke_session(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<Revoked> {
    if !state.sessions.revoke_by_id(id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(ok(Revoked { revoked: 1 }))
}

#[utoipa::path(get, path = "/admin/stats", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = Envelope<Stats>), responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn stats(State(state): State<AppState>) -> Reply<Stats> {
    Ok(ok(state.maintenance.stats().await?))
}
