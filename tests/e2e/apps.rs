//! The app registry (SPEC §7): apps added, rotated and removed at run time through the admin
//! API and `wxlogin admin apps`, with no restart — on whichever store the suite runs on, and
//! across two instances on PostgreSQL + Redis.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN: &str = "apps-admin-token-0123456789";
const QQ_APP: &str = "1109000077";
const QQ_SECRET: &str = "qq-registry-secret-0123";
/// The contract: a change is live on every instance within this.
const LIVE_WITHIN: Duration = Duration::from_secs(5);

fn with_admin() -> Options {
    Options {
        env: vec![("WXLOGIN_ADMIN_TOKEN", ADMIN.into())],
        ..Options::default()
    }
}

/// The platform's side: the (simulated) platform knows the app with this secret, as after
/// registering it, or resetting its secret, on the platform's console.
async fn on_platform(app: &TestApp, platform: &str, appid: &str, secret: &str) {
    app.sim(
        "/_sim/apps",
        json!({ "platform": platform, "appid": appid, "secret": secret }),
    )
    .await;
}

async fn add(app: &TestApp, body: Value) -> (u16, Value) {
    app.call("POST", "/admin/apps", Some(ADMIN), Some(body))
        .await
}

async fn add_qq(app: &TestApp) {
    on_platform(app, "qq", QQ_APP, QQ_SECRET).await;
    let (status, body) = add(
        app,
        json!({ "platform": "qq", "appid": QQ_APP, "secret": QQ_SECRET }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// `qq.login()` in the QQ app for `user`: a fresh code.
async fn qq_code(app: &TestApp, user: &str) -> String {
    let issued = app
        .sim(
            "/_sim/codes",
            json!({ "platform": "qq", "appid": QQ_APP, "user": user }),
        )
        .await;
    issued["code"].as_str().unwrap().to_owned()
}

async fn login_at(app: &TestApp, addr: std::net::SocketAddr, code: &str) -> (u16, Value) {
    call_at(
        &app.http,
        addr,
        "POST",
        "/login",
        None,
        Some(json!({ "code": code, "appid": QQ_APP })),
    )
    .await
}

fn token_of(body: &Value) -> String {
    body["data"]["token"].as_str().unwrap().to_owned()
}

async fn listed(app: &TestApp) -> Value {
    let (status, body) = app.call("GET", "/admin/apps", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["apps"].clone()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn an_app_added_at_run_time_logs_in_at_once_with_its_secret_sealed_and_never_shown() {
    let app = spawn_with(with_admin()).await;
    on_platform(&app, "qq", QQ_APP, QQ_SECRET).await;
    let code = qq_code(&app, "mei").await;
    let (status, body) = login_at(&app, app.addr, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unknown_app")),
        "{body}"
    );

    let (status, added) = add(
        &app,
        json!({ "platform": "qq", "appid": QQ_APP, "secret": QQ_SECRET }),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["status"], 0);
    assert_eq!(added["data"]["platform"], "qq");
    assert_eq!(added["data"]["appid"], QQ_APP);
    assert_eq!(added["data"]["source"], "registry");
    assert!(!added.to_string().contains(QQ_SECRET), "{added}");

    // The refused attempt did not spend the code; the app is served on return.
    let (status, body) = login_at(&app, app.addr, &code).await;
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    let (status, me) = app.me(&token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["identities"][0]["platform"], "qq");
    assert_eq!(me["data"]["identities"][0]["appid"], QQ_APP);
    assert_eq!(app.calls("/qq/sns/jscode2session").await, 1);

    let apps = listed(&app).await;
    assert_eq!(
        apps.as_array()
            .unwrap()
            .iter()
            .map(|a| (
                a["appid"].clone(),
                a["platform"].clone(),
                a["source"].clone()
            ))
            .collect::<Vec<_>>(),
        [
            (json!(APPID), json!("weixin"), json!("config")),
            (json!(QQ_APP), json!("qq"), json!("registry")),
        ],
        "{apps}"
    );
    assert!(apps[1]["created_at"].is_string(), "{apps}");
    assert!(!apps.to_string().contains(QQ_SECRET), "{apps}");

    // At rest: sealed with the data key, nowhere in plain text.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM apps WHERE secret LIKE 'enc1:%'")
            .await,
        1
    );
    assert!(!contains(&app.data_at_rest(), QQ_SECRET));

    // A restart serves it again, and its sessions with it.
    let app = app.restart().await;
    let (status, _) = app.me(&token).await;
    assert_eq!(status, 200);
    let (status, body) = login_at(&app, app.addr, &qq_code(&app, "mei").await).await;
    assert_eq!(status, 200, "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_rotated_secret_is_used_for_the_next_exchange_and_sessions_stay() {
    let app = spawn_with(with_admin()).await;
    add_qq(&app).await;
    let (_, body) = login_at(&app, app.addr, &qq_code(&app, "lei").await).await;
    let token = token_of(&body);

    // The secret is reset on the platform's console: the old one is refused there at once.
    let new_secret = "qq-rotated-secret-4567";
    on_platform(&app, "qq", QQ_APP, new_secret).await;
    let code = qq_code(&app, "lei").await;
    let (status, body) = login_at(&app, app.addr, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("wechat_misconfigured")),
        "{body}"
    );

    let path = format!("/admin/apps/{QQ_APP}");
    let (status, body) = app
        .call(
            "PUT",
            &path,
            Some(ADMIN),
            Some(json!({ "secret": new_secret })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The same code: a refused secret did not spend it.
    let (status, body) = login_at(&app, app.addr, &code).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.me(&token).await;
    assert_eq!(status, 200, "sessions outlive a rotation");
    let apps = listed(&app).await;
    assert!(!apps.to_string().contains(new_secret), "{apps}");
    assert!(!contains(&app.data_at_rest(), new_secret));
    app.shutdown().await;
}

#[tokio::test]
async fn a_removed_app_loses_its_sessions_at_once_and_its_logins_are_refused() {
    let app = spawn_with(with_admin()).await;
    add_qq(&app).await;
    let (_, body) = login_at(&app, app.addr, &qq_code(&app, "yun").await).await;
    let qq_token = token_of(&body);
    let wx_token = app.token_for("yun").await;
    assert_eq!(app.me(&qq_token).await.0, 200);

    let path = format!("/admin/apps/{QQ_APP}");
    let (status, body) = app.call("DELETE", &path, Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["revoked"], 1);
    assert_eq!(app.me(&qq_token).await.0, 401);
    assert_eq!(app.me(&wx_token).await.0, 200, "other apps' sessions stay");
    let (status, body) = login_at(&app, app.addr, &qq_code(&app, "yun").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unknown_app")),
        "{body}"
    );
    assert_eq!(app.count_rows("apps").await, 0);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM sessions WHERE appid = '{QQ_APP}'"
        ))
        .await,
        0
    );
    // Written down as each session's end, with who did it.
    let (_, events) = app
        .call(
            "GET",
            "/admin/events?type=session_revoked",
            Some(ADMIN),
            None,
        )
        .await;
    let events = events["data"]["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["appid"], QQ_APP);
    assert!(
        events[0]["detail"].to_string().contains("app_removed"),
        "{events:?}"
    );
    assert!(
        events[0]["actor"]
            .as_str()
            .unwrap_or("")
            .starts_with("admin:"),
        "{events:?}"
    );
    let (status, _) = app.call("DELETE", &path, Some(ADMIN), None).await;
    assert_eq!(status, 404, "gone already");
    app.shutdown().await;
}

#[tokio::test]
async fn config_apps_win_and_bad_requests_get_clear_400s_with_nothing_stored() {
    let app = spawn_with(with_admin()).await;
    let bad = [
        json!({ "platform": "weixin", "appid": APPID, "secret": "another-secret" }),
        json!({ "platform": "alipay", "appid": QQ_APP, "secret": QQ_SECRET }),
        json!({ "platform": "", "appid": QQ_APP, "secret": QQ_SECRET }),
        json!({ "appid": QQ_APP, "secret": QQ_SECRET }),
        json!({ "platform": "qq", "appid": "has space", "secret": QQ_SECRET }),
        json!({ "platform": "qq", "appid": "x".repeat(65), "secret": QQ_SECRET }),
        json!({ "platform": "qq", "appid": QQ_APP }),
        json!({ "platform": "qq", "appid": QQ_APP, "secret": "" }),
        json!({ "platform": "qq", "appid": QQ_APP, "secret": "two words" }),
        json!({ "platform": "qq", "appid": QQ_APP, "secret": "s".repeat(257) }),
        json!({ "platform": "qq", "appid": QQ_APP, "secret": 5 }),
        json!([1, 2]),
    ];
    for body in bad {
        let (status, reply) = add(&app, body.clone()).await;
        assert_eq!(status, 400, "{body} → {reply}");
        assert_eq!(reply["error"], "bad_request", "{body} → {reply}");
        assert_ne!(reply["status"], 0);
        assert!(
            !reply["msg"].as_str().unwrap_or("").is_empty(),
            "{body} → {reply}"
        );
    }
    let r = app
        .http
        .post(app.url("/admin/apps"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{\"platform\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The config file's app is not the registry's to change.
    let config_path = format!("/admin/apps/{APPID}");
    let (status, body) = app
        .call(
            "PUT",
            &config_path,
            Some(ADMIN),
            Some(json!({ "secret": "s2" })),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    let (status, _) = app.call("DELETE", &config_path, Some(ADMIN), None).await;
    assert_eq!(status, 400);
    for method in ["PUT", "DELETE"] {
        let (status, body) = app
            .call(
                method,
                "/admin/apps/no-such-app",
                Some(ADMIN),
                Some(json!({ "secret": "s2" })),
            )
            .await;
        assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    }
    let (status, _) = app
        .call(
            "POST",
            "/admin/apps",
            Some("wrong-token-0123456789"),
            Some(json!({ "platform": "qq", "appid": QQ_APP, "secret": QQ_SECRET })),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(app.count_rows("apps").await, 0, "nothing half-stored");
    assert_eq!(listed(&app).await.as_array().unwrap().len(), 1);

    // A duplicate keeps the first.
    add_qq(&app).await;
    let (status, body) = add(
        &app,
        json!({ "platform": "qq", "appid": QQ_APP, "secret": "another-secret" }),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    assert_eq!(app.count_rows("apps").await, 1);
    let (status, body) = login_at(&app, app.addr, &qq_code(&app, "bo").await).await;
    assert_eq!(status, 200, "the first secret stands: {body}");
    // A login without an appid is still the config file's app's: clients from before the
    // registry never send one.
    let (status, body) = app.login(&app.code("bo").await).await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = app.me(&token_of(&body)).await;
    assert_eq!(me["data"]["identities"][0]["appid"], APPID, "{me}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_app_added_on_one_instance_serves_logins_on_another_and_its_removal_reaches_it() {
    let app = spawn_with(with_admin()).await;
    if !app.uses_redis() {
        eprintln!(
            "skipped: runs in the PostgreSQL + Redis pass (two instances need a shared store)"
        );
        app.shutdown().await;
        return;
    }
    let peer = app.spawn_peer().await;
    add_qq(&app).await;
    let added = Instant::now();
    let code = qq_code(&app, "fen").await;
    let token = loop {
        let (status, body) = login_at(&app, peer.addr, &code).await;
        if status == 200 {
            break token_of(&body);
        }
        assert_eq!(body["error"], "unknown_app", "{body}");
        assert!(
            added.elapsed() < LIVE_WITHIN,
            "the peer did not serve the new app within {LIVE_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let me_at_peer = || call_at(&app.http, peer.addr, "GET", "/me", Some(&token), None);
    assert_eq!(me_at_peer().await.0, 200);
    assert_eq!(me_at_peer().await.0, 200, "answered from the cache now");

    // Removed through A: the session made on B is refused by B before A answers…
    let path = format!("/admin/apps/{QQ_APP}");
    let (status, body) = app.call("DELETE", &path, Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(me_at_peer().await.0, 401);
    // …and B stops taking logins to it within the same period.
    let removed = Instant::now();
    loop {
        let (status, body) = login_at(&app, peer.addr, &qq_code(&app, "fen").await).await;
        if status == 400 {
            assert_eq!(body["error"], "unknown_app", "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            removed.elapsed() < LIVE_WITHIN,
            "the peer still served the removed app after {LIVE_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peer.stop(Duration::from_secs(5)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_admin_cli_adds_lists_rotates_and_removes_apps_with_secrets_off_the_command_line() {
    let app = spawn_with(with_admin()).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{QQ_SECRET}\n")).unwrap();
    let file = secret_file.to_str().unwrap();
    on_platform(&app, "qq", QQ_APP, QQ_SECRET).await;

    let (ok, out) = app
        .admin_cli(
            ADMIN,
            &[
                "apps",
                "add",
                "--platform",
                "qq",
                "--appid",
                QQ_APP,
                "--secret-file",
                file,
            ],
        )
        .await;
    assert!(ok, "{out}");
    let (status, body) = login_at(&app, app.addr, &qq_code(&app, "cli").await).await;
    assert_eq!(
        status, 200,
        "the line break was not part of the secret: {body}"
    );

    let (ok, out) = app.admin_cli(ADMIN, &["apps", "list"]).await;
    assert!(
        ok && out.contains(QQ_APP) && out.contains("registry"),
        "{out}"
    );
    assert!(!out.contains(QQ_SECRET), "{out}");

    std::fs::write(&secret_file, "qq-cli-rotated-secret").unwrap();
    on_platform(&app, "qq", QQ_APP, "qq-cli-rotated-secret").await;
    let (ok, out) = app
        .admin_cli(ADMIN, &["apps", "rotate", QQ_APP, "--secret-file", file])
        .await;
    assert!(ok, "{out}");
    let (status, body) = login_at(&app, app.addr, &qq_code(&app, "cli").await).await;
    assert_eq!(status, 200, "{body}");

    let (ok, out) = app.admin_cli(ADMIN, &["apps", "remove", QQ_APP]).await;
    assert!(ok && out.contains("\"revoked\": 2"), "{out}");
    let (ok, out) = app.admin_cli(ADMIN, &["apps", "remove", QQ_APP]).await;
    assert!(!ok, "a second removal fails: {out}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_login_without_an_appid_is_the_default_apps_when_one_is_set() {
    let two = || vec![(APPID, SECRET), ("qq/1109000077", QQ_SECRET)];
    let app = spawn_with(Options {
        apps: two(),
        ..Options::default()
    })
    .await;
    let (status, body) = app
        .post("/login", json!({ "code": qq_code(&app, "ru").await }), None)
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("unknown_app")),
        "two apps and no default: the client must say which: {body}"
    );
    app.shutdown().await;

    let app = spawn_with(Options {
        apps: two(),
        env: vec![("WXLOGIN_DEFAULT_APPID", QQ_APP.into())],
        ..Options::default()
    })
    .await;
    let (status, body) = app
        .post("/login", json!({ "code": qq_code(&app, "ru").await }), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = app.me(&token_of(&body)).await;
    assert_eq!(me["data"]["identities"][0]["platform"], "qq", "{me}");
    // A named appid still wins.
    let (status, body) = app
        .post(
            "/login",
            json!({ "code": app.code("ru").await, "appid": APPID }),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.shutdown().await;
}
