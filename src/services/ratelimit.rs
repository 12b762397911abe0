//! Fixed-window rate limits: per client IP on `/login` (protects the app's WeChat quota), per
//! session on `/phone`. Counters live in Redis when it is configured (shared by every instance)
//! and fall back to this process's memory when it is not, or when Redis is unavailable.
//! Which address a request comes from is the HTTP layer's business (`routes/extract.rs`).

use super::{ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock};
use crate::coord::Coord;
use crate::domain::RateRule;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct RateLimiter {
    coord: Option<Arc<Coord>>,
    clock: SharedClock,
    local: Mutex<HashMap<String, u64>>,
}

impl RateLimiter {
    pub fn new(coord: Option<Arc<Coord>>, clock: SharedClock) -> Self {
        Self {
            coord,
            clock,
            local: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when `key` has used up `rule` in the current window.
    pub async fn check(&self, scope: &str, key: &str, rule: RateRule) -> Result<(), u64> {
        let window_ms = rule.window.as_millis().max(1) as Millis;
        let now = self.clock.now_ms();
        let index = now / window_ms;
        let name = format!("{scope}:{key}:{index}");
        let shared = match &self.coord {
            Some(coord) => coord.incr_window(&name, rule.window).await,
            None => None,
        };
        let count = match shared {
            Some(n) => n,
            None => self.local_incr(&name, index),
        };
        if count <= rule.limit {
            Ok(())
        } else {
            let left_ms = (index + 1) * window_ms - now;
            Err(((left_ms + 999) / 1000).max(1) as u64)
        }
    }

    fn local_incr(&self, name: &str, index: i64) -> u64 {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if local.len() > 100_000 {
            // Old windows are dead weight: keep only the current one.
            let suffix = format!(":{index}");
            local.retain(|k, _| k.ends_with(&suffix));
        }
        let count = local.entry(name.to_owned()).or_insert(0);
        *count += 1;
        *count
    }
}

/// The configured limits, applied by name.
pub struct Limits {
    limiter: RateLimiter,
    login: Option<RateRule>,
    phone: Option<RateRule>,
}

impl Limits {
    pub fn new(limiter: RateLimiter, login: Option<RateRule>, phone: Option<RateRule>) -> Self {
        Self {
            limiter,
            login,
            phone,
        }
    }

    /// One login attempt from `client` (an address).
    pub async fn login(&self, client: &str) -> ServiceResult<()> {
        self.apply("login", client, self.login).await
    }

    /// One `/phone` call on session `session_id`.
    pub async fn phone(&self, session_id: i64) -> ServiceResult<()> {
        self.apply("phone", &session_id.to_string(), self.phone)
            .await
    }

    /// Applies `rule` (if on) to `key`: `RateLimited` with the seconds to wait when used up.
    async fn apply(
        &self,
        scope: &'static str,
        key: &str,
        rule: Option<RateRule>,
    ) -> ServiceResult<()> {
        let Some(rule) = rule else { return Ok(()) };
        self.limiter
            .check(scope, key, rule)
            .await
            .map_err(|retry_after_secs| {
                crate::metrics::rate_limited(scope);
                ServiceError::RateLimited { retry_after_secs }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    #[tokio::test]
    async fn the_limit_holds_within_a_window_and_resets_after() {
        let clock = Arc::new(ManualClock::new(0));
        let l = RateLimiter::new(None, clock.clone());
        let rule = RateRule {
            limit: 3,
            window: Duration::from_secs(10),
        };
        for _ in 0..3 {
            assert!(l.check("login", "1.2.3.4", rule).await.is_ok());
        }
        assert_eq!(l.check("login", "1.2.3.4", rule).await, Err(10));
        assert!(
            l.check("login", "5.6.7.8", rule).await.is_ok(),
            "other keys have their own budget"
        );
        clock.advance(Duration::from_secs(4));
        assert_eq!(l.check("login", "1.2.3.4", rule).await, Err(6));
        clock.advance(Duration::from_secs(6));
        assert!(l.check("login", "1.2.3.4", rule).await.is_ok());
    }
}
