//! The embedded store: one SQLite file in WAL mode with durable commits (`synchronous=FULL`).
//!
//! The hot writes — logins and session touches — are group-committed by the writer thread
//! (`sqlite/writer.rs`). Reads use a sqlx pool that WAL lets run alongside it. The rare writes
//! (logout, revocations, `/phone`, cleanup, remembering a code WeChat refused) go through a
//! one-connection sqlx pool; each is a single statement or a transaction whose first statement
//! writes, so when it meets the writer thread's lock it waits (`busy_timeout`) rather than
//! failing. The statements are `sql.rs`'s, shared with PostgreSQL.

mod writer;

use super::sql;
use super::{
    Cleanup, LoginRecord, LoginStore, MaintenanceStore, NewLogin, SessionRecord, SessionStore,
    SessionSummary, Stats, StoreError, StoreResult, UserFilter, UserRecord, UserStore,
};
use crate::clock::Millis;
use crate::domain::{AppId, CodeHash, TokenHash, UserId};
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use writer::Write;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    writes: mpsc::Sender<Write>,
}

impl SqliteStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma(
                "wal_autocheckpoint",
                writer::WAL_FALLBACK_FRAMES.to_string(),
            );
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
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
        })
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
            appid: l.appid.clone(),
            openid: l.openid.clone(),
            unionid: l.unionid.cloned(),
            session_key: l.session_key.clone(),
            token_hash: l.token_hash.clone(),
            code_hash: l.code_hash.clone(),
            previous: l.previous.cloned(),
            now: l.now,
            expires_at: l.expires_at,
        });
        self.submit(|reply| Write::Login(login, reply)).await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(sql::FIND_SESSION)
            .bind(&token.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(StoreError::unavailable)?;
        row.as_ref().map(sql::session_from_row).transpose()
    }

    async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()> {
        self.submit(|reply| Write::Touch { id, now, reply }).await
    }

    async fn revoke_session(&self, token: &TokenHash) -> StoreResult<bool> {
        let done = sqlx::query(sql::DELETE_SESSION)
            .bind(&token.0)
            .execute(&self.writer)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_session_by_id(&self, id: i64) -> StoreResult<Option<TokenHash>> {
        let hash: Option<String> = sqlx::query_scalar(sql::DELETE_SESSION_BY_ID)
            .bind(id)
            .fetch_optional(&self.writer)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(hash.map(TokenHash))
    }

    async fn revoke_user_sessions(&self, user: UserId) -> StoreResult<Vec<TokenHash>> {
        let hashes: Vec<String> = sqlx::query_scalar(sql::DELETE_USER_SESSIONS)
            .bind(user)
            .fetch_all(&self.writer)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(hashes.into_iter().map(TokenHash).collect())
    }

    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<SessionSummary>> {
        let rows = sqlx::query(sql::LIST_SESSIONS)
            .bind(user)
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::unavailable)?;
        rows.iter().map(sql::summary_from_row).collect()
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(sql::FIND_USER)
            .bind(id)
            .fetch_optional(&self.reader)
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
            .fetch_all(&self.reader)
            .await
            .map_err(StoreError::unavailable)?;
        rows.iter().map(sql::user_from_row).collect()
    }

    async fn set_phone(&self, id: UserId, phone: &str, country_code: &str) -> StoreResult<()> {
        sqlx::query(sql::SET_PHONE)
            .bind(phone)
            .bind(country_code)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl MaintenanceStore for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(sql::PING)
            .execute(&self.reader)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    /// One node, one writer: nobody else can be cleaning, so there is no lock to take.
    async fn cleanup(&self, c: Cleanup) -> StoreResult<Option<(u64, u64)>> {
        let mut tx = self.writer.begin().await.map_err(StoreError::unavailable)?;
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
