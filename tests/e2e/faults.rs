//! WeChat failing: retried once when it says busy; otherwise 503 with Retry-After (or the
//! documented 4xx), within the timeout budget. Never 500, never 401 for WeChat's own trouble.

use crate::harness::*;
use reqwest::StatusCode;
use serde_json::json;

const API: &str = "/sns/jscode2session";

async fn login_raw(app: &TestApp, code: &str) -> reqwest::Response {
    app.http
        .post(app.url("/login"))
        .json(&json!({ "code": code }))
        // Guard only: a budget that is not enforced shows up as this timeout, not as a pass.
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .expect("the server must answer within its WeChat budget")
}

#[tokio::test]
async fn busy_once_is_retried_and_succeeds() {
    let app = spawn_app().await;
    let code = app.code("alice").await;
    app.fault(json!({ "api": API, "errcode": -1, "errmsg": "system error" }))
        .await;
    let (status, body) = app.login(&code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.calls(API).await, 2);
    app.shutdown().await;
}

async fn assert_503_then_recovers(app: &TestApp, fault: serde_json::Value, expected_calls: u64) {
    let code = app.code("bob").await;
    app.fault(fault.clone()).await;
    let before = app.calls(API).await;
    let r = login_raw(app, &code).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{fault}");
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "wechat_unavailable", "{fault}");
    assert_eq!(app.calls(API).await - before, expected_calls, "{fault}");
    // Nothing was lost: WeChat never consumed the code, so the same code works once it is back.
    app.http
        .delete(app.sim_url("/_sim/faults"))
        .send()
        .await
        .unwrap();
    let (status, body) = app.login(&code).await;
    assert_eq!(status, 200, "after {fault}: {body}");
}

#[tokio::test]
async fn busy_every_time_is_503_after_exactly_one_retry() {
    let app = spawn_app().await;
    assert_503_then_recovers(&app, json!({ "api": API, "errcode": -1, "times": 5 }), 2).await;
    app.shutdown().await;
}

#[tokio::test]
async fn http_500_from_wechat_is_503_without_retry() {
    let app = spawn_app().await;
    assert_503_then_recovers(&app, json!({ "api": API, "status": 500, "times": 5 }), 1).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_slow_wechat_is_503_within_the_budget() {
    let app = spawn_with(Options {
        wechat_timeout: "400ms",
        ..Options::default()
    })
    .await;
    // Would succeed after 3 s if the budget were not enforced.
    assert_503_then_recovers(&app, json!({ "api": API, "delay_ms": 3000 }), 1).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_hung_wechat_is_503_within_the_budget() {
    let app = spawn_with(Options {
        wechat_timeout: "400ms",
        ..Options::default()
    })
    .await;
    assert_503_then_recovers(&app, json!({ "api": API, "hang": true }), 1).await;
    app.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_wechat_is_503() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_with(Options {
        env: vec![("WXLOGIN_WECHAT_API_BASE", base)],
        ..Options::default()
    })
    .await;
    let code = app.code("carol").await;
    let r = login_raw(&app, &code).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    app.shutdown().await;
}

#[tokio::test]
async fn wechat_errcodes_map_to_documented_errors() {
    let app = spawn_app().await;
    for (errcode, http, error) in [
        (45011, 429, "wechat_rate_limited"),
        (40226, 403, "user_blocked"),
        (40125, 503, "wechat_misconfigured"),
        (40013, 503, "wechat_misconfigured"),
        (40029, 401, "invalid_code"),
        (40163, 401, "code_used"),
        (99999, 503, "wechat_unavailable"),
    ] {
        let code = app.code("dave").await;
        app.fault(json!({ "api": API, "errcode": errcode })).await;
        let r = login_raw(&app, &code).await;
        assert_eq!(r.status().as_u16(), http, "{errcode}");
        if http == 503 || http == 429 {
            assert!(r.headers().contains_key("retry-after"), "{errcode}");
        }
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], error, "{errcode}");
    }
    app.shutdown().await;
}
