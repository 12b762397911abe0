//! The SQLite writer thread: group commit for the hot writes (logins and session touches).
//!
//! One thread with its own rusqlite connection takes every write waiting at that moment, runs
//! them one after another in one `BEGIN IMMEDIATE` transaction with cached prepared statements,
//! commits once (one fsync for the batch), and only then answers each caller. Durability is
//! unchanged — no caller hears success before its commit — while the fsync, the cost that
//! bounded logins to one per disk flush, is shared. rusqlite rather than sqlx here, so a batch
//! runs start to finish on this thread with no hand-off per statement.
//!
//! WAL checkpoints (copying committed pages from the WAL into the database file, with an fsync
//! of their own) run on a second thread, so commits rarely wait behind them: the writer
//! checkpoints by itself only once the WAL passes `WAL_FALLBACK_FRAMES` pages, when that thread
//! has already copied nearly all of it.
//!
//! Both threads stop on [`Write::Stop`] (sent by `SqliteStore::close` after the server has
//! drained): the writer commits what was queued before it, answers it, and returns; the
//! checkpoint thread follows when the writer's wake-up channel closes.

use super::super::sql::{self, Ended, NewEvent};
use crate::clock::Millis;
use crate::domain::{AppId, ClientInfo, CodeHash, EventType, OpenId, Platform, TokenHash, UnionId};
use crate::store::{Audit, LoginRecord, StoreError, StoreResult};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How many writes one commit may carry.
pub(super) const MAX_BATCH: usize = 128;

/// WAL size (in pages, 16 MiB at SQLite's 4 KiB default) at which a committing connection
/// checkpoints by itself. Under steady load the checkpoint thread never quite catches up with
/// the writer, and the WAL can only start over from its beginning once a checkpoint has copied
/// all of it; by then the checkpoint thread has copied nearly everything, so this checkpoint is
/// short.
pub(super) const WAL_FALLBACK_FRAMES: u32 = 4096;

/// The checkpoint thread's pause after each checkpoint, so that under load one checkpoint
/// covers many commits (pages written repeatedly are copied once).
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(50);

/// A write waiting for the writer thread, with everything it writes owned.
pub(super) enum Write {
    Login(Box<Login>, oneshot::Sender<StoreResult<LoginRecord>>),
    Touch {
        id: i64,
        now: Millis,
        reply: oneshot::Sender<StoreResult<()>>,
    },
    /// Commit what came before, then stop.
    Stop(oneshot::Sender<()>),
}

pub(super) struct Login {
    pub(super) platform: Platform,
    pub(super) appid: AppId,
    pub(super) openid: OpenId,
    pub(super) unionid: Option<UnionId>,
    /// Sealed (`vault`): the writer never sees the plain key.
    pub(super) sealed_session_key: String,
    pub(super) token_hash: TokenHash,
    pub(super) code_hash: CodeHash,
    pub(super) previous: Option<TokenHash>,
    pub(super) now: Millis,
    pub(super) expires_at: Millis,
    pub(super) client: ClientInfo,
    pub(super) link_by_unionid: bool,
    pub(super) max_sessions: u32,
    /// Webhooks are on: `user_created` gets its outbox row.
    pub(super) webhooks: bool,
}

/// Starts the writer and checkpoint threads on the database at `path`; returns the writer's
/// queue.
pub(super) fn start(path: &std::path::Path) -> anyhow::Result<mpsc::Sender<Write>> {
    let conn = connect(path)?;
    let checkpoints = connect(path)?;
    let (wake, woken) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || checkpoint(checkpoints, woken))?;
    let (writes, queue) = mpsc::channel(4 * MAX_BATCH);
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || group_commit(conn, queue, wake))?;
    Ok(writes)
}

/// A connection for the writer or checkpoint thread, set up as the sqlx pools are.
fn connect(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_FALLBACK_FRAMES)?;
    // Deleted or rewritten rows are zeroed where that costs no extra I/O, so a deleted
    // user's data (or a value before it was sealed) does not linger in the page.
    conn.pragma_update(None, "secure_delete", "FAST")?;
    Ok(conn)
}

/// The writer thread: batches of waiting writes, one transaction and one commit each. After a
/// commit it wakes the checkpoint thread (if that is not already awake).
fn group_commit(
    mut conn: rusqlite::Connection,
    mut queue: mpsc::Receiver<Write>,
    wake: std::sync::mpsc::SyncSender<()>,
) {
    let mut stop = None;
    while let Some(first) = queue.blocking_recv() {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut next = Some(first);
        while let Some(write) = next.take() {
            match write {
                Write::Stop(ack) => stop = Some(ack),
                write => batch.push(write),
            }
            if stop.is_none() && batch.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit_and_answer(&mut conn, batch, &wake);
        }
        if let Some(ack) = stop {
            let _ = ack.send(());
            return;
        }
    }
}

