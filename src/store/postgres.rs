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

super::sql::impl_sql_store!(
    PgStore,
    sqlx::postgres::PgRow,
    sqlx::PgConnection,
    CLEANUP_LOCK
);

impl PgStore {
    /// One transaction per login: PostgreSQL runs concurrent writers side by side.
    async fn record_login_impl(&self, l: NewLogin<'_>) -> StoreResult<LoginRecord> {
        let mut tx = self.writer.begin().await.map_err(StoreError::unavailable)?;
        let record = login_statements(&mut tx, &l).await?;
        tx.commit().await.map_err(StoreError::unavailable)?;
        Ok(record)
    }
}
