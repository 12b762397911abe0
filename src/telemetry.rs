//! Logging setup. Human-readable by default, JSON by `WXLOGIN_LOG_FORMAT=json`; level from
//! `RUST_LOG` (default `info`).
//!
//! The HTTP client crates log connection details at debug/trace level, and a WeChat request URL
//! holds the AppSecret and the code in its query string. So those crates are capped at `info`
//! whatever `RUST_LOG` says: turning on trace must never print a secret.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

const ALWAYS_CAPPED: &str = "hyper=info,hyper_util=info,reqwest=info,h2=info,rustls=info,sqlx=warn";

pub fn filter(user: Option<&str>) -> EnvFilter {
    let user = user.filter(|s| !s.is_empty()).unwrap_or("info");
    EnvFilter::try_new(format!("{user},{ALWAYS_CAPPED}"))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{ALWAYS_CAPPED}")))
}

pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
