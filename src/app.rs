//! The application: opens the store and Redis, wires the services, binds the listener, and
//! serves until stopped (zero2prod's `build` → `run_until_stopped`). `serve`, `serve --dev` and
//! the test harness all start here, so what the tests run is what production runs.
//!
//! One [`CancellationToken`] stops everything: the server stops accepting and drains in-flight
//! requests (up to [`crate::server::DRAIN`]), the maintenance loop ends, and then the store is
//! closed (the SQLite writer commits what it has queued and its threads end).
//!
//! With `WXLOGIN_ADMIN_LISTEN`, the operator routes are served on a second listener and are
//! absent from the public one.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::coord::Coord;
use crate::server::{serve, HttpLimits};
use crate::state::AppState;
use crate::store::cached::CachedStore;
use crate::store::metered::MeteredStore;
use crate::store::{Backend, SharedStore};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

/// How often expired sessions and used codes are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(600);

/// A built application, bound to its port, not serving yet.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// The operator routes on their own address (`WXLOGIN_ADMIN_LISTEN`).
    operator: Option<(TcpListener, Router)>,
    limits: HttpLimits,
    state: AppState,
    store: SharedStore,
    stop: CancellationToken,
}

impl Application {
    /// Opens the store and Redis, wires the services and binds `config.listen`. `extra` adds
    /// routes (the simulator's controls in dev mode); `stop` ends the run.
    pub async fn build(
        config: &Config,
        clock: SharedClock,
        extra: Option<Router>,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        // Without the admin API there is no way to add one later.
        if config.apps.is_empty() && config.admin_tokens.is_none() {
            anyhow::bail!("no mini program configured: set WXLOGIN_APPID and WXLOGIN_SECRET (or [[apps]] in wxlogin.toml), or WXLOGIN_ADMIN_TOKEN to add apps through the admin API");
        }
        let vault = Arc::new(config.vault().ok_or_else(|| {
            anyhow::anyhow!(
                "WXLOGIN_DATA_KEY is not set: session keys and phone numbers are encrypted at rest \
                 with it. Make one with `wxlogin gen-key` and set WXLOGIN_DATA_KEY (or \
                 WXLOGIN_DATA_KEY_FILE naming a file that holds it); `serve --dev` makes its own"
            )
        })?);
        // Installed before anything records: the `metrics` facade drops values when no recorder is set.
        crate::metrics::handle();
        let store = open_store(config, &clock, vault.clone()).await?;
        // Plain values an earlier release wrote are sealed before the first request. (Values
        // under another key are `wxlogin rotate-key`'s: an instance restarted mid-rotation with
        // the previous configuration must not seal everything back.)
        let resealed = crate::store::reseal(&*store, crate::store::Reseal::Plain).await?;
        if resealed.session_keys + resealed.phones + resealed.app_secrets > 0 {
            tracing::info!(
                session_keys = resealed.session_keys,
                phones = resealed.phones,
                app_secrets = resealed.app_secrets,
                key_id = vault.key_id(),
                "sealed plain stored values under the data key"
            );
        }
        if resealed.unreadable > 0 {
            tracing::warn!(
                values = resealed.unreadable,
                "stored values no configured data key opens (a lost or missing key?): those sessions \
                 must log in again before open data works, and those phone numbers read as unbound"
            );
        }
        let coord = match &config.redis_url {
            Some(url) => Some(Coord::connect(url.expose(), &config.redis_prefix).await?),
            None => None,
        };
        let state = AppState::new(config, clock, store.clone(), coord, vault)?;
        state
            .apps
            .refresh()
            .await
            .map_err(|e| anyhow::anyhow!("could not read the app registry: {e}"))?;
        let routers = crate::routes::routers(
            state.clone(),
            config.admin_tokens.clone(),
            config.admin_listen.is_some(),
        );
        let mut router = routers.public;
        if let Some(extra) = extra {
            router = router.merge(extra);
        }
        let listener = bind(config.listen, "WXLOGIN_LISTEN").await?;
        let operator = match (routers.operator, config.admin_listen) {
            (Some(routes), Some(addr)) => Some((
                bind(addr, "WXLOGIN_ADMIN_LISTEN").await?,
                with_layers(routes),
            )),
            _ => None,
        };
        Ok(Self {
            listener,
            router: with_layers(router),
            operator,
            limits: http_limits(config),
            state,
            store,
            stop,
        })
    }

    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the operator routes are served, when on an address of their own.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.operator
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until the stop token is cancelled, then drains, stops the background tasks and
    /// closes the store.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            listener,
            router,
            operator,
            limits,
            state,
            store,
            stop,
        } = self;
        let maintenance = tokio::spawn(state.maintenance.clone().run(CLEANUP_EVERY, stop.clone()));
        let webhooks = tokio::spawn(state.webhooks.clone().run(stop.clone()));
        let apps = tokio::spawn(state.apps.clone().run(stop.clone()));
        let user_cache = state
            .users
            .cache()
            .map(|cache| tokio::spawn(cache.run(stop.clone())));
        let session_memory = state
            .session_memory
            .clone()
            .map(|memory| tokio::spawn(memory.run(stop.clone())));
        drop(state);
        let operator = operator
            .map(|(listener, router)| tokio::spawn(serve(listener, router, stop.clone(), limits)));
        let served = serve(listener, router, stop.clone(), limits).await;
        if let Some(operator) = operator {
            let _ = operator.await;
        }
        let _ = maintenance.await;
        let _ = webhooks.await;
        let _ = apps.await;
        for task in user_cache.into_iter().chain(session_memory) {
            let _ = task.await;
        }
        store.close().await;
        served
    }

    /// Runs in a task of its own; the handle stops it.
    pub fn spawn(self) -> std::io::Result<Running> {
        let addr = self.addr()?;
        let admin_addr = self.admin_addr();
        let stop = self.stop.clone();
        let task = tokio::spawn(self.run_until_stopped());
        Ok(Running {
            addr,
            admin_addr,
            stop,
            task,
        })
    }
}

async fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{setting}: cannot listen on {addr}: {e}"))
}

/// What one client may hold of the server.
fn http_limits(config: &Config) -> HttpLimits {
    HttpLimits {
        header_timeout: config.header_timeout,
        request_timeout: config.request_timeout,
        keepalive_timeout: config.keepalive_timeout,
        max_connections: config.max_connections,
    }
}

/// Opens the store of record with its metrics and, on SQLite (one node, so this process sees
/// every write), the in-memory cache in front.
async fn open_store(
    config: &Config,
    clock: &SharedClock,
    vault: Arc<crate::vault::Vault>,
) -> anyhow::Result<SharedStore> {
    let options = crate::store::StoreOptions {
        vault,
        webhooks: config.webhook_url.is_some(),
    };
    let store = crate::store::connect(&config.database_url, options).await?;
    let store: SharedStore = Arc::new(MeteredStore(store));
    let size = std::num::NonZeroUsize::new(config.session_cache_size);
    Ok(match (config.database_url.backend(), size) {
        (Backend::Sqlite, Some(size)) => {
            Arc::new(CachedStore::new(store, size, clock.clone()).await)
        }
        _ => store,
    })
}

/// The layers around every route: request ids, the request span, the 5xx log, `Cache-Control:
/// no-store` and the request metrics ([`crate::routes::Observe`]), and inside them a panic
/// turned into a 500 (which that layer logs).
fn with_layers(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(tower::layer::layer_fn(crate::routes::Observe::new))
            .layer(CatchPanicLayer::custom(
                |_: Box<dyn std::any::Any + Send>| {
                    axum::response::IntoResponse::into_response(crate::error::ApiError::Internal(
                        crate::error::Cause::new("a request handler panicked"),
                    ))
                },
            )),
    )
}

/// A server running in a task of this process: its address and a handle to stop it. Dropping
/// the handle leaves the server running until its stop token is cancelled.
pub struct Running {
    pub addr: SocketAddr,
    /// The operator listener's address, when `WXLOGIN_ADMIN_LISTEN` is set.
    pub admin_addr: Option<SocketAddr>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Serves `router` (e.g. the simulator) on `listener` in a task of its own.
    pub fn serve(
        listener: TcpListener,
        router: Router,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, router, stop.clone(), HttpLimits::default()));
        Ok(Self {
            addr,
            admin_addr: None,
            stop,
            task,
        })
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// Graceful stop: in-flight requests finish (up to `drain`), then the server returns.
    pub async fn stop(self, drain: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(drain, self.task).await;
    }
}