fn commit_and_answer(
    conn: &mut rusqlite::Connection,
    batch: Vec<Write>,
    wake: &std::sync::mpsc::SyncSender<()>,
) {
    let logins = batch
        .iter()
        .filter(|w| matches!(w, Write::Login(..)))
        .count();
    if logins > 0 {
        crate::metrics::login_batch(logins);
    }
    match commit_batch(conn, &batch) {
        Ok(answers) => {
            for (write, answer) in batch.into_iter().zip(answers) {
                match write {
                    Write::Login(_, reply) => {
                        if let Some(answer) = answer {
                            let _ = reply.send(answer);
                        }
                    }
                    Write::Touch { reply, .. } => _ = reply.send(Ok(())),
                    Write::Stop(_) => {}
                }
            }
            let _ = wake.try_send(());
        }
        Err(e) => {
            tracing::error!(error = %e, writes = batch.len(), "SQLite batch failed");
            for write in batch {
                match write {
                    Write::Login(_, reply) => _ = reply.send(Err(StoreError::unavailable(&e))),
                    Write::Touch { reply, .. } => _ = reply.send(Err(StoreError::unavailable(&e))),
                    Write::Stop(_) => {}
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
                tx.prepare_cached(sql::TOUCH_SESSION)?
                    .execute(rusqlite::params![now, id])?;
                // A touch's answer is the batch's.
                None
            }
            Write::Stop(_) => None,
        });
    }
    tx.commit()?;
    Ok(answers)
}

fn insert_event(tx: &rusqlite::Transaction<'_>, e: &NewEvent<'_>) -> rusqlite::Result<()> {
    tx.prepare_cached(sql::INSERT_EVENT_ROW)?
        .execute(rusqlite::params![
            e.kind.as_str(),
            e.user_id,
            e.platform,
            e.appid,
            e.ip(),
            e.user_agent(),
            e.detail,
            e.at,
            e.actor
        ])
        .map(drop)
}

/// Runs a revoking statement (`RETURNING` the ended sessions) and writes an event for each.
fn end_sessions(
    tx: &rusqlite::Transaction<'_>,
    sql_text: &str,
    params: impl rusqlite::Params,
    reason: &str,
    audit: Audit<'_>,
) -> rusqlite::Result<Vec<Ended>> {
    let ended = sessions(tx, sql_text, params)?;
    revoked_events(tx, &ended, reason, audit)?;
    Ok(ended)
}

/// A `session_revoked` event for each of the ended sessions.
fn revoked_events(
    tx: &rusqlite::Transaction<'_>,
    ended: &[Ended],
    reason: &str,
    audit: Audit<'_>,
) -> rusqlite::Result<()> {
    for e in ended {
        insert_event(
            tx,
            &NewEvent::for_session(EventType::SessionRevoked, e, audit, reason),
        )?;
    }
    Ok(())
}

