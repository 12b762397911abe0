//! Logging setup. Human-readable by default, JSON by `WXLOGIN_LOG_FORMAT=json`; level from
//! `RUST_LOG` (default `info`).
//!
//! The HTTP client crates log connection details at debug/trace level, and a WeChat request URL
//! holds the AppSecret and the code in its query string. So those crates are capped at `info`
//! whatever `RUST_LOG` says: the cap is a filter of its own that every event passes through
//! after `RUST_LOG`'s, so no directive there (`reqwest::connect=trace` included) can lift it.
//! Turning on trace must never print a secret.

use crate::config::LogFormat;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Crates whose debug and trace events may carry a request URL, and what they are held to.
const CAPS: &[(&str, LevelFilter)] = &[
    ("hyper", LevelFilter::INFO),
    ("hyper_util", LevelFilter::INFO),
    ("reqwest", LevelFilter::INFO),
    ("h2", LevelFilter::INFO),
    ("rustls", LevelFilter::INFO),
    ("sqlx", LevelFilter::WARN),
];

/// What `RUST_LOG` asks for (`info` when unset or unreadable).
fn user_filter(user: Option<&str>) -> EnvFilter {
    let user = user.filter(|s| !s.is_empty()).unwrap_or("info");
    EnvFilter::try_new(user).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The caps, which `RUST_LOG` never sees.
fn caps() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPS.iter().copied())
}

pub fn init(format: LogFormat) {
    let filter = user_filter(std::env::var("RUST_LOG").ok().as_deref()).and(caps());
    // Colours only for a person at a terminal: a log file or collector gets plain text (and
    // the server skips styling every request's span).
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let layer = match format {
        LogFormat::Human => layer.boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}
