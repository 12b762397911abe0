//! The platforms' server API client (WeChat's, and the login exchanges of QQ, Douyin, Baidu,
//! Kuaishou and Alipay; the name is historical). Every endpoint goes through one [`WechatClient::call`]: one
//! time budget for the whole exchange (retry included), one metrics record per attempt, one
//! retry rule.
//!
//! WeChat's and QQ's URLs carry the AppSecret and the code in their query string (the others'
//! bodies do), so neither a URL nor a reqwest error that embeds one is ever logged or returned:
//! errors are built with `without_url`.

use super::alipay;
use super::replies::{
    alipay_login, AccessToken, AlipayGatewayReply, BaiduCode2SessionReply, BaiduTokenReply,
    CheckSessionReply, Code2Session, Code2SessionReply, DouyinCode2SessionReply, DouyinPhoneReply,
    DouyinTokenReply, KuaishouCode2SessionReply, KuaishouTokenReply, PhoneInfo, PhoneReply,
    QqCode2SessionReply, QqTokenReply, Reply, TokenReply,
};
use super::WechatError;
use crate::domain::{AppCredentials, JsCode, LoginCode, Platform};
use secrecy::ExposeSecret;
use std::time::{Duration, Instant, SystemTime};

/// The endpoints we call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Code2Session,
    StableToken,
    PhoneNumber,
    CheckSession,
    /// QQ's, on its own host: WeChat's path and reply shape.
    QqCode2Session,
    /// Douyin's `jscode2session` (a JSON POST).
    DouyinCode2Session,
    /// Baidu's `jscode2sessionkey` (a form POST).
    BaiduCode2Session,
    /// Kuaishou's `code2session` (a form POST).
    KuaishouCode2Session,
    /// Alipay's gateway, method `alipay.system.oauth.token` (an RSA2-signed form POST).
    AlipayOauthToken,
    /// Douyin's `stable_client_token` on its open API host (a JSON POST).
    DouyinClientToken,
    /// Douyin's `get_phonenumber_info` on its open API host (JSON, `access-token` header).
    DouyinPhoneNumber,
    /// QQ's `getToken` (a GET with the secret in the query, as its jscode2session).
    QqToken,
    /// Kuaishou's client-credentials `access_token` (a form POST).
    KuaishouToken,
    /// Baidu's OAuth `token` on its open API host (a form POST).
    BaiduToken,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Self::Code2Session | Self::QqCode2Session => "sns/jscode2session",
            Self::DouyinCode2Session => "api/apps/v2/jscode2session",
            Self::BaiduCode2Session => "oauth/jscode2sessionkey",
            Self::KuaishouCode2Session => "oauth2/mp/code2session",
            Self::AlipayOauthToken => "gateway.do",
            Self::DouyinClientToken => "oauth/stable_client_token/",
            Self::DouyinPhoneNumber => "api/apps/v1/get_phonenumber_info/",
            Self::QqToken => "api/getToken",
            Self::KuaishouToken => "oauth2/access_token",
            Self::BaiduToken => "oauth/2.0/token",
            Self::StableToken => "cgi-bin/stable_token",
            Self::PhoneNumber => "wxa/business/getuserphonenumber",
            Self::CheckSession => "wxa/checksession",
        }
    }

    /// The `api` label of `wxlogin_wechat_calls_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Code2Session => "jscode2session",
            Self::StableToken => "stable_token",
            Self::PhoneNumber => "getuserphonenumber",
            Self::CheckSession => "checksession",
            Self::QqCode2Session => "qq_jscode2session",
            Self::DouyinCode2Session => "douyin_jscode2session",
            Self::BaiduCode2Session => "baidu_jscode2sessionkey",
            Self::KuaishouCode2Session => "kuaishou_code2session",
            Self::AlipayOauthToken => "alipay_oauth_token",
            Self::DouyinClientToken => "douyin_client_token",
            Self::DouyinPhoneNumber => "douyin_get_phonenumber_info",
            Self::QqToken => "qq_token",
            Self::KuaishouToken => "kuaishou_token",
            Self::BaiduToken => "baidu_token",
        }
    }

    /// Only a login is worth one more try within its budget: the mini program is waiting on
    /// it, and the code is not spent by a "busy" or a failed connection.
    fn retries_once(self) -> bool {
        matches!(
            self,
            Self::Code2Session
                | Self::QqCode2Session
                | Self::DouyinCode2Session
                | Self::BaiduCode2Session
                | Self::KuaishouCode2Session
                | Self::AlipayOauthToken
        )
    }
}

