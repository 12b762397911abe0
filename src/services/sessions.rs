//! Sessions: verify a token, decide expiry, and end sessions — every revocation (logout, a
//! login that replaces a token, admin revocation, and later bans and deletions) goes through
//! this one service, which deletes in the store of record first (the truth) and then tells
//! every instance through the shared cache.
//!
//! A session ends at whichever comes first: `idle_timeout` after it was last used, or
//! `max_lifetime` after it was created. Both are checked here on every use, against the
//! injected clock, so the server enforces them whatever the client does.
//! With Redis configured, checks are answered from the shared cache when it has the session.

use super::apps::Apps;
use super::{ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock};
use crate::coord::session_cache::{Epoch, Lookup, SessionCache};
use crate::domain::{ClientInfo, SessionKey, SessionToken, TokenHash, UserId};
use crate::store::{Audit, SessionRecord, SessionStore, SessionSummary};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
}

impl SessionPolicy {
    pub fn idle_ms(&self) -> Millis {
        self.idle_timeout.as_millis() as Millis
    }

    /// How stale `last_seen_at` may get before a use writes it again. Writing on every request
    /// would turn every token check into a write; this bounds the writes to one a minute per
    /// session, at the cost of the idle window being up to that much shorter than configured.
    fn touch_interval_ms(&self) -> Millis {
        (self.idle_ms() / 4).min(60_000)
    }

    /// Seconds the client may count on at login: the sooner of the two limits.
    pub fn expires_in_secs(&self) -> u64 {
        self.idle_timeout.min(self.max_lifetime).as_secs()
    }

    pub fn absolute_expiry(&self, now: Millis) -> Millis {
        now + self.max_lifetime.as_millis() as Millis
    }

    pub fn is_live(&self, s: &SessionRecord, now: Millis) -> bool {
        now < s.expires_at && now < self.idle_deadline(s)
    }

    fn idle_deadline(&self, s: &SessionRecord) -> Millis {
        s.last_seen_at + self.idle_ms()
    }
}

