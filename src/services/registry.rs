//! Adding, rotating and removing the registry's apps (the admin API's side of
//! [`Apps`](super::apps::Apps), which serves them): input checked, the secret sealed by the
//! store, this instance's view refreshed before the reply, and a removal's sessions revoked on
//! every instance.

use super::access_tokens::AccessTokens;
use super::apps::{AppView, Apps, Source};
use super::sessions::Sessions;
use super::{ServiceError, ServiceResult};
use crate::clock::SharedClock;
use crate::domain::{AppId, ClientInfo, Platform};
use crate::store::{AppRotation, AppStore, Audit, NewAppRecord};
use crate::wechat::alipay;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// The longest secret the registry takes (real ones are 32 to 64 characters).
const MAX_SECRET: usize = 256;
/// The longest key text (a 4096-bit private key in PEM is about 3,300 characters).
const MAX_KEY: usize = 8192;

/// What an operator asks the registry to add.
pub struct NewApp {
    pub platform: String,
    pub appid: String,
    /// The AppSecret; on Alipay, the app's RSA private key.
    pub secret: SecretString,
    /// Alipay apps only: Alipay's public key.
    pub alipay_public_key: Option<String>,
    /// The key for phone numbers, if any: an Alipay app's content-encryption key, a Douyin
    /// app's RSA private key.
    pub phone_key: PhoneKey,
}

/// A phone key as the admin API names it: each platform's under its own name.
#[derive(Default)]
pub struct PhoneKey {
    pub alipay_aes_key: Option<SecretString>,
    pub douyin_private_key: Option<SecretString>,
}

pub struct AppRegistry {
    apps: Arc<Apps>,
    store: Arc<dyn AppStore>,
    sessions: Sessions,
    tokens: Arc<AccessTokens>,
    clock: SharedClock,
}

impl AppRegistry {
    pub fn new(
        apps: Arc<Apps>,
        store: Arc<dyn AppStore>,
        sessions: Sessions,
        tokens: Arc<AccessTokens>,
        clock: SharedClock,
    ) -> Self {
        Self {
            apps,
            store,
            sessions,
            tokens,
            clock,
        }
    }

    /// Adds an app, live on this instance on return and on every other within
    /// [`REFRESH_EVERY`](super::apps::REFRESH_EVERY). Refused (nothing stored): an unknown platform, a malformed appid or
    /// secret, an appid the config file or the registry has already.
    pub async fn add(&self, new: NewApp) -> ServiceResult<AppView> {
        let platform = Platform::parse(new.platform.trim()).ok_or(ServiceError::BadInput(
            "`platform` must be one of weixin, qq, douyin, baidu, kuaishou, alipay",
        ))?;
        let appid = AppId::parse(new.appid.trim()).map_err(|_| {
            ServiceError::BadInput("`appid` must be 1-64 ASCII letters, digits, '_' or '-'")
        })?;
        let (secret, public_key) = checked_keys(platform, new.secret, new.alipay_public_key)?;
        let phone_key = checked_phone_key(platform, new.phone_key)?;
        if platform == Platform::Alipay && public_key.is_none() {
            return Err(ServiceError::BadInput(
                "an Alipay app needs `alipay_public_key` (Alipay's public key, from its console)",
            ));
        }
        if self.apps.in_config(&appid) {
            return Err(ServiceError::BadInput(
                "this appid is in the config file, which wins: change it there",
            ));
        }
        let now = self.clock.now_ms();
        let record = NewAppRecord {
            platform,
            appid: &appid,
            secret: &secret,
            alipay_public_key: public_key.as_deref(),
            phone_key: phone_key.as_ref(),
        };
        if !self.store.add_app(&record, now).await? {
            return Err(ServiceError::BadInput("this appid is registered already"));
        }
        tracing::info!(%appid, platform = platform.as_str(), "app added to the registry");
        self.apps.refresh().await?;
        Ok(AppView {
            platform,
            appid,
            source: Source::Registry,
            created_at: Some(now),
            updated_at: Some(now),
        })
    }

    /// Replaces a registry app's secret (an Alipay app's private key, and Alipay's public key
    /// and the phone key when given): the next exchange uses it (its cached access_token is
    /// dropped here and in Redis). Sessions stay.
    pub async fn rotate(
        &self,
        appid: &str,
        secret: SecretString,
        alipay_public_key: Option<String>,
        phone_key: PhoneKey,
    ) -> ServiceResult<()> {
        let appid = self.registered(appid)?;
        let platform = self
            .apps
            .get(&appid)
            .ok_or(ServiceError::NotFound)?
            .platform;
        let (secret, public_key) = checked_keys(platform, secret, alipay_public_key)?;
        let phone_key = checked_phone_key(platform, phone_key)?;
        let rotation = AppRotation {
            appid: &appid,
            secret: &secret,
            alipay_public_key: public_key.as_deref(),
            phone_key: phone_key.as_ref(),
        };
        if !self
            .store
            .rotate_app(&rotation, self.clock.now_ms())
            .await?
        {
            return Err(ServiceError::NotFound);
        }
        tracing::info!(%appid, "app secret rotated");
        self.apps.refresh().await?;
        self.tokens.forget(&appid).await;
        Ok(())
    }

