//! Webhooks to the business backend, from a durable outbox.
//!
//! The store writes an outbox row in the same transaction as the change it reports (a user
//! created, banned, unbanned, merged or deleted), so a committed change always has its
//! webhook, and a change that rolled back never has one. This worker sends them:
//!
//! - **Per-user order, across instances.** A claim takes only the oldest undelivered row of
//!   each user, and only while none of that user's rows is in flight, and hides it for a lease
//!   (`next_at` and `leased_until` move past the attempt's timeout) by one atomic
//!   `UPDATE … RETURNING`; another instance's claim finds it hidden, and the user's later rows
//!   wait behind it. So one delivery at a time per user, in the order of the changes. (A dead row
//!   is passed over; re-driven, it waits for an attempt in flight, then goes before the user's
//!   later rows.) An attempt's result is recorded only if the row was not claimed again since
//!   (its attempt count), so a worker that stalled past its lease cannot disturb the next one.
//!   Leases and due times are read off each instance's clock: instances' clocks must agree to
//!   well within the lease (NTP).
//! - **At least once.** A row is deleted only after a 2xx answer. An instance killed mid-send
//!   leaves the row leased; when the lease runs out any instance sends it again, with the same
//!   event id (`X-Wxlogin-Event-Id`, and `id` in the body) for the receiver to drop duplicates.
//! - **Backoff.** A failed attempt is retried after 1 s, 2 s, 4 s, … (capped at an hour), each
//!   delay jittered to 50–100 % of itself, for `WXLOGIN_WEBHOOK_RETRY_FOR` (24 h) from its first
//!   attempt (not its creation: a row that waited behind its user's failing one gets its own
//!   period) or its last re-drive; then the row is dead: kept, listed by the admin API and
//!   console, and re-drivable.
//! - **Waking.** An admin change on this instance wakes the worker at once; anything else
//!   (a new user's `user_created`) goes at the next poll, within a second.

use crate::clock::{Millis, SharedClock};
use crate::domain::SecretUrl;
use crate::store::{OutboxRecord, OutboxState, OutboxStats, OutboxStore};
use crate::webhook::{Outgoing, WebhookClient};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows claimed per round; each is a different user's, sent concurrently.
const BATCH: i64 = 32;
/// How often an idle worker looks for due rows (a change on this instance wakes it at once).
const POLL: Duration = Duration::from_secs(1);
/// The first retry's delay, doubled each attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often the outbox gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// `WXLOGIN_WEBHOOK_*`.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: SecretUrl,
    pub secret: SecretString,
    /// One attempt, connection included.
    pub timeout: Duration,
    /// How long a webhook is retried before it is marked dead.
    pub retry_for: Duration,
}

/// What operators see of the outbox.
#[derive(Debug, Clone)]
pub struct OutboxView {
    /// `None` when webhooks are off.
    pub url: Option<String>,
    pub stats: OutboxStats,
    pub rows: Vec<OutboxRecord>,
}

pub struct Webhooks {
    store: Arc<dyn OutboxStore>,
    clock: SharedClock,
    sender: Option<Sender>,
    wake: Notify,
}

