//! The store for several instances: PostgreSQL, chosen by a `postgres://` URL.
//! One pool serves reads and writes; PostgreSQL's row locks and the unique keys keep logins
//! atomic across instances. The statements are `sql.rs`'s, shared with SQLite.

use super::sql::{self, Ended, NewEvent};
use super::{
    AccountChange, Adoption, AppRecord, AppRotation, AppStore, Audit, Avatar, Cleanup, EventFilter,
    EventRecord, LoginRecord, LoginStore, MaintenanceStore, NewAppRecord, NewLogin, PhoneBinding,
    ProfileChange, SessionRecord, SessionStore, SessionSummary, Stats, StoreError, StoreOptions,
    StoreResult, TakeOver, UserFilter, UserRecord, UserStore,
};
use crate::clock::Millis;
use crate::domain::{AppId, CodeHash, EventType, OpenId, Platform, TokenHash, UnionId, UserId};
use crate::vault::{Field, Vault};
use async_trait::async_trait;
use futures::TryStreamExt;
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Row};
use std::sync::Arc;
use std::time::Duration;

mod logins;

pub struct PgStore {
    pool: PgPool,
    logins: logins::Logins,
    vault: Arc<Vault>,
    webhooks: bool,
}

/// A pooled connection idle this long is pinged before it is handed out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// Held for the cleanup transaction; other instances skip their turn meanwhile.
const CLEANUP_LOCK: &str = "SELECT pg_try_advisory_xact_lock(7238140)";

impl PgStore {
    pub async fn open(url: &str, options: StoreOptions) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // Short: when PostgreSQL is down, requests should get a 503 quickly, not queue.
            .acquire_timeout(Duration::from_secs(3))
            // sqlx pings every connection it hands out by default: a round trip before each
            // query. A connection in steady use has just answered; only one that sat idle (a
            // restart of PostgreSQL may have ended it meanwhile) is pinged first.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        use sqlx::Connection;
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            logins: logins::Logins::start(pool.clone()),
            pool,
            vault: options.vault,
            webhooks: options.webhooks,
        })
    }
}

/// The advisory locks a login takes: its identity's (the same openid seen with and without a
/// unionid), and its person's by unionid (two apps of one person). Taken in that order, the
/// identity first, so two logins never wait on each other in a circle.
fn person_lock_keys(l: &NewLogin<'_>) -> (i64, i64) {
    let identity = identity_lock_key(l.platform, l.appid, l.openid);
    let person = match l.unionid {
        Some(u) => person_lock_key(l.platform, u),
        None => identity,
    };
    (identity, person)
}

fn lock_key(text: String) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn identity_lock_key(platform: Platform, appid: &AppId, openid: &OpenId) -> i64 {
    lock_key(format!(
        "{}\0o\0{}\0{}",
        platform.as_str(),
        appid.as_str(),
        openid.0
    ))
}

fn person_lock_key(platform: Platform, unionid: &UnionId) -> i64 {
    lock_key(format!("{}\0u\0{}", platform.as_str(), unionid.0))
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::unavailable(e)
}

