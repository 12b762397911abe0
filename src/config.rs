//! Typed settings: `wxlogin.toml` (or the file in `WXLOGIN_CONFIG`), overridden by `WXLOGIN_*`
//! environment variables; `*_FILE` variants read a secret from a file. Secrets are held in
//! [`SecretString`] and print as `[redacted]`. Errors name the key or variable to fix.
//! Depends only on the domain types.

use crate::domain::AppId;
use crate::ratelimit::Rule;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://./wxlogin-data/wxlogin.db";
pub const DEFAULT_WECHAT_API_BASE: &str = "https://api.weixin.qq.com";
/// Filling it grew RSS by about 16 MB in the benchmark (docs/benchmarks.md).
pub const DEFAULT_SESSION_CACHE_SIZE: usize = 20_000;

/// Every variable we read. Anything else starting with `WXLOGIN_` earns a warning (usually a typo).
const KNOWN_VARS: &[&str] = &[
    "WXLOGIN_CONFIG",
    "WXLOGIN_LISTEN",
    "WXLOGIN_APPID",
    "WXLOGIN_SECRET",
    "WXLOGIN_SECRET_FILE",
    "WXLOGIN_DATABASE_URL",
    "WXLOGIN_DATABASE_URL_FILE",
    "WXLOGIN_REDIS_URL",
    "WXLOGIN_REDIS_URL_FILE",
    "WXLOGIN_REDIS_PREFIX",
    "WXLOGIN_WECHAT_API_BASE",
    "WXLOGIN_WECHAT_TIMEOUT",
    "WXLOGIN_ADMIN_TOKEN",
    "WXLOGIN_ADMIN_TOKEN_FILE",
    "WXLOGIN_SESSION_IDLE_TIMEOUT",
    "WXLOGIN_SESSION_MAX_LIFETIME",
    "WXLOGIN_SESSION_CACHE_SIZE",
    "WXLOGIN_LOG_FORMAT",
    "WXLOGIN_RATE_LIMIT_LOGIN",
    "WXLOGIN_RATE_LIMIT_PHONE",
    "WXLOGIN_TRUSTED_PROXIES",
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

/// One mini program's credentials.
#[derive(Clone)]
pub struct AppConfig {
    pub appid: AppId,
    pub secret: SecretString,
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("appid", &self.appid)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// A connection URL whose `Debug` masks the password.
#[derive(Clone)]
pub struct ConnUrl(SecretString);

impl ConnUrl {
    pub fn new(s: impl Into<String>) -> Self {
        Self(SecretString::from(s.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with any password replaced, fit for logs and `check-config`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("[redacted]"));
                u.to_string()
            }
            Ok(u) => u.to_string(),
            Err(_) => "[unparseable url]".to_owned(),
        }
    }
}

impl fmt::Debug for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
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
    pub apps: Vec<AppConfig>,
    pub database_url: ConnUrl,
    pub redis_url: Option<ConnUrl>,
    /// Prefix of every Redis key, so several deployments (or test runs) can share one Redis.
    pub redis_prefix: String,
    pub wechat_api_base: url::Url,
    /// Total budget for one WeChat exchange, the retry included.
    pub wechat_timeout: Duration,
    pub admin_token: Option<SecretString>,
    pub session_idle_timeout: Duration,
    pub session_max_lifetime: Duration,
    /// Sessions (and as many users) kept in memory in front of a single-node store; 0 = none.
    pub session_cache_size: usize,
    pub log_format: LogFormat,
    /// Per client IP on `/login`; `None` = off.
    pub rate_limit_login: Option<Rule>,
    /// Per session on `/phone`; `None` = off.
    pub rate_limit_phone: Option<Rule>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The file's shape. Every field is optional: env vars and defaults fill the rest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<String>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    wechat_api_base: Option<String>,
    wechat_timeout: Option<String>,
    admin_token: Option<String>,
    admin_token_file: Option<PathBuf>,
    log_format: Option<String>,
    rate_limit_login: Option<String>,
    rate_limit_phone: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    #[serde(default)]
    session: FileSession,
    #[serde(default)]
    apps: Vec<FileApp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSession {
    idle_timeout: Option<String>,
    max_lifetime: Option<String>,
    cache_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApp {
    appid: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
}

impl Config {
    /// Loads from the process environment and the config file it points at.
    pub fn from_env() -> Result<(Self, Vec<String>), ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load(&env)
    }

    /// Loads from an explicit environment map (so tests never touch the process environment).
    /// Returns the config and warnings (unknown `WXLOGIN_*` variables).
    pub fn load(env: &HashMap<String, String>) -> Result<(Self, Vec<String>), ConfigError> {
        let warnings = env
            .keys()
            .filter(|k| k.starts_with("WXLOGIN_") && !KNOWN_VARS.contains(&k.as_str()))
            .map(|k| format!("unknown environment variable {k} is ignored (typo?)"))
            .collect();
        let file = read_file(env)?;
        let get = |var: &str| env.get(var).filter(|v| !v.is_empty()).cloned();

        let listen_text = get("WXLOGIN_LISTEN")
            .or(file.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:8000".into());
        let listen = listen_text
            .parse()
            .map_err(|_| invalid("WXLOGIN_LISTEN", "expected an address like 127.0.0.1:8000"))?;

        let database_url = secret_var(env, "WXLOGIN_DATABASE_URL")?
            .or(file.database_url.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
            return Err(invalid(
                "WXLOGIN_DATABASE_URL",
                "must start with sqlite:// or postgres://",
            ));
        }
        let redis_url = secret_var(env, "WXLOGIN_REDIS_URL")?.or(file.redis_url.clone());
        if let Some(r) = &redis_url {
            if !(r.starts_with("redis://") || r.starts_with("rediss://")) {
                return Err(invalid("WXLOGIN_REDIS_URL", "must start with redis://"));
            }
        }

        let redis_prefix = get("WXLOGIN_REDIS_PREFIX")
            .or(file.redis_prefix.clone())
            .unwrap_or_else(|| "wxlogin:".into());

        let base_text = get("WXLOGIN_WECHAT_API_BASE")
            .or(file.wechat_api_base.clone())
            .unwrap_or_else(|| DEFAULT_WECHAT_API_BASE.into());
        let wechat_api_base = url::Url::parse(&base_text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| invalid("WXLOGIN_WECHAT_API_BASE", "expected an http(s) URL"))?;

        let duration = |var: &str, from_file: &Option<String>, default: &str| {
            let text = get(var)
                .or(from_file.clone())
                .unwrap_or_else(|| default.into());
            humantime::parse_duration(&text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    invalid(
                        var,
                        format!("expected a duration like 5s or 7d, got {text:?}"),
                    )
                })
        };
        let wechat_timeout = duration("WXLOGIN_WECHAT_TIMEOUT", &file.wechat_timeout, "5s")?;
        let session_idle_timeout = duration(
            "WXLOGIN_SESSION_IDLE_TIMEOUT",
            &file.session.idle_timeout,
            "7d",
        )?;
        let session_max_lifetime = duration(
            "WXLOGIN_SESSION_MAX_LIFETIME",
            &file.session.max_lifetime,
            "30d",
        )?;

        let session_cache_size = match get("WXLOGIN_SESSION_CACHE_SIZE") {
            Some(text) => text.parse().map_err(|_| {
                invalid(
                    "WXLOGIN_SESSION_CACHE_SIZE",
                    format!("expected a number of sessions (0 = no cache), got {text:?}"),
                )
            })?,
            None => file
                .session
                .cache_size
                .unwrap_or(DEFAULT_SESSION_CACHE_SIZE),
        };

        let admin_token = match secret_var(env, "WXLOGIN_ADMIN_TOKEN")? {
            Some(t) => Some(t),
            None => match (&file.admin_token, &file.admin_token_file) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(p)) => Some(read_secret("admin_token_file", p)?),
                (None, None) => None,
            },
        };
        if let Some(t) = &admin_token {
            if t.len() < 16 {
                return Err(invalid(
                    "WXLOGIN_ADMIN_TOKEN",
                    "must be at least 16 characters",
                ));
            }
        }

        let log_format = match get("WXLOGIN_LOG_FORMAT")
            .or(file.log_format.clone())
            .as_deref()
        {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(invalid("WXLOGIN_LOG_FORMAT", "expected human or json")),
        };

        let rule = |var: &str, from_file: &Option<String>, default: &str| {
            let text = get(var)
                .or(from_file.clone())
                .unwrap_or_else(|| default.into());
            Rule::parse(&text).map_err(|why| invalid(var, why))
        };
        let rate_limit_login = rule("WXLOGIN_RATE_LIMIT_LOGIN", &file.rate_limit_login, "120/1m")?;
        let rate_limit_phone = rule("WXLOGIN_RATE_LIMIT_PHONE", &file.rate_limit_phone, "10/1m")?;
        let proxies: Vec<String> = match get("WXLOGIN_TRUSTED_PROXIES") {
            Some(text) => text
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => file.trusted_proxies.clone().unwrap_or_default(),
        };
        let trusted_proxies = proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "WXLOGIN_TRUSTED_PROXIES",
                            format!("{p:?} is not an IP or CIDR"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let apps = apps(env, &file)?;
        let config = Config {
            listen,
            apps,
            database_url: ConnUrl::new(database_url),
            redis_url: redis_url.map(ConnUrl::new),
            redis_prefix,
            wechat_api_base,
            wechat_timeout,
            admin_token: admin_token.map(SecretString::from),
            session_idle_timeout,
            session_max_lifetime,
            session_cache_size,
            log_format,
            rate_limit_login,
            rate_limit_phone,
            trusted_proxies,
        };
        Ok((config, warnings))
    }

    /// What `check-config` prints: every value, every secret redacted.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k} = {v}\n"));
        line("listen", self.listen.to_string());
        line("database_url", self.database_url.redacted());
        line(
            "redis_url",
            self.redis_url
                .as_ref()
                .map_or("(unset)".into(), |r| r.redacted()),
        );
        line("wechat_api_base", self.wechat_api_base.to_string());
        line(
            "wechat_timeout",
            humantime::format_duration(self.wechat_timeout).to_string(),
        );
        line(
            "session.idle_timeout",
            humantime::format_duration(self.session_idle_timeout).to_string(),
        );
        line(
            "session.max_lifetime",
            humantime::format_duration(self.session_max_lifetime).to_string(),
        );
        line("session.cache_size", self.session_cache_size.to_string());
        line(
            "admin_token",
            if self.admin_token.is_some() {
                "[redacted] (admin API on)"
            } else {
                "(unset, admin API off)"
            }
            .into(),
        );
        line(
            "log_format",
            format!("{:?}", self.log_format).to_lowercase(),
        );
        for app in &self.apps {
            line("apps", format!("{} (secret [redacted])", app.appid));
        }
        out
    }
}

