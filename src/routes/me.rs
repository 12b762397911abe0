//! The account of the logged-in user (SPEC §6): `GET/PATCH/DELETE /me`, `PUT /me/avatar`,
//! `GET /me/sessions`, `DELETE /me/sessions/{id}`, `GET /me/export`; and `GET /avatars/{file}`,
//! public, where avatar URLs point.

use super::avatar;
use super::extract::{ApiBody, ApiPath, Authed, Client};
use super::reply::{ok, Empty, Envelope, Reply};
use crate::clock::rfc3339;
use crate::error::{responses, ApiError, ErrorBody};
use crate::state::AppState;
use crate::store::{EventRecord, IdentityRecord, SessionRecord, SessionSummary, UserRecord};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// An image's bytes, as the request body (documented as a binary string, which it is).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub(super) struct ImageBytes(Vec<u8>);

pub(super) fn router() -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(put_avatar))
        .layer(DefaultBodyLimit::max(avatar::MAX_BODY));
    OpenApiRouter::new()
        .routes(routes!(me, update_me, delete_me))
        .routes(routes!(my_sessions))
        .routes(routes!(end_session))
        .routes(routes!(export))
        .routes(routes!(get_avatar))
        .merge(uploads)
}

/// One login handle of the user.
#[derive(Serialize, ToSchema)]
pub(crate) struct IdentityView {
    platform: String,
    appid: String,
    openid: String,
    unionid: Option<String>,
}

impl From<IdentityRecord> for IdentityView {
    fn from(i: IdentityRecord) -> Self {
        Self {
            platform: i.platform,
            appid: i.appid,
            openid: i.openid,
            unionid: i.unionid,
        }
    }
}

/// Where an avatar is served: under the public URL when one is configured, else relative to
/// the service root (the SDK resolves it against its `baseUrl`).
pub(crate) fn avatar_url(state: &AppState, avatar: Option<String>) -> Option<String> {
    avatar.map(|file| match &state.public_url {
        Some(base) => format!("{base}/avatars/{file}"),
        None => format!("avatars/{file}"),
    })
}

/// The current user as `/me` shows it: the account, and the identity this session logged in
/// with (`appid`, `openid`, `unionid`).
#[derive(Serialize, ToSchema)]
pub(crate) struct MeData {
    id: i64,
    appid: String,
    openid: String,
    unionid: Option<String>,
    phone: Option<String>,
    phone_country_code: Option<String>,
    /// RFC 3339.
    created_at: String,
    last_login_at: String,
    nickname: Option<String>,
    avatar_url: Option<String>,
    /// `active` (a banned or deleted user has no session).
    status: &'static str,
    identities: Vec<IdentityView>,
}

impl MeData {
    fn new(state: &AppState, u: UserRecord, s: &SessionRecord) -> Self {
        Self {
            id: u.id,
            appid: s.appid.to_string(),
            openid: s.openid.0.clone(),
            unionid: s.unionid.as_ref().map(|x| x.0.clone()),
            phone: u.phone,
            phone_country_code: u.phone_country_code,
            created_at: rfc3339(u.created_at),
            // This session's login is the user's latest as far as this client knows, even where
            // the user record was read before it (another instance's in-memory copy).
            last_login_at: rfc3339(u.last_login_at.max(s.created_at)),
            nickname: u.nickname,
            avatar_url: avatar_url(state, u.avatar),
            status: u.status.as_str(),
            identities: u.identities.into_iter().map(IdentityView::from).collect(),
        }
    }
}

#[utoipa::path(get, path = "/me", tag = "account", security(("token" = [])),
    responses((status = 200, body = Envelope<MeData>), responses::Unauthorized, responses::Unavailable))]
