//! The table of settings. A new setting is one row here: its file key, environment variable,
//! default, whether it is a secret (then it also takes `VAR_FILE` / `key_file`, and prints
//! redacted), how to parse it into [`Config`] and how to print it. Loading, the unknown-variable
//! warnings and `check-config` are all read off this table, so none of them can miss one.
//! (The mini programs themselves — `[[apps]]`, `WXLOGIN_APPID`, `WXLOGIN_SECRET` — are a list,
//! not a value, and are read in `config.rs`.)

use super::{Config, LogFormat};
use crate::domain::{AdminTokens, RateRule, SecretUrl};
use crate::store::DatabaseUrl;
use secrecy::SecretString;

pub(super) struct Setting {
    /// The key in `wxlogin.toml`; `section.name` for a key inside `[section]`.
    pub(super) key: &'static str,
    pub(super) env: &'static str,
    /// Applied when neither the environment nor the file sets it; `None`: stays unset.
    pub(super) default: Option<&'static str>,
    pub(super) secret: bool,
    pub(super) set: fn(&mut Config, &str) -> Result<(), String>,
    pub(super) show: fn(&Config) -> String,
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("expected a duration like 5s or 7d, got {text:?}"))
}

fn show_duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn show_rule(rule: Option<RateRule>) -> String {
    match rule {
        Some(r) => format!("{}/{}", r.limit, show_duration(r.window)),
        None => "off".into(),
    }
}

