//! The store for several instances: PostgreSQL, chosen by a `postgres://` URL.
//! One pool serves reads and writes; PostgreSQL's row locks and the unique keys keep logins
//! atomic across instances. The statements are `sql.rs`'s, shared with SQLite.

use super::sql;
use super::{
    Cleanup, LoginRecord, LoginStore, MaintenanceStore, NewLogin, SessionRecord, SessionStore,
    SessionSummary, Stats, StoreError, StoreResult, UserFilter, UserRecord, UserStore,
};
use crate::clock::Millis;
use crate::domain::{AppId, CodeHash, TokenHash, UserId};
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Row};
use std::time::Duration;

pub struct PgStore {
    pool: PgPool,
}

/// Held for the cleanup transaction; other instances skip their turn meanwhile.
const CLEANUP_LOCK: &str = "SELECT pg_try_advisory_xact_lock(7238140)";

impl PgStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // Short: when PostgreSQL is down, requests should get a 503 quickly, not queue.
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

/// The statements of one login, inside a transaction the caller commits: used code, user
/// insert-or-update, revoking the replaced token, the new session. (SQLite runs the same
/// statements for a whole batch of logins at once: `sqlite/writer.rs`.)
async fn login_statements(tx: &mut PgConnection, l: &NewLogin<'_>) -> StoreResult<LoginRecord> {
    let fresh = sqlx::query(sql::INSERT_USED_CODE)
        .bind(l.code_hash.as_str())
        .bind(l.appid.as_str())
        .bind(l.now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::unavailable)?;
    if fresh.rows_affected() == 0 {
        return Err(StoreError::CodeUsed);
    }
    let unionid = l.unionid.map(|u| u.0.as_str());
    let inserted: Option<i64> = sqlx::query_scalar(sql::INSERT_USER)
        .bind(l.appid.as_str())
        .bind(&l.openid.0)
        .bind(unionid)
        .bind(l.now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::unavailable)?;
    let (user_id, new_user) = match inserted {
        Some(id) => (id, true),
        None => {
            let id: i64 = sqlx::query_scalar(sql::UPDATE_USER_LOGIN)
                .bind(l.now)
                .bind(unionid)
                .bind(l.appid.as_str())
                .bind(&l.openid.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::unavailable)?;
            (id, false)
        }
    };
    if let Some(previous) = l.previous {
        sqlx::query(sql::DELETE_SESSION)
            .bind(&previous.0)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::unavailable)?;
    }
    sqlx::query(sql::INSERT_SESSION)
        .bind(&l.token_hash.0)
        .bind(user_id)
        .bind(l.appid.as_str())
        .bind(l.session_key.expose())
        .bind(l.now)
        .bind(l.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::unavailable)?;
    Ok(LoginRecord { user_id, new_user })
}

#[async_trait]
impl LoginStore for PgStore {
    async fn is_code_used(&self, code: &CodeHash) -> StoreResult<bool> {
        let row = sqlx::query(sql::IS_CODE_USED)
            .bind(code.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(row.is_some())
    }

    async fn mark_code_used(&self, appid: &AppId, code: &CodeHash, now: Millis) -> StoreResult<()> {
        sqlx::query(sql::INSERT_USED_CODE)
            .bind(code.as_str())
            .bind(appid.as_str())
            .bind(now)
            .execute(&self.pool)
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
            .fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(StoreError::unavailable)? {
            let code: String = row.try_get(0).map_err(StoreError::unavailable)?;
            let at: i64 = row.try_get(1).map_err(StoreError::unavailable)?;
            each(&CodeHash(code), at);
        }
        Ok(())
    }

    /// One transaction per login: PostgreSQL runs concurrent writers side by side.
    async fn record_login(&self, l: NewLogin<'_>) -> StoreResult<LoginRecord> {
        let mut tx = self.pool.begin().await.map_err(StoreError::unavailable)?;
        let record = login_statements(&mut tx, &l).await?;
        tx.commit().await.map_err(StoreError::unavailable)?;
        Ok(record)
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(sql::FIND_SESSION)
            .bind(&token.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        row.as_ref().map(sql::session_from_row).transpose()
    }

    async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()> {
        sqlx::query(sql::TOUCH_SESSION)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn revoke_session(&self, token: &TokenHash) -> StoreResult<bool> {
        let done = sqlx::query(sql::DELETE_SESSION)
            .bind(&token.0)
            .execute(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_session_by_id(&self, id: i64) -> StoreResult<Option<TokenHash>> {
        let hash: Option<String> = sqlx::query_scalar(sql::DELETE_SESSION_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(hash.map(TokenHash))
    }

    async fn revoke_user_sessions(&self, user: UserId) -> StoreResult<Vec<TokenHash>> {
        let hashes: Vec<String> = sqlx::query_scalar(sql::DELETE_USER_SESSIONS)
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(hashes.into_iter().map(TokenHash).collect())
    }

    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<SessionSummary>> {
        let rows = sqlx::query(sql::LIST_SESSIONS)
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        rows.iter().map(sql::summary_from_row).collect()
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(sql::FIND_USER)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        row.as_ref().map(sql::user_from_row).transpose()
    }

    async fn find_users(&self, f: &UserFilter) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query(sql::FIND_USERS)
            .bind(f.id)
            .bind(f.openid.as_deref())
            .bind(f.unionid.as_deref())
            .bind(f.phone.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        rows.iter().map(sql::user_from_row).collect()
    }

    async fn set_phone(&self, id: UserId, phone: &str, country_code: &str) -> StoreResult<()> {
        sqlx::query(sql::SET_PHONE)
            .bind(phone)
            .bind(country_code)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl MaintenanceStore for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(sql::PING)
            .execute(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn cleanup(&self, c: Cleanup) -> StoreResult<Option<(u64, u64)>> {
        let mut tx = self.pool.begin().await.map_err(StoreError::unavailable)?;
        let mine: bool = sqlx::query_scalar(CLEANUP_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::unavailable)?;
        if !mine {
            return Ok(None);
        }
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
        tx.commit().await.map_err(StoreError::unavailable)?;
        Ok(Some((sessions, codes)))
    }

    async fn stats(&self, now: Millis) -> StoreResult<Stats> {
        let row = sqlx::query(sql::STATS)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        sql::stats_from_row(&row)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
