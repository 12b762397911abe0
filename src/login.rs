//! Login: one `wx.login()` code → one WeChat exchange → user upsert + new session, atomically.
//!
//! A code is exchanged with WeChat at most once. Concurrent requests carrying the same code join
//! one in-flight exchange and all receive its outcome; once it has finished, the code is in the
//! store's `used_codes` and a later request gets `code_used` without calling WeChat.
//! The exchange runs in its own task so that a client hanging up cannot cancel it half-way and
//! let a second caller spend the code again.

use crate::clock::SharedClock;
use crate::config::AppConfig;
use crate::coord::{Coord, Lock};
use crate::domain::{JsCode, OpenId, SessionToken, TokenHash, UnionId, UserId};
use crate::session::SessionPolicy;
use crate::store::{NewLogin, SharedStore, StoreError};
use crate::wechat::{WechatClient, WechatError};
use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub token: SessionToken,
    pub expires_in: u64,
    pub user_id: UserId,
    pub openid: OpenId,
    pub unionid: Option<UnionId>,
    pub new_user: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Wechat(WechatError),
    #[error("code already used")]
    CodeUsed,
    #[error("store unavailable")]
    StoreUnavailable,
    #[error("login task failed")]
    Internal,
}

impl From<StoreError> for LoginError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CodeUsed => Self::CodeUsed,
            StoreError::Unavailable(why) => {
                tracing::error!(error = %why, "store unavailable during login");
                Self::StoreUnavailable
            }
        }
    }
}

type Flight = Shared<BoxFuture<'static, Result<LoginOutcome, LoginError>>>;

pub struct LoginService {
    store: SharedStore,
    coord: Option<Arc<Coord>>,
    wechat: WechatClient,
    clock: SharedClock,
    policy: SessionPolicy,
    /// In-flight exchanges by code fingerprint. Entries live only while WeChat is being asked.
    inflight: Mutex<HashMap<String, Flight>>,
}

impl LoginService {
    pub fn new(
        store: SharedStore,
        coord: Option<Arc<Coord>>,
        wechat: WechatClient,
        clock: SharedClock,
        policy: SessionPolicy,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            coord,
            wechat,
            clock,
            policy,
            inflight: Mutex::new(HashMap::new()),
        })
    }

    pub async fn login(
        self: &Arc<Self>,
        app: &AppConfig,
        code: JsCode,
        previous: Option<TokenHash>,
    ) -> Result<LoginOutcome, LoginError> {
        let key = code.fingerprint(&app.appid);
        let flight = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let this = Arc::clone(self);
                    let (app, k) = (app.clone(), key.clone());
                    let task = tokio::spawn(async move {
                        let result = this.exchange_once(&app, &code, &k, previous.as_ref()).await;
                        this.inflight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&k);
                        result
                    });
                    let flight = async move { task.await.unwrap_or(Err(LoginError::Internal)) }
                        .boxed()
                        .shared();
                    inflight.insert(key, flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// Across instances (with Redis): one instance at a time may exchange a given code. Others
    /// wait for it to finish and then answer `code_used`, or try themselves if it failed
    /// without spending the code. Without Redis, the store's unique key on used codes and
    /// WeChat's own 40163 still keep a code from making two sessions.
    async fn exchange_once(
        &self,
        app: &AppConfig,
        code: &JsCode,
        code_hash: &str,
        previous: Option<&TokenHash>,
    ) -> Result<LoginOutcome, LoginError> {
        let Some(coord) = &self.coord else {
            return self.exchange(app, code, code_hash, previous).await;
        };
        let lock = format!("code:{code_hash}");
        let ttl = self.wechat.budget() * 2 + Duration::from_secs(5);
        let deadline = Instant::now() + ttl;
        loop {
            match coord.lock(&lock, ttl).await {
                Lock::Acquired(nonce) => {
                    let result = self.exchange(app, code, code_hash, previous).await;
                    coord.unlock(&lock, &nonce).await;
                    return result;
                }
                Lock::Unavailable => return self.exchange(app, code, code_hash, previous).await,
                Lock::Held => {
                    while coord.is_locked(&lock).await == Some(true) && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if self.store.is_code_used(code_hash).await? {
                        return Err(LoginError::CodeUsed);
                    }
                    if Instant::now() >= deadline {
                        return Err(LoginError::Wechat(WechatError::Timeout));
                    }
                }
            }
        }
    }

    async fn exchange(
        &self,
        app: &AppConfig,
        code: &JsCode,
        code_hash: &str,
        previous: Option<&TokenHash>,
    ) -> Result<LoginOutcome, LoginError> {
        if self.store.is_code_used(code_hash).await? {
            return Err(LoginError::CodeUsed);
        }
        let wx = match self.wechat.code2session(app, code).await {
            Ok(wx) => wx,
            Err(WechatError::CodeUsed) => {
                // Remember it, so a retry of this code does not cost another WeChat call.
                let _ = self
                    .store
                    .mark_code_used(&app.appid, code_hash, self.clock.now_ms())
                    .await;
                return Err(LoginError::CodeUsed);
            }
            Err(e) => return Err(LoginError::Wechat(e)),
        };
        let token = SessionToken::generate();
        let now = self.clock.now_ms();
        let record = self
            .store
            .record_login(NewLogin {
                appid: &app.appid,
                openid: &wx.openid,
                unionid: wx.unionid.as_ref(),
                session_key: &wx.session_key,
                token_hash: &token.hash(),
                code_hash,
                previous,
                now,
                expires_at: self.policy.absolute_expiry(now),
            })
            .await?;
        if let (Some(coord), Some(previous)) = (&self.coord, previous) {
            coord.revoke(previous).await;
        }
        tracing::info!(appid = %app.appid, user_id = record.user_id, new_user = record.new_user, "login");
        Ok(LoginOutcome {
            token,
            expires_in: self.policy.expires_in_secs(),
            user_id: record.user_id,
            openid: wx.openid,
            unionid: wx.unionid,
            new_user: record.new_user,
        })
    }
}