/// Each platform's API base URL.
#[derive(Debug, Clone)]
pub struct ApiBases {
    pub wechat: url::Url,
    pub qq: url::Url,
    pub douyin: url::Url,
    /// Douyin's open API host (`open.douyin.com`).
    pub douyin_open: url::Url,
    pub baidu: url::Url,
    /// Baidu's open API host (`openapi.baidu.com`: its OAuth token).
    pub baidu_open: url::Url,
    pub kuaishou: url::Url,
    pub alipay: url::Url,
}

/// A request's method and body: WeChat's GET endpoints take only a query string; Baidu and
/// Kuaishou take a form, which keeps their secret out of the URL.
enum Body {
    Get,
    Json(serde_json::Value),
    /// JSON with the app's token in an `access-token` header (Douyin's open API).
    JsonWithToken(serde_json::Value, String),
    Form(Vec<(&'static str, String)>),
}

#[derive(Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    bases: ApiBases,
    budget: Duration,
}

impl WechatClient {
    /// `budget` bounds one whole exchange, retry included, so a slow WeChat turns into a 503
    /// within a known time instead of holding the mini program's request open.
    pub fn new(bases: ApiBases, budget: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(budget.min(Duration::from_secs(2)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            bases,
            budget,
        })
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// `auth.code2Session`: exchanges a login code (`wx.login()`, `qq.login()`, `tt.login()`,
    /// `swan.getLoginCode()`, `ks.login()`) with the app's own platform.
    /// An `anonymous_code` is Douyin's alone: another platform's login without a login code
    /// is refused here as a bad code (the route refuses it before).
    pub async fn code2session(
        &self,
        app: &AppCredentials,
        login: &LoginCode,
    ) -> Result<Code2Session, WechatError> {
        let code = match (app.platform, login.code()) {
            (Platform::Douyin, _) => return self.douyin_code2session(app, login).await,
            (_, Some(code)) => code,
            (_, None) => return Err(WechatError::InvalidCode),
        };
        let query = [
            ("appid", app.appid.as_str()),
            ("secret", app.secret.expose_secret()),
            ("js_code", code.expose()),
            ("grant_type", "authorization_code"),
        ];
        match app.platform {
            Platform::Weixin => {
                self.call::<Code2SessionReply>(Api::Code2Session, &query, Body::Get)
                    .await
            }
            Platform::Qq => {
                self.call::<QqCode2SessionReply>(Api::QqCode2Session, &query, Body::Get)
                    .await
            }
            Platform::Douyin => self.douyin_code2session(app, login).await,
            Platform::Baidu => {
                let form = vec![
                    ("code", code.expose().to_owned()),
                    ("client_id", app.appid.as_str().to_owned()),
                    ("sk", app.secret.expose_secret().to_owned()),
                ];
                self.call::<BaiduCode2SessionReply>(Api::BaiduCode2Session, &[], Body::Form(form))
                    .await
            }
            Platform::Kuaishou => {
                let form = vec![
                    ("app_id", app.appid.as_str().to_owned()),
                    ("app_secret", app.secret.expose_secret().to_owned()),
                    ("js_code", code.expose().to_owned()),
                ];
                self.call::<KuaishouCode2SessionReply>(
                    Api::KuaishouCode2Session,
                    &[],
                    Body::Form(form),
                )
                .await
            }
            Platform::Alipay => self.alipay_oauth_token(app, code).await,
        }
    }

    /// Douyin's `jscode2session` with the login code, the `anonymous_code`, or both.
    async fn douyin_code2session(
        &self,
        app: &AppCredentials,
        login: &LoginCode,
    ) -> Result<Code2Session, WechatError> {
        let mut body = serde_json::json!({
            "appid": app.appid.as_str(),
            "secret": app.secret.expose_secret(),
        });
        if let Some(code) = login.code() {
            body["code"] = code.expose().into();
        }
        if let Some(anonymous) = login.anonymous() {
            body["anonymous_code"] = anonymous.expose().into();
        }
        self.call::<DouyinCode2SessionReply>(Api::DouyinCode2Session, &[], Body::Json(body))
            .await
    }

    /// Alipay's `alipay.system.oauth.token`: the form signed with the app's private key, the
    /// reply believed only once Alipay's signature on it verifies.
    async fn alipay_oauth_token(
        &self,
        app: &AppCredentials,
        code: &JsCode,
    ) -> Result<Code2Session, WechatError> {
        // Both keys were checked when the app was configured or registered.
        let key = alipay::private_key(app.secret.expose_secret())
            .map_err(|_| WechatError::BadCredentials(0))?;
        let public = app
            .alipay_public_key
            .as_deref()
            .and_then(|k| alipay::public_key(k).ok())
            .ok_or(WechatError::BadCredentials(0))?;
        let timestamp = alipay::timestamp(SystemTime::now());
        let params = [
            ("app_id", app.appid.as_str()),
            ("method", alipay::OAUTH_TOKEN),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("timestamp", timestamp.as_str()),
            ("version", "1.0"),
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
        ];
        let sign = alipay::sign(&key, alipay::sign_content(&params).as_bytes());
        // As Alipay's SDKs send it: the protocol's parameters in the query, the method's in
        // the form.
        let (form, query): (Vec<_>, Vec<_>) = params
            .iter()
            .partition(|(k, _)| matches!(*k, "grant_type" | "code"));
        let mut query = query;
        query.push(("sign", sign.as_str()));
        let form = form.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let signed = self
            .call::<AlipayGatewayReply>(Api::AlipayOauthToken, &query, Body::Form(form))
            .await?;
        let result = alipay_login(&signed, &public);
        if let Err(e) = &result {
            tracing::warn!(appid = %app.appid, errcode = %e.errcode_label(), "Alipay's reply was refused");
        }
        result
    }

    /// `POST /cgi-bin/stable_token` in normal mode (never `force_refresh`): every caller gets
    /// the same token while it is valid, so instances do not invalidate each other's tokens.
    pub async fn stable_token(&self, app: &AppCredentials) -> Result<AccessToken, WechatError> {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": app.appid.as_str(),
            "secret": app.secret.expose_secret(),
            "force_refresh": false,
        });
        self.call::<TokenReply>(Api::StableToken, &[], Body::Json(body))
            .await
    }

