//! Storage: narrow traits, the records they pass, and the two backends.
//!
//! The traits are cut by who uses them, as lldap does: [`LoginStore`] (used codes and the login
//! write, the hot path), [`SessionStore`] (token checks and every revocation), [`UserStore`]
//! (users and the admin look-ups) and [`MaintenanceStore`] (readiness, cleanup, counts,
//! closing). Each backend implements all four in plain `impl` blocks; [`Store`] is their sum,
//! held as `Arc<dyn Store>` and handed to each service as the one trait it needs, so business
//! code never branches on the backend.
//!
//! Implementations: [`sqlite`] (embedded default) and [`postgres`] (several nodes), sharing
//! their SQL text in [`sql`]; [`metered`] times every call; [`cached`] answers token checks
//! from memory in front of SQLite.
//! Depends on the domain types and the metrics recorder only; knows nothing of HTTP, Redis or
//! WeChat.

pub mod cached;
pub mod metered;
pub mod postgres;
mod sql;
pub mod sqlite;
pub mod used_codes;

use crate::clock::Millis;
use crate::domain::{AppId, CodeHash, OpenId, SecretUrl, SessionKey, TokenHash, UnionId, UserId};
use async_trait::async_trait;
use std::fmt;
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

/// Which store of record a database URL names. Parsed once, from the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One node: this process is the only writer, so it may answer from memory.
    Sqlite,
    /// Several nodes share it; Redis is the shared cache.
    Postgres,
}

/// `WXLOGIN_DATABASE_URL`: the URL (password masked in `Debug`) and the backend it names.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: SecretUrl,
    backend: Backend,
}

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let backend = if text.starts_with("sqlite:") {
            Backend::Sqlite
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err("must start with sqlite:// or postgres://");
        };
        Ok(Self {
            url: SecretUrl::new(text),
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn expose(&self) -> &str {
        self.url.expose()
    }

    pub fn redacted(&self) -> String {
        self.url.redacted()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.url, f)
    }
}

/// Everything one successful login writes, in one transaction.
#[derive(Debug)]
pub struct NewLogin<'a> {
    pub appid: &'a AppId,
    pub openid: &'a OpenId,
    pub unionid: Option<&'a UnionId>,
    pub session_key: &'a SessionKey,
    pub token_hash: &'a TokenHash,
    pub code_hash: &'a CodeHash,
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
#[derive(Debug, Clone)]
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

/// Used codes and the login write: the hot path of `POST /login`.
#[async_trait]
pub trait LoginStore: Send + Sync + 'static {
    async fn is_code_used(&self, code: &CodeHash) -> StoreResult<bool>;
    /// Remembers a code WeChat told us was used, so the next try does not call WeChat.
    async fn mark_code_used(&self, appid: &AppId, code: &CodeHash, now: Millis) -> StoreResult<()>;
    /// Calls `each` with every code recorded at or after `since` and the time it was used,
    /// oldest first (streamed: there may be many).
    async fn codes_used_since(
        &self,
        since: Millis,
        each: &mut (dyn for<'c> FnMut(&'c CodeHash, Millis) + Send),
    ) -> StoreResult<()>;
    /// User upsert + new session + used code (+ revoking the previous token), atomically.
    /// Fails with [`StoreError::CodeUsed`] if the code was recorded meanwhile.
    async fn record_login(&self, login: NewLogin<'_>) -> StoreResult<LoginRecord>;
}

/// Token checks and every way a session ends.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()>;
    /// Deletes the session; returns whether it existed.
    async fn revoke_session(&self, token: &TokenHash) -> StoreResult<bool>;
    /// Deletes one session; returns its token hash so caches can be told.
    async fn revoke_session_by_id(&self, id: i64) -> StoreResult<Option<TokenHash>>;
    /// Deletes all of a user's sessions; returns their token hashes.
    async fn revoke_user_sessions(&self, user: UserId) -> StoreResult<Vec<TokenHash>>;
    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<SessionSummary>>;
}

/// Users: the profile a token resolves to, and the admin look-ups.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>>;
    /// Users matching every given field (at most 100).
    async fn find_users(&self, filter: &UserFilter) -> StoreResult<Vec<UserRecord>>;
    async fn set_phone(&self, id: UserId, phone: &str, country_code: &str) -> StoreResult<()>;
}

/// Readiness, expiry cleanup, counts, and an orderly close.
#[async_trait]
pub trait MaintenanceStore: Send + Sync + 'static {
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Deletes sessions past their lifetime or idle deadline and used codes older than
    /// `codes_before`. `None` when another instance is cleaning right now.
    async fn cleanup(&self, cutoffs: Cleanup) -> StoreResult<Option<(u64, u64)>>;
    async fn stats(&self, now: Millis) -> StoreResult<Stats>;
    /// Finishes the writes already queued and stops the store's own threads. Called once, after
    /// the server has drained; later writes fail as `Unavailable`.
    async fn close(&self);
}

/// A whole store: every narrow trait. Services take the one they need.
pub trait Store: LoginStore + SessionStore + UserStore + MaintenanceStore {}

impl<T: LoginStore + SessionStore + UserStore + MaintenanceStore + ?Sized> Store for T {}

pub type SharedStore = Arc<dyn Store>;

/// Opens the store the URL names and applies its migrations.
pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<SharedStore> {
    Ok(match url.backend() {
        Backend::Sqlite => Arc::new(sqlite::SqliteStore::open(url.expose()).await?),
        Backend::Postgres => Arc::new(postgres::PgStore::open(url.expose()).await?),
    })
}
