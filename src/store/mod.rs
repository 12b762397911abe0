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
use crate::domain::{
    AppId, ClientInfo, CodeHash, EventType, OpenId, Platform, SecretUrl, SessionKey, TokenHash,
    UnionId, UserId, UserStatus,
};
use crate::vault::Vault;
use async_trait::async_trait;
use secrecy::SecretString;
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
    /// The login's user is banned: the code is spent, no session was made.
    #[error("user banned")]
    Banned,
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

/// When and from where a change was made: written with the change's event.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    pub now: Millis,
    pub client: &'a ClientInfo,
}

/// Everything one successful login writes, in one transaction: the used code, the identity
/// (and its user, when new), the session, the `login` event (and `user_created`).
#[derive(Debug)]
pub struct NewLogin<'a> {
    pub platform: Platform,
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
    pub client: &'a ClientInfo,
    /// A new identity whose unionid another user of the platform has joins that user.
    pub link_by_unionid: bool,
    /// Live sessions a user may have: the oldest beyond it are revoked by this login.
    pub max_sessions: u32,
}

#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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

/// A session as its user and the admin API see it: no token, no hash, no session_key.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub id: i64,
    pub platform: Option<String>,
    pub appid: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
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
    /// Events older than the retention period.
    pub events_before: Millis,
}

#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub user_id: UserId,
    pub new_user: bool,
    /// Sessions this login ended (the replaced token, the oldest over the cap): caches must
    /// be told.
    pub revoked: Vec<TokenHash>,
    /// The identity gained its unionid: sessions cached before carry none.
    pub identity_changed: bool,
    /// A new identity joined an existing user (`link_by_unionid`): the user's identities changed.
    pub linked: bool,
}

/// A live session joined with its identity (and only while its user is active): what a token
/// check needs in one read.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: i64,
    pub user_id: UserId,
    pub platform: String,
    pub appid: AppId,
    pub openid: OpenId,
    pub unionid: Option<UnionId>,
    /// `None` when the record came from the shared cache, which never holds it.
    pub session_key: Option<SessionKey>,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
}

/// One login handle of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    pub platform: String,
    pub appid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub created_at: Millis,
}

/// A user (a person) with their identities. A deleted user keeps only id, status and times.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    pub status: UserStatus,
    pub nickname: Option<String>,
    /// `<sha256>.<ext>` of the stored avatar.
    pub avatar: Option<String>,
    pub phone: Option<String>,
    pub phone_country_code: Option<String>,
    pub phone_bound_at: Option<Millis>,
    pub ban_reason: Option<String>,
    pub created_at: Millis,
    pub last_login_at: Millis,
    pub deleted_at: Option<Millis>,
    pub identities: Vec<IdentityRecord>,
}

/// An avatar image, stored once by content.
#[derive(Debug, Clone)]
pub struct Avatar {
    pub sha256: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// What a profile change sets (`None`: leave as it is).
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub nickname: Option<String>,
    /// `<sha256>.<ext>` of an avatar already stored with [`UserStore::put_avatar`].
    pub avatar: Option<String>,
}

/// The outcome of binding a phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneBinding {
    Bound,
    /// Another (not deleted) user holds the number: nothing changed.
    InUse,
    /// The user is no longer active (banned or deleted meanwhile): nothing changed.
    NotActive,
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: i64,
    pub kind: String,
    pub user_id: Option<UserId>,
    pub platform: Option<String>,
    pub appid: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// A small JSON object (`{"error": …}`, `{"reason": …}`, `{"from": …}`, …).
    pub detail: Option<String>,
    pub at: Millis,
    /// `admin:<label>` for an admin's change.
    pub actor: Option<String>,
}

