//! WeChat server API client and WeChat's error codes.
//!
//! WeChat answers errors as HTTP 200 with an `errcode`; [`WechatError`] turns them into types.
//! Outbound URLs carry the AppSecret and the code in their query string, so neither a URL nor a
//! reqwest error that embeds one is ever logged or returned: errors are built with `without_url`.
//! Depends on the domain and config types only.

pub mod crypto;
pub mod token;

use crate::config::AppConfig;
use crate::domain::{JsCode, OpenId, SessionKey, UnionId};
use secrecy::ExposeSecret;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// What WeChat said or failed to say. Carries no URL, no secret, no code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatError {
    #[error("WeChat rejected the code (40029)")]
    InvalidCode,
    #[error("the code was already used (40163)")]
    CodeUsed,
    #[error("WeChat blocked this user as high-risk (40226)")]
    UserBlocked,
    #[error("WeChat rate limit reached (45011)")]
    RateLimited,
    #[error("WeChat is busy (-1)")]
    Busy,
    #[error("WeChat refused the app credentials (errcode {0}): check the AppId and AppSecret")]
    BadCredentials(i64),
    #[error("WeChat rejected the access_token (errcode {0})")]
    AccessTokenInvalid(i64),
    #[error("WeChat says the session signature is invalid (87009)")]
    InvalidSignature,
    #[error("WeChat answered errcode {0}")]
    Other(i64),
    #[error("WeChat did not answer in time")]
    Timeout,
    #[error("could not connect to WeChat")]
    Connect,
    #[error("WeChat answered HTTP {0}")]
    HttpStatus(u16),
    #[error("WeChat's reply could not be read")]
    BadReply,
}

impl WechatError {
    pub fn from_errcode(code: i64) -> Self {
        match code {
            40029 => Self::InvalidCode,
            40163 => Self::CodeUsed,
            40226 => Self::UserBlocked,
            45011 => Self::RateLimited,
            -1 => Self::Busy,
            40013 | 40125 | 41002 | 41004 | 40164 => Self::BadCredentials(code),
            40001 | 40014 | 42001 => Self::AccessTokenInvalid(code),
            87009 => Self::InvalidSignature,
            other => Self::Other(other),
        }
    }

    /// A stable label for logs and metrics.
    pub fn errcode_label(&self) -> String {
        match self {
            Self::InvalidCode => "40029".into(),
            Self::CodeUsed => "40163".into(),
            Self::UserBlocked => "40226".into(),
            Self::RateLimited => "45011".into(),
            Self::Busy => "-1".into(),
            Self::InvalidSignature => "87009".into(),
            Self::BadCredentials(c) | Self::AccessTokenInvalid(c) | Self::Other(c) => c.to_string(),
            Self::Timeout => "timeout".into(),
            Self::Connect => "connect".into(),
            Self::HttpStatus(s) => format!("http_{s}"),
            Self::BadReply => "bad_reply".into(),
        }
    }

    /// Worth one more try: WeChat said "busy", or we never reached it.
    fn retryable(&self) -> bool {
        matches!(self, Self::Busy | Self::Connect)
    }
}

/// What `jscode2session` hands the server.
#[derive(Debug, Clone)]
pub struct Code2Session {
    pub openid: OpenId,
    pub session_key: SessionKey,
    pub unionid: Option<UnionId>,
}

/// An access_token and how long WeChat says it lives.
#[derive(Clone)]
pub struct AccessToken {
    pub token: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// `phone_info` from getuserphonenumber. `countryCode` arrives as a number or a string.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneInfo {
    pub phone_number: String,
    pub pure_phone_number: String,
    #[serde(deserialize_with = "string_or_number")]
    pub country_code: String,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom(
            "countryCode must be a string or a number",
        )),
    }
}

