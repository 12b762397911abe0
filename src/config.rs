//! Typed settings: `wxlogin.toml` (or the file in `WXLOGIN_CONFIG`), overridden by `WXLOGIN_*`
//! environment variables; secrets also from `*_FILE` variants. Every setting is one row of the
//! table in `config/settings.rs`, from which loading, the unknown-variable warnings and
//! `check-config` are derived. Secrets are held in [`SecretString`] (or a URL type that masks
//! its password) and print as `[redacted]`. Errors name the key or variable to fix.
//! Depends on the domain types and the store's URL type only.

mod settings;

use crate::domain::{AppCredentials, AppId, Platform, RateRule, SecretUrl};
use crate::store::DatabaseUrl;
#[cfg(test)]
use secrecy::ExposeSecret;
use secrecy::SecretString;
use settings::SETTINGS;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://./wxlogin-data/wxlogin.db";
pub const DEFAULT_WECHAT_API_BASE: &str = "https://api.weixin.qq.com";
pub const DEFAULT_QQ_API_BASE: &str = "https://api.q.qq.com";
pub const DEFAULT_DOUYIN_API_BASE: &str = "https://developer.toutiao.com";
pub const DEFAULT_DOUYIN_OPEN_API_BASE: &str = "https://open.douyin.com";
pub const DEFAULT_BAIDU_OPEN_API_BASE: &str = "https://openapi.baidu.com";
pub const DEFAULT_BAIDU_API_BASE: &str = "https://spapi.baidu.com";
pub const DEFAULT_KUAISHOU_API_BASE: &str = "https://open.kuaishou.com";
/// Alipay's gateway (`/gateway.do` under it).
pub const DEFAULT_ALIPAY_API_BASE: &str = "https://openapi.alipay.com";
/// Filling it grew RSS by about 16 MB in the benchmark (docs/benchmarks.md).
pub const DEFAULT_SESSION_CACHE_SIZE: usize = 20_000;

