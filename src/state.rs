//! The state every handler gets: the services, wired once from the configuration, an opened
//! store and the Redis layer. Below the routes (which read it) and above the services (which
//! it holds); the handlers reach the stores only through these services.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::coord::session_cache::SessionCache;
use crate::coord::session_memory::SessionMemory;
use crate::coord::Coord;
use crate::services::access_tokens::AccessTokens;
use crate::services::apps::Apps;
use crate::services::login::{AccountRules, LoginService};
use crate::services::maintenance::Maintenance;
use crate::services::open_data::OpenData;
use crate::services::ratelimit::{Limits, RateLimiter};
use crate::services::registry::AppRegistry;
use crate::services::sessions::{SessionPolicy, Sessions};
use crate::services::user_cache::UserCache;
use crate::services::users::Users;
use crate::services::webhooks::{WebhookSettings, Webhooks};
use crate::store::SharedStore;
use crate::wechat::WechatClient;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    pub apps: Arc<Apps>,
    pub registry: AppRegistry,
    pub login: Arc<LoginService>,
    pub sessions: Sessions,
    pub users: Users,
    pub open_data: OpenData,
    pub limits: Limits,
    pub maintenance: Maintenance,
    pub webhooks: Arc<Webhooks>,
    /// On PostgreSQL + Redis: sessions in this instance's memory (its bus task runs in `app`).
    pub session_memory: Option<Arc<SessionMemory>>,
    /// Proxies whose `X-Forwarded-For` is believed (read by the client-address extractor).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where avatar URLs point: `<public_url>/avatars/…`, or `avatars/…` relative to the
    /// service root when unset.
    pub public_url: Option<String>,
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

impl AppState {
    /// Wires the services over an opened store and (optionally) Redis.
    pub fn new(
        config: &Config,
        clock: SharedClock,
        store: SharedStore,
        coord: Option<Arc<Coord>>,
        vault: Arc<crate::vault::Vault>,
    ) -> anyhow::Result<Self> {
        let policy = SessionPolicy {
            idle_timeout: config.session_idle_timeout,
            max_lifetime: config.session_max_lifetime,
        };
        let wechat = WechatClient::new(
            crate::wechat::ApiBases {
                wechat: config.wechat_api_base.clone(),
                qq: config.qq_api_base.clone(),
                douyin: config.douyin_api_base.clone(),
                douyin_open: config.douyin_open_api_base.clone(),
                baidu: config.baidu_api_base.clone(),
                baidu_open: config.baidu_open_api_base.clone(),
                kuaishou: config.kuaishou_api_base.clone(),
                alipay: config.alipay_api_base.clone(),
            },
            config.wechat_timeout,
        )?;
        let apps = Arc::new(Apps::new(
            config.apps.clone(),
            config.default_appid.clone(),
            store.clone(),
        ));
        // On PostgreSQL + Redis, sessions and users in memory, kept true over Redis (SQLite has
        // its own cache in front of the store; without Redis there is no way to hear of other
        // instances' changes).
        // The bus runs on every PostgreSQL + Redis instance, even one that keeps nothing in
        // memory (`WXLOGIN_SESSION_CACHE_SIZE=0`): its revocations must reach those that do.
        let scale_out = match (config.database_url.backend(), &coord) {
            (crate::store::Backend::Postgres, Some(coord)) => Some(coord),
            _ => None,
        };
        let memory_size = std::num::NonZeroUsize::new(config.session_cache_size);
        let session_memory = scale_out.map(|coord| SessionMemory::new(coord.clone(), memory_size));
        let sessions = Sessions::new(
            store.clone(),
            apps.clone(),
            coord
                .clone()
                .map(|coord| SessionCache::new(coord, session_memory.clone())),
            clock.clone(),
            policy,
        );
        let settings = match (&config.webhook_url, &config.webhook_secret) {
            (Some(url), Some(secret)) => Some(WebhookSettings {
                url: url.clone(),
                secret: secret.clone(),
                timeout: config.webhook_timeout,
                retry_for: config.webhook_retry_for,
            }),
            _ => None,
        };
        let webhooks = Arc::new(Webhooks::new(store.clone(), clock.clone(), settings)?);
        let user_cache = scale_out
            .zip(memory_size)
            .map(|(coord, size)| UserCache::new(coord.clone(), size));
        let users = Users::new(
            store.clone(),
            sessions.clone(),
            clock.clone(),
            config.phone_reuse,
            webhooks.clone(),
            user_cache.clone(),
        );
        let login = LoginService::new(
            store.clone(),
            sessions.clone(),
            coord.clone(),
            wechat.clone(),
            clock.clone(),
            AccountRules {
                link_by_unionid: config.link_by_unionid,
                max_sessions: config.max_sessions_per_user,
            },
            user_cache,
        );
        let tokens = Arc::new(AccessTokens::new(
            wechat.clone(),
            coord.clone(),
            clock.clone(),
            vault,
        ));
        let registry = AppRegistry::new(
            apps.clone(),
            store.clone(),
            sessions.clone(),
            tokens.clone(),
            clock.clone(),
        );
        let open_data = OpenData::new(
            apps.clone(),
            sessions.clone(),
            users.clone(),
            tokens,
            wechat,
            clock.clone(),
        );
        let limits = Limits::new(
            RateLimiter::new(coord, clock.clone()),
            config.rate_limit_login,
            config.rate_limit_phone,
        );
        Ok(Self(Arc::new(Services {
            apps,
            registry,
            login,
            sessions,
            users,
            open_data,
            limits,
            maintenance: Maintenance::new(store, clock, policy, config.event_retention),
            webhooks,
            session_memory,
            trusted_proxies: config.trusted_proxies.clone(),
            public_url: config.public_url.clone(),
        })))
    }
}