#[derive(Deserialize)]
struct ErrReply {
    #[serde(default)]
    errcode: i64,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    errcode: i64,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct PhoneReply {
    #[serde(default)]
    errcode: i64,
    phone_info: Option<PhoneInfo>,
}

#[derive(Deserialize)]
struct Code2SessionReply {
    #[serde(default)]
    errcode: i64,
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

impl Code2SessionReply {
    fn into_result(self) -> Result<Code2Session, WechatError> {
        if self.errcode != 0 {
            return Err(WechatError::from_errcode(self.errcode));
        }
        match (self.openid, self.session_key) {
            (Some(openid), Some(key)) if !openid.is_empty() && !key.is_empty() => {
                Ok(Code2Session {
                    openid: OpenId(openid),
                    session_key: SessionKey::new(key),
                    unionid: self.unionid.filter(|u| !u.is_empty()).map(UnionId),
                })
            }
            _ => Err(WechatError::BadReply),
        }
    }
}

/// Reads a `jscode2session` reply body exactly as the client does (the fuzz targets' entry).
pub fn parse_code2session(body: &[u8]) -> Result<Code2Session, WechatError> {
    serde_json::from_slice::<Code2SessionReply>(body)
        .map_err(|_| WechatError::BadReply)?
        .into_result()
}

#[derive(Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    base: url::Url,
    budget: Duration,
}

impl WechatClient {
    /// `budget` bounds one whole exchange, retry included, so a slow WeChat turns into a 503
    /// within a known time instead of holding the mini program's request open.
    pub fn new(base: url::Url, budget: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(budget.min(Duration::from_secs(2)))
            .timeout(budget)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, base, budget })
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// `auth.code2Session`: exchanges a `wx.login()` code. At most one retry, only when WeChat
    /// said busy (-1) or the connection failed before any response.
    pub async fn code2session(
        &self,
        app: &AppConfig,
        code: &JsCode,
    ) -> Result<Code2Session, WechatError> {
        let attempt = async {
            match self.code2session_once(app, code).await {
                Err(e) if e.retryable() => {
                    tracing::warn!(appid = %app.appid, errcode = %e.errcode_label(), "jscode2session failed, retrying once");
                    self.code2session_once(app, code).await
                }
                other => other,
            }
        };
        let result = tokio::time::timeout(self.budget, attempt)
            .await
            .unwrap_or(Err(WechatError::Timeout));
        if let Err(e) = &result {
            tracing::info!(appid = %app.appid, errcode = %e.errcode_label(), "jscode2session failed");
        }
        result
    }

    async fn code2session_once(
        &self,
        app: &AppConfig,
        code: &JsCode,
    ) -> Result<Code2Session, WechatError> {
        let started = Instant::now();
        observed(
            "jscode2session",
            started,
            self.code2session_call(app, code).await,
        )
    }

    async fn code2session_call(
        &self,
        app: &AppConfig,
        code: &JsCode,
    ) -> Result<Code2Session, WechatError> {
        let url = self.endpoint("sns/jscode2session");
        let query = [
            ("appid", app.appid.as_str()),
            ("secret", app.secret.expose_secret()),
            ("js_code", code.expose()),
            ("grant_type", "authorization_code"),
        ];
        let reply: Code2SessionReply = self.get_json(url, &query).await?;
        reply.into_result()
    }

    /// `POST /cgi-bin/stable_token` in normal mode (never `force_refresh`): every caller gets
    /// the same token while it is valid, so instances do not invalidate each other's tokens.
    pub async fn stable_token(&self, app: &AppConfig) -> Result<AccessToken, WechatError> {
        let started = Instant::now();
        observed("stable_token", started, self.stable_token_call(app).await)
    }

