//! The embedded store: one SQLite file in WAL mode with durable commits (`synchronous=FULL`).
//!
//! The hot writes — logins and session touches — are group-committed by one writer thread
//! with its own connection (rusqlite, so a batch runs start to finish on that thread with no
//! hand-off per statement). It takes every write waiting at that moment, runs them one after
//! another in one `BEGIN IMMEDIATE` transaction, commits once (one fsync for the batch), and
//! only then answers each caller. Durability is unchanged — no caller hears success before its
//! commit — while the fsync, the cost that bounded logins to one per disk flush, is shared.
//!
//! WAL checkpoints (copying committed pages from the WAL into the database file, with an fsync
//! of their own) run on a second thread, so commits rarely wait behind them: the writer
//! checkpoints by itself only once the WAL passes `WAL_FALLBACK_FRAMES` pages, when that thread
//! has already copied nearly all of it (see there).
//!
//! Reads use a separate sqlx pool that WAL lets run alongside the writer. The rare writes
//! (logout, revocations, `/phone`, cleanup, remembering a code WeChat refused) go through a
//! one-connection sqlx pool; each is a single statement or a transaction whose first statement
//! writes, so when it meets the writer thread's lock it waits (`busy_timeout`) rather than
//! failing.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    writes: mpsc::Sender<Write>,
}

/// How many writes one commit may carry.
const MAX_BATCH: usize = 128;

/// WAL size (in pages, 16 MiB at SQLite's 4 KiB default) at which a committing connection
/// checkpoints by itself. Under steady load the checkpoint thread never quite catches up with
/// the writer, and the WAL can only start over from its beginning once a checkpoint has copied
/// all of it; by then the checkpoint thread has copied nearly everything, so this checkpoint is
/// short.
const WAL_FALLBACK_FRAMES: u32 = 4096;

/// The checkpoint thread's pause after each checkpoint, so that under load one checkpoint
/// covers many commits (pages written repeatedly are copied once).
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(50);

/// A write waiting for the writer thread, with everything it writes owned.
enum Write {
    Login(Box<Login>, oneshot::Sender<StoreResult<LoginRecord>>),
    Touch {
        id: i64,
        now: Millis,
        reply: oneshot::Sender<StoreResult<()>>,
    },
}

struct Login {
    appid: AppId,
    openid: OpenId,
    unionid: Option<UnionId>,
    session_key: SessionKey,
    token_hash: TokenHash,
    code_hash: String,
    previous: Option<TokenHash>,
    now: Millis,
    expires_at: Millis,
}

impl SqliteStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("wal_autocheckpoint", WAL_FALLBACK_FRAMES.to_string());
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
        let path = options.get_filename().to_owned();
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.read_only(true))
            .await?;

        let conn = connect(&path)?;
        let checkpoints = connect(&path)?;
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint(checkpoints, woken))?;
        let (writes, queue) = mpsc::channel(4 * MAX_BATCH);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || group_commit(conn, queue, wake))?;
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

    async fn record_login_impl(&self, l: NewLogin<'_>) -> StoreResult<LoginRecord> {
        let login = Box::new(Login {
            appid: l.appid.clone(),
            openid: l.openid.clone(),
            unionid: l.unionid.cloned(),
            session_key: l.session_key.clone(),
            token_hash: l.token_hash.clone(),
            code_hash: l.code_hash.to_owned(),
            previous: l.previous.cloned(),
            now: l.now,
            expires_at: l.expires_at,
        });
        self.submit(|reply| Write::Login(login, reply)).await
    }

    async fn touch_session_impl(&self, id: i64, now: Millis) -> StoreResult<()> {
        self.submit(|reply| Write::Touch { id, now, reply }).await
    }
}

/// A connection for the writer or checkpoint thread, set up as the sqlx pools are.
fn connect(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_FALLBACK_FRAMES)?;
    Ok(conn)
}

