//! Webhooks (SPEC §6): a real local receiver, the durable outbox, retries, dead rows and their
//! re-drive, per-user order, the signature — and, with the real binary, `kill -9` mid-delivery.
//! The in-process tests run on the harness's manual clock: a retry becomes due when the test
//! moves the clock past its backoff, so nothing here waits out a real backoff.

use crate::harness::*;
use crate::services::free_port;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const OPS: &str = "ops-token-0123456789abcdef";
const AUDIT: &str = "audit-token-0123456789abcdef";
const SECRET: &str = "webhook-secret-0123456789";

/// What the receiver got: one request.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: i64,
    pub kind: String,
    pub attempt: u32,
    pub signature: String,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// How the receiver answers a request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Answers 200 after this long (longer than the sender waits: a timeout).
    Slow(Duration),
}

#[derive(Default)]
struct Plan {
    next: VecDeque<Answer>,
    otherwise: Option<Answer>,
    got: Vec<Got>,
    /// Each answered request: its user, when it arrived and when it was answered.
    spans: Vec<(i64, Instant, Instant)>,
}

/// A business backend's webhook endpoint on a local port: records every request and answers
/// as planned (200 unless told otherwise).
pub struct Receiver {
    pub addr: SocketAddr,
    plan: Arc<Mutex<Plan>>,
    stop: CancellationToken,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let plan = Arc::new(Mutex::new(Plan::default()));
        let shared = plan.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let plan = shared.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let arrived = Instant::now();
                    let user = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|b| b["user_id"].as_i64())
                        .unwrap_or(-1);
                    let answer = {
                        let mut plan = plan.lock().unwrap();
                        plan.got.push(Got {
                            id: header("x-wxlogin-event-id").parse().unwrap_or(-1),
                            kind: header("x-wxlogin-event-type"),
                            attempt: header("x-wxlogin-attempt").parse().unwrap_or(0),
                            signature: header("x-wxlogin-signature"),
                            body,
                        });
                        plan.next
                            .pop_front()
                            .or(plan.otherwise)
                            .unwrap_or(Answer::Status(200))
                    };
                    let status = match answer {
                        Answer::Status(code) => axum::http::StatusCode::from_u16(code).unwrap(),
                        Answer::Slow(d) => {
                            tokio::time::sleep(d).await;
                            axum::http::StatusCode::OK
                        }
                    };
                    plan.lock()
                        .unwrap()
                        .spans
                        .push((user, arrived, Instant::now()));
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        wxlogin::app::Running::serve(listener, router, stop.clone()).unwrap();
        Self { addr, plan, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next answers, in order; then the usual one.
    pub fn then(&self, answers: &[Answer]) {
        self.plan.lock().unwrap().next.extend(answers);
    }

    /// The answer once the planned ones are used up.
    pub fn otherwise(&self, answer: Answer) {
        self.plan.lock().unwrap().otherwise = Some(answer);
    }

    pub fn got(&self) -> Vec<Got> {
        self.plan.lock().unwrap().got.clone()
    }

    /// Users to whom two requests were in flight at once.
    pub fn overlapping_users(&self) -> Vec<i64> {
        let spans = self.plan.lock().unwrap().spans.clone();
        let mut users: Vec<i64> = spans
            .iter()
            .enumerate()
            .filter(|(i, (u, from, to))| {
                spans[i + 1..]
                    .iter()
                    .any(|(v, f, t)| v == u && f < to && from < t)
            })
            .map(|(_, (u, _, _))| *u)
            .collect();
        users.dedup();
        users
    }

    /// Waits (up to 30 s) until `done` holds for what arrived; moves `clock` (when given) a
    /// minute on every half second, so retries come due.
    pub async fn wait_for(
        &self,
        clock: Option<&wxlogin::clock::ManualClock>,
        what: &str,
        done: impl Fn(&[Got]) -> bool,
    ) -> Vec<Got> {
        let started = Instant::now();
        let mut moved = Instant::now();
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "waited 30 s for {what}; got {got:#?}"
            );
            if let Some(clock) = clock {
                if moved.elapsed() >= Duration::from_millis(500) {
                    clock.advance(Duration::from_secs(60));
                    moved = Instant::now();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn sign(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn hook_env(url: &str, extra: &[(&'static str, &str)]) -> Options {
    let mut env = vec![
        ("WXLOGIN_ADMIN_TOKEN", format!("ops:{OPS},audit:{AUDIT}")),
        ("WXLOGIN_WEBHOOK_URL", url.to_owned()),
        ("WXLOGIN_WEBHOOK_SECRET", SECRET.to_owned()),
        ("WXLOGIN_WEBHOOK_TIMEOUT", "1s".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Options {
        env,
        ..Options::default()
    }
}

async fn admin(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app
        .http
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(OPS);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn user_id(app: &TestApp, token: &str) -> i64 {
    app.me(token).await.1["data"]["id"].as_i64().unwrap()
}

async fn outbox(app: &TestApp, query: &str) -> Value {
    let (status, body) = admin(app, "GET", &format!("/admin/webhooks{query}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn account_changes_reach_the_receiver_signed_once_each_in_order_with_who_did_them() {
    let receiver = Receiver::start().await;
    let app = spawn_with(hook_env(&receiver.url(), &[])).await;
    let alice = app.token_for("alice").await;
    let bob = app.token_for("bob").await;
    let (a, b) = (user_id(&app, &alice).await, user_id(&app, &bob).await);
    assert_eq!(
        admin(&app, "GET", "/admin/whoami", None).await.1["data"]["label"],
        "ops"
    );
    let (s, _) = admin(
        &app,
        "POST",
        &format!("/admin/users/{a}/ban"),
        Some(json!({"reason": "spam"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        admin(&app, "POST", &format!("/admin/users/{a}/unban"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        admin(
            &app,
            "POST",
            &format!("/admin/users/{a}/merge"),
            Some(json!({"from": b}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        admin(&app, "DELETE", &format!("/admin/users/{a}"), None)
            .await
            .0,
        200
    );
    let got = receiver
        .wait_for(None, "six webhooks", |g| g.len() >= 6)
        .await;
    // Give a stray duplicate time to show itself: there must be none (every answer was 200).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_now = receiver.got();
    assert_eq!(got_now.len(), 6, "{got_now:#?}");
    for g in &got {
        assert_eq!(g.signature, sign(&g.body), "signed with the secret");
        let body = g.json();
        assert_eq!(body["id"], g.id);
        assert_eq!(body["type"], g.kind.as_str());
        assert_eq!(g.attempt, 1);
        assert!(
            !g.body.contains("openid") && !g.body.contains("127.0.0.1"),
            "no identity or address in a webhook: {}",
            g.body
        );
    }
    let of = |user: i64| -> Vec<String> {
        got.iter()
            .filter(|g| g.json()["user_id"] == user)
            .map(|g| g.kind.clone())
            .collect()
    };
    assert_eq!(
        of(a),
        [
            "user_created",
            "user_banned",
            "user_unbanned",
            "user_merged",
            "user_deleted"
        ]
    );
    assert_eq!(of(b), ["user_created"]);
    let banned = got.iter().find(|g| g.kind == "user_banned").unwrap().json();
    assert_eq!(banned["actor"], "admin:ops");
    assert_eq!(banned["detail"]["reason"], "spam");
    assert_eq!(
        got.iter().find(|g| g.kind == "user_merged").unwrap().json()["detail"]["from"],
        b
    );
    // The ids are the event log's: the operator can see who banned whom.
    let (_, events) = admin(&app, "GET", "/admin/events?type=user_banned", None).await;
    let event = &events["data"]["events"][0];
    assert_eq!(event["id"], banned["id"]);
    assert_eq!(event["actor"], "admin:ops");
    // A user's own export does not name the operator.
    let data = outbox(&app, "").await;
    assert_eq!(data["enabled"], true);
    assert_eq!(
        (data["pending"].as_i64(), data["dead"].as_i64()),
        (Some(0), Some(0))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_receiver_answering_500_then_200_gets_it_again_with_the_same_id() {
    let receiver = Receiver::start().await;
    receiver.then(&[Answer::Status(500), Answer::Status(503)]);
    let app = spawn_with(hook_env(&receiver.url(), &[])).await;
    let _token = app.token_for("carol").await;
    let got = receiver
        .wait_for(Some(&app.clock), "a third attempt", |g| g.len() >= 3)
        .await;
    assert!(got
        .iter()
        .all(|g| g.id == got[0].id && g.kind == "user_created"));
    assert_eq!(
        got.iter().map(|g| g.attempt).collect::<Vec<_>>()[..3],
        [1, 2, 3]
    );
    assert!(
        got.iter().all(|g| g.body == got[0].body),
        "the same body each time"
    );
    // Delivered: the row is gone.
    wait_until("the outbox to empty", || async {
        outbox(&app, "").await["pending"] == 0
    })
    .await;
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "wxlogin_webhook_deliveries_total{result=\"http_error\"}",
        "wxlogin_webhook_deliveries_total{result=\"delivered\"}",
        "wxlogin_webhook_outbox_depth",
        "wxlogin_webhook_oldest_undelivered_age_seconds",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }
    app.shutdown().await;
}

async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited 30 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_receiver_that_is_down_for_a_while_gets_everything_when_it_is_back() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let app = spawn_with(hook_env(&url, &[])).await;
    for user in ["d1", "d2", "d3"] {
        app.token_for(user).await;
    }
    wait_until("a failed attempt at each", || async {
        app.clock.advance(Duration::from_secs(5));
        let rows = outbox(&app, "?state=pending").await;
        let rows = rows["deliveries"].as_array().unwrap().clone();
        rows.len() == 3 && rows.iter().all(|d| d["last_error"] == "could not connect")
    })
    .await;
    // Nothing is lost while it is down: three rows wait.
    assert_eq!(outbox(&app, "").await["pending"], 3);
    let receiver = Receiver::start_on(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let got = receiver
        .wait_for(Some(&app.clock), "three webhooks", |g| {
            g.iter().map(|g| g.id).collect::<HashSet<_>>().len() == 3
        })
        .await;
    assert!(got
        .iter()
        .all(|g| g.kind == "user_created" && g.attempt >= 2));
    app.shutdown().await;
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_gets_the_same_webhook_again() {
    let receiver = Receiver::start().await;
    receiver.then(&[Answer::Slow(Duration::from_secs(4))]);
    let app = spawn_with(hook_env(&receiver.url(), &[])).await;
    app.token_for("slowpoke").await;
    wait_until("a timed-out attempt", || async {
        outbox(&app, "").await["deliveries"][0]["last_error"] == "timed out"
    })
    .await;
    let got = receiver
        .wait_for(Some(&app.clock), "a second attempt", |g| g.len() >= 2)
        .await;
    // The first one did arrive, but its answer came too late: a duplicate with the same id.
    assert_eq!(got[0].id, got[1].id);
    wait_until("the outbox to empty", || async {
        outbox(&app, "").await["pending"] == 0
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_webhook_out_of_retries_is_dead_until_an_operator_re_drives_it() {
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::Status(500));
    let app = spawn_with(hook_env(
        &receiver.url(),
        &[("WXLOGIN_WEBHOOK_RETRY_FOR", "10s")],
    ))
    .await;
    app.token_for("doomed").await;
    // The first attempt falls within the 10 s; the clock then moves past them, so the second
    // failure is the last.
    receiver
        .wait_for(None, "a first attempt", |g| g.len() == 1)
        .await;
    receiver
        .wait_for(Some(&app.clock), "a second attempt", |g| g.len() >= 2)
        .await;
    wait_until("the row to die", || async {
        app.clock.advance(Duration::from_secs(30));
        outbox(&app, "").await["dead"] == 1
    })
    .await;
    let dead = outbox(&app, "?state=dead").await;
    let row = &dead["deliveries"][0];
    assert_eq!(row["state"], "dead");
    assert_eq!(row["last_error"], "HTTP 500");
    assert_eq!(row["type"], "user_created");
    assert_eq!(
        outbox(&app, "?state=pending").await["deliveries"],
        json!([])
    );
    // Dead means no more attempts.
    let attempts = receiver.got().len();
    app.clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(receiver.got().len(), attempts);
    // Re-driven once the receiver is fixed: delivered, with the same id.
    receiver.otherwise(Answer::Status(200));
    let id = row["id"].as_i64().unwrap();
    // From the command line too: the dead row, then its re-drive.
    let (ok, text) = app.admin_cli(OPS, &["webhooks", "--state", "dead"]).await;
    assert!(ok && text.contains("HTTP 500"), "{text}");
    let (ok, text) = app.admin_cli(OPS, &["redrive", &id.to_string()]).await;
    assert!(ok, "{text}");
    let got = receiver
        .wait_for(None, "the re-driven webhook", |g| g.len() > attempts)
        .await;
    assert_eq!(got.last().unwrap().id, row["event_id"].as_i64().unwrap());
    wait_until("the outbox to empty", || async {
        let o = outbox(&app, "").await;
        o["pending"] == 0 && o["dead"] == 0
    })
    .await;
    // Only a dead row can be re-driven.
    let (s, body) = admin(&app, "POST", &format!("/admin/webhooks/{id}/redrive"), None).await;
    assert_eq!((s, body["error"].as_str()), (404, Some("not_found")));
    let (s, _) = admin(&app, "GET", "/admin/webhooks?state=alive", None).await;
    assert_eq!(s, 400);
    app.shutdown().await;
}

#[tokio::test]
async fn a_users_later_webhook_waits_for_the_earlier_one() {
    let receiver = Receiver::start().await;
    let app = spawn_with(hook_env(&receiver.url(), &[])).await;
    let token = app.token_for("ordered").await;
    let id = user_id(&app, &token).await;
    receiver
        .wait_for(None, "user_created", |g| g.len() == 1)
        .await;
    // The ban fails twice; the unban, queued meanwhile, must not overtake it.
    receiver.then(&[Answer::Status(500), Answer::Status(500)]);
    admin(
        &app,
        "POST",
        &format!("/admin/users/{id}/ban"),
        Some(json!({})),
    )
    .await;
    receiver
        .wait_for(None, "the ban's first attempt", |g| g.len() == 2)
        .await;
    admin(&app, "POST", &format!("/admin/users/{id}/unban"), None).await;
    let got = receiver
        .wait_for(Some(&app.clock), "the unban", |g| {
            g.iter().any(|g| g.kind == "user_unbanned")
        })
        .await;
    let kinds: Vec<&str> = got.iter().map(|g| g.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "user_created",
            "user_banned",
            "user_banned",
            "user_banned",
            "user_unbanned"
        ]
    );
    app.shutdown().await;
}

/// Two instances on one database both send: each user's webhooks still go one at a time, in the
/// order of the changes, whichever instance made them.
#[tokio::test]
async fn two_instances_send_each_users_webhooks_one_at_a_time_in_order() {
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::Slow(Duration::from_millis(150)));
    let app = spawn_with(hook_env(&receiver.url(), &[])).await;
    let peer = app.spawn_peer().await;
    let mut users = Vec::new();
    for name in ["p1", "p2", "p3", "p4"] {
        let token = app.token_for(name).await;
        users.push(user_id(&app, &token).await);
    }
    let on = |addr: std::net::SocketAddr, path: String| {
        let http = app.http.clone();
        async move {
            let r = http
                .post(format!("http://{addr}{path}"))
                .bearer_auth(OPS)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
        }
    };
    for (step, action) in ["ban", "unban", "ban", "unban"].iter().enumerate() {
        let addr = if step % 2 == 0 { app.addr } else { peer.addr };
        for id in &users {
            on(addr, format!("/admin/users/{id}/{action}")).await;
        }
    }
    let got = receiver
        .wait_for(None, "twenty webhooks", |g| {
            g.iter().map(|g| g.id).collect::<HashSet<_>>().len() == 20
        })
        .await;
    for id in &users {
        let mine: Vec<&Got> = got.iter().filter(|g| g.json()["user_id"] == *id).collect();
        let kinds: Vec<&str> = mine.iter().map(|g| g.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "user_created",
                "user_banned",
                "user_unbanned",
                "user_banned",
                "user_unbanned"
            ],
            "user {id}"
        );
        assert!(
            mine.windows(2).all(|w| w[0].id < w[1].id),
            "user {id}: in event order"
        );
    }
    assert_eq!(receiver.overlapping_users(), Vec::<i64>::new());
    peer.stop(Duration::from_secs(5)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn without_a_url_nothing_is_queued_and_the_console_says_webhooks_are_off() {
    let app = spawn_with(Options {
        env: vec![("WXLOGIN_ADMIN_TOKEN", OPS.into())],
        ..Options::default()
    })
    .await;
    app.token_for("quiet").await;
    assert_eq!(app.count_rows("webhook_outbox").await, 0);
    let data = outbox(&app, "").await;
    assert_eq!(data["enabled"], false);
    // A token without a label is `admin`.
    assert_eq!(
        admin(&app, "GET", "/admin/whoami", None).await.1["data"]["label"],
        "admin"
    );
    app.shutdown().await;
}

/// The real binary, killed with SIGKILL while a webhook is in flight: after a restart every
/// webhook arrives, a duplicate only ever with its own id.
#[tokio::test]
async fn kill_9_mid_delivery_loses_no_webhook() {
    use crate::crash::{spawn, wait_sim, wait_up};
    let receiver = Receiver::start().await;
    let db = fresh_db().await;
    let (port, sim_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let sim = format!("http://127.0.0.1:{sim_port}");
    let mut simulator = spawn(
        &[
            "simulator",
            "--listen",
            &format!("127.0.0.1:{sim_port}"),
            "--app",
            "wxkill:kill-secret",
        ],
        &[],
    );
    let env = vec![
        ("WXLOGIN_LISTEN", format!("127.0.0.1:{port}")),
        ("WXLOGIN_DATABASE_URL", db.url.clone()),
        ("WXLOGIN_DATA_KEY", DATA_KEY.to_owned()),
        ("WXLOGIN_APPID", "wxkill".to_owned()),
        ("WXLOGIN_SECRET", "kill-secret".to_owned()),
        ("WXLOGIN_WECHAT_API_BASE", sim.clone()),
        ("WXLOGIN_RATE_LIMIT_LOGIN", "off".to_owned()),
        ("WXLOGIN_WEBHOOK_URL", receiver.url()),
        ("WXLOGIN_WEBHOOK_SECRET", SECRET.to_owned()),
        // A 1 s attempt makes a 7 s lease: the restarted server sends it again after that.
        ("WXLOGIN_WEBHOOK_TIMEOUT", "1s".to_owned()),
    ];
    let http = reqwest::Client::new();
    wait_sim(&http, &sim).await;
    let mut server = spawn(&["serve"], &env);
    wait_up(&http, &base).await;
    // Each user's first webhook hangs at the receiver: the server is killed mid-delivery.
    receiver.then(&[Answer::Slow(Duration::from_secs(30)); 1]);
    for i in 0..8 {
        let wx: Value = http
            .post(format!("{sim}/_sim/codes"))
            .json(&json!({ "appid": "wxkill", "user": format!("k{i}") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r = http
            .post(format!("{base}/login"))
            .json(&json!({ "code": wx["code"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    receiver
        .wait_for(None, "a webhook in flight", |g| !g.is_empty())
        .await;
    server.kill().unwrap();
    server.wait().unwrap();
    let before = receiver.got().len();
    let mut server = spawn(&["serve"], &env);
    wait_up(&http, &base).await;
    let got = receiver
        .wait_for(None, "all eight webhooks", |g| {
            g.iter().map(|g| g.id).collect::<HashSet<_>>().len() == 8
        })
        .await;
    assert!(got.len() >= 8 && before >= 1);
    for g in &got {
        assert_eq!(g.signature, sign(&g.body));
        assert_eq!(g.json()["id"], g.id, "a duplicate carries its own id");
        assert_eq!(g.kind, "user_created");
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = simulator.kill();
    let _ = simulator.wait();
}

/// Release 0.3 (before webhooks and the event actor) made this database, with its data key:
/// `tests/fixtures/make.sh` with that release's binary. It upgrades with every user, session
/// and ban kept, and the first change after the upgrade has its webhook.
#[tokio::test]
async fn a_database_made_by_release_0_3_upgrades_and_sends_webhooks_from_then_on() {
    let receiver = Receiver::start().await;
    let manifest = fixture_manifest("v0.3");
    let mut opts = hook_env(&receiver.url(), &[]);
    opts.apps = vec![("wxshop", "shop-secret"), ("wxclub", "club-secret")];
    opts.fixture = Some("v0.3");
    let app = spawn_with(opts).await;
    for (name, u) in manifest["users"].as_object().unwrap() {
        let (status, me) = app.me(u["token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{name}: {me}");
        for field in ["id", "appid", "openid", "unionid", "phone"] {
            assert_eq!(me["data"][field], u[field], "{name}.{field}");
        }
    }
    assert_eq!(
        app.me(manifest["revoked_token"].as_str().unwrap()).await.0,
        401
    );
    let banned = manifest["banned"]["id"].as_i64().unwrap();
    assert_eq!(
        app.me(manifest["banned"]["token"].as_str().unwrap())
            .await
            .0,
        401
    );
    let (_, events) = admin(
        &app,
        "GET",
        &format!("/admin/users/{banned}/events?type=user_banned"),
        None,
    )
    .await;
    let event = &events["data"]["events"][0];
    assert_eq!(event["detail"]["reason"], "fixture");
    assert!(
        event.get("actor").is_none(),
        "written before the actor existed"
    );
    // Nothing of the old release's changes is sent: the outbox starts empty.
    assert_eq!(app.count_rows("webhook_outbox").await, 0);
    let (s, _) = admin(&app, "POST", &format!("/admin/users/{banned}/unban"), None).await;
    assert_eq!(s, 200);
    let got = receiver
        .wait_for(None, "the unban", |g| !g.is_empty())
        .await;
    assert_eq!(got[0].kind, "user_unbanned");
    assert_eq!(got[0].json()["user_id"], banned);
    app.shutdown().await;
}

/// The verification snippets of docs/webhooks.md (Node, Python, Go, Java), each run on a real
/// delivery: the real signature passes; a wrong signature, a changed body and a wrong secret
/// are refused. Needs node, python3, go and java (`.ci/run` installs Debian's golang-go).
#[tokio::test]
async fn the_docs_verification_snippets_accept_a_real_webhook_and_refuse_a_forged_one() {
    let receiver = Receiver::start().await;
    let app = spawn_with(hook_env(&receiver.url(), &[])).await;
    app.token_for("snippets").await;
    let got = receiver
        .wait_for(None, "a webhook", |g| !g.is_empty())
        .await;
    app.shutdown().await;
    let (body, signature) = (got[0].body.clone(), got[0].signature.clone());

    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/webhooks.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("body.json"), &body).unwrap();
    std::fs::write(path("changed.json"), format!("{body} ")).unwrap();
    // `<!-- snippet: TOOL FILE -->` then a fenced block: the program to write and run.
    let mut snippets = Vec::new();
    for part in docs.split("<!-- snippet: ").skip(1) {
        let (head, rest) = part.split_once(" -->").unwrap();
        let (tool, file) = head.split_once(' ').unwrap();
        let code = rest.split("```").nth(1).unwrap();
        let code = code.split_once('\n').unwrap().1;
        std::fs::write(path(file), code).unwrap();
        snippets.push((tool.to_owned(), file.to_owned()));
    }
    let tools: Vec<&str> = snippets.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tools, ["node", "python", "go", "java"]);
    let wrong = {
        let mut s = signature.clone();
        let last = if s.ends_with('0') { '1' } else { '0' };
        s.pop();
        s.push(last);
        s
    };
    for (tool, file) in &snippets {
        // Go is built once; the others run their source.
        let program: Vec<String> = match tool.as_str() {
            "go" => {
                let built = std::process::Command::new("go")
                    .args(["build", "-o", "verify-go", file])
                    .current_dir(dir.path())
                    .env("GOCACHE", path("gocache"))
                    .env("GOPATH", path("gopath"))
                    .env("GO111MODULE", "off")
                    .output()
                    .expect("go (Debian's golang-go) to build the Go snippet");
                assert!(
                    built.status.success(),
                    "{}",
                    String::from_utf8_lossy(&built.stderr)
                );
                vec![path("verify-go").display().to_string()]
            }
            "python" => vec!["python3".into(), file.clone()],
            other => vec![other.to_owned(), file.clone()],
        };
        let run = |body_file: &str, header: &str, secret: &str| {
            let out = std::process::Command::new(&program[0])
                .args(&program[1..])
                .args([body_file, header])
                .current_dir(dir.path())
                .env("WEBHOOK_SECRET", secret)
                .output()
                .unwrap_or_else(|e| panic!("{tool} to run the {tool} snippet: {e}"));
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (code, said, err) = run("body.json", &signature, SECRET);
        assert_eq!((code, said.as_str()), (Some(0), "valid"), "{tool}: {err}");
        for (what, body_file, header, secret) in [
            ("a wrong signature", "body.json", wrong.as_str(), SECRET),
            ("a changed body", "changed.json", signature.as_str(), SECRET),
            (
                "a wrong secret",
                "body.json",
                signature.as_str(),
                "another-secret-0123456789",
            ),
            ("no signature", "body.json", "", SECRET),
        ] {
            let (code, said, err) = run(body_file, header, secret);
            assert_eq!(
                (code, said.as_str()),
                (Some(1), "invalid"),
                "{tool} must refuse {what}: {err}"
            );
        }
    }
}

/// A re-driven webhook is its user's oldest again: it waits while a newer one of the same user is
/// in flight (no two deliveries for one user overlap), then goes before the user's later ones.
#[tokio::test]
async fn a_re_driven_webhook_waits_for_its_users_webhook_in_flight() {
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::Status(500));
    let app = spawn_with(hook_env(
        &receiver.url(),
        &[("WXLOGIN_WEBHOOK_RETRY_FOR", "10s")],
    ))
    .await;
    let token = app.token_for("redriven").await;
    let id = user_id(&app, &token).await;
    receiver
        .wait_for(None, "a first attempt", |g| g.len() == 1)
        .await;
    wait_until("user_created to die", || async {
        app.clock.advance(Duration::from_secs(30));
        outbox(&app, "").await["dead"] == 1
    })
    .await;
    let dead = outbox(&app, "?state=dead").await["deliveries"][0]["id"]
        .as_i64()
        .unwrap();
    // The ban's webhook is answered slowly (in flight for 800 ms); the re-drive comes meanwhile.
    receiver.otherwise(Answer::Status(200));
    receiver.then(&[Answer::Slow(Duration::from_millis(800))]);
    let before = receiver.got().len();
    admin(
        &app,
        "POST",
        &format!("/admin/users/{id}/ban"),
        Some(json!({})),
    )
    .await;
    receiver
        .wait_for(None, "the ban in flight", |g| g.len() > before)
        .await;
    let (s, _) = admin(
        &app,
        "POST",
        &format!("/admin/webhooks/{dead}/redrive"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    admin(&app, "POST", &format!("/admin/users/{id}/unban"), None).await;
    let got = receiver
        .wait_for(
            Some(&app.clock),
            "the re-driven webhook and the unban",
            |g| g[before..].iter().filter(|g| g.attempt >= 1).count() >= 3,
        )
        .await;
    let kinds: Vec<&str> = got[before..].iter().map(|g| g.kind.as_str()).collect();
    assert_eq!(kinds, ["user_banned", "user_created", "user_unbanned"]);
    assert_eq!(receiver.overlapping_users(), Vec::<i64>::new());
    app.shutdown().await;
}

/// Simultaneous first logins are written in batches on PostgreSQL (one function call for
/// several logins): each still gets its own user, its two events in order, and a user_created
/// webhook whose body names its own event and user.
#[tokio::test]
async fn forty_simultaneous_first_logins_each_get_their_user_events_and_webhook() {
    let receiver = Receiver::start().await;
    let app = spawn_with(hook_env(&receiver.url(), &[])).await;
    let mut codes = Vec::new();
    for i in 0..40 {
        codes.push(app.code(&format!("crowd-{i}")).await);
    }
    let replies = futures::future::join_all(codes.iter().map(|c| app.login(c))).await;
    let mut users = HashSet::new();
    for (status, body) in &replies {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["data"]["new_user"], true, "{body}");
        users.insert(body["data"]["user"]["id"].as_i64().unwrap());
    }
    assert_eq!(users.len(), 40, "one user each");
    let got = receiver
        .wait_for(None, "forty user_created webhooks", |got| got.len() >= 40)
        .await;
    let (status, events) = admin(&app, "GET", "/admin/events?limit=1000", None).await;
    assert_eq!(status, 200, "{events}");
    let events = events["data"]["events"].as_array().unwrap().clone();
    for user in &users {
        // Newest first: login, then user_created.
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["user_id"].as_i64() == Some(*user))
            .collect();
        let kinds: Vec<&str> = mine.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["login", "user_created"], "user {user}");
        let created = mine[1]["id"].as_i64().unwrap();
        let hook: Vec<&Got> = got
            .iter()
            .filter(|g| g.json()["user_id"].as_i64() == Some(*user))
            .collect();
        assert_eq!(hook.len(), 1, "user {user}: {got:#?}");
        assert_eq!(hook[0].kind, "user_created");
        assert_eq!(hook[0].id, created, "the webhook names its own event");
        assert_eq!(hook[0].json()["id"].as_i64(), Some(created));
        assert_eq!(hook[0].signature, sign(&hook[0].body));
    }
    app.shutdown().await;
}
