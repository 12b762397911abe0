//! The whole flow, as a mini program runs it.

use crate::harness::*;
use serde_json::json;

#[tokio::test]
async fn code_login_me_logout_then_me_is_401() {
    let app = spawn_app().await;
    let wx = app.wx_login("alice").await;
    let (status, body) = app.login(wx["code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 0);
    assert_eq!(body["msg"], "ok");
    let data = &body["data"];
    let token = data["token"].as_str().unwrap();
    assert!(token.starts_with("wxl_") && token.len() >= 47);
    assert_eq!(data["new_user"], true);
    assert_eq!(data["user"]["openid"], wx["openid"]);
    assert_eq!(data["user"]["unionid"], wx["unionid"]);
    assert_eq!(data["expires_in"], 7 * 86400);
    assert!(!body
        .to_string()
        .contains(wx["session_key"].as_str().unwrap()));

    // Bearer header.
    let (status, me) = app.me(token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["openid"], wx["openid"]);
    assert_eq!(me["data"]["appid"], APPID);
    assert_eq!(me["data"]["id"], data["user"]["id"]);
    assert!(me["data"]["phone"].is_null());
    assert!(me["data"]["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(!me.to_string().contains(wx["session_key"].as_str().unwrap()));

    // `token:` header, the reference client's way.
    let r = app
        .http
        .get(app.url("/me"))
        .header("token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (status, out) = app.post("/logout", json!({}), Some(token)).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], 0);
    let (status, after) = app.me(token).await;
    assert_eq!(status, 401);
    assert_eq!(after["error"], "unauthorized");
    assert_eq!(after["status"], 4);
    app.shutdown().await;
}

#[tokio::test]
async fn the_reference_django_client_works_unchanged() {
    // wx.request({url: base + "login/", method: "POST", data: {code}}) → e.data.data.token
    let app = spawn_app().await;
    let code = app.code("bob").await;
    let r = app
        .http
        .post(app.url("/login/"))
        .header("content-type", "application/json")
        .body(json!({ "code": code }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let e_data: serde_json::Value = r.json().await.unwrap();
    let token = e_data["data"]["token"].as_str().unwrap();
    let r = app
        .http
        .get(app.url("/me/"))
        .header("token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn a_form_encoded_login_works_too() {
    let app = spawn_app().await;
    let code = app.code("carol").await;
    let r = app
        .http
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("code={code}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn a_second_login_is_the_same_user_and_revokes_the_token_it_replaces() {
    let app = spawn_app().await;
    let first = app.token_for("dave").await;
    // Checked once first, so a server that keeps sessions in memory holds it.
    assert_eq!(app.me(&first).await.0, 200);
    let code = app.code("dave").await;
    let (status, body) = app
        .post("/login", json!({ "code": code }), Some(&first))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["new_user"], false);
    let second = body["data"]["token"].as_str().unwrap();
    assert_ne!(first, second);
    assert_eq!(
        app.me(&first).await.0,
        401,
        "the replaced token must be revoked"
    );
    assert_eq!(app.me(second).await.0, 200);
    assert_eq!(app.count_rows("users").await, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn forward_auth_returns_identity_headers_or_401() {
    let app = spawn_app().await;
    let wx = app.wx_login("erin").await;
    let (_, body) = app.login(wx["code"].as_str().unwrap()).await;
    let token = body["data"]["token"].as_str().unwrap();
    let r = app
        .http
        .get(app.url("/auth"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(
        h["x-wxlogin-user-id"],
        body["data"]["user"]["id"].to_string().as_str()
    );
    assert_eq!(h["x-wxlogin-openid"], wx["openid"].as_str().unwrap());
    assert_eq!(h["x-wxlogin-appid"], APPID);
    let r = app.http.get(app.url("/auth")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(app.url("/auth"))
        .bearer_auth("wxl_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers().contains_key("x-request-id"));
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_clients_request_id_is_kept_only_when_short_and_plain() {
    let app = spawn_app().await;
    let echoed = |id: String| {
        let app = &app;
        async move {
            let r = app
                .http
                .get(app.url("/healthz"))
                .header("x-request-id", id)
                .send()
                .await
                .unwrap();
            r.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(echoed("trace-42:a.b_c".into()).await, "trace-42:a.b_c");
    for unfit in [
        "x".repeat(65),
        "has space".into(),
        "quote\"".into(),
        "中文".into(),
    ] {
        let got = echoed(unfit.clone()).await;
        assert_ne!(got, unfit);
        assert_eq!(got.len(), 36, "a fresh UUID instead of {unfit:?}: {got}");
    }
    app.shutdown().await;
}

/// The app with `WXLOGIN_SESSION_CACHE_SIZE` set (`None`: the default), or `None` in the
/// PostgreSQL pass, where nothing is cached in process.
async fn spawn_on_sqlite(cache_size: Option<&str>) -> Option<TestApp> {
    let mut opts = Options::default();
    if let Some(size) = cache_size {
        opts.env
            .push(("WXLOGIN_SESSION_CACHE_SIZE", size.to_owned()));
    }
    let app = spawn_with(opts).await;
    if app.database_url().starts_with("sqlite:") {
        Some(app)
    } else {
        app.shutdown().await;
        None
    }
}

/// Changes the SQLite file behind the server's back.
async fn delete_from_file(app: &TestApp, sql: &str) {
    let pool = sqlx::SqlitePool::connect(&app.database_url())
        .await
        .unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

/// On SQLite this process is the store's only writer, so token checks are answered from
/// memory after the first. Shown by deleting the row behind the server's back (nothing
/// supported does that): the cached session still answers; with the cache off, the next check
/// reads the file and gets 401. PostgreSQL is never cached in process (another instance may
/// revoke), so this is a SQLite-only test.
#[tokio::test]
async fn on_sqlite_checks_after_the_first_come_from_memory_unless_the_cache_is_off() {
    for (cache_size, expected) in [(None, 200), (Some("0"), 401)] {
        let Some(app) = spawn_on_sqlite(cache_size).await else {
            return;
        };
        let token = app.token_for("erin").await;
        assert_eq!(app.me(&token).await.0, 200);
        delete_from_file(&app, "DELETE FROM sessions").await;
        assert_eq!(
            app.me(&token).await.0,
            expected,
            "cache size {cache_size:?}"
        );
        app.shutdown().await;
    }
}

#[tokio::test]
async fn on_sqlite_a_replayed_code_is_known_from_memory_unless_the_cache_is_off() {
    for (cache_size, wechat_calls) in [(None, 0), (Some("0"), 1)] {
        let Some(app) = spawn_on_sqlite(cache_size).await else {
            return;
        };
        let code = app.code("fay").await;
        assert_eq!(app.login(&code).await.0, 200);
        // Only the process's memory knows the code now.
        delete_from_file(&app, "DELETE FROM used_codes").await;
        let before = app.calls("/sns/jscode2session").await;
        // Without the memory, WeChat is asked and answers 40163: code_used either way.
        assert_eq!(app.login(&code).await.1["error"], "code_used");
        assert_eq!(
            app.calls("/sns/jscode2session").await - before,
            wechat_calls,
            "cache size {cache_size:?}"
        );
        app.shutdown().await;
    }
}
