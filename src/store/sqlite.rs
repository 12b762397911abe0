//! The embedded store: one SQLite file in WAL mode with durable commits (`synchronous=FULL`).
//!
//! SQLite allows one writer at a time. Rather than let concurrent write transactions fail with
//! SQLITE_BUSY (a deferred transaction that upgrades to a write lock gets no busy-wait), all
//! writes go through a pool of exactly one connection, and reads use a separate pool that WAL
//! lets run alongside the writer.
//!
//! Logins are group-committed: a writer task takes every login waiting at that moment, runs each
//! inside a savepoint of one transaction, commits once (one fsync for the batch), and only then
//! answers each caller. Durability is unchanged — no caller hears success before its commit —
//! while the fsync, the cost that bounded logins to one per disk flush, is shared.

use futures::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    logins: mpsc::Sender<Job>,
}

/// How many logins one commit may carry.
const MAX_BATCH: usize = 128;

/// A login waiting for the writer task, with everything it writes owned.
struct Job {
    appid: AppId,
    openid: OpenId,
    unionid: Option<UnionId>,
    session_key: SessionKey,
    token_hash: TokenHash,
    code_hash: String,
    previous: Option<TokenHash>,
    now: Millis,
    expires_at: Millis,
    reply: oneshot::Sender<StoreResult<LoginRecord>>,
}

impl Job {
    fn view(&self) -> NewLogin<'_> {
        NewLogin {
            appid: &self.appid,
            openid: &self.openid,
            unionid: self.unionid.as_ref(),
            session_key: &self.session_key,
            token_hash: &self.token_hash,
            code_hash: &self.code_hash,
            previous: self.previous.as_ref(),
            now: self.now,
            expires_at: self.expires_at,
        }
    }
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
        let (logins, jobs) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(group_commit(writer.clone(), jobs));
        Ok(Self {
            writer,
            reader,
            logins,
        })
    }

    async fn record_login_impl(&self, l: NewLogin<'_>) -> StoreResult<LoginRecord> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            appid: l.appid.clone(),
            openid: l.openid.clone(),
            unionid: l.unionid.cloned(),
            session_key: l.session_key.clone(),
            token_hash: l.token_hash.clone(),
            code_hash: l.code_hash.to_owned(),
            previous: l.previous.cloned(),
            now: l.now,
            expires_at: l.expires_at,
            reply,
        };
        self.logins
            .send(job)
            .await
            .map_err(|_| StoreError::unavailable("the login writer stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::unavailable("the login writer stopped"))?
    }
}

/// The writer task: batches of waiting logins, one transaction and one commit each.
async fn group_commit(pool: SqlitePool, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let results = commit_batch(&pool, &batch).await;
        for (job, result) in batch.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

/// Each login in its own savepoint, so one refused login (a code used meanwhile) does not undo
/// the others; if the commit fails, every login in the batch fails.
fn fail_all(n: usize, e: &dyn std::fmt::Display) -> Vec<StoreResult<LoginRecord>> {
    (0..n).map(|_| Err(StoreError::unavailable(e))).collect()
}

fn commit_batch<'a>(
    pool: &'a SqlitePool,
    batch: &'a [Job],
) -> BoxFuture<'a, Vec<StoreResult<LoginRecord>>> {
    Box::pin(async move {
        let mut tx = match pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return fail_all(batch.len(), &e),
        };
        let mut results = Vec::with_capacity(batch.len());
        for job in batch {
            if let Err(e) = sqlx::query("SAVEPOINT login").execute(&mut *tx).await {
                return fail_all(batch.len(), &e);
            }
            let result = login_statements(&mut tx, &job.view()).await;
            if result.is_err() {
                if let Err(e) = sqlx::query("ROLLBACK TO SAVEPOINT login")
                    .execute(&mut *tx)
                    .await
                {
                    return fail_all(batch.len(), &e);
                }
            }
            if let Err(e) = sqlx::query("RELEASE SAVEPOINT login")
                .execute(&mut *tx)
                .await
            {
                return fail_all(batch.len(), &e);
            }
            results.push(result);
        }
        match tx.commit().await {
            Ok(()) => results,
            Err(e) => fail_all(batch.len(), &e),
        }
    })
}

// One node, one writer: nobody else can be cleaning.
super::sql::impl_sql_store!(
    SqliteStore,
    sqlx::sqlite::SqliteRow,
    sqlx::SqliteConnection,
    "SELECT TRUE"
);
