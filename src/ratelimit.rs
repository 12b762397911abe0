//! Fixed-window rate limits: per client IP on `/login` (protects the app's WeChat quota), per
//! session on `/phone`. Counters live in Redis when it is configured (shared by every instance)
//! and fall back to this process's memory when it is not, or when Redis is unavailable.
//!
//! The client IP is the TCP peer, unless the peer is a configured trusted proxy: then it is the
//! right-most address in `X-Forwarded-For` that is not itself a trusted proxy. Trusting the header
//! from anyone would let every client pick a fresh IP per request.

use crate::clock::{Millis, SharedClock};
use crate::coord::Coord;
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limit: u64,
    pub window: Duration,
}

impl Rule {
    /// `"120/1m"`, `"10/30s"`, or `"off"` (→ `None`).
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (n, w) = text
            .split_once('/')
            .ok_or("expected COUNT/WINDOW like 120/1m, or off")?;
        let limit: u64 = n
            .trim()
            .parse()
            .map_err(|_| "COUNT must be a whole number")?;
        let window =
            humantime::parse_duration(w.trim()).map_err(|_| "WINDOW must be a duration like 1m")?;
        if limit == 0 || window.is_zero() {
            return Err("COUNT and WINDOW must be above zero".into());
        }
        Ok(Some(Self { limit, window }))
    }
}

pub struct RateLimiter {
    coord: Option<Arc<Coord>>,
    clock: SharedClock,
    local: Mutex<HashMap<String, u64>>,
    trusted: Vec<IpNet>,
}

impl RateLimiter {
    pub fn new(coord: Option<Arc<Coord>>, clock: SharedClock, trusted: Vec<IpNet>) -> Self {
        Self {
            coord,
            clock,
            local: Mutex::new(HashMap::new()),
            trusted,
        }
    }

    /// `Err(seconds to wait)` when `key` has used up `rule` in the current window.
    pub async fn check(&self, scope: &str, key: &str, rule: Rule) -> Result<(), u64> {
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

    /// The client's address, honouring `X-Forwarded-For` only from trusted proxies.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !self.is_trusted(*ip))
            .unwrap_or(peer)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn limiter(trusted: &[&str]) -> RateLimiter {
        let trusted = trusted.iter().map(|t| t.parse().unwrap()).collect();
        RateLimiter::new(None, Arc::new(ManualClock::new(1_000_000)), trusted)
    }

    #[test]
    fn rules_parse() {
        assert_eq!(Rule::parse("off").unwrap(), None);
        assert_eq!(
            Rule::parse("120/1m").unwrap(),
            Some(Rule {
                limit: 120,
                window: Duration::from_secs(60)
            })
        );
        for bad in ["", "120", "x/1m", "0/1m", "5/0s", "5/soon"] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_limit_holds_within_a_window_and_resets_after() {
        let clock = Arc::new(ManualClock::new(0));
        let l = RateLimiter::new(None, clock.clone(), vec![]);
        let rule = Rule {
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

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let l = limiter(&["10.0.0.0/8"]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.1.2.3".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            l.client_ip(proxy, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            l.client_ip(stranger, &h),
            stranger,
            "a client cannot pick its own IP"
        );
        assert_eq!(l.client_ip(proxy, &HeaderMap::new()), proxy);
    }
}
