//! A read-through cache of sessions and users in front of a single-node store (SQLite).
//!
//! Why it is correct: with SQLite this process is the only writer of the database (the admin
//! CLI goes through the HTTP API, and two servers on one file are not supported), and every
//! write passes through this wrapper, which drops or updates the entries the write touches. So
//! the cache never holds anything the store no longer has. It is never used in front of
//! PostgreSQL, where another instance may revoke a session; there Redis is the shared cache.
//!
//! The one race left is a fill: a lookup misses, reads the store, and meanwhile a revocation
//! deletes the row and clears the cache; the fill must then not put the old row back. Every
//! write bumps an epoch under the cache lock, and a fill is kept only if the epoch has not moved
//! since before its store read.
//!
//! What is cached: sessions by token hash (with an index by session id, for touches) and users
//! by id, least recently used first out. Liveness is still decided by the session policy on
//! every check, from the cached timestamps, which touches keep current.
//!
//! It also remembers the codes used in the last ten minutes (`used_codes.rs`), loaded from the
//! store at start and added to by every login, so that a login does not read the store to learn
//! that its code is fresh.

use super::used_codes::{Known, UsedCodes, MAX_CODES, WINDOW};
use super::{
    AccountChange, Adoption, AppRecord, AppRotation, AppStore, Audit, Avatar, Cleanup, EventFilter,
    EventRecord, LoginRecord, LoginStore, MaintenanceStore, NewAppRecord, NewLogin, PhoneBinding,
    ProfileChange, SessionRecord, SessionStore, SessionSummary, SharedStore, Stats, StoreError,
    StoreResult, TakeOver, UserFilter, UserRecord, UserStore,
};
use crate::clock::{Millis, SharedClock};
use crate::domain::{AppId, CodeHash, Platform, TokenHash, UserId};
use async_trait::async_trait;
use lru::LruCache;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

pub struct CachedStore {
    inner: SharedStore,
    cache: Mutex<Cache>,
    codes: Mutex<UsedCodes>,
    clock: SharedClock,
}

struct Cache {
    sessions: LruCache<TokenHash, SessionRecord>,
    /// Session id → token hash of the cached sessions.
    ids: HashMap<i64, TokenHash>,
    users: LruCache<UserId, UserRecord>,
    /// Moves on every write; see the module comment.
    epoch: u64,
}

impl Cache {
    fn drop_session(&mut self, hash: &TokenHash) {
        if let Some(s) = self.sessions.pop(hash) {
            self.ids.remove(&s.id);
        }
    }

    /// Forgets every cached session `doomed` picks.
    fn drop_sessions_where(&mut self, doomed: impl Fn(&SessionRecord) -> bool) {
        let hashes: Vec<TokenHash> = self
            .sessions
            .iter()
            .filter(|(_, s)| doomed(s))
            .map(|(h, _)| h.clone())
            .collect();
        for h in &hashes {
            self.drop_session(h);
        }
    }

    /// Forgets a user and every cached session of theirs: after a change to the account
    /// (whatever its outcome: a failed commit may still have landed).
    fn drop_user(&mut self, user: UserId) {
        self.users.pop(&user);
        self.drop_sessions_where(|s| s.user_id == user);
    }
}

