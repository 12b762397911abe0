//! The embedded store: one SQLite file in WAL mode with durable commits (`synchronous=FULL`).
//!
//! The hot writes — logins and session touches — are group-committed by the writer thread
//! (`sqlite/writer.rs`). Reads use a sqlx pool that WAL lets run alongside it. The rare writes
//! (logout, revocations, `/phone`, profile, bans, merges, deletions, cleanup, remembering a code
//! WeChat refused) go through a one-connection sqlx pool; each is a single statement or a
//! transaction begun with `BEGIN IMMEDIATE` (`SqliteStore::begin`), which takes the write lock
//! first, so when it meets the writer thread's lock it waits (`busy_timeout`) rather than
//! failing on a lock upgrade. The statements are `sql.rs`'s, shared with PostgreSQL.

mod writer;

use super::sql::{self, Ended, NewEvent};
use super::{
    AccountChange, Adoption, AppRecord, AppRotation, AppStore, Audit, Avatar, Cleanup, EventFilter,
    EventRecord, LoginRecord, LoginStore, MaintenanceStore, NewAppRecord, NewLogin, PhoneBinding,
    ProfileChange, SessionRecord, SessionStore, SessionSummary, Stats, StoreError, StoreOptions,
    StoreResult, TakeOver, UserFilter, UserRecord, UserStore,
};
use crate::clock::Millis;
use crate::domain::{AppId, CodeHash, EventType, Platform, TokenHash, UserId};
use crate::vault::{Field, Vault};
use async_trait::async_trait;
use futures::TryStreamExt;
use secrecy::ExposeSecret;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use writer::Write;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    writes: mpsc::Sender<Write>,
    vault: Arc<Vault>,
    webhooks: bool,
}

