//! Fixed-window rate limits: failed logins per client address on `/login` (protects the app's
//! WeChat quota from floods of junk codes without ever throttling the real users behind one
//! carrier NAT), and calls per session on `/phone`. Counters live in Redis when it is configured
//! (shared by every instance) and fall back to this process's memory when it is not, or when
//! Redis is unavailable; that memory is a bounded LRU, so a flood of keys cannot grow it.
//!
//! Addresses are counted by [`ClientKey`]: IPv4 per address, IPv6 per /64 (one subscriber's
//! whole allocation), IPv4-mapped IPv6 as the IPv4 address it is. Which address a request comes
//! from is the HTTP layer's business (`routes/extract.rs`).

use super::{ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock};
use crate::coord::Coord;
use crate::domain::RateRule;
use lru::LruCache;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// Counters kept in memory at most (about 100 bytes each).
const LOCAL_KEYS: usize = 65_536;

/// The unit a client address is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(bits.into()))
            }
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

pub struct RateLimiter {
    coord: Option<Arc<Coord>>,
    clock: SharedClock,
    /// `name` → (window index, count).
    local: Mutex<LruCache<String, (i64, u64)>>,
}

impl RateLimiter {
    pub fn new(coord: Option<Arc<Coord>>, clock: SharedClock) -> Self {
        Self::with_capacity(coord, clock, LOCAL_KEYS)
    }

    fn with_capacity(coord: Option<Arc<Coord>>, clock: SharedClock, keys: usize) -> Self {
        let keys = NonZeroUsize::new(keys).unwrap_or(NonZeroUsize::MIN);
        Self {
            coord,
            clock,
            local: Mutex::new(LruCache::new(keys)),
        }
    }

    /// The window `rule` is in now: its index and the milliseconds left of it.
    fn window(&self, rule: RateRule) -> (i64, Millis) {
        let window_ms = rule.window.as_millis().max(1) as Millis;
        let now = self.clock.now_ms();
        let index = now / window_ms;
        (index, (index + 1) * window_ms - now)
    }

    /// Counts one use of `key`: `Err(seconds to wait)` when that goes past `rule`.
    pub async fn hit(&self, scope: &str, key: &str, rule: RateRule) -> Result<(), u64> {
        let count = self.add(scope, key, rule).await;
        self.judge(count, rule)
    }

    /// Adds one to `key`'s count in this window and returns the new count.
    pub async fn add(&self, scope: &str, key: &str, rule: RateRule) -> u64 {
        self.add_named(scope, key, rule).await.1
    }

    /// [`add`](Self::add), also returning the counter's name for [`undo`](Self::undo).
    async fn add_named(&self, scope: &str, key: &str, rule: RateRule) -> (String, u64) {
        let (index, _) = self.window(rule);
        let name = format!("{scope}:{key}:{index}");
        let shared = match &self.coord {
            Some(coord) => coord.incr_window(&name, rule.window).await,
            None => None,
        };
        let count = match shared {
            Some(n) => n,
            None => self.local_incr(&name, index),
        };
        (name, count)
    }

