//! The user records `/me` shows, kept in this instance's memory on PostgreSQL + Redis, so a
//! request with a cached session costs one Redis round trip and no PostgreSQL read. (SQLite has
//! its own cache in front of the store, where this process sees every write.)
//!
//! Why it stays true:
//! - Every change to a user (profile, avatar, phone, ban, unban, merge, deletion, an identity
//!   gained at login) is published on Redis after it is committed; every instance evicts that
//!   user when the message arrives.
//! - The cache answers only while this instance's subscription is up and its Redis circuit is
//!   closed: a lost subscription clears it, and a Redis that does not answer (where a
//!   publication may be lost) bypasses it. Entries also expire after [`TTL`].
//! - A record read from the store is kept only if no invalidation arrived while it was read
//!   (a generation counter), so a read racing a change cannot bring the old record back.
//! - It holds no secret beyond what `/me` shows, and never a session or a session_key: the
//!   token check (and with it every revocation) goes through the session cache as before.
//!   A user's status change also revokes their sessions, so the token check refuses a banned
//!   or deleted user before this cache is asked.
//!
//! A change made on an instance that cannot reach Redis reaches the others within [`TTL`].

use crate::coord::Coord;
use crate::domain::UserId;
use crate::store::UserRecord;
use futures::StreamExt;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The longest an entry is used, whatever the invalidations say.
pub const TTL: Duration = Duration::from_secs(10);
const CHANNEL: &str = "users";

pub struct UserCache {
    coord: Arc<Coord>,
    entries: Mutex<LruCache<UserId, (UserRecord, Instant)>>,
    /// The subscription is up (set after it is, cleared when it ends).
    live: AtomicBool,
    /// Invalidations received (and subscriptions lost): a read that saw another value may be
    /// stale and is not kept.
    generation: AtomicU64,
}

/// What a caller captures before reading the store, and hands back with what it read.
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

impl UserCache {
    pub fn new(coord: Arc<Coord>, capacity: NonZeroUsize) -> Arc<Self> {
        Arc::new(Self {
            coord,
            entries: Mutex::new(LruCache::new(capacity)),
            live: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        })
    }

    fn usable(&self) -> bool {
        self.live.load(Ordering::SeqCst) && self.coord.is_healthy()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, LruCache<UserId, (UserRecord, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached user, while the cache may be trusted.
    pub fn get(&self, id: UserId) -> Option<UserRecord> {
        if !self.usable() {
            return None;
        }
        let mut entries = self.entries();
        match entries.get(&id) {
            Some((user, at)) if at.elapsed() < TTL => Some(user.clone()),
            Some(_) => {
                entries.pop(&id);
                None
            }
            None => None,
        }
    }

    /// Capture before reading the store.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::SeqCst))
    }

    /// Keeps a record read from the store, unless an invalidation arrived since `seen`.
    pub fn put(&self, user: &UserRecord, seen: Generation) {
        if !self.usable() {
            return;
        }
        let mut entries = self.entries();
        // Checked under the lock the evictions take, so an eviction cannot slip in between.
        if self.generation.load(Ordering::SeqCst) == seen.0 {
            entries.put(user.id, (user.clone(), Instant::now()));
        }
    }

    fn evict(&self, id: UserId) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.pop(&id);
    }

    fn clear(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    /// Evicts a user here only (a change the other instances may see late: `last_login_at`).
    pub fn forget_here(&self, id: UserId) {
        self.evict(id);
    }

    /// A user changed (committed): evicts it here and tells every instance.
    pub async fn changed(&self, id: UserId) {
        self.evict(id);
        if !self.coord.publish(CHANNEL, &id.to_string()).await {
            tracing::debug!(
                user_id = id,
                "user cache: could not publish an invalidation"
            );
        }
    }

    /// Keeps the subscription up until `stop`: evicts what each message names; clears the cache
    /// when the subscription is lost, and subscribes again.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.coord.subscribe(CHANNEL).await {
                Ok(mut messages) => {
                    self.clear();
                    self.live.store(true, Ordering::SeqCst);
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            message = messages.next() => match message {
                                Some(m) => match m.get_payload::<String>().ok().and_then(|p| p.parse().ok()) {
                                    Some(id) => self.evict(id),
                                    None => self.clear(),
                                },
                                None => break,
                            },
                        }
                    }
                    self.live.store(false, Ordering::SeqCst);
                    self.clear();
                    tracing::warn!(
                        "user cache: the Redis subscription ended; bypassed until it is back"
                    );
                }
                Err(e) => tracing::debug!(error = %e, "user cache: cannot subscribe yet"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
