//! The mini programs this server serves, and which one a request means: the config file's apps
//! and the registry's — apps added, rotated and removed at run time through the admin API
//! (`/admin/apps`) or `wxlogin admin apps`, kept in the store with their secrets sealed.
//!
//! Every instance reads the registry at start and again every [`REFRESH_EVERY`], and at once
//! after a change it made itself, so a change is live on every instance within that period with
//! no restart and nothing but the store shared. The config file's apps win an appid both name
//! (the registry refuses to add one, and a config file that later names a registered appid
//! shadows it, with a warning).
//!
//! A session is served only while its app is: [`Apps::serves`] is asked on every token check,
//! so the sessions of a removed app (deleted by `AppRegistry::remove` in `registry.rs`, in the
//! same transaction
//! as the app) cannot be answered by an instance that has not heard of the removal from a cache
//! either — for at most [`REFRESH_EVERY`] it may still accept a session made by a login that
//! raced the removal; after that, no instance does.

use super::{ServiceError, ServiceResult};
use crate::clock::Millis;
use crate::domain::{AppCredentials, AppId, Platform};
use crate::store::{AppRecord, AppStore};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often every instance re-reads the registry: a change is live everywhere within this.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Where a served app comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `[[apps]]` or `WXLOGIN_APPID`: changed by editing the config and restarting.
    Config,
    /// The app registry: changed through the admin API.
    Registry,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Registry => "registry",
        }
    }
}

/// A served app as operators see it: never its secret.
#[derive(Debug, Clone)]
pub struct AppView {
    pub platform: Platform,
    pub appid: AppId,
    pub source: Source,
    /// Registry apps only.
    pub created_at: Option<Millis>,
    pub updated_at: Option<Millis>,
}

/// What this instance serves right now.
#[derive(Default)]
struct Served {
    by_appid: HashMap<AppId, Arc<AppCredentials>>,
    views: Vec<AppView>,
}

impl Served {
    fn build(config: &[Arc<AppCredentials>], registry: Vec<AppRecord>) -> Self {
        let mut served = Self::default();
        for app in config {
            served.by_appid.insert(app.appid.clone(), app.clone());
            served.views.push(AppView {
                platform: app.platform,
                appid: app.appid.clone(),
                source: Source::Config,
                created_at: None,
                updated_at: None,
            });
        }
        for r in registry {
            if served.by_appid.contains_key(&r.appid) {
                tracing::warn!(appid = %r.appid, "a registered app is also in the config file; the config file's is served");
                continue;
            }
            served.views.push(AppView {
                platform: r.platform,
                appid: r.appid.clone(),
                source: Source::Registry,
                created_at: Some(r.created_at),
                updated_at: Some(r.updated_at),
            });
            let app = AppCredentials {
                platform: r.platform,
                appid: r.appid,
                secret: r.secret,
                alipay_public_key: r.alipay_public_key,
                phone_key: r.phone_key,
            };
            served.by_appid.insert(app.appid.clone(), Arc::new(app));
        }
        served
    }
}

/// The apps served: read on every login and token check.
pub struct Apps {
    config: Vec<Arc<AppCredentials>>,
    /// `WXLOGIN_DEFAULT_APPID`.
    default: Option<AppId>,
    store: Arc<dyn AppStore>,
    served: RwLock<Arc<Served>>,
    /// One refresh at a time, read and applied together: a periodic refresh that read the
    /// registry before an app was added must not apply its older list after the add's own.
    refreshing: tokio::sync::Mutex<()>,
}

impl Apps {
    /// The config file's apps only, until the first [`refresh`](Self::refresh). `default` is
    /// the app a login that names none is for.
    pub fn new(
        config: Vec<AppCredentials>,
        default: Option<AppId>,
        store: Arc<dyn AppStore>,
    ) -> Self {
        let config: Vec<_> = config.into_iter().map(Arc::new).collect();
        let served = Served::build(&config, Vec::new());
        Self {
            config,
            default,
            store,
            served: RwLock::new(Arc::new(served)),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn now_served(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the registry. On failure the apps served so far stay served.
    pub async fn refresh(&self) -> ServiceResult<()> {
        let _one = self.refreshing.lock().await;
        let registry = self.store.apps().await?;
        let served = Served::build(&self.config, registry);
        *self.served.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(served);
        Ok(())
    }

    /// Refreshes every [`REFRESH_EVERY`] until stopped.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "could not re-read the app registry; serving the apps read before");
            }
        }
    }

    /// The credentials of a served app; `None` if it is not served (or no longer).
    pub fn get(&self, appid: &AppId) -> Option<Arc<AppCredentials>> {
        self.now_served().by_appid.get(appid).cloned()
    }

    /// Whether sessions of this app are served.
    pub fn serves(&self, appid: &AppId) -> bool {
        self.now_served().by_appid.contains_key(appid)
    }

    /// The app a login is for: the named one; without one, `WXLOGIN_DEFAULT_APPID`'s, else the
    /// config file's app when it names exactly one, else the only app served.
    pub fn for_login(&self, appid: Option<&str>) -> ServiceResult<Arc<AppCredentials>> {
        let served = self.now_served();
        let named = match appid.filter(|a| !a.is_empty()) {
            Some(id) => AppId::parse(id).ok(),
            None => match &self.default {
                Some(default) => Some(default.clone()),
                // Clients from before a second app never send one: the config file's only
                // app is theirs, whatever the registry adds.
                None if self.config.len() == 1 => return Ok(self.config[0].clone()),
                None if served.by_appid.len() == 1 => {
                    return Ok(served.by_appid.values().next().cloned().expect("one app"));
                }
                None if served.by_appid.is_empty() => {
                    return Err(ServiceError::UnknownApp(
                        "no mini program is configured on the server yet",
                    ))
                }
                None => {
                    return Err(ServiceError::UnknownApp(
                        "several apps are configured: send appid with the code",
                    ))
                }
            },
        };
        named
            .and_then(|id| served.by_appid.get(&id).cloned())
            .ok_or(ServiceError::UnknownApp(
                "this appid is not configured on the server",
            ))
    }

    /// Every served app, config file's first, then the registry's by appid.
    pub fn list(&self) -> Vec<AppView> {
        self.now_served().views.clone()
    }

    /// Whether the config file names this app (the registry may not change it).
    pub fn in_config(&self, appid: &AppId) -> bool {
        self.config.iter().any(|a| &a.appid == appid)
    }
}
