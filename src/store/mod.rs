//! Storage traits and records. Business code holds an `Arc<dyn Store>` and never branches on
//! the backend. Implementations: [`sqlite`] (embedded default) and [`postgres`] (several nodes).
//! Depends on the domain types only; knows nothing of HTTP or WeChat.

pub mod cached;
pub mod postgres;
mod sql;
pub mod sqlite;
pub mod used_codes;

use crate::clock::Millis;
use crate::domain::{AppId, OpenId, SessionKey, TokenHash, UnionId, UserId};
use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or failed; the request may be retried later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The code was recorded as used by someone else first (another instance, a race).
    #[error("code already used")]
    CodeUsed,
}

impl StoreError {
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::Unavailable(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything one successful login writes, in one transaction.
#[derive(Debug)]
pub struct NewLogin<'a> {
    pub appid: &'a AppId,
    pub openid: &'a OpenId,
    pub unionid: Option<&'a UnionId>,
    pub session_key: &'a SessionKey,
    pub token_hash: &'a TokenHash,
    pub code_hash: &'a str,
    /// The client's previous token, revoked in the same transaction.
    pub previous: Option<&'a TokenHash>,
    pub now: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
pub struct UserFilter {
    // Spelled i64, not the UserId alias: the OpenAPI generator cannot see through aliases.
    pub id: Option<i64>,
    pub openid: Option<String>,
    pub unionid: Option<String>,
    pub phone: Option<String>,
}

impl UserFilter {
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.openid.is_none() && self.unionid.is_none() && self.phone.is_none()
    }
}

/// A session as the admin API shows it: no token, no hash, no session_key.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SessionSummary {
    pub id: i64,
    pub appid: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub users: i64,
    pub sessions: i64,
    pub live_sessions: i64,
    pub users_with_phone: i64,
    pub used_codes: i64,
}

/// What counts as expired, in store time.
#[derive(Debug, Clone, Copy)]
pub struct Cleanup {
    pub now: Millis,
    /// Sessions last used before this are past their idle timeout.
    pub idle_before: Millis,
    /// Used codes recorded before this can no longer be presented (WeChat codes live 5 minutes).
    pub codes_before: Millis,
}

#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub user_id: UserId,
    pub new_user: bool,
}

/// A live session joined with the user it belongs to: what a token check needs in one read.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: i64,
    pub user_id: UserId,
    pub appid: AppId,
    pub openid: OpenId,
    pub unionid: Option<UnionId>,
    /// `None` when the record came from the shared cache, which never holds it.
    pub session_key: Option<SessionKey>,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    pub appid: AppId,
    pub openid: OpenId,
    pub unionid: Option<UnionId>,
    pub phone: Option<String>,
    pub phone_country_code: Option<String>,
    pub created_at: Millis,
    pub last_login_at: Millis,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    async fn is_code_used(&self, code_hash: &str) -> StoreResult<bool>;
    /// Remembers a code WeChat told us was used, so the next try does not call WeChat.
    async fn mark_code_used(&self, appid: &AppId, code_hash: &str, now: Millis) -> StoreResult<()>;
    /// Calls `each` with every code recorded at or after `since` and the time it was used,
    /// oldest first (streamed: there may be many).
    async fn codes_used_since(
        &self,
        since: Millis,
        each: &mut (dyn for<'c> FnMut(&'c str, Millis) + Send),
    ) -> StoreResult<()>;
    /// User upsert + new session + used code (+ revoking the previous token), atomically.
    /// Fails with [`StoreError::CodeUsed`] if the code was recorded meanwhile.
    async fn record_login(&self, login: NewLogin<'_>) -> StoreResult<LoginRecord>;
    async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()>;
    /// Deletes the session; returns whether it existed.
    async fn revoke_session(&self, token: &TokenHash) -> StoreResult<bool>;
    async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>>;
    /// Every app's user with this unionid (one person across the apps of one Open Platform account).
    async fn find_users_by_unionid(&self, unionid: &str) -> StoreResult<Vec<UserRecord>>;
    async fn set_phone(&self, id: UserId, phone: &str, country_code: &str) -> StoreResult<()>;
    /// Deletes sessions past their lifetime or idle deadline and used codes older than
    /// `codes_before`. `None` when another instance is cleaning right now.
    async fn cleanup(&self, cutoffs: Cleanup) -> StoreResult<Option<(u64, u64)>>;

    // Admin queries.
    /// Users matching every given field (at most 100).
    async fn find_users(&self, filter: &UserFilter) -> StoreResult<Vec<UserRecord>>;
    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<SessionSummary>>;
    /// Deletes one session; returns its token hash so caches can be told.
    async fn revoke_session_by_id(&self, id: i64) -> StoreResult<Option<TokenHash>>;
    /// Deletes all of a user's sessions; returns their token hashes.
    async fn revoke_user_sessions(&self, user: UserId) -> StoreResult<Vec<TokenHash>>;
    async fn stats(&self, now: Millis) -> StoreResult<Stats>;
}

pub type SharedStore = Arc<dyn Store>;

/// Opens the store named by the URL scheme and applies its migrations.
pub async fn connect(url: &str) -> anyhow::Result<SharedStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    }
}
