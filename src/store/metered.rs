//! A store that times every call: `wxlogin_store_duration_seconds{op, ok}`. It wraps the
//! backend, below the in-memory cache, so the histogram shows the database's own latency.

use super::{
    Cleanup, LoginRecord, LoginStore, MaintenanceStore, NewLogin, SessionRecord, SessionStore,
    SessionSummary, SharedStore, Stats, StoreResult, UserFilter, UserRecord, UserStore,
};
use crate::clock::Millis;
use crate::domain::{AppId, CodeHash, TokenHash, UserId};
use async_trait::async_trait;
use std::future::Future;
use std::time::Instant;

pub struct MeteredStore(pub SharedStore);

async fn timed<T>(op: &'static str, f: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let started = Instant::now();
    let result = f.await;
    crate::metrics::store_call(op, result.is_ok(), started);
    result
}

#[async_trait]
impl LoginStore for MeteredStore {
    async fn is_code_used(&self, code: &CodeHash) -> StoreResult<bool> {
        timed("is_code_used", self.0.is_code_used(code)).await
    }
    async fn mark_code_used(&self, appid: &AppId, code: &CodeHash, now: Millis) -> StoreResult<()> {
        timed("mark_code_used", self.0.mark_code_used(appid, code, now)).await
    }
    async fn codes_used_since(
        &self,
        since: Millis,
        each: &mut (dyn for<'c> FnMut(&'c CodeHash, Millis) + Send),
    ) -> StoreResult<()> {
        timed("codes_used_since", self.0.codes_used_since(since, each)).await
    }
    async fn record_login(&self, login: NewLogin<'_>) -> StoreResult<LoginRecord> {
        timed("record_login", self.0.record_login(login)).await
    }
}

#[async_trait]
impl SessionStore for MeteredStore {
    async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        timed("find_session", self.0.find_session(token)).await
    }
    async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()> {
        timed("touch_session", self.0.touch_session(id, now)).await
    }
    async fn revoke_session(&self, token: &TokenHash) -> StoreResult<bool> {
        timed("revoke_session", self.0.revoke_session(token)).await
    }
    async fn revoke_session_by_id(&self, id: i64) -> StoreResult<Option<TokenHash>> {
        timed("revoke_session_by_id", self.0.revoke_session_by_id(id)).await
    }
    async fn revoke_user_sessions(&self, user: UserId) -> StoreResult<Vec<TokenHash>> {
        timed("revoke_user_sessions", self.0.revoke_user_sessions(user)).await
    }
    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<SessionSummary>> {
        timed("list_sessions", self.0.list_sessions(user)).await
    }
}

#[async_trait]
impl UserStore for MeteredStore {
    async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        timed("find_user", self.0.find_user(id)).await
    }
    async fn find_users(&self, filter: &UserFilter) -> StoreResult<Vec<UserRecord>> {
        timed("find_users", self.0.find_users(filter)).await
    }
    async fn set_phone(&self, id: UserId, phone: &str, country_code: &str) -> StoreResult<()> {
        timed("set_phone", self.0.set_phone(id, phone, country_code)).await
    }
}

#[async_trait]
impl MaintenanceStore for MeteredStore {
    async fn ping(&self) -> StoreResult<()> {
        timed("ping", self.0.ping()).await
    }
    async fn cleanup(&self, cutoffs: Cleanup) -> StoreResult<Option<(u64, u64)>> {
        timed("cleanup", self.0.cleanup(cutoffs)).await
    }
    async fn stats(&self, now: Millis) -> StoreResult<Stats> {
        timed("stats", self.0.stats(now)).await
    }
    async fn close(&self) {
        self.0.close().await
    }
}
