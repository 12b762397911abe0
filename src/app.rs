//! Builds the application — state, router, layers — and runs it until shutdown.
//! This is the one place that knows every part; `main.rs` and the tests both start here.

use crate::clock::SharedClock;
use crate::config::{AppConfig, Config};
use crate::coord::Coord;
use crate::error::ApiError;
use crate::login::LoginService;
use crate::ratelimit::{RateLimiter, Rule};
use crate::session::{SessionPolicy, Sessions};
use crate::store::SharedStore;
use crate::wechat::token::AccessTokens;
use crate::wechat::WechatClient;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, ServiceBuilder};
use tower_http::normalize_path::NormalizePathLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub apps: Vec<AppConfig>,
    pub store: SharedStore,
    pub sessions: Sessions,
    pub login: Arc<LoginService>,
    pub wechat: WechatClient,
    pub tokens: Arc<AccessTokens>,
    pub coord: Option<Arc<Coord>>,
    pub admin_token: Option<secrecy::SecretString>,
    pub limiter: RateLimiter,
    pub rate_limit_login: Option<Rule>,
    pub rate_limit_phone: Option<Rule>,
    pub clock: SharedClock,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Opens the store and wires the services.
    pub async fn build(config: &Config, clock: SharedClock) -> anyhow::Result<Self> {
        if config.apps.is_empty() {
            anyhow::bail!("no mini program configured: set WXLOGIN_APPID and WXLOGIN_SECRET (or [[apps]] in wxlogin.toml)");
        }
        let store = crate::store::connect(config.database_url.expose()).await?;
        let mut store: SharedStore = Arc::new(crate::metrics::MeteredStore(store));
        // SQLite is one node, so this process sees every write and may answer from memory.
        if config.database_url.expose().starts_with("sqlite:") {
            if let Some(size) = std::num::NonZeroUsize::new(config.session_cache_size) {
                store = Arc::new(
                    crate::store::cached::CachedStore::new(store, size, clock.clone()).await,
                );
            }
        }
        Self::with_store(config, clock, store).await
    }

    pub async fn with_store(
        config: &Config,
        clock: SharedClock,
        store: SharedStore,
    ) -> anyhow::Result<Self> {
        let policy = SessionPolicy {
            idle_timeout: config.session_idle_timeout,
            max_lifetime: config.session_max_lifetime,
        };
        // Installed before anything records: the `metrics` facade drops values when no recorder is set.
        crate::metrics::handle();
        let wechat = WechatClient::new(config.wechat_api_base.clone(), config.wechat_timeout)?;
        let coord = match &config.redis_url {
            Some(url) => Some(Coord::connect(url.expose(), &config.redis_prefix).await?),
            None => None,
        };
        let sessions = Sessions::new(store.clone(), coord.clone(), clock.clone(), policy);
        let login = LoginService::new(
            store.clone(),
            coord.clone(),
            wechat.clone(),
            clock.clone(),
            policy,
        );
        let tokens = Arc::new(AccessTokens::new(
            wechat.clone(),
            coord.clone(),
            clock.clone(),
        ));
        Ok(Self(Arc::new(Inner {
            apps: config.apps.clone(),
            store,
            sessions,
            login,
            wechat,
            tokens,
            coord: coord.clone(),
            admin_token: config.admin_token.clone(),
            limiter: RateLimiter::new(coord.clone(), clock.clone(), config.trusted_proxies.clone()),
            rate_limit_login: config.rate_limit_login,
            rate_limit_phone: config.rate_limit_phone,
            clock,
        })))
    }

    /// Applies `rule` (if on) to `key`; a 429 with `Retry-After` when it is used up.
    pub async fn rate_limit(
        &self,
        scope: &str,
        key: &str,
        rule: Option<Rule>,
    ) -> Result<(), ApiError> {
        let Some(rule) = rule else { return Ok(()) };
        self.limiter
            .check(scope, key, rule)
            .await
            .map_err(|retry_after_secs| {
                metrics::counter!("wxlogin_rate_limited_total", "scope" => scope.to_owned())
                    .increment(1);
                ApiError::RateLimited { retry_after_secs }
            })
    }

    /// The configuration of a session's app (it may have been removed since the login).
    pub fn app(&self, appid: &crate::domain::AppId) -> Result<&AppConfig, ApiError> {
        self.apps
            .iter()
            .find(|a| &a.appid == appid)
            .ok_or(ApiError::Unauthorized)
    }

    /// The app a login is for: the named one, or the only one.
    pub fn app_for(&self, appid: Option<&str>) -> Result<&AppConfig, ApiError> {
        match appid.filter(|a| !a.is_empty()) {
            Some(id) => self
                .apps
                .iter()
                .find(|a| a.appid.as_str() == id)
                .ok_or_else(|| {
                    ApiError::UnknownApp("this appid is not configured on the server".into())
                }),
            None if self.apps.len() == 1 => Ok(&self.apps[0]),
            None => Err(ApiError::UnknownApp(
                "several apps are configured: send appid with the code".into(),
            )),
        }
    }
}

/// Background upkeep until the process ends: the active-sessions gauge every minute, the
/// expired-data cleanup every `cleanup_every`.
pub fn spawn_maintenance(state: AppState, cleanup_every: Duration) {
    tokio::spawn(async move {
        let minute = Duration::from_secs(60);
        let mut tick = tokio::time::interval(minute);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let per_cleanup = (cleanup_every.as_secs() / 60).max(1);
        for n in 0u64.. {
            tick.tick().await;
            if let Ok(stats) = state.store.stats(state.clock.now_ms()).await {
                crate::metrics::live_sessions(stats.live_sessions);
            }
            if n % per_cleanup != 0 {
                continue;
            }
            match state.sessions.cleanup().await {
                Ok(Some((sessions, codes))) => {
                    tracing::info!(
                        sessions,
                        codes,
                        "cleanup removed expired sessions and used codes"
                    )
                }
                Ok(None) => tracing::debug!("cleanup: another instance is on it"),
                Err(e) => tracing::warn!(error = %e, "cleanup failed; will retry"),
            }
        }
    });
}

/// The API router with its layers. `extra` adds routes (the simulator's controls in dev mode).
pub fn router(state: AppState, extra: Option<Router>) -> Router {
    let admin_token = state.admin_token.clone();
    let mut router = crate::routes::router(state, admin_token);
    if let Some(extra) = extra {
        router = router.merge(extra);
    }
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                // Path only: a query string is never logged, whatever a client puts there.
                TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            // Replies carry tokens and personal data: no cache may keep them.
            .layer(SetResponseHeaderLayer::overriding(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            )),
    )
}

/// A server running in this process: its address and a handle to stop it. Dropping the
/// handle leaves the server running until the process's shutdown signal.
pub struct Running {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Waits until the server has stopped (after its shutdown signal).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// Graceful stop: in-flight requests finish (up to `drain`), then the server returns.
    pub async fn stop(self, drain: Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(drain, self.task).await;
    }
}

/// Serves `router` on `listener` until `Running::stop` (or `shutdown`) is called.
pub fn spawn(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    // A trailing slash is accepted on every route, as Django clients send `login/`.
    let service = NormalizePathLayer::trim_trailing_slash().layer(router);
    let make =
        axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(service);
    let signal = async move {
        tokio::select! {
            _ = shutdown => {}
            // Dropping `Running` detaches the server; only `stop()` stops it.
            Ok(()) = stopped.changed() => {}
        }
    };
    let task = tokio::spawn(async move {
        axum::serve(listener, make)
            .with_graceful_shutdown(signal)
            .await
    });
    Ok(Running { addr, stop, task })
}
