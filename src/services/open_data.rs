//! What needs the session's `session_key` or the app's access_token — which only the server
//! holds: phone numbers, encrypted open data, rawData signatures, and checksession.
//!
//! A checksession answer is kept per session ([`CHECK_FRESH`] for `valid`, for good once
//! `invalid`: a replaced session_key never comes back), so a client polling `/session/check` on
//! every page costs WeChat one call a minute, not one per poll.

use super::access_tokens::AccessTokens;
use super::apps::Apps;
use super::sessions::Sessions;
use super::users::Users;
use super::{ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock};
use crate::domain::{AppCredentials, ClientInfo, OpenDataScheme, Platform, SessionToken};
use crate::store::SessionRecord;
use crate::wechat::crypto::alipay::AlipayPhoneError;
use crate::wechat::crypto::{self, OpenDataError};
use crate::wechat::{PhoneInfo, WechatClient, WechatError};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// How long a `valid` checksession answer is reused.
const CHECK_FRESH: Millis = 60_000;
/// Sessions whose last checksession answer is kept.
const CHECKS_KEPT: NonZeroUsize = NonZeroUsize::new(100_000).expect("not zero");

/// What the client has to show for a phone number.
pub enum PhoneProof<'a> {
    /// WeChat: the getPhoneNumber button's `e.detail.code`.
    Code(&'a str),
    /// Alipay: `my.getPhoneNumber`'s `res.response`, as it is.
    AlipayResponse(&'a str),
}

#[derive(Clone)]
pub struct OpenData {
    apps: Arc<Apps>,
    sessions: Sessions,
    users: Users,
    tokens: Arc<AccessTokens>,
    wechat: WechatClient,
    clock: SharedClock,
    /// Session id → (valid, when WeChat said so).
    checked: Arc<Mutex<LruCache<i64, (bool, Millis)>>>,
}

impl OpenData {
    pub fn new(
        apps: Arc<Apps>,
        sessions: Sessions,
        users: Users,
        tokens: Arc<AccessTokens>,
        wechat: WechatClient,
        clock: SharedClock,
    ) -> Self {
        Self {
            apps,
            sessions,
            users,
            tokens,
            wechat,
            clock,
            checked: Arc::new(Mutex::new(LruCache::new(CHECKS_KEPT))),
        }
    }

    /// The configuration of a session's app (it may have been removed since the login).
    fn app(&self, s: &SessionRecord) -> ServiceResult<Arc<AppCredentials>> {
        self.apps.get(&s.appid).ok_or(ServiceError::Unauthorized)
    }

    /// A session's app, when its platform has WeChat's access_token APIs (phone, checkSession).
    fn open_api_app(&self, s: &SessionRecord) -> ServiceResult<Arc<AppCredentials>> {
        let app = self.app(s)?;
        if app.platform.has_wechat_open_api() {
            Ok(app)
        } else {
            Err(ServiceError::Unsupported(
                "this platform has no such API: only WeChat sessions have it",
            ))
        }
    }

    /// Exchanges the getPhoneNumber button's code for the phone number and binds it to the user
    /// — unless the user's bound number is fresh (`WXLOGIN_PHONE_REUSE`) and `refresh` is not
    /// asked for: then the stored number is the answer, and WeChat's paid API is not called.
    /// On Alipay: `my.getPhoneNumber`'s message, verified and opened with the app's keys (no
    /// paid call, so always read), and bound.
    pub async fn phone(
        &self,
        s: &SessionRecord,
        proof: PhoneProof<'_>,
        refresh: bool,
        client: &ClientInfo,
    ) -> ServiceResult<PhoneInfo> {
        match self.app(s)?.platform {
            Platform::Alipay => return self.alipay_phone(s, proof, client).await,
            Platform::Douyin => return self.douyin_phone(s, proof, refresh, client).await,
            _ => {}
        }
        let app = self.open_api_app(s)?;
        let PhoneProof::Code(code) = proof else {
            return Err(ServiceError::BadInput(
                "`response` is Alipay's: send the getPhoneNumber button's `code`",
            ));
        };
        if let Some(stored) = self.stored_phone(s, refresh).await? {
            return Ok(stored);
        }
        let info = self
            .exchange_phone_code(&app, |token| {
                let wechat = self.wechat.clone();
                let code = code.to_owned();
                async move { wechat.phone_number(&token, &code).await }
            })
            .await?;
        self.users.bind_phone(s.user_id, &info, client).await?;
        Ok(info)
    }

    /// The user's bound number while it is fresh (`WXLOGIN_PHONE_REUSE`), unless `refresh`.
    async fn stored_phone(
        &self,
        s: &SessionRecord,
        refresh: bool,
    ) -> ServiceResult<Option<PhoneInfo>> {
        if refresh {
            return Ok(None);
        }
        self.users.fresh_phone(s.user_id).await
    }

    /// The platform's phone API with the app's token (`call`), its code errors the client's.
    async fn exchange_phone_code<T, F, Fut>(
        &self,
        app: &AppCredentials,
        call: F,
    ) -> ServiceResult<T>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, WechatError>>,
    {
        self.tokens
            .with_token(app, call)
            .await
            .map_err(|e| match e {
                WechatError::InvalidCode | WechatError::CodeUsed => ServiceError::InvalidPhoneCode,
                other => other.into(),
            })
    }

    /// Douyin: the button's code exchanged with the app's client_token (refreshed as WeChat's
    /// access_token is), the answer opened with the app's private key.
    async fn douyin_phone(
        &self,
        s: &SessionRecord,
        proof: PhoneProof<'_>,
        refresh: bool,
        client: &ClientInfo,
    ) -> ServiceResult<PhoneInfo> {
        let app = self.app(s)?;
        let private_key = app.phone_key.as_ref().ok_or(ServiceError::Unsupported(
            "this Douyin app has no private key: set its douyin_private_key to take phone numbers",
        ))?;
        let PhoneProof::Code(code) = proof else {
            return Err(ServiceError::BadInput(
                "`response` is Alipay's: send the getPhoneNumber button's `code`",
            ));
        };
        // Checked when the app was configured; read before the code is spent at Douyin.
        let key = crypto::douyin::private_key(secrecy::ExposeSecret::expose_secret(private_key))
            .map_err(|_| ServiceError::Wechat(WechatError::BadCredentials(0)))?;
        if let Some(stored) = self.stored_phone(s, refresh).await? {
            return Ok(stored);
        }
        let data = self
            .exchange_phone_code(&app, |token| {
                let wechat = self.wechat.clone();
                let code = code.to_owned();
                async move { wechat.douyin_phone_data(&token, &code).await }
            })
            .await?;
        // Douyin's answer that our key cannot open: the key is not the one whose public half
        // is on Douyin's console (or the answer is damaged). Ours to fix, never the client's.
        let info = crypto::douyin::open_phone(&data, &key, s.appid.as_str()).map_err(|e| {
            tracing::error!(appid = %s.appid, error = %e, "Douyin's phone number does not open with the app's douyin_private_key");
            ServiceError::Wechat(WechatError::BadCredentials(0))
        })?;
        self.users.bind_phone(s.user_id, &info, client).await?;
        Ok(info)
    }

    async fn alipay_phone(
        &self,
        s: &SessionRecord,
        proof: PhoneProof<'_>,
        client: &ClientInfo,
    ) -> ServiceResult<PhoneInfo> {
        let app = self.app(s)?;
        let aes_key = app.phone_key.as_ref().ok_or(ServiceError::Unsupported(
            "this Alipay app has no AES key: set its alipay_aes_key (接口内容加密方式) to take phone numbers",
        ))?;
        let PhoneProof::AlipayResponse(message) = proof else {
            return Err(ServiceError::BadInput(
                "an Alipay session sends `response`: my.getPhoneNumber's res.response, as it is",
            ));
        };
        let public_key = app
            .alipay_public_key
            .as_deref()
            .and_then(|k| crate::wechat::alipay::public_key(k).ok())
            .ok_or_else(|| {
                ServiceError::Internal("an Alipay app without Alipay's public key".into())
            })?;
        let mobile = crypto::alipay::open_phone(
            message,
            &public_key,
            secrecy::ExposeSecret::expose_secret(aes_key),
        )
        .map_err(|e| match e {
            AlipayPhoneError::Malformed(why) => ServiceError::BadInput(why),
            AlipayPhoneError::Failed => ServiceError::DecryptFailed,
            // Alipay's own message that our key cannot open: the configured key is not the one
            // on Alipay's console. Ours to fix, never the client's.
            AlipayPhoneError::Unopened => {
                tracing::error!(appid = %s.appid, "Alipay's phone number does not open with the app's alipay_aes_key");
                ServiceError::Wechat(WechatError::BadCredentials(0))
            }
            AlipayPhoneError::Refused(sub_code) => {
                tracing::info!(appid = %s.appid, %sub_code, "Alipay gave no phone number");
                ServiceError::InvalidPhoneCode
            }
        })?;
        // Alipay's members are mainland numbers, and it sends no country code.
        let info = PhoneInfo {
            phone_number: mobile.clone(),
            pure_phone_number: mobile,
            country_code: "86".into(),
        };
        self.users.bind_phone(s.user_id, &info, client).await?;
        Ok(info)
    }

    /// Decrypts open data with the session's own session_key and checks the watermark.
    pub async fn decrypt(
        &self,
        token: &SessionToken,
        s: &SessionRecord,
        data: &str,
        iv: &str,
    ) -> ServiceResult<serde_json::Value> {
        let scheme = self.app(s)?.platform.open_data();
        if scheme == OpenDataScheme::None {
            return Err(no_session_key());
        }
        if s.openid.is_anonymous() {
            return Err(guest());
        }
        let key = self.sessions.session_key(token, s).await?;
        let opened = match scheme {
            OpenDataScheme::Aes128 { watermark } => {
                let appid = watermark.then_some(s.appid.as_str());
                crypto::decrypt(key.expose(), data, iv, appid)
            }
            // Baidu's appid is the AppKey its plaintext ends with.
            OpenDataScheme::Baidu => {
                crypto::baidu::decrypt(key.expose(), data, iv, s.appid.as_str())
            }
            OpenDataScheme::None => return Err(no_session_key()),
        };
        opened.map_err(|e| match e {
            OpenDataError::Malformed(why) => ServiceError::BadInput(why),
            OpenDataError::DecryptFailed => ServiceError::DecryptFailed,
        })
    }

    /// Checks `wx.getUserInfo`'s rawData signature against the session's session_key.
    pub async fn verify_userinfo(
        &self,
        token: &SessionToken,
        s: &SessionRecord,
        raw: &str,
        signature: &str,
    ) -> ServiceResult<bool> {
        match self.app(s)?.platform.open_data() {
            OpenDataScheme::Aes128 { .. } => {}
            OpenDataScheme::Baidu => {
                return Err(ServiceError::Unsupported(
                    "Baidu signs no rawData: there is nothing to verify for its sessions",
                ))
            }
            OpenDataScheme::None => return Err(no_session_key()),
        }
        if s.openid.is_anonymous() {
            return Err(guest());
        }
        let key = self.sessions.session_key(token, s).await?;
        Ok(crypto::verify_raw_data(raw, signature, key.expose()))
    }

    /// Asks WeChat whether the session's session_key is still current (or answers what it
    /// said last, while that is fresh).
    pub async fn check_session(
        &self,
        token: &SessionToken,
        s: &SessionRecord,
    ) -> ServiceResult<bool> {
        let now = self.clock.now_ms();
        let kept = self.checks().get(&s.id).copied();
        match kept {
            Some((false, _)) => return Ok(false),
            Some((true, at)) if now - at < CHECK_FRESH => return Ok(true),
            _ => {}
        }
        let valid = self.ask_check_session(token, s).await?;
        self.checks().put(s.id, (valid, now));
        Ok(valid)
    }

    fn checks(&self) -> std::sync::MutexGuard<'_, LruCache<i64, (bool, Millis)>> {
        self.checked.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ask_check_session(
        &self,
        token: &SessionToken,
        s: &SessionRecord,
    ) -> ServiceResult<bool> {
        let app = self.open_api_app(s)?;
        let signature =
            crypto::session_signature(self.sessions.session_key(token, s).await?.expose(), "");
        Ok(self
            .tokens
            .with_token(&app, |token| {
                let (wechat, openid, signature) =
                    (self.wechat.clone(), s.openid.0.clone(), signature.clone());
                async move { wechat.check_session(&token, &openid, &signature).await }
            })
            .await?)
    }
}

/// A Douyin guest's session (an `anonymous_code` login) has no session_key either.
fn guest() -> ServiceError {
    ServiceError::Unsupported(
        "a Douyin guest login (anonymous_code alone) has no session_key: open data needs a login \
         with a code, signed in to Douyin",
    )
}

/// Alipay's sessions have no session_key to open or sign anything with.
fn no_session_key() -> ServiceError {
    ServiceError::Unsupported("this platform gives no session_key: there is no open data to open")
}
