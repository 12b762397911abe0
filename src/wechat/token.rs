//! The access_token manager: one cached token per app, refreshed ahead of expiry, one refresh
//! at a time per app.
//!
//! Why this shape: when several callers (or instances) each fetch a token with the old
//! `/cgi-bin/token`, each fetch invalidates the others' and everyone sees 40001. We use
//! `stable_token` in normal mode, which hands every caller the same token while it lives, and
//! we refresh it under a per-app lock so 200 concurrent callers cause one WeChat call. On
//! 40001/40014/42001 the cached token is dropped only if it is still the one that failed (a
//! newer one may already be in place) and the call is retried once; we never force-refresh.

use super::{WechatClient, WechatError};
use crate::clock::{Millis, SharedClock};
use crate::config::AppConfig;
use crate::domain::AppId;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Refresh this long before WeChat's stated expiry (WeChat tokens live 7200 s).
const REFRESH_MARGIN_MS: Millis = 5 * 60 * 1000;

#[derive(Clone)]
struct Cached {
    token: String,
    expires_at: Millis,
}

#[derive(Default)]
struct Entry {
    current: Mutex<Option<Cached>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Entry {
    fn fresh(&self, now: Millis) -> Option<String> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current
            .as_ref()
            .filter(|c| now + REFRESH_MARGIN_MS < c.expires_at)
            .map(|c| c.token.clone())
    }
}

pub struct AccessTokens {
    client: WechatClient,
    clock: SharedClock,
    entries: Mutex<HashMap<AppId, Arc<Entry>>>,
}

impl AccessTokens {
    pub fn new(client: WechatClient, clock: SharedClock) -> Self {
        Self {
            client,
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entry(&self, appid: &AppId) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.entry(appid.clone()).or_default().clone()
    }

    /// A valid token for `app`, from the cache or from one shared refresh.
    pub async fn get(&self, app: &AppConfig) -> Result<String, WechatError> {
        let entry = self.entry(&app.appid);
        if let Some(token) = entry.fresh(self.clock.now_ms()) {
            return Ok(token);
        }
        let _refreshing = entry.refreshing.lock().await;
        // Whoever held the lock before us may have refreshed it already.
        if let Some(token) = entry.fresh(self.clock.now_ms()) {
            return Ok(token);
        }
        let fetched = self.client.stable_token(app).await?;
        tracing::info!(appid = %app.appid, expires_in = fetched.expires_in, "access_token refreshed");
        let cached = Cached {
            token: fetched.token,
            expires_at: self.clock.now_ms() + (fetched.expires_in as Millis) * 1000,
        };
        let token = cached.token.clone();
        *entry.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(cached);
        Ok(token)
    }

    /// Drops the cached token if it is still `failed`.
    pub fn invalidate(&self, appid: &AppId, failed: &str) {
        let entry = self.entry(appid);
        let mut current = entry.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|c| c.token == failed) {
            *current = None;
        }
    }

    /// Runs `call` with a token; if WeChat rejects the token, refreshes once and retries once.
    pub async fn with_token<T, F, Fut>(&self, app: &AppConfig, call: F) -> Result<T, WechatError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, WechatError>>,
    {
        let token = self.get(app).await?;
        match call(token.clone()).await {
            Err(WechatError::AccessTokenInvalid(code)) => {
                tracing::warn!(appid = %app.appid, errcode = code, "access_token rejected; refreshing once");
                self.invalidate(&app.appid, &token);
                let token = self.get(app).await?;
                call(token).await
            }
            other => other,
        }
    }
}
