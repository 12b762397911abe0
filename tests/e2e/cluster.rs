//! Two instances sharing one database and one Redis: what a team behind a load balancer sees.
//! Runs in the PostgreSQL + Redis pass (`WXLOGIN_TEST_REDIS_URL` set); without Redis there is
//! no cross-instance coordination to test, and the test says so.

use crate::harness::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

async fn two_instances() -> Option<(TestApp, wxlogin::app::Running)> {
    let app = spawn_app().await;
    if !app.uses_redis() {
        eprintln!("skipped: set WXLOGIN_TEST_REDIS_URL (and WXLOGIN_TEST_POSTGRES_URL) to run the cluster tests");
        app.shutdown().await;
        return None;
    }
    let peer = app.spawn_peer().await;
    Some((app, peer))
}

/// [`two_instances`] on PostgreSQL (what keeps users and sessions in each instance's memory).
async fn two_instances_on_postgres(what: &str) -> Option<(TestApp, wxlogin::app::Running)> {
    let (app, b) = two_instances().await?;
    if app.database_url().starts_with("sqlite:") {
        eprintln!("skipped: {what} in memory are PostgreSQL + Redis's");
        b.stop(Duration::from_secs(2)).await;
        app.shutdown().await;
        return None;
    }
    Some((app, b))
}