impl CachedStore {
    /// Wraps `inner`, which must be a single-node store this process alone writes, and loads
    /// the codes used in the last ten minutes. If that load fails, codes not seen since the
    /// start are looked up in the store for the first ten minutes.
    pub async fn new(inner: SharedStore, capacity: NonZeroUsize, clock: SharedClock) -> Self {
        let now = clock.now_ms();
        let mut codes = UsedCodes::new(now, MAX_CODES);
        let mut add = |code: &CodeHash, at| codes.insert(code.as_str(), at);
        match inner.codes_used_since(now - WINDOW, &mut add).await {
            Ok(()) => codes.loaded_since(now - WINDOW),
            Err(e) => {
                tracing::warn!(error = %e, "could not load the recently used codes; the store will be asked")
            }
        }
        Self {
            inner,
            cache: Mutex::new(Cache {
                sessions: LruCache::new(capacity),
                ids: HashMap::new(),
                users: LruCache::new(capacity),
                epoch: 0,
            }),
            codes: Mutex::new(codes),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // Nothing panics while holding the lock; if something ever did, the maps are still
        // consistent enough to use (at worst an id index entry too many).
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn codes(&self) -> MutexGuard<'_, UsedCodes> {
        self.codes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached session, or the epoch to fill it under after reading the store.
    fn cached_session(&self, token: &TokenHash) -> Result<SessionRecord, u64> {
        let mut cache = self.lock();
        match cache.sessions.get(token) {
            Some(s) => Ok(s.clone()),
            None => Err(cache.epoch),
        }
    }

    /// Caches what the store said, unless a write came between the read and now.
    fn fill_session(&self, token: &TokenHash, s: &SessionRecord, epoch: u64) {
        let mut cache = self.lock();
        if cache.epoch != epoch {
            return;
        }
        cache.ids.insert(s.id, token.clone());
        if let Some((_, evicted)) = cache.sessions.push(token.clone(), s.clone()) {
            // `push` hands back the replaced entry (same session) or the evicted one.
            if evicted.id != s.id {
                cache.ids.remove(&evicted.id);
            }
        }
    }

    fn cached_user(&self, id: UserId) -> Result<UserRecord, u64> {
        let mut cache = self.lock();
        match cache.users.get(&id) {
            Some(u) => Ok(u.clone()),
            None => Err(cache.epoch),
        }
    }

    fn fill_user(&self, u: &UserRecord, epoch: u64) {
        let mut cache = self.lock();
        if cache.epoch == epoch {
            cache.users.push(u.id, u.clone());
        }
    }

    /// Runs a write, then (whatever its outcome: a failed commit may still have landed)
    /// applies `forget` to the cache and moves the epoch.
    async fn write<T>(
        &self,
        op: impl std::future::Future<Output = StoreResult<T>>,
        forget: impl FnOnce(&mut Cache, &StoreResult<T>),
    ) -> StoreResult<T> {
        let result = op.await;
        let mut cache = self.lock();
        forget(&mut cache, &result);
        cache.epoch += 1;
        result
    }
}

#[async_trait]
impl LoginStore for CachedStore {
    async fn is_code_used(&self, code: &CodeHash) -> StoreResult<bool> {
        let now = self.clock.now_ms();
        let known = self.codes().check(code.as_str(), now);
        match known {
            Known::Used => Ok(true),
            Known::Unused => Ok(false),
            Known::Unsure => {
                let used = self.inner.is_code_used(code).await?;
                if used {
                    self.codes().insert(code.as_str(), now);
                }
                Ok(used)
            }
        }
    }

    async fn mark_code_used(&self, appid: &AppId, code: &CodeHash, now: Millis) -> StoreResult<()> {
        self.inner.mark_code_used(appid, code, now).await?;
        self.codes().insert(code.as_str(), now);
        Ok(())
    }

    async fn codes_used_since(
        &self,
        since: Millis,
        each: &mut (dyn for<'c> FnMut(&'c CodeHash, Millis) + Send),
    ) -> StoreResult<()> {
        self.inner.codes_used_since(since, each).await
    }

    async fn record_login(&self, login: NewLogin<'_>) -> StoreResult<LoginRecord> {
        let previous = login.previous.cloned();
        let openid = login.openid.clone();
        let (code, now) = (login.code_hash.clone(), login.now);
        self.write(self.inner.record_login(login), |cache, result| {
            // Recorded now, or earlier: either way the store has it. After any other failure
            // it most likely does not; if it does, a replay costs one WeChat call (40163).
            if matches!(
                result,
                Ok(_) | Err(StoreError::CodeUsed | StoreError::Banned)
            ) {
                self.codes().insert(code.as_str(), now);
            }
            if let Some(p) = &previous {
                cache.drop_session(p);
            }
            match result {
                // The user row changed (last login, maybe unionid), and the login may have
                // ended sessions (the cap).
                Ok(r) => {
                    if r.identity_changed {
                        // Its sessions carry the identity's unionid: read them afresh.
                        cache.drop_user(r.user_id);
                    }
                    cache.users.pop(&r.user_id);
                    for h in &r.revoked {
                        cache.drop_session(h);
                    }
                }
                // Unknown outcome: drop whichever cached user this openid is, with their
                // sessions (a trim over the cap may have landed).
                Err(_) => {
                    let id = cache
                        .users
                        .iter()
                        .find(|(_, u)| u.identities.iter().any(|i| i.openid == openid.0))
                        .map(|(id, _)| *id);
                    if let Some(id) = id {
                        cache.drop_user(id);
                    }
                }
            }
        })
        .await
    }

    async fn take_over(
        &self,
        take: &TakeOver<'_>,
        audit: Audit<'_>,
    ) -> StoreResult<Option<Adoption>> {
        let write = self.inner.take_over(take, audit);
        self.write(write, |cache, result| {
            if let Ok(Some(adoption)) = result {
                cache.drop_user(adoption.user_id);
            }
        })
        .await
    }

    async fn record_login_failure(
        &self,
        platform: Platform,
        appid: &AppId,
        error: &str,
        audit: Audit<'_>,
    ) -> StoreResult<()> {
        self.inner
            .record_login_failure(platform, appid, error, audit)
            .await
    }
}

#[async_trait]
impl SessionStore for CachedStore {
    async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        let epoch = match self.cached_session(token) {
            Ok(s) => {
                crate::metrics::session_cache("hit");
                return Ok(Some(s));
            }
            Err(epoch) => epoch,
        };
        crate::metrics::session_cache("miss");
        let found = self.inner.find_session(token).await?;
        if let Some(s) = &found {
            self.fill_session(token, s, epoch);
        }
        Ok(found)
    }

