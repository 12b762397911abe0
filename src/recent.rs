//! The last hour of this instance, minute by minute, for the admin console's dashboard: logins,
//! login errors by code, and WeChat call latency. Fed by `metrics::login` and
//! `metrics::wechat_call`; kept in memory (60 slots), so it costs the hot path one uncontended
//! lock and no store or Redis round trip. Each instance shows its own traffic: a cluster-wide
//! view is Prometheus's job (`/metrics`). A leaf, like `metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub const MINUTES: usize = 60;

/// Upper bounds (ms) of the latency buckets; the last bucket is everything slower.
const BOUNDS_MS: [f64; 22] = [
    1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0,
    750.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0,
];

#[derive(Clone, Default)]
struct Slot {
    /// Minutes since the epoch; a slot of an older minute is stale and reads as empty.
    minute: i64,
    logins: u64,
    errors: BTreeMap<&'static str, u64>,
    calls: u64,
    max_ms: f64,
    buckets: [u64; BOUNDS_MS.len() + 1],
}

/// One minute as the dashboard draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub logins: u64,
    pub login_errors: BTreeMap<String, u64>,
    pub wechat_calls: u64,
    /// Estimated from buckets (the bucket's upper bound, at most the slowest call); `None` for
    /// a minute without calls.
    pub wechat_p50_ms: Option<f64>,
    pub wechat_p99_ms: Option<f64>,
}

pub struct Recent {
    slots: Mutex<Vec<Slot>>,
}

static RECENT: std::sync::LazyLock<Recent> = std::sync::LazyLock::new(Recent::new);

/// The process's own record.
pub fn global() -> &'static Recent {
    &RECENT
}

fn minute_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 60) as i64)
}

impl Default for Recent {
    fn default() -> Self {
        Self::new()
    }
}

impl Recent {
    pub fn new() -> Self {
        Self {
            slots: Mutex::new(vec![Slot::default(); MINUTES]),
        }
    }

    fn with_slot(&self, minute: i64, f: impl FnOnce(&mut Slot)) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[minute.rem_euclid(MINUTES as i64) as usize];
        if slot.minute != minute {
            *slot = Slot {
                minute,
                ..Slot::default()
            };
        }
        f(slot);
    }

    /// A login's outcome: `ok`, or its error code.
    pub fn login(&self, outcome: &'static str) {
        self.login_at(minute_now(), outcome);
    }

    fn login_at(&self, minute: i64, outcome: &'static str) {
        self.with_slot(minute, |s| {
            if outcome == "ok" {
                s.logins += 1;
            } else {
                *s.errors.entry(outcome).or_default() += 1;
            }
        });
    }

    /// One WeChat call's duration.
    pub fn wechat_call(&self, ms: f64) {
        self.wechat_call_at(minute_now(), ms);
    }

    fn wechat_call_at(&self, minute: i64, ms: f64) {
        let bucket = BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BOUNDS_MS.len());
        self.with_slot(minute, |s| {
            s.calls += 1;
            s.max_ms = s.max_ms.max(ms);
            s.buckets[bucket] += 1;
        });
    }

    /// The last [`MINUTES`] minutes, oldest first, the current one last; quiet minutes are zeros.
    pub fn last_hour(&self) -> Vec<Minute> {
        self.last_hour_at(minute_now())
    }

    fn last_hour_at(&self, now: i64) -> Vec<Minute> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        (now - MINUTES as i64 + 1..=now)
            .map(|minute| {
                let slot = &slots[minute.rem_euclid(MINUTES as i64) as usize];
                let empty = Slot::default();
                let s = if slot.minute == minute { slot } else { &empty };
                Minute {
                    minute,
                    logins: s.logins,
                    login_errors: s
                        .errors
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), *v))
                        .collect(),
                    wechat_calls: s.calls,
                    wechat_p50_ms: quantile(s, 0.50),
                    wechat_p99_ms: quantile(s, 0.99),
                }
            })
            .collect()
    }
}

fn quantile(s: &Slot, q: f64) -> Option<f64> {
    if s.calls == 0 {
        return None;
    }
    let rank = ((s.calls as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in s.buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bound = BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY);
            return Some(bound.min(s.max_ms));
        }
    }
    Some(s.max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_kept_for_an_hour_and_old_ones_read_as_empty() {
        let r = Recent::new();
        r.login_at(1000, "ok");
        r.login_at(1000, "ok");
        r.login_at(1000, "invalid_code");
        r.login_at(1030, "ok");
        let hour = r.last_hour_at(1030);
        assert_eq!(hour.len(), MINUTES);
        assert_eq!(hour[0].minute, 971);
        assert_eq!(hour[MINUTES - 1].minute, 1030);
        let at_1000 = &hour[1000 - 971];
        assert_eq!(at_1000.logins, 2);
        assert_eq!(at_1000.login_errors.get("invalid_code"), Some(&1));
        assert_eq!(hour[MINUTES - 1].logins, 1);
        // An hour later minute 1000's slot belongs to minute 1060: the old counts are gone.
        r.login_at(1060, "ok");
        let hour = r.last_hour_at(1060);
        assert_eq!(hour.iter().map(|m| m.logins).sum::<u64>(), 2);
    }

    #[test]
    fn latency_quantiles_come_from_buckets_capped_by_the_slowest_call() {
        let r = Recent::new();
        for _ in 0..98 {
            r.wechat_call_at(5, 4.0);
        }
        r.wechat_call_at(5, 180.0);
        r.wechat_call_at(5, 181.0);
        let m = &r.last_hour_at(5)[MINUTES - 1];
        assert_eq!(m.wechat_calls, 100);
        assert_eq!(m.wechat_p50_ms, Some(5.0));
        assert_eq!(m.wechat_p99_ms, Some(181.0));
        assert_eq!(r.last_hour_at(5)[0].wechat_p50_ms, None);
    }
}