async fn call(
    app: &TestApp,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = app
        .http
        .request(method.parse().unwrap(), format!("http://{addr}{path}"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_token_from_a_works_on_b_and_a_logout_on_a_is_rejected_on_b_at_once() {
    let Some((app, b)) = two_instances().await else {
        return;
    };
    let token = app.token_for("alice").await;
    // B checks it (and caches it).
    assert_eq!(
        call(&app, b.addr, "GET", "/me", Some(&token), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        call(&app, b.addr, "GET", "/me", Some(&token), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        call(&app, app.addr, "POST", "/logout", Some(&token), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        call(&app, b.addr, "GET", "/me", Some(&token), json!({}))
            .await
            .0,
        401
    );
    assert_eq!(
        call(&app, b.addr, "GET", "/auth", Some(&token), json!({}))
            .await
            .0,
        401
    );
    b.stop(Duration::from_secs(2)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn one_code_sent_to_a_and_b_concurrently_makes_one_wechat_call() {
    let Some((app, b)) = two_instances().await else {
        return;
    };
    for round in 0..5 {
        let code = app.code("bob").await;
        app.fault(json!({ "api": "/sns/jscode2session", "delay_ms": 200 }))
            .await;
        let before = app.calls("/sns/jscode2session").await;
        let body = json!({ "code": code });
        let sends = (0..10).map(|i| {
            let addr = if i % 2 == 0 { app.addr } else { b.addr };
            call(&app, addr, "POST", "/login", None, body.clone())
        });
        let replies = futures::future::join_all(sends).await;
        let ok = replies.iter().filter(|(s, _)| *s == 200).count();
        for (status, reply) in &replies {
            assert!(
                *status == 200 || reply["error"] == "code_used",
                "round {round}: {status} {reply}"
            );
        }
        assert!(ok >= 1, "round {round}: {replies:?}");
        assert_eq!(
            app.calls("/sns/jscode2session").await - before,
            1,
            "round {round}"
        );
        app.http
            .delete(app.sim_url("/_sim/faults"))
            .send()
            .await
            .unwrap();
    }
    b.stop(Duration::from_secs(2)).await;
    app.shutdown().await;
}

/// A code that logged in keeps its lock (until the lock expires) as the mark of a spent code: the
/// same code replayed on either instance is `code_used` without another WeChat call, and a code
/// whose exchange failed is free again at once for the retry.
#[tokio::test]
async fn a_replayed_code_is_code_used_on_both_instances_and_a_failed_one_can_be_retried_on_the_other(
) {
    let Some((app, b)) = two_instances().await else {
        return;
    };
    let code = app.code("ray").await;
    let body = json!({ "code": code });
    assert_eq!(
        call(&app, app.addr, "POST", "/login", None, body.clone())
            .await
            .0,
        200
    );
    let before = app.calls("/sns/jscode2session").await;
    for addr in [b.addr, app.addr] {
        let (status, reply) = call(&app, addr, "POST", "/login", None, body.clone()).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (401, Some("code_used")),
            "{reply}"
        );
    }
    assert_eq!(app.calls("/sns/jscode2session").await, before);

    // WeChat unavailable on A's attempt: the code is not spent, and B may use it.
    let code = app.code("ray").await;
    let body = json!({ "code": code });
    app.fault(json!({ "api": "/sns/jscode2session", "errcode": -1, "times": 2 }))
        .await;
    let (status, _) = call(&app, app.addr, "POST", "/login", None, body.clone()).await;
    assert_eq!(status, 503);
    app.http
        .delete(app.sim_url("/_sim/faults"))
        .send()
        .await
        .unwrap();
    let (status, reply) = call(&app, b.addr, "POST", "/login", None, body).await;
    assert_eq!(status, 200, "{reply}");
    b.stop(Duration::from_secs(2)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn thirty_concurrent_first_logins_split_over_a_and_b_make_one_user_row() {
    let Some((app, b)) = two_instances().await else {
        return;
    };
    let mut codes = Vec::new();
    for _ in 0..30 {
        codes.push(app.code("carol").await);
    }
    let sends = codes.iter().enumerate().map(|(i, c)| {
        let addr = if i % 2 == 0 { app.addr } else { b.addr };
        call(&app, addr, "POST", "/login", None, json!({ "code": c }))
    });
    let mut ids = HashSet::new();
    for (status, reply) in futures::future::join_all(sends).await {
        assert_eq!(status, 200, "{reply}");
        ids.insert(reply["data"]["user"]["id"].as_i64().unwrap());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.count_rows("users").await, 1);
    b.stop(Duration::from_secs(2)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn two_hundred_phone_calls_over_two_instances_with_an_expired_token_make_at_most_two_refreshes(
) {
    let Some((app, b)) = two_instances().await else {
        return;
    };
    let token = app.token_for("dave").await;
    let mut codes = Vec::new();
    for _ in 0..200 {
        codes.push(app.sim("/_sim/phone_codes", json!({})).await["code"].clone());
    }
    let sends = codes.iter().enumerate().map(|(i, c)| {
        let addr = if i % 2 == 0 { app.addr } else { b.addr };
        call(
            &app,
            addr,
            "POST",
            "/phone",
            Some(&token),
            json!({ "code": c }),
        )
    });
    for (status, reply) in futures::future::join_all(sends).await {
        assert_eq!(status, 200, "{reply}");
    }
    let refreshes = app.calls("/cgi-bin/stable_token").await;
    assert!(
        (1..=2).contains(&refreshes),
        "{refreshes} stable_token calls"
    );
    b.stop(Duration::from_secs(2)).await;
    app.shutdown().await;
}

/// B keeps users in memory on PostgreSQL + Redis; a change made through A reaches it over Redis
/// at once (well inside the cache's 10 s TTL), and never gets lost behind a read in flight.
#[tokio::test]
async fn a_profile_or_phone_change_on_a_shows_on_b_that_had_the_user_in_memory() {
    let Some((app, b)) = two_instances_on_postgres("users").await else {
        return;
    };
    let token = app.token_for("profiled").await;
    let me_on_b = || async {
        call(&app, b.addr, "GET", "/me", Some(&token), json!({}))
            .await
            .1
    };
    // B reads the user (and keeps it).
    assert_eq!(me_on_b().await["data"]["nickname"], Value::Null);
    assert_eq!(me_on_b().await["data"]["nickname"], Value::Null);
    let (s, _) = call(
        &app,
        app.addr,
        "PATCH",
        "/me",
        Some(&token),
        json!({"nickname": "新名字"}),
    )
    .await;
    assert_eq!(s, 200);
    let shows = |field: &'static str, want: Value| {
        let me_on_b = &me_on_b;
        async move {
            let started = std::time::Instant::now();
            loop {
                let me = me_on_b().await;
                if me["data"][field] == want {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "B still shows {field} = {} (want {want})",
                    me["data"][field]
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let took = shows("nickname", json!("新名字")).await;
    eprintln!("the nickname reached B's memory in {took:?}");
    let pc = app
        .sim("/_sim/phone_codes", json!({ "phone": "13700000042" }))
        .await;
    let (s, _) = call(
        &app,
        app.addr,
        "POST",
        "/phone",
        Some(&token),
        json!({ "code": pc["code"] }),
    )
    .await;
    assert_eq!(s, 200);
    shows("phone", json!("13700000042")).await;
    // A second login of the same user through A: B shows the new session's login time.
    let again = app.token_for("profiled").await;
    let (_, mine) = call(&app, b.addr, "GET", "/me", Some(&again), json!({})).await;
    let (_, fresh) = call(&app, app.addr, "GET", "/me", Some(&again), json!({})).await;
    assert_eq!(
        mine["data"]["last_login_at"],
        fresh["data"]["last_login_at"]
    );
    assert_eq!(mine["data"]["nickname"], "新名字");
    b.stop(Duration::from_secs(5)).await;
    app.shutdown().await;
}

/// On PostgreSQL + Redis, an instance answers a token it has seen from its own memory (shown by
/// taking the session away behind its back: expired in the database and dropped from Redis),
/// and a logout on another instance still ends it there before that logout is answered.
#[tokio::test]
async fn b_answers_a_token_from_memory_and_a_logout_on_a_ends_it_there_before_a_answers() {
    let Some((app, b)) = two_instances_on_postgres("sessions").await else {
        return;
    };
    let token = app.token_for("remembered").await;
    let me_on_b = || async {
        call(&app, b.addr, "GET", "/me", Some(&token), json!({}))
            .await
            .0
    };
    assert!(
        app.remembered_at(b.addr, &token).await,
        "B never answered from memory a session only its memory had"
    );
    assert_eq!(me_on_b().await, 200);
    let (s, _) = call(&app, app.addr, "POST", "/logout", Some(&token), json!({})).await;
    assert_eq!(s, 200);
    // Not a moment later: the logout was answered only once B had dropped the token.
    assert_eq!(me_on_b().await, 401);
    assert_eq!(
        call(&app, b.addr, "GET", "/auth", Some(&token), json!({}))
            .await
            .0,
        401
    );
    b.stop(Duration::from_secs(2)).await;
    app.shutdown().await;
}
