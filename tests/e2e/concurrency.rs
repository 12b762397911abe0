//! Concurrency: one code → one WeChat exchange; one user → one row.

use crate::harness::*;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn twenty_concurrent_logins_with_one_code_make_one_wechat_call() {
    let app = spawn_app().await;
    let code = app.code("alice").await;
    // Slow WeChat down so every request arrives while the exchange is in flight.
    app.fault(json!({ "api": "/sns/jscode2session", "delay_ms": 300 }))
        .await;
    let logins = (0..20).map(|_| app.login(&code));
    let replies = futures::future::join_all(logins).await;
    let mut tokens = HashSet::new();
    for (status, body) in &replies {
        assert!(status.as_u16() < 500, "{status} {body}");
        assert_eq!(*status, 200, "{body}");
        tokens.insert(body["data"]["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(app.calls("/sns/jscode2session").await, 1);
    assert_eq!(tokens.len(), 1, "joiners share the one outcome");
    assert_eq!(app.count_rows("sessions").await, 1);
    // Once finished, a reuse is answered without WeChat.
    assert_eq!(app.login(&code).await.1["error"], "code_used");
    assert_eq!(app.calls("/sns/jscode2session").await, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn thirty_concurrent_first_logins_of_one_user_make_one_user_row() {
    // Every login keeps its session: the per-user cap (10 by default) has a test of its own.
    let app = spawn_with(Options {
        env: vec![("WXLOGIN_MAX_SESSIONS_PER_USER", "30".into())],
        ..Options::default()
    })
    .await;
    let mut codes = Vec::new();
    for _ in 0..30 {
        codes.push(app.code("bob").await);
    }
    let replies = futures::future::join_all(codes.iter().map(|c| app.login(c))).await;
    let mut ids = HashSet::new();
    let mut new_users = 0;
    for (status, body) in &replies {
        assert_eq!(*status, 200, "{body}");
        ids.insert(body["data"]["user"]["id"].as_i64().unwrap());
        if body["data"]["new_user"] == true {
            new_users += 1;
        }
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(new_users, 1);
    assert_eq!(app.count_rows("users").await, 1);
    assert_eq!(app.count_rows("sessions").await, 30);
    assert_eq!(app.calls("/sns/jscode2session").await, 30);
    app.shutdown().await;
}
