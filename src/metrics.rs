//! Prometheus metrics. One process-wide recorder (the `metrics` facade), rendered at `/metrics`.
//!
//! Labels are bounded sets (route templates, error codes, WeChat errcodes), never a user id,
//! openid or token, so the series count stays small and no personal data reaches a dashboard.
//! A leaf: every layer may record here; it imports only its sibling leaf `recent` (the
//! dashboard's last hour).

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("valid buckets")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            // Histogram samples wait in the recorder until an upkeep (or a scrape) folds them
            // into their buckets: without one, a server nobody scrapes grows by every request's
            // samples (~10 MB a minute at 9,000 requests/s in the soak). One thread for the
            // process, whatever runtimes come and go.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// One request, counted and timed by route template, method and status.
pub fn http_request(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    let (requests, duration) = HTTP.handles(route, method, status);
    requests.increment(1);
    duration.record(elapsed.as_secs_f64());
}

/// The request metrics' handles by route, method and status, so that a request costs two
/// lookups in a small map (under a read lock: worker threads do not wait on each other) rather
/// than registering its labels with the recorder again.
static HTTP: HttpHandles = HttpHandles(std::sync::RwLock::new(None));

/// Route template → its duration histogram and its counters by method and status.
type ByRoute = std::collections::HashMap<String, (Histogram, ByStatus)>;
type ByStatus = std::collections::HashMap<(&'static str, u16), Counter>;

struct HttpHandles(std::sync::RwLock<Option<ByRoute>>);

impl HttpHandles {
    fn handles(&self, route: &str, method: &'static str, status: u16) -> (Counter, Histogram) {
        let known = {
            let map = self.0.read().unwrap_or_else(|p| p.into_inner());
            map.as_ref().and_then(|routes| {
                let (duration, by_status) = routes.get(route)?;
                Some((by_status.get(&(method, status))?.clone(), duration.clone()))
            })
        };
        if let Some(handles) = known {
            return handles;
        }
        // A route, method and status seen for the first time: registered once.
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        let routes = map.get_or_insert_with(Default::default);
        let (duration, by_status) = routes.entry(route.to_owned()).or_insert_with(|| {
            let duration = metrics::histogram!(
                "wxlogin_http_request_duration_seconds",
                "route" => route.to_owned()
            );
            (duration, ByStatus::default())
        });
        let requests = by_status
            .entry((method, status))
            .or_insert_with(|| {
                metrics::counter!(
                    "wxlogin_http_requests_total",
                    "route" => route.to_owned(),
                    "method" => method,
                    "status" => status.to_string()
                )
            })
            .clone();
        (requests, duration.clone())
    }
}

pub fn login(outcome: &'static str) {
    metrics::counter!("wxlogin_logins_total", "outcome" => outcome).increment(1);
    crate::recent::global().login(outcome);
}

pub fn token_check(outcome: &'static str, source: &'static str) {
    metrics::counter!("wxlogin_token_checks_total", "outcome" => outcome, "source" => source)
        .increment(1);
}

/// A session lookup in SQLite's in-process cache (`store/cached.rs`): `hit` or `miss`.
pub fn session_cache(result: &'static str) {
    metrics::counter!("wxlogin_session_cache_total", "result" => result).increment(1);
}

pub fn wechat_call(api: &'static str, errcode: String, started: Instant) {
    metrics::counter!("wxlogin_wechat_calls_total", "api" => api, "errcode" => errcode)
        .increment(1);
    let elapsed = started.elapsed().as_secs_f64();
    metrics::histogram!("wxlogin_wechat_call_duration_seconds", "api" => api).record(elapsed);
    crate::recent::global().wechat_call(elapsed * 1000.0);
}

/// One webhook attempt: `delivered`, `http_error`, `timeout`, `connect_error` or `error`.
pub fn webhook_delivery(result: &'static str) {
    metrics::counter!("wxlogin_webhook_deliveries_total", "result" => result).increment(1);
}

/// A webhook ran out of retries.
pub fn webhook_dead() {
    metrics::counter!("wxlogin_webhook_dead_total").increment(1);
}

/// The outbox as last counted (cluster-wide: every instance reports the same rows).
pub fn webhook_outbox(pending: i64, dead: i64, oldest_pending_seconds: f64) {
    metrics::gauge!("wxlogin_webhook_outbox_depth").set(pending as f64);
    metrics::gauge!("wxlogin_webhook_outbox_dead").set(dead as f64);
    metrics::gauge!("wxlogin_webhook_oldest_undelivered_age_seconds").set(oldest_pending_seconds);
}

pub fn live_sessions(count: i64) {
    metrics::gauge!("wxlogin_active_sessions").set(count as f64);
}

/// One store call: `wxlogin_store_duration_seconds{op, ok}`.
pub fn store_call(op: &'static str, ok: bool, started: Instant) {
    let ok = if ok { "true" } else { "false" };
    metrics::histogram!("wxlogin_store_duration_seconds", "op" => op, "ok" => ok)
        .record(started.elapsed().as_secs_f64());
}

/// One group commit of logins (either store's): `wxlogin_store_login_batches_total` and
/// `wxlogin_store_batched_logins_total`; their ratio is the mean batch size.
pub fn login_batch(logins: usize) {
    metrics::counter!("wxlogin_store_login_batches_total").increment(1);
    metrics::counter!("wxlogin_store_batched_logins_total").increment(logins as u64);
}

/// A request refused by a rate limit.
pub fn rate_limited(scope: &'static str) {
    metrics::counter!("wxlogin_rate_limited_total", "scope" => scope).increment(1);
}

/// A connection closed by the server for holding it: headers too slow, or idle too long.
pub fn connection_timed_out() {
    metrics::counter!("wxlogin_http_connections_timed_out_total").increment(1);
}

/// A request answered `408` because it did not complete within the request timeout.
pub fn request_timed_out() {
    metrics::counter!("wxlogin_http_requests_timed_out_total").increment(1);
}

/// Connections being served now (the cap is `WXLOGIN_MAX_CONNECTIONS`).
pub fn connections_open(delta: f64) {
    metrics::gauge!("wxlogin_http_connections_open").increment(delta);
}
