//! `spawn_app()`: the real app on port 0 with its own database, the simulator as WeChat, and a
//! manual clock shared by both. Store choice: SQLite in a temp dir by default; a fresh PostgreSQL
//! database per test when `WXLOGIN_TEST_POSTGRES_URL` is set (CI runs the suite both ways).

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wxlogin::app::{Application, Running};
use wxlogin::clock::{Clock, ManualClock, SharedClock, SystemClock};
use wxlogin::config::Config;
use wxlogin::simulator::{self, SimApp, SimState};

pub const APPID: &str = "wxtestapp";
pub const SECRET: &str = "test-app-secret-0123456789";
/// An Alipay test app's private key (its "secret"), as PEM: `tests/fixtures/alipay/`.
#[allow(dead_code)]
pub const ALIPAY_APP_KEY: &str = include_str!("../fixtures/alipay/app_private_pkcs1.pem");
/// The data key every test server seals with (base64 of the bytes 0..32).
pub const DATA_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The vault [`DATA_KEY`] makes, for opening a test's store directly.
pub fn vault() -> Arc<wxlogin::vault::Vault> {
    let key = wxlogin::vault::Vault::parse_key(DATA_KEY).unwrap();
    Arc::new(wxlogin::vault::Vault::new(&key, None))
}

pub struct Options {
    /// `(appid, secret)`; an appid `qq/…` is a QQ app (`platform = "qq"`), and so on.
    pub apps: Vec<(&'static str, &'static str)>,
    pub wechat_timeout: &'static str,
    pub env: Vec<(&'static str, String)>,
    /// Start on a database made by an earlier release (`tests/fixtures/<version>/`) instead of
    /// an empty one; the clock starts when that database was made.
    pub fixture: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            apps: vec![(APPID, SECRET)],
            wechat_timeout: "2s",
            env: vec![],
            fixture: None,
        }
    }
}

/// What `tests/fixtures/<version>/manifest.json` says of this backend's fixture.
pub fn fixture_manifest(version: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/{version}/manifest.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let backend = match std::env::var("WXLOGIN_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => "postgres",
        _ => "sqlite",
    };
    all[backend].clone()
}

/// A database holding a fixture: the SQLite file copied, or the PostgreSQL dump loaded with
/// `psql` into a fresh database.
async fn fixture_db(version: &str) -> Db {
    let dir = format!("{}/tests/fixtures/{version}", env!("CARGO_MANIFEST_DIR"));
    let db = fresh_db().await;
    if db.url.starts_with("sqlite:") {
        let path = db.url.trim_start_matches("sqlite://");
        std::fs::copy(format!("{dir}/sqlite.db"), path).unwrap();
    } else {
        let loaded = std::process::Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
            .arg(format!("{dir}/postgres.sql"))
            .output()
            .expect("psql, to load the PostgreSQL fixture");
        assert!(
            loaded.status.success(),
            "{}",
            String::from_utf8_lossy(&loaded.stderr)
        );
    }
    db
}

/// The Redis servers a `WXLOGIN_REDIS_URL` names: itself, or each node of a
/// `redis+cluster://` list.
pub fn redis_nodes(url: &str) -> Vec<String> {
    match url.strip_prefix("redis+cluster://") {
        Some(hosts) => hosts.split(',').map(|h| format!("redis://{h}")).collect(),
        None => vec![url.to_owned()],
    }
}

/// Where a test's data lives; kept across `restart`.
pub struct Db {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// An empty database of the suite's store (SQLite in a temp dir, or a new PostgreSQL database).
pub async fn fresh_db() -> Db {
    match std::env::var("WXLOGIN_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let name = format!("wxl_test_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&base)
                .await
                .expect("connect to WXLOGIN_TEST_POSTGRES_URL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .expect("create test database");
            admin.close().await;
            let mut url = url::Url::parse(&base).unwrap();
            url.set_path(&name);
            Db {
                url: url.to_string(),
                _dir: None,
            }
        }
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/wxlogin.db", dir.path().display());
            Db {
                url,
                _dir: Some(dir),
            }
        }
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// The operator listener, when the test set `WXLOGIN_ADMIN_LISTEN`.
    #[allow(dead_code)]
    pub admin_addr: Option<std::net::SocketAddr>,
    pub sim_addr: std::net::SocketAddr,
    #[allow(dead_code)]
    pub sim: Arc<SimState>,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    config: Config,
    db: Db,
    running: Running,
    sim_running: Running,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Options::default()).await
}

/// An `Options::apps` appid's platform and bare appid.
fn app_platform(appid: &str) -> (wxlogin::domain::Platform, &str) {
    match appid.split_once('/') {
        Some((platform, bare)) => (
            wxlogin::domain::Platform::parse(platform).expect("a platform"),
            bare,
        ),
        None => (wxlogin::domain::Platform::Weixin, appid),
    }
}

