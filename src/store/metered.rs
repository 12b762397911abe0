//! A store that times every call: `wxlogin_store_duration_seconds{op, ok}`. It wraps the
//! backend, below the in-memory cache, so the histogram shows the database's own latency.

use super::{
    AccountChange, Adoption, AppRecord, AppRotation, AppStore, Audit, Avatar, Cleanup, EventFilter,
    EventRecord, LoginRecord, LoginStore, MaintenanceStore, NewAppRecord, NewLogin, PhoneBinding,
    ProfileChange, SessionRecord, SessionStore, SessionSummary, SharedStore, Stats, StoreResult,
    TakeOver, UserFilter, UserRecord, UserStore,
};
use crate::clock::Millis;
use crate::domain::{AppId, CodeHash, Platform, TokenHash, UserId};
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
    async fn take_over(
        &self,
        take: &TakeOver<'_>,
        audit: Audit<'_>,
    ) -> StoreResult<Option<Adoption>> {
        timed("take_over", self.0.take_over(take, audit)).await
    }
    async fn record_login_failure(
        &self,
        platform: Platform,
        appid: &AppId,
        error: &str,
        audit: Audit<'_>,
    ) -> StoreResult<()> {
        timed(
            "record_login_failure",
            self.0.record_login_failure(platform, appid, error, audit),
        )
        .await
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
    async fn revoke_session(&self, token: &TokenHash, audit: Audit<'_>) -> StoreResult<bool> {
        timed("revoke_session", self.0.revoke_session(token, audit)).await
    }
    async fn revoke_session_by_id(
        &self,
        id: i64,
        owner: Option<UserId>,
        audit: Audit<'_>,
    ) -> StoreResult<Option<TokenHash>> {
        timed(
            "revoke_session_by_id",
            self.0.revoke_session_by_id(id, owner, audit),
        )
        .await
    }
    async fn revoke_user_sessions(
        &self,
        user: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Vec<TokenHash>> {
        timed(
            "revoke_user_sessions",
            self.0.revoke_user_sessions(user, audit),
        )
        .await
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
    async fn bind_phone(
        &self,
        id: UserId,
        phone: &str,
        country_code: &str,
        audit: Audit<'_>,
    ) -> StoreResult<PhoneBinding> {
        timed(
            "bind_phone",
            self.0.bind_phone(id, phone, country_code, audit),
        )
        .await
    }
    async fn update_profile(
        &self,
        id: UserId,
        change: &ProfileChange,
        audit: Audit<'_>,
    ) -> StoreResult<bool> {
        timed("update_profile", self.0.update_profile(id, change, audit)).await
    }
    async fn put_avatar(&self, avatar: &Avatar, now: Millis) -> StoreResult<()> {
        timed("put_avatar", self.0.put_avatar(avatar, now)).await
    }
    async fn avatar(&self, sha256: &str) -> StoreResult<Option<Avatar>> {
        timed("avatar", self.0.avatar(sha256)).await
    }
    async fn ban_user(
        &self,
        id: UserId,
        reason: &str,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>> {
        timed("ban_user", self.0.ban_user(id, reason, audit)).await
    }
    async fn unban_user(&self, id: UserId, audit: Audit<'_>) -> StoreResult<bool> {
        timed("unban_user", self.0.unban_user(id, audit)).await
    }
    async fn merge_users(
        &self,
        into: UserId,
        from: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>> {
        timed("merge_users", self.0.merge_users(into, from, audit)).await
    }
    async fn delete_user(
        &self,
        id: UserId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<AccountChange>> {
        timed("delete_user", self.0.delete_user(id, audit)).await
    }
    async fn events(&self, filter: &EventFilter) -> StoreResult<Vec<EventRecord>> {
        timed("events", self.0.events(filter)).await
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
    async fn unsealed(
        &self,
        kind: super::SealedColumn,
        skip_prefix: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String)>> {
        self.0.unsealed(kind, skip_prefix, after, limit).await
    }
    async fn replace_sealed(
        &self,
        kind: super::SealedColumn,
        id: i64,
        old: &str,
        new: &str,
        phone_hash: &str,
    ) -> StoreResult<bool> {
        self.0.replace_sealed(kind, id, old, new, phone_hash).await
    }
    fn vault(&self) -> &crate::vault::Vault {
        self.0.vault()
    }
    async fn settle(&self) -> StoreResult<()> {
        self.0.settle().await
    }
    async fn close(&self) {
        self.0.close().await
    }
}

#[async_trait]
impl super::OutboxStore for MeteredStore {
    async fn claim_webhooks(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> StoreResult<Vec<super::OutboxRecord>> {
        timed(
            "claim_webhooks",
            self.0.claim_webhooks(now, lease_until, limit),
        )
        .await
    }
    async fn webhook_delivered(&self, id: i64, attempts: u32) -> StoreResult<()> {
        timed("webhook_delivered", self.0.webhook_delivered(id, attempts)).await
    }
    async fn webhook_failed(
        &self,
        id: i64,
        attempts: u32,
        next_at: Millis,
        dead_at: Option<Millis>,
        error: &str,
    ) -> StoreResult<()> {
        timed(
            "webhook_failed",
            self.0.webhook_failed(id, attempts, next_at, dead_at, error),
        )
        .await
    }
    async fn outbox(
        &self,
        state: Option<super::OutboxState>,
        limit: i64,
    ) -> StoreResult<Vec<super::OutboxRecord>> {
        timed("outbox", self.0.outbox(state, limit)).await
    }
    async fn redrive_webhook(&self, id: i64, now: Millis) -> StoreResult<bool> {
        timed("redrive_webhook", self.0.redrive_webhook(id, now)).await
    }
    async fn outbox_stats(&self) -> StoreResult<super::OutboxStats> {
        timed("outbox_stats", self.0.outbox_stats()).await
    }
}

#[async_trait]
impl AppStore for MeteredStore {
    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        timed("apps", self.0.apps()).await
    }
    async fn add_app(&self, app: &NewAppRecord<'_>, now: Millis) -> StoreResult<bool> {
        timed("add_app", self.0.add_app(app, now)).await
    }
    async fn rotate_app(&self, rotation: &AppRotation<'_>, now: Millis) -> StoreResult<bool> {
        timed("rotate_app", self.0.rotate_app(rotation, now)).await
    }
    async fn remove_app(
        &self,
        appid: &AppId,
        audit: Audit<'_>,
    ) -> StoreResult<Option<Vec<TokenHash>>> {
        timed("remove_app", self.0.remove_app(appid, audit)).await
    }
}
