//! Crash consistency: drive logins and logouts against the real binary, `kill -9` it at a random
//! moment, restart it, and check that every acknowledged token still works, every acknowledged
//! logout still holds, and no session lacks its user. SQLite in the SQLite pass, PostgreSQL in
//! the PostgreSQL pass. `WXLOGIN_CRASH_ITERATIONS` (default 50) sets the loop count.

use crate::services::free_port;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const APPID: &str = "wxcrash";
const SECRET: &str = "crash-secret";

#[derive(Clone, Copy, PartialEq)]
enum Logout {
    None,
    /// Sent, but the server died before answering: either outcome is correct.
    Unknown,
    Acked,
}

struct Tally {
    /// Tokens a 200 login handed out, and what became of a logout of it.
    acked: Vec<(String, Logout)>,
}

pub(crate) fn spawn(args: &[&str], env: &[(&str, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("WXLOGIN_CONFIG", "/dev/null")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

pub(crate) async fn wait_up(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{base} did not come up");
}

/// A small deterministic generator: the seed is printed, so a failing run can be repeated.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

async fn worker(
    http: reqwest::Client,
    base: String,
    sim: String,
    w: usize,
    tally: Arc<Mutex<Tally>>,
) {
    for i in 0.. {
        let wx: Value = match http
            .post(format!("{sim}/_sim/codes"))
            .json(&json!({ "appid": APPID, "user": format!("u{w}-{}", i % 7) }))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap(),
            Err(_) => return,
        };
        let Ok(r) = http
            .post(format!("{base}/login"))
            .json(&json!({ "code": wx["code"] }))
            .send()
            .await
        else {
            return;
        };
        let Ok(body) = r.json::<Value>().await else {
            return;
        };
        let Some(token) = body["data"]["token"].as_str().map(str::to_owned) else {
            continue;
        };
        let index = {
            let mut t = tally.lock().unwrap();
            t.acked.push((token.clone(), Logout::None));
            t.acked.len() - 1
        };
        if i % 3 == 0 {
            tally.lock().unwrap().acked[index].1 = Logout::Unknown;
            let Ok(r) = http
                .post(format!("{base}/logout"))
                .bearer_auth(&token)
                .send()
                .await
            else {
                return;
            };
            if r.status() == 200 && r.bytes().await.is_ok() {
                tally.lock().unwrap().acked[index].1 = Logout::Acked;
            }
        }
    }
}

async fn crash_loop(database_url: String) {
    let iterations: usize = std::env::var("WXLOGIN_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Lcg(seed);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let sim_port = free_port();
    let mut sim = spawn(
        &[
            "simulator",
            "--listen",
            &format!("127.0.0.1:{sim_port}"),
            "--app",
            &format!("{APPID}:{SECRET}"),
        ],
        &[],
    );
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    wait_sim(&http, &sim_url).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = vec![
        ("WXLOGIN_LISTEN", format!("127.0.0.1:{port}")),
        ("WXLOGIN_APPID", APPID.to_owned()),
        ("WXLOGIN_SECRET", SECRET.to_owned()),
        ("WXLOGIN_DATABASE_URL", database_url.clone()),
        ("WXLOGIN_DATA_KEY", crate::harness::DATA_KEY.to_owned()),
        ("WXLOGIN_WECHAT_API_BASE", sim_url.clone()),
        ("WXLOGIN_RATE_LIMIT_LOGIN", "off".to_owned()),
        // The loop logs a handful of users in many times; the per-user cap would revoke the
        // older sessions it checks (the cap has a test of its own).
        ("WXLOGIN_MAX_SESSIONS_PER_USER", "1000".to_owned()),
    ];
    let tally = Arc::new(Mutex::new(Tally { acked: Vec::new() }));
    let started = Instant::now();
    for _ in 0..iterations {
        let mut server = spawn(&["serve"], &env);
        wait_up(&http, &base).await;
        let workers: Vec<_> = (0..4)
            .map(|w| {
                tokio::spawn(worker(
                    http.clone(),
                    base.clone(),
                    sim_url.clone(),
                    w,
                    tally.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20 + rng.next(250))).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        for w in workers {
            w.await.unwrap();
        }
    }
    // One last start, then check everything that was ever acknowledged.
    let mut server = spawn(&["serve"], &env);
    wait_up(&http, &base).await;
    let acked = tally.lock().unwrap().acked.clone();
    let mut lost = 0;
    let mut resurrected = 0;
    let mut unknown = 0;
    for (token, logout) in &acked {
        let status = http
            .get(format!("{base}/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        match (logout, status.as_u16()) {
            (Logout::Unknown, 200 | 401) => unknown += 1,
            (Logout::None, 200) | (Logout::Acked, 401) => {}
            (Logout::None | Logout::Unknown, _) => lost += 1,
            (Logout::Acked, _) => resurrected += 1,
        }
    }
    let orphans = count_orphans(&database_url).await;
    let logouts = acked.iter().filter(|(_, l)| *l == Logout::Acked).count();
    eprintln!(
        "crash consistency ({}): seed {seed}, {iterations} kill -9 iterations in {:.0}s, {} acknowledged sessions, \
         {logouts} acknowledged logouts ({unknown} cut off mid-logout), {lost} lost sessions, {resurrected} resurrected logouts, {orphans} orphan sessions",
        database_url.split(':').next().unwrap(),
        started.elapsed().as_secs_f64(),
        acked.len(),
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = sim.kill();
    let _ = sim.wait();
    assert!(
        acked.len() >= iterations,
        "the loop acknowledged too little to mean anything"
    );
    assert_eq!((lost, resurrected, orphans), (0, 0, 0));
}

pub(crate) async fn wait_sim(http: &reqwest::Client, sim: &str) {
    for _ in 0..200 {
        if http.get(format!("{sim}/_sim/calls")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("simulator did not come up");
}

async fn count_orphans(url: &str) -> i64 {
    let sql =
        "SELECT COUNT(*) FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE u.id IS NULL";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(integrity, "ok");
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    }
}

#[tokio::test]
async fn kill_9_at_random_moments_loses_no_acknowledged_session_or_logout() {
    match std::env::var("WXLOGIN_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let name = format!("wxl_test_crash_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&base).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .unwrap();
            let mut url = url::Url::parse(&base).unwrap();
            url.set_path(&name);
            crash_loop(url.to_string()).await;
        }
        _ => {
            let dir = tempfile::tempdir().unwrap();
            crash_loop(format!("sqlite://{}/crash.db", dir.path().display())).await;
        }
    }
}