    async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()> {
        self.write(self.inner.touch_session(id, now), |cache, result| {
            let Some(hash) = cache.ids.get(&id).cloned() else {
                return;
            };
            match result {
                Ok(()) => {
                    if let Some(s) = cache.sessions.peek_mut(&hash) {
                        s.last_seen_at = s.last_seen_at.max(now);
                    }
                }
                Err(_) => cache.drop_session(&hash),
            }
        })
        .await
    }

    async fn revoke_session(&self, token: &TokenHash, audit: Audit<'_>) -> StoreResult<bool> {
        self.write(self.inner.revoke_session(token, audit), |cache, _| {
            cache.drop_session(token)
        })
        .await
    }

    async fn revoke_session_by_id(
        &self,
        id: i64,
        owner: Option<UserId>,
        audit: Audit<'_>,
    ) -> StoreResult<Option<TokenHash>> {
        self.write(
            self.inner.revoke_session_by_id(id, owner, audit),
            |cache, result| {
                if let Ok(Some(hash)) = result {
                    cache.drop_session(hash);
                }
                if let Some(hash) = cache.ids.get(&id).cloned() {
                    cache.drop_session(&hash);
                }
            },
        )
        .await
    }

    async fn revoke_user_sessions(
        &self,
        user: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Vec<TokenHash>> {
        // Whatever the outcome, none of the user's sessions may be answered from memory.
        self.write(self.inner.revoke_user_sessions(user, audit), |cache, _| {
            cache.drop_user(user)
        })
        .await
    }

    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<SessionSummary>> {
        self.inner.list_sessions(user).await
    }
}

#[async_trait]
impl UserStore for CachedStore {
    async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        let epoch = match self.cached_user(id) {
            Ok(u) => return Ok(Some(u)),
            Err(epoch) => epoch,
        };
        let found = self.inner.find_user(id).await?;
        if let Some(u) = &found {
            self.fill_user(u, epoch);
        }
        Ok(found)
    }

    async fn find_users(&self, filter: &UserFilter) -> StoreResult<Vec<UserRecord>> {
        self.inner.find_users(filter).await
    }

    async fn bind_phone(
        &self,
        id: UserId,
        phone: &str,
        country_code: &str,
        audit: Audit<'_>,
    ) -> StoreResult<PhoneBinding> {
        self.write(
            self.inner.bind_phone(id, phone, country_code, audit),
            |cache, _| {
                cache.users.pop(&id);
            },
        )
        .await
    }

    async fn update_profile(
        &self,
        id: UserId,
        change: &ProfileChange,
        audit: Audit<'_>,
    ) -> StoreResult<bool> {
        self.write(self.inner.update_profile(id, change, audit), |cache, _| {
            cache.users.pop(&id);
        })
        .await
    }

    async fn put_avatar(&self, avatar: &Avatar, now: Millis) -> StoreResult<()> {
        self.inner.put_avatar(avatar, now).await
    }