    /// Removes a registry app and revokes its sessions (before the reply on this instance and,
    /// through Redis, in every instance's cache); returns how many. Later logins to it get
    /// `unknown_app`.
    pub async fn remove(&self, appid: &str, client: &ClientInfo) -> ServiceResult<usize> {
        let appid = self.registered(appid)?;
        let audit = Audit {
            now: self.clock.now_ms(),
            client,
        };
        let Some(ended) = self
            .sessions
            .invalidating(self.store.remove_app(&appid, audit))
            .await?
        else {
            // Perhaps the retry of a removal answered 503: the round trip finishes it.
            self.sessions.broadcast_end(&[]).await?;
            return Err(ServiceError::NotFound);
        };
        self.apps.refresh().await?;
        self.tokens.forget(&appid).await;
        // One epoch move ends every cached answer at once, however many sessions there were.
        self.sessions.forget_all().await?;
        tracing::info!(%appid, revoked = ended.len(), "app removed from the registry");
        Ok(ended.len())
    }

    /// The app's current token for its platform's server APIs, for a business backend that
    /// calls them (WeChat's recommended 中控服务器: one refresher, across instances with Redis,
    /// so no backend's own fetch replaces the token under the others). `failed`: a token the
    /// platform just refused, dropped (if still current) before answering. Config-file and
    /// registry apps alike; Alipay has none (404 `unsupported`).
    pub async fn access_token(
        &self,
        appid: &str,
        failed: Option<&str>,
    ) -> ServiceResult<(String, u64)> {
        let appid = AppId::parse(appid).map_err(|_| ServiceError::NotFound)?;
        let app = self.apps.get(&appid).ok_or(ServiceError::NotFound)?;
        if app.platform == Platform::Alipay {
            return Err(ServiceError::Unsupported(
                "Alipay signs each request with the app's key: there is no access_token",
            ));
        }
        if let Some(failed) = failed.filter(|f| !f.is_empty()) {
            self.tokens.invalidate(&appid, failed).await;
        }
        let (token, expires_at) = self.tokens.current(&app).await?;
        let expires_in = (expires_at - self.clock.now_ms()).max(0) as u64 / 1000;
        Ok((token, expires_in))
    }

    /// A registry appid: a config-file app is not the registry's to change.
    fn registered(&self, appid: &str) -> ServiceResult<AppId> {
        let appid = AppId::parse(appid).map_err(|_| ServiceError::NotFound)?;
        if self.apps.in_config(&appid) {
            return Err(ServiceError::BadInput(
                "this app is in the config file: change it there",
            ));
        }
        Ok(appid)
    }
}

/// A platform's credentials as the registry takes them: an AppSecret of printable ASCII, or on
/// Alipay an RSA private key ring accepts and Alipay's public key (which only Alipay takes).
fn checked_keys(
    platform: Platform,
    secret: SecretString,
    alipay_public_key: Option<String>,
) -> ServiceResult<(SecretString, Option<String>)> {
    if platform != Platform::Alipay {
        if alipay_public_key.is_some() {
            return Err(ServiceError::BadInput(
                "only an Alipay app takes `alipay_public_key`",
            ));
        }
        return Ok((checked_secret(secret)?, None));
    }
    if secret.expose_secret().len() > MAX_KEY
        || alipay::private_key(secret.expose_secret()).is_err()
    {
        return Err(ServiceError::BadInput(
            "`secret` of an Alipay app must be its RSA private key of 2048 to 4096 bits (PEM or base64, PKCS#8 or PKCS#1)",
        ));
    }
    if let Some(key) = &alipay_public_key {
        if key.len() > MAX_KEY || alipay::public_key(key).is_err() {
            return Err(ServiceError::BadInput(
                "`alipay_public_key` must be Alipay's RSA public key (PEM or base64 SubjectPublicKeyInfo)",
            ));
        }
    }
    Ok((secret, alipay_public_key))
}

/// The platform's own phone key: `alipay_aes_key` on Alipay, `douyin_private_key` on Douyin,
/// usable (checked as the config file's are); none elsewhere.
fn checked_phone_key(platform: Platform, key: PhoneKey) -> ServiceResult<Option<SecretString>> {
    let key =
        match (platform, key.alipay_aes_key, key.douyin_private_key) {
            (_, None, None) => return Ok(None),
            (Platform::Alipay, Some(k), None) | (Platform::Douyin, None, Some(k)) => k,
            (_, Some(_), Some(_)) => return Err(ServiceError::BadInput(
                "send one phone key: `alipay_aes_key` (Alipay) or `douyin_private_key` (Douyin)",
            )),
            (_, Some(_), None) => {
                return Err(ServiceError::BadInput(
                    "only an Alipay app takes `alipay_aes_key`",
                ))
            }
            (_, None, Some(_)) => {
                return Err(ServiceError::BadInput(
                    "only a Douyin app takes `douyin_private_key`",
                ))
            }
        };
    if key.expose_secret().len() > MAX_KEY {
        return Err(ServiceError::BadInput("the phone key is too long"));
    }
    crate::wechat::crypto::check_phone_key(platform, key.expose_secret())
        .map_err(ServiceError::BadInput)?;
    Ok(Some(key))
}

fn checked_secret(secret: SecretString) -> ServiceResult<SecretString> {
    let text = secret.expose_secret();
    let ok =
        !text.is_empty() && text.len() <= MAX_SECRET && text.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(secret)
    } else {
        Err(ServiceError::BadInput(
            "`secret` must be 1-256 printable ASCII characters",
        ))
    }
}