pub(super) async fn me(State(state): State<AppState>, authed: Authed) -> Reply<MeData> {
    let user = state.users.of_session(authed.session.user_id).await?;
    Ok(ok(MeData::new(&state, user, &authed.session)))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct ProfileBody {
    /// 1–32 characters after trimming; WeChat's placeholder `微信用户` is refused.
    #[schema(value_type = String, required = true, max_length = 32, pattern = "\\S")]
    nickname: Option<String>,
}

/// Sets the nickname (from `<input type="nickname">`); answers the updated user.
#[utoipa::path(patch, path = "/me", tag = "account", security(("token" = [])),
    request_body = ProfileBody,
    responses((status = 200, body = Envelope<MeData>),
        (status = 400, description = "bad_request, placeholder_nickname", body = ErrorBody),
        responses::Unauthorized, responses::TooLarge, responses::Unavailable))]
pub(super) async fn update_me(
    State(state): State<AppState>,
    authed: Authed,
    Client(client): Client,
    ApiBody(body): ApiBody<ProfileBody>,
) -> Reply<MeData> {
    let nickname = body
        .nickname
        .ok_or_else(|| ApiError::BadRequest("`nickname` is required".into()))?;
    let user_id = authed.session.user_id;
    state
        .users
        .set_nickname(user_id, &nickname, &client)
        .await?;
    let user = state.users.of_session(user_id).await?;
    Ok(ok(MeData::new(&state, user, &authed.session)))
}

#[derive(Serialize, ToSchema)]
pub(super) struct AvatarData {
    avatar_url: String,
}

/// The image from `<button open-type="chooseAvatar">`: sent by `wx.uploadFile`
/// (multipart/form-data, any field name) or as a raw `image/*` body. PNG, JPEG or WebP, told
/// by its bytes; at most 256 KiB. POST works too, as `wx.uploadFile` can only POST.
#[utoipa::path(method(put, post), path = "/me/avatar", tag = "account", security(("token" = [])),
    request_body(content = ImageBytes, description = "the image (raw, image/png|jpeg|webp), or multipart/form-data with one file", content_type = "image/png"),
    responses((status = 200, body = Envelope<AvatarData>),
        (status = 413, description = "payload_too_large: over 256 KiB", body = ErrorBody),
        (status = 415, description = "unsupported_image: not a PNG, JPEG or WebP image, or no file in the form", body = ErrorBody),
        responses::BadRequest, responses::Unauthorized, responses::Unavailable))]
pub(super) async fn put_avatar(
    State(state): State<AppState>,
    authed: Authed,
    Client(client): Client,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Reply<AvatarData> {
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("could not read the request body".into())
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let image = avatar::image_of(content_type, body).await?;
    let file = state
        .users
        .set_avatar(authed.session.user_id, &image, &client)
        .await?;
    let url = avatar_url(&state, Some(file)).unwrap_or_default();
    Ok(ok(AvatarData { avatar_url: url }))
}

/// An avatar: public (an `<image>` cannot send a token), immutable, cacheable for a year.
#[utoipa::path(get, path = "/avatars/{file}", tag = "account",
    params(("file" = String, Path, description = "`<sha256>.png|jpg|webp`", pattern = "^[0-9a-f]{64}\\.(png|jpg|webp)$")),
    responses((status = 200, description = "the image", content_type = "image/png", body = Vec<u8>),
        (status = 404, description = "not_found", body = ErrorBody), responses::Unavailable))]
pub(super) async fn get_avatar(
    State(state): State<AppState>,
    ApiPath(file): ApiPath<String>,
) -> Result<Response, ApiError> {
    let avatar = state.users.avatar(&file).await?;
    let content_type =
        HeaderValue::from_str(&avatar.content_type).map_err(|_| ApiError::NotFound)?;
    let mut response = avatar.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// A session as its user sees it.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionView {
    id: i64,
    platform: Option<String>,
    appid: String,
    /// RFC 3339.
    created_at: String,
    last_seen_at: String,
    expires_at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    /// This request's own session.
    current: bool,
}