    async fn avatar(&self, sha256: &str) -> StoreResult<Option<Avatar>> {
        self.inner.avatar(sha256).await
    }

    async fn ban_user(
        &self,
        id: UserId,
        reason: &str,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>> {
        self.write(self.inner.ban_user(id, reason, audit), |cache, _| {
            cache.drop_user(id)
        })
        .await
    }

    async fn unban_user(&self, id: UserId, audit: Audit<'_>) -> StoreResult<bool> {
        self.write(self.inner.unban_user(id, audit), |cache, _| {
            cache.drop_user(id)
        })
        .await
    }

    async fn merge_users(
        &self,
        into: UserId,
        from: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>> {
        self.write(self.inner.merge_users(into, from, audit), |cache, _| {
            cache.drop_user(into);
            cache.drop_user(from);
        })
        .await
    }

    async fn delete_user(
        &self,
        id: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>> {
        self.write(self.inner.delete_user(id, audit), |cache, _| {
            cache.drop_user(id)
        })
        .await
    }

    async fn events(&self, filter: &EventFilter) -> StoreResult<Vec<EventRecord>> {
        self.inner.events(filter).await
    }
}

#[async_trait]
impl MaintenanceStore for CachedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn unsealed(
        &self,
        kind: super::SealedColumn,
        skip_prefix: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String)>> {
        self.inner.unsealed(kind, skip_prefix, after, limit).await
    }
    async fn replace_sealed(
        &self,
        kind: super::SealedColumn,
        id: i64,
        old: &str,
        new: &str,
        phone_hash: &str,
    ) -> StoreResult<bool> {
        self.inner
            .replace_sealed(kind, id, old, new, phone_hash)
            .await
    }
    fn vault(&self) -> &crate::vault::Vault {
        self.inner.vault()
    }
    async fn settle(&self) -> StoreResult<()> {
        self.inner.settle().await
    }

    async fn cleanup(&self, cutoffs: Cleanup) -> StoreResult<Option<(u64, u64)>> {
        // The sessions it deletes are past their deadlines, and the policy refuses their cached
        // copies on sight; the entries then age out.
        self.inner.cleanup(cutoffs).await
    }

    async fn stats(&self, now: Millis) -> StoreResult<Stats> {
        self.inner.stats(now).await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests;

#[async_trait]
impl super::OutboxStore for CachedStore {
    async fn claim_webhooks(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> StoreResult<Vec<super::OutboxRecord>> {
        self.inner.claim_webhooks(now, lease_until, limit).await
    }
    async fn webhook_delivered(&self, id: i64, attempts: u32) -> StoreResult<()> {
        self.inner.webhook_delivered(id, attempts).await
    }
    async fn webhook_failed(
        &self,
        id: i64,
        attempts: u32,
        next_at: Millis,
        dead_at: Option<Millis>,
        error: &str,
    ) -> StoreResult<()> {
        self.inner
            .webhook_failed(id, attempts, next_at, dead_at, error)
            .await
    }
    async fn outbox(
        &self,
        state: Option<super::OutboxState>,
        limit: i64,
    ) -> StoreResult<Vec<super::OutboxRecord>> {
        self.inner.outbox(state, limit).await
    }
    async fn redrive_webhook(&self, id: i64, now: Millis) -> StoreResult<bool> {
        self.inner.redrive_webhook(id, now).await
    }
    async fn outbox_stats(&self) -> StoreResult<super::OutboxStats> {
        self.inner.outbox_stats().await
    }
}

#[async_trait]
impl AppStore for CachedStore {
    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.inner.apps().await
    }
    async fn add_app(&self, app: &NewAppRecord<'_>, now: Millis) -> StoreResult<bool> {
        self.inner.add_app(app, now).await
    }
    async fn rotate_app(&self, rotation: &AppRotation<'_>, now: Millis) -> StoreResult<bool> {
        self.inner.rotate_app(rotation, now).await
    }
    async fn remove_app(
        &self,
        appid: &AppId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<Vec<TokenHash>>> {
        // Whatever the outcome, none of the app's sessions may be answered from memory.
        self.write(self.inner.remove_app(appid, audit), |cache, _| {
            cache.drop_sessions_where(|s| &s.appid == appid)
        })
        .await
    }
}