    /// Takes back one [`add_named`](Self::add_named) (a counter already gone stays gone).
    async fn undo(&self, name: &str) {
        let shared = match &self.coord {
            Some(coord) => coord.decr_window(name).await,
            None => None,
        };
        if shared.is_none() {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = local.peek_mut(name) {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }

    fn judge(&self, count: u64, rule: RateRule) -> Result<(), u64> {
        if count <= rule.limit {
            Ok(())
        } else {
            let (_, left_ms) = self.window(rule);
            Err(((left_ms + 999) / 1000).max(1) as u64)
        }
    }

    fn local_incr(&self, name: &str, index: i64) -> u64 {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let entry = local.get_or_insert_mut(name.to_owned(), || (index, 0));
        if entry.0 != index {
            *entry = (index, 0);
        }
        entry.1 += 1;
        entry.1
    }

    #[cfg(test)]
    fn local_len(&self) -> usize {
        self.local.lock().unwrap().len()
    }
}

/// A counted login attempt (see [`Limits::login_attempt`]).
#[must_use = "settle it with Limits::login_done"]
pub struct LoginAttempt(Option<String>);

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

    /// A login attempt from `client`, counted before it runs so that a burst of parallel
    /// attempts cannot all slip under the limit: refused once `client`'s failed (and in-flight)
    /// logins in this window reach the limit. Settle it with [`login_done`](Self::login_done).
    pub async fn login_attempt(&self, client: ClientKey) -> ServiceResult<LoginAttempt> {
        let Some(rule) = self.login else {
            return Ok(LoginAttempt(None));
        };
        let (name, count) = self
            .limiter
            .add_named("login", &client.to_string(), rule)
            .await;
        if let Err(retry_after_secs) = self.limiter.judge(count, rule) {
            self.limiter.undo(&name).await;
            return Err(limited("login", retry_after_secs));
        }
        Ok(LoginAttempt(Some(name)))
    }

    /// Settles an attempt: a failure the client caused (a rejected code, a bad body) stays
    /// counted; anything else — a login, a ban, an outage on our side — is taken back, so the
    /// real users behind one address are never counted for logging in.
    pub async fn login_done(&self, attempt: LoginAttempt, client_mistake: bool) {
        if let (Some(name), false) = (attempt.0, client_mistake) {
            self.limiter.undo(&name).await;
        }
    }

    /// One `/phone` call on session `session_id`.
    pub async fn phone(&self, session_id: i64) -> ServiceResult<()> {
        let Some(rule) = self.phone else {
            return Ok(());
        };
        self.limiter
            .hit("phone", &session_id.to_string(), rule)
            .await
            .map_err(|retry_after_secs| limited("phone", retry_after_secs))
    }
}

fn limited(scope: &'static str, retry_after_secs: u64) -> ServiceError {
    crate::metrics::rate_limited(scope);
    ServiceError::RateLimited { retry_after_secs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn rule(limit: u64) -> RateRule {
        RateRule {
            limit,
            window: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn the_limit_holds_within_a_window_and_resets_after() {
        let clock = Arc::new(ManualClock::new(0));
        let l = RateLimiter::new(None, clock.clone());
        for _ in 0..3 {
            assert!(l.hit("login", "1.2.3.4", rule(3)).await.is_ok());
        }
        assert_eq!(l.hit("login", "1.2.3.4", rule(3)).await, Err(10));
        assert!(
            l.hit("login", "5.6.7.8", rule(3)).await.is_ok(),
            "other keys have their own budget"
        );
        clock.advance(Duration::from_secs(4));
        assert_eq!(l.hit("login", "1.2.3.4", rule(3)).await, Err(6));
        clock.advance(Duration::from_secs(6));
        assert!(l.hit("login", "1.2.3.4", rule(3)).await.is_ok());
    }

    #[tokio::test]
    async fn an_undone_attempt_gives_its_place_back() {
        let clock = Arc::new(ManualClock::new(0));
        let l = RateLimiter::new(None, clock.clone());
        let (name, n) = l.add_named("login", "k", rule(2)).await;
        assert_eq!(n, 1);
        l.undo(&name).await;
        l.undo(&name).await;
        assert_eq!(l.add("login", "k", rule(2)).await, 1, "never below zero");
    }

    #[tokio::test]
    async fn memory_stays_bounded_under_a_flood_of_keys() {
        let clock = Arc::new(ManualClock::new(0));
        let l = RateLimiter::with_capacity(None, clock, 1000);
        for i in 0..50_000u32 {
            l.add("login", &i.to_string(), rule(5)).await;
        }
        assert_eq!(l.local_len(), 1000);
    }

    #[test]
    fn addresses_are_counted_canonically_and_ipv6_by_slash_64() {
        let key = |s: &str| ClientKey::of(s.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            key("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            key("2001:db8:1:2::1"),
            "one /64 is one client"
        );
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