/// Variables read outside the settings table: the config file's path and the one-app pair.
const OTHER_VARS: &[&str] = &[
    "WXLOGIN_CONFIG",
    "WXLOGIN_APPID",
    "WXLOGIN_SECRET",
    "WXLOGIN_SECRET_FILE",
    "WXLOGIN_PLATFORM",
    "WXLOGIN_ALIPAY_PUBLIC_KEY",
    "WXLOGIN_ALIPAY_PUBLIC_KEY_FILE",
    "WXLOGIN_ALIPAY_AES_KEY",
    "WXLOGIN_ALIPAY_AES_KEY_FILE",
    "WXLOGIN_DOUYIN_PRIVATE_KEY",
    "WXLOGIN_DOUYIN_PRIVATE_KEY_FILE",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("cannot read the config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where the operator routes (`/admin…`, `/metrics`) are served instead, if set.
    pub admin_listen: Option<SocketAddr>,
    /// Until a request's headers are in.
    pub header_timeout: Duration,
    /// Until a whole request is in and handled.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub keepalive_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    pub apps: Vec<AppCredentials>,
    /// The app a login that names none is for (clients written for one app send no appid).
    pub default_appid: Option<crate::domain::AppId>,
    pub database_url: DatabaseUrl,
    pub redis_url: Option<SecretUrl>,
    /// Prefix of every Redis key, so several deployments (or test runs) can share one Redis.
    pub redis_prefix: String,
    pub wechat_api_base: url::Url,
    /// QQ's server API (its `jscode2session`), for `platform = "qq"` apps.
    pub qq_api_base: url::Url,
    /// Douyin's (its `jscode2session`), for `platform = "douyin"` apps.
    pub douyin_api_base: url::Url,
    /// Douyin's open API (`open.douyin.com`: its client_token and phone numbers).
    pub douyin_open_api_base: url::Url,
    /// Baidu's (its `jscode2sessionkey`), for `platform = "baidu"` apps.
    pub baidu_api_base: url::Url,
    /// Baidu's open API (`openapi.baidu.com`: its OAuth token).
    pub baidu_open_api_base: url::Url,
    /// Kuaishou's (its `code2session`), for `platform = "kuaishou"` apps.
    pub kuaishou_api_base: url::Url,
    /// Alipay's gateway, for `platform = "alipay"` apps.
    pub alipay_api_base: url::Url,
    /// Total budget for one WeChat exchange, the retry included.
    pub wechat_timeout: Duration,
    /// `WXLOGIN_ADMIN_TOKEN`: the admin API is on when set.
    pub admin_tokens: Option<crate::domain::AdminTokens>,
    /// Where webhooks go (`None`: off), signed with `webhook_secret`.
    pub webhook_url: Option<SecretUrl>,
    pub webhook_secret: Option<SecretString>,
    /// One delivery attempt.
    pub webhook_timeout: Duration,
    /// How long a webhook is retried before it is marked dead.
    pub webhook_retry_for: Duration,
    /// Seals session keys and phone numbers at rest (base64 of 32 bytes, validated).
    pub data_key: Option<SecretString>,
    /// The previous data key, during a rotation.
    pub data_key_old: Option<SecretString>,
    pub session_idle_timeout: Duration,
    pub session_max_lifetime: Duration,
    /// Sessions (and as many users) kept in memory: in front of a single-node store, or on
    /// PostgreSQL + Redis (`coord/session_memory.rs`, `services/user_cache.rs`); 0 = none.
    pub session_cache_size: usize,
    pub log_format: LogFormat,
    /// Per client IP on `/login`; `None` = off.
    pub rate_limit_login: Option<RateRule>,
    /// Per session on `/phone`; `None` = off.
    pub rate_limit_phone: Option<RateRule>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A new identity whose unionid another user of the platform has joins that user.
    pub link_by_unionid: bool,
    /// Live sessions per user; a login beyond it revokes the oldest.
    pub max_sessions_per_user: u32,
    /// How long account events are kept.
    pub event_retention: Duration,
    /// How long a bound phone number is answered again without WeChat's paid API; `None`: never.
    pub phone_reuse: Option<Duration>,
    /// The URL clients reach this service at (no trailing slash), for absolute avatar URLs.
    pub public_url: Option<String>,
}

impl Config {
    /// The vault the data keys make; `None` without `WXLOGIN_DATA_KEY`.
    pub fn vault(&self) -> Option<crate::vault::Vault> {
        let parse = |k: &SecretString| {
            crate::vault::Vault::parse_key(secrecy::ExposeSecret::expose_secret(k)).ok()
        };
        let current = parse(self.data_key.as_ref()?)?;
        let old = self.data_key_old.as_ref().and_then(parse);
        Some(crate::vault::Vault::new(&current, old.as_ref()))
    }

    /// The value every field has before the table's defaults are applied.
    fn blank() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            admin_listen: None,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            apps: Vec::new(),
            database_url: DatabaseUrl::parse(DEFAULT_DATABASE_URL).expect("the default parses"),
            redis_url: None,
            redis_prefix: String::new(),
            wechat_api_base: url::Url::parse(DEFAULT_WECHAT_API_BASE).expect("the default parses"),
            qq_api_base: url::Url::parse(DEFAULT_QQ_API_BASE).expect("the default parses"),
            douyin_api_base: url::Url::parse(DEFAULT_DOUYIN_API_BASE).expect("the default parses"),
            douyin_open_api_base: url::Url::parse(DEFAULT_DOUYIN_OPEN_API_BASE)
                .expect("the default parses"),
            baidu_open_api_base: url::Url::parse(DEFAULT_BAIDU_OPEN_API_BASE)
                .expect("the default parses"),
            baidu_api_base: url::Url::parse(DEFAULT_BAIDU_API_BASE).expect("the default parses"),
            kuaishou_api_base: url::Url::parse(DEFAULT_KUAISHOU_API_BASE)
                .expect("the default parses"),
            alipay_api_base: url::Url::parse(DEFAULT_ALIPAY_API_BASE).expect("the default parses"),
            wechat_timeout: Duration::from_secs(5),
            admin_tokens: None,
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: Duration::from_secs(10),
            webhook_retry_for: Duration::from_secs(86400),
            data_key: None,
            data_key_old: None,
            session_idle_timeout: Duration::from_secs(7 * 86400),
            session_max_lifetime: Duration::from_secs(30 * 86400),
            session_cache_size: DEFAULT_SESSION_CACHE_SIZE,
            log_format: LogFormat::Human,
            rate_limit_login: None,
            rate_limit_phone: None,
            trusted_proxies: Vec::new(),
            link_by_unionid: true,
            max_sessions_per_user: 10,
            event_retention: Duration::from_secs(180 * 86400),
            phone_reuse: None,
            public_url: None,
            default_appid: None,
        }
    }

    /// Loads from the process environment and the config file it points at.
    pub fn from_env() -> Result<(Self, Vec<String>), ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load(&env)
    }

    /// Loads from an explicit environment map (so tests never touch the process environment).
    /// Returns the config and warnings (unknown `WXLOGIN_*` variables).
    pub fn load(env: &HashMap<String, String>) -> Result<(Self, Vec<String>), ConfigError> {
        let known = |k: &str| {
            OTHER_VARS.contains(&k)
                || SETTINGS
                    .iter()
                    .any(|s| k == s.env || (s.secret && k.strip_suffix("_FILE") == Some(s.env)))
        };
        let warnings = env
            .keys()
            .filter(|k| k.starts_with("WXLOGIN_") && !known(k))
            .map(|k| format!("unknown environment variable {k} is ignored (typo?)"))
            .collect();
        let (file_values, file_apps) = read_file(env)?;
        let mut config = Self::blank();
        for s in SETTINGS {
            let from_env = if s.secret {
                secret_var(env, s.env)?
            } else {
                env.get(s.env).filter(|v| !v.is_empty()).cloned()
            };
            let value = match from_env {
                Some(v) => Some(v),
                None => file_value(&file_values, s)?,
            };
            if let Some(value) = value.as_deref().or(s.default) {
                (s.set)(&mut config, value).map_err(|why| invalid(s.env, why))?;
            }
        }
        config.apps = apps(env, &file_apps)?;
        if config.webhook_url.is_some() && config.webhook_secret.is_none() {
            return Err(invalid(
                "WXLOGIN_WEBHOOK_SECRET",
                "required with WXLOGIN_WEBHOOK_URL (receivers check the signature with it)",
            ));
        }
        Ok((config, warnings))
    }

    /// What `check-config` prints: every setting of the table, every secret redacted.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for s in SETTINGS {
            out.push_str(&format!("{} = {}\n", s.key, (s.show)(self)));
        }
        for app in &self.apps {
            out.push_str(&format!(
                "apps = {} ({}, secret [redacted])\n",
                app.appid,
                app.platform.as_str()
            ));
        }
        out
    }
}