/// A webhook in the outbox (see `services/webhooks.rs`).
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    pub id: i64,
    /// The event it reports: the id the receiver sees.
    pub event_id: i64,
    pub user_id: UserId,
    pub kind: String,
    pub body: String,
    /// Attempts so far (a claim counts one).
    pub attempts: u32,
    pub created_at: Millis,
    /// The first attempt's time or the last re-drive's: retries run for a while from here.
    pub retry_from: Millis,
    /// When it is next due (a claimed row: when its lease ends).
    pub next_at: Millis,
    pub last_error: Option<String>,
    /// Set once retries ran out: it waits for an operator's re-drive.
    pub dead_at: Option<Millis>,
}

/// Which outbox rows to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting for (another) attempt, or being sent.
    Pending,
    Dead,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: i64,
    pub dead: i64,
    /// `created_at` of the oldest pending row.
    pub oldest_pending_at: Option<Millis>,
}

/// Which events to list, newest first: all given filters apply; `before` pages back by id.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub user_id: Option<UserId>,
    pub kind: Option<EventType>,
    pub since: Option<Millis>,
    pub before: Option<i64>,
    pub limit: u32,
}

/// A change to a user made by an operator or the user: which user, and what it touched.
#[derive(Debug, Clone)]
pub struct AccountChange {
    /// Sessions the change ended or moved: caches must forget them.
    pub tokens: Vec<TokenHash>,
}

/// An identity that becomes another of the same app ([`LoginStore::take_over`]): Douyin's
/// device-anonymous identity on signing in, Alipay's user_id identity on its app's move to
/// open_id.
#[derive(Debug, Clone, Copy)]
pub struct TakeOver<'a> {
    pub platform: Platform,
    pub appid: &'a AppId,
    /// The identity taken over.
    pub from: &'a OpenId,
    /// What it becomes, with this unionid.
    pub to: &'a OpenId,
    pub unionid: Option<&'a UnionId>,
    /// The `session_revoked` reason of the sessions it ends.
    pub reason: &'static str,
    /// `WXLOGIN_LINK_BY_UNIONID`: a unionid another user holds is that user's (a login would
    /// join it), so the identity is not taken over.
    pub link_by_unionid: bool,
}

