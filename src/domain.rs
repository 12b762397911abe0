//! Pure domain types, parse-don't-validate. No axum, sqlx or reqwest here, and nothing else of
//! this crate: every other module may depend on this one, and this one on none of them.
//!
//! Every type that carries a credential (`JsCode`, `SessionKey`, `SessionToken`,
//! `AppCredentials`, `SecretUrl`) has a redacting `Debug` and no `Display`, so it cannot end up
//! in a log line or an error message by accident.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;

pub type UserId = i64;

/// Why a piece of client input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub &'static str);

/// A mini program's AppId (`wx` followed by 16 hex characters for real apps; we accept any
/// short ASCII id so test and simulator apps can have readable names).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(String);

impl AppId {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError(
                "appid must be 1-64 ASCII letters, digits, '_' or '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's openid within one app. Not a secret, but personal data: log the user id instead.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct OpenId(pub String);

impl OpenId {
    /// The prefix of an anonymous identity's openid: Douyin's `anonymous_openid` is a different
    /// id space from its openids, so the two can never meet in `(platform, appid, openid)`.
    pub const ANONYMOUS_PREFIX: &'static str = "anon:";

    /// The identity of a Douyin user not signed in to Douyin, from its `anonymous_openid`.
    pub fn anonymous(anonymous_openid: &str) -> Self {
        Self(format!("{}{anonymous_openid}", Self::ANONYMOUS_PREFIX))
    }

    /// A Douyin guest's identity: it has no session_key.
    pub fn is_anonymous(&self) -> bool {
        self.0.starts_with(Self::ANONYMOUS_PREFIX)
    }
}

/// A user's unionid across the apps of one Open Platform account.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct UnionId(pub String);

/// The one-time `code` from `wx.login()`. A credential until WeChat has consumed it.
#[derive(Clone)]
pub struct JsCode(String);

impl JsCode {
    /// Real codes are 32 characters; we allow some slack but refuse anything that could not be one.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseError("code is missing"));
        }
        if s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError("code is not a wx.login() code"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What we store to remember that a code was used: never the code itself.
    pub fn hash(&self, app: &AppId) -> CodeHash {
        self.hash_as(app, 0)
    }

    /// `kind` keeps an `anonymous_code` and a login code with the same text apart.
    fn hash_as(&self, app: &AppId, kind: u8) -> CodeHash {
        let mut h = Sha256::new();
        h.update(app.as_str().as_bytes());
        h.update([kind]);
        h.update(self.0.as_bytes());
        CodeHash(hex::encode(h.finalize()))
    }
}

/// What one login presents: a login code; on Douyin an `anonymous_code` beside it (the
/// device's anonymous identity then becomes the signed-in one) or alone (a user not signed in
/// to Douyin).
#[derive(Clone)]
pub enum LoginCode {
    Code(JsCode),
    Anonymous(JsCode),
    Both { code: JsCode, anonymous: JsCode },
}

impl LoginCode {
    /// `None` when neither was sent.
    pub fn new(code: Option<JsCode>, anonymous: Option<JsCode>) -> Option<Self> {
        match (code, anonymous) {
            (Some(code), Some(anonymous)) => Some(Self::Both { code, anonymous }),
            (Some(code), None) => Some(Self::Code(code)),
            (None, Some(anonymous)) => Some(Self::Anonymous(anonymous)),
            (None, None) => None,
        }
    }

    pub fn code(&self) -> Option<&JsCode> {
        match self {
            Self::Code(c) | Self::Both { code: c, .. } => Some(c),
            Self::Anonymous(_) => None,
        }
    }

    pub fn anonymous(&self) -> Option<&JsCode> {
        match self {
            Self::Anonymous(a) | Self::Both { anonymous: a, .. } => Some(a),
            Self::Code(_) => None,
        }
    }

    /// The name under which this login is spent once: its login code's, or the
    /// `anonymous_code`'s when it has no login code.
    pub fn hash(&self, app: &AppId) -> CodeHash {
        match self {
            Self::Code(c) | Self::Both { code: c, .. } => c.hash(app),
            Self::Anonymous(a) => a.hash_as(app, 1),
        }
    }
}

/// SHA-256 hex of an app's id and a `wx.login()` code: the one name under which a code is
/// remembered as used (the `used_codes.code_hash` column, the in-flight map, the Redis lock).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CodeHash(pub String);

impl CodeHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for JsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsCode([redacted])")
    }
}