/// A setting's value in the file: its key, or for a secret its `key_file` (a file to read).
fn file_value(
    file: &BTreeMap<String, String>,
    s: &settings::Setting,
) -> Result<Option<String>, ConfigError> {
    if let Some(v) = file.get(s.key) {
        return Ok(Some(v.clone()));
    }
    let file_key = format!("{}_file", s.key);
    match file.get(&file_key) {
        Some(path) if s.secret => read_secret(&file_key, Path::new(path)).map(Some),
        _ => Ok(None),
    }
}

/// One `[[apps]]` table of the file. No `Debug`: its fields hold secrets and keys in plain
/// text.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApp {
    /// `weixin` when absent.
    platform: Option<String>,
    appid: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    /// Alipay apps: Alipay's public key.
    alipay_public_key: Option<String>,
    alipay_public_key_file: Option<PathBuf>,
    /// Alipay apps: the content-encryption (AES) key, for phone numbers.
    alipay_aes_key: Option<String>,
    alipay_aes_key_file: Option<PathBuf>,
    /// Douyin apps: the app's RSA private key, for phone numbers.
    douyin_private_key: Option<String>,
    douyin_private_key_file: Option<PathBuf>,
}

/// The file as flat `key → text` pairs (`section.name` inside a section; a list joined with
/// commas), plus its `[[apps]]`. A key the table does not know is an error naming it.
fn read_file(
    env: &HashMap<String, String>,
) -> Result<(BTreeMap<String, String>, Vec<FileApp>), ConfigError> {
    let (path, required) = match env.get("WXLOGIN_CONFIG") {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from("wxlogin.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Default::default())
        }
        Err(e) => {
            return Err(ConfigError::File {
                path,
                reason: e.to_string(),
            })
        }
    };
    let file_error = |reason: String| ConfigError::File {
        path: path.clone(),
        reason,
    };
    // toml's messages quote the offending line, which may hold a secret: keep only the position.
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        file_error(match e.span() {
            Some(span) => format!(
                "invalid TOML near byte {} ({})",
                span.start,
                e.message()
                    .split('`')
                    .next()
                    .unwrap_or("syntax error")
                    .trim()
            ),
            None => "invalid TOML".into(),
        })
    })?;
    let mut values = BTreeMap::new();
    let mut apps = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Array(list) if key == "apps" => {
                for app in list {
                    apps.push(app.try_into::<FileApp>().map_err(|_| {
                        file_error(
                            "each [[apps]] takes appid, secret or secret_file, optionally platform, and for \
                             Alipay alipay_public_key or alipay_public_key_file and alipay_aes_key or \
                             alipay_aes_key_file, for Douyin douyin_private_key or douyin_private_key_file"
                                .into(),
                        )
                    })?);
                }
            }
            toml::Value::Table(section) => {
                for (name, value) in section {
                    values.insert(
                        format!("{key}.{name}"),
                        file_text(&format!("{key}.{name}"), value)?,
                    );
                }
            }
            value => {
                let text = file_text(&key, value)?;
                values.insert(key, text);
            }
        }
    }
    let known = |k: &str| {
        SETTINGS
            .iter()
            .any(|s| k == s.key || (s.secret && k.strip_suffix("_file") == Some(s.key)))
    };
    if let Some(unknown) = values.keys().find(|k| !known(k)) {
        return Err(file_error(format!("unknown key `{unknown}`")));
    }
    Ok((values, apps))
}

