//! Login: one `wx.login()` code → one WeChat exchange → user upsert + new session, atomically.
//!
//! A code is exchanged with WeChat at most once. Concurrent requests carrying the same code join
//! one in-flight exchange and all receive its outcome; once it has finished, the code is in the
//! store's `used_codes` and a later request gets `code_used` without calling WeChat.
//! The exchange runs in its own task so that a client hanging up cannot cancel it half-way and
//! let a second caller spend the code again.
//!
//! Where a code is marked used: by the login's own transaction (`LoginStore::record_login`),
//! or by [`LoginStore::mark_code_used`] when WeChat says 40163. Its one name is its
//! [`CodeHash`].

use super::sessions::Sessions;
use super::{ServiceError, ServiceResult};
use crate::clock::SharedClock;
use crate::coord::{Coord, Lock};
use crate::domain::{
    AppCredentials, ClientInfo, CodeHash, LoginCode, OpenId, Platform, SessionToken, TokenHash,
    UnionId, UserId,
};
use crate::store::{Audit, LoginStore, NewLogin, TakeOver};
use crate::wechat::{WechatClient, WechatError};
use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub token: SessionToken,
    pub expires_in: u64,
    pub user_id: UserId,
    pub openid: OpenId,
    pub unionid: Option<UnionId>,
    pub new_user: bool,
}

type Flight = Shared<BoxFuture<'static, ServiceResult<LoginOutcome>>>;

/// How logins shape accounts (`[accounts]` settings).
#[derive(Debug, Clone, Copy)]
pub struct AccountRules {
    /// A new identity whose unionid another user of the platform has joins that user.
    pub link_by_unionid: bool,
    /// Live sessions a user may have; a login beyond it revokes the oldest.
    pub max_sessions: u32,
}

pub struct LoginService {
    store: Arc<dyn LoginStore>,
    sessions: Sessions,
    coord: Option<Arc<Coord>>,
    wechat: WechatClient,
    clock: SharedClock,
    rules: AccountRules,
    /// On PostgreSQL + Redis: told when a login changed what `/me` shows of a user.
    user_cache: Option<Arc<super::user_cache::UserCache>>,
    /// In-flight exchanges by code hash. Entries live only while WeChat is being asked.
    inflight: Mutex<HashMap<CodeHash, Flight>>,
}