/// WeChat's `session_key` (base64 of 16 bytes). Never leaves the server.
#[derive(Clone)]
pub struct SessionKey(SecretString);

impl SessionKey {
    pub fn new(s: String) -> Self {
        Self(SecretString::from(s))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

/// The prefix of every token we mint, so a leaked token is easy to grep for (and to revoke).
pub const TOKEN_PREFIX: &str = "wxl_";
const TOKEN_BYTES: usize = 32;
const TOKEN_LEN: usize = 4 + 43; // prefix + base64url(32 bytes) without padding

/// An opaque bearer token: 256 bits from the OS CSPRNG. Only its hash is ever stored.
#[derive(Clone)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Parses what a client sent. Anything that is not one of our tokens is refused here, before
    /// it costs a store lookup.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(TOKEN_PREFIX)?;
        let ok = s.len() == TOKEN_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// SHA-256 of a token, hex. A fast hash is right here: the token has 256 bits of entropy, so
/// there is nothing for a slow password hash to protect, and the check runs on every request.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TokenHash(pub String);

/// One mini program's credentials: what a platform exchange needs, and nothing else.
#[derive(Clone)]
pub struct AppCredentials {
    pub platform: Platform,
    pub appid: AppId,
    /// The AppSecret; on Alipay, the app's RSA private key (PEM or base64).
    pub secret: SecretString,
    /// Alipay's public key (base64 or PEM SubjectPublicKeyInfo), which its replies are verified
    /// with; `None` on the other platforms.
    pub alipay_public_key: Option<String>,
    /// The key phone numbers are opened with, when configured: an Alipay app's
    /// content-encryption key (接口内容加密方式, base64 of 16 bytes), or a Douyin app's RSA private
    /// key (whose public half is on Douyin's console). `None` on the other platforms.
    pub phone_key: Option<SecretString>,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("platform", &self.platform)
            .field("appid", &self.appid)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// The super-app a mini program runs in. Every
/// identity and session is keyed by platform, and an app belongs to one platform, so a code
/// from one platform can never log in to another platform's app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Weixin,
    Qq,
    /// Douyin (ByteDance's `tt`).
    Douyin,
    /// Baidu smart programs (swan).
    Baidu,
    Kuaishou,
    /// Alipay (`my`): no session_key; its replies are RSA2-signed.
    Alipay,
}

impl Platform {
    /// The names `[[apps]] platform` takes.
    pub const NAMES: &'static str = "weixin, qq, douyin, baidu, kuaishou, alipay";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weixin => "weixin",
            Self::Qq => "qq",
            Self::Douyin => "douyin",
            Self::Baidu => "baidu",
            Self::Kuaishou => "kuaishou",
            Self::Alipay => "alipay",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "weixin" => Some(Self::Weixin),
            "qq" => Some(Self::Qq),
            "douyin" => Some(Self::Douyin),
            "baidu" => Some(Self::Baidu),
            "kuaishou" => Some(Self::Kuaishou),
            "alipay" => Some(Self::Alipay),
            _ => None,
        }
    }

    /// Whether the platform has WeChat's server APIs behind an access_token (the phone number,
    /// checkSession): only WeChat, so far.
    pub fn has_wechat_open_api(self) -> bool {
        self == Self::Weixin
    }

    /// How the platform seals open data (`encryptedData` + `iv`) for the server.
    pub fn open_data(self) -> OpenDataScheme {
        match self {
            // Douyin's and QQ's documentation describe WeChat's scheme, watermark included.
            Self::Weixin | Self::Qq | Self::Douyin => OpenDataScheme::Aes128 { watermark: true },
            // Kuaishou's describes the same cipher and signature, and no watermark.
            Self::Kuaishou => OpenDataScheme::Aes128 { watermark: false },
            Self::Baidu => OpenDataScheme::Baidu,
            // Alipay gives no session_key; its phone number is sealed with the console's AES key.
            Self::Alipay => OpenDataScheme::None,
        }
    }
}

