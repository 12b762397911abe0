//! The performance benchmark: `bench/run` (= `cargo bench --bench load`).
//!
//! In one run, on this machine, side by side: a bare hyper "hello" server (this same binary,
//! re-executed) as the ceiling, and the release `wxlogin serve` on SQLite with durable commits,
//! with the release `wxlogin simulator` as WeChat. Servers run as their own processes; the load
//! generator is a lean hyper HTTP/1 client with keep-alive connections in a closed loop.
//! Prints a Markdown report (copy it into docs/benchmarks.md).
//!
//! A second ceiling for logins: a hyper server that answers each `POST /login` with one pooled
//! call to the simulator's `jscode2session` and stores nothing (`login-ceiling`). With
//! `bench/run --pin` (`WXLOGIN_BENCH_PIN=1`) the server under test runs on core 0 and everything
//! else (the load generator, the simulator) on core 1, so a server's figures do not depend on
//! how it shares the cores with its load.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECS: u64 = 8;
const CONNS: usize = 32;
/// Distinct sessions the token checks cycle through.
const TOKENS: usize = 1_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("hello-server") {
        return hello_server(args[2].parse().unwrap());
    }
    if args.get(1).map(String::as_str) == Some("login-ceiling") {
        return login_ceiling(args[2].parse().unwrap(), args[3].parse().unwrap());
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` only builds and starts us, and a
    // debug-build benchmark would measure nothing worth keeping.
    if !args.iter().any(|a| a == "--bench") {
        println!("benches/load: compiled; run the benchmark with bench/run");
        return;
    }
    if pinned() {
        // This thread first, so the runtime's threads, made after, inherit core 1.
        let pid = std::process::id().to_string();
        let ok = Command::new("taskset")
            .args(["-p", "-c", OTHERS_CORE, &pid])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "--pin needs taskset (util-linux)");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

/// The core the server under test gets with `--pin`, and the one everything else shares.
const SERVER_CORE: &str = "0";
const OTHERS_CORE: &str = "1";

/// Says how the cores were shared, for the report's headings.
fn pin_note() -> &'static str {
    if pinned() {
        ", pinned: server on core 0, load and simulator on core 1"
    } else {
        ""
    }
}

fn pinned() -> bool {
    std::env::var("WXLOGIN_BENCH_PIN").as_deref() == Ok("1")
}

/// The login ceiling: a hyper server that, for each `POST /login {"code"}`, makes the one
/// upstream call a login needs (the simulator's `jscode2session`, over a pooled keep-alive
/// client) and answers its JSON. No routing, no store, nothing remembered.
fn login_ceiling(port: u16, sim: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = reqwest::Client::new();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let client = client.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let client = client.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let code = body
                            .ok()
                            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                            .and_then(|v| v["code"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        let url = format!(
                            "http://127.0.0.1:{sim}/sns/jscode2session?appid=wxbench&secret=bench-secret\
                             &js_code={code}&grant_type=authorization_code"
                        );
                        let reply = match client.get(url).send().await {
                            Ok(r) => r.bytes().await.unwrap_or_default(),
                            Err(_) => Bytes::from_static(b"{}"),
                        };
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(reply)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// The ceiling: hyper, one route, a constant body. No routing, no middleware, no store.
fn hello_server(port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"hello",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program`; with `--pin`, on `core` (the server's, or the others').
fn spawn_on(core: &str, program: &str, args: &[&str], env: &[(&str, String)]) -> Proc {
    let mut command = if pinned() {
        let mut c = Command::new("taskset");
        c.args(["-c", core, program]);
        c
    } else {
        Command::new(program)
    };
    Proc(
        command
            .args(args)
            // wxlogin at its default level (info: a span per request, no line per request).
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

async fn wait_up(port: u16) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("port {port} did not open");
}

/// What one request looks like; `next` hands out per-request bodies (unique codes).
#[derive(Clone)]
enum Load {
    /// Each connection walks the token list from its own offset, so many sessions are checked.
    Get {
        path: String,
        tokens: Arc<Vec<String>>,
    },
    Login {
        codes: Arc<std::sync::Mutex<Vec<String>>>,
    },
}

struct Outcome {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

async fn drive(port: u16, load: Load, conns: usize, secs: u64) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..conns {
        let load = load.clone();
        workers.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            let mut n = worker * 7919;
            while Instant::now() < deadline {
                n += 1;
                let req = match &load {
                    Load::Get { path, tokens } => {
                        let mut b = Request::get(path.as_str()).header("host", "bench");
                        if !tokens.is_empty() {
                            let t = &tokens[n % tokens.len()];
                            b = b.header("authorization", format!("Bearer {t}"));
                        }
                        b.body(Full::new(Bytes::new())).unwrap()
                    }
                    Load::Login { codes } => {
                        let Some(code) = codes.lock().unwrap().pop() else {
                            break;
                        };
                        Request::post("/login")
                            .header("host", "bench")
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(json!({ "code": code }).to_string())))
                            .unwrap()
                    }
                };
                let t = Instant::now();
                match send.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == 200;
                        let _ = resp.into_body().collect().await;
                        if ok {
                            lat.push(t.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    let elapsed = started
        .elapsed()
        .min(Duration::from_secs(secs))
        .as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Outcome {
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

async fn post_json(port: u16, path: &str, body: Value) -> Value {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post(path)
        .header("host", "bench")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

async fn issue_codes(sim: u16, n: usize) -> Vec<String> {
    issue_codes_for(sim, n, "bench").await
}

/// [`issue_codes`] for users named `<who>-…` (5,000 names per connection, 8 connections).
async fn issue_codes_for(sim: u16, n: usize, who: &'static str) -> Vec<String> {
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", sim))
                .await
                .unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut codes = Vec::new();
            for i in 0..n / 8 {
                let body = json!({ "user": format!("{who}-{chunk}-{}", i % 5000) }).to_string();
                let req = Request::post("/_sim/codes")
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let resp = send.send_request(req).await.unwrap();
                let v: Value =
                    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes())
                        .unwrap();
                codes.push(v["code"].as_str().unwrap().to_owned());
            }
            codes
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Adds `n` sessions with fresh tokens for an existing user straight into the SQLite file;
/// returns the first `keep` tokens.
async fn add_sessions(db_url: &str, n: usize, keep: usize) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(db_url).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let user: i64 = sqlx::query_scalar("SELECT MIN(id) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let mut kept = Vec::with_capacity(keep);
    for i in 0..n {
        let token = wxlogin::domain::SessionToken::generate();
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, identity_id, platform, appid, session_key, created_at, \
             last_seen_at, expires_at) VALUES ($1, $2, (SELECT MIN(id) FROM identities WHERE user_id = $2), \
             'weixin', 'wxbench', 'AAAAAAAAAAAAAAAAAAAAAA==', $3, $3, $4)",
        )
        .bind(token.hash().0)
        .bind(user)
        .bind(now)
        .bind(now + 86_400_000)
        .execute(&mut *tx)
        .await
        .unwrap();
        if i < keep {
            kept.push(token.expose().to_owned());
        }
    }
    tx.commit().await.unwrap();
    pool.close().await;
    kept
}

struct Wx {
    _sim: Proc,
    _server: Proc,
    sim: u16,
    port: u16,
    pid: u32,
}

/// `cache`: the in-memory session cache size (`None` = the default). `WXLOGIN_BENCH_BIN`
/// names another wxlogin binary to measure (an earlier release, for a before/after).
async fn start_wxlogin(dir: &std::path::Path, cache: Option<usize>) -> Wx {
    start_wxlogin_with(dir, cache, &[]).await
}

/// [`start_wxlogin`] with more environment (later settings win: another store, Redis).
async fn start_wxlogin_with(
    dir: &std::path::Path,
    cache: Option<usize>,
    extra: &[(&str, String)],
) -> Wx {
    let exe_var = std::env::var("WXLOGIN_BENCH_BIN").ok();
    let exe = exe_var.as_deref().unwrap_or(env!("CARGO_BIN_EXE_wxlogin"));
    let (sim, sim_proc) = start_simulator(exe).await;
    let port = free_port();
    let server = spawn_on(
        SERVER_CORE,
        exe,
        &["serve"],
        &[
            ("WXLOGIN_CONFIG", "/dev/null".into()),
            ("WXLOGIN_LISTEN", format!("127.0.0.1:{port}")),
            ("WXLOGIN_APPID", "wxbench".into()),
            ("WXLOGIN_SECRET", "bench-secret".into()),
            (
                "WXLOGIN_DATABASE_URL",
                format!("sqlite://{}/bench.db", dir.display()),
            ),
            ("WXLOGIN_WECHAT_API_BASE", format!("http://127.0.0.1:{sim}")),
            // A fixed bench key (base64 of 32 bytes of 7): session keys are sealed as in production.
            (
                "WXLOGIN_DATA_KEY",
                "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".into(),
            ),
            ("WXLOGIN_RATE_LIMIT_LOGIN", "off".into()),
            (
                "WXLOGIN_SESSION_CACHE_SIZE",
                cache.map_or(String::new(), |n| n.to_string()),
            ),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        .collect::<Vec<_>>(),
    );
    wait_up(port).await;
    let pid = server.0.id();
    Wx {
        _sim: sim_proc,
        _server: server,
        sim,
        port,
        pid,
    }
}

/// The hello ceiling (this bench binary re-executed) on the server's core: its port and process.
async fn start_hello() -> (u16, Proc) {
    let exe = std::env::current_exe().unwrap();
    let port = free_port();
    let hello = spawn_on(
        SERVER_CORE,
        exe.to_str().unwrap(),
        &["hello-server", &port.to_string()],
        &[],
    );
    wait_up(port).await;
    (port, hello)
}

/// The login ceiling on the server's core, with a simulator of its own: its port, the
/// simulator's port, and both processes.
async fn start_login_ceiling() -> (u16, u16, Proc, Proc) {
    let exe = std::env::current_exe().unwrap();
    let (sim, sim_proc) = start_simulator(env!("CARGO_BIN_EXE_wxlogin")).await;
    let port = free_port();
    let server = spawn_on(
        SERVER_CORE,
        exe.to_str().unwrap(),
        &["login-ceiling", &port.to_string(), &sim.to_string()],
        &[],
    );
    wait_up(port).await;
    (port, sim, server, sim_proc)
}

/// `exe simulator` with the bench's app, on the others' core: its port and process.
async fn start_simulator(exe: &str) -> (u16, Proc) {
    let sim = free_port();
    let proc = spawn_on(
        OTHERS_CORE,
        exe,
        &[
            "simulator",
            "--listen",
            &format!("127.0.0.1:{sim}"),
            "--app",
            "wxbench:bench-secret",
        ],
        &[("RUST_LOG", "warn".into())],
    );
    wait_up(sim).await;
    (sim, proc)
}

/// The PostgreSQL + Redis scenario's servers: `WXLOGIN_BENCH_POSTGRES` (default the machine's
/// `postgres://postgres@127.0.0.1:5432/test`) and `WXLOGIN_BENCH_REDIS` (default
/// `redis://127.0.0.1:6379`). `None` (the scenario is skipped) when either does not answer.
async fn postgres_and_redis() -> Option<(String, String)> {
    let pg = std::env::var("WXLOGIN_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis =
        std::env::var("WXLOGIN_BENCH_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let admin = sqlx::PgPool::connect(&pg).await.ok()?;
    let redis_up = redis::Client::open(redis.as_str())
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .is_ok();
    if !redis_up {
        return None;
    }
    let name = format!("wxl_bench_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin)
        .await
        .ok()?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .ok()?;
    admin.close().await;
    let mut url = url::Url::parse(&pg).ok()?;
    url.set_path(&name);
    Some((url.to_string(), redis))
}

/// Drops the scenario's database (connecting to the server's `postgres` database to do it).
async fn drop_database(url: &str) {
    let Ok(mut admin) = url::Url::parse(url) else {
        return;
    };
    let name = admin.path().trim_start_matches('/').to_owned();
    admin.set_path("/postgres");
    if let Ok(pool) = sqlx::PgPool::connect(admin.as_str()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
        pool.close().await;
    }
}

/// With `--pin`, moves PostgreSQL's postmaster (so the backends it forks from now on) and Redis
/// to `cores`; the bench sets them back to both cores when it is done.
fn pin_services(cores: &str) {
    if !pinned() {
        return;
    }
    for (name, all_threads) in [("postgres", false), ("redis-server", true)] {
        let oldest = Command::new("pgrep").args(["-o", "-x", name]).output();
        if let Ok(out) = oldest {
            let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !pid.is_empty() {
                let mut args = vec!["-p", "-c", cores, pid.as_str()];
                if all_threads {
                    args.insert(0, "-a");
                }
                let _ = Command::new("taskset")
                    .args(&args)
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }
}

/// Logs `n` fresh codes in, one at a time, and returns their tokens.
async fn login_tokens(wx: &Wx, n: usize) -> Arc<Vec<String>> {
    login_tokens_for(wx, n, "bench").await
}

async fn login_tokens_for(wx: &Wx, n: usize, who: &'static str) -> Arc<Vec<String>> {
    let mut tokens = Vec::with_capacity(n);
    for c in issue_codes_for(wx.sim, n, who).await {
        let v = post_json(wx.port, "/login", json!({ "code": c })).await;
        tokens.push(v["data"]["token"].as_str().unwrap().to_owned());
    }
    Arc::new(tokens)
}

/// [`TOKENS`] sessions of users named `<who>-…`.
async fn tokens_for(wx: &Wx, who: &'static str) -> Arc<Vec<String>> {
    login_tokens_for(wx, TOKENS, who).await
}

/// `GET /me` over `tokens`, on a server started with the given session cache size.
async fn me(wx: &Wx, tokens: &Arc<Vec<String>>) -> Outcome {
    let load = Load::Get {
        path: "/me".into(),
        tokens: tokens.clone(),
    };
    // A pass first: after a restart the first checks fill the cache.
    drive(
        wx.port,
        load.clone(),
        CONNS,
        1 + tokens.len() as u64 / 5_000,
    )
    .await;
    drive(wx.port, load, CONNS, SECS).await
}

async fn run() {
    match std::env::var("WXLOGIN_BENCH_ONLY").as_deref() {
        Ok("scale") => return run_scale().await,
        Ok("goals") => return run_goals().await,
        Ok("sessions") => return run_sessions().await,
        Ok("soak") => return run_soak().await,
        Ok("profile") => return run_profile().await,
        _ => {}
    }
    let dir = tempfile::tempdir().unwrap();
    let (hello_port, hello) = start_hello().await;
    let ceiling = drive(
        hello_port,
        Load::Get {
            path: "/".into(),
            tokens: Arc::new(Vec::new()),
        },
        CONNS,
        SECS,
    )
    .await;
    drop(hello);

    // The login ceiling: one pooled upstream call per login, nothing stored.
    let (login_ceiling_port, sim, login_ceiling_server, ceiling_sim) = start_login_ceiling().await;
    let login_ceiling = drive(
        login_ceiling_port,
        Load::Login {
            codes: Arc::new(std::sync::Mutex::new(issue_codes(sim, 60_000).await)),
        },
        CONNS,
        SECS,
    )
    .await;
    drop(login_ceiling_server);
    drop(ceiling_sim);

    let wx = start_wxlogin(dir.path(), None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_mb(wx.pid);

    // Logins with unique codes (each is a WeChat exchange + a durable SQLite commit).
    let codes = Arc::new(std::sync::Mutex::new(issue_codes(wx.sim, 40_000).await));
    let login = drive(
        wx.port,
        Load::Login {
            codes: codes.clone(),
        },
        CONNS,
        SECS,
    )
    .await;
    let sessions_small = 40_000 - codes.lock().unwrap().len() + TOKENS;

    // Token checks over TOKENS distinct sessions: from memory (the default), then from SQLite.
    let tokens = login_tokens(&wx, TOKENS).await;
    let me_small = me(&wx, &tokens).await;

    // The same on PostgreSQL + Redis (the scale-out path), if they answer.
    let scale_out = match postgres_and_redis().await {
        Some((pg, redis)) => {
            pin_services(OTHERS_CORE);
            let pg_wx = start_wxlogin_with(
                dir.path(),
                None,
                &[
                    ("WXLOGIN_DATABASE_URL", pg.clone()),
                    ("WXLOGIN_REDIS_URL", redis),
                    (
                        "WXLOGIN_REDIS_PREFIX",
                        format!("wxl_bench_{}:", std::process::id()),
                    ),
                ],
            )
            .await;
            let codes = Arc::new(std::sync::Mutex::new(issue_codes(pg_wx.sim, 40_000).await));
            let pg_login = drive(pg_wx.port, Load::Login { codes }, CONNS, SECS).await;
            let pg_tokens = login_tokens(&pg_wx, TOKENS).await;
            let pg_me = me(&pg_wx, &pg_tokens).await;
            drop(pg_wx);
            pin_services("0-1");
            drop_database(&pg).await;
            Some((pg_login, pg_me))
        }
        None => None,
    };

    // Login at 50 ms simulated WeChat latency, against the ideal connections ÷ latency.
    post_json(
        wx.sim,
        "/_sim/faults",
        json!({ "api": "/sns/jscode2session", "delay_ms": 50, "times": 1_000_000 }),
    )
    .await;
    let slow_conns = 32;
    let slow = drive(
        wx.port,
        Load::Login {
            codes: Arc::new(std::sync::Mutex::new(issue_codes(wx.sim, 20_000).await)),
        },
        slow_conns,
        SECS,
    )
    .await;
    let ideal = slow_conns as f64 / 0.050;
    drop(wx);
    if std::env::var("WXLOGIN_BENCH_ONLY").as_deref() == Ok("login") {
        println!(
            "\n| login-only run{} | requests/s | vs ceiling | p50 ms | p99 ms |\n|---|---|---|---|---|\n\
             | hyper hello (ceiling) | {:.0} | 100 % | {:.2} | {:.2} |\n\
             | login ceiling (one pooled upstream call, no store) | {:.0} | {:.1} % | {:.2} | {:.2} |\n\
             | POST /login, unique codes, SQLite durable | {:.0} | {:.1} % ({:.1} % of login ceiling) | {:.2} | {:.2} |\n\
             | GET /me, {TOKENS} tokens, session cache | {:.0} | {:.1} % | {:.2} | {:.2} |\n\
             | POST /login, WeChat +50 ms, {slow_conns} conns | {:.0} | {:.1} % of ideal | {:.2} | {:.2} |",
            pin_note(),
            ceiling.rps, ceiling.p50_ms, ceiling.p99_ms,
            login_ceiling.rps, 100.0 * login_ceiling.rps / ceiling.rps, login_ceiling.p50_ms, login_ceiling.p99_ms,
            login.rps, 100.0 * login.rps / ceiling.rps, 100.0 * login.rps / login_ceiling.rps, login.p50_ms, login.p99_ms,
            me_small.rps, 100.0 * me_small.rps / ceiling.rps, me_small.p50_ms, me_small.p99_ms,
            slow.rps, 100.0 * slow.rps / ideal, slow.p50_ms, slow.p99_ms,
        );
        print_scale_out(scale_out.as_ref(), &login, &me_small);
        return;
    }

    let wx = start_wxlogin(dir.path(), Some(0)).await;
    let me_small_store = me(&wx, &tokens).await;
    drop(wx);

    // 1M more sessions: RSS and token-check cost.
    let wide = Arc::new(
        add_sessions(
            &format!("sqlite://{}/bench.db", dir.path().display()),
            1_000_000,
            wxlogin::config::DEFAULT_SESSION_CACHE_SIZE,
        )
        .await,
    );
    let wx = start_wxlogin(dir.path(), None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_1m_idle = rss_mb(wx.pid);
    let me_1m = me(&wx, &tokens).await;
    let rss_1m_loaded = rss_mb(wx.pid);
    // As many distinct sessions as the default cache holds: the cache full.
    let me_wide = me(&wx, &wide).await;
    let rss_cache_full = rss_mb(wx.pid);
    drop(wx);
    let wx = start_wxlogin(dir.path(), Some(0)).await;
    let me_1m_store = me(&wx, &tokens).await;
    drop(wx);

    let ratio = |x: f64| format!("{:.1} %", 100.0 * x / ceiling.rps);
    println!(
        "\n## Results ({} s per measurement, {CONNS} keep-alive connections, {} cores{})\n",
        SECS,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        pin_note()
    );
    println!("| measurement | requests/s | vs ceiling | p50 ms | p99 ms | non-200 |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, o: &Outcome, vs: String| {
        println!(
            "| {name} | {:.0} | {vs} | {:.2} | {:.2} | {} |",
            o.rps, o.p50_ms, o.p99_ms, o.errors
        )
    };
    row("hyper hello (ceiling)", &ceiling, "100 %".into());
    row(
        "login ceiling (one pooled upstream call, no store)",
        &login_ceiling,
        ratio(login_ceiling.rps),
    );
    row(
        "POST /login, unique codes, SQLite durable",
        &login,
        format!(
            "{} ({:.1} % of login ceiling)",
            ratio(login.rps),
            100.0 * login.rps / login_ceiling.rps
        ),
    );
    let small = format!("{}k", sessions_small / 1000);
    row(
        &format!("GET /me, {small} sessions, {TOKENS} tokens, session cache (default)"),
        &me_small,
        ratio(me_small.rps),
    );
    row(
        &format!("GET /me, 1M sessions, {TOKENS} tokens, session cache (default)"),
        &me_1m,
        ratio(me_1m.rps),
    );
    row(
        &format!(
            "GET /me, 1M sessions, {} tokens (cache full), session cache (default)",
            wide.len()
        ),
        &me_wide,
        ratio(me_wide.rps),
    );
    row(
        &format!("GET /me, {small} sessions, no cache (SQLite reads)"),
        &me_small_store,
        ratio(me_small_store.rps),
    );
    row(
        "GET /me, 1M sessions, no cache (SQLite reads)",
        &me_1m_store,
        ratio(me_1m_store.rps),
    );
    row(
        &format!("POST /login, WeChat +50 ms, {slow_conns} conns"),
        &slow,
        format!("{:.1} % of ideal {ideal:.0}/s", 100.0 * slow.rps / ideal),
    );
    println!("\n| memory | RSS |\n|---|---|");
    println!("| idle, fresh start | {rss_idle:.1} MB |");
    println!("| idle, 1M sessions in the store | {rss_1m_idle:.1} MB |");
    println!("| after the /me run on 1M sessions ({TOKENS} cached) | {rss_1m_loaded:.1} MB |");
    println!(
        "| after {} distinct sessions checked (session cache full) | {rss_cache_full:.1} MB |",
        wide.len()
    );
    println!(
        "\ntoken-check cost, 1M vs {small} sessions: {:.2}x from the cache, {:.2}x from SQLite",
        me_small.rps / me_1m.rps.max(1.0),
        me_small_store.rps / me_1m_store.rps.max(1.0)
    );
    print_scale_out(scale_out.as_ref(), &login, &me_small);
}

/// The PostgreSQL + Redis rows, as ratios to the SQLite figures of the same run.
fn print_scale_out(scale_out: Option<&(Outcome, Outcome)>, login: &Outcome, me: &Outcome) {
    let Some((pg_login, pg_me)) = scale_out else {
        println!("\n(PostgreSQL + Redis scenario skipped: WXLOGIN_BENCH_POSTGRES / WXLOGIN_BENCH_REDIS did not answer)");
        return;
    };
    println!(
        "\n| PostgreSQL + Redis, one instance | requests/s | vs SQLite, same run | p50 ms | p99 ms | non-200 |\n|---|---|---|---|---|---|\n\
         | POST /login, unique codes | {:.0} | {:.1} % | {:.2} | {:.2} | {} |\n\
         | GET /me, {TOKENS} tokens (Redis session cache) | {:.0} | {:.1} % | {:.2} | {:.2} | {} |",
        pg_login.rps, 100.0 * pg_login.rps / login.rps.max(1.0), pg_login.p50_ms, pg_login.p99_ms, pg_login.errors,
        pg_me.rps, 100.0 * pg_me.rps / me.rps.max(1.0), pg_me.p50_ms, pg_me.p99_ms, pg_me.errors,
    );
}

// ---------------------------------------------------------------------------------------------
// The scale-out scenarios: `WXLOGIN_BENCH_ONLY=scale`, `sessions` and `soak`.

/// Logins (unique codes), `GET /me` and `GET /auth` (the bare token check nginx asks for), on a
/// server whose simulator is `sim`, through `port` (the server itself, or nginx before it).
async fn three(port: u16, sim: u16, direct: u16, secs: u64) -> [Outcome; 3] {
    let codes = Arc::new(std::sync::Mutex::new(issue_codes(sim, 40_000).await));
    let login = drive(port, Load::Login { codes }, CONNS, secs).await;
    let mut tokens = Vec::with_capacity(TOKENS);
    for c in issue_codes(sim, TOKENS).await {
        let v = post_json(direct, "/login", json!({ "code": c })).await;
        tokens.push(v["data"]["token"].as_str().unwrap().to_owned());
    }
    let tokens = Arc::new(tokens);
    let get = |path: &str| Load::Get {
        path: path.into(),
        tokens: tokens.clone(),
    };
    drive(port, get("/me"), CONNS, 2).await;
    let me = drive(port, get("/me"), CONNS, secs).await;
    let auth = drive(port, get("/auth"), CONNS, secs).await;
    [login, me, auth]
}

/// nginx (Debian's) on `port`, balancing over `upstreams` with keep-alive, on the others' core.
fn start_nginx(dir: &std::path::Path, port: u16, upstreams: &[u16]) -> Option<Proc> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let servers: String = upstreams
        .iter()
        .map(|p| format!("server 127.0.0.1:{p};"))
        .collect();
    let d = dir.display();
    let conf = format!(
        "worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/nginx-error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300s;\n\
           client_body_temp_path {d}/nb; proxy_temp_path {d}/np;\n\
           fastcgi_temp_path {d}/nf; uwsgi_temp_path {d}/nu; scgi_temp_path {d}/ns;\n\
           upstream wx {{ {servers} keepalive 64; keepalive_requests 10000000; }}\n\
           server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://wx;\n\
             proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }} }}\n"
    );
    let path = dir.join("nginx-bench.conf");
    std::fs::write(&path, conf).ok()?;
    Some(spawn_on(
        OTHERS_CORE,
        nginx,
        &["-c", path.to_str().unwrap(), "-p", dir.to_str().unwrap()],
        &[],
    ))
}

/// Rounds of the scale run's two direct rows, taken in turn (SQLite, PostgreSQL + Redis, SQLite,
/// ...), each metric `SCALE_SECS` long: a machine whose speed drifts during the run (a noisy
/// neighbour) slows both rows alike, where one long pass each would pin the drift on one.
const SCALE_ROUNDS: usize = 3;
const SCALE_SECS: u64 = 4;

/// The mean of rounds: rates and percentiles averaged, errors added.
fn mean(rounds: &[[Outcome; 3]]) -> [Outcome; 3] {
    let n = rounds.len().max(1) as f64;
    std::array::from_fn(|m| Outcome {
        rps: rounds.iter().map(|r| r[m].rps).sum::<f64>() / n,
        p50_ms: rounds.iter().map(|r| r[m].p50_ms).sum::<f64>() / n,
        p99_ms: rounds.iter().map(|r| r[m].p99_ms).sum::<f64>() / n,
        errors: rounds.iter().map(|r| r[m].errors).sum(),
    })
}

/// `WXLOGIN_BENCH_ONLY=goals`: the scale issue's four ratios in one run, measured in
/// `WXLOGIN_BENCH_ROUNDS` (5) interleaved rounds of [`SCALE_SECS`] per measurement, so that the
/// machine's drift within a run (the hello ceiling alone moved 88k–120k/s between runs here)
/// falls on both sides of each ratio alike. Every server is started first and stays up: hello,
/// the login ceiling (with a simulator of its own), wxlogin on SQLite, and on PostgreSQL + Redis
/// when they answer. Each round measures hello, the login ceiling, SQLite logins, SQLite `/me`,
/// PostgreSQL + Redis logins and `/me`; the report gives each round's ratios and their mean.
async fn run_goals() {
    let rounds: usize = std::env::var("WXLOGIN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let (hello_port, _hello) = start_hello().await;
    let (login_ceiling_port, ceiling_sim, _login_ceiling, _ceiling_sim_proc) =
        start_login_ceiling().await;
    let wx = start_wxlogin(dir.path(), None).await;
    // Users of their own, so that the rounds' logins never push these sessions over the cap.
    let tokens = tokens_for(&wx, "me").await;
    let pg = postgres_and_redis().await;
    let pg_wx = match &pg {
        Some((pg, redis)) => {
            pin_services(OTHERS_CORE);
            let env = [
                ("WXLOGIN_DATABASE_URL", pg.clone()),
                ("WXLOGIN_REDIS_URL", redis.clone()),
                (
                    "WXLOGIN_REDIS_PREFIX",
                    format!("wxl_bench_{}:", std::process::id()),
                ),
            ];
            let a = start_wxlogin_with(dir.path(), None, &env).await;
            let tokens = tokens_for(&a, "me").await;
            Some((a, tokens))
        }
        None => {
            println!("(PostgreSQL + Redis did not answer: their ratio is not measured)");
            None
        }
    };
    let me_load = |tokens: &Arc<Vec<String>>| Load::Get {
        path: "/me".into(),
        tokens: tokens.clone(),
    };
    // Fill the caches once.
    drive(wx.port, me_load(&tokens), CONNS, 1).await;
    if let Some((a, t)) = &pg_wx {
        drive(a.port, me_load(t), CONNS, 1).await;
    }
    let codes = |sim: u16, n: usize| async move {
        Load::Login {
            codes: Arc::new(std::sync::Mutex::new(issue_codes(sim, n).await)),
        }
    };
    // hello, login ceiling, SQLite login, SQLite /me, PG login, PG /me.
    let mut all: Vec<[f64; 6]> = Vec::new();
    let mut errors = 0;
    for round in 1..=rounds {
        let mut r = [0.0; 6];
        let mut take = |i: usize, o: Outcome| {
            r[i] = o.rps;
            errors += o.errors;
        };
        let hello = Load::Get {
            path: "/".into(),
            tokens: Arc::new(Vec::new()),
        };
        take(0, drive(hello_port, hello, CONNS, SCALE_SECS).await);
        let load = codes(ceiling_sim, 160_000).await;
        take(1, drive(login_ceiling_port, load, CONNS, SCALE_SECS).await);
        let load = codes(wx.sim, 50_000).await;
        take(2, drive(wx.port, load, CONNS, SCALE_SECS).await);
        take(3, drive(wx.port, me_load(&tokens), CONNS, SCALE_SECS).await);
        if let Some((a, t)) = &pg_wx {
            let load = codes(a.sim, 40_000).await;
            take(4, drive(a.port, load, CONNS, SCALE_SECS).await);
            take(5, drive(a.port, me_load(t), CONNS, SCALE_SECS).await);
        }
        println!(
            "round {round}: hello {:.0}, login ceiling {:.0}, SQLite login {:.0} / me {:.0}, \
             PostgreSQL + Redis login {:.0} / me {:.0} per s",
            r[0], r[1], r[2], r[3], r[4], r[5]
        );
        all.push(r);
    }
    drop(wx);
    if let Some((a, _)) = pg_wx {
        drop(a);
        pin_services("0-1");
    }
    if let Some((url, _)) = &pg {
        drop_database(url).await;
    }
    // The four goals' ratios (per cent), per round.
    let ratios: Vec<[f64; 4]> = all
        .iter()
        .map(|r| {
            [
                100.0 * r[2] / r[1],
                100.0 * r[3] / r[0],
                100.0 * r[4] / r[2],
                100.0 * r[5] / r[3],
            ]
        })
        .collect();
    let mean_of = |i: usize| ratios.iter().map(|r| r[i]).sum::<f64>() / ratios.len().max(1) as f64;
    let range = |i: usize| {
        let lo = ratios.iter().map(|r| r[i]).fold(f64::INFINITY, f64::min);
        let hi = ratios
            .iter()
            .map(|r| r[i])
            .fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.1}–{hi:.1} %")
    };
    let met = |i: usize, goal: f64| if mean_of(i) >= goal { "yes" } else { "no" };
    println!(
        "\n| goal ({rounds} interleaved rounds of {SCALE_SECS} s{}) | mean | rounds | goal | met |\n|---|---|---|---|---|\n\
         | SQLite logins vs login ceiling | {:.1} % | {} | ≥ 25 % | {} |\n\
         | SQLite `GET /me` vs hello | {:.1} % | {} | ≥ 50 % | {} |\n\
         | PostgreSQL + Redis logins vs SQLite | {:.1} % | {} | ≥ 50 % | {} |\n\
         | PostgreSQL + Redis `GET /me` vs SQLite | {:.1} % | {} | ≥ 80 % | {} |\n\
         errors (non-200 answers): {errors}",
        pin_note(),
        mean_of(0), range(0), met(0, 25.0),
        mean_of(1), range(1), met(1, 50.0),
        mean_of(2), range(2), met(2, 50.0),
        mean_of(3), range(3), met(3, 80.0),
    );
}

/// `WXLOGIN_BENCH_ONLY=profile`: one load on one server, long enough to profile it. Starts
/// wxlogin on SQLite (on PostgreSQL + Redis with `WXLOGIN_BENCH_PROFILE_STORE=postgres`), prints
/// its process id, waits 3 s (attach `perf record -p PID` then), and drives
/// `WXLOGIN_BENCH_PROFILE` (`me`, the default, or `login`) for `WXLOGIN_BENCH_PROFILE_SECS` (20).
async fn run_profile() {
    let load_kind = std::env::var("WXLOGIN_BENCH_PROFILE").unwrap_or_else(|_| "me".into());
    let secs: u64 = std::env::var("WXLOGIN_BENCH_PROFILE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let pg = match std::env::var("WXLOGIN_BENCH_PROFILE_STORE").as_deref() {
        Ok("postgres") => Some(
            postgres_and_redis()
                .await
                .expect("PostgreSQL and Redis must answer"),
        ),
        _ => None,
    };
    let env: Vec<(&str, String)> = match &pg {
        Some((pg, redis)) => {
            pin_services(OTHERS_CORE);
            vec![
                ("WXLOGIN_DATABASE_URL", pg.clone()),
                ("WXLOGIN_REDIS_URL", redis.clone()),
                (
                    "WXLOGIN_REDIS_PREFIX",
                    format!("wxl_bench_{}:", std::process::id()),
                ),
            ]
        }
        None => Vec::new(),
    };
    let wx = start_wxlogin_with(dir.path(), None, &env).await;
    let load = if load_kind == "login" {
        // Enough codes for the run at well above this machine's rate.
        let codes = issue_codes(wx.sim, 12_000 * secs as usize).await;
        Load::Login {
            codes: Arc::new(std::sync::Mutex::new(codes)),
        }
    } else {
        let tokens = tokens_for(&wx, "me").await;
        let load = Load::Get {
            path: "/me".into(),
            tokens,
        };
        drive(wx.port, load.clone(), CONNS, 1).await;
        load
    };
    println!("pid {} ({load_kind}): starting in 3 s", wx.pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = drive(wx.port, load, CONNS, secs).await;
    println!(
        "{load_kind}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
        out.rps, out.p50_ms, out.p99_ms, out.errors
    );
    drop(wx);
    if let Some((url, _)) = &pg {
        pin_services("0-1");
        drop_database(url).await;
    }
}

/// `WXLOGIN_BENCH_ONLY=scale`: SQLite and PostgreSQL + Redis with one instance each (in turns,
/// [`SCALE_ROUNDS`] rounds), then one instance behind nginx, and two instances behind nginx (one
/// port), in one run.
async fn run_scale() {
    let dir = tempfile::tempdir().unwrap();
    let wx = start_wxlogin(dir.path(), None).await;
    let Some((pg, redis)) = postgres_and_redis().await else {
        let sqlite = three(wx.port, wx.sim, wx.port, SECS).await;
        println!(
            "(scale scenario skipped: WXLOGIN_BENCH_POSTGRES / WXLOGIN_BENCH_REDIS did not answer; \
             SQLite: {:.0} logins/s, {:.0} /me/s, {:.0} /auth/s)",
            sqlite[0].rps, sqlite[1].rps, sqlite[2].rps
        );
        return;
    };
    pin_services(OTHERS_CORE);
    let env = [
        ("WXLOGIN_DATABASE_URL", pg.clone()),
        ("WXLOGIN_REDIS_URL", redis),
        (
            "WXLOGIN_REDIS_PREFIX",
            format!("wxl_bench_{}:", std::process::id()),
        ),
    ];
    let a = start_wxlogin_with(dir.path(), None, &env).await;
    let (mut sqlite_rounds, mut pg_rounds) = (Vec::new(), Vec::new());
    for _ in 0..SCALE_ROUNDS {
        sqlite_rounds.push(three(wx.port, wx.sim, wx.port, SCALE_SECS).await);
        pg_rounds.push(three(a.port, a.sim, a.port, SCALE_SECS).await);
    }
    drop(wx);
    for (name, rounds) in [
        ("SQLite", &sqlite_rounds),
        ("PostgreSQL + Redis", &pg_rounds),
    ] {
        let each: Vec<String> = rounds
            .iter()
            .map(|r| format!("{:.0}/{:.0}/{:.0}", r[0].rps, r[1].rps, r[2].rps))
            .collect();
        println!(
            "{name}, each round (logins/me/auth per s): {}",
            each.join(", ")
        );
    }
    let sqlite = mean(&sqlite_rounds);
    let one = mean(&pg_rounds);
    let front = free_port();
    let mut rows = vec![
        ("SQLite, one instance (mean of rounds)", sqlite),
        ("PostgreSQL + Redis, one instance (mean of rounds)", one),
    ];
    if let Some(nginx) = start_nginx(dir.path(), front, &[a.port]) {
        wait_up(front).await;
        rows.push((
            "PostgreSQL + Redis, one instance behind nginx",
            three(front, a.sim, a.port, SECS).await,
        ));
        drop(nginx);
        let mut env_b = env.to_vec();
        env_b.push((
            "WXLOGIN_WECHAT_API_BASE",
            format!("http://127.0.0.1:{}", a.sim),
        ));
        let b = start_wxlogin_with(dir.path(), None, &env_b).await;
        let front = free_port();
        let nginx = start_nginx(dir.path(), front, &[a.port, b.port]).unwrap();
        wait_up(front).await;
        rows.push((
            "PostgreSQL + Redis, two instances behind nginx (one port)",
            three(front, a.sim, a.port, SECS).await,
        ));
        drop(nginx);
        drop(b);
    } else {
        println!("(nginx not installed: the rows behind nginx are skipped)");
    }
    drop(a);
    pin_services("0-1");
    drop_database(&pg).await;
    println!(
        "\n| scale run{} | logins/s | vs SQLite | `GET /me`/s | vs SQLite | `GET /auth`/s | vs SQLite | errors |\n\
         |---|---|---|---|---|---|---|---|",
        pin_note()
    );
    let base = &rows[0].1;
    for (name, [login, me, auth]) in &rows {
        let pct = |x: &Outcome, b: &Outcome| 100.0 * x.rps / b.rps.max(1.0);
        println!(
            "| {name} | {:.0} | {:.1} % | {:.0} | {:.1} % | {:.0} | {:.1} % | {} |",
            login.rps,
            pct(login, &base[0]),
            me.rps,
            pct(me, &base[1]),
            auth.rps,
            pct(auth, &base[2]),
            login.errors + me.errors + auth.errors
        );
    }
}

/// The token of the `i`th session the sessions scenario inserts: `wxl_` and 43 digits.
fn bench_token(i: u64) -> String {
    format!("wxl_{i:0>43}")
}

/// `WXLOGIN_BENCH_ONLY=sessions`: token checks (`GET /auth`, PostgreSQL without Redis, so every
/// check is an index lookup) with 1k, 1M and 10M stored sessions (`WXLOGIN_BENCH_SESSIONS`
/// overrides the largest). Checks pick 20,000 sessions spread over the whole table.
async fn run_sessions() {
    let largest: u64 = std::env::var("WXLOGIN_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let Some((pg, _)) = postgres_and_redis().await else {
        println!("(sessions scenario skipped: PostgreSQL did not answer)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    pin_services(OTHERS_CORE);
    let wx = start_wxlogin_with(dir.path(), None, &[("WXLOGIN_DATABASE_URL", pg.clone())]).await;
    // A user with an identity for the sessions to belong to (codes are minted eight at a time).
    login_tokens(&wx, 8).await;
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let (user, identity): (i64, i64) =
        sqlx::query_as("SELECT user_id, id FROM identities ORDER BY id LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut stored: u64 = 0;
    let mut rows = Vec::new();
    for target in [1_000, 1_000_000, largest] {
        let fill_started = Instant::now();
        while stored < target {
            let upto = (stored + 1_000_000).min(target);
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_id, identity_id, platform, appid, session_key, \
                 created_at, last_seen_at, expires_at) \
                 SELECT encode(sha256(convert_to('wxl_' || lpad(g::text, 43, '0'), 'UTF8')), 'hex'), \
                 $1, $2, 'weixin', 'wxbench', 'AAAAAAAAAAAAAAAAAAAAAA==', $3, $4, $5 \
                 FROM generate_series($6::bigint, $7::bigint) g",
            )
            .bind(user)
            .bind(identity)
            .bind(now)
            // Seen "an hour from now": no check during the run is due to touch it (a touch is a
            // write, and the first check of every row filled early would measure writes).
            .bind(now + 3_600_000)
            .bind(now + 7 * 86_400_000)
            .bind(stored as i64 + 1)
            .bind(upto as i64)
            .execute(&pool)
            .await
            .unwrap();
            stored = upto;
        }
        let fill_secs = fill_started.elapsed().as_secs_f64();
        sqlx::query("VACUUM ANALYZE sessions")
            .execute(&pool)
            .await
            .unwrap();
        let size: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('sessions')")
            .fetch_one(&pool)
            .await
            .unwrap();
        // 20,000 sessions spread evenly over the table, in a scrambled order.
        let picks = 20_000.min(target);
        let step = target / picks;
        let mut tokens: Vec<String> = (0..picks).map(|k| bench_token(1 + k * step)).collect();
        let mut x: u64 = 88172645463325252;
        for i in (1..tokens.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            tokens.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let load = Load::Get {
            path: "/auth".into(),
            tokens: Arc::new(tokens),
        };
        drive(wx.port, load.clone(), CONNS, 2).await;
        let auth = drive(wx.port, load, CONNS, SECS).await;
        rows.push((target, auth, size, fill_secs));
    }
    drop(wx);
    pool.close().await;
    pin_services("0-1");
    drop_database(&pg).await;
    println!(
        "\n| stored sessions{} | `GET /auth`/s (PostgreSQL, no Redis) | vs 1k | p50 ms | p99 ms | errors | sessions table + indexes | filled in |\n\
         |---|---|---|---|---|---|---|---|",
        pin_note()
    );
    let first = rows[0].1.rps;
    for (n, o, size, secs) in &rows {
        println!(
            "| {n} | {:.0} | {:.1} % | {:.2} | {:.2} | {} | {:.0} MB | {secs:.0} s |",
            o.rps,
            100.0 * o.rps / first.max(1.0),
            o.p50_ms,
            o.p99_ms,
            o.errors,
            *size as f64 / 1048576.0
        );
    }
}

/// One request of the soak, as recorded: which kind, when it was sent (seconds into the run),
/// its latency, and whether it was answered 200.
struct Sample {
    login: bool,
    at: f64,
    micros: u32,
    ok: bool,
}

/// One constant-rate stream of the soak.
struct Stream {
    port: u16,
    sim: u16,
    /// Logins (each with a fresh simulator code), or `GET /me` over `tokens`.
    login: bool,
    tokens: Arc<Vec<String>>,
    /// Requests per second, spread over `workers` connections.
    rate: f64,
    workers: usize,
    start: Instant,
    until: Instant,
}

/// Runs `stream` until its end; each worker keeps its own schedule (a tick it missed while
/// waiting for an answer is skipped, and shows as a lower achieved rate).
async fn constant_rate(stream: Stream, samples: Arc<std::sync::Mutex<Vec<Sample>>>) {
    let Stream {
        port,
        sim,
        login,
        tokens,
        rate,
        workers,
        start,
        until,
    } = stream;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (tokens, samples) = (tokens.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let connect = |port: u16| async move {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let (send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                send
            };
            let mut send = connect(port).await;
            let mut sim_send = connect(sim).await;
            let period = Duration::from_secs_f64(workers as f64 / rate);
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + period.mul_f64(w as f64 / workers as f64),
                period,
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = w * 7919;
            let mut local = Vec::new();
            while Instant::now() < until {
                tick.tick().await;
                n += 1;
                let req = if login {
                    let body = json!({ "user": format!("soak-{w}-{}", n % 20_000) }).to_string();
                    let code_req = Request::post("/_sim/codes")
                        .header("host", "bench")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    let Ok(resp) = sim_send.send_request(code_req).await else {
                        break;
                    };
                    let v: Value = serde_json::from_slice(
                        &resp.into_body().collect().await.unwrap().to_bytes(),
                    )
                    .unwrap_or(Value::Null);
                    let code = v["code"].as_str().unwrap_or_default().to_owned();
                    Request::post("/login")
                        .header("host", "bench")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(json!({ "code": code }).to_string())))
                        .unwrap()
                } else {
                    Request::get("/me")
                        .header("host", "bench")
                        .header(
                            "authorization",
                            format!("Bearer {}", tokens[n % tokens.len()]),
                        )
                        .body(Full::new(Bytes::new()))
                        .unwrap()
                };
                let sent = Instant::now();
                let ok = match send.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == 200;
                        let _ = resp.into_body().collect().await;
                        ok
                    }
                    Err(_) => {
                        send = connect(port).await;
                        false
                    }
                };
                local.push(Sample {
                    login,
                    at: sent.duration_since(start).as_secs_f64(),
                    micros: sent.elapsed().as_micros().min(u32::MAX as u128) as u32,
                    ok,
                });
                if local.len() >= 4096 {
                    samples.lock().unwrap().append(&mut local);
                }
            }
            samples.lock().unwrap().append(&mut local);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Bytes the store holds on disk: the SQLite file with its `-wal`, or PostgreSQL's database.
async fn store_bytes(sqlite: &std::path::Path, pg: Option<&sqlx::PgPool>) -> (f64, f64) {
    match pg {
        Some(pool) => {
            let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(pool)
                .await
                .unwrap_or(0);
            (size as f64 / 1048576.0, 0.0)
        }
        None => {
            let len = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len()) as f64;
            let wal = sqlite.with_file_name("bench.db-wal");
            (len(sqlite.to_path_buf()) / 1048576.0, len(wal) / 1048576.0)
        }
    }
}

/// `WXLOGIN_BENCH_ONLY=soak`: `WXLOGIN_BENCH_SOAK_MINUTES` (30) at a constant rate — half the
/// maximum measured first, split evenly between logins and `GET /me` — on SQLite, or on
/// PostgreSQL + Redis with `WXLOGIN_BENCH_SOAK_STORE=postgres`. Reports, per minute, the
/// achieved rates, p50/p99 of each, errors, the server's RSS and the store's size, as a table
/// and as an SVG plot (`WXLOGIN_BENCH_SOAK_SVG`, default `target/soak.svg`).
async fn run_soak() {
    let minutes: u64 = std::env::var("WXLOGIN_BENCH_SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let on_pg = std::env::var("WXLOGIN_BENCH_SOAK_STORE").as_deref() == Ok("postgres");
    let dir = tempfile::tempdir().unwrap();
    let mut pg_url = None;
    let wx = if on_pg {
        let Some((pg, redis)) = postgres_and_redis().await else {
            println!("(soak on PostgreSQL skipped: it did not answer)");
            return;
        };
        pin_services(OTHERS_CORE);
        pg_url = Some(pg.clone());
        start_wxlogin_with(
            dir.path(),
            None,
            &[
                ("WXLOGIN_DATABASE_URL", pg),
                ("WXLOGIN_REDIS_URL", redis),
                (
                    "WXLOGIN_REDIS_PREFIX",
                    format!("wxl_soak_{}:", std::process::id()),
                ),
            ],
        )
        .await
    } else {
        start_wxlogin(dir.path(), None).await
    };
    let pool = match &pg_url {
        Some(url) => Some(sqlx::PgPool::connect(url).await.unwrap()),
        None => None,
    };
    let codes = Arc::new(std::sync::Mutex::new(issue_codes(wx.sim, 40_000).await));
    let login_max = drive(wx.port, Load::Login { codes }, CONNS, SECS).await;
    let tokens = login_tokens(&wx, TOKENS).await;
    let me_max = me(&wx, &tokens).await;
    let (login_rate, me_rate) = (login_max.rps / 4.0, me_max.rps / 4.0);
    eprintln!(
        "soak: maxima {:.0} logins/s, {:.0} /me/s; running {minutes} min at {login_rate:.0} logins/s + {me_rate:.0} /me/s",
        login_max.rps, me_max.rps
    );
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    let until = start + Duration::from_secs(60 * minutes);
    let stream = |login: bool, rate: f64| Stream {
        port: wx.port,
        sim: wx.sim,
        login,
        tokens: tokens.clone(),
        rate,
        workers: 16,
        start,
        until,
    };
    let logins = tokio::spawn(constant_rate(stream(true, login_rate), samples.clone()));
    let checks = tokio::spawn(constant_rate(stream(false, me_rate), samples.clone()));
    let db = dir.path().join("bench.db");
    let mut resources = Vec::new();
    for minute in 1..=minutes {
        tokio::time::sleep_until((start + Duration::from_secs(60 * minute)).into()).await;
        let (store, wal) = store_bytes(&db, pool.as_ref()).await;
        resources.push((rss_mb(wx.pid), store, wal));
    }
    let _ = logins.await;
    let _ = checks.await;
    drop(wx);
    if let Some(p) = pool {
        p.close().await;
    }
    if let Some(url) = &pg_url {
        pin_services("0-1");
        drop_database(url).await;
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    struct Row {
        login_rate: f64,
        me_rate: f64,
        login: (f64, f64),
        me: (f64, f64),
        errors: usize,
        rss: f64,
        store: f64,
        wal: f64,
    }
    let pct = |v: &mut Vec<u32>, p: f64| -> f64 {
        v.sort_unstable();
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .map_or(0.0, |m| *m as f64 / 1000.0)
    };
    let mut rows = Vec::new();
    for (m, &(rss, store, wal)) in resources.iter().enumerate() {
        let of = |login: bool| -> Vec<u32> {
            samples
                .iter()
                .filter(|s| s.login == login && s.ok && (s.at / 60.0) as usize == m)
                .map(|s| s.micros)
                .collect()
        };
        let (mut l, mut g) = (of(true), of(false));
        let errors = samples
            .iter()
            .filter(|s| !s.ok && (s.at / 60.0) as usize == m)
            .count();
        rows.push(Row {
            login_rate: l.len() as f64 / 60.0,
            me_rate: g.len() as f64 / 60.0,
            login: (pct(&mut l, 0.5), pct(&mut l, 0.99)),
            me: (pct(&mut g, 0.5), pct(&mut g, 0.99)),
            errors,
            rss,
            store,
            wal,
        });
    }
    let store_name = if on_pg {
        "PostgreSQL + Redis"
    } else {
        "SQLite"
    };
    println!(
        "\n### Soak: {minutes} min on {store_name}{} at {login_rate:.0} logins/s + {me_rate:.0} `GET /me`/s \
         (half of the measured {:.0} + {:.0}, split evenly)\n",
        pin_note(),
        login_max.rps,
        me_max.rps
    );
    println!(
        "| minute | logins/s | login p50 / p99 ms | `/me`/s | `/me` p50 / p99 ms | errors | RSS MB | {} |\n\
         |---|---|---|---|---|---|---|---|",
        if on_pg { "database MB" } else { "SQLite file / WAL MB" }
    );
    for (m, r) in rows.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.2} / {:.2} | {:.0} | {:.2} / {:.2} | {} | {:.1} | {} |",
            m + 1,
            r.login_rate,
            r.login.0,
            r.login.1,
            r.me_rate,
            r.me.0,
            r.me.1,
            r.errors,
            r.rss,
            if on_pg {
                format!("{:.0}", r.store)
            } else {
                format!("{:.1} / {:.1}", r.store, r.wal)
            }
        );
    }
    let svg_path = std::env::var("WXLOGIN_BENCH_SOAK_SVG")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/soak.svg").to_owned());
    let title = format!(
        "wxlogin soak: {minutes} min on {store_name}, {login_rate:.0} logins/s + {me_rate:.0} GET /me/s"
    );
    let series_ms: Vec<(&str, &str, Vec<f64>)> = vec![
        (
            "login p99",
            "#d62728",
            rows.iter().map(|r| r.login.1).collect(),
        ),
        (
            "login p50",
            "#ff9896",
            rows.iter().map(|r| r.login.0).collect(),
        ),
        ("/me p99", "#1f77b4", rows.iter().map(|r| r.me.1).collect()),
        ("/me p50", "#aec7e8", rows.iter().map(|r| r.me.0).collect()),
    ];
    let mut series_mb: Vec<(&str, &str, Vec<f64>)> = vec![
        ("RSS MB", "#2ca02c", rows.iter().map(|r| r.rss).collect()),
        (
            if on_pg {
                "database MB"
            } else {
                "SQLite file MB"
            },
            "#9467bd",
            rows.iter().map(|r| r.store).collect(),
        ),
    ];
    if !on_pg {
        series_mb.push(("WAL MB", "#8c564b", rows.iter().map(|r| r.wal).collect()));
    }
    let errors: Vec<f64> = rows.iter().map(|r| r.errors as f64).collect();
    std::fs::write(&svg_path, soak_svg(&title, &series_ms, &series_mb, &errors)).unwrap();
    println!("\nplot: {svg_path}");
}

/// Two panels over the minutes: latencies (ms) above, memory and store size (MB) below, with the
/// error count per minute written under the axis.
fn soak_svg(
    title: &str,
    ms: &[(&str, &str, Vec<f64>)],
    mb: &[(&str, &str, Vec<f64>)],
    errors: &[f64],
) -> String {
    let (w, panel, left, right, top) = (900.0, 260.0, 60.0, 170.0, 40.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"22\" font-size=\"14\">{}</text>\n",
        top + 2.0 * panel + 80.0,
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    let mut draw = |y0: f64, unit: &str, series: &[(&str, &str, Vec<f64>)]| {
        let n = series.first().map_or(0, |s| s.2.len()).max(2);
        let max = series
            .iter()
            .flat_map(|s| s.2.iter().copied())
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let x = |i: usize| left + (w - left - right) * i as f64 / (n - 1) as f64;
        let y = |v: f64| y0 + panel - 30.0 - (panel - 40.0) * v / max;
        for k in 0..=4 {
            let v = max * k as f64 / 4.0;
            out.push_str(&format!(
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{v:.1}</text>\n",
                w - right,
                y(v),
                y(v),
                left - 6.0,
                y(v) + 4.0
            ));
        }
        out.push_str(&format!(
            "<text x=\"12\" y=\"{:.1}\" fill=\"#555\" transform=\"rotate(-90 12 {:.1})\">{unit}</text>\n",
            y0 + panel / 2.0,
            y0 + panel / 2.0
        ));
        for (i, (name, color, values)) in series.iter().enumerate() {
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
                .collect();
            out.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n\
                 <rect x=\"{}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
                 <text x=\"{}\" y=\"{:.1}\">{name}</text>\n",
                points.join(" "),
                w - right + 12.0,
                y0 + 10.0 + 18.0 * i as f64,
                w - right + 30.0,
                y0 + 20.0 + 18.0 * i as f64
            ));
        }
        for i in 0..n {
            if i % 5 == 4 || i == 0 {
                out.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n",
                    x(i),
                    y0 + panel - 12.0,
                    i + 1
                ));
            }
        }
    };
    draw(top, "latency, ms", ms);
    draw(top + panel, "MB", mb);
    let total: f64 = errors.iter().sum();
    out.push_str(&format!(
        "<text x=\"{left}\" y=\"{:.1}\" fill=\"#555\">minute of the run →   errors in the whole run: {total:.0}</text>\n</svg>\n",
        top + 2.0 * panel + 20.0
    ));
    out
}