impl SqliteStore {
    pub async fn open(url: &str, store: StoreOptions) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma(
                "wal_autocheckpoint",
                writer::WAL_FALLBACK_FRAMES.to_string(),
            )
            // As the writer thread: freed row space is zeroed where that costs no extra I/O.
            .pragma("secure_delete", "FAST");
        // Session keys (sealed), phone numbers (sealed), addresses: for this user's eyes only.
        super::private_sqlite_files(options.get_filename())?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let writes = writer::start(options.get_filename())?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            writes,
            vault: store.vault,
            webhooks: store.webhooks,
        })
    }

    /// A write transaction of the rare writes: `BEGIN IMMEDIATE` takes the write lock at once
    /// (waiting for the writer thread through `busy_timeout`), so a transaction that reads
    /// before it writes cannot fail on a lock upgrade.
    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)
    }

    /// Hands a write to the writer thread and waits for its commit.
    async fn submit<T>(
        &self,
        write: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Write,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::unavailable("the SQLite writer stopped");
        self.writes
            .send(write(reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::unavailable(e)
}

/// Writes the event; returns its id.
async fn insert_event(tx: &mut SqliteConnection, e: &NewEvent<'_>) -> StoreResult<i64> {
    sqlx::query_scalar(sql::INSERT_EVENT)
        .bind(e.kind.as_str())
        .bind(e.user_id)
        .bind(e.platform)
        .bind(e.appid)
        .bind(e.ip())
        .bind(e.user_agent())
        .bind(e.detail.as_deref())
        .bind(e.at)
        .bind(e.actor)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)
}

/// Writes a webhook event, and its outbox row (same transaction) when webhooks are on.
async fn record_event(
    tx: &mut SqliteConnection,
    e: &NewEvent<'_>,
    webhooks: bool,
) -> StoreResult<()> {
    let id = insert_event(tx, e).await?;
    if webhooks && e.kind.is_webhook() {
        sqlx::query(sql::INSERT_OUTBOX)
            .bind(id)
            .bind(e.user_id)
            .bind(e.kind.as_str())
            .bind(e.webhook_body(id))
            .bind(e.at)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Runs a revoking statement (`RETURNING` the ended sessions) and writes an event for each.
async fn end_sessions<'q>(
    tx: &mut SqliteConnection,
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    kind: EventType,
    reason: &str,
    audit: Audit<'_>,
) -> StoreResult<Vec<Ended>> {
    let rows = query.fetch_all(&mut *tx).await.map_err(unavailable)?;
    let ended = rows
        .iter()
        .map(sql::ended_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    for e in &ended {
        insert_event(tx, &NewEvent::for_session(kind, e, audit, reason)).await?;
    }
    Ok(ended)
}

#[async_trait]
impl LoginStore for SqliteStore {
    async fn is_code_used(&self, code: &CodeHash) -> StoreResult<bool> {
        let row = sqlx::query(sql::IS_CODE_USED)
            .bind(code.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(row.is_some())
    }

    async fn mark_code_used(&self, appid: &AppId, code: &CodeHash, now: Millis) -> StoreResult<()> {
        sqlx::query(sql::INSERT_USED_CODE)
            .bind(code.as_str())
            .bind(appid.as_str())
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn codes_used_since(
        &self,
        since: Millis,
        each: &mut (dyn for<'c> FnMut(&'c CodeHash, Millis) + Send),
    ) -> StoreResult<()> {
        let mut rows = sqlx::query(sql::CODES_USED_SINCE)
            .bind(since)
            .fetch(&self.reader);
        while let Some(row) = rows.try_next().await.map_err(StoreError::unavailable)? {
            let code: String = row.try_get(0).map_err(StoreError::unavailable)?;
            let at: i64 = row.try_get(1).map_err(StoreError::unavailable)?;
            each(&CodeHash(code), at);
        }
        Ok(())
    }

    async fn record_login(&self, l: NewLogin<'_>) -> StoreResult<LoginRecord> {
        let login = Box::new(writer::Login {
            platform: l.platform,
            appid: l.appid.clone(),
            openid: l.openid.clone(),
            unionid: l.unionid.cloned(),
            sealed_session_key: self.vault.seal(Field::SessionKey, l.session_key.expose()),
            token_hash: l.token_hash.clone(),
            code_hash: l.code_hash.clone(),
            previous: l.previous.cloned(),
            now: l.now,
            expires_at: l.expires_at,
            client: l.client.clone(),
            link_by_unionid: l.link_by_unionid,
            max_sessions: l.max_sessions,
            webhooks: self.webhooks,
        });
        self.submit(|reply| Write::Login(login, reply)).await
    }

    async fn take_over(
        &self,
        take: &TakeOver<'_>,
        audit: Audit<'_>,
    ) -> StoreResult<Option<Adoption>> {
        // Most logins that could take one over have nothing to take: a read, not a write.
        let exists = sqlx::query(sql::IDENTITY_EXISTS)
            .bind(take.platform.as_str())
            .bind(take.appid.as_str())
            .bind(&take.from.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?;
        if exists.is_none() {
            return Ok(None);
        }
        let mut tx = self.begin().await?;
        let adopted: Option<(i64, i64)> = sqlx::query_as(sql::TAKE_OVER_IDENTITY)
            .bind(&take.to.0)
            .bind(take.unionid.map(|u| u.0.as_str()))
            .bind(take.platform.as_str())
            .bind(take.appid.as_str())
            .bind(&take.from.0)
            .bind(i64::from(take.link_by_unionid))
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let Some((identity, user_id)) = adopted else {
            return Ok(None);
        };
        let query = sqlx::query(sql::DELETE_IDENTITY_SESSIONS)
            .bind(user_id)
            .bind(identity);
        let ended = end_sessions(
            &mut tx,
            query,
            EventType::SessionRevoked,
            take.reason,
            audit,
        )
        .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(Adoption {
            user_id,
            tokens: ended.into_iter().map(|e| e.token_hash).collect(),
        }))
    }

    async fn record_login_failure(
        &self,
        platform: Platform,
        appid: &AppId,
        error: &str,
        audit: Audit<'_>,
    ) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.map_err(unavailable)?;
        let event = NewEvent {
            platform: Some(platform.as_str()),
            appid: Some(appid.as_str()),
            detail: Some(serde_json::json!({ "error": error }).to_string()),
            ..NewEvent::new(EventType::LoginFailed, None, audit)
        };
        insert_event(&mut conn, &event).await.map(|_| ())
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(sql::FIND_SESSION)
            .bind(&token.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?;
        row.as_ref()
            .map(|r| sql::session_from_row(r, &self.vault))
            .transpose()
    }

    async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()> {
        self.submit(|reply| Write::Touch { id, now, reply }).await
    }

    async fn revoke_session(&self, token: &TokenHash, audit: Audit<'_>) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let query = sqlx::query(sql::DELETE_SESSION).bind(&token.0);
        let ended = end_sessions(&mut tx, query, EventType::Logout, "logout", audit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(!ended.is_empty())
    }

    async fn revoke_session_by_id(
        &self,
        id: i64,
        owner: Option<UserId>,
        audit: Audit<'_>,
    ) -> StoreResult<Option<TokenHash>> {
        let mut tx = self.begin().await?;
        let reason = if owner.is_some() { "user" } else { "admin" };
        let query = sqlx::query(sql::DELETE_SESSION_BY_ID).bind(id).bind(owner);
        let ended = end_sessions(&mut tx, query, EventType::SessionRevoked, reason, audit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(ended.into_iter().next().map(|e| e.token_hash))
    }

    async fn revoke_user_sessions(
        &self,
        user: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Vec<TokenHash>> {
        let mut tx = self.begin().await?;
        let query = sqlx::query(sql::DELETE_USER_SESSIONS).bind(user);
        let ended = end_sessions(&mut tx, query, EventType::SessionRevoked, "all", audit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(ended.into_iter().map(|e| e.token_hash).collect())
    }

    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<SessionSummary>> {
        let rows = sqlx::query(sql::LIST_SESSIONS)
            .bind(user)
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
        rows.iter().map(sql::summary_from_row).collect()
    }
}

impl SqliteStore {
    async fn with_identities(&self, mut user: UserRecord) -> StoreResult<UserRecord> {
        let rows = sqlx::query(sql::USER_IDENTITIES)
            .bind(user.id)
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
        user.identities = rows
            .iter()
            .map(sql::identity_from_row)
            .collect::<StoreResult<_>>()?;
        Ok(user)
    }
}

/// The tombstone statements a deletion and a merge share: the user's row emptied, and their
/// avatar deleted unless another user shows the same image.
async fn erase_user(tx: &mut SqliteConnection, id: UserId, now: Millis) -> StoreResult<()> {
    let avatar: Option<String> = sqlx::query_scalar(sql::USER_AVATAR)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .flatten();
    sqlx::query(sql::ERASE_USER)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    if let Some(file) = avatar {
        delete_unused_avatar(tx, &file).await?;
    }
    Ok(())
}

/// Deletes an avatar image (`<sha256>.<ext>`) no user shows any more: a person's old photo is
/// not kept for nobody.
async fn delete_unused_avatar(tx: &mut SqliteConnection, file: &str) -> StoreResult<()> {
    let sha256 = file.split('.').next().unwrap_or_default();
    sqlx::query(sql::DELETE_UNUSED_AVATAR)
        .bind(sha256)
        .bind(file)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(sql::FIND_USER)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?;
        match row
            .as_ref()
            .map(|r| sql::user_from_row(r, &self.vault))
            .transpose()?
        {
            Some(user) => Ok(Some(self.with_identities(user).await?)),
            None => Ok(None),
        }
    }

    async fn find_users(&self, f: &UserFilter) -> StoreResult<Vec<UserRecord>> {
        let hashes = f.phone.as_deref().map(|p| self.vault.phone_hashes(p));
        let rows = sqlx::query(sql::FIND_USERS)
            .bind(f.id)
            .bind(f.openid.as_deref())
            .bind(f.unionid.as_deref())
            .bind(hashes.as_ref().map(|[h, _]| h.as_str()))
            .bind(hashes.as_ref().map(|[_, h]| h.as_str()))
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
        let mut users = Vec::with_capacity(rows.len());
        for row in &rows {
            users.push(
                self.with_identities(sql::user_from_row(row, &self.vault)?)
                    .await?,
            );
        }
        Ok(users)
    }

    async fn bind_phone(
        &self,
        id: UserId,
        phone: &str,
        country_code: &str,
        audit: Audit<'_>,
    ) -> StoreResult<PhoneBinding> {
        let [current_hash, old_hash] = self.vault.phone_hashes(phone);
        let mut tx = self.begin().await?;
        let other: Option<i64> = sqlx::query_scalar(sql::PHONE_HELD_BY_OTHER)
            .bind(&current_hash)
            .bind(&old_hash)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        if other.is_some() {
            return Ok(PhoneBinding::InUse);
        }
        let done = sqlx::query(sql::SET_PHONE)
            .bind(self.vault.seal(Field::Phone, phone))
            .bind(&current_hash)
            .bind(country_code)
            .bind(audit.now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Ok(PhoneBinding::NotActive);
        }
        insert_event(
            &mut tx,
            &NewEvent::new(EventType::PhoneBound, Some(id), audit),
        )
        .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(PhoneBinding::Bound)
    }

    async fn update_profile(
        &self,
        id: UserId,
        change: &ProfileChange,
        audit: Audit<'_>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let before: Option<String> = match &change.avatar {
            Some(_) => sqlx::query_scalar(sql::USER_AVATAR)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?
                .flatten(),
            None => None,
        };
        let done = sqlx::query(sql::UPDATE_PROFILE)
            .bind(change.nickname.as_deref())
            .bind(change.avatar.as_deref())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(old) = before.filter(|old| Some(old) != change.avatar.as_ref()) {
            delete_unused_avatar(&mut tx, &old).await?;
        }
        insert_event(
            &mut tx,
            &NewEvent::new(EventType::ProfileUpdated, Some(id), audit),
        )
        .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn put_avatar(&self, avatar: &Avatar, now: Millis) -> StoreResult<()> {
        sqlx::query(sql::PUT_AVATAR)
            .bind(&avatar.sha256)
            .bind(&avatar.content_type)
            .bind(&avatar.bytes)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn avatar(&self, sha256: &str) -> StoreResult<Option<Avatar>> {
        let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(sql::GET_AVATAR)
            .bind(sha256)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?;
        Ok(row.map(|(sha256, content_type, bytes)| Avatar {
            sha256,
            content_type,
            bytes,
        }))
    }

    async fn ban_user(
        &self,
        id: UserId,
        reason: &str,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(sql::BAN_USER)
            .bind(reason)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let query = sqlx::query(sql::DELETE_USER_SESSIONS).bind(id);
        let ended =
            end_sessions(&mut tx, query, EventType::SessionRevoked, "banned", audit).await?;
        let event = NewEvent {
            detail: Some(serde_json::json!({ "reason": reason }).to_string()),
            ..NewEvent::new(EventType::UserBanned, Some(id), audit)
        };
        record_event(&mut tx, &event, self.webhooks).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(AccountChange {
            tokens: ended.into_iter().map(|e| e.token_hash).collect(),
        }))
    }

    async fn unban_user(&self, id: UserId, audit: Audit<'_>) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(sql::UNBAN_USER)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        record_event(
            &mut tx,
            &NewEvent::new(EventType::UserUnbanned, Some(id), audit),
            self.webhooks,
        )
        .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn merge_users(
        &self,
        into: UserId,
        from: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>> {
        if into == from {
            return Ok(None);
        }
        let mut tx = self.begin().await?;
        type Phone = (
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let mut users: Vec<Phone> = Vec::new();
        for id in [into.min(from), into.max(from)] {
            let row: Option<Phone> = sqlx::query_as(sql::LIVE_USER_PHONE)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
            match row {
                Some(r) => users.push(r),
                None => return Ok(None),
            }
        }
        let target = users.iter().find(|u| u.0 == into).cloned();
        let source = users.iter().find(|u| u.0 == from).cloned();
        let (Some(target), Some(source)) = (target, source) else {
            return Ok(None);
        };
        sqlx::query(sql::MOVE_IDENTITIES)
            .bind(into)
            .bind(from)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let moved: Vec<String> = sqlx::query_scalar(sql::MOVE_SESSIONS)
            .bind(into)
            .bind(from)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        erase_user(&mut tx, from, audit.now).await?;
        if let (None, Some(phone)) = (&target.1, &source.1) {
            sqlx::query(sql::MOVE_PHONE)
                .bind(phone)
                .bind(source.2.as_deref())
                .bind(source.3.as_deref().unwrap_or(""))
                .bind(source.4.unwrap_or(audit.now))
                .bind(into)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        let event = NewEvent {
            detail: Some(serde_json::json!({ "from": from }).to_string()),
            ..NewEvent::new(EventType::UserMerged, Some(into), audit)
        };
        record_event(&mut tx, &event, self.webhooks).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(AccountChange {
            tokens: moved.into_iter().map(TokenHash).collect(),
        }))
    }

    async fn delete_user(
        &self,
        id: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>> {
        let mut tx = self.begin().await?;
        let live: Option<(
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
        )> = sqlx::query_as(sql::LIVE_USER_PHONE)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        if live.is_none() {
            return Ok(None);
        }
        let query = sqlx::query(sql::DELETE_USER_SESSIONS).bind(id);
        let ended =
            end_sessions(&mut tx, query, EventType::SessionRevoked, "deleted", audit).await?;
        sqlx::query(sql::DELETE_IDENTITIES)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        erase_user(&mut tx, id, audit.now).await?;
        sqlx::query(sql::BLANK_EVENT_CLIENTS)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let event = NewEvent {
            client: None,
            ..NewEvent::new(EventType::UserDeleted, Some(id), audit)
        };
        record_event(&mut tx, &event, self.webhooks).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(AccountChange {
            tokens: ended.into_iter().map(|e| e.token_hash).collect(),
        }))
    }

    async fn events(&self, f: &EventFilter) -> StoreResult<Vec<EventRecord>> {
        let rows = sqlx::query(sql::EVENTS)
            .bind(f.user_id)
            .bind(f.kind.map(EventType::as_str))
            .bind(f.since)
            .bind(f.before)
            .bind(i64::from(f.limit))
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
        rows.iter().map(sql::event_from_row).collect()
    }
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        let rows = sqlx::query(sql::LIST_APPS)
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
        let mut apps = Vec::with_capacity(rows.len());
        for row in &rows {
            apps.extend(sql::app_from_row(row, &self.vault)?);
        }
        Ok(apps)
    }

    async fn add_app(&self, app: &NewAppRecord<'_>, now: Millis) -> StoreResult<bool> {
        let done = sqlx::query(sql::INSERT_APP)
            .bind(app.platform.as_str())
            .bind(app.appid.as_str())
            .bind(
                self.vault
                    .seal(Field::AppSecret, app.secret.expose_secret()),
            )
            .bind(app.alipay_public_key)
            .bind(now)
            .bind(
                app.phone_key
                    .map(|k| self.vault.seal(Field::PhoneKey, k.expose_secret())),
            )
            .execute(&self.writer)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn rotate_app(&self, r: &AppRotation<'_>, now: Millis) -> StoreResult<bool> {
        let done = sqlx::query(sql::ROTATE_APP)
            .bind(self.vault.seal(Field::AppSecret, r.secret.expose_secret()))
            .bind(r.alipay_public_key)
            .bind(now)
            .bind(r.appid.as_str())
            .bind(
                r.phone_key
                    .map(|k| self.vault.seal(Field::PhoneKey, k.expose_secret())),
            )
            .execute(&self.writer)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn remove_app(
        &self,
        appid: &AppId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<Vec<TokenHash>>> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(sql::DELETE_APP)
            .bind(appid.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let query = sqlx::query(sql::DELETE_APP_SESSIONS).bind(appid.as_str());
        let ended = end_sessions(
            &mut tx,
            query,
            EventType::SessionRevoked,
            "app_removed",
            audit,
        )
        .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(ended.into_iter().map(|e| e.token_hash).collect()))
    }
}

#[async_trait]
impl MaintenanceStore for SqliteStore {
    async fn unsealed(
        &self,
        kind: super::SealedColumn,
        skip_prefix: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String)>> {
        let query = match kind {
            super::SealedColumn::SessionKey => sql::UNSEALED_SESSIONS,
            super::SealedColumn::Phone => sql::UNSEALED_PHONES,
            super::SealedColumn::AppSecret => sql::UNSEALED_APP_SECRETS,
            super::SealedColumn::PhoneKey => sql::UNSEALED_PHONE_KEYS,
        };
        sqlx::query_as(query)
            .bind(format!("{skip_prefix}%"))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.writer)
            .await
            .map_err(unavailable)
    }

    async fn replace_sealed(
        &self,
        kind: super::SealedColumn,
        id: i64,
        old: &str,
        new: &str,
        phone_hash: &str,
    ) -> StoreResult<bool> {
        let done = match kind {
            super::SealedColumn::SessionKey
            | super::SealedColumn::AppSecret
            | super::SealedColumn::PhoneKey => {
                let statement = match kind {
                    super::SealedColumn::AppSecret => sql::RESEAL_APP_SECRET,
                    super::SealedColumn::PhoneKey => sql::RESEAL_PHONE_KEY,
                    _ => sql::RESEAL_SESSION,
                };
                sqlx::query(statement)
                    .bind(new)
                    .bind(id)
                    .bind(old)
                    .execute(&self.writer)
                    .await
            }
            super::SealedColumn::Phone => {
                sqlx::query(sql::RESEAL_PHONE)
                    .bind(new)
                    .bind(phone_hash)
                    .bind(id)
                    .bind(old)
                    .execute(&self.writer)
                    .await
            }
        }
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The WAL may hold page images from before a reseal: fold it into the database and empty it.
    async fn settle(&self) -> StoreResult<()> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(sql::PING)
            .execute(&self.reader)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    /// One node, one writer: nobody else can be cleaning, so there is no lock to take.
    async fn cleanup(&self, c: Cleanup) -> StoreResult<Option<(u64, u64)>> {
        let mut tx = self.begin().await?;
        let sessions = sqlx::query(sql::DELETE_EXPIRED_SESSIONS)
            .bind(c.now)
            .bind(c.idle_before)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::unavailable)?
            .rows_affected();
        let codes = sqlx::query(sql::DELETE_OLD_CODES)
            .bind(c.codes_before)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::unavailable)?
            .rows_affected();
        sqlx::query(sql::DELETE_OLD_EVENTS)
            .bind(c.events_before)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::unavailable)?;
        sqlx::query(sql::DELETE_OLD_DEAD_OUTBOX)
            .bind(c.events_before)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::unavailable)?;
        tx.commit().await.map_err(StoreError::unavailable)?;
        Ok(Some((sessions, codes)))
    }

    async fn stats(&self, now: Millis) -> StoreResult<Stats> {
        let row = sqlx::query(sql::STATS)
            .bind(now)
            .fetch_one(&self.reader)
            .await
            .map_err(StoreError::unavailable)?;
        sql::stats_from_row(&row)
    }

    async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.writes.send(Write::Stop(ack)).await.is_ok() {
            let _ = done.await;
        }
        self.writer.close().await;
        self.reader.close().await;
    }
}

#[cfg(test)]
mod tests;

sql::impl_outbox_store!(SqliteStore, writer, reader);