/// The id a data key is known by (never the key).
fn key_id(key: &SecretString) -> String {
    use secrecy::ExposeSecret;
    crate::vault::Vault::parse_key(key.expose_secret())
        .map(|k| crate::vault::Vault::new(&k, None).key_id().to_owned())
        .unwrap_or_else(|_| "?".into())
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn redis_url(text: &str) -> Result<SecretUrl, String> {
    if text.starts_with("redis://") || text.starts_with("rediss://") {
        Ok(SecretUrl::new(text))
    } else if let Some(nodes) = text.strip_prefix("redis+cluster://") {
        let hosts = nodes.rsplit_once('@').map_or(nodes, |(_, h)| h);
        if hosts
            .split(',')
            .all(|h| h.contains(':') && !h.contains('/'))
        {
            Ok(SecretUrl::new(text))
        } else {
            Err("a cluster is redis+cluster://host:port,host:port,…".into())
        }
    } else {
        Err("must start with redis:// (or redis+cluster:// for a Redis Cluster)".into())
    }
}

pub(super) const SETTINGS: &[Setting] = &[
    Setting {
        key: "listen",
        env: "WXLOGIN_LISTEN",
        default: Some("127.0.0.1:8000"),
        secret: false,
        set: |c, v| {
            c.listen = v
                .parse()
                .map_err(|_| "expected an address like 127.0.0.1:8000".to_owned())?;
            Ok(())
        },
        show: |c| c.listen.to_string(),
    },
    Setting {
        key: "admin_listen",
        env: "WXLOGIN_ADMIN_LISTEN",
        default: None,
        secret: false,
        set: |c, v| {
            c.admin_listen = Some(
                v.parse()
                    .map_err(|_| "expected an address like 127.0.0.1:8001".to_owned())?,
            );
            Ok(())
        },
        show: |c| match c.admin_listen {
            Some(a) => a.to_string(),
            None => "(none: operator routes on listen)".into(),
        },
    },
    Setting {
        key: "http.header_timeout",
        env: "WXLOGIN_HEADER_TIMEOUT",
        default: Some("10s"),
        secret: false,
        set: |c, v| {
            c.header_timeout = duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.header_timeout),
    },
    Setting {
        key: "http.request_timeout",
        env: "WXLOGIN_REQUEST_TIMEOUT",
        default: Some("30s"),
        secret: false,
        set: |c, v| {
            c.request_timeout = duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.request_timeout),
    },
    Setting {
        key: "http.keepalive_timeout",
        env: "WXLOGIN_KEEPALIVE_TIMEOUT",
        default: Some("75s"),
        secret: false,
        set: |c, v| {
            c.keepalive_timeout = duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.keepalive_timeout),
    },
    Setting {
        key: "http.max_connections",
        env: "WXLOGIN_MAX_CONNECTIONS",
        default: Some("10000"),
        secret: false,
        set: |c, v| {
            c.max_connections =
                v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("expected a number of connections above 0, got {v:?}")
                })?;
            Ok(())
        },
        show: |c| c.max_connections.to_string(),
    },
    Setting {
        key: "database_url",
        env: "WXLOGIN_DATABASE_URL",
        default: Some(super::DEFAULT_DATABASE_URL),
        secret: true,
        set: |c, v| {
            c.database_url = DatabaseUrl::parse(v)?;
            Ok(())
        },
        show: |c| c.database_url.redacted(),
    },
    Setting {
        key: "redis_url",
        env: "WXLOGIN_REDIS_URL",
        default: None,
        secret: true,
        set: |c, v| {
            c.redis_url = Some(redis_url(v)?);
            Ok(())
        },
        show: |c| {
            c.redis_url
                .as_ref()
                .map_or("(unset)".into(), |r| r.redacted())
        },
    },
    Setting {
        key: "redis_prefix",
        env: "WXLOGIN_REDIS_PREFIX",
        default: Some("wxlogin:"),
        secret: false,
        set: |c, v| {
            c.redis_prefix = v.to_owned();
            Ok(())
        },
        show: |c| c.redis_prefix.clone(),
    },
    Setting {
        key: "default_appid",
        env: "WXLOGIN_DEFAULT_APPID",
        default: None,
        secret: false,
        set: |c, v| {
            c.default_appid = Some(crate::domain::AppId::parse(v).map_err(|e| e.0)?);
            Ok(())
        },
        show: |c| {
            c.default_appid
                .as_ref()
                .map_or("(unset)".into(), |a| a.to_string())
        },
    },
    Setting {
        key: "wechat_api_base",
        env: "WXLOGIN_WECHAT_API_BASE",
        default: Some(super::DEFAULT_WECHAT_API_BASE),
        secret: false,
        set: |c, v| {
            c.wechat_api_base = api_base(v)?;
            Ok(())
        },
        show: |c| c.wechat_api_base.to_string(),
    },
    Setting {
        key: "qq_api_base",
        env: "WXLOGIN_QQ_API_BASE",
        default: Some(super::DEFAULT_QQ_API_BASE),
        secret: false,
        set: |c, v| {
            c.qq_api_base = api_base(v)?;
            Ok(())
        },
        show: |c| c.qq_api_base.to_string(),
    },
    Setting {
        key: "douyin_api_base",
        env: "WXLOGIN_DOUYIN_API_BASE",
        default: Some(super::DEFAULT_DOUYIN_API_BASE),
        secret: false,
        set: |c, v| {
            c.douyin_api_base = api_base(v)?;
            Ok(())
        },
        show: |c| c.douyin_api_base.to_string(),
    },
    Setting {
        key: "douyin_open_api_base",
        env: "WXLOGIN_DOUYIN_OPEN_API_BASE",
        default: Some(super::DEFAULT_DOUYIN_OPEN_API_BASE),
        secret: false,
        set: |c, v| {
            c.douyin_open_api_base = api_base(v)?;
            Ok(())
        },
        show: |c| c.douyin_open_api_base.to_string(),
    },
    Setting {
        key: "baidu_open_api_base",
        env: "WXLOGIN_BAIDU_OPEN_API_BASE",
        default: Some(super::DEFAULT_BAIDU_OPEN_API_BASE),
        secret: false,
        set: |c, v| {
            c.baidu_open_api_base = api_base(v)?;
            Ok(())
        },
        show: |c| c.baidu_open_api_base.to_string(),
    },
    Setting {
        key: "baidu_api_base",
        env: "WXLOGIN_BAIDU_API_BASE",
        default: Some(super::DEFAULT_BAIDU_API_BASE),
        secret: false,
        set: |c, v| {
            c.baidu_api_base = api_base(v)?;
            Ok(())
        },
        show: |c| c.baidu_api_base.to_string(),
    },
    Setting {
        key: "kuaishou_api_base",
        env: "WXLOGIN_KUAISHOU_API_BASE",
        default: Some(super::DEFAULT_KUAISHOU_API_BASE),
        secret: false,
        set: |c, v| {
            c.kuaishou_api_base = api_base(v)?;
            Ok(())
        },
        show: |c| c.kuaishou_api_base.to_string(),
    },
    Setting {
        key: "alipay_api_base",
        env: "WXLOGIN_ALIPAY_API_BASE",
        default: Some(super::DEFAULT_ALIPAY_API_BASE),
        secret: false,
        set: |c, v| {
            c.alipay_api_base = api_base(v)?;
            Ok(())
        },
        show: |c| c.alipay_api_base.to_string(),
    },
    Setting {
        key: "wechat_timeout",
        env: "WXLOGIN_WECHAT_TIMEOUT",
        default: Some("5s"),
        secret: false,
        set: |c, v| {
            c.wechat_timeout = duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.wechat_timeout),
    },
    Setting {
        key: "session.idle_timeout",
        env: "WXLOGIN_SESSION_IDLE_TIMEOUT",
        default: Some("7d"),
        secret: false,
        set: |c, v| {
            c.session_idle_timeout = duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.session_idle_timeout),
    },
    Setting {
        key: "session.max_lifetime",
        env: "WXLOGIN_SESSION_MAX_LIFETIME",
        default: Some("30d"),
        secret: false,
        set: |c, v| {
            c.session_max_lifetime = duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.session_max_lifetime),
    },
    Setting {
        key: "session.cache_size",
        env: "WXLOGIN_SESSION_CACHE_SIZE",
        default: Some("20000"),
        secret: false,
        set: |c, v| {
            c.session_cache_size = v
                .parse()
                .map_err(|_| format!("expected a number of sessions (0 = no cache), got {v:?}"))?;
            Ok(())
        },
        show: |c| c.session_cache_size.to_string(),
    },
    Setting {
        key: "admin_token",
        env: "WXLOGIN_ADMIN_TOKEN",
        default: None,
        secret: true,
        set: |c, v| {
            c.admin_tokens = Some(AdminTokens::parse(v)?);
            Ok(())
        },
        show: |c| match &c.admin_tokens {
            Some(t) => format!(
                "[redacted] (admin API on; labels: {})",
                t.labels().collect::<Vec<_>>().join(", ")
            ),
            None => "(unset, admin API off)".into(),
        },
    },
    Setting {
        key: "webhook.url",
        env: "WXLOGIN_WEBHOOK_URL",
        default: None,
        secret: true,
        set: |c, v| {
            let url = url::Url::parse(v).map_err(|_| "expected an http(s) URL".to_owned())?;
            if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
                return Err("expected an http(s) URL".into());
            }
            c.webhook_url = Some(SecretUrl::new(v));
            Ok(())
        },
        show: |c| match &c.webhook_url {
            Some(u) => u.without_credentials(),
            None => "(unset, webhooks off)".into(),
        },
    },
    Setting {
        key: "webhook.secret",
        env: "WXLOGIN_WEBHOOK_SECRET",
        default: None,
        secret: true,
        set: |c, v| {
            if v.len() < 16 || v != v.trim() {
                return Err("must be at least 16 characters, without spaces at either end".into());
            }
            c.webhook_secret = Some(SecretString::from(v.to_owned()));
            Ok(())
        },
        show: |c| {
            if c.webhook_secret.is_some() {
                "[redacted]"
            } else {
                "(unset)"
            }
            .into()
        },
    },
    Setting {
        key: "webhook.timeout",
        env: "WXLOGIN_WEBHOOK_TIMEOUT",
        default: Some("10s"),
        secret: false,
        set: |c, v| {
            c.webhook_timeout = duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.webhook_timeout),
    },
    Setting {
        key: "webhook.retry_for",
        env: "WXLOGIN_WEBHOOK_RETRY_FOR",
        default: Some("24h"),
        secret: false,
        set: |c, v| {
            c.webhook_retry_for = duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.webhook_retry_for),
    },
    Setting {
        key: "data_key",
        env: "WXLOGIN_DATA_KEY",
        default: None,
        secret: true,
        set: |c, v| {
            crate::vault::Vault::parse_key(v)?;
            c.data_key = Some(SecretString::from(v.trim().to_owned()));
            Ok(())
        },
        show: |c| match &c.data_key {
            Some(k) => format!("[redacted] (key id {})", key_id(k)),
            None => "(unset: `serve` refuses to start; `serve --dev` makes one)".into(),
        },
    },
    Setting {
        key: "data_key_old",
        env: "WXLOGIN_DATA_KEY_OLD",
        default: None,
        secret: true,
        set: |c, v| {
            crate::vault::Vault::parse_key(v)?;
            c.data_key_old = Some(SecretString::from(v.trim().to_owned()));
            Ok(())
        },
        show: |c| match &c.data_key_old {
            Some(k) => format!("[redacted] (key id {}; rotating)", key_id(k)),
            None => "(unset)".into(),
        },
    },
    Setting {
        key: "log_format",
        env: "WXLOGIN_LOG_FORMAT",
        default: Some("human"),
        secret: false,
        set: |c, v| {
            c.log_format = match v {
                "human" => LogFormat::Human,
                "json" => LogFormat::Json,
                _ => return Err("expected human or json".into()),
            };
            Ok(())
        },
        show: |c| format!("{:?}", c.log_format).to_lowercase(),
    },
    Setting {
        key: "rate_limit_login",
        env: "WXLOGIN_RATE_LIMIT_LOGIN",
        default: Some("60/1m"),
        secret: false,
        set: |c, v| {
            c.rate_limit_login = RateRule::parse(v)?;
            Ok(())
        },
        show: |c| show_rule(c.rate_limit_login),
    },
    Setting {
        key: "rate_limit_phone",
        env: "WXLOGIN_RATE_LIMIT_PHONE",
        default: Some("10/1m"),
        secret: false,
        set: |c, v| {
            c.rate_limit_phone = RateRule::parse(v)?;
            Ok(())
        },
        show: |c| show_rule(c.rate_limit_phone),
    },
    Setting {
        // A list in the file; comma-separated in the environment.
        key: "trusted_proxies",
        env: "WXLOGIN_TRUSTED_PROXIES",
        default: None,
        secret: false,
        set: |c, v| {
            c.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<ipnet::IpNet>()
                        .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| format!("{p:?} is not an IP or CIDR"))
                })
                .collect::<Result<_, _>>()?;
            Ok(())
        },
        show: |c| {
            if c.trusted_proxies.is_empty() {
                "(none)".into()
            } else {
                let all: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
                all.join(", ")
            }
        },
    },
    Setting {
        key: "accounts.link_by_unionid",
        env: "WXLOGIN_LINK_BY_UNIONID",
        default: Some("true"),
        secret: false,
        set: |c, v| {
            c.link_by_unionid = match v {
                "true" | "on" | "1" => true,
                "false" | "off" | "0" => false,
                _ => return Err("expected true or false".into()),
            };
            Ok(())
        },
        show: |c| c.link_by_unionid.to_string(),
    },
    Setting {
        key: "accounts.max_sessions_per_user",
        env: "WXLOGIN_MAX_SESSIONS_PER_USER",
        default: Some("10"),
        secret: false,
        set: |c, v| {
            c.max_sessions_per_user = v
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| format!("expected a number from 1 to 1000, got {v:?}"))?;
            Ok(())
        },
        show: |c| c.max_sessions_per_user.to_string(),
    },
    Setting {
        key: "accounts.event_retention",
        env: "WXLOGIN_EVENT_RETENTION",
        default: Some("180d"),
        secret: false,
        set: |c, v| {
            c.event_retention = duration(v)?;
            Ok(())
        },
        show: |c| show_duration(c.event_retention),
    },
    Setting {
        key: "accounts.phone_reuse",
        env: "WXLOGIN_PHONE_REUSE",
        default: Some("30d"),
        secret: false,
        set: |c, v| {
            c.phone_reuse = if v.trim().eq_ignore_ascii_case("off") {
                None
            } else {
                Some(duration(v)?)
            };
            Ok(())
        },
        show: |c| c.phone_reuse.map_or("off".into(), show_duration),
    },
    Setting {
        key: "public_url",
        env: "WXLOGIN_PUBLIC_URL",
        default: None,
        secret: false,
        set: |c, v| {
            let url = url::Url::parse(v)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or("expected the http(s) URL clients reach this service at")?;
            c.public_url = Some(url.as_str().trim_end_matches('/').to_owned());
            Ok(())
        },
        show: |c| c.public_url.clone().unwrap_or_else(|| "(unset)".into()),
    },
];

/// A platform's API base URL. The AppSecret travels in its query strings: plain http only to a
/// local simulator.
fn api_base(v: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(v)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or("expected an http(s) URL")?;
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(
            "http:// is allowed only for a loopback address (a local simulator); use https://"
                .into(),
        );
    }
    Ok(url)
}
