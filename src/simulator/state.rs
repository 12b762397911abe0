//! The simulator's memory: apps, issued codes, test users' session keys, call counts, faults.

use super::faults::Fault;
use crate::clock::{Millis, SharedClock};
use crate::domain::Platform;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// Codes expire after 5 minutes, as WeChat's do.
pub(super) const CODE_TTL_MS: Millis = 5 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct SimApp {
    pub platform: Platform,
    pub appid: String,
    pub secret: String,
}

impl std::str::FromStr for SimApp {
    type Err = String;

    /// `[PLATFORM/]APPID:SECRET`, as given to `--app` (`weixin` when no platform is named).
    fn from_str(s: &str) -> Result<Self, String> {
        // A platform comes before the appid: a '/' after the ':' is the secret's own.
        let (platform, rest) = match s.split_once('/').filter(|(p, _)| !p.contains(':')) {
            Some((p, rest)) => (
                Platform::parse(p)
                    .ok_or_else(|| format!("unknown platform {p:?}: one of {}", Platform::NAMES))?,
                rest,
            ),
            None => (Platform::Weixin, s),
        };
        match rest.split_once(':') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok(Self {
                platform,
                appid: a.into(),
                secret: b.into(),
            }),
            _ => Err("expected [PLATFORM/]APPID:SECRET".into()),
        }
    }
}

struct IssuedCode {
    appid: String,
    /// The test user (a login code) or the device (a Douyin `anonymous_code`).
    user: String,
    anonymous: bool,
    issued_at: Millis,
    used: bool,
}

#[derive(Default)]
pub(super) struct Inner {
    codes: HashMap<String, IssuedCode>,
    /// (appid, user) → current session_key.
    pub(super) session_keys: HashMap<(String, String), String>,
    calls: BTreeMap<String, u64>,
    pub(super) faults: HashMap<String, VecDeque<Fault>>,
    /// appid → (access_token, expires_at).
    pub(super) access_tokens: HashMap<String, (String, Millis)>,
    /// phone code → what it resolves to.
    pub(super) phone_codes: HashMap<String, PhoneCode>,
    /// openid → (appid, user).
    pub(super) openids: HashMap<String, (String, String)>,
    /// Apps not bound to the Open Platform account: their replies carry no unionid.
    pub(super) unbound: std::collections::HashSet<String>,
    /// Alipay apps' content-encryption (AES) keys, which phone numbers are sealed under.
    pub(super) aes_keys: HashMap<String, String>,
    /// Douyin apps' public keys (uploaded to its console), which phone numbers are sealed under.
    pub(super) douyin_keys: HashMap<String, aws_lc_rs::rsa::PublicEncryptingKey>,
    /// Alipay apps not in open_id mode: `user_id` (the older mode) or `both` (moving to it).
    pub(super) alipay_modes: HashMap<String, String>,
}

pub(super) struct PhoneCode {
    pub(super) appid: String,
    pub(super) phone: String,
    pub(super) country_code: serde_json::Value,
    pub(super) issued_at: Millis,
    pub(super) used: bool,
}

pub struct SimState {
    /// Apps can be added and their secrets reset while it runs (`POST /_sim/apps`).
    apps: Mutex<Vec<SimApp>>,
    clock: SharedClock,
    pub(super) inner: Mutex<Inner>,
}

/// What `wx.login()` gives the client, plus what WeChat will give the server for it.
pub struct IssuedLogin {
    pub code: String,
    pub platform: Platform,
    pub appid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: String,
}

pub(super) struct SimUser {
    /// The test user's name.
    pub user: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: String,
}

/// Whether a platform's login reply carries a unionid (Baidu's and Kuaishou's do not).
fn has_unionid(platform: Platform) -> bool {
    matches!(platform, Platform::Weixin | Platform::Qq | Platform::Douyin)
}

pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("OS RNG");
    b
}

/// Stable 28-character ids like WeChat's (`o` + 27 characters).
fn stable_id(prefix: char, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let text = URL_SAFE_NO_PAD.encode(h.finalize());
    format!("{prefix}{}", &text[..27])
}