    async fn stable_token_call(&self, app: &AppConfig) -> Result<AccessToken, WechatError> {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": app.appid.as_str(),
            "secret": app.secret.expose_secret(),
            "force_refresh": false,
        });
        let reply: TokenReply = self
            .bounded(self.post_json(self.endpoint("cgi-bin/stable_token"), &[], &body))
            .await?;
        if reply.errcode != 0 {
            return Err(WechatError::from_errcode(reply.errcode));
        }
        match reply.access_token {
            Some(token) if !token.is_empty() => Ok(AccessToken {
                token,
                expires_in: reply.expires_in.unwrap_or(7200),
            }),
            _ => Err(WechatError::BadReply),
        }
    }

    /// `POST /wxa/business/getuserphonenumber`: a phone code from the getPhoneNumber button.
    pub async fn phone_number(
        &self,
        access_token: &str,
        code: &str,
    ) -> Result<PhoneInfo, WechatError> {
        let started = Instant::now();
        let result = self.phone_number_call(access_token, code).await;
        observed("getuserphonenumber", started, result)
    }

    async fn phone_number_call(
        &self,
        access_token: &str,
        code: &str,
    ) -> Result<PhoneInfo, WechatError> {
        let url = self.endpoint("wxa/business/getuserphonenumber");
        let body = serde_json::json!({ "code": code });
        let reply: PhoneReply = self
            .bounded(self.post_json(url, &[("access_token", access_token)], &body))
            .await?;
        if reply.errcode != 0 {
            return Err(WechatError::from_errcode(reply.errcode));
        }
        reply.phone_info.ok_or(WechatError::BadReply)
    }

    /// `GET /wxa/checksession`: is this session_key still the user's current one?
    pub async fn check_session(
        &self,
        access_token: &str,
        openid: &str,
        signature: &str,
    ) -> Result<bool, WechatError> {
        let started = Instant::now();
        let result = self
            .check_session_call(access_token, openid, signature)
            .await;
        let label = match &result {
            Ok(true) => "0".to_owned(),
            Ok(false) => "87009".to_owned(),
            Err(e) => e.errcode_label(),
        };
        crate::metrics::wechat_call("checksession", label, started);
        result
    }

    async fn check_session_call(
        &self,
        access_token: &str,
        openid: &str,
        signature: &str,
    ) -> Result<bool, WechatError> {
        let url = self.endpoint("wxa/checksession");
        let query = [
            ("access_token", access_token),
            ("openid", openid),
            ("signature", signature),
            ("sig_method", "hmac_sha256"),
        ];
        let reply: ErrReply = self.bounded(self.get_json(url, &query)).await?;
        match reply.errcode {
            0 => Ok(true),
            87009 => Ok(false),
            code => Err(WechatError::from_errcode(code)),
        }
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, WechatError>>,
    ) -> Result<T, WechatError> {
        tokio::time::timeout(self.budget, f)
            .await
            .unwrap_or(Err(WechatError::Timeout))
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        url: url::Url,
        query: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> Result<T, WechatError> {
        let response = self
            .http
            .post(url)
            .query(query)
            .json(body)
            .send()
            .await
            .map_err(|e| transport_error(&e.without_url()))?;
        decode(response).await
    }

    fn endpoint(&self, path: &str) -> url::Url {
        let mut url = self.base.clone();
        let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }

    /// GETs and decodes a WeChat reply. WeChat labels JSON as `text/plain` on some routes, so the
    /// body is decoded whatever its content type says.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: url::Url,
        query: &[(&str, &str)],
    ) -> Result<T, WechatError> {
        let response = self
            .http
            .get(url)
            .query(query)
            .send()
            .await
            .map_err(|e| transport_error(&e.without_url()))?;
        decode(response).await
    }
}

/// Records one WeChat call (API, errcode, latency) and passes its result on.
fn observed<T>(
    api: &'static str,
    started: Instant,
    result: Result<T, WechatError>,
) -> Result<T, WechatError> {
    let label = match &result {
        Ok(_) => "0".to_owned(),
        Err(e) => e.errcode_label(),
    };
    crate::metrics::wechat_call(api, label, started);
    result
}

async fn decode<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, WechatError> {
    let status = response.status();
    if !status.is_success() {
        return Err(WechatError::HttpStatus(status.as_u16()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(&e.without_url()))?;
    serde_json::from_slice(&body).map_err(|_| WechatError::BadReply)
}

fn transport_error(e: &reqwest::Error) -> WechatError {
    if e.is_timeout() {
        WechatError::Timeout
    } else if e.is_connect() {
        WechatError::Connect
    } else {
        WechatError::BadReply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_map_to_types() {
        assert_eq!(WechatError::from_errcode(40029), WechatError::InvalidCode);
        assert_eq!(WechatError::from_errcode(40163), WechatError::CodeUsed);
        assert_eq!(WechatError::from_errcode(40226), WechatError::UserBlocked);
        assert_eq!(WechatError::from_errcode(45011), WechatError::RateLimited);
        assert_eq!(WechatError::from_errcode(-1), WechatError::Busy);
        assert_eq!(
            WechatError::from_errcode(40013),
            WechatError::BadCredentials(40013)
        );
        assert_eq!(
            WechatError::from_errcode(40125),
            WechatError::BadCredentials(40125)
        );
        assert_eq!(WechatError::from_errcode(12345), WechatError::Other(12345));
    }

    #[test]
    fn only_busy_and_connect_failures_are_retried() {
        assert!(WechatError::Busy.retryable());
        assert!(WechatError::Connect.retryable());
        for e in [
            WechatError::Timeout,
            WechatError::InvalidCode,
            WechatError::HttpStatus(500),
            WechatError::BadReply,
        ] {
            assert!(!e.retryable(), "{e:?}");
        }
    }

    #[test]
    fn endpoint_keeps_a_base_path() {
        let c = WechatClient::new(
            "http://127.0.0.1:1/wx/".parse().unwrap(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            c.endpoint("sns/jscode2session").as_str(),
            "http://127.0.0.1:1/wx/sns/jscode2session"
        );
    }
}
