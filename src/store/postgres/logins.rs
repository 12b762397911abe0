//! Group commit for logins on PostgreSQL. Concurrent logins queue here; a few workers each take
//! whatever has queued (up to [`MAX_BATCH`]) and run it as one call of migration 0006's
//! `wxlogin_login_v1`: one round trip and one commit for the batch, as the SQLite writer thread
//! commits its batches. Alone, a login is a batch of one and waits for nobody. The check a login
//! makes before WeChat is asked (is its code used?) is batched the same way, one query for
//! whatever checks have queued.
//!
//! A batch fails or commits whole. When PostgreSQL refuses a batch of several for a reason of its
//! own (a deadlock with another instance's batch, a constraint), each of its logins is tried
//! again alone, so one login's trouble is never another's answer.

use super::super::sql;
use super::super::{LoginRecord, NewLogin, StoreError, StoreResult};
use crate::domain::{EventType, TokenHash};
use sqlx::{PgPool, Row};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Logins in one call at most: each is ~10 statements inside one transaction.
const MAX_BATCH: usize = 32;
/// Batches in flight at once (each holds one pooled connection while it runs).
const WORKERS: usize = 2;
/// Logins waiting for a worker at most; past it, a login waits to queue.
const QUEUE: usize = 1024;
/// Code checks in one query at most, and their workers.
const MAX_CHECKS: usize = 256;
const CHECK_WORKERS: usize = 2;

const USED_CODES: &str = "SELECT code_hash FROM used_codes WHERE code_hash = ANY($1)";

const LOGIN: &str = "SELECT o_index, o_outcome, o_user_id, o_new_user, o_identity_changed, o_linked, \
     o_revoked FROM wxlogin_login_v1($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";

/// One login's arguments to the function, owned while it waits for its batch.
struct Job {
    lock_identity: i64,
    lock_person: i64,
    code_hash: String,
    platform: &'static str,
    appid: String,
    openid: String,
    unionid: Option<String>,
    link: bool,
    keep: i64,
    previous: Option<String>,
    token_hash: String,
    session_key: String,
    ip: Option<String>,
    user_agent: Option<String>,
    actor: Option<String>,
    now: i64,
    expires_at: i64,
    created_body: Option<String>,
    reply: oneshot::Sender<StoreResult<LoginRecord>>,
}

/// One code check: the code's hash, and where its answer goes.
type Check = (String, oneshot::Sender<StoreResult<bool>>);

pub(super) struct Logins {
    queue: mpsc::Sender<Job>,
    checks: mpsc::Sender<Check>,
}