/// Writes the event; returns its id.
async fn insert_event(tx: &mut PgConnection, e: &NewEvent<'_>) -> StoreResult<i64> {
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

/// The webhook of event `id`, in the event's transaction.
async fn insert_outbox(tx: &mut PgConnection, id: i64, e: &NewEvent<'_>) -> StoreResult<()> {
    sqlx::query(sql::INSERT_OUTBOX)
        .bind(id)
        .bind(e.user_id)
        .bind(e.kind.as_str())
        .bind(e.webhook_body(id))
        .bind(e.at)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Writes a webhook event, and its outbox row when webhooks are on.
async fn record_event(tx: &mut PgConnection, e: &NewEvent<'_>, webhooks: bool) -> StoreResult<()> {
    let id = insert_event(tx, e).await?;
    if webhooks && e.kind.is_webhook() {
        insert_outbox(tx, id, e).await?;
    }
    Ok(())
}

/// Runs a revoking statement (`RETURNING` the ended sessions) and writes an event for each.
async fn end_sessions<'q>(
    tx: &mut PgConnection,
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
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
impl LoginStore for PgStore {
    /// Batched with the checks queued beside it: see `postgres/logins.rs`.
    async fn is_code_used(&self, code: &CodeHash) -> StoreResult<bool> {
        self.logins.is_code_used(code.as_str()).await
    }

    async fn mark_code_used(&self, appid: &AppId, code: &CodeHash, now: Millis) -> StoreResult<()> {
        sqlx::query(sql::INSERT_USED_CODE)
            .bind(code.as_str())
            .bind(appid.as_str())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn codes_used_since(
        &self,
        since: Millis,
        each: &mut (dyn for<'c> FnMut(&'c CodeHash, Millis) + Send),
    ) -> StoreResult<()> {
        let mut rows = sqlx::query(sql::CODES_USED_SINCE)
            .bind(since)
            .fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(unavailable)? {
            let code: String = row.try_get(0).map_err(unavailable)?;
            let at: i64 = row.try_get(1).map_err(unavailable)?;
            each(&CodeHash(code), at);
        }
        Ok(())
    }

    /// Group-committed with the logins queued beside it: see `postgres/logins.rs`.
    async fn record_login(&self, l: NewLogin<'_>) -> StoreResult<LoginRecord> {
        let sealed = self.vault.seal(Field::SessionKey, l.session_key.expose());
        self.logins.record(&l, sealed, self.webhooks).await
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
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        if exists.is_none() {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // The login function's locks for both identities and the person: a first login of `to`
        // beside this waits for it (or it for that), instead of meeting it at the unique index.
        let mut keys = vec![
            identity_lock_key(take.platform, take.appid, take.from),
            identity_lock_key(take.platform, take.appid, take.to),
        ];
        keys.extend(take.unionid.map(|u| person_lock_key(take.platform, u)));
        sqlx::query(
            "SELECT pg_advisory_xact_lock(k) FROM \
             (SELECT DISTINCT k FROM unnest($1::bigint[]) AS k ORDER BY k) AS keys",
        )
        .bind(&keys)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let adopted = sqlx::query_as::<_, (i64, i64)>(sql::TAKE_OVER_IDENTITY)
            .bind(&take.to.0)
            .bind(take.unionid.map(|u| u.0.as_str()))
            .bind(take.platform.as_str())
            .bind(take.appid.as_str())
            .bind(&take.from.0)
            .bind(i64::from(take.link_by_unionid))
            .fetch_optional(&mut *tx)
            .await;
        // The signed-in identity was made meanwhile by a login of its own: it stays as it is.
        let adopted = match adopted {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => None,
            other => other.map_err(unavailable)?,
        };
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
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
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
impl SessionStore for PgStore {
    async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(sql::FIND_SESSION)
            .bind(&token.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref()
            .map(|r| sql::session_from_row(r, &self.vault))
            .transpose()
    }

    async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()> {
        sqlx::query(sql::TOUCH_SESSION)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn revoke_session(&self, token: &TokenHash, audit: Audit<'_>) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let query = sqlx::query(sql::DELETE_USER_SESSIONS).bind(user);
        let ended = end_sessions(&mut tx, query, EventType::SessionRevoked, "all", audit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(ended.into_iter().map(|e| e.token_hash).collect())
    }

    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<SessionSummary>> {
        let rows = sqlx::query(sql::LIST_SESSIONS)
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(sql::summary_from_row).collect()
    }
}

impl PgStore {
    async fn with_identities(&self, mut user: UserRecord) -> StoreResult<UserRecord> {
        let rows = sqlx::query(sql::USER_IDENTITIES)
            .bind(user.id)
            .fetch_all(&self.pool)
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
async fn erase_user(tx: &mut PgConnection, id: UserId, now: Millis) -> StoreResult<()> {
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
async fn delete_unused_avatar(tx: &mut PgConnection, file: &str) -> StoreResult<()> {
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
impl UserStore for PgStore {
    async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(sql::FIND_USER)
            .bind(id)
            .fetch_optional(&self.pool)
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
            .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // One binding of a number at a time, so two users cannot both pass the check below. By
        // both hashes, in order: during a key rotation instances may hash with different keys.
        let (first, second) = if current_hash <= old_hash {
            (&current_hash, &old_hash)
        } else {
            (&old_hash, &current_hash)
        };
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext($1)), pg_advisory_xact_lock(hashtext($2))",
        )
        .bind(first)
        .bind(second)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn avatar(&self, sha256: &str) -> StoreResult<Option<Avatar>> {
        let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(sql::GET_AVATAR)
            .bind(sha256)
            .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        type Phone = (
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let mut users: Vec<Phone> = Vec::new();
        // Locked in id order, so two merges of the same pair cannot deadlock.
        for id in [into.min(from), into.max(from)] {
            let row: Option<Phone> =
                sqlx::query_as(&format!("{} FOR UPDATE", sql::LIVE_USER_PHONE))
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let live: Option<(
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
        )> = sqlx::query_as(&format!("{} FOR UPDATE", sql::LIVE_USER_PHONE))
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
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(sql::event_from_row).collect()
    }
}

#[async_trait]
impl AppStore for PgStore {
    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        let rows = sqlx::query(sql::LIST_APPS)
            .fetch_all(&self.pool)
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
            .execute(&self.pool)
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
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn remove_app(
        &self,
        appid: &AppId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<Vec<TokenHash>>> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
impl MaintenanceStore for PgStore {
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
            .fetch_all(&self.pool)
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
                    .execute(&self.pool)
                    .await
            }
            super::SealedColumn::Phone => {
                sqlx::query(sql::RESEAL_PHONE)
                    .bind(new)
                    .bind(phone_hash)
                    .bind(id)
                    .bind(old)
                    .execute(&self.pool)
                    .await
            }
        }
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    fn vault(&self) -> &Vault {
        &self.vault
    }

    async fn settle(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(sql::PING)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn cleanup(&self, c: Cleanup) -> StoreResult<Option<(u64, u64)>> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let mine: bool = sqlx::query_scalar(CLEANUP_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        if !mine {
            return Ok(None);
        }
        let sessions = sqlx::query(sql::DELETE_EXPIRED_SESSIONS)
            .bind(c.now)
            .bind(c.idle_before)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected();
        let codes = sqlx::query(sql::DELETE_OLD_CODES)
            .bind(c.codes_before)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected();
        sqlx::query(sql::DELETE_OLD_EVENTS)
            .bind(c.events_before)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(sql::DELETE_OLD_DEAD_OUTBOX)
            .bind(c.events_before)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some((sessions, codes)))
    }

    async fn stats(&self, now: Millis) -> StoreResult<Stats> {
        let row = sqlx::query(sql::STATS)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        sql::stats_from_row(&row)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

sql::impl_outbox_store!(PgStore, pool, pool);