impl SessionView {
    pub(crate) fn new(s: SessionSummary, current: Option<i64>) -> Self {
        Self {
            current: Some(s.id) == current,
            id: s.id,
            platform: s.platform,
            appid: s.appid,
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            expires_at: rfc3339(s.expires_at),
            ip: s.ip,
            user_agent: s.user_agent,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct SessionsData {
    sessions: Vec<SessionView>,
}

#[utoipa::path(get, path = "/me/sessions", tag = "account", security(("token" = [])),
    responses((status = 200, body = Envelope<SessionsData>), responses::Unauthorized, responses::Unavailable))]
pub(super) async fn my_sessions(
    State(state): State<AppState>,
    authed: Authed,
) -> Reply<SessionsData> {
    let sessions = state.sessions.list(authed.session.user_id).await?;
    let current = Some(authed.session.id);
    Ok(ok(SessionsData {
        sessions: sessions
            .into_iter()
            .map(|s| SessionView::new(s, current))
            .collect(),
    }))
}

/// Ends one of the user's sessions (on every instance, before answering); another user's
/// session id is `not_found`.
#[utoipa::path(delete, path = "/me/sessions/{id}", tag = "account", security(("token" = [])),
    params(("id" = i64, Path, description = "session id, from GET /me/sessions")),
    responses((status = 200, body = Envelope<Empty>), (status = 404, description = "not_found", body = ErrorBody),
        responses::BadRequest, responses::Unauthorized, responses::Unavailable))]
pub(super) async fn end_session(
    State(state): State<AppState>,
    authed: Authed,
    Client(client): Client,
    ApiPath(id): ApiPath<i64>,
) -> Reply<Empty> {
    let user = authed.session.user_id;
    if !state.sessions.revoke_by_id(id, Some(user), &client).await? {
        return Err(ApiError::NotFound);
    }
    Ok(ok(Empty {}))
}

/// Deletes the account (注销): every session revoked on every instance first, identities,
/// phone, nickname and avatar erased; the id stays as a tombstone and is never reused. The
/// same WeChat user logging in later is a new user.
#[utoipa::path(delete, path = "/me", tag = "account", security(("token" = [])),
    responses((status = 200, body = Envelope<Empty>), responses::Unauthorized, responses::Unavailable))]
pub(super) async fn delete_me(
    State(state): State<AppState>,
    authed: Authed,
    Client(client): Client,
) -> Reply<Empty> {
    state
        .users
        .delete(authed.session.user_id, &client)
        .await
        .map_err(|e| match ApiError::from(e) {
            // Deleted meanwhile (a second tap): the session is gone with it.
            ApiError::NotFound => ApiError::Unauthorized,
            other => other,
        })?;
    Ok(ok(Empty {}))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EventView {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    user_id: Option<i64>,
    platform: Option<String>,
    appid: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    /// Event-specific details (`error`, `reason`, `from`, `session_id`).
    #[schema(value_type = Option<Object>)]
    detail: Option<serde_json::Value>,
    /// RFC 3339.
    time: String,
    /// Who made an admin change: `admin:<label>` of the admin token used.
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
}

impl From<EventRecord> for EventView {
    fn from(e: EventRecord) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            user_id: e.user_id,
            platform: e.platform,
            appid: e.appid,
            ip: e.ip,
            user_agent: e.user_agent,
            detail: e.detail.and_then(|d| serde_json::from_str(&d).ok()),
            time: rfc3339(e.at),
            actor: e.actor,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct ExportData {
    user: MeData,
    sessions: Vec<SessionView>,
    /// Newest first (at most 1000).
    events: Vec<EventView>,
}

/// Every fact stored about the user, as JSON (PIPL access and portability).
#[utoipa::path(get, path = "/me/export", tag = "account", security(("token" = [])),
    responses((status = 200, body = Envelope<ExportData>), responses::Unauthorized, responses::Unavailable))]
pub(super) async fn export(State(state): State<AppState>, authed: Authed) -> Reply<ExportData> {
    let export = state.users.export(authed.session.user_id).await?;
    let current = Some(authed.session.id);
    Ok(ok(ExportData {
        user: MeData::new(&state, export.user, &authed.session),
        sessions: export
            .sessions
            .into_iter()
            .map(|s| SessionView::new(s, current))
            .collect(),
        // Which operator acted is the operators' record, not part of the user's data.
        events: export
            .events
            .into_iter()
            .map(|e| EventView {
                actor: None,
                ..EventView::from(e)
            })
            .collect(),
    }))
}