/// What a [`TakeOver`] changed.
#[derive(Debug, Clone)]
pub struct Adoption {
    pub user_id: UserId,
    /// The taken-over identity's sessions, ended: caches must forget them.
    pub tokens: Vec<TokenHash>,
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
    /// Used code + identity (and user) + session + events (+ revoking the previous token and
    /// the sessions over the cap), atomically. Fails with [`StoreError::CodeUsed`] if the code
    /// was recorded meanwhile, and with [`StoreError::Banned`] (the code spent, a
    /// `login_failed` event written) if the user is banned.
    async fn record_login(&self, login: NewLogin<'_>) -> StoreResult<LoginRecord>;
    /// The identity `from` becomes `to` (with its unionid), keeping its user, unless `to`
    /// already has an identity. `from`'s sessions end (a `session_revoked` event each, with
    /// the take-over's reason): the login that takes it over gives the client its token.
    /// `None` when nothing changed.
    async fn take_over(
        &self,
        take: &TakeOver<'_>,
        audit: Audit<'_>,
    ) -> StoreResult<Option<Adoption>>;
    /// A `login_failed` event for a login that changed nothing (a bad or used code, …).
    async fn record_login_failure(
        &self,
        platform: Platform,
        appid: &AppId,
        error: &str,
        audit: Audit<'_>,
    ) -> StoreResult<()>;
}

/// Token checks and every way a session ends. Each revocation writes its event in its own
/// transaction.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()>;
    /// Logout: deletes the session (event `logout`); returns whether it existed.
    async fn revoke_session(&self, token: &TokenHash, audit: Audit<'_>) -> StoreResult<bool>;
    /// Deletes one session (event `session_revoked`), only if it is `owner`'s when an owner is
    /// given; returns its token hash so caches can be told.
    async fn revoke_session_by_id(
        &self,
        id: i64,
        owner: Option<UserId>,
        audit: Audit<'_>,
    ) -> StoreResult<Option<TokenHash>>;
    /// Deletes all of a user's sessions (event `session_revoked` each); returns their hashes.
    async fn revoke_user_sessions(
        &self,
        user: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Vec<TokenHash>>;
    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<SessionSummary>>;
}

/// Users: the person a token resolves to, their profile and account, the admin look-ups. Every
/// change writes its event in its own transaction.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>>;
    /// Users matching every given field (at most 100).
    async fn find_users(&self, filter: &UserFilter) -> StoreResult<Vec<UserRecord>>;
    /// Binds the number to an active user (event `phone_bound`), unless another user holds it.
    async fn bind_phone(
        &self,
        id: UserId,
        phone: &str,
        country_code: &str,
        audit: Audit<'_>,
    ) -> StoreResult<PhoneBinding>;
    /// Sets nickname and/or avatar of an active user (event `profile_updated`); `false` if
    /// there is no such active user.
    async fn update_profile(
        &self,
        id: UserId,
        change: &ProfileChange,
        audit: Audit<'_>,
    ) -> StoreResult<bool>;
    /// Stores an avatar once per content (a second upload of the same bytes changes nothing).
    async fn put_avatar(&self, avatar: &Avatar, now: Millis) -> StoreResult<()>;
    async fn avatar(&self, sha256: &str) -> StoreResult<Option<Avatar>>;
    /// Bans an active or banned user: status, reason, every session revoked (event
    /// `user_banned`). `None` if there is no such user (or it is deleted).
    async fn ban_user(
        &self,
        id: UserId,
        reason: &str,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>>;
    /// Lifts a ban (event `user_unbanned`); `false` if the user is not banned.
    async fn unban_user(&self, id: UserId, audit: Audit<'_>) -> StoreResult<bool>;
    /// Moves `from`'s identities, sessions and (if `into` has none) phone to `into`, and
    /// deletes `from`, in one transaction (event `user_merged`). `None` if either is missing,
    /// deleted, or they are the same user.
    async fn merge_users(
        &self,
        into: UserId,
        from: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>>;
    /// Erases the user (event `user_deleted`): sessions and identities deleted, profile and
    /// phone cleared, client details of their past events blanked; the row stays as a
    /// tombstone. `None` if there is no such user or it is already deleted.
    async fn delete_user(&self, id: UserId, audit: Audit<'_>)
        -> StoreResult<Option<AccountChange>>;
    /// Events, newest first.
    async fn events(&self, filter: &EventFilter) -> StoreResult<Vec<EventRecord>>;
}

/// The webhook outbox. Rows are written by the other traits' changes, in their transactions
/// (when the store was opened with webhooks on); this is the sending side.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Up to `limit` due rows, each the oldest undelivered one of its user, counted as an
    /// attempt and hidden from other claims until `lease_until`.
    async fn claim_webhooks(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRecord>>;
    /// The receiver took it: the row goes — if `attempts` (the claim's count) still matches, so
    /// a worker that stalled past its lease cannot touch a row claimed again since.
    async fn webhook_delivered(&self, id: i64, attempts: u32) -> StoreResult<()>;
    /// An attempt failed: due again at `next_at`, or dead from `dead_at` on (fenced as above).
    async fn webhook_failed(
        &self,
        id: i64,
        attempts: u32,
        next_at: Millis,
        dead_at: Option<Millis>,
        error: &str,
    ) -> StoreResult<()>;
    /// The newest rows in `state` (any when `None`).
    async fn outbox(
        &self,
        state: Option<OutboxState>,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRecord>>;
    /// A dead row due again now, with its attempts and retry period reset; `false` if there is
    /// no such dead row.
    async fn redrive_webhook(&self, id: i64, now: Millis) -> StoreResult<bool>;
    async fn outbox_stats(&self) -> StoreResult<OutboxStats>;
}

/// An app of the registry (apps added at run time), its secret opened.
#[derive(Clone)]
pub struct AppRecord {
    pub platform: Platform,
    pub appid: AppId,
    pub secret: SecretString,
    /// Alipay apps: Alipay's public key.
    pub alipay_public_key: Option<String>,
    /// The key for phone numbers, when given: Alipay's AES key, Douyin's RSA private key.
    pub phone_key: Option<SecretString>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl fmt::Debug for AppRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRecord")
            .field("platform", &self.platform)
            .field("appid", &self.appid)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// An app to register, its keys already checked.
pub struct NewAppRecord<'a> {
    pub platform: Platform,
    pub appid: &'a AppId,
    pub secret: &'a SecretString,
    pub alipay_public_key: Option<&'a str>,
    pub phone_key: Option<&'a SecretString>,
}

/// An app's new keys: the secret, and Alipay's public key and the phone key when given (an
/// absent one is kept).
pub struct AppRotation<'a> {
    pub appid: &'a AppId,
    pub secret: &'a SecretString,
    pub alipay_public_key: Option<&'a str>,
    pub phone_key: Option<&'a SecretString>,
}

/// The app registry: mini programs added, rotated and removed at run time. Secrets are sealed
/// on the way in and opened on the way out.
#[async_trait]
pub trait AppStore: Send + Sync + 'static {
    /// Every registered app, by appid. A row no configured data key opens is left out (and
    /// logged): its app cannot be served without its secret.
    async fn apps(&self) -> StoreResult<Vec<AppRecord>>;
    /// Adds an app; `false` (nothing stored) if the appid is registered already.
    async fn add_app(&self, app: &NewAppRecord<'_>, now: Millis) -> StoreResult<bool>;
    /// Replaces an app's secret (and Alipay's public key and AES key, those given); `false` if
    /// there is no such app.
    async fn rotate_app(&self, rotation: &AppRotation<'_>, now: Millis) -> StoreResult<bool>;
    /// Deletes an app and, in the same transaction, every session of it (event
    /// `session_revoked`, reason `app_removed`, each); `None` if there is no such app.
    async fn remove_app(
        &self,
        appid: &AppId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<Vec<TokenHash>>>;
}

/// Readiness, expiry cleanup, counts, and an orderly close.
#[async_trait]
pub trait MaintenanceStore: Send + Sync + 'static {
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Deletes sessions past their lifetime or idle deadline, used codes older than
    /// `codes_before` and events older than `events_before`; returns the sessions and codes
    /// deleted. `None` when another instance is cleaning right now.
    async fn cleanup(&self, cutoffs: Cleanup) -> StoreResult<Option<(u64, u64)>>;
    async fn stats(&self, now: Millis) -> StoreResult<Stats>;
    /// Up to `limit` rows of `kind` with id above `after` whose stored value does not start
    /// with `skip_prefix`, by id: `(id, stored value)`. For [`reseal`].
    async fn unsealed(
        &self,
        kind: SealedColumn,
        skip_prefix: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String)>>;
    /// Compare-and-set: replaces `old` by `new` (and, for a phone, its hash) unless the row
    /// changed meanwhile. For [`reseal`].
    async fn replace_sealed(
        &self,
        kind: SealedColumn,
        id: i64,
        old: &str,
        new: &str,
        phone_hash: &str,
    ) -> StoreResult<bool>;
    /// The vault this store seals and opens with.
    fn vault(&self) -> &Vault;
    /// After a reseal: leaves nothing of the replaced values in the store's own files where it
    /// can (SQLite's WAL); nothing to do elsewhere.
    async fn settle(&self) -> StoreResult<()>;
    /// Finishes the writes already queued and stops the store's own threads. Called once, after
    /// the server has drained; later writes fail as `Unavailable`.
    async fn close(&self);
}

/// A whole store: every narrow trait. Services take the one they need.
pub trait Store:
    LoginStore + SessionStore + UserStore + MaintenanceStore + OutboxStore + AppStore
{
}

impl<
        T: LoginStore + SessionStore + UserStore + MaintenanceStore + OutboxStore + AppStore + ?Sized,
    > Store for T
{
}

/// How a store is opened.
#[derive(Clone)]
pub struct StoreOptions {
    /// Seals session keys and phone numbers on the way in, opens them on the way out.
    pub vault: Arc<Vault>,
    /// Write a webhook outbox row with each webhook event (`WXLOGIN_WEBHOOK_URL` is set).
    pub webhooks: bool,
}

/// A store without webhooks (tools, tests).
impl From<Arc<Vault>> for StoreOptions {
    fn from(vault: Arc<Vault>) -> Self {
        Self {
            vault,
            webhooks: false,
        }
    }
}

pub type SharedStore = Arc<dyn Store>;

/// Opens the store the URL names and applies its migrations.
pub async fn connect(url: &DatabaseUrl, options: StoreOptions) -> anyhow::Result<SharedStore> {
    Ok(match url.backend() {
        Backend::Sqlite => Arc::new(sqlite::SqliteStore::open(url.expose(), options).await?),
        Backend::Postgres => Arc::new(postgres::PgStore::open(url.expose(), options).await?),
    })
}

/// Creates `dir` and its missing parents readable by this user only (0700). A directory that
/// exists is left as it is (it may be the working directory).
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes a new file readable by this user only (0600); refuses to replace one.
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

/// Makes the SQLite database at `path` (and its `-wal` and `-shm`, which SQLite creates with
/// the database's mode) readable by this user only: created 0600 if missing, set to 0600 if not.
pub(crate) fn private_sqlite_files(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// A column whose values are sealed with the data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedColumn {
    SessionKey,
    Phone,
    AppSecret,
    PhoneKey,
}

/// Which values [`reseal`] seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Plain values only (written before encryption at rest): every start does this.
    Plain,
    /// Everything not under the current key: `wxlogin rotate-key`.
    NotCurrent,
}

/// What [`reseal`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    pub session_keys: u64,
    pub phones: u64,
    pub app_secrets: u64,
    /// Values no configured key opens (a lost key, a damaged row): left as they are. Reading
    /// one gives no session_key (the client logs in again) or no phone number.
    pub unreadable: u64,
}

/// Seals the store's session keys, phone numbers and app secrets under its vault's current key (`scope`
/// says which), row by row and compare-and-set, so it runs beside live traffic.
pub async fn reseal(store: &dyn MaintenanceStore, scope: Reseal) -> StoreResult<Resealed> {
    const BATCH: i64 = 500;
    let vault = store.vault();
    let skip = match scope {
        Reseal::Plain => crate::vault::SEALED_PREFIX.to_owned(),
        Reseal::NotCurrent => vault.current_prefix(),
    };
    let mut done = Resealed::default();
    for kind in [
        SealedColumn::SessionKey,
        SealedColumn::Phone,
        SealedColumn::AppSecret,
        SealedColumn::PhoneKey,
    ] {
        let field = match kind {
            SealedColumn::SessionKey => crate::vault::Field::SessionKey,
            SealedColumn::Phone => crate::vault::Field::Phone,
            SealedColumn::AppSecret => crate::vault::Field::AppSecret,
            SealedColumn::PhoneKey => crate::vault::Field::PhoneKey,
        };
        let mut after = 0;
        loop {
            let rows = store.unsealed(kind, &skip, after, BATCH).await?;
            for (id, stored) in &rows {
                let Ok(plain) = vault.open(field, stored) else {
                    done.unreadable += 1;
                    continue;
                };
                let new = vault.seal(field, &plain);
                let hash = match kind {
                    SealedColumn::Phone => vault.phone_hash(&plain),
                    SealedColumn::SessionKey | SealedColumn::AppSecret | SealedColumn::PhoneKey => {
                        String::new()
                    }
                };
                if store.replace_sealed(kind, *id, stored, &new, &hash).await? {
                    match kind {
                        SealedColumn::SessionKey => done.session_keys += 1,
                        SealedColumn::Phone => done.phones += 1,
                        SealedColumn::AppSecret | SealedColumn::PhoneKey => done.app_secrets += 1,
                    }
                }
            }
            match rows.last() {
                Some((id, _)) if rows.len() as i64 == BATCH => after = *id,
                _ => break,
            }
        }
    }
    if done.session_keys + done.phones + done.app_secrets > 0 {
        store.settle().await?;
    }
    Ok(done)
}
