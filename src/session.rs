//! Session policy and checks: verify a token, revoke it, decide expiry.
//!
//! A session ends at whichever comes first: `idle_timeout` after it was last used, or
//! `max_lifetime` after it was created. Both are checked here on every use, against the
//! injected clock, so the server enforces them whatever the client does.
//! With Redis configured, checks are answered from the shared cache when it has the session;
//! revocation goes to the store first (the truth), then to the cache for every instance.
//! Depends on the store trait, the Redis layer and domain types; knows nothing of HTTP.

use crate::clock::{Millis, SharedClock};
use crate::coord::{CachedSession, Coord, Lookup};
use crate::domain::{AppId, OpenId, SessionKey, SessionToken, TokenHash, UnionId};
use crate::store::{SessionRecord, SharedStore, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// WeChat codes live 5 minutes; a day is far beyond any code that could still be presented.
const USED_CODE_RETENTION_MS: Millis = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
}

impl SessionPolicy {
    fn idle_ms(&self) -> Millis {
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

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no live session for this token")]
    Unauthorized,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Sessions {
    store: SharedStore,
    coord: Option<Arc<Coord>>,
    clock: SharedClock,
    policy: SessionPolicy,
}

fn to_cached(s: &SessionRecord) -> CachedSession {
    CachedSession {
        id: s.id,
        user_id: s.user_id,
        appid: s.appid.to_string(),
        openid: s.openid.0.clone(),
        unionid: s.unionid.as_ref().map(|u| u.0.clone()),
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        expires_at: s.expires_at,
    }
}

fn from_cached(c: CachedSession) -> Option<SessionRecord> {
    Some(SessionRecord {
        id: c.id,
        user_id: c.user_id,
        appid: AppId::parse(&c.appid).ok()?,
        openid: OpenId(c.openid),
        unionid: c.unionid.map(UnionId),
        session_key: None,
        created_at: c.created_at,
        last_seen_at: c.last_seen_at,
        expires_at: c.expires_at,
    })
}

impl Sessions {
    pub fn new(
        store: SharedStore,
        coord: Option<Arc<Coord>>,
        clock: SharedClock,
        policy: SessionPolicy,
    ) -> Self {
        Self {
            store,
            coord,
            clock,
            policy,
        }
    }

    /// Resolves a token to its live session, refreshing the idle deadline when due.
    pub async fn verify(&self, token: &SessionToken) -> Result<SessionRecord, AuthError> {
        let result = self.verify_inner(token).await;
        let outcome = match &result {
            Ok((_, true)) => ("ok", "cache"),
            Ok((_, false)) => ("ok", "store"),
            Err(AuthError::Unauthorized) => ("unauthorized", "-"),
            Err(AuthError::Store(_)) => ("store_unavailable", "-"),
        };
        crate::metrics::token_check(outcome.0, outcome.1);
        result.map(|(s, _)| s)
    }

    async fn verify_inner(&self, token: &SessionToken) -> Result<(SessionRecord, bool), AuthError> {
        let now = self.clock.now_ms();
        let hash = token.hash();
        let cached = match &self.coord {
            Some(coord) => coord.session(&hash).await,
            None => None,
        };
        let (mut session, from_cache) = match cached {
            Some(Lookup::Revoked) => return Err(AuthError::Unauthorized),
            Some(Lookup::Hit(c)) => match from_cached(c) {
                Some(s) => (s, true),
                None => (self.load(&hash).await?, false),
            },
            Some(Lookup::Miss) | None => (self.load(&hash).await?, false),
        };
        if !self.policy.is_live(&session, now) {
            return Err(AuthError::Unauthorized);
        }
        let touch = now - session.last_seen_at >= self.policy.touch_interval_ms();
        if touch {
            self.store.touch_session(session.id, now).await?;
            session.last_seen_at = now;
        }
        if touch || !from_cache {
            self.cache(&hash, &session, now).await;
        }
        Ok((session, from_cache))
    }

    async fn load(&self, hash: &TokenHash) -> Result<SessionRecord, AuthError> {
        self.store
            .find_session(hash)
            .await?
            .ok_or(AuthError::Unauthorized)
    }

    async fn cache(&self, hash: &TokenHash, s: &SessionRecord, now: Millis) {
        if let Some(coord) = &self.coord {
            let left = s.expires_at.min(self.policy.idle_deadline(s)) - now;
            coord
                .put_session(
                    hash,
                    &to_cached(s),
                    Duration::from_millis(left.max(1) as u64),
                )
                .await;
        }
    }

    /// The session_key of a verified session (from the store when the check was cached).
    pub async fn session_key(
        &self,
        token: &SessionToken,
        s: &SessionRecord,
    ) -> Result<SessionKey, AuthError> {
        if let Some(k) = &s.session_key {
            return Ok(k.clone());
        }
        self.load(&token.hash())
            .await?
            .session_key
            .ok_or(AuthError::Unauthorized)
    }

    /// Revokes the session; `Unauthorized` if there was none (already revoked or never issued).
    pub async fn revoke(&self, token: &SessionToken) -> Result<(), AuthError> {
        let hash = token.hash();
        let existed = self.store.revoke_session(&hash).await?;
        self.forget(&hash).await;
        if existed {
            Ok(())
        } else {
            Err(AuthError::Unauthorized)
        }
    }

    /// Deletes expired sessions and used codes no client can present any more. Safe to call
    /// on every instance: the store lets one at a time do the work.
    pub async fn cleanup(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let now = self.clock.now_ms();
        self.store
            .cleanup(crate::store::Cleanup {
                now,
                idle_before: now - self.policy.idle_ms(),
                codes_before: now - USED_CODE_RETENTION_MS,
            })
            .await
    }

    /// Tells every instance's cache that this token is gone (after the store has it deleted).
    pub async fn forget(&self, hash: &TokenHash) {
        if let Some(coord) = &self.coord {
            if !coord.revoke(hash).await {
                tracing::warn!(
                    "redis did not take a revocation; the cache epoch will be bumped on recovery"
                );
            }
        }
    }
}
