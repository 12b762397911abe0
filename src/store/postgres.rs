//! The store for several instances: PostgreSQL, chosen by a `postgres://` URL.
//! One pool serves reads and writes; PostgreSQL's row locks and the unique keys keep logins
//! atomic across instances.

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::time::Duration;

pub struct PgStore {
    writer: PgPool,
    reader: PgPool,
}

impl PgStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // Short: when PostgreSQL is down, requests should get a 503 quickly, not queue.
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
        })
    }
}

/// Held for the cleanup transaction; other instances skip their turn meanwhile.
const CLEANUP_LOCK: &str = "SELECT pg_try_advisory_xact_lock(7238140)";

super::sql::impl_sql_store!(PgStore, sqlx::postgres::PgRow, CLEANUP_LOCK);

/// The statements of one login, inside a transaction the caller commits: used code, user
/// insert-or-update, revoking the replaced token, the new session. (SQLite does the same for
/// a whole batch of logins at once: `sqlite.rs`.)
// Boxed with explicit lifetimes: a plain async fn here trips the compiler's higher-ranked
// Send check inside the async-trait future.
fn login_statements<'a>(
    tx: &'a mut sqlx::PgConnection,
    l: &'a NewLogin<'a>,
) -> futures::future::BoxFuture<'a, StoreResult<LoginRecord>> {
    Box::pin(async move {
        let fresh = sqlx::query(
        "INSERT INTO used_codes (code_hash, appid, used_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(l.code_hash)
    .bind(l.appid.as_str())
    .bind(l.now)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::unavailable)?;
        if fresh.rows_affected() == 0 {
            return Err(StoreError::CodeUsed);
        }
        let unionid = l.unionid.map(|u| u.0.as_str());
        // Insert-or-nothing then update, rather than one upsert, so we know whether the
        // user is new; the unique (appid, openid) key makes it one row under any race.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO users (appid, openid, unionid, created_at, last_login_at) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (appid, openid) DO NOTHING RETURNING id",
        )
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
                let id: i64 = sqlx::query_scalar(
                    "UPDATE users SET last_login_at = $1, unionid = COALESCE($2, unionid) \
                 WHERE appid = $3 AND openid = $4 RETURNING id",
                )
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
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(&previous.0)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::unavailable)?;
        }
        sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, appid, session_key, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $5, $6)",
    )
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
    })
}

impl PgStore {
    /// One transaction per login: PostgreSQL runs concurrent writers side by side.
    async fn record_login_impl(&self, l: NewLogin<'_>) -> StoreResult<LoginRecord> {
        let mut tx = self.writer.begin().await.map_err(StoreError::unavailable)?;
        let record = login_statements(&mut tx, &l).await?;
        tx.commit().await.map_err(StoreError::unavailable)?;
        Ok(record)
    }

    async fn touch_session_impl(&self, id: i64, now: Millis) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }
}
