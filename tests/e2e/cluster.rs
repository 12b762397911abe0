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
