//! Session policy and checks: verify a token, revoke it, decide expiry.
//!
//! A session ends at whichever comes first: `idle_timeout` after it was last used, or
//! `max_lifetime` after it was created. Both are checked here on every use, against the
//! injected clock, so the server enforces them whatever the client does.
//! Depends on the store trait and domain types; knows nothing of HTTP.

use crate::clock::{Millis, SharedClock};
use crate::domain::SessionToken;
use crate::store::{SessionRecord, SharedStore, StoreError};
use std::time::Duration;

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
        now < s.expires_at && now < s.last_seen_at + self.idle_ms()
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
    clock: SharedClock,
    policy: SessionPolicy,
}

impl Sessions {
    pub fn new(store: SharedStore, clock: SharedClock, policy: SessionPolicy) -> Self {
        Self {
            store,
            clock,
            policy,
        }
    }

    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// Resolves a token to its live session, refreshing the idle deadline when due.
    pub async fn verify(&self, token: &SessionToken) -> Result<SessionRecord, AuthError> {
        let now = self.clock.now_ms();
        let session = self
            .store
            .find_session(&token.hash())
            .await?
            .ok_or(AuthError::Unauthorized)?;
        if !self.policy.is_live(&session, now) {
            return Err(AuthError::Unauthorized);
        }
        if now - session.last_seen_at >= self.policy.touch_interval_ms() {
            self.store.touch_session(session.id, now).await?;
        }
        Ok(session)
    }

    /// Revokes the session; `Unauthorized` if there was none (already revoked or never issued).
    pub async fn revoke(&self, token: &SessionToken) -> Result<(), AuthError> {
        if self.store.revoke_session(&token.hash()).await? {
            Ok(())
        } else {
            Err(AuthError::Unauthorized)
        }
    }
}
