//! The access_token manager: one cached token per app, refreshed ahead of expiry, one refresh
//! at a time per app — per process, and across instances through a Redis lease when Redis is
//! configured.
//!
//! Why this shape: when several callers (or instances) each fetch a token with the old
//! `/cgi-bin/token`, each fetch invalidates the others' and everyone sees 40001. We use
//! `stable_token` in normal mode, which hands every caller the same token while it lives, and
//! refresh it under a per-app lock so 200 concurrent callers cause one WeChat call. On
//! 40001/40014/42001 the cached token is dropped only if it is still the one that failed (a
//! newer one may already be in place) and the call is retried once; we never force-refresh.

use crate::clock::{Millis, SharedClock};
use crate::coord::{Coord, Lock};
use crate::domain::{AppCredentials, AppId};
use crate::vault::{Field, Vault};
use crate::wechat::{WechatClient, WechatError};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Refresh this long before WeChat's stated expiry (WeChat tokens live 7200 s).
const REFRESH_MARGIN_MS: Millis = 5 * 60 * 1000;
const LEASE: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Cached {
    token: String,
    expires_at: Millis,
}

impl Cached {
    fn fresh(&self, now: Millis) -> bool {
        now + REFRESH_MARGIN_MS < self.expires_at
    }

    /// `expires_at|token`, the shared form in Redis.
    fn encode(&self) -> String {
        format!("{}|{}", self.expires_at, self.token)
    }

    fn decode(text: &str) -> Option<Self> {
        let (exp, token) = text.split_once('|')?;
        Some(Self {
            token: token.to_owned(),
            expires_at: exp.parse().ok()?,
        })
    }
}

#[derive(Default)]
struct Entry {
    current: Mutex<Option<Cached>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Entry {
    fn fresh(&self, now: Millis) -> Option<Cached> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|c| c.fresh(now)).cloned()
    }

    fn set(&self, cached: Cached) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(cached);
    }
}

pub struct AccessTokens {
    client: WechatClient,
    coord: Option<Arc<Coord>>,
    clock: SharedClock,
    vault: Arc<Vault>,
    entries: Mutex<HashMap<AppId, Arc<Entry>>>,
}

impl AccessTokens {
    pub fn new(
        client: WechatClient,
        coord: Option<Arc<Coord>>,
        clock: SharedClock,
        vault: Arc<Vault>,
    ) -> Self {
        Self {
            client,
            coord,
            clock,
            vault,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entry(&self, appid: &AppId) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.entry(appid.clone()).or_default().clone()
    }

    /// A valid token for `app`, from the cache or from one shared refresh.
    pub async fn get(&self, app: &AppCredentials) -> Result<String, WechatError> {
        self.current(app).await.map(|(token, _)| token)
    }

    /// [`get`](Self::get), with when the token expires (Unix ms): it is good for at least
    /// [`REFRESH_MARGIN_MS`] more.
    pub async fn current(&self, app: &AppCredentials) -> Result<(String, Millis), WechatError> {
        let entry = self.entry(&app.appid);
        if let Some(c) = entry.fresh(self.clock.now_ms()) {
            return Ok((c.token, c.expires_at));
        }
        let _refreshing = entry.refreshing.lock().await;
        // Whoever held the lock before us may have refreshed it already.
        if let Some(c) = entry.fresh(self.clock.now_ms()) {
            return Ok((c.token, c.expires_at));
        }
        let cached = match &self.coord {
            Some(coord) => self.shared_refresh(coord, app).await?,
            None => self.fetch(app).await?,
        };
        entry.set(cached.clone());
        Ok((cached.token, cached.expires_at))
    }

    async fn fetch(&self, app: &AppCredentials) -> Result<Cached, WechatError> {
        let fetched = self.client.app_token(app).await?;
        tracing::info!(appid = %app.appid, expires_in = fetched.expires_in, "access_token refreshed");
        Ok(Cached {
            token: fetched.token,
            expires_at: self.clock.now_ms() + (fetched.expires_in as Millis) * 1000,
        })
    }

    /// Across instances: take the token another instance stored, or hold the lease and fetch
    /// it for everyone. Without Redis (or when it fails) each instance fetches its own, which
    /// stable_token makes harmless.
    async fn shared_refresh(
        &self,
        coord: &Coord,
        app: &AppCredentials,
    ) -> Result<Cached, WechatError> {
        let name = format!("at:{}", app.appid);
        let deadline = Instant::now() + self.client.budget() + LEASE;
        while Instant::now() < deadline {
            match coord.get_value(&name).await {
                Some(Some(text)) => {
                    if let Some(c) = self.open(&text).filter(|c| c.fresh(self.clock.now_ms())) {
                        return Ok(c);
                    }
                }
                Some(None) => {}
                None => break,
            }
            match coord.lock(&name, LEASE).await {
                Lock::Acquired(nonce) => {
                    let fetched = self.fetch(app).await;
                    if let Ok(c) = &fetched {
                        let ttl = (c.expires_at - self.clock.now_ms()).max(1) as u64;
                        coord
                            .set_value(
                                &name,
                                &self.vault.seal(Field::AccessToken, &c.encode()),
                                Duration::from_millis(ttl),
                            )
                            .await;
                    }
                    coord.unlock(&name, &nonce).await;
                    return fetched;
                }
                Lock::Held => tokio::time::sleep(Duration::from_millis(20)).await,
                Lock::Unavailable => break,
            }
        }
        self.fetch(app).await
    }

    /// A token as Redis holds it: sealed with the data key (an entry this key cannot open is
    /// treated as absent, and fetched again).
    fn open(&self, text: &str) -> Option<Cached> {
        let plain = self.vault.open(Field::AccessToken, text).ok()?;
        Cached::decode(&plain)
    }

    /// Drops the cached token, here and in Redis, if it is still `failed`.
    pub async fn invalidate(&self, appid: &AppId, failed: &str) {
        let entry = self.entry(appid);
        {
            let mut current = entry.current.lock().unwrap_or_else(|p| p.into_inner());
            if current.as_ref().is_some_and(|c| c.token == failed) {
                *current = None;
            }
        }
        if let Some(coord) = &self.coord {
            let name = format!("at:{appid}");
            if let Some(Some(text)) = coord.get_value(&name).await {
                if self.open(&text).is_some_and(|c| c.token == failed) {
                    coord.delete_value_if(&name, &text).await;
                }
            }
        }
    }

    /// Drops the app's token, here and in Redis, whatever it is (its secret changed, or the app
    /// is gone). Other instances keep theirs until WeChat refuses it, then refresh once.
    pub async fn forget(&self, appid: &AppId) {
        *self
            .entry(appid)
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(coord) = &self.coord {
            let name = format!("at:{appid}");
            if let Some(Some(text)) = coord.get_value(&name).await {
                coord.delete_value_if(&name, &text).await;
            }
        }
    }

    /// Runs `call` with a token; if WeChat rejects the token, refreshes once and retries once.
    pub async fn with_token<T, F, Fut>(
        &self,
        app: &AppCredentials,
        call: F,
    ) -> Result<T, WechatError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, WechatError>>,
    {
        let token = self.get(app).await?;
        match call(token.clone()).await {
            Err(WechatError::AccessTokenInvalid(code)) => {
                tracing::warn!(appid = %app.appid, errcode = code, "access_token rejected; refreshing once");
                self.invalidate(&app.appid, &token).await;
                let token = self.get(app).await?;
                call(token).await
            }
            other => other,
        }
    }
}
