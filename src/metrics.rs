//! Prometheus metrics. One process-wide recorder (the `metrics` facade), rendered at `/metrics`.
//!
//! Labels are bounded sets (route templates, error codes, WeChat errcodes), never a user id,
//! openid or token, so the series count stays small and no personal data reaches a dashboard.

use crate::clock::Millis;
use crate::domain::{AppId, TokenHash, UserId};
use crate::store::{
    Cleanup, LoginRecord, NewLogin, SessionRecord, SessionSummary, SharedStore, Stats, Store,
    StoreResult, UserFilter, UserRecord,
};
use async_trait::async_trait;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("valid buckets")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// Counts and times every request by route template and status.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("wxlogin_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("wxlogin_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

pub fn login(outcome: &'static str) {
    metrics::counter!("wxlogin_logins_total", "outcome" => outcome).increment(1);
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
    metrics::histogram!("wxlogin_wechat_call_duration_seconds", "api" => api)
        .record(started.elapsed().as_secs_f64());
}

pub fn live_sessions(count: i64) {
    metrics::gauge!("wxlogin_active_sessions").set(count as f64);
}

/// A [`Store`] that times every call: `wxlogin_store_duration_seconds{op, ok}`.
pub struct MeteredStore(pub SharedStore);

async fn timed<T>(op: &'static str, f: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let started = Instant::now();
    let result = f.await;
    let ok = if result.is_ok() { "true" } else { "false" };
    metrics::histogram!("wxlogin_store_duration_seconds", "op" => op, "ok" => ok)
        .record(started.elapsed().as_secs_f64());
    result
}

#[async_trait]
impl Store for MeteredStore {
    async fn ping(&self) -> StoreResult<()> {
        timed("ping", self.0.ping()).await
    }
    async fn is_code_used(&self, code_hash: &str) -> StoreResult<bool> {
        timed("is_code_used", self.0.is_code_used(code_hash)).await
    }
    async fn mark_code_used(&self, appid: &AppId, code_hash: &str, now: Millis) -> StoreResult<()> {
        timed(
            "mark_code_used",
            self.0.mark_code_used(appid, code_hash, now),
        )
        .await
    }
    async fn codes_used_since(
        &self,
        since: Millis,
        each: &mut (dyn for<'c> FnMut(&'c str, Millis) + Send),
    ) -> StoreResult<()> {
        timed("codes_used_since", self.0.codes_used_since(since, each)).await
    }
    async fn record_login(&self, login: NewLogin<'_>) -> StoreResult<LoginRecord> {
        timed("record_login", self.0.record_login(login)).await
    }
    async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        timed("find_session", self.0.find_session(token)).await
    }
    async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()> {
        timed("touch_session", self.0.touch_session(id, now)).await
    }
    async fn revoke_session(&self, token: &TokenHash) -> StoreResult<bool> {
        timed("revoke_session", self.0.revoke_session(token)).await
    }
    async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        timed("find_user", self.0.find_user(id)).await
    }
    async fn find_users_by_unionid(&self, unionid: &str) -> StoreResult<Vec<UserRecord>> {
        timed(
            "find_users_by_unionid",
            self.0.find_users_by_unionid(unionid),
        )
        .await
    }
    async fn set_phone(&self, id: UserId, phone: &str, country_code: &str) -> StoreResult<()> {
        timed("set_phone", self.0.set_phone(id, phone, country_code)).await
    }
    async fn cleanup(&self, cutoffs: Cleanup) -> StoreResult<Option<(u64, u64)>> {
        timed("cleanup", self.0.cleanup(cutoffs)).await
    }
    async fn find_users(&self, filter: &UserFilter) -> StoreResult<Vec<UserRecord>> {
        timed("find_users", self.0.find_users(filter)).await
    }
    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<SessionSummary>> {
        timed("list_sessions", self.0.list_sessions(user)).await
    }
    async fn revoke_session_by_id(&self, id: i64) -> StoreResult<Option<TokenHash>> {
        timed("revoke_session_by_id", self.0.revoke_session_by_id(id)).await
    }
    async fn revoke_user_sessions(&self, user: UserId) -> StoreResult<Vec<TokenHash>> {
        timed("revoke_user_sessions", self.0.revoke_user_sessions(user)).await
    }
    async fn stats(&self, now: Millis) -> StoreResult<Stats> {
        timed("stats", self.0.stats(now)).await
    }
}