#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    /// A session is served only while its app is.
    apps: Arc<Apps>,
    cache: Option<SessionCache>,
    clock: SharedClock,
    policy: SessionPolicy,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn SessionStore>,
        apps: Arc<Apps>,
        cache: Option<SessionCache>,
        clock: SharedClock,
        policy: SessionPolicy,
    ) -> Self {
        Self {
            store,
            apps,
            cache,
            clock,
            policy,
        }
    }

    pub fn policy(&self) -> SessionPolicy {
        self.policy
    }

    /// Resolves a token to its live session, refreshing the idle deadline when due.
    pub async fn verify(&self, token: &SessionToken) -> ServiceResult<SessionRecord> {
        let result = self.verify_inner(token).await;
        let outcome = match &result {
            Ok((_, source)) => ("ok", *source),
            Err(ServiceError::Unauthorized) => ("unauthorized", "-"),
            Err(_) => ("store_unavailable", "-"),
        };
        crate::metrics::token_check(outcome.0, outcome.1);
        result.map(|(s, _)| s)
    }

    /// The session, and where it came from: `memory` (this instance's, on PostgreSQL + Redis),
    /// `cache` (Redis) or `store`.
    async fn verify_inner(
        &self,
        token: &SessionToken,
    ) -> ServiceResult<(SessionRecord, &'static str)> {
        let now = self.clock.now_ms();
        let hash = token.hash();
        // Memory answers only what needs nothing else: a live session not due for a touch.
        // Anything else (expired by its copy here, a touch due) asks Redis and the store.
        if let Some(s) = self.cache.as_ref().and_then(|c| c.recall(&hash)) {
            if self.policy.is_live(&s, now)
                && now - s.last_seen_at < self.policy.touch_interval_ms()
                && self.apps.serves(&s.appid)
            {
                return Ok((s, "memory"));
            }
        }
        let cached = match &self.cache {
            Some(cache) => cache.get(&hash).await,
            None => None,
        };
        let (mut session, from_cache, epoch) = match cached {
            Some((Lookup::Revoked, _)) => return Err(ServiceError::Unauthorized),
            Some((Lookup::Hit(s), epoch)) => (s, true, Some(epoch)),
            Some((Lookup::Miss, epoch)) => (self.load(&hash).await?, false, Some(epoch)),
            None => (self.load(&hash).await?, false, None),
        };
        if !self.policy.is_live(&session, now) || !self.apps.serves(&session.appid) {
            return Err(ServiceError::Unauthorized);
        }
        let touch = now - session.last_seen_at >= self.policy.touch_interval_ms();
        if touch {
            self.store.touch_session(session.id, now).await?;
            session.last_seen_at = now;
        }
        if let Some(epoch) = epoch.filter(|_| touch || !from_cache) {
            self.fill(&hash, &session, now, &epoch).await;
        }
        Ok((session, if from_cache { "cache" } else { "store" }))
    }

    async fn load(&self, hash: &TokenHash) -> ServiceResult<SessionRecord> {
        self.store
            .find_session(hash)
            .await?
            .ok_or(ServiceError::Unauthorized)
    }

    async fn fill(&self, hash: &TokenHash, s: &SessionRecord, now: Millis, seen: &Epoch) {
        if let Some(cache) = &self.cache {
            let left = s.expires_at.min(self.policy.idle_deadline(s)) - now;
            cache
                .put(hash, s, Duration::from_millis(left.max(1) as u64), seen)
                .await;
        }
    }

    /// The session_key of a verified session (from the store when the check was cached).
    pub async fn session_key(
        &self,
        token: &SessionToken,
        s: &SessionRecord,
    ) -> ServiceResult<SessionKey> {
        if let Some(k) = &s.session_key {
            return Ok(k.clone());
        }
        self.load(&token.hash())
            .await?
            .session_key
            .ok_or(ServiceError::Unauthorized)
    }

    /// A user's sessions, for the user and the admin API.
    pub async fn list(&self, user: UserId) -> ServiceResult<Vec<SessionSummary>> {
        Ok(self.store.list_sessions(user).await?)
    }

    fn audit<'a>(&self, client: &'a ClientInfo) -> Audit<'a> {
        Audit {
            now: self.clock.now_ms(),
            client,
        }
    }

    /// Logout: revokes the session; `Unauthorized` if there was none (already revoked or never
    /// issued). `StoreUnavailable` if the revocation could not reach every instance (see
    /// [`broadcast_end`](Self::broadcast_end)); a retry finishes it.
    pub async fn revoke(&self, token: &SessionToken, client: &ClientInfo) -> ServiceResult<()> {
        let hash = token.hash();
        let existed = self
            .invalidating(self.store.revoke_session(&hash, self.audit(client)))
            .await?;
        if existed {
            self.broadcast_end(std::slice::from_ref(&hash)).await?;
            Ok(())
        } else {
            // Nothing to tell, but a logout retried after a 503 lands here: the round trip
            // (which moves the cache epoch first) is what completes the earlier revocation.
            self.broadcast_end(&[]).await?;
            Err(ServiceError::Unauthorized)
        }
    }

    /// Revokes one session by its id: any session (admin), or only one of `owner`'s (the user
    /// ending their own sessions). `false` if there was no such session.
    pub async fn revoke_by_id(
        &self,
        id: i64,
        owner: Option<UserId>,
        client: &ClientInfo,
    ) -> ServiceResult<bool> {
        let ended = self
            .invalidating(
                self.store
                    .revoke_session_by_id(id, owner, self.audit(client)),
            )
            .await?;
        match ended {
            Some(hash) => {
                self.broadcast_end(std::slice::from_ref(&hash)).await?;
                tracing::info!(session_id = id, "session revoked");
                Ok(true)
            }
            None => {
                // Perhaps the retry of a revocation answered 503: the round trip finishes it.
                self.broadcast_end(&[]).await?;
                Ok(false)
            }
        }
    }

    /// Revokes every session of a user; returns how many there were.
    pub async fn revoke_user(&self, user: UserId, client: &ClientInfo) -> ServiceResult<usize> {
        let hashes = self
            .invalidating(self.store.revoke_user_sessions(user, self.audit(client)))
            .await?;
        self.broadcast_end(&hashes).await?;
        tracing::info!(
            user_id = user,
            revoked = hashes.len(),
            "a user's sessions revoked"
        );
        Ok(hashes.len())
    }

    /// Tells every instance that these sessions ended, or says it could not: a revocation is
    /// answered 200 only once no instance will accept the token (SPEC §8): on PostgreSQL that
    /// includes waiting until every instance dropped it from memory (`coord/bus.rs`). When this
    /// instance cannot reach Redis, others may still answer the token from the shared cache
    /// for up to [`SESSION_TTL`](crate::coord::session_cache::SESSION_TTL), so the caller gets
    /// `StoreUnavailable` (503, retry). Any later round trip this instance makes to Redis
    /// first moves the cache epoch and clears every instance's memory, which ends every older
    /// entry; so a retry that gets through (with nothing left to revoke, it still makes one)
    /// completes the revocation.
    pub async fn broadcast_end(&self, hashes: &[TokenHash]) -> ServiceResult<()> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let told = if hashes.is_empty() {
            cache.reachable().await
        } else {
            cache.end(hashes, true).await
        };
        if told {
            Ok(())
        } else {
            Err(ServiceError::StoreUnavailable(
                "a revocation could not reach Redis; other instances may still accept the token \
                 until it does"
                    .into(),
            ))
        }
    }

    /// Sessions a login's transaction has already ended (the replaced token, the oldest over
    /// the cap): tell every instance, as far as Redis lets us. Unlike a revocation, the login
    /// is not failed for it: its code is spent, and the client is the one replacing the token.
    pub async fn ended(&self, hashes: &[TokenHash]) {
        if let Some(cache) = &self.cache {
            if !cache.end(hashes, false).await {
                tracing::warn!(
                    "redis did not take a revocation; the cache epoch will be bumped on recovery"
                );
            }
        }
    }

    /// Runs a write that ends or moves sessions. If it fails, its outcome is unknown (a commit
    /// may have landed before the error), so no instance may answer from what it cached before.
    pub async fn invalidating<T>(
        &self,
        write: impl std::future::Future<Output = crate::store::StoreResult<T>>,
    ) -> crate::store::StoreResult<T> {
        let result = write.await;
        if result.is_err() {
            self.moved().await;
        }
        result
    }

    /// Ends every answer any instance's cache holds (the store dropped too many sessions to
    /// name them: an app's removal). `StoreUnavailable` if Redis could not be told; as with
    /// [`broadcast_end`](Self::broadcast_end), a retry's round trip completes it.
    pub async fn forget_all(&self) -> ServiceResult<()> {
        match &self.cache {
            Some(cache) if !cache.invalidate_all().await => Err(ServiceError::StoreUnavailable(
                "a revocation could not reach Redis; other instances may still accept the token \
                 until it does"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// Sessions that now belong to another user (a merge): no instance may answer them from
    /// what it cached before.
    pub async fn moved(&self) {
        if let Some(cache) = &self.cache {
            if !cache.invalidate_all().await {
                tracing::warn!(
                    "redis did not take a cache invalidation; the cache epoch will be bumped on recovery"
                );
            }
        }
    }
}