    /// The app's token for the platform's server APIs: WeChat's `stable_token` and Douyin's
    /// `stable_client_token` (both hand every caller the same token while it lives), QQ's
    /// `getToken`, Kuaishou's and Baidu's client-credentials tokens. Alipay has none (each of
    /// its requests is signed): `Other(0)`, which callers check for before.
    pub async fn app_token(&self, app: &AppCredentials) -> Result<AccessToken, WechatError> {
        let secret = app.secret.expose_secret();
        match app.platform {
            Platform::Qq => {
                let query = [
                    ("grant_type", "client_credential"),
                    ("appid", app.appid.as_str()),
                    ("secret", secret),
                ];
                self.call::<QqTokenReply>(Api::QqToken, &query, Body::Get)
                    .await
            }
            Platform::Kuaishou => {
                let form = vec![
                    ("app_id", app.appid.to_string()),
                    ("app_secret", secret.to_owned()),
                    ("grant_type", "client_credentials".to_owned()),
                ];
                self.call::<KuaishouTokenReply>(Api::KuaishouToken, &[], Body::Form(form))
                    .await
            }
            Platform::Baidu => {
                let form = vec![
                    ("grant_type", "client_credentials".to_owned()),
                    ("client_id", app.appid.to_string()),
                    ("client_secret", secret.to_owned()),
                    ("scope", "smartapp_snsapi_base".to_owned()),
                ];
                self.call::<BaiduTokenReply>(Api::BaiduToken, &[], Body::Form(form))
                    .await
            }
            Platform::Alipay => Err(WechatError::Other(0)),
            Platform::Douyin => {
                let body = serde_json::json!({
                    "client_key": app.appid.as_str(),
                    "client_secret": secret,
                    "grant_type": "client_credential",
                });
                self.call::<DouyinTokenReply>(Api::DouyinClientToken, &[], Body::Json(body))
                    .await
            }
            Platform::Weixin => self.stable_token(app).await,
        }
    }

    /// Douyin's `get_phonenumber_info`: the getPhoneNumber button's code → the number,
    /// RSA-encrypted under the app's public key (base64; `crypto::douyin` opens it).
    pub async fn douyin_phone_data(
        &self,
        access_token: &str,
        code: &str,
    ) -> Result<String, WechatError> {
        let body = Body::JsonWithToken(serde_json::json!({ "code": code }), access_token.into());
        self.call::<DouyinPhoneReply>(Api::DouyinPhoneNumber, &[], body)
            .await
    }

    /// `POST /wxa/business/getuserphonenumber`: a phone code from the getPhoneNumber button.
    pub async fn phone_number(
        &self,
        access_token: &str,
        code: &str,
    ) -> Result<PhoneInfo, WechatError> {
        let body = serde_json::json!({ "code": code });
        let query = [("access_token", access_token)];
        self.call::<PhoneReply>(Api::PhoneNumber, &query, Body::Json(body))
            .await
    }

