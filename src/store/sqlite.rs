//! The embedded store: one SQLite file in WAL mode with durable commits (`synchronous=FULL`).
//!
//! SQLite allows one writer at a time. Rather than let concurrent write transactions fail with
//! SQLITE_BUSY (a deferred transaction that upgrades to a write lock gets no busy-wait), all
//! writes go through a pool of exactly one connection, and reads use a separate pool that WAL
//! lets run alongside the writer.
//!
//! Logins are group-committed: a writer task takes every login waiting at that moment, writes
//! them together in one transaction (five multi-row statements, see `commit_batch`), commits once
//! (one fsync for the batch), and only then answers each caller. Durability is unchanged — no caller hears success before its commit —
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

/// If the commit (or any statement) fails, every login in the batch fails: none is answered
/// before the batch is durable, and a failed batch leaves nothing behind.
fn fail_all(n: usize, e: &dyn std::fmt::Display) -> Vec<StoreResult<LoginRecord>> {
    (0..n).map(|_| Err(StoreError::unavailable(e))).collect()
}

/// A batch of logins in one transaction, with a fixed number of statements whatever its size:
/// each statement is a round trip to sqlx's SQLite thread, and with a statement per login those
/// round trips, not SQLite, bounded login throughput. The same writes as `login_statements` in
/// `postgres.rs`, as multi-row statements:
/// 1. record every code as used; a code already there (or twice in the batch) is `CodeUsed`;
/// 2. find which of the batch's users exist already (the others are new);
/// 3. insert-or-update those users (one row per user, however many of its logins are here);
/// 4. delete the tokens the logins replace;
/// 5. insert the new sessions.
///
/// One writer, inside one transaction: nothing can change between the steps.
fn commit_batch<'a>(
    pool: &'a SqlitePool,
    batch: &'a [Job],
) -> BoxFuture<'a, Vec<StoreResult<LoginRecord>>> {
    Box::pin(async move {
        let mut tx = match pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return fail_all(batch.len(), &e),
        };
        let results = match batch_statements(&mut tx, batch).await {
            Ok(results) => results,
            // Dropping the transaction rolls it back.
            Err(e) => return fail_all(batch.len(), &e),
        };
        match tx.commit().await {
            Ok(()) => results,
            Err(e) => fail_all(batch.len(), &e),
        }
    })
}

/// `$1, $2, …` groups for a multi-row VALUES list: `rows` rows of `cols` parameters each.
fn values(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let ps: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", ps.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn batch_statements(
    tx: &mut sqlx::SqliteConnection,
    batch: &[Job],
) -> Result<Vec<StoreResult<LoginRecord>>, sqlx::Error> {
    use sqlx::Row;
    use std::collections::{HashMap, HashSet};

    // 1. Codes. Within the batch, the first login with a code has it.
    let sql = format!(
        "INSERT INTO used_codes (code_hash, appid, used_at) VALUES {} \
         ON CONFLICT DO NOTHING RETURNING code_hash",
        values(batch.len(), 3)
    );
    let mut q = sqlx::query(&sql);
    for j in batch {
        q = q.bind(&j.code_hash).bind(j.appid.as_str()).bind(j.now);
    }
    let mut fresh: HashSet<String> = q
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    let admitted: Vec<&Job> = batch
        .iter()
        .filter(|j| fresh.remove(&j.code_hash))
        .collect();
    if admitted.is_empty() {
        return Ok(batch.iter().map(|_| Err(StoreError::CodeUsed)).collect());
    }

    // 2 and 3. Users: one row each, the latest login time and any unionid WeChat gave.
    let mut users: Vec<(&AppId, &OpenId, Option<&UnionId>, Millis)> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for j in &admitted {
        let key = (j.appid.as_str(), j.openid.0.as_str());
        match index.get(&key) {
            Some(&i) => {
                let u = &mut users[i];
                u.2 = j.unionid.as_ref().or(u.2);
                u.3 = u.3.max(j.now);
            }
            None => {
                index.insert(key, users.len());
                users.push((&j.appid, &j.openid, j.unionid.as_ref(), j.now));
            }
        }
    }
    let sql = format!(
        "SELECT appid, openid FROM users WHERE (appid, openid) IN (VALUES {})",
        values(users.len(), 2)
    );
    let mut q = sqlx::query(&sql);
    for u in &users {
        q = q.bind(u.0.as_str()).bind(&u.1 .0);
    }
    let existing: HashSet<(String, String)> = q
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let sql = format!(
        "INSERT INTO users (appid, openid, unionid, created_at, last_login_at) VALUES {} \
         ON CONFLICT (appid, openid) DO UPDATE SET last_login_at = excluded.last_login_at, \
         unionid = COALESCE(excluded.unionid, users.unionid) RETURNING id, appid, openid",
        values(users.len(), 5)
    );
    let mut q = sqlx::query(&sql);
    for u in &users {
        q = q
            .bind(u.0.as_str())
            .bind(&u.1 .0)
            .bind(u.2.map(|x| x.0.as_str()))
            .bind(u.3)
            .bind(u.3);
    }
    let ids: HashMap<(String, String), UserId> = q
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok(((r.try_get(1)?, r.try_get(2)?), r.try_get(0)?)))
        .collect::<Result<_, sqlx::Error>>()?;

    // 4. Replaced tokens.
    let previous: Vec<&TokenHash> = admitted
        .iter()
        .filter_map(|j| j.previous.as_ref())
        .collect();
    if !previous.is_empty() {
        let ps: Vec<String> = (1..=previous.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "DELETE FROM sessions WHERE token_hash IN ({})",
            ps.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for p in &previous {
            q = q.bind(&p.0);
        }
        q.execute(&mut *tx).await?;
    }

    // 5. Sessions, and each login's answer.
    let sql = format!(
        "INSERT INTO sessions (token_hash, user_id, appid, session_key, created_at, last_seen_at, expires_at) \
         VALUES {}",
        values(admitted.len(), 7)
    );
    let mut q = sqlx::query(&sql);
    let mut answers: HashMap<&str, LoginRecord> = HashMap::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for j in &admitted {
        let key = (j.appid.as_str().to_owned(), j.openid.0.clone());
        let user_id = *ids
            .get(&key)
            .ok_or_else(|| sqlx::Error::Protocol("upserted user missing from RETURNING".into()))?;
        // New only for the first of its logins in the batch, as if they had run one by one.
        let new_user = !existing.contains(&key) && seen.insert(key);
        answers.insert(&j.code_hash, LoginRecord { user_id, new_user });
        q = q
            .bind(&j.token_hash.0)
            .bind(user_id)
            .bind(j.appid.as_str())
            .bind(j.session_key.expose())
            .bind(j.now)
            .bind(j.now)
            .bind(j.expires_at);
    }
    q.execute(&mut *tx).await?;

    Ok(batch
        .iter()
        .map(|j| match answers.remove(j.code_hash.as_str()) {
            Some(record) => Ok(record),
            None => Err(StoreError::CodeUsed),
        })
        .collect())
}

// One node, one writer: nobody else can be cleaning.
super::sql::impl_sql_store!(SqliteStore, sqlx::sqlite::SqliteRow, "SELECT TRUE");

#[cfg(test)]
mod tests;