/// A platform's open-data format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenDataScheme {
    /// WeChat's: AES-128-CBC under the session_key, PKCS#7, JSON plaintext (whose
    /// `watermark.appid` is checked when the platform writes one); `rawData` signed as
    /// `sha1(rawData + session_key)`.
    Aes128 { watermark: bool },
    /// Baidu's: AES-192-CBC, 16 random bytes + a 4-byte big-endian length + the JSON + the
    /// AppKey (checked), padded to 32-byte blocks; no watermark, no rawData signature.
    Baidu,
    /// Nothing a session's key opens (Alipay).
    None,
}

/// Where a user's account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    /// Sessions revoked; logins refused with `banned` until unbanned.
    Banned,
    /// Erased on the user's request; only the id and the time remain, never reused.
    Deleted,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Banned => "banned",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "banned" => Some(Self::Banned),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// WeChat's `<input type="nickname">` default: never a name a person chose.
pub const PLACEHOLDER_NICKNAME: &str = "微信用户";

/// Why a nickname was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicknameError {
    /// Empty or over 32 characters after trimming.
    Length,
    /// WeChat's placeholder, which the nickname input fills in by itself.
    Placeholder,
}

/// A nickname: 1–32 characters (not bytes) after trimming, no control characters, never
/// WeChat's placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nickname(String);

impl Nickname {
    pub fn parse(s: &str) -> Result<Self, NicknameError> {
        let s = s.trim();
        let n = s.chars().count();
        if n == 0 || n > 32 || s.chars().any(char::is_control) {
            return Err(NicknameError::Length);
        }
        if s == PLACEHOLDER_NICKNAME {
            return Err(NicknameError::Placeholder);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a request tells about its client, kept with a session and an event: the address and
/// the user agent (capped, so a client cannot make us store a megabyte).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Who made an admin change: `admin:<label>` of the admin token used; `None` for the user
    /// or wxlogin itself.
    pub actor: Option<String>,
}

impl ClientInfo {
    pub const MAX_USER_AGENT: usize = 256;

    pub fn new(ip: Option<String>, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent
            .map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(Self::MAX_USER_AGENT)
                    .collect::<String>()
            })
            .filter(|ua| !ua.is_empty());
        Self {
            ip,
            user_agent,
            actor: None,
        }
    }
}

/// `WXLOGIN_ADMIN_TOKEN`: one token, or several `label:token` pairs separated by commas, so
/// each operator (or tool) has a token of their own and the event log says who did what. A
/// token alone is labelled `admin`.
#[derive(Clone)]
pub struct AdminTokens(Vec<(String, SecretString)>);

impl AdminTokens {
    pub const MIN_TOKEN_LEN: usize = 16;

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens: Vec<(String, SecretString)> = Vec::new();
        for entry in text.split(',') {
            // Requests' tokens are trimmed, so a token with spaces at either end could never
            // match: refuse it rather than lock the operator out.
            if entry != entry.trim() || entry.is_empty() {
                return Err("an entry is empty or starts or ends with spaces".into());
            }
            let (label, token) = match entry.split_once(':') {
                Some((label, token)) => (label, token),
                None => ("admin", entry),
            };
            let label_ok = !label.is_empty()
                && label.len() <= 32
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !label_ok {
                return Err(
                    "a label must be 1 to 32 letters, digits, '-', '_' or '.' (label:token)".into(),
                );
            }
            if token.len() < Self::MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
                return Err("each token must be at least 16 characters, without spaces".into());
            }
            if tokens.iter().any(|(l, _)| l == label) {
                return Err(format!("the label {label:?} is given twice"));
            }
            if tokens.iter().any(|(_, t)| t.expose_secret() == token) {
                return Err("a token is given twice".into());
            }
            tokens.push((label.to_owned(), SecretString::from(token.to_owned())));
        }
        Ok(Self(tokens))
    }

    /// The label of the token `given` is, compared in constant time with every token (by their
    /// SHA-256, so not even the length of a token shows in the time taken).
    pub fn label_of(&self, given: &str) -> Option<&str> {
        use subtle::ConstantTimeEq;
        let given = Sha256::digest(given.as_bytes());
        let mut found = None;
        for (label, token) in &self.0 {
            let token = Sha256::digest(token.expose_secret().as_bytes());
            let same: bool = given.as_slice().ct_eq(token.as_slice()).into();
            if same {
                found = Some(label.as_str());
            }
        }
        found
    }

    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(l, _)| l.as_str())
    }

    /// The first token: what the `wxlogin admin` command sends.
    pub fn first(&self) -> &SecretString {
        &self.0[0].1
    }
}