struct Sender {
    client: WebhookClient,
    /// For operators: the URL without credentials.
    shown: String,
    timeout: Duration,
    retry_for: Duration,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn OutboxStore>,
        clock: SharedClock,
        settings: Option<WebhookSettings>,
    ) -> anyhow::Result<Self> {
        let sender = match settings {
            None => None,
            Some(s) => Some(Sender {
                client: WebhookClient::new(&s.url, s.secret, s.timeout)?,
                shown: s.url.without_credentials(),
                timeout: s.timeout,
                retry_for: s.retry_for,
            }),
        };
        Ok(Self {
            store,
            clock,
            sender,
            wake: Notify::new(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// A change on this instance may have queued a webhook: look now rather than at the next poll.
    pub fn wake(&self) {
        if self.enabled() {
            self.wake.notify_one();
        }
    }

    /// Delivers until `stop`. An attempt cut short by the stop keeps its row leased; it is sent
    /// again when the lease runs out.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let Some(sender) = &self.sender else { return };
        let mut gauges_at = None::<tokio::time::Instant>;
        loop {
            let claimed = tokio::select! {
                _ = stop.cancelled() => return,
                claimed = self.round(sender) => claimed,
            };
            if gauges_at.is_none_or(|at| at.elapsed() >= GAUGES_EVERY) {
                gauges_at = Some(tokio::time::Instant::now());
                self.refresh_gauges().await;
            }
            if claimed == BATCH as usize {
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Claims a batch of due rows and sends them; returns how many were claimed.
    async fn round(&self, sender: &Sender) -> usize {
        let now = self.clock.now_ms();
        let lease = sender.timeout * 2 + Duration::from_secs(5);
        let claimed = match self
            .store
            .claim_webhooks(now, now + lease.as_millis() as Millis, BATCH)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: could not read the outbox");
                return 0;
            }
        };
        let count = claimed.len();
        futures::future::join_all(claimed.iter().map(|row| self.attempt(sender, row))).await;
        count
    }

    async fn attempt(&self, sender: &Sender, row: &OutboxRecord) {
        let outgoing = Outgoing {
            id: row.event_id,
            kind: &row.kind,
            body: &row.body,
            attempt: row.attempts,
        };
        let result = sender.client.send(&outgoing).await;
        let now = self.clock.now_ms();
        let stored = match &result {
            Ok(()) => {
                crate::metrics::webhook_delivery("delivered");
                self.store.webhook_delivered(row.id, row.attempts).await
            }
            Err(e) => {
                crate::metrics::webhook_delivery(e.label());
                let next_at = now + backoff(row.attempts).as_millis() as Millis;
                let dead = next_at - row.retry_from > sender.retry_for.as_millis() as Millis;
                if dead {
                    crate::metrics::webhook_dead();
                    tracing::warn!(
                        event_id = row.event_id,
                        attempts = row.attempts,
                        error = %e,
                        "webhook dead: retried for WXLOGIN_WEBHOOK_RETRY_FOR; re-drive it from the admin API"
                    );
                } else {
                    tracing::info!(event_id = row.event_id, attempt = row.attempts, error = %e, "webhook attempt failed");
                }
                self.store
                    .webhook_failed(
                        row.id,
                        row.attempts,
                        next_at,
                        dead.then_some(now),
                        &e.to_string(),
                    )
                    .await
            }
        };
        if let Err(e) = stored {
            // The row stays leased and is sent again when the lease ends: a duplicate with the
            // same id, never a loss.
            tracing::warn!(error = %e, event_id = row.event_id, "webhooks: could not record an attempt");
        }
    }

    async fn refresh_gauges(&self) {
        match self.store.outbox_stats().await {
            Ok(stats) => {
                let oldest = stats
                    .oldest_pending_at
                    .map_or(0.0, |at| (self.clock.now_ms() - at).max(0) as f64 / 1000.0);
                crate::metrics::webhook_outbox(stats.pending, stats.dead, oldest);
            }
            Err(e) => tracing::warn!(error = %e, "webhooks: could not count the outbox"),
        }
    }

    /// The outbox for operators: counts, and the newest rows in `state` (any when `None`).
    pub async fn list(
        &self,
        state: Option<OutboxState>,
        limit: u32,
    ) -> super::ServiceResult<OutboxView> {
        let stats = self.store.outbox_stats().await?;
        let rows = self.store.outbox(state, i64::from(limit)).await?;
        Ok(OutboxView {
            url: self.sender.as_ref().map(|s| s.shown.clone()),
            stats,
            rows,
        })
    }

    /// Puts a dead webhook back in line, with a fresh retry period.
    pub async fn redrive(&self, id: i64) -> super::ServiceResult<()> {
        if self.store.redrive_webhook(id, self.clock.now_ms()).await? {
            tracing::info!(outbox_id = id, "webhook re-driven");
            self.wake();
            Ok(())
        } else {
            Err(super::ServiceError::NotFound)
        }
    }
}

/// The delay before attempt `attempts + 1`: 1 s doubled per attempt, at most an hour, then
/// jittered to 50–100 % so receivers coming back are not met by every instance at once.
fn backoff(attempts: u32) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let full = exp.min(MAX_BACKOFF);
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let fraction = 0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0;
    full.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_an_hour_with_jitter() {
        for (attempts, full) in [(1, 1), (2, 2), (3, 4), (10, 512), (13, 3600), (40, 3600)] {
            for _ in 0..50 {
                let d = backoff(attempts).as_secs_f64();
                assert!(
                    d >= full as f64 * 0.5 - 1e-9 && d <= full as f64 + 1e-9,
                    "attempt {attempts}: {d}s not within 50-100 % of {full}s"
                );
            }
        }
    }
}