impl Logins {
    /// Starts the workers on `pool`; they stop when this is dropped and the queues drain.
    pub(super) fn start(pool: PgPool) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            tokio::spawn(work(pool.clone(), Arc::clone(&rx)));
        }
        let (checks, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..CHECK_WORKERS {
            tokio::spawn(check(pool.clone(), Arc::clone(&rx)));
        }
        Self { queue, checks }
    }

    /// Whether `code_hash` is recorded as used, asked with whichever checks queue beside it.
    pub(super) async fn is_code_used(&self, code_hash: &str) -> StoreResult<bool> {
        let (reply, answer) = oneshot::channel();
        self.checks
            .send((code_hash.to_owned(), reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Records one login (`sealed_session_key` already sealed) with whichever logins queue
    /// beside it; answers as [`super::super::LoginStore::record_login`].
    pub(super) async fn record(
        &self,
        l: &NewLogin<'_>,
        sealed_session_key: String,
        webhooks: bool,
    ) -> StoreResult<LoginRecord> {
        let (lock_identity, lock_person) = super::person_lock_keys(l);
        let platform = l.platform.as_str();
        // The user_created webhook, its event's and user's ids filled in by the function.
        let created_body = webhooks.then(|| {
            sql::webhook_body(
                -1,
                EventType::UserCreated,
                Some(-2),
                Some(platform),
                Some(l.appid.as_str()),
                l.client.actor.as_deref(),
                None,
                l.now,
            )
        });
        let (reply, answer) = oneshot::channel();
        let job = Job {
            lock_identity,
            lock_person,
            code_hash: l.code_hash.as_str().to_owned(),
            platform,
            appid: l.appid.as_str().to_owned(),
            openid: l.openid.0.clone(),
            unionid: l.unionid.map(|u| u.0.clone()),
            link: l.link_by_unionid,
            keep: i64::from(l.max_sessions.max(1) - 1),
            previous: l.previous.map(|p| p.0.clone()),
            token_hash: l.token_hash.0.clone(),
            session_key: sealed_session_key,
            ip: l.client.ip.clone(),
            user_agent: l.client.user_agent.clone(),
            actor: l.client.actor.clone(),
            now: l.now,
            expires_at: l.expires_at,
            created_body,
            reply,
        };
        self.queue.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::unavailable("the store is closing")
}

/// Waits for one item, then takes whatever else has queued, up to `max`; `None` once the
/// queue is closed and empty.
async fn take<T>(queue: &Mutex<mpsc::Receiver<T>>, max: usize) -> Option<Vec<T>> {
    let mut rx = queue.lock().await;
    let mut items = vec![rx.recv().await?];
    while items.len() < max {
        match rx.try_recv() {
            Ok(item) => items.push(item),
            Err(_) => break,
        }
    }
    Some(items)
}

async fn check(pool: PgPool, queue: Arc<Mutex<mpsc::Receiver<Check>>>) {
    while let Some(checks) = take(&queue, MAX_CHECKS).await {
        let codes: Vec<&str> = checks.iter().map(|(code, _)| code.as_str()).collect();
        let used: Result<Vec<String>, _> = sqlx::query_scalar(USED_CODES)
            .bind(codes)
            .fetch_all(&pool)
            .await;
        match used {
            Ok(used) => {
                for (code, reply) in checks {
                    _ = reply.send(Ok(used.contains(&code)));
                }
            }
            Err(e) => {
                for (_, reply) in checks {
                    _ = reply.send(Err(StoreError::unavailable(&e)));
                }
            }
        }
    }
}

async fn work(pool: PgPool, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    while let Some(jobs) = take(&queue, MAX_BATCH).await {
        crate::metrics::login_batch(jobs.len());
        match run(&pool, &jobs).await {
            Err(sqlx::Error::Database(e)) if jobs.len() > 1 => {
                tracing::warn!(error = %e, logins = jobs.len(), "a login batch failed; trying each login alone");
                for job in jobs {
                    let answer = run(&pool, std::slice::from_ref(&job)).await;
                    reply(vec![job], answer);
                }
            }
            answer => reply(jobs, answer),
        }
    }
}

/// Sends each job its answer: its own row, or the batch's failure.
fn reply(jobs: Vec<Job>, answers: Result<Vec<StoreResult<LoginRecord>>, sqlx::Error>) {
    match answers {
        Ok(answers) if answers.len() == jobs.len() => {
            for (job, answer) in jobs.into_iter().zip(answers) {
                _ = job.reply.send(answer);
            }
        }
        Ok(answers) => {
            let e = format!("{} answers for {} logins", answers.len(), jobs.len());
            for job in jobs {
                _ = job.reply.send(Err(StoreError::unavailable(&e)));
            }
        }
        Err(e) => {
            for job in jobs {
                _ = job.reply.send(Err(StoreError::unavailable(&e)));
            }
        }
    }
}

/// One call of the function for `jobs`; each row is one login's answer, in order.
async fn run(pool: &PgPool, jobs: &[Job]) -> Result<Vec<StoreResult<LoginRecord>>, sqlx::Error> {
    fn column<'j, T>(jobs: &'j [Job], f: impl Fn(&'j Job) -> T) -> Vec<T> {
        jobs.iter().map(f).collect()
    }
    let rows = sqlx::query(LOGIN)
        .bind(column(jobs, |j| j.lock_identity))
        .bind(column(jobs, |j| j.lock_person))
        .bind(column(jobs, |j| j.code_hash.as_str()))
        .bind(column(jobs, |j| j.platform))
        .bind(column(jobs, |j| j.appid.as_str()))
        .bind(column(jobs, |j| j.openid.as_str()))
        .bind(column(jobs, |j| j.unionid.as_deref()))
        .bind(column(jobs, |j| j.link))
        .bind(column(jobs, |j| j.keep))
        .bind(column(jobs, |j| j.previous.as_deref()))
        .bind(column(jobs, |j| j.token_hash.as_str()))
        .bind(column(jobs, |j| j.session_key.as_str()))
        .bind(column(jobs, |j| j.ip.as_deref()))
        .bind(column(jobs, |j| j.user_agent.as_deref()))
        .bind(column(jobs, |j| j.actor.as_deref()))
        .bind(column(jobs, |j| j.now))
        .bind(column(jobs, |j| j.expires_at))
        .bind(column(jobs, |j| j.created_body.as_deref()))
        .fetch_all(pool)
        .await?;
    rows.iter().map(answer).collect()
}

/// One login's row: its outcome, and on `ok` its record.
fn answer(row: &sqlx::postgres::PgRow) -> Result<StoreResult<LoginRecord>, sqlx::Error> {
    let outcome: String = row.try_get("o_outcome")?;
    Ok(match outcome.as_str() {
        "ok" => {
            let revoked: Vec<String> = row.try_get("o_revoked")?;
            Ok(LoginRecord {
                user_id: row.try_get("o_user_id")?,
                new_user: row.try_get("o_new_user")?,
                identity_changed: row.try_get("o_identity_changed")?,
                linked: row.try_get("o_linked")?,
                revoked: revoked.into_iter().map(TokenHash).collect(),
            })
        }
        "code_used" => Err(StoreError::CodeUsed),
        // Banned at its identity (the code spent, the refusal logged), or banned, deleted or
        // merged away while it waited (nothing kept): both refuse the login.
        "banned" | "no_longer_active" => Err(StoreError::Banned),
        other => Err(StoreError::unavailable(format!(
            "the login function answered {other:?}"
        ))),
    })
}