impl fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.labels()).finish()
    }
}

/// The image formats an avatar may have, told by their magic bytes (never by a client's label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Png,
    Jpeg,
    Webp,
}

impl ImageKind {
    /// Largest avatar accepted: `<button open-type="chooseAvatar">` hands over a small image.
    pub const MAX_AVATAR_BYTES: usize = 256 * 1024;

    /// The format of an image, from its bytes: the signature and the container's own framing
    /// (PNG: an `IHDR` first and an `IEND` last; JPEG: SOI … EOI; WebP: a RIFF size that is the
    /// file's and a VP8 chunk), so a valid header on garbage is refused too.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
        const PNG_IHDR: &[u8] = b"\0\0\0\x0dIHDR";
        const PNG_IEND: &[u8] = b"\0\0\0\0IEND\xae\x42\x60\x82";
        if bytes.starts_with(PNG_SIGNATURE) {
            let framed = bytes.len() >= 8 + 25 + 12
                && bytes[8..].starts_with(PNG_IHDR)
                && bytes.ends_with(PNG_IEND);
            return framed.then_some(Self::Png);
        }
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return (bytes.len() >= 6 && bytes.ends_with(&[0xFF, 0xD9])).then_some(Self::Jpeg);
        }
        if bytes.len() >= 20 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            let size = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
            let chunk = &bytes[12..16];
            let framed = size + 8 == bytes.len()
                && (chunk == b"VP8 " || chunk == b"VP8L" || chunk == b"VP8X");
            return framed.then_some(Self::Webp);
        }
        None
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    pub fn from_extension(ext: &str) -> Option<Self> {
        [Self::Png, Self::Jpeg, Self::Webp]
            .into_iter()
            .find(|k| k.extension() == ext)
    }
}

/// The account events (SPEC §6), as stored in `events.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Login,
    LoginFailed,
    Logout,
    SessionRevoked,
    PhoneBound,
    ProfileUpdated,
    UserCreated,
    UserBanned,
    UserUnbanned,
    UserMerged,
    UserDeleted,
}

