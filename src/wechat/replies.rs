//! WeChat's reply bodies and what they mean. Each reply type says how it turns into a result
//! ([`Reply`]), so the client reads every endpoint the same way.

use super::alipay;
use super::WechatError;
use crate::domain::{OpenId, SessionKey, UnionId};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A WeChat reply body: its `errcode` (0 on success) and the value it carries.
pub(super) trait Reply: DeserializeOwned {
    type Output;
    fn errcode(&self) -> i64;
    fn into_result(self) -> Result<Self::Output, WechatError>;
}

/// What `jscode2session` hands the server.
#[derive(Debug, Clone)]
pub struct Code2Session {
    pub openid: OpenId,
    pub session_key: SessionKey,
    pub unionid: Option<UnionId>,
    /// An identity of the same app that this one takes over (same user, now this openid):
    /// on Douyin, with both codes, the device's anonymous identity ([`OpenId::anonymous`]); on
    /// Alipay, when an app moving to open_id mode gets both ids, its `user_id` identity.
    pub takes_over: Option<OpenId>,
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

fn check(errcode: i64) -> Result<(), WechatError> {
    match errcode {
        0 => Ok(()),
        code => Err(WechatError::from_errcode(code)),
    }
}

#[derive(Deserialize)]
pub(super) struct Code2SessionReply {
    #[serde(default)]
    errcode: i64,
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

impl Reply for Code2SessionReply {
    type Output = Code2Session;
    fn errcode(&self) -> i64 {
        self.errcode
    }
    fn into_result(self) -> Result<Code2Session, WechatError> {
        check(self.errcode)?;
        match (self.openid, self.session_key) {
            (Some(openid), Some(key)) if !openid.is_empty() && !key.is_empty() => {
                Ok(Code2Session {
                    openid: OpenId(openid),
                    session_key: SessionKey::new(key),
                    unionid: self.unionid.filter(|u| !u.is_empty()).map(UnionId),
                    takes_over: None,
                })
            }
            _ => Err(WechatError::BadReply),
        }
    }
}

/// QQ's `jscode2session` reply: WeChat's shape, QQ's errcodes. QQ has been seen answering an
/// error with every field present and empty (`openid: ""`): that is a bad reply, never a user.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct QqCode2SessionReply(Code2SessionReply);

impl Reply for QqCode2SessionReply {
    type Output = Code2Session;
    fn errcode(&self) -> i64 {
        self.0.errcode
    }
    fn into_result(self) -> Result<Code2Session, WechatError> {
        match self.0.errcode {
            0 => self.0.into_result(),
            code => Err(WechatError::from_qq_errcode(code)),
        }
    }
}

/// Reads a QQ `jscode2session` reply body exactly as the client does.
pub fn parse_qq_code2session(body: &[u8]) -> Result<Code2Session, WechatError> {
    parse::<QqCode2SessionReply>(body)
}

/// A session from a platform's reply fields: both present and not empty, or no user at all.
fn session_of(
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
) -> Result<Code2Session, WechatError> {
    match (openid, session_key) {
        (Some(openid), Some(key)) if !openid.is_empty() && !key.is_empty() => Ok(Code2Session {
            openid: OpenId(openid),
            session_key: SessionKey::new(key),
            unionid: unionid.filter(|u| !u.is_empty()).map(UnionId),
            takes_over: None,
        }),
        _ => Err(WechatError::BadReply),
    }
}

/// Douyin's `jscode2session` reply: `{err_no, err_tips, data: {session_key, openid,
/// anonymous_openid, unionid}}`.
#[derive(Deserialize)]
pub(super) struct DouyinCode2SessionReply {
    err_no: i64,
    data: Option<DouyinSession>,
}

#[derive(Deserialize)]
struct DouyinSession {
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
    /// Present when the request carried an `anonymous_code`.
    anonymous_openid: Option<String>,
}

impl DouyinSession {
    /// A signed-in session (with the anonymous identity it takes over, if both codes were
    /// sent); else, from an `anonymous_code` alone, the anonymous identity with no
    /// session_key; else no user at all.
    fn into_session(self) -> Result<Code2Session, WechatError> {
        let anonymous = self
            .anonymous_openid
            .filter(|a| !a.is_empty())
            .map(|a| OpenId::anonymous(&a));
        let signed_in = self.openid.as_deref().is_some_and(|o| !o.is_empty());
        match anonymous {
            Some(anonymous) if !signed_in => Ok(Code2Session {
                openid: anonymous,
                session_key: SessionKey::new(String::new()),
                unionid: None,
                takes_over: None,
            }),
            anonymous => Ok(Code2Session {
                takes_over: anonymous,
                ..session_of(self.openid, self.session_key, self.unionid)?
            }),
        }
    }
}

impl Reply for DouyinCode2SessionReply {
    type Output = Code2Session;
    fn errcode(&self) -> i64 {
        self.err_no
    }
    fn into_result(self) -> Result<Code2Session, WechatError> {
        match self.err_no {
            0 => match self.data {
                Some(d) => d.into_session(),
                None => Err(WechatError::BadReply),
            },
            // A bad code (or anonymous_code): wrong, expired or used.
            40018 | 40019 => Err(WechatError::InvalidCode),
            // Bad parameters, appid or secret.
            40014 | 40015 | 40017 => Err(WechatError::BadCredentials(self.err_no)),
            -1 => Err(WechatError::Busy),
            other => Err(WechatError::Other(other)),
        }
    }
}

/// Reads a Douyin `jscode2session` reply body as the client does.
pub fn parse_douyin_code2session(body: &[u8]) -> Result<Code2Session, WechatError> {
    parse::<DouyinCode2SessionReply>(body)
}

/// Baidu's `jscode2sessionkey` reply: `{openid, session_key}`, or an error as OAuth's
/// `{error, error_description}` (HTTP 400), its newer `{errno, error, error_description}`, or
/// its gateway's `{error_code, error_msg}` — whichever arrives.
#[derive(Deserialize)]
pub(super) struct BaiduCode2SessionReply {
    openid: Option<String>,
    session_key: Option<String>,
    #[serde(default)]
    errno: i64,
    error: Option<String>,
    #[serde(default)]
    error_code: i64,
}

impl Reply for BaiduCode2SessionReply {
    type Output = Code2Session;
    fn errcode(&self) -> i64 {
        if self.errno != 0 {
            self.errno
        } else {
            self.error_code
        }
    }
    fn into_result(self) -> Result<Code2Session, WechatError> {
        let number = self.errcode();
        let error = self.error.as_deref().filter(|e| !e.is_empty());
        match (error, number) {
            // A code Baidu does not know, that expired, or that was used.
            (Some("invalid_grant"), _) => Err(WechatError::InvalidCode),
            (Some("invalid_client" | "unauthorized_client"), _) => {
                Err(WechatError::BadCredentials(number))
            }
            // "parameter is invalid": a client_id or sk that is missing or malformed.
            (_, 10010100) => Err(WechatError::BadCredentials(number)),
            (None, 0) => session_of(self.openid, self.session_key, None),
            (_, other) => Err(WechatError::Other(other)),
        }
    }
}

/// Kuaishou's `code2session` reply: `{result: 1, open_id, session_key}`, or `result` another
/// number with `error_msg`.
#[derive(Deserialize)]
pub(super) struct KuaishouCode2SessionReply {
    result: i64,
    open_id: Option<String>,
    session_key: Option<String>,
}

impl Reply for KuaishouCode2SessionReply {
    type Output = Code2Session;
    fn errcode(&self) -> i64 {
        if self.result == 1 {
            0
        } else {
            self.result
        }
    }
    fn into_result(self) -> Result<Code2Session, WechatError> {
        match self.result {
            1 => session_of(self.open_id, self.session_key, None),
            // invalid_grant: the code is wrong, expired or used.
            100200105 => Err(WechatError::InvalidCode),
            // A bad parameter, app_id or app_secret.
            100200100 | 100200101 => Err(WechatError::BadCredentials(self.result)),
            // server_error: worth the one retry.
            100200500 => Err(WechatError::Busy),
            other => Err(WechatError::Other(other)),
        }
    }
}

/// Reads a Baidu `jscode2sessionkey` reply body as the client does.
pub fn parse_baidu_code2session(body: &[u8]) -> Result<Code2Session, WechatError> {
    parse::<BaiduCode2SessionReply>(body)
}

/// Reads a Kuaishou `code2session` reply body as the client does.
pub fn parse_kuaishou_code2session(body: &[u8]) -> Result<Code2Session, WechatError> {
    parse::<KuaishouCode2SessionReply>(body)
}

/// A reply body read as the client reads it: any body that is not the reply's JSON is `BadReply`.
fn parse<R: Reply>(body: &[u8]) -> Result<R::Output, WechatError> {
    serde_json::from_slice::<R>(body)
        .map_err(|_| WechatError::BadReply)?
        .into_result()
}

/// Reads a `jscode2session` reply body exactly as the client does (the fuzz targets' entry).
pub fn parse_code2session(body: &[u8]) -> Result<Code2Session, WechatError> {
    parse::<Code2SessionReply>(body)
}

#[derive(Deserialize)]
pub(super) struct TokenReply {
    #[serde(default)]
    errcode: i64,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Reply for TokenReply {
    type Output = AccessToken;
    fn errcode(&self) -> i64 {
        self.errcode
    }
    fn into_result(self) -> Result<AccessToken, WechatError> {
        check(self.errcode)?;
        match self.access_token {
            Some(token) if !token.is_empty() => Ok(AccessToken {
                token,
                expires_in: self.expires_in.unwrap_or(7200),
            }),
            _ => Err(WechatError::BadReply),
        }
    }
}

/// A token from a platform's reply fields: present and not empty, or a reply we cannot use.
fn token_of(token: Option<String>, expires_in: Option<u64>) -> Result<AccessToken, WechatError> {
    match token.filter(|t| !t.is_empty()) {
        Some(token) => Ok(AccessToken {
            token,
            expires_in: expires_in.unwrap_or(7200),
        }),
        None => Err(WechatError::BadReply),
    }
}

/// QQ's `getToken` reply: WeChat's shape (`{access_token, expires_in}` or `{errcode, errmsg}`)
/// with QQ's codes (-1 busy; 40001 bad AppSecret, 40002 bad grant_type, 40013 bad AppID).
#[derive(Deserialize)]
pub(super) struct QqTokenReply {
    #[serde(default)]
    errcode: i64,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Reply for QqTokenReply {
    type Output = AccessToken;
    fn errcode(&self) -> i64 {
        self.errcode
    }
    fn into_result(self) -> Result<AccessToken, WechatError> {
        match self.errcode {
            0 => token_of(self.access_token, self.expires_in),
            code => Err(WechatError::from_qq_errcode(code)),
        }
    }
}

/// Kuaishou's `oauth2/access_token` (client_credentials) reply: `{result: 1, access_token,
/// expires_in, token_type}`, or `result` one of its code2session's error numbers.
#[derive(Deserialize)]
pub(super) struct KuaishouTokenReply {
    result: i64,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Reply for KuaishouTokenReply {
    type Output = AccessToken;
    fn errcode(&self) -> i64 {
        if self.result == 1 {
            0
        } else {
            self.result
        }
    }
    fn into_result(self) -> Result<AccessToken, WechatError> {
        match self.result {
            1 => token_of(self.access_token, self.expires_in),
            100200100 | 100200101 => Err(WechatError::BadCredentials(self.result)),
            100200500 => Err(WechatError::Busy),
            other => Err(WechatError::Other(other)),
        }
    }
}

/// Baidu's OAuth `token` (client_credentials, scope `smartapp_snsapi_base`) reply:
/// `{access_token, expires_in, …}` (a month), or `{error, error_description}`.
#[derive(Deserialize)]
pub(super) struct BaiduTokenReply {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
}

impl Reply for BaiduTokenReply {
    type Output = AccessToken;
    fn errcode(&self) -> i64 {
        i64::from(self.error.is_some())
    }
    fn into_result(self) -> Result<AccessToken, WechatError> {
        match self.error.as_deref().filter(|e| !e.is_empty()) {
            None => token_of(self.access_token, self.expires_in),
            Some("invalid_client" | "unauthorized_client" | "invalid_scope") => {
                Err(WechatError::BadCredentials(0))
            }
            Some(_) => Err(WechatError::Other(0)),
        }
    }
}

/// Reads QQ's, Kuaishou's and Baidu's token replies as the client does.
pub fn parse_platform_token(body: &[u8]) -> [Result<AccessToken, WechatError>; 3] {
    [
        parse::<QqTokenReply>(body),
        parse::<KuaishouTokenReply>(body),
        parse::<BaiduTokenReply>(body),
    ]
}

/// Douyin's `stable_client_token` reply: `{data: {access_token, description, error_code,
/// expires_in}, message}`; `error_code` 10002 (bad parameters), 10003 (unknown client_key) and
/// 10013 (wrong client_key or secret) are ours to fix, 10020 is its rate limit.
#[derive(Deserialize)]
pub(super) struct DouyinTokenReply {
    data: Option<DouyinTokenData>,
}

#[derive(Deserialize)]
struct DouyinTokenData {
    access_token: Option<String>,
    #[serde(default)]
    error_code: i64,
    expires_in: Option<u64>,
}

impl Reply for DouyinTokenReply {
    type Output = AccessToken;
    fn errcode(&self) -> i64 {
        self.data.as_ref().map_or(0, |d| d.error_code)
    }
    fn into_result(self) -> Result<AccessToken, WechatError> {
        let data = self.data.ok_or(WechatError::BadReply)?;
        match data.error_code {
            0 => token_of(data.access_token, data.expires_in),
            10002 | 10003 | 10013 => Err(WechatError::BadCredentials(data.error_code)),
            10020 => Err(WechatError::RateLimited),
            other => Err(WechatError::Other(other)),
        }
    }
}

/// Douyin's `get_phonenumber_info` reply: `{err_no, err_tips, log_id, data: "<base64>"}`, with
/// the open API's codes: 28001003 and 28001008 an invalid or expired token, 28001007 a bad
/// parameter and 28005187 an expired code (both the client's code: a new tap gives a new
/// one), 28001005 busy, 28003018 its rate limit.
#[derive(Deserialize)]
pub(super) struct DouyinPhoneReply {
    #[serde(default)]
    err_no: i64,
    data: Option<String>,
}

impl Reply for DouyinPhoneReply {
    type Output = String;
    fn errcode(&self) -> i64 {
        self.err_no
    }
    fn into_result(self) -> Result<String, WechatError> {
        match self.err_no {
            0 => self
                .data
                .filter(|d| !d.is_empty())
                .ok_or(WechatError::BadReply),
            28001003 | 28001008 => Err(WechatError::AccessTokenInvalid(self.err_no)),
            28001007 | 28005187 => Err(WechatError::InvalidCode),
            28001005 => Err(WechatError::Busy),
            28003018 => Err(WechatError::RateLimited),
            other => Err(WechatError::Other(other)),
        }
    }
}

/// Reads Douyin's `get_phonenumber_info` and token replies as the client does.
pub fn parse_douyin_phone(body: &[u8]) -> Result<String, WechatError> {
    parse::<DouyinPhoneReply>(body)
}

pub fn parse_douyin_token(body: &[u8]) -> Result<AccessToken, WechatError> {
    parse::<DouyinTokenReply>(body)
}

#[derive(Deserialize)]
pub(super) struct PhoneReply {
    #[serde(default)]
    errcode: i64,
    phone_info: Option<PhoneInfo>,
}

impl Reply for PhoneReply {
    type Output = PhoneInfo;
    fn errcode(&self) -> i64 {
        self.errcode
    }
    fn into_result(self) -> Result<PhoneInfo, WechatError> {
        check(self.errcode)?;
        self.phone_info.ok_or(WechatError::BadReply)
    }
}

/// `checksession`: 0 means the session_key is current, 87009 that it is not; both are answers.
#[derive(Deserialize)]
pub(super) struct CheckSessionReply {
    #[serde(default)]
    errcode: i64,
}

impl Reply for CheckSessionReply {
    type Output = bool;
    fn errcode(&self) -> i64 {
        self.errcode
    }
    fn into_result(self) -> Result<bool, WechatError> {
        match self.errcode {
            0 => Ok(true),
            87009 => Ok(false),
            code => Err(WechatError::from_errcode(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qq_reply_is_read_with_qqs_errcodes_and_an_empty_openid_is_no_user() {
        let ok =
            parse_qq_code2session(br#"{"openid":"o1","session_key":"c2s=","unionid":""}"#).unwrap();
        assert_eq!(ok.openid.0, "o1");
        assert!(ok.unionid.is_none());
        assert_eq!(
            parse_qq_code2session(br#"{"errcode":40001,"errmsg":"invalid secret"}"#).unwrap_err(),
            WechatError::BadCredentials(40001)
        );
        assert_eq!(
            parse_qq_code2session(
                br#"{"errcode":-1009,"errmsg":"","openid":"","session_key":"","uin":""}"#
            )
            .unwrap_err(),
            WechatError::Other(-1009)
        );
        assert_eq!(
            parse_qq_code2session(br#"{"errcode":0,"openid":"","session_key":""}"#).unwrap_err(),
            WechatError::BadReply
        );
    }

    #[test]
    fn baidus_replies_in_each_of_its_error_shapes() {
        let ok = parse_baidu_code2session(br#"{"openid":"b1","session_key":"a2V5"}"#).unwrap();
        assert_eq!(ok.openid.0, "b1");
        for (body, want) in [
            (
                &br#"{"error":"invalid_grant","error_description":"Invalid authorization code"}"#[..],
                WechatError::InvalidCode,
            ),
            (
                br#"{"error":"invalid_client","error_description":"unknown client id"}"#,
                WechatError::BadCredentials(0),
            ),
            (
                br#"{"errno":10010100,"error":"parameter is invalid","error_description":"x"}"#,
                WechatError::BadCredentials(10010100),
            ),
            (br#"{"error":"slow_down"}"#, WechatError::Other(0)),
            (
                br#"{"error_code":110,"error_msg":"Access token invalid"}"#,
                WechatError::Other(110),
            ),
            (br#"{"openid":"","session_key":""}"#, WechatError::BadReply),
        ] {
            assert_eq!(parse_baidu_code2session(body).unwrap_err(), want);
        }
    }

    #[test]
    fn douyins_err_no() {
        let ok = parse_douyin_code2session(
            br#"{"err_no":0,"err_tips":"success","data":{"session_key":"a2V5","openid":"d1","anonymous_openid":"","unionid":"u1"}}"#,
        )
        .unwrap();
        assert_eq!(
            (ok.openid.0.as_str(), ok.unionid.map(|u| u.0)),
            ("d1", Some("u1".into()))
        );
        assert!(ok.takes_over.is_none());
        // An anonymous_code alone: the anonymous identity, no session_key, no unionid.
        let anonymous = parse_douyin_code2session(
            br#"{"err_no":0,"err_tips":"success","data":{"session_key":"","openid":"","anonymous_openid":"a1","unionid":""}}"#,
        )
        .unwrap();
        assert_eq!(anonymous.openid.0, "anon:a1");
        assert!(anonymous.session_key.expose().is_empty() && anonymous.unionid.is_none());
        // Both codes: the signed-in identity, taking over the anonymous one.
        let both = parse_douyin_code2session(
            br#"{"err_no":0,"data":{"session_key":"a2V5","openid":"d1","anonymous_openid":"a1","unionid":""}}"#,
        )
        .unwrap();
        assert_eq!(
            (both.openid.0.as_str(), both.takes_over.map(|a| a.0)),
            ("d1", Some("anon:a1".into()))
        );
        for (body, want) in [
            (
                &br#"{"err_no":40018,"err_tips":"bad code"}"#[..],
                WechatError::InvalidCode,
            ),
            (
                br#"{"err_no":40017,"err_tips":"bad secret"}"#,
                WechatError::BadCredentials(40017),
            ),
            (
                br#"{"err_no":-1,"err_tips":"system error"}"#,
                WechatError::Busy,
            ),
            (
                br#"{"err_no":0,"data":{"openid":"","session_key":""}}"#,
                WechatError::BadReply,
            ),
            (br#"{"err_no":0}"#, WechatError::BadReply),
            // An openid with no session_key is no user, anonymous_openid or not.
            (
                br#"{"err_no":0,"data":{"openid":"d1","session_key":"","anonymous_openid":"a1"}}"#,
                WechatError::BadReply,
            ),
        ] {
            assert_eq!(parse_douyin_code2session(body).unwrap_err(), want);
        }
    }

    #[test]
    fn kuaishous_result_codes() {
        let ok =
            parse_kuaishou_code2session(br#"{"result":1,"open_id":"k1","session_key":"a2V5"}"#)
                .unwrap();
        assert_eq!(ok.openid.0, "k1");
        for (body, want) in [
            (
                &br#"{"result":100200105,"error":"invalid_grant","error_msg":"x"}"#[..],
                WechatError::InvalidCode,
            ),
            (
                br#"{"result":100200101}"#,
                WechatError::BadCredentials(100200101),
            ),
            (br#"{"result":100200500}"#, WechatError::Busy),
            (br#"{"result":7}"#, WechatError::Other(7)),
            (br#"{"result":1,"open_id":""}"#, WechatError::BadReply),
            (
                br#"{"open_id":"k1","session_key":"a2V5"}"#,
                WechatError::BadReply,
            ),
        ] {
            assert_eq!(parse_kuaishou_code2session(body).unwrap_err(), want);
        }
    }
}

/// An Alipay gateway reply, kept as the text it arrived as: Alipay signs the bytes of one of
/// its members, so nothing is read from it before the signature is checked
/// ([`alipay_login`]) — except an `error_response`, which can only fail a login.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct AlipayGatewayReply(Box<serde_json::value::RawValue>);

/// A gateway reply's signed member and its signature, not yet verified.
pub(super) struct AlipaySigned {
    text: String,
    sign: Option<String>,
}

#[derive(Deserialize)]
struct AlipayError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    sub_code: String,
}

impl AlipayError {
    /// Alipay's gateway codes (`code`, `sub_code`) on the §2 table.
    fn into_error(self) -> WechatError {
        let number = self.code.parse().unwrap_or(0);
        match (self.code.as_str(), self.sub_code.as_str()) {
            // A code that is unknown, expired, used, or another app's.
            (_, "isv.code-invalid") => WechatError::InvalidCode,
            // "Service Currently Unavailable": worth the one retry.
            ("20000", _) => WechatError::Busy,
            // Missing or wrong app id, signature, timestamp; no permission for the method.
            ("40001" | "40006", _)
            | (_, "isv.invalid-app-id" | "isv.invalid-signature" | "isv.invalid-timestamp") => {
                WechatError::BadCredentials(number)
            }
            _ => WechatError::Other(number),
        }
    }
}

impl Reply for AlipayGatewayReply {
    type Output = AlipaySigned;
    fn errcode(&self) -> i64 {
        0
    }
    fn into_result(self) -> Result<AlipaySigned, WechatError> {
        let reply = alipay::signed_reply(self.0.get(), alipay::OAUTH_TOKEN_RESPONSE)
            .ok_or(WechatError::BadReply)?;
        if reply.member == "error_response" {
            let error: AlipayError =
                serde_json::from_str(reply.text).map_err(|_| WechatError::BadReply)?;
            return Err(error.into_error());
        }
        Ok(AlipaySigned {
            text: reply.text.to_owned(),
            sign: reply.sign,
        })
    }
}

#[derive(Deserialize)]
struct AlipayOauthToken {
    user_id: Option<String>,
    open_id: Option<String>,
    union_id: Option<String>,
}

/// A verified `alipay.system.oauth.token` reply as a login: the app's `open_id` (an app in
/// Alipay's open_id mode) or else its `user_id` (the older mode) is the openid, and with both
/// the user_id identity is taken over; `union_id` (an app in an app group) the unionid. Alipay
/// has no session_key: it is left empty.
pub(super) fn alipay_login(
    signed: &AlipaySigned,
    alipay_public_key: &[u8],
) -> Result<Code2Session, WechatError> {
    let verified = signed
        .sign
        .as_deref()
        .is_some_and(|sign| alipay::verify(alipay_public_key, signed.text.as_bytes(), sign));
    if !verified {
        return Err(WechatError::BadSignature);
    }
    let token: AlipayOauthToken =
        serde_json::from_str(&signed.text).map_err(|_| WechatError::BadReply)?;
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (open_id, user_id) = (non_empty(token.open_id), non_empty(token.user_id));
    // Both: an app in Alipay's move from user_id to open_id; the user_id identity, if the
    // app has one, becomes the open_id one.
    let takes_over = match (&open_id, &user_id) {
        (Some(open_id), Some(user_id)) if open_id != user_id => Some(OpenId(user_id.clone())),
        _ => None,
    };
    let openid = open_id.or(user_id).ok_or(WechatError::BadReply)?;
    Ok(Code2Session {
        openid: OpenId(openid),
        session_key: SessionKey::new(String::new()),
        unionid: non_empty(token.union_id).map(UnionId),
        takes_over,
    })
}

/// Reads an Alipay gateway reply body as the client does, verifying it with Alipay's public
/// key (RSAPublicKey DER).
pub fn parse_alipay_oauth_token(
    body: &[u8],
    alipay_public_key: &[u8],
) -> Result<Code2Session, WechatError> {
    let signed = parse::<AlipayGatewayReply>(body)?;
    alipay_login(&signed, alipay_public_key)
}
