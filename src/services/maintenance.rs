//! Upkeep: readiness, counts, and the background loop that keeps the active-sessions gauge
//! current and deletes expired sessions and used codes no client can present any more.

use super::sessions::SessionPolicy;
use super::ServiceResult;
use crate::clock::{Millis, SharedClock};
use crate::store::{Cleanup, MaintenanceStore, Stats, StoreResult};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// WeChat codes live 5 minutes; a day is far beyond any code that could still be presented.
const USED_CODE_RETENTION_MS: Millis = 24 * 3600 * 1000;

#[derive(Clone)]
pub struct Maintenance {
    store: Arc<dyn MaintenanceStore>,
    clock: SharedClock,
    policy: SessionPolicy,
    event_retention: Duration,
}

impl Maintenance {
    pub fn new(
        store: Arc<dyn MaintenanceStore>,
        clock: SharedClock,
        policy: SessionPolicy,
        event_retention: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            policy,
            event_retention,
        }
    }

    /// Does the store of record answer?
    pub async fn ready(&self) -> ServiceResult<()> {
        Ok(self.store.ping().await?)
    }

    pub async fn stats(&self) -> ServiceResult<Stats> {
        Ok(self.store.stats(self.clock.now_ms()).await?)
    }

    /// Deletes expired sessions, used codes no client can present any more and events past
    /// their retention. Safe to call
    /// on every instance: the store lets one at a time do the work (`None`: another is on it).
    pub async fn cleanup(&self) -> StoreResult<Option<(u64, u64)>> {
        let now = self.clock.now_ms();
        self.store
            .cleanup(Cleanup {
                now,
                idle_before: now - self.policy.idle_ms(),
                codes_before: now - USED_CODE_RETENTION_MS,
                events_before: now - self.event_retention.as_millis() as Millis,
            })
            .await
    }

    /// Until `stop`: the active-sessions gauge at once and every minute, the cleanup every
    /// `cleanup_every`.
    pub async fn run(self, cleanup_every: Duration, stop: CancellationToken) {
        let minute = Duration::from_secs(60);
        let mut tick = tokio::time::interval(minute);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let per_cleanup = (cleanup_every.as_secs() / 60).max(1);
        for n in 0u64.. {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Ok(stats) = self.store.stats(self.clock.now_ms()).await {
                crate::metrics::live_sessions(stats.live_sessions);
            }
            // The first cleanup comes one period after the start, not at it: instances started
            // together (a rollout, a test suite) would otherwise all queue for the one lock.
            if n == 0 || n % per_cleanup != 0 {
                continue;
            }
            match self.cleanup().await {
                Ok(Some((sessions, codes))) => {
                    tracing::info!(
                        sessions,
                        codes,
                        "cleanup removed expired sessions and used codes"
                    )
                }
                Ok(None) => tracing::debug!("cleanup: another instance is on it"),
                Err(e) => tracing::warn!(error = %e, "cleanup failed; will retry"),
            }
        }
    }
}