impl EventType {
    pub const ALL: [Self; 11] = [
        Self::Login,
        Self::LoginFailed,
        Self::Logout,
        Self::SessionRevoked,
        Self::PhoneBound,
        Self::ProfileUpdated,
        Self::UserCreated,
        Self::UserBanned,
        Self::UserUnbanned,
        Self::UserMerged,
        Self::UserDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::Logout => "logout",
            Self::SessionRevoked => "session_revoked",
            Self::PhoneBound => "phone_bound",
            Self::ProfileUpdated => "profile_updated",
            Self::UserCreated => "user_created",
            Self::UserBanned => "user_banned",
            Self::UserUnbanned => "user_unbanned",
            Self::UserMerged => "user_merged",
            Self::UserDeleted => "user_deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The events a business backend is told of by webhook (`WXLOGIN_WEBHOOK_URL`).
    pub fn is_webhook(self) -> bool {
        matches!(
            self,
            Self::UserCreated
                | Self::UserBanned
                | Self::UserUnbanned
                | Self::UserMerged
                | Self::UserDeleted
        )
    }
}

/// A connection URL (database, Redis) that may hold a password. `Debug` masks it.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(s: impl Into<String>) -> Self {
        Self(SecretString::from(s.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with any password replaced — in the user-info part, and in a `password=` (or
    /// `pass=`, `pwd=`, `secret=`) query parameter, as libpq accepts — fit for logs and
    /// `check-config`.
    pub fn redacted(&self) -> String {
        // `redis+cluster://[user:password@]host:port,host:port` is not one URL: keep the hosts.
        if let Some(nodes) = self.expose().strip_prefix("redis+cluster://") {
            return match nodes.rsplit_once('@') {
                Some((_, hosts)) => format!("redis+cluster://[redacted]@{hosts}"),
                None => self.expose().to_owned(),
            };
        }
        let Ok(mut u) = url::Url::parse(self.expose()) else {
            return "[unparseable url]".to_owned();
        };
        if u.password().is_some() {
            let _ = u.set_password(Some("[redacted]"));
        }
        let secret = |k: &str| {
            ["password", "pass", "pwd", "secret"]
                .iter()
                .any(|s| k.eq_ignore_ascii_case(s))
        };
        if u.query_pairs().any(|(k, _)| secret(&k)) {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if secret(&k) {
                        "[redacted]".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        u.to_string()
    }
}

impl SecretUrl {
    /// Scheme, host, port and path only: no user-info and no query, either of which may hold a
    /// credential under any name (a webhook URL's `?token=`).
    pub fn without_credentials(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(u) => format!(
                "{}://{}{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default(),
                u.path()
            ),
            Err(_) => "[unparseable url]".into(),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A rate limit: `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRule {
    pub limit: u64,
    pub window: std::time::Duration,
}

impl RateRule {
    /// `"120/1m"`, `"10/30s"`, or `"off"` (→ `None`).
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (n, w) = text
            .split_once('/')
            .ok_or("expected COUNT/WINDOW like 120/1m, or off")?;
        let limit: u64 = n
            .trim()
            .parse()
            .map_err(|_| "COUNT must be a whole number")?;
        let window =
            humantime::parse_duration(w.trim()).map_err(|_| "WINDOW must be a duration like 1m")?;
        if limit == 0 || window.is_zero() {
            return Err("COUNT and WINDOW must be above zero".into());
        }
        Ok(Some(Self { limit, window }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_code_is_spent_under_its_code_and_an_anonymous_code_apart() {
        let app = AppId::parse("tt0123456789abcdef").unwrap();
        let (a, b) = (
            JsCode::parse("aaaa").unwrap(),
            JsCode::parse("bbbb").unwrap(),
        );
        assert!(LoginCode::new(None, None).is_none());
        let code = LoginCode::new(Some(a.clone()), None).unwrap();
        let both = LoginCode::new(Some(a.clone()), Some(b.clone())).unwrap();
        let alone = LoginCode::new(None, Some(a.clone())).unwrap();
        assert_eq!(code.hash(&app), a.hash(&app));
        assert_eq!(
            both.hash(&app),
            a.hash(&app),
            "both: spent as the login code"
        );
        assert_eq!(both.anonymous().map(JsCode::expose), Some("bbbb"));
        assert!(alone.code().is_none());
        // The same text as an anonymous_code is not the same spent code as a login code.
        assert_ne!(alone.hash(&app), a.hash(&app));
        assert_eq!(OpenId::anonymous("x").0, "anon:x");
        assert!(OpenId::anonymous("x").is_anonymous());
        assert!(!OpenId("oX".into()).is_anonymous());
    }

    #[test]
    fn generated_tokens_parse_back_and_are_unique() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        assert!(a.expose().starts_with("wxl_"));
        assert_eq!(a.expose().len(), TOKEN_LEN);
        assert!(SessionToken::parse(a.expose()).is_some());
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn malformed_tokens_are_refused_without_a_lookup() {
        for bad in [
            "",
            "wxl_",
            "abc",
            "wxl_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            "Bearer x",
        ] {
            assert!(SessionToken::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_of_credentials_is_redacted() {
        let t = SessionToken::generate();
        let c = JsCode::parse("0a1b2c3d").unwrap();
        let k = SessionKey::new("tiihtNczf5v6AKRyjwEUhQ==".into());
        let all = format!("{t:?} {c:?} {k:?}");
        assert!(!all.contains(t.expose()));
        assert!(!all.contains("0a1b2c3d"));
        assert!(!all.contains("tiihtNczf5v6AKRyjwEUhQ=="));
    }

    #[test]
    fn code_hash_depends_on_the_app() {
        let c = JsCode::parse("code").unwrap();
        let a = AppId::parse("wxa").unwrap();
        let b = AppId::parse("wxb").unwrap();
        assert_ne!(c.hash(&a), c.hash(&b));
        assert!(!c.hash(&a).0.contains("code"));
    }

    #[test]
    fn nicknames_are_trimmed_bounded_and_never_the_placeholder() {
        assert_eq!(Nickname::parse("  小明 ").unwrap().as_str(), "小明");
        assert_eq!(
            Nickname::parse(&"名".repeat(32))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            32
        );
        assert_eq!(
            Nickname::parse(&"名".repeat(33)),
            Err(NicknameError::Length)
        );
        assert_eq!(Nickname::parse("   "), Err(NicknameError::Length));
        assert_eq!(Nickname::parse("a\u{0}b"), Err(NicknameError::Length));
        assert_eq!(
            Nickname::parse(" 微信用户 "),
            Err(NicknameError::Placeholder)
        );
    }

    /// A 1×1 PNG, a minimal JPEG frame and a minimal WebP container.
    pub(crate) fn sample_images() -> [(ImageKind, Vec<u8>); 3] {
        let png = hex::decode(
            "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489\
             0000000a49444154789c63000100000500010d0a2db40000000049454e44ae426082",
        )
        .unwrap();
        let jpeg = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 0xFF, 0xD9,
        ];
        let mut webp = b"RIFF\0\0\0\0WEBPVP8L\x05\0\0\0\x2f\0\0\0\0\0".to_vec();
        let size = (webp.len() - 8) as u32;
        webp[4..8].copy_from_slice(&size.to_le_bytes());
        [
            (ImageKind::Png, png),
            (ImageKind::Jpeg, jpeg),
            (ImageKind::Webp, webp),
        ]
    }

    #[test]
    fn images_are_told_by_their_bytes_and_framing() {
        for (kind, bytes) in sample_images() {
            assert_eq!(ImageKind::sniff(&bytes), Some(kind));
            // The right signature on garbage, or cut short, is no image.
            let mut garbage = bytes[..8].to_vec();
            garbage.extend_from_slice(&[0x42; 64]);
            assert_eq!(
                ImageKind::sniff(&garbage),
                None,
                "{kind:?} header on garbage"
            );
            assert_eq!(
                ImageKind::sniff(&bytes[..bytes.len() - 2]),
                None,
                "{kind:?} cut short"
            );
        }
        for bad in [
            &b"GIF89a\x01\0\x01\0\0\0\0;"[..],
            b"",
            b"\x89PNG",
            b"<svg/>",
        ] {
            assert_eq!(ImageKind::sniff(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn event_types_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("nope"), None);
    }

    #[test]
    fn rules_parse() {
        assert_eq!(RateRule::parse("off").unwrap(), None);
        assert_eq!(
            RateRule::parse("120/1m").unwrap(),
            Some(RateRule {
                limit: 120,
                window: std::time::Duration::from_secs(60)
            })
        );
        for bad in ["", "120", "x/1m", "0/1m", "5/0s", "5/soon"] {
            assert!(RateRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_and_oversized_codes_are_refused() {
        assert!(JsCode::parse("").is_err());
        assert!(JsCode::parse("   ").is_err());
        assert!(JsCode::parse(&"x".repeat(129)).is_err());
        assert!(JsCode::parse("has space").is_err());
    }
}