impl SimState {
    pub fn new(apps: Vec<SimApp>, clock: SharedClock) -> Self {
        Self {
            apps: Mutex::new(apps),
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(super) fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An Alipay member's `user_id`: `2088` and 12 digits, the same for every app.
    pub fn alipay_user_id(user: &str) -> String {
        let digest = Sha256::digest(format!("alipay-user\0{user}").as_bytes());
        let mut n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        let mut digits = String::with_capacity(12);
        for _ in 0..12 {
            digits.push(char::from(b'0' + (n % 10) as u8));
            n /= 10;
        }
        format!("2088{digits}")
    }

    pub fn openid(appid: &str, user: &str) -> String {
        stable_id('o', &["openid", appid, user])
    }

    /// Every simulated app of a platform is bound to one Open Platform account: one unionid per
    /// user and platform (WeChat's and QQ's accounts are not the same).
    pub fn unionid(platform: Platform, user: &str) -> String {
        match platform {
            Platform::Weixin => stable_id('u', &["unionid", user]),
            other => stable_id('u', &["unionid", other.as_str(), user]),
        }
    }

    fn apps(&self) -> std::sync::MutexGuard<'_, Vec<SimApp>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an app, or gives an existing appid this platform and secret (as resetting the
    /// AppSecret on the platform's console does: the old one stops working at once).
    pub fn upsert_app(&self, app: SimApp) {
        let mut apps = self.apps();
        match apps.iter_mut().find(|a| a.appid == app.appid) {
            Some(existing) => *existing = app,
            None => apps.push(app),
        }
    }

    /// Every simulated app's platform and appid, in the order they were added.
    pub fn app_list(&self) -> Vec<(Platform, String)> {
        self.apps()
            .iter()
            .map(|a| (a.platform, a.appid.clone()))
            .collect()
    }

    fn platform_of(&self, appid: &str) -> Platform {
        self.apps()
            .iter()
            .find(|a| a.appid == appid)
            .map_or(Platform::Weixin, |a| a.platform)
    }

    /// An app of `platform` with this secret: another platform's appid is as unknown to this
    /// platform's server as any other.
    pub(super) fn check_credentials(
        &self,
        platform: Platform,
        appid: &str,
        secret: &str,
    ) -> Result<(), (i64, &'static str)> {
        match self
            .apps()
            .iter()
            .find(|a| a.appid == appid && a.platform == platform)
        {
            None => Err((40013, "invalid appid")),
            Some(a) if a.secret != secret => Err((40125, "invalid appsecret")),
            Some(_) => Ok(()),
        }
    }

    /// The app a control request means: the named one (of `platform`, when that is named too),
    /// or the only one of `platform`, or — nothing named — the first.
    pub(super) fn resolve_app(
        &self,
        platform: Option<Platform>,
        appid: Option<&str>,
    ) -> Result<SimApp, String> {
        let of_platform = |a: &&SimApp| platform.is_none_or(|p| a.platform == p);
        let apps = self.apps();
        match appid {
            Some(id) => apps
                .iter()
                .filter(of_platform)
                .find(|a| a.appid == id)
                .cloned()
                .ok_or_else(|| match platform {
                    Some(p) => format!("no {} app {id:?}", p.as_str()),
                    None => format!("unknown appid {id:?}"),
                }),
            // Nothing named: the first app (as `serve --dev` defaults to its first, WeChat's).
            None if platform.is_none() => apps
                .first()
                .cloned()
                .ok_or_else(|| "no app is simulated".into()),
            None => {
                let mut matching = apps.iter().filter(of_platform);
                match (matching.next(), matching.next()) {
                    (Some(app), None) => Ok(app.clone()),
                    (None, _) => Err("no such app is simulated".into()),
                    (Some(_), Some(_)) => Err("several apps are simulated: name the appid".into()),
                }
            }
        }
    }

    /// `wx.login()` (or another platform's) for test user `user`: a fresh code, and a new
    /// session_key for that user.
    pub fn issue_code(
        &self,
        platform: Option<Platform>,
        appid: Option<&str>,
        user: &str,
    ) -> Result<IssuedLogin, String> {
        if user.is_empty() || user.len() > 64 {
            return Err("user must be 1-64 characters".into());
        }
        let app = self.resolve_app(platform, appid)?;
        let (platform, appid) = (app.platform, app.appid.clone());
        let code = hex::encode(random_bytes::<16>());
        // Baidu's open data is AES-192: its session_key has 24 bytes.
        let session_key = match platform {
            Platform::Baidu => STANDARD.encode(random_bytes::<24>()),
            _ => STANDARD.encode(random_bytes::<16>()),
        };
        let mut inner = self.lock();
        inner.codes.insert(
            code.clone(),
            IssuedCode {
                appid: appid.clone(),
                user: user.to_owned(),
                anonymous: false,
                issued_at: self.clock.now_ms(),
                used: false,
            },
        );
        inner
            .session_keys
            .insert((appid.clone(), user.to_owned()), session_key.clone());
        inner
            .openids
            .insert(Self::openid(&appid, user), (appid.clone(), user.to_owned()));
        let bound = !inner.unbound.contains(&appid) && has_unionid(platform);
        Ok(IssuedLogin {
            code,
            openid: Self::openid(&appid, user),
            unionid: bound.then(|| Self::unionid(platform, user)),
            platform,
            appid,
            session_key,
        })
    }

    /// The openid Douyin gives a device not signed in to Douyin (`tt.login()`'s
    /// `anonymousCode`), per app and device.
    pub fn anonymous_openid(appid: &str, device: &str) -> String {
        stable_id('a', &["anonymous", appid, device])
    }

    /// `tt.login()` on a device not signed in to Douyin (or alongside a signed-in user's code):
    /// an `anonymous_code` for `device` and the anonymous openid it resolves to.
    pub fn issue_anonymous_code(
        &self,
        appid: &str,
        device: &str,
    ) -> Result<(String, String), String> {
        if device.is_empty() || device.len() > 64 {
            return Err("device must be 1-64 characters".into());
        }
        let code = hex::encode(random_bytes::<16>());
        self.lock().codes.insert(
            code.clone(),
            IssuedCode {
                appid: appid.to_owned(),
                user: device.to_owned(),
                anonymous: true,
                issued_at: self.clock.now_ms(),
                used: false,
            },
        );
        Ok((code, Self::anonymous_openid(appid, device)))
    }

    /// Whether `code` is a live, unused code of this kind for `appid`.
    fn check_code(
        inner: &Inner,
        now: Millis,
        appid: &str,
        code: &str,
        anonymous: bool,
    ) -> Result<(), (i64, &'static str)> {
        let issued = match inner.codes.get(code) {
            Some(c) if c.appid == appid && c.anonymous == anonymous => c,
            _ => return Err((40029, "invalid code")),
        };
        if issued.used {
            return Err((40163, "code been used"));
        }
        if now - issued.issued_at >= CODE_TTL_MS {
            return Err((40029, "invalid code"));
        }
        Ok(())
    }

    /// Spends a checked code; the test user or device it was issued to.
    fn spend(inner: &mut Inner, code: &str) -> String {
        let issued = inner.codes.get_mut(code).expect("a checked code");
        issued.used = true;
        issued.user.clone()
    }

    fn sim_user(&self, inner: &Inner, appid: &str, user: &str) -> SimUser {
        let session_key = inner
            .session_keys
            .get(&(appid.to_owned(), user.to_owned()))
            .cloned()
            .unwrap_or_default();
        let platform = self.platform_of(appid);
        let bound = !inner.unbound.contains(appid) && has_unionid(platform);
        SimUser {
            user: user.to_owned(),
            openid: Self::openid(appid, user),
            unionid: bound.then(|| Self::unionid(platform, user)),
            session_key,
        }
    }

    pub(super) fn redeem_code(
        &self,
        appid: &str,
        code: &str,
    ) -> Result<SimUser, (i64, &'static str)> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        Self::check_code(&inner, now, appid, code, false)?;
        let user = Self::spend(&mut inner, code);
        Ok(self.sim_user(&inner, appid, &user))
    }

    /// Douyin's exchange of a `code`, an `anonymous_code` or both: both are checked before
    /// either is spent (a bad one spends neither); `Err` says which was bad (`true`: the
    /// anonymous one).
    pub(super) fn redeem_douyin(
        &self,
        appid: &str,
        code: Option<&str>,
        anonymous_code: Option<&str>,
    ) -> Result<(Option<SimUser>, Option<String>), bool> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        if let Some(code) = code {
            Self::check_code(&inner, now, appid, code, false).map_err(|_| false)?;
        }
        if let Some(anonymous) = anonymous_code {
            Self::check_code(&inner, now, appid, anonymous, true).map_err(|_| true)?;
        }
        let user = code.map(|c| {
            let user = Self::spend(&mut inner, c);
            self.sim_user(&inner, appid, &user)
        });
        let anonymous_openid = anonymous_code.map(|c| {
            let device = Self::spend(&mut inner, c);
            Self::anonymous_openid(appid, &device)
        });
        Ok((user, anonymous_openid))
    }

    /// Binds an app to the Open Platform account (its replies carry unionids) or unbinds it.
    pub fn set_bound(&self, appid: &str, bound: bool) {
        let mut inner = self.lock();
        if bound {
            inner.unbound.remove(appid);
        } else {
            inner.unbound.insert(appid.to_owned());
        }
    }

    /// The platform's side of an app's phone key, as set on its console: an Alipay app's AES
    /// key, a Douyin app's public key (given as the app's private or public key).
    pub fn set_phone_key(&self, platform: Platform, appid: &str, key: &str) -> Result<(), String> {
        use crate::wechat::crypto::{alipay, douyin};
        match platform {
            Platform::Alipay if alipay::aes_key(key).is_some() => {
                self.lock()
                    .aes_keys
                    .insert(appid.to_owned(), key.to_owned());
            }
            Platform::Douyin => {
                let public = douyin::public_key_of(key)
                    .or_else(|| {
                        let der = crate::wechat::alipay::pem_or_base64(key)?;
                        aws_lc_rs::rsa::PublicEncryptingKey::from_der(&der).ok()
                    })
                    .ok_or("a Douyin phone key is the app's RSA private or public key")?;
                self.lock().douyin_keys.insert(appid.to_owned(), public);
            }
            _ => return Err(
                "phone_key: an Alipay app's AES key (base64 of 16 bytes) or a Douyin app's RSA key"
                    .into(),
            ),
        }
        Ok(())
    }

    /// The session_key WeChat currently holds for a test user, if any.
    pub fn session_key(&self, appid: &str, user: &str) -> Option<String> {
        self.lock()
            .session_keys
            .get(&(appid.to_owned(), user.to_owned()))
            .cloned()
    }

    pub(super) fn count_call(&self, path: &str) {
        *self.lock().calls.entry(path.to_owned()).or_default() += 1;
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    pub fn reset_calls(&self) {
        self.lock().calls.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_flag_names_its_platform_or_is_wechats() {
        let wx: SimApp = "wxtestapp:testsecret".parse().unwrap();
        assert_eq!(
            (wx.platform, wx.appid.as_str(), wx.secret.as_str()),
            (Platform::Weixin, "wxtestapp", "testsecret")
        );
        let qq: SimApp = "qq/1109000001:qq:secret".parse().unwrap();
        assert_eq!(
            (qq.platform, qq.appid.as_str(), qq.secret.as_str()),
            (Platform::Qq, "1109000001", "qq:secret")
        );
        let slash: SimApp = "wxtestapp:se/cret".parse().unwrap();
        assert_eq!(
            (slash.platform, slash.secret.as_str()),
            (Platform::Weixin, "se/cret")
        );
        for bad in ["line/a:b", "qq/:b", "nosecret", "qq/a:"] {
            assert!(bad.parse::<SimApp>().is_err(), "{bad}");
        }
    }
}