/// A file value as the text the table parses: strings as they are, numbers and booleans
/// printed, a list of strings joined with commas.
fn file_text(key: &str, value: toml::Value) -> Result<String, ConfigError> {
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Array(list) => list
            .into_iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s),
                _ => Err(invalid(key, "expected a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|l| l.join(",")),
        _ => Err(invalid(key, "expected a string, a number or a list")),
    }
}

/// `VAR` or the contents of the file named by `VAR_FILE` (trailing newline trimmed).
fn secret_var(env: &HashMap<String, String>, var: &str) -> Result<Option<String>, ConfigError> {
    let file_var = format!("{var}_FILE");
    match (env.get(var).filter(|v| !v.is_empty()), env.get(&file_var)) {
        (Some(_), Some(_)) => Err(invalid(var, format!("set {var} or {file_var}, not both"))),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(p)) => read_secret(&file_var, Path::new(p)).map(Some),
        (None, None) => Ok(None),
    }
}

/// `[[apps]]`'s `name` or `name_file` (read), or neither; both is an error naming `name`.
fn value_or_file(
    app: &str,
    name: &str,
    value: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    match (value, file) {
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(p)) => read_secret(&format!("{app}.{name}_file"), p).map(Some),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(invalid(
            &format!("{app}.{name}"),
            format!("set {name} or {name}_file, not both"),
        )),
    }
}

fn read_secret(key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    let text = text.trim_end_matches(['\n', '\r']).to_owned();
    if text.is_empty() {
        return Err(invalid(key, format!("{} is empty", path.display())));
    }
    Ok(text)
}