/// The writer thread: batches of waiting writes, one transaction and one commit each. After a
/// commit it wakes the checkpoint thread (if that is not already awake).
fn group_commit(
    mut conn: rusqlite::Connection,
    mut queue: mpsc::Receiver<Write>,
    wake: std::sync::mpsc::SyncSender<()>,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        match commit_batch(&mut conn, &batch) {
            Ok(answers) => {
                for (write, answer) in batch.into_iter().zip(answers) {
                    match write {
                        Write::Login(_, reply) => {
                            if let Some(answer) = answer {
                                let _ = reply.send(answer);
                            }
                        }
                        Write::Touch { reply, .. } => _ = reply.send(Ok(())),
                    }
                }
                let _ = wake.try_send(());
            }
            Err(e) => {
                tracing::error!(error = %e, writes = batch.len(), "SQLite batch failed");
                for write in batch {
                    match write {
                        Write::Login(_, reply) => _ = reply.send(Err(StoreError::unavailable(&e))),
                        Write::Touch { reply, .. } => {
                            _ = reply.send(Err(StoreError::unavailable(&e)))
                        }
                    }
                }
            }
        }
    }
}

/// The checkpoint thread: after commits, a passive checkpoint (it never blocks the writer),
/// then a pause. Quits when the writer thread does.
fn checkpoint(conn: rusqlite::Connection, woken: std::sync::mpsc::Receiver<()>) {
    while woken.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "SQLite checkpoint failed; the writer will checkpoint if the WAL grows");
        }
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

/// A batch in one transaction, its writes run one after another on this thread. Each login
/// gets the answer it would have had alone: a code already recorded, earlier or by a login
/// before it in the batch, is `CodeUsed` and writes nothing. Any error fails the whole batch
/// (after an I/O error SQLite may already have rolled the transaction back, and the writes after
/// it must not land outside it), and a failed batch leaves nothing behind.
fn commit_batch(
    conn: &mut rusqlite::Connection,
    batch: &[Write],
) -> rusqlite::Result<Vec<Option<StoreResult<LoginRecord>>>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(batch.len());
    for write in batch {
        answers.push(match write {
            Write::Login(login, _) => Some(login_statements(&tx, login)?),
            Write::Touch { id, now, .. } => {
                tx.prepare_cached(
                    "UPDATE sessions SET last_seen_at = ?1 WHERE id = ?2 AND last_seen_at < ?1",
                )?
                .execute(rusqlite::params![now, id])?;
                // A touch's answer is the batch's.
                None
            }
        });
    }
    tx.commit()?;
    Ok(answers)
}

/// The statements of one login, as `login_statements` in `postgres.rs`: used code, user
/// insert-or-update, revoking the replaced token, the new session. The outer `Result` is a
/// store failure; the inner one is this login's answer.
fn login_statements(
    tx: &rusqlite::Transaction<'_>,
    j: &Login,
) -> rusqlite::Result<StoreResult<LoginRecord>> {
    use rusqlite::{params, OptionalExtension};
    let fresh = tx
        .prepare_cached(
            "INSERT INTO used_codes (code_hash, appid, used_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![j.code_hash, j.appid.as_str(), j.now])?;
    if fresh == 0 {
        return Ok(Err(StoreError::CodeUsed));
    }
    let unionid = j.unionid.as_ref().map(|u| u.0.as_str());
    let inserted: Option<i64> = tx
        .prepare_cached(
            "INSERT INTO users (appid, openid, unionid, created_at, last_login_at) \
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (appid, openid) DO NOTHING RETURNING id",
        )?
        .query_row(params![j.appid.as_str(), j.openid.0, unionid, j.now], |r| {
            r.get(0)
        })
        .optional()?;
    let (user_id, new_user) = match inserted {
        Some(id) => (id, true),
        None => {
            let id: i64 = tx
                .prepare_cached(
                    "UPDATE users SET last_login_at = ?1, unionid = COALESCE(?2, unionid) \
                     WHERE appid = ?3 AND openid = ?4 RETURNING id",
                )?
                .query_row(params![j.now, unionid, j.appid.as_str(), j.openid.0], |r| {
                    r.get(0)
                })?;
            (id, false)
        }
    };
    if let Some(previous) = &j.previous {
        tx.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
            .execute(params![previous.0])?;
    }
    tx.prepare_cached(
        "INSERT INTO sessions (token_hash, user_id, appid, session_key, created_at, last_seen_at, \
         expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
    )?
    .execute(params![
        j.token_hash.0,
        user_id,
        j.appid.as_str(),
        j.session_key.expose(),
        j.now,
        j.expires_at
    ])?;
    Ok(Ok(LoginRecord { user_id, new_user }))
}

// One node, one writer: nobody else can be cleaning.
super::sql::impl_sql_store!(SqliteStore, sqlx::sqlite::SqliteRow, "SELECT TRUE");

#[cfg(test)]
mod tests;
