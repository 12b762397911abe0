//! The embedded store: one SQLite file in WAL mode with durable commits (`synchronous=FULL`).
//!
//! SQLite allows one writer at a time. Rather than let concurrent write transactions fail with
//! SQLITE_BUSY (a deferred transaction that upgrades to a write lock gets no busy-wait), all
//! writes go through a pool of exactly one connection, and reads use a separate pool that WAL
//! lets run alongside the writer.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
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
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }
}

// One node, one writer: nobody else can be cleaning.
super::sql::impl_sql_store!(SqliteStore, sqlx::sqlite::SqliteRow, "SELECT TRUE");