fn apps(
    env: &HashMap<String, String>,
    file: &[FileApp],
) -> Result<Vec<AppCredentials>, ConfigError> {
    let mut apps = Vec::new();
    for (i, a) in file.iter().enumerate() {
        let key = format!("apps[{i}]");
        let appid = AppId::parse(&a.appid).map_err(|e| invalid(&format!("{key}.appid"), e.0))?;
        let platform = match a.platform.as_deref() {
            None => Platform::Weixin,
            Some(p) => Platform::parse(p).ok_or_else(|| {
                invalid(
                    &format!("{key}.platform"),
                    format!("expected one of {}", Platform::NAMES),
                )
            })?,
        };
        let secret = match (&a.secret, &a.secret_file) {
            (Some(s), None) if !s.is_empty() => s.clone(),
            (None, Some(p)) => read_secret(&format!("{key}.secret_file"), p)?,
            _ => {
                return Err(invalid(
                    &format!("{key}.secret"),
                    "set exactly one of secret or secret_file",
                ))
            }
        };
        if apps.iter().any(|x: &AppCredentials| x.appid == appid) {
            return Err(invalid(&format!("{key}.appid"), "appears twice"));
        }
        let public_key = value_or_file(
            &key,
            "alipay_public_key",
            &a.alipay_public_key,
            &a.alipay_public_key_file,
        )?;
        let aes_key = value_or_file(
            &key,
            "alipay_aes_key",
            &a.alipay_aes_key,
            &a.alipay_aes_key_file,
        )?;
        let douyin_key = value_or_file(
            &key,
            "douyin_private_key",
            &a.douyin_private_key,
            &a.douyin_private_key_file,
        )?;
        let (phone_key_name, phone_key) = match (aes_key, douyin_key) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &format!("{key}.alipay_aes_key"),
                    "set alipay_aes_key (Alipay) or douyin_private_key (Douyin), not both",
                ))
            }
            (None, Some(k)) => ("douyin_private_key", Some(k)),
            (aes, None) => ("alipay_aes_key", aes),
        };
        apps.push(checked_app(
            (
                &format!("{key}.secret"),
                &format!("{key}.alipay_public_key"),
                &format!("{key}.{phone_key_name}"),
            ),
            AppCredentials {
                platform,
                appid,
                secret: SecretString::from(secret),
                alipay_public_key: public_key,
                phone_key: phone_key.map(SecretString::from),
            },
        )?);
    }
    let env_appid = env.get("WXLOGIN_APPID").filter(|v| !v.is_empty());
    let env_secret = secret_var(env, "WXLOGIN_SECRET")?;
    match (env_appid, env_secret) {
        (Some(id), secret) => {
            let appid = AppId::parse(id).map_err(|e| invalid("WXLOGIN_APPID", e.0))?;
            let from_file = apps.iter().find(|a| a.appid == appid);
            let platform = match env.get("WXLOGIN_PLATFORM").filter(|v| !v.is_empty()) {
                Some(p) => Platform::parse(p).ok_or_else(|| {
                    invalid(
                        "WXLOGIN_PLATFORM",
                        format!("expected one of {}", Platform::NAMES),
                    )
                })?,
                None => from_file.map_or(Platform::Weixin, |a| a.platform),
            };
            let secret = match (secret, from_file.map(|a| a.secret.clone())) {
                (Some(s), _) => SecretString::from(s),
                (None, Some(s)) => s,
                (None, None) => {
                    return Err(invalid(
                        "WXLOGIN_SECRET",
                        "WXLOGIN_APPID is set: set WXLOGIN_SECRET or WXLOGIN_SECRET_FILE too",
                    ))
                }
            };
            let public_key = match secret_var(env, "WXLOGIN_ALIPAY_PUBLIC_KEY")? {
                Some(k) => Some(k),
                None => from_file.and_then(|a| a.alipay_public_key.clone()),
            };
            let (phone_key_name, phone_key) = match (
                secret_var(env, "WXLOGIN_ALIPAY_AES_KEY")?,
                secret_var(env, "WXLOGIN_DOUYIN_PRIVATE_KEY")?,
            ) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "WXLOGIN_ALIPAY_AES_KEY",
                        "set WXLOGIN_ALIPAY_AES_KEY (Alipay) or WXLOGIN_DOUYIN_PRIVATE_KEY (Douyin), not both",
                    ))
                }
                (None, Some(k)) => ("WXLOGIN_DOUYIN_PRIVATE_KEY", Some(SecretString::from(k))),
                (Some(k), None) => ("WXLOGIN_ALIPAY_AES_KEY", Some(SecretString::from(k))),
                (None, None) => (
                    "WXLOGIN_ALIPAY_AES_KEY",
                    from_file.and_then(|a| a.phone_key.clone()),
                ),
            };
            // The environment names the one app to serve, replacing the file's list.
            Ok(vec![checked_app(
                (
                    "WXLOGIN_SECRET",
                    "WXLOGIN_ALIPAY_PUBLIC_KEY",
                    phone_key_name,
                ),
                AppCredentials {
                    platform,
                    appid,
                    secret,
                    alipay_public_key: public_key,
                    phone_key,
                },
            )?])
        }
        (None, Some(_)) => Err(invalid(
            "WXLOGIN_APPID",
            "WXLOGIN_SECRET is set: set WXLOGIN_APPID too",
        )),
        (None, None) => Ok(apps),
    }
}

/// An Alipay app's keys must be usable (its secret is its RSA private key, and Alipay's public
/// key verifies its replies); no other platform takes an Alipay public key.
/// A phone key must be usable by the app's platform (an Alipay AES key, a Douyin private key).
/// `keys`: the names of the secret's, the public key's and the phone key's settings, for the
/// errors.
fn checked_app(
    keys: (&str, &str, &str),
    app: AppCredentials,
) -> Result<AppCredentials, ConfigError> {
    use crate::wechat::alipay;
    let (secret_key, public_key, phone_key) = keys;
    if let Some(key) = &app.phone_key {
        crate::wechat::crypto::check_phone_key(
            app.platform,
            secrecy::ExposeSecret::expose_secret(key),
        )
        .map_err(|why| invalid(phone_key, why))?;
    }
    match (app.platform, &app.alipay_public_key) {
        (Platform::Alipay, Some(public)) => {
            alipay::private_key(secrecy::ExposeSecret::expose_secret(&app.secret))
                .map_err(|e| invalid(secret_key, e.0))?;
            alipay::public_key(public).map_err(|e| invalid(public_key, e.0))?;
        }
        (Platform::Alipay, None) => return Err(invalid(
            public_key,
            "an Alipay app needs Alipay's public key (alipay_public_key or alipay_public_key_file)",
        )),
        (_, Some(_)) => {
            return Err(invalid(
                public_key,
                "only an Alipay app takes an Alipay public key",
            ))
        }
        (_, None) => {}
    }
    Ok(app)
}

#[cfg(test)]
mod tests;