impl LoginService {
    pub fn new(
        store: Arc<dyn LoginStore>,
        sessions: Sessions,
        coord: Option<Arc<Coord>>,
        wechat: WechatClient,
        clock: SharedClock,
        rules: AccountRules,
        user_cache: Option<Arc<super::user_cache::UserCache>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            sessions,
            coord,
            wechat,
            clock,
            rules,
            user_cache,
            inflight: Mutex::new(HashMap::new()),
        })
    }

    pub async fn login(
        self: &Arc<Self>,
        app: &AppCredentials,
        code: LoginCode,
        previous: Option<TokenHash>,
        client: ClientInfo,
    ) -> ServiceResult<LoginOutcome> {
        let code_hash = code.hash(&app.appid);
        let flight = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get(&code_hash) {
                Some(f) => f.clone(),
                None => {
                    let this = Arc::clone(self);
                    let (app, hash) = (app.clone(), code_hash.clone());
                    let task = tokio::spawn(
                        async move {
                            let result = this
                                .exchange_once(&app, &code, &hash, previous.as_ref(), &client)
                                .await;
                            this.record_failure(&app, &result, &client).await;
                            this.inflight
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&hash);
                            result
                        }
                        // Its log lines carry the request's span (and so its request id).
                        .in_current_span(),
                    );
                    let flight = async move {
                        task.await.unwrap_or_else(|e| {
                            tracing::error!(error = %e, "the login task failed");
                            Err(ServiceError::Internal("the login task failed".into()))
                        })
                    }
                    .boxed()
                    .shared();
                    inflight.insert(code_hash, flight.clone());
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
        app: &AppCredentials,
        code: &LoginCode,
        code_hash: &CodeHash,
        previous: Option<&TokenHash>,
        client: &ClientInfo,
    ) -> ServiceResult<LoginOutcome> {
        let Some(coord) = &self.coord else {
            return self.exchange(app, code, code_hash, previous, client).await;
        };
        let lock = format!("code:{}", code_hash.as_str());
        let ttl = self.wechat.budget() * 2 + Duration::from_secs(5);
        let deadline = Instant::now() + ttl;
        loop {
            match coord.lock(&lock, ttl).await {
                Lock::Acquired(nonce) => {
                    let result = self.exchange(app, code, code_hash, previous, client).await;
                    // A code that logged in keeps its lock until the lock expires: a replay,
                    // here or on another instance, finds it held and the store's `code_used` at
                    // once, and a login costs one Redis call fewer. A failed exchange may not
                    // have spent the code; its lock goes, so a retry need not wait.
                    if result.is_err() {
                        coord.unlock(&lock, &nonce).await;
                    }
                    return result;
                }
                Lock::Unavailable => {
                    return self.exchange(app, code, code_hash, previous, client).await
                }
                Lock::Held => loop {
                    // Held by a login that used the code (kept), or by one still running.
                    if self.store.is_code_used(code_hash).await? {
                        return Err(ServiceError::CodeUsed);
                    }
                    match coord.is_locked(&lock).await {
                        Some(true) if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        Some(true) => return Err(ServiceError::Wechat(WechatError::Timeout)),
                        // Released (that attempt failed) or Redis unreachable: try again.
                        _ => break,
                    }
                },
            }
        }
    }

    /// A `login_failed` event for a failed exchange (once, however many requests joined it).
    /// A banned user's refusal was logged with its transaction; a failure of the store cannot
    /// be written down.
    async fn record_failure(
        &self,
        app: &AppCredentials,
        result: &ServiceResult<LoginOutcome>,
        client: &ClientInfo,
    ) {
        let error = match result {
            Ok(_) | Err(ServiceError::Banned | ServiceError::StoreUnavailable(_)) => return,
            Err(ServiceError::CodeUsed) => "code_used",
            Err(ServiceError::Wechat(e)) => match e {
                WechatError::InvalidCode => "invalid_code",
                WechatError::UserBlocked => "user_blocked",
                WechatError::RateLimited => "wechat_rate_limited",
                WechatError::BadCredentials(_) => "wechat_misconfigured",
                _ => "wechat_unavailable",
            },
            Err(_) => "internal",
        };
        let audit = Audit {
            now: self.clock.now_ms(),
            client,
        };
        if let Err(e) = self
            .store
            .record_login_failure(app.platform, &app.appid, error, audit)
            .await
        {
            tracing::warn!(error = %e, "could not record a failed login");
        }
    }

    async fn exchange(
        &self,
        app: &AppCredentials,
        code: &LoginCode,
        code_hash: &CodeHash,
        previous: Option<&TokenHash>,
        client: &ClientInfo,
    ) -> ServiceResult<LoginOutcome> {
        if self.store.is_code_used(code_hash).await? {
            return Err(ServiceError::CodeUsed);
        }
        let wx = match self.wechat.code2session(app, code).await {
            Ok(wx) => wx,
            Err(WechatError::CodeUsed) => {
                // Remember it, so a retry of this code does not cost another WeChat call.
                let _ = self
                    .store
                    .mark_code_used(&app.appid, code_hash, self.clock.now_ms())
                    .await;
                return Err(ServiceError::CodeUsed);
            }
            Err(e) => return Err(ServiceError::Wechat(e)),
        };
        if let Some(from) = &wx.takes_over {
            let take = TakeOver {
                platform: app.platform,
                appid: &app.appid,
                from,
                to: &wx.openid,
                unionid: wx.unionid.as_ref(),
                reason: match app.platform {
                    Platform::Alipay => "open_id",
                    _ => "signed_in",
                },
                link_by_unionid: self.rules.link_by_unionid,
            };
            self.take_over(&take, client).await?;
        }
        let token = SessionToken::generate();
        let now = self.clock.now_ms();
        let policy = self.sessions.policy();
        let record = self
            .store
            .record_login(NewLogin {
                platform: app.platform,
                appid: &app.appid,
                openid: &wx.openid,
                unionid: wx.unionid.as_ref(),
                session_key: &wx.session_key,
                token_hash: &token.hash(),
                code_hash,
                previous,
                now,
                expires_at: policy.absolute_expiry(now),
                client,
                link_by_unionid: self.rules.link_by_unionid,
                max_sessions: self.rules.max_sessions,
            })
            .await?;
        self.sessions.ended(&record.revoked).await;
        if let Some(cache) = &self.user_cache {
            if record.identity_changed || record.linked {
                // Its identities changed: every instance reads it afresh.
                cache.changed(record.user_id).await;
            } else {
                // Only `last_login_at` moved, which `/me` takes from the session anyway.
                cache.forget_here(record.user_id);
            }
        }
        tracing::info!(appid = %app.appid, user_id = record.user_id, new_user = record.new_user, "login");
        Ok(LoginOutcome {
            token,
            expires_in: policy.expires_in_secs(),
            user_id: record.user_id,
            openid: wx.openid,
            unionid: wx.unionid,
            new_user: record.new_user,
        })
    }

    /// An identity the platform says this one replaces keeps its user:
    /// - Douyin: a user who used the app signed out of Douyin on this device and now signs in
    ///   keeps that account (its anonymous identity becomes the signed-in one). Once taken
    ///   over, the device's next signed-out use starts a new anonymous account: the signed-in
    ///   person's is never handed to it.
    /// - Alipay: an app moving from user_id to open_id mode keeps its users (their user_id
    ///   identity becomes the open_id one on their first login that brings both).
    ///
    /// If the new identity already has an account, the login is into that one and the old
    /// account is left as it is (an operator may merge it).
    async fn take_over(&self, take: &TakeOver<'_>, client: &ClientInfo) -> ServiceResult<()> {
        let audit = Audit {
            now: self.clock.now_ms(),
            client,
        };
        let adopted = self
            .sessions
            .invalidating(self.store.take_over(take, audit))
            .await?;
        if let Some(adoption) = adopted {
            // The client gets this login's token; the old identity's tokens end.
            self.sessions.ended(&adoption.tokens).await;
            if let Some(cache) = &self.user_cache {
                cache.changed(adoption.user_id).await;
            }
            tracing::info!(appid = %take.appid, user_id = adoption.user_id, reason = take.reason, "an identity was taken over");
        }
        Ok(())
    }
}