/// The sessions a statement names (`id, token_hash, user_id, platform, appid`).
fn sessions(
    tx: &rusqlite::Transaction<'_>,
    sql_text: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Ended>> {
    tx.prepare_cached(sql_text)?
        .query_map(params, |r| {
            Ok(Ended {
                id: r.get("id")?,
                token_hash: TokenHash(r.get("token_hash")?),
                user_id: r.get("user_id")?,
                platform: r.get("platform")?,
                appid: r.get("appid")?,
            })
        })?
        .collect()
}

/// The user's sessions beyond the newest `keep`, ended (`limit`) with their events.
fn trim_sessions(
    tx: &rusqlite::Transaction<'_>,
    user_id: i64,
    keep: i64,
    audit: Audit<'_>,
) -> rusqlite::Result<Vec<Ended>> {
    let over = sessions(tx, sql::SESSIONS_OVER_CAP, rusqlite::params![user_id, keep])?;
    for e in &over {
        tx.prepare_cached(sql::DELETE_SESSION_ROW)?
            .execute([e.id])?;
    }
    revoked_events(tx, &over, "limit", audit)?;
    Ok(over)
}

/// The statements of one login, as PostgreSQL's `wxlogin_login_v1` (migration 0006; the same SQL and
/// the same steps, less the lock: this thread is the only writer): used code, identity (and
/// user), events, revoking the replaced token and the sessions over the cap, the new session.
/// The outer `Result` is a store failure; the inner one is this login's answer.
fn login_statements(
    tx: &rusqlite::Transaction<'_>,
    j: &Login,
) -> rusqlite::Result<StoreResult<LoginRecord>> {
    use rusqlite::{params, OptionalExtension};
    let fresh = tx.prepare_cached(sql::INSERT_USED_CODE)?.execute(params![
        j.code_hash.as_str(),
        j.appid.as_str(),
        j.now
    ])?;
    if fresh == 0 {
        return Ok(Err(StoreError::CodeUsed));
    }
    let platform = j.platform.as_str();
    let unionid = j.unionid.as_ref().map(|u| u.0.as_str());
    let mut identity_changed = false;
    let mut joined = false;
    let found: Option<(i64, i64, Option<String>, String)> = tx
        .prepare_cached(sql::FIND_IDENTITY)?
        .query_row(params![platform, j.appid.as_str(), j.openid.0], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let (identity_id, user_id, status, new_user) = match found {
        Some((id, user, stored, status)) => {
            identity_changed = stored.is_none() && unionid.is_some();
            if identity_changed {
                tx.prepare_cached(sql::SET_IDENTITY_UNIONID)?
                    .execute(params![unionid, id])?;
            }
            (id, user, status, false)
        }
        None => {
            let linked: Option<(i64, String)> = match unionid.filter(|_| j.link_by_unionid) {
                Some(u) => tx
                    .prepare_cached(sql::FIND_UNIONID_USER)?
                    .query_row(params![platform, u], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
                None => None,
            };
            let (user, status, new_user) = match linked {
                Some((user, status)) => {
                    joined = true;
                    (user, status, false)
                }
                None => {
                    tx.prepare_cached(sql::INSERT_USER)?
                        .execute(params![j.now])?;
                    (tx.last_insert_rowid(), "active".to_owned(), true)
                }
            };
            tx.prepare_cached(sql::INSERT_IDENTITY)?.execute(params![
                user,
                platform,
                j.appid.as_str(),
                j.openid.0,
                unionid,
                j.now
            ])?;
            (tx.last_insert_rowid(), user, status, new_user)
        }
    };
    let audit = Audit {
        now: j.now,
        client: &j.client,
    };
    let event = |kind, detail: Option<String>| NewEvent {
        platform: Some(platform),
        appid: Some(j.appid.as_str()),
        detail,
        ..NewEvent::new(kind, Some(user_id), audit)
    };
    if status != "active" {
        let detail = serde_json::json!({ "error": "banned" }).to_string();
        insert_event(tx, &event(EventType::LoginFailed, Some(detail)))?;
        return Ok(Err(StoreError::Banned));
    }
    // A new user was created with this login's time and has no sessions yet: nothing to
    // touch or trim, and its two events go in one statement.
    let mut revoked = Vec::new();
    // The status was read in this same transaction, and this thread is the only writer: the
    // user is still active here (the statement's condition matters on PostgreSQL).
    if !new_user {
        tx.prepare_cached(sql::TOUCH_USER_LOGIN)?
            .execute(params![j.now, user_id])?;
    }
    if let Some(previous) = &j.previous {
        revoked.extend(end_sessions(
            tx,
            sql::DELETE_SESSION,
            params![previous.0],
            "replaced",
            audit,
        )?);
    }
    if !new_user {
        let keep = i64::from(j.max_sessions.max(1) - 1);
        revoked.extend(trim_sessions(tx, user_id, keep, audit)?);
    }
    tx.prepare_cached(sql::INSERT_SESSION)?.execute(params![
        j.token_hash.0,
        user_id,
        identity_id,
        platform,
        j.appid.as_str(),
        j.sealed_session_key,
        j.client.ip,
        j.client.user_agent,
        j.now,
        j.expires_at
    ])?;
    if new_user && j.webhooks {
        let mut insert = tx.prepare_cached(sql::INSERT_NEW_USER_EVENTS_RETURNING)?;
        let ids = insert
            .query_map(
                params![
                    user_id,
                    platform,
                    j.appid.as_str(),
                    j.client.ip,
                    j.client.user_agent,
                    j.now
                ],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let created = event(EventType::UserCreated, None);
        for (id, _) in ids.iter().filter(|(_, kind)| kind == "user_created") {
            tx.prepare_cached(sql::INSERT_OUTBOX)?.execute(params![
                id,
                created.user_id,
                created.kind.as_str(),
                created.webhook_body(*id),
                created.at
            ])?;
        }
    } else if new_user {
        tx.prepare_cached(sql::INSERT_NEW_USER_EVENTS)?
            .execute(params![
                user_id,
                platform,
                j.appid.as_str(),
                j.client.ip,
                j.client.user_agent,
                j.now
            ])?;
    } else {
        insert_event(tx, &event(EventType::Login, None))?;
    }
    Ok(Ok(LoginRecord {
        user_id,
        new_user,
        revoked: revoked.into_iter().map(|e| e.token_hash).collect(),
        identity_changed,
        linked: joined,
    }))
}
