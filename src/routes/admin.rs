//! `/admin/…`: find users, list and revoke sessions, ban, unban, merge and delete users, read
//! the event log, counts, the webhook outbox and the dashboard's last hour, the app registry;
//! and the console's
//! page at `/admin/`. Mounted only when `WXLOGIN_ADMIN_TOKEN` is set; every API request needs
//! `Authorization: Bearer <admin token>`, compared in constant time with each configured token.
//! The token's label rides on the request ([`AdminActor`]) into the events its changes write.

use super::extract::{token_text, AdminActor, ApiBody, ApiPath, ApiQuery, Client};
use super::me::{avatar_url, EventView, IdentityView};
use super::reply::{ok, Empty, Envelope, Reply};
use crate::clock::rfc3339;
use crate::domain::AdminTokens;
use crate::domain::EventType;
use crate::error::{responses, ApiError, ErrorBody};
use crate::services::apps::AppView;
use crate::services::registry::{NewApp, PhoneKey};
use crate::state::AppState;
use crate::store::OutboxState;
use crate::store::{EventFilter, SessionSummary, Stats, UserFilter, UserRecord};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Bodies of `POST /admin/apps` and `PUT /admin/apps/{appid}`: up to three keys of 8192
/// characters each, which the general 64 KiB limit could refuse written as JSON escapes.
const APP_BODY_LIMIT: usize = 256 * 1024;

pub(super) fn router(tokens: AdminTokens) -> OpenApiRouter<AppState> {
    let tokens = Arc::new(tokens);
    let apps = OpenApiRouter::new()
        .routes(routes!(list_apps, add_app))
        .routes(routes!(rotate_app, remove_app))
        .layer(axum::extract::DefaultBodyLimit::max(APP_BODY_LIMIT));
    let api = OpenApiRouter::new()
        .routes(routes!(find_users))
        .routes(routes!(get_user, delete_user))
        .routes(routes!(list_sessions, revoke_user))
        .routes(routes!(revoke_session))
        .routes(routes!(ban))
        .routes(routes!(unban))
        .routes(routes!(merge))
        .routes(routes!(user_events))
        .routes(routes!(events))
        .routes(routes!(stats))
        .routes(routes!(whoami))
        .routes(routes!(webhooks))
        .routes(routes!(redrive))
        .routes(routes!(dashboard))
        .merge(apps)
        .routes(routes!(app_access_token))
        .route_layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let tokens = tokens.clone();
                async move { require_admin(&tokens, req, next).await }
            },
        ));
    // The console's files carry no data and need no token: the page asks for it.
    api.merge(super::console::router())
}