fn read_file(env: &HashMap<String, String>) -> Result<FileConfig, ConfigError> {
    let (path, required) = match env.get("WXLOGIN_CONFIG") {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from("wxlogin.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileConfig::default())
        }
        Err(e) => {
            return Err(ConfigError::File {
                path,
                reason: e.to_string(),
            })
        }
    };
    // toml's messages quote the offending line, which may hold a secret: keep only the position.
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path,
        reason: match e.span() {
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
        },
    })
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

fn read_secret(key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    let text = text.trim_end_matches(['\n', '\r']).to_owned();
    if text.is_empty() {
        return Err(invalid(key, format!("{} is empty", path.display())));
    }
    Ok(text)
}

fn apps(env: &HashMap<String, String>, file: &FileConfig) -> Result<Vec<AppConfig>, ConfigError> {
    let mut apps = Vec::new();
    for (i, a) in file.apps.iter().enumerate() {
        let key = format!("apps[{i}]");
        let appid = AppId::parse(&a.appid).map_err(|e| invalid(&format!("{key}.appid"), e.0))?;
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
        if apps.iter().any(|x: &AppConfig| x.appid == appid) {
            return Err(invalid(&format!("{key}.appid"), "appears twice"));
        }
        apps.push(AppConfig {
            appid,
            secret: SecretString::from(secret),
        });
    }
    let env_appid = env.get("WXLOGIN_APPID").filter(|v| !v.is_empty());
    let env_secret = secret_var(env, "WXLOGIN_SECRET")?;
    match (env_appid, env_secret) {
        (Some(id), secret) => {
            let appid = AppId::parse(id).map_err(|e| invalid("WXLOGIN_APPID", e.0))?;
            let from_file = apps
                .iter()
                .find(|a| a.appid == appid)
                .map(|a| a.secret.clone());
            let secret = match (secret, from_file) {
                (Some(s), _) => SecretString::from(s),
                (None, Some(s)) => s,
                (None, None) => {
                    return Err(invalid(
                        "WXLOGIN_SECRET",
                        "WXLOGIN_APPID is set: set WXLOGIN_SECRET or WXLOGIN_SECRET_FILE too",
                    ))
                }
            };
            // The environment names the one app to serve, replacing the file's list.
            Ok(vec![AppConfig { appid, secret }])
        }
        (None, Some(_)) => Err(invalid(
            "WXLOGIN_APPID",
            "WXLOGIN_SECRET is set: set WXLOGIN_APPID too",
        )),
        (None, None) => Ok(apps),
    }
}

#[cfg(test)]
mod tests;