pub async fn spawn_with(opts: Options) -> TestApp {
    let started_at = match opts.fixture {
        Some(v) => fixture_manifest(v)["made_at"].as_i64().unwrap() + 1_000,
        None => SystemClock.now_ms(),
    };
    let clock = Arc::new(ManualClock::new(started_at));
    let shared: SharedClock = clock.clone();
    let sim_apps = opts
        .apps
        .iter()
        .map(|(a, s)| {
            let (platform, appid) = app_platform(a);
            SimApp {
                platform,
                appid: appid.to_owned(),
                secret: s.to_string(),
            }
        })
        .collect();
    let sim = Arc::new(SimState::new(sim_apps, shared.clone()));
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_addr = sim_listener.local_addr().unwrap();
    let sim_running = Running::serve(
        sim_listener,
        simulator::router(sim.clone()),
        CancellationToken::new(),
    )
    .unwrap();

    let db = match opts.fixture {
        Some(v) => fixture_db(v).await,
        None => fresh_db().await,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut file = String::new();
    for (appid, secret) in &opts.apps {
        let (platform, appid) = app_platform(appid);
        // A literal string: an Alipay app's secret is a PEM private key, lines and all.
        file.push_str(&format!(
            "[[apps]]\nplatform = \"{}\"\nappid = \"{appid}\"\nsecret = '''{secret}'''\n",
            platform.as_str()
        ));
        if platform == wxlogin::domain::Platform::Alipay {
            file.push_str(&format!(
                "alipay_public_key = \"{}\"\n",
                simulator::alipay_public_key()
            ));
        }
    }
    std::fs::write(dir.path().join("wxlogin.toml"), file).unwrap();
    let mut env: HashMap<String, String> = HashMap::from([
        (
            "WXLOGIN_CONFIG".into(),
            dir.path().join("wxlogin.toml").display().to_string(),
        ),
        ("WXLOGIN_DATABASE_URL".into(), db.url.clone()),
        // Every instance takes a port of its own.
        ("WXLOGIN_LISTEN".into(), "127.0.0.1:0".into()),
        (
            "WXLOGIN_WECHAT_API_BASE".into(),
            format!("http://{sim_addr}"),
        ),
        (
            "WXLOGIN_QQ_API_BASE".into(),
            format!("http://{sim_addr}/qq"),
        ),
        (
            "WXLOGIN_DOUYIN_API_BASE".into(),
            format!("http://{sim_addr}/douyin"),
        ),
        (
            "WXLOGIN_DOUYIN_OPEN_API_BASE".into(),
            format!("http://{sim_addr}/douyin-open"),
        ),
        (
            "WXLOGIN_BAIDU_OPEN_API_BASE".into(),
            format!("http://{sim_addr}/baidu-open"),
        ),
        (
            "WXLOGIN_BAIDU_API_BASE".into(),
            format!("http://{sim_addr}/baidu"),
        ),
        (
            "WXLOGIN_KUAISHOU_API_BASE".into(),
            format!("http://{sim_addr}/kuaishou"),
        ),
        (
            "WXLOGIN_ALIPAY_API_BASE".into(),
            format!("http://{sim_addr}/alipay"),
        ),
        ("WXLOGIN_WECHAT_TIMEOUT".into(), opts.wechat_timeout.into()),
        ("WXLOGIN_DATA_KEY".into(), DATA_KEY.into()),
        // Every test client is 127.0.0.1: limits are off unless a test turns them on.
        ("WXLOGIN_RATE_LIMIT_LOGIN".into(), "off".into()),
        ("WXLOGIN_RATE_LIMIT_PHONE".into(), "off".into()),
        // Every /phone asks WeChat unless a test turns reuse on (the phone tests count calls).
        ("WXLOGIN_PHONE_REUSE".into(), "off".into()),
    ]);
    if let Ok(redis) = std::env::var("WXLOGIN_TEST_REDIS_URL") {
        if !redis.is_empty() {
            env.insert("WXLOGIN_REDIS_URL".into(), redis);
            env.insert(
                "WXLOGIN_REDIS_PREFIX".into(),
                format!("wxl_test:{}:", uuid::Uuid::new_v4().simple()),
            );
        }
    }
    for (k, v) in opts.env {
        env.insert(k.into(), v);
    }
    let (config, _) = Config::load(&env).expect("test config");
    let running = start(&config, shared).await;
    TestApp {
        addr: running.addr,
        admin_addr: running.admin_addr,
        sim_addr,
        sim,
        clock,
        http: reqwest::Client::new(),
        config,
        db,
        running,
        sim_running,
    }
}

async fn start(config: &Config, clock: SharedClock) -> Running {
    Application::build(config, clock, None, CancellationToken::new())
        .await
        .expect("build app")
        .spawn()
        .unwrap()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn sim_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.sim_addr)
    }

    /// Another instance sharing this one's database, Redis and simulator.
    pub async fn spawn_peer(&self) -> Running {
        start(&self.config, self.clock.clone()).await
    }

    /// Another instance like [`spawn_peer`](Self::spawn_peer), its configuration changed by `f`.
    #[allow(dead_code)]
    pub async fn spawn_peer_with(&self, f: impl FnOnce(&mut Config)) -> Running {
        let mut config = self.config.clone();
        f(&mut config);
        start(&config, self.clock.clone()).await
    }

    /// The Redis URL this test's server uses, if any.
    #[allow(dead_code)]
    pub fn redis_url(&self) -> Option<String> {
        self.config
            .redis_url
            .as_ref()
            .map(|u| u.expose().to_owned())
    }

    pub fn uses_redis(&self) -> bool {
        self.config.redis_url.is_some()
    }

    /// [`restart`](Self::restart) with the configuration changed by `f`.
    #[allow(dead_code)]
    pub async fn restart_with(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self.restart().await
    }

    /// Stops the server and starts a new one on the same database and simulator.
    pub async fn restart(mut self) -> Self {
        self.running.stop(Duration::from_secs(5)).await;
        self.running = start(&self.config, self.clock.clone()).await;
        self.addr = self.running.addr;
        self.admin_addr = self.running.admin_addr;
        self
    }

    pub async fn shutdown(self) {
        self.running.stop(Duration::from_secs(5)).await;
        self.sim_running.stop(Duration::from_secs(1)).await;
        let _ = &self.db;
    }

    /// What `wx.login()` returns for test user `user` (plus what WeChat will give the server).
    pub async fn wx_login(&self, user: &str) -> Value {
        self.wx_login_for(APPID, user).await
    }

    pub async fn wx_login_for(&self, appid: &str, user: &str) -> Value {
        let r = self
            .http
            .post(self.sim_url("/_sim/codes"))
            .json(&json!({ "appid": appid, "user": user }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn code(&self, user: &str) -> String {
        self.wx_login(user).await["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn login(&self, code: &str) -> (StatusCode, Value) {
        self.post("/login", json!({ "code": code }), None).await
    }

    /// Logs `user` in and returns the token.
    pub async fn token_for(&self, user: &str) -> String {
        let code = self.code(user).await;
        let (status, body) = self.login(&code).await;
        assert_eq!(status, 200, "{body}");
        body["data"]["token"].as_str().unwrap().to_owned()
    }

    pub async fn me(&self, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url("/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Any request to this server with a bearer token (`None`: none) and an optional JSON body:
    /// the status and the JSON reply (`Null` when it is not JSON).
    #[allow(dead_code)]
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        call_at(&self.http, self.addr, method, path, token, body).await
    }

    /// Seals `data` as WeChat would for `user`'s current session_key (the simulator's
    /// `/_sim/encrypt`) and posts it to `/decrypt` with `token`: the reply's status and JSON.
    #[allow(dead_code)]
    pub async fn decrypt_for(&self, token: &str, user: &str, data: Value) -> (StatusCode, Value) {
        let sealed = self
            .sim("/_sim/encrypt", json!({ "user": user, "data": data }))
            .await;
        self.post(
            "/decrypt",
            json!({ "encryptedData": sealed["encryptedData"], "iv": sealed["iv"] }),
            Some(token),
        )
        .await
    }

    /// POSTs to a simulator control route and returns its JSON.
    pub async fn sim(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.sim_url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    pub fn database_url(&self) -> String {
        self.db.url.clone()
    }

    /// Every byte this test's data holds at rest: the SQLite file with its -wal, or a pg_dump.
    pub fn data_at_rest(&self) -> Vec<u8> {
        if let Some(path) = self.db.url.strip_prefix("sqlite://") {
            let mut all = std::fs::read(path).unwrap();
            if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
                all.extend(wal);
            }
            all
        } else {
            let dump = std::process::Command::new("pg_dump")
                .args(["--no-owner", "--data-only", &self.db.url])
                .output()
                .expect("pg_dump");
            assert!(
                dump.status.success(),
                "{}",
                String::from_utf8_lossy(&dump.stderr)
            );
            dump.stdout
        }
    }

    /// Every value under this test's Redis prefix (empty without Redis).
    pub async fn redis_at_rest(&self) -> Vec<u8> {
        let Some(url) = &self.config.redis_url else {
            return Vec::new();
        };
        let mut all = Vec::new();
        for node in redis_nodes(url.expose()) {
            self.redis_node_at_rest(&node, &mut all).await;
        }
        all
    }

    /// What [`redis_at_rest`](Self::redis_at_rest) reads of one Redis (a cluster's node).
    async fn redis_node_at_rest(&self, url: &str, all: &mut Vec<u8>) {
        let client = redis::Client::open(url).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.config.redis_prefix))
            .query_async(&mut c)
            .await
            .unwrap();
        for key in keys {
            // Values as they are, not DUMP's format (which may compress them out of sight).
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            let values: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .unwrap()],
                "hash" => redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .unwrap(),
                "set" => redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .unwrap(),
                "list" => redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
                    .unwrap(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
                    .unwrap(),
                _ => Vec::new(),
            };
            all.extend(key.into_bytes());
            for v in values {
                all.extend(v);
            }
        }
    }

    /// The store this test's server uses, opened separately (for assertions only).
    pub async fn store(&self) -> wxlogin::store::SharedStore {
        let url = wxlogin::store::DatabaseUrl::parse(&self.db.url).unwrap();
        wxlogin::store::connect(&url, vault().into()).await.unwrap()
    }

    /// Runs `wxlogin admin --url <this server> ARGS` with the admin token; returns whether it
    /// exited 0 and what it printed.
    pub async fn admin_cli(&self, admin_token: &str, args: &[&str]) -> (bool, String) {
        // tokio's Command: a blocking wait would stall the server running on this test's thread.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxlogin"))
            .arg("admin")
            .arg("--url")
            .arg(self.url(""))
            .args(args)
            .env("WXLOGIN_ADMIN_TOKEN", admin_token)
            .env("WXLOGIN_CONFIG", "/dev/null")
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub async fn calls(&self, api: &str) -> u64 {
        let calls: Value = self
            .http
            .get(self.sim_url("/_sim/calls"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        calls[api].as_u64().unwrap_or(0)
    }

    pub async fn fault(&self, fault: Value) {
        let r = self
            .http
            .post(self.sim_url("/_sim/faults"))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// Behind every instance's back (PostgreSQL only): sets a session's absolute expiry in the
    /// database and drops its entry from Redis's shared cache, so only an instance's memory can
    /// still answer it. Returns the expiry it had.
    #[allow(dead_code)]
    pub async fn expire_behind_the_back(&self, token: &str, expires_at: i64) -> i64 {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
        let before: i64 =
            sqlx::query_scalar("SELECT expires_at FROM sessions WHERE token_hash = $1")
                .bind(&hash)
                .fetch_one(&pool)
                .await
                .unwrap();
        sqlx::query("UPDATE sessions SET expires_at = $1 WHERE token_hash = $2")
            .bind(expires_at)
            .bind(&hash)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let url = self.config.redis_url.as_ref().expect("a test with Redis");
        for node in redis_nodes(url.expose()) {
            let client = redis::Client::open(node).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*s:{hash}", self.config.redis_prefix))
                .query_async(&mut c)
                .await
                .unwrap();
            for key in keys {
                let _: i64 = redis::cmd("DEL")
                    .arg(key)
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
        }
        before
    }

    /// Whether the instance at `addr` answers `token` from its memory: it still accepts the
    /// session after [`expire_behind_the_back`](Self::expire_behind_the_back) (which is then
    /// undone). An instance answers from memory once its first ping came back through Redis
    /// (its lease), so this tries for a while.
    #[allow(dead_code)]
    pub async fn remembered_at(&self, addr: std::net::SocketAddr, token: &str) -> bool {
        for _ in 0..20 {
            assert_eq!(
                call_at(&self.http, addr, "GET", "/me", Some(token), None)
                    .await
                    .0,
                200
            );
            let expires_at = self.expire_behind_the_back(token, 1).await;
            let status = call_at(&self.http, addr, "GET", "/me", Some(token), None)
                .await
                .0;
            self.expire_behind_the_back(token, expires_at).await;
            if status == 200 {
                return true;
            }
            assert_eq!(status, 401);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    }

    /// Rows in a table of this test's database.
    pub async fn count_rows(&self, table: &str) -> i64 {
        self.count(&format!("SELECT COUNT(*) FROM {table}")).await
    }

    /// Runs a `SELECT COUNT(*) …` on this test's database.
    pub async fn count(&self, sql: &str) -> i64 {
        if self.db.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.db.url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        } else {
            let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }
}

/// [`TestApp::call`] on any instance (a peer's address).
#[allow(dead_code)]
pub async fn call_at(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method.parse().unwrap(), format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}