async fn require_admin(tokens: &AdminTokens, mut req: Request, next: Next) -> Response {
    let given = token_text(req.headers()).unwrap_or("");
    match tokens.label_of(given) {
        Some(label) => {
            let actor = AdminActor(label.to_owned());
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
        None => ApiError::Unauthorized.into_response(),
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

/// A user as operators see it. A deleted user is a tombstone: `id`, `status`, `deleted_at`
/// (and the times), nothing else.
#[derive(Serialize, ToSchema)]
pub(super) struct AdminUser {
    id: i64,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_country_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ban_reason: Option<String>,
    /// RFC 3339.
    created_at: String,
    last_login_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_at: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    identities: Vec<IdentityView>,
}

impl AdminUser {
    fn new(state: &AppState, u: UserRecord) -> Self {
        Self {
            id: u.id,
            status: u.status.as_str(),
            nickname: u.nickname,
            avatar_url: avatar_url(state, u.avatar),
            phone: u.phone,
            phone_country_code: u.phone_country_code,
            ban_reason: u.ban_reason,
            created_at: rfc3339(u.created_at),
            last_login_at: rfc3339(u.last_login_at),
            deleted_at: u.deleted_at.map(rfc3339),
            identities: u.identities.into_iter().map(IdentityView::from).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct AdminUsers {
    users: Vec<AdminUser>,
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
        users: users
            .into_iter()
            .map(|u| AdminUser::new(&state, u))
            .collect(),
    }))
}

/// One user, a tombstone included.
#[utoipa::path(get, path = "/admin/users/{id}", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "user id")),
    responses((status = 200, body = Envelope<AdminUser>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn get_user(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<AdminUser> {
    let user = state.users.get(id).await?;
    Ok(ok(AdminUser::new(&state, user)))
}

/// Deletes a user as `DELETE /me` does (for a request that reached the operator another way).
#[utoipa::path(delete, path = "/admin/users/{id}", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "user id")),
    responses((status = 200, body = Envelope<Empty>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn delete_user(
    State(state): State<AppState>,
    Client(client): Client,
    ApiPath(id): ApiPath<i64>,
) -> Reply<Empty> {
    state.users.delete(id, &client).await?;
    Ok(ok(Empty {}))
}

#[derive(serde::Deserialize, ToSchema)]
pub(super) struct BanBody {
    /// Shown to operators, never to the user.
    #[schema(value_type = String, required = false, max_length = 500)]
    reason: Option<String>,
}

/// Bans a user: every session revoked on every instance before the reply; later logins get
/// 403 `banned`.
#[utoipa::path(post, path = "/admin/users/{id}/ban", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "user id")),
    request_body = BanBody,
    responses((status = 200, body = Envelope<Empty>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn ban(
    State(state): State<AppState>,
    Client(client): Client,
    ApiPath(id): ApiPath<i64>,
    ApiBody(body): ApiBody<BanBody>,
) -> Reply<Empty> {
    let reason = body.reason.unwrap_or_default();
    if reason.chars().count() > 500 {
        return Err(ApiError::BadRequest(
            "`reason` is over 500 characters".into(),
        ));
    }
    state.users.ban(id, reason.trim(), &client).await?;
    Ok(ok(Empty {}))
}

#[utoipa::path(post, path = "/admin/users/{id}/unban", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "user id")),
    responses((status = 200, body = Envelope<Empty>), responses::BadRequest, responses::Unauthorized,
        (status = 404, description = "not_found: no such banned user", body = ErrorBody), responses::Unavailable))]
pub(super) async fn unban(
    State(state): State<AppState>,
    Client(client): Client,
    ApiPath(id): ApiPath<i64>,
) -> Reply<Empty> {
    state.users.unban(id, &client).await?;
    Ok(ok(Empty {}))
}

#[derive(serde::Deserialize, ToSchema)]
pub(super) struct MergeBody {
    /// The user merged into this one (and deleted).
    #[schema(value_type = i64)]
    from: Option<i64>,
}

/// Moves the other user's identities, sessions and phone (if this one has none) to this user
/// and deletes the other, in one transaction.
#[utoipa::path(post, path = "/admin/users/{id}/merge", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "the user that stays")),
    request_body = MergeBody,
    responses((status = 200, body = Envelope<AdminUser>), responses::BadRequest, responses::Unauthorized,
        (status = 404, description = "not_found: either user is missing or deleted, or they are the same", body = ErrorBody), responses::Unavailable))]
pub(super) async fn merge(
    State(state): State<AppState>,
    Client(client): Client,
    ApiPath(id): ApiPath<i64>,
    ApiBody(body): ApiBody<MergeBody>,
) -> Reply<AdminUser> {
    let from = body
        .from
        .ok_or_else(|| ApiError::BadRequest("`from` (a user id) is required".into()))?;
    state.users.merge(id, from, &client).await?;
    let user = state.users.get(id).await?;
    Ok(ok(AdminUser::new(&state, user)))
}

#[derive(Serialize, ToSchema)]
pub(super) struct EventsData {
    events: Vec<EventView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    next_before: Option<i64>,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventQuery {
    /// An event type (empty: any).
    #[serde(rename = "type")]
    #[param(
        rename = "type",
        pattern = "^(login|login_failed|logout|session_revoked|phone_bound|profile_updated|user_created|user_banned|user_unbanned|user_merged|user_deleted)?$"
    )]
    kind: Option<String>,
    /// RFC 3339 in UTC (`2026-11-30T08:00:00Z`): only events at or after this time (empty: any).
    #[param(
        pattern = "^([0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z?)?$"
    )]
    since: Option<String>,
    /// Only events older than this id (paging).
    before: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

impl EventQuery {
    fn filter(self, user_id: Option<i64>) -> Result<EventFilter, ApiError> {
        let kind = match self.kind.as_deref() {
            None | Some("") => None,
            Some(k) => Some(
                EventType::parse(k)
                    .ok_or_else(|| ApiError::BadRequest(format!("unknown event type {k:?}")))?,
            ),
        };
        let since = match self.since.as_deref() {
            None | Some("") => None,
            Some(t) => {
                let at = humantime::parse_rfc3339_weak(t)
                    .map_err(|_| ApiError::BadRequest("`since` must be an RFC 3339 time".into()))?;
                let ms = at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                Some(ms)
            }
        };
        Ok(EventFilter {
            user_id,
            kind,
            since,
            before: self.before,
            limit: match self.limit {
                None => 100,
                Some(n @ 1..=1000) => n,
                Some(_) => return Err(ApiError::BadRequest("`limit` must be 1 to 1000".into())),
            },
        })
    }
}

fn page(events: Vec<crate::store::EventRecord>, limit: u32) -> EventsData {
    let next_before = (events.len() as u32 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    EventsData {
        events: events.into_iter().map(EventView::from).collect(),
        next_before,
    }
}

#[utoipa::path(get, path = "/admin/users/{id}/events", tag = "admin", security(("admin_token" = [])),
    params(("id" = i64, Path, description = "user id"), EventQuery),
    responses((status = 200, body = Envelope<EventsData>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn user_events(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Reply<EventsData> {
    let filter = query.filter(Some(id))?;
    let events = state.users.events(&filter).await?;
    Ok(ok(page(events, filter.limit)))
}

/// The event log, newest first: `?type=&since=&before=&limit=`.
#[utoipa::path(get, path = "/admin/events", tag = "admin", security(("admin_token" = [])), params(EventQuery),
    responses((status = 200, body = Envelope<EventsData>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Reply<EventsData> {
    let filter = query.filter(None)?;
    let events = state.users.events(&filter).await?;
    Ok(ok(page(events, filter.limit)))
}

#[derive(Serialize, ToSchema)]
pub(super) struct AdminSessions {
    sessions: Vec<super::me::SessionView>,
}

#[utoipa::path(get, path = "/admin/users/{id}/sessions", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "user id")),
    responses((status = 200, body = Envelope<AdminSessions>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn list_sessions(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<AdminSessions> {
    let sessions = state.sessions.list(id).await?;
    Ok(ok(AdminSessions {
        sessions: sessions
            .into_iter()
            .map(|s: SessionSummary| super::me::SessionView::new(s, None))
            .collect(),
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
    Client(client): Client,
    ApiPath(id): ApiPath<i64>,
) -> Reply<Revoked> {
    let revoked = state.sessions.revoke_user(id, &client).await?;
    Ok(ok(Revoked {
        revoked: revoked as u64,
    }))
}

#[utoipa::path(delete, path = "/admin/sessions/{id}", tag = "admin", security(("admin_token" = [])), params(("id" = i64, Path, description = "session id")),
    responses((status = 200, body = Envelope<Revoked>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn revoke_session(
    State(state): State<AppState>,
    Client(client): Client,
    ApiPath(id): ApiPath<i64>,
) -> Reply<Revoked> {
    if !state.sessions.revoke_by_id(id, None, &client).await? {
        return Err(ApiError::NotFound);
    }
    Ok(ok(Revoked { revoked: 1 }))
}

#[utoipa::path(get, path = "/admin/stats", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = Envelope<Stats>), responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn stats(State(state): State<AppState>) -> Reply<Stats> {
    Ok(ok(state.maintenance.stats().await?))
}

#[derive(Serialize, ToSchema)]
pub(super) struct WhoAmI {
    /// The label of the admin token used (`label:token` in WXLOGIN_ADMIN_TOKEN; `admin` for a
    /// token without one).
    label: String,
}

/// Which admin token this is: the console shows it after sign-in.
#[utoipa::path(get, path = "/admin/whoami", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = Envelope<WhoAmI>), responses::Unauthorized, AdminNotFound))]
pub(super) async fn whoami(axum::Extension(actor): axum::Extension<AdminActor>) -> Reply<WhoAmI> {
    Ok(ok(WhoAmI { label: actor.0 }))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct OutboxQuery {
    /// `pending` (waiting or being sent) or `dead` (out of retries); empty: both.
    #[param(pattern = "^(pending|dead)?$")]
    state: Option<String>,
    /// Rows, 1 to 1000 (default 100), newest first.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct WebhookRow {
    /// The outbox row (what `redrive` takes).
    id: i64,
    /// The event it reports: the `id` the receiver sees.
    event_id: i64,
    #[serde(rename = "type")]
    kind: String,
    user_id: i64,
    /// `pending` or `dead`.
    state: &'static str,
    attempts: u32,
    /// RFC 3339.
    created_at: String,
    /// When it is next tried (a row being sent: when its lease ends).
    next_at: String,
    /// The last failed attempt: `HTTP 500`, `timed out`, `could not connect`.
    last_error: Option<String>,
    dead_at: Option<String>,
    /// What is sent.
    #[schema(value_type = Object)]
    body: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub(super) struct WebhooksData {
    /// `WXLOGIN_WEBHOOK_URL` is set.
    enabled: bool,
    /// Where webhooks go, credentials redacted.
    url: Option<String>,
    pending: i64,
    dead: i64,
    /// RFC 3339: the oldest pending row's creation.
    oldest_pending_at: Option<String>,
    deliveries: Vec<WebhookRow>,
}

/// The webhook outbox: counts and the newest rows.
#[utoipa::path(get, path = "/admin/webhooks", tag = "admin", security(("admin_token" = [])), params(OutboxQuery),
    responses((status = 200, body = Envelope<WebhooksData>), responses::BadRequest, responses::Unauthorized, AdminNotFound, responses::Unavailable))]
pub(super) async fn webhooks(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<OutboxQuery>,
) -> Reply<WebhooksData> {
    let wanted = match query.state.as_deref() {
        None | Some("") => None,
        Some("pending") => Some(OutboxState::Pending),
        Some("dead") => Some(OutboxState::Dead),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`state` must be pending or dead".into(),
            ))
        }
    };
    let limit = match query.limit {
        None => 100,
        Some(n @ 1..=1000) => n,
        Some(_) => return Err(ApiError::BadRequest("`limit` must be 1 to 1000".into())),
    };
    let view = state.webhooks.list(wanted, limit).await?;
    Ok(ok(WebhooksData {
        enabled: view.url.is_some(),
        url: view.url,
        pending: view.stats.pending,
        dead: view.stats.dead,
        oldest_pending_at: view.stats.oldest_pending_at.map(rfc3339),
        deliveries: view
            .rows
            .into_iter()
            .map(|r| WebhookRow {
                id: r.id,
                event_id: r.event_id,
                kind: r.kind,
                user_id: r.user_id,
                state: if r.dead_at.is_some() {
                    OutboxState::Dead.as_str()
                } else {
                    OutboxState::Pending.as_str()
                },
                attempts: r.attempts,
                created_at: rfc3339(r.created_at),
                next_at: rfc3339(r.next_at),
                last_error: r.last_error,
                dead_at: r.dead_at.map(rfc3339),
                body: serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
    }))
}

/// Puts a dead webhook back in line, with a fresh retry period.
#[utoipa::path(post, path = "/admin/webhooks/{id}/redrive", tag = "admin", security(("admin_token" = [])),
    params(("id" = i64, Path, description = "outbox row id")),
    responses((status = 200, body = Envelope<Empty>), responses::BadRequest, responses::Unauthorized,
        (status = 404, description = "not_found: no dead webhook with this id (or the admin API is off)", body = ErrorBody), responses::Unavailable))]
pub(super) async fn redrive(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<Empty> {
    state.webhooks.redrive(id).await?;
    Ok(ok(Empty {}))
}

#[derive(Serialize, ToSchema)]
pub(super) struct DashboardMinute {
    /// RFC 3339, the minute's start.
    minute: String,
    logins: u64,
    /// Failed logins by error code.
    login_errors: BTreeMap<String, u64>,
    wechat_calls: u64,
    /// WeChat call latency estimated from buckets; absent for a minute without calls.
    wechat_p50_ms: Option<f64>,
    wechat_p99_ms: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Dashboard {
    /// Always `instance`: the figures are this instance's own (a cluster's are in /metrics).
    scope: &'static str,
    /// The last 60 minutes, oldest first.
    minutes: Vec<DashboardMinute>,
}

/// The last hour of this instance, minute by minute: logins, login errors by code, WeChat
/// latency. Kept in memory, so it starts empty after a restart.
#[utoipa::path(get, path = "/admin/dashboard", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = Envelope<Dashboard>), responses::Unauthorized, AdminNotFound))]
pub(super) async fn dashboard() -> Reply<Dashboard> {
    let minutes = crate::recent::global()
        .last_hour()
        .into_iter()
        .map(|m| DashboardMinute {
            minute: rfc3339(m.minute * 60_000),
            logins: m.logins,
            login_errors: m.login_errors,
            wechat_calls: m.wechat_calls,
            wechat_p50_ms: m.wechat_p50_ms,
            wechat_p99_ms: m.wechat_p99_ms,
        })
        .collect();
    Ok(ok(Dashboard {
        scope: "instance",
        minutes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::IntoParams;

    #[test]
    fn the_documented_event_type_pattern_names_every_event_type() {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        let expected = format!("^({})?$", names.join("|"));
        let params = serde_json::to_value(EventQuery::into_params(|| None)).unwrap();
        let kind = params
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "type")
            .unwrap();
        assert_eq!(kind["in"], "query");
        assert_eq!(kind["schema"]["pattern"], expected.as_str());
    }
}

/// A served app: never its secret.
#[derive(Serialize, ToSchema)]
pub(super) struct AppItem {
    /// `weixin`, `qq`, `douyin`, `baidu`, `kuaishou` or `alipay`.
    platform: &'static str,
    appid: String,
    /// `config` (the config file's: change it there) or `registry` (added through this API).
    source: &'static str,
    /// RFC 3339; registry apps only.
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    /// When the secret was last set; registry apps only.
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<String>,
}

impl From<AppView> for AppItem {
    fn from(a: AppView) -> Self {
        Self {
            platform: a.platform.as_str(),
            appid: a.appid.as_str().to_owned(),
            source: a.source.as_str(),
            created_at: a.created_at.map(rfc3339),
            updated_at: a.updated_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct AppsData {
    apps: Vec<AppItem>,
}

/// The apps this instance serves: the config file's, then the registry's.
#[utoipa::path(get, path = "/admin/apps", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = Envelope<AppsData>), responses::Unauthorized, AdminNotFound))]
pub(super) async fn list_apps(State(state): State<AppState>) -> Reply<AppsData> {
    Ok(ok(AppsData {
        apps: state.apps.list().into_iter().map(AppItem::from).collect(),
    }))
}

#[derive(serde::Deserialize, ToSchema)]
pub(super) struct NewAppBody {
    /// `weixin`, `qq`, `douyin`, `baidu`, `kuaishou` or `alipay`.
    #[schema(value_type = String, pattern = "^(weixin|qq|douyin|baidu|kuaishou|alipay)$")]
    platform: Option<String>,
    /// 1-64 ASCII letters, digits, `_` or `-`; not one the config file or the registry has.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    appid: Option<String>,
    /// The AppSecret (Baidu: the App Secret; Kuaishou: app_secret), 1-256 printable ASCII
    /// characters; on Alipay, the app's RSA private key (PEM or base64, PKCS#8 or PKCS#1).
    /// Stored sealed, never returned.
    #[schema(value_type = String, min_length = 1, max_length = 8192)]
    secret: Option<SecretString>,
    /// Alipay apps only (and required there): Alipay's public key, PEM or base64.
    #[schema(value_type = Option<String>, required = false, max_length = 8192)]
    alipay_public_key: Option<String>,
    /// Alipay apps only (optional): the content-encryption key from Alipay's console
    /// (接口内容加密方式, base64 of 16 bytes), which opens `my.getPhoneNumber`'s numbers
    /// (`POST /phone`). Stored sealed, never returned.
    #[schema(value_type = Option<String>, required = false, max_length = 64)]
    alipay_aes_key: Option<SecretString>,
    /// Douyin apps only (optional): the app's RSA private key (PEM or base64, PKCS#8 or
    /// PKCS#1) whose public half is on Douyin's console; it opens phone numbers (`POST
    /// /phone`). Stored sealed, never returned.
    #[schema(value_type = Option<String>, required = false, max_length = 8192)]
    douyin_private_key: Option<SecretString>,
}

/// Adds an app: served by this instance on return, by every instance within 2 s.
#[utoipa::path(post, path = "/admin/apps", tag = "admin", security(("admin_token" = [])),
    request_body = NewAppBody,
    responses((status = 200, body = Envelope<AppItem>),
        (status = 400, description = "bad_request: an unknown platform, a malformed appid or secret, an appid the config file or the registry has already", body = ErrorBody),
        responses::Unauthorized, AdminNotFound, responses::TooLarge, responses::Unavailable))]
pub(super) async fn add_app(
    State(state): State<AppState>,
    ApiBody(body): ApiBody<NewAppBody>,
) -> Reply<AppItem> {
    let required = |v: Option<String>, name: &str| {
        v.ok_or_else(|| ApiError::BadRequest(format!("`{name}` is required")))
    };
    let new = NewApp {
        platform: required(body.platform, "platform")?,
        appid: required(body.appid, "appid")?,
        secret: body
            .secret
            .ok_or_else(|| ApiError::BadRequest("`secret` is required".into()))?,
        alipay_public_key: body.alipay_public_key,
        phone_key: PhoneKey {
            alipay_aes_key: body.alipay_aes_key,
            douyin_private_key: body.douyin_private_key,
        },
    };
    Ok(ok(state.registry.add(new).await?.into()))
}

#[derive(serde::Deserialize, ToSchema)]
pub(super) struct RotateBody {
    /// The new secret (an Alipay app's new private key), used for the app's next exchange.
    #[schema(value_type = String, min_length = 1, max_length = 8192)]
    secret: Option<SecretString>,
    /// Alipay apps only: Alipay's new public key (absent: kept).
    #[schema(value_type = Option<String>, required = false, max_length = 8192)]
    alipay_public_key: Option<String>,
    /// Alipay apps only: the new content-encryption key (absent: kept).
    #[schema(value_type = Option<String>, required = false, max_length = 64)]
    alipay_aes_key: Option<SecretString>,
    /// Douyin apps only: the app's new RSA private key for phone numbers (absent: kept).
    #[schema(value_type = Option<String>, required = false, max_length = 8192)]
    douyin_private_key: Option<SecretString>,
}

/// Sets a registry app's secret (after resetting it on the platform's console). Sessions stay.
#[utoipa::path(put, path = "/admin/apps/{appid}", tag = "admin", security(("admin_token" = [])),
    params(("appid" = String, Path, description = "a registry app's appid")),
    request_body = RotateBody,
    responses((status = 200, body = Envelope<Empty>),
        (status = 400, description = "bad_request: a malformed secret, or a config-file app", body = ErrorBody),
        responses::Unauthorized,
        (status = 404, description = "not_found: no such registry app (or the admin API is off)", body = ErrorBody),
        responses::TooLarge, responses::Unavailable))]
pub(super) async fn rotate_app(
    State(state): State<AppState>,
    ApiPath(appid): ApiPath<String>,
    ApiBody(body): ApiBody<RotateBody>,
) -> Reply<Empty> {
    let secret = body
        .secret
        .ok_or_else(|| ApiError::BadRequest("`secret` is required".into()))?;
    state
        .registry
        .rotate(
            &appid,
            secret,
            body.alipay_public_key,
            PhoneKey {
                alipay_aes_key: body.alipay_aes_key,
                douyin_private_key: body.douyin_private_key,
            },
        )
        .await?;
    Ok(ok(Empty {}))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AccessTokenQuery {
    /// A token the platform just refused (errcode 40001, 42001, …): dropped, if still the
    /// current one, before a fresh one is fetched for everyone.
    #[param(max_length = 1024)]
    failed: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct AccessTokenData {
    /// The app's token for its platform's server APIs (WeChat's, QQ's, Douyin's client token,
    /// Kuaishou's, Baidu's).
    access_token: String,
    /// Seconds left, as the platform stated them (a token within 300 s of its end is fetched
    /// again before it is handed out).
    expires_in: u64,
}

/// The app's current access_token, for a business backend that calls the platform's other
/// server APIs: wxlogin is the one refresher (per app, across instances through Redis), so no
/// backend's own fetch replaces the token under the others. Config-file and registry apps.
#[utoipa::path(get, path = "/admin/apps/{appid}/access_token", tag = "admin", security(("admin_token" = [])),
    params(("appid" = String, Path, description = "an appid this deployment serves"), AccessTokenQuery),
    responses((status = 200, body = Envelope<AccessTokenData>),
        responses::BadRequest, responses::Unauthorized,
        (status = 404, description = "not_found: no such app (or the admin API is off); unsupported: an Alipay app (no access_token)", body = ErrorBody),
        responses::Unavailable))]
pub(super) async fn app_access_token(
    State(state): State<AppState>,
    ApiPath(appid): ApiPath<String>,
    ApiQuery(query): ApiQuery<AccessTokenQuery>,
) -> Reply<AccessTokenData> {
    if query
        .failed
        .as_ref()
        .is_some_and(|f| f.chars().count() > 1024)
    {
        return Err(ApiError::BadRequest("`failed` is not a token".into()));
    }
    let (access_token, expires_in) = state
        .registry
        .access_token(&appid, query.failed.as_deref())
        .await?;
    Ok(ok(AccessTokenData {
        access_token,
        expires_in,
    }))
}

/// Removes a registry app and revokes its sessions on every instance before answering; later
/// logins to it get `unknown_app`.
#[utoipa::path(delete, path = "/admin/apps/{appid}", tag = "admin", security(("admin_token" = [])),
    params(("appid" = String, Path, description = "a registry app's appid")),
    responses((status = 200, body = Envelope<Revoked>),
        (status = 400, description = "bad_request: a config-file app", body = ErrorBody),
        responses::Unauthorized,
        (status = 404, description = "not_found: no such registry app (or the admin API is off)", body = ErrorBody),
        responses::Unavailable))]
pub(super) async fn remove_app(
    State(state): State<AppState>,
    Client(client): Client,
    ApiPath(appid): ApiPath<String>,
) -> Reply<Revoked> {
    let revoked = state.registry.remove(&appid, &client).await?;
    Ok(ok(Revoked {
        revoked: revoked as u64,
    }))
}