    /// `GET /wxa/checksession`: is this session_key still the user's current one?
    pub async fn check_session(
        &self,
        access_token: &str,
        openid: &str,
        signature: &str,
    ) -> Result<bool, WechatError> {
        let query = [
            ("access_token", access_token),
            ("openid", openid),
            ("signature", signature),
            ("sig_method", "hmac_sha256"),
        ];
        self.call::<CheckSessionReply>(Api::CheckSession, &query, Body::Get)
            .await
    }

    /// The one path of every WeChat call: attempts within the budget, each recorded.
    async fn call<R: Reply>(
        &self,
        api: Api,
        query: &[(&str, &str)],
        body: Body,
    ) -> Result<R::Output, WechatError> {
        let attempts = async {
            let mut retried = false;
            loop {
                let started = Instant::now();
                let result = self.attempt::<R>(api, query, &body).await;
                let label = match &result {
                    Ok((errcode, _)) => errcode.to_string(),
                    Err(e) => e.errcode_label(),
                };
                crate::metrics::wechat_call(api.label(), label, started);
                match result {
                    Err(e) if api.retries_once() && !retried && e.retryable() => {
                        tracing::warn!(api = api.label(), errcode = %e.errcode_label(), "WeChat call failed, retrying once");
                        retried = true;
                    }
                    other => return other.map(|(_, output)| output),
                }
            }
        };
        let result = tokio::time::timeout(self.budget, attempts)
            .await
            .unwrap_or(Err(WechatError::Timeout));
        if let Err(e) = &result {
            tracing::info!(api = api.label(), errcode = %e.errcode_label(), "WeChat call failed");
        }
        result
    }

    /// One request; on an answer, its errcode (for the metrics) and its result.
    async fn attempt<R: Reply>(
        &self,
        api: Api,
        query: &[(&str, &str)],
        body: &Body,
    ) -> Result<(i64, R::Output), WechatError> {
        let base = match api {
            Api::QqCode2Session | Api::QqToken => &self.bases.qq,
            Api::DouyinCode2Session => &self.bases.douyin,
            Api::BaiduCode2Session => &self.bases.baidu,
            Api::KuaishouCode2Session | Api::KuaishouToken => &self.bases.kuaishou,
            Api::BaiduToken => &self.bases.baidu_open,
            Api::AlipayOauthToken => &self.bases.alipay,
            Api::DouyinClientToken | Api::DouyinPhoneNumber => &self.bases.douyin_open,
            Api::Code2Session | Api::StableToken | Api::PhoneNumber | Api::CheckSession => {
                &self.bases.wechat
            }
        };
        let url = endpoint(base, api.path());
        let request = match body {
            Body::Get => self.http.get(url),
            Body::Json(json) => self.http.post(url).json(json),
            Body::JsonWithToken(json, token) => {
                self.http.post(url).json(json).header("access-token", token)
            }
            Body::Form(form) => self.http.post(url).form(form),
        };
        let response = request
            .query(query)
            .send()
            .await
            .map_err(|e| transport_error(&e.without_url()))?;
        let status = response.status();
        if status.is_server_error() || status.is_redirection() || status.is_informational() {
            return Err(WechatError::HttpStatus(status.as_u16()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&e.without_url()))?;
        if !status.is_success() {
            // Baidu answers its OAuth errors (a bad code, an unknown client) as HTTP 400 with a
            // JSON body that says which: read it; anything else is the status.
            return Err(serde_json::from_slice::<R>(&bytes)
                .ok()
                .and_then(|reply| reply.into_result().err())
                .unwrap_or(WechatError::HttpStatus(status.as_u16())));
        }
        // WeChat labels JSON as `text/plain` on some routes: decode whatever the type says.
        let reply: R = serde_json::from_slice(&bytes).map_err(|_| WechatError::BadReply)?;
        let errcode = reply.errcode();
        match reply.into_result() {
            Ok(output) => Ok((errcode, output)),
            Err(e) => Err(e),
        }
    }
}

fn endpoint(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
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
    fn endpoint_keeps_a_base_path() {
        assert_eq!(
            endpoint(
                &"http://127.0.0.1:1/wx/".parse().unwrap(),
                "sns/jscode2session"
            )
            .as_str(),
            "http://127.0.0.1:1/wx/sns/jscode2session"
        );
    }
}
