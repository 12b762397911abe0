//! Accounts (SPEC §6): one person with many identities, the migration from 0.1, profile and
//! avatar, phone binding, the sessions a user controls, deletion and export, bans, merges and
//! the event log — on whichever store the suite runs on.

use crate::harness::*;
use serde_json::{json, Value};
use std::collections::HashSet;

const ADMIN: &str = "admin-token-0123456789abcdef";

/// A 1×1 PNG, as `chooseAvatar` might hand over (much smaller, but a real image).
const PNG_HEX: &str = "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489\
                       0000000a49444154789c63000100000500010d0a2db40000000049454e44ae426082";

fn png() -> Vec<u8> {
    hex::decode(PNG_HEX).unwrap()
}

fn jpeg() -> Vec<u8> {
    vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 0xFF, 0xD9,
    ]
}

fn admin_opts(env: Vec<(&'static str, String)>) -> Options {
    let mut env = env;
    env.push(("WXLOGIN_ADMIN_TOKEN", ADMIN.into()));
    Options {
        env,
        ..Options::default()
    }
}

/// Any request: method, path, bearer token, JSON body.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.http.request(method.parse().unwrap(), app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn login_for(app: &TestApp, appid: &str, user: &str) -> (reqwest::StatusCode, Value) {
    let wx = app.wx_login_for(appid, user).await;
    app.post(
        "/login",
        json!({ "code": wx["code"], "appid": appid }),
        None,
    )
    .await
}

#[tokio::test]
async fn a_database_made_by_release_0_1_keeps_every_user_session_and_phone() {
    let manifest = fixture_manifest("v0.1");
    let app = spawn_with(Options {
        apps: vec![("wxshop", "shop-secret"), ("wxclub", "club-secret")],
        fixture: Some("v0.1"),
        ..Options::default()
    })
    .await;
    for (name, u) in manifest["users"].as_object().unwrap() {
        let (status, me) = app.me(u["token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{name}: {me}");
        let me = &me["data"];
        for field in ["id", "appid", "openid", "unionid", "phone"] {
            assert_eq!(me[field], u[field], "{name}.{field}");
        }
        assert_eq!(me["status"], "active");
        assert_eq!(me["identities"].as_array().unwrap().len(), 1, "{name}");
        assert_eq!(me["identities"][0]["platform"], "weixin");
    }
    let revoked = manifest["revoked_token"].as_str().unwrap();
    assert_eq!(
        app.me(revoked).await.0,
        401,
        "a revoked token stays revoked"
    );
    assert_eq!(app.count_rows("users").await, 4);
    assert_eq!(app.count_rows("identities").await, 4);
    assert_eq!(app.count_rows("sessions").await, 4);
    // The two users 0.1 made for one person stay two (an operator may merge them).
    let (shop, club) = (
        &manifest["users"]["hana_shop"],
        &manifest["users"]["hana_club"],
    );
    assert_ne!(shop["id"], club["id"]);
    // Logging in again finds the same user; a new person is a new user.
    let (status, again) = login_for(&app, "wxshop", "alice").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["data"]["user"]["id"],
        manifest["users"]["alice"]["id"]
    );
    assert_eq!(again["data"]["new_user"], false);
    let (_, fresh) = login_for(&app, "wxshop", "newcomer").await;
    assert_eq!(fresh["data"]["new_user"], true);
    assert!(fresh["data"]["user"]["id"].as_i64() > club["id"].as_i64());
    app.shutdown().await;
}

#[tokio::test]
async fn thirty_simultaneous_first_logins_through_two_apps_make_one_user_and_two_identities() {
    let app = spawn_with(Options {
        apps: vec![("wxshop", "shop-secret"), ("wxclub", "club-secret")],
        env: vec![("WXLOGIN_MAX_SESSIONS_PER_USER", "30".into())],
        ..Options::default()
    })
    .await;
    let mut codes = Vec::new();
    for i in 0..30 {
        let appid = if i % 2 == 0 { "wxshop" } else { "wxclub" };
        let wx = app.wx_login_for(appid, "kai").await;
        codes.push((appid, wx["code"].as_str().unwrap().to_owned()));
    }
    let replies =
        futures::future::join_all(codes.iter().map(|(appid, code)| {
            app.post("/login", json!({ "code": code, "appid": appid }), None)
        }))
        .await;
    let mut ids = HashSet::new();
    for (status, body) in &replies {
        assert_eq!(*status, 200, "{body}");
        ids.insert(body["data"]["user"]["id"].as_i64().unwrap());
    }
    assert_eq!(ids.len(), 1, "one person, one user");
    let new_users = replies
        .iter()
        .filter(|(_, b)| b["data"]["new_user"] == true)
        .count();
    assert_eq!(new_users, 1);
    assert_eq!(app.count_rows("users").await, 1);
    assert_eq!(app.count_rows("identities").await, 2);
    assert_eq!(app.count_rows("sessions").await, 30);
    app.shutdown().await;
}

#[tokio::test]
async fn a_unionid_that_arrives_later_is_filled_in_and_links_from_then_on() {
    let app = spawn_with(Options {
        apps: vec![("wxshop", "shop-secret"), ("wxclub", "club-secret")],
        ..Options::default()
    })
    .await;
    // The shop app is not bound to the Open Platform yet: no unionid.
    app.sim(
        "/_sim/open_platform",
        json!({ "appid": "wxshop", "bound": false }),
    )
    .await;
    let (_, first) = login_for(&app, "wxshop", "lena").await;
    assert!(first["data"]["user"]["unionid"].is_null());
    let (_, club_before) = login_for(&app, "wxclub", "lena").await;
    assert_ne!(
        club_before["data"]["user"]["id"], first["data"]["user"]["id"],
        "nothing links them yet"
    );
    // Bound now: the shop identity gets its unionid...
    app.sim(
        "/_sim/open_platform",
        json!({ "appid": "wxshop", "bound": true }),
    )
    .await;
    let (_, shop) = login_for(&app, "wxshop", "lena").await;
    assert_eq!(shop["data"]["user"]["id"], first["data"]["user"]["id"]);
    let token = shop["data"]["token"].as_str().unwrap();
    let (_, me) = app.me(token).await;
    assert!(me["data"]["unionid"].is_string(), "{me}");
    app.shutdown().await;
}

#[tokio::test]
async fn the_nickname_is_trimmed_bounded_and_never_wechats_placeholder() {
    let app = spawn_app().await;
    let token = app.token_for("nora").await;
    let patch = |body: Value| call(&app, "PATCH", "/me", Some(&token), Some(body));
    let (status, me) = patch(json!({ "nickname": "  小诺 " })).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["nickname"], "小诺");
    for (body, http, error) in [
        (
            json!({ "nickname": "微信用户" }),
            400,
            "placeholder_nickname",
        ),
        (json!({ "nickname": "  " }), 400, "bad_request"),
        (json!({ "nickname": "名".repeat(33) }), 400, "bad_request"),
        (json!({}), 400, "bad_request"),
        (json!({ "nickname": 7 }), 400, "bad_request"),
    ] {
        let (status, reply) = patch(body.clone()).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (http, Some(error)),
            "{body}"
        );
    }
    assert_eq!(app.me(&token).await.1["data"]["nickname"], "小诺");
    app.shutdown().await;
}

async fn upload(app: &TestApp, token: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = app
        .http
        .put(app.url("/me/avatar"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn multipart(field: &str, file: Option<&str>, bytes: &[u8]) -> (String, Vec<u8>) {
    let mut body = b"--b0undary\r\n".to_vec();
    let disposition = match file {
        Some(f) => {
            format!("Content-Disposition: form-data; name=\"{field}\"; filename=\"{f}\"\r\n")
        }
        None => format!("Content-Disposition: form-data; name=\"{field}\"\r\n"),
    };
    body.extend_from_slice(disposition.as_bytes());
    body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n--b0undary--\r\n");
    ("multipart/form-data; boundary=b0undary".into(), body)
}

#[tokio::test]
async fn an_avatar_from_wx_upload_file_or_a_raw_body_is_stored_once_and_served_immutable() {
    let app = spawn_app().await;
    let token = app.token_for("olga").await;
    // wx.uploadFile: multipart, the file under whatever name the mini program chose.
    let (ct, body) = multipart("avatarFile", Some("tmp_abc.png"), &png());
    let (status, reply) = upload(&app, &token, &ct, body).await;
    assert_eq!(status, 200, "{reply}");
    let url = reply["data"]["avatar_url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with("avatars/") && url.ends_with(".png"),
        "{url}"
    );
    assert_eq!(app.me(&token).await.1["data"]["avatar_url"], url.as_str());
    let served = app
        .http
        .get(app.url(&format!("/{url}")))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert!(served.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(served.bytes().await.unwrap().to_vec(), png());
    // The same image again (another user, a raw body): stored once.
    let other = app.token_for("pia").await;
    let (status, again) = upload(&app, &other, "image/png", png()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"]["avatar_url"], url.as_str());
    assert_eq!(app.count_rows("avatars").await, 1);

    // Bad input: the documented error, nothing stored, the avatar unchanged.
    let mut garbage_png = png()[..16].to_vec();
    garbage_png.extend_from_slice(&[7u8; 100]);
    let (form_no_file_ct, form_no_file) = multipart("name", None, b"olga");
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "a GIF",
            "image/gif".into(),
            b"GIF89a\x01\0\x01\0\0\0\0;".to_vec(),
            415,
            "unsupported_image",
        ),
        (
            "a PNG header on garbage",
            "image/png".into(),
            garbage_png,
            415,
            "unsupported_image",
        ),
        (
            "300 KiB",
            "image/jpeg".into(),
            {
                let mut big = jpeg();
                big.splice(4..4, vec![0u8; 300 * 1024]);
                big
            },
            413,
            "payload_too_large",
        ),
        (
            "an empty body",
            "image/png".into(),
            vec![],
            415,
            "unsupported_image",
        ),
        (
            "a form with no file",
            form_no_file_ct,
            form_no_file,
            415,
            "unsupported_image",
        ),
        (
            "JSON",
            "application/json".into(),
            b"{}".to_vec(),
            415,
            "unsupported_image",
        ),
    ];
    for (what, ct, body, http, error) in cases {
        let (status, reply) = upload(&app, &token, &ct, body).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (http, Some(error)),
            "{what}: {reply}"
        );
    }
    assert_eq!(app.count_rows("avatars").await, 1);
    assert_eq!(app.me(&token).await.1["data"]["avatar_url"], url.as_str());
    // Another format, by a raw body, near the size limit (over the 64 KiB of JSON bodies).
    let mut large = jpeg();
    large.splice(4..4, vec![0u8; 250 * 1024]);
    let (status, reply) = upload(&app, &token, "image/jpeg", large).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["data"]["avatar_url"]
        .as_str()
        .unwrap()
        .ends_with(".jpg"));
    // An unknown or malformed avatar name is 404.
    for path in [
        "/avatars/nope.png",
        &format!("/avatars/{}.png", "0".repeat(64)),
    ] {
        assert_eq!(
            app.http.get(app.url(path)).send().await.unwrap().status(),
            404
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_number_another_user_holds_is_phone_in_use_and_a_fresh_number_is_reused() {
    let app = spawn_with(Options {
        env: vec![("WXLOGIN_PHONE_REUSE", "30d".into())],
        ..Options::default()
    })
    .await;
    let quinn = app.token_for("quinn").await;
    let rosa = app.token_for("rosa").await;
    let bind = |token: String, phone: &'static str, refresh: bool| {
        let app = &app;
        async move {
            let pc = app
                .sim("/_sim/phone_codes", json!({ "phone": phone }))
                .await;
            app.post(
                "/phone",
                json!({ "code": pc["code"], "refresh": refresh }),
                Some(&token),
            )
            .await
        }
    };
    assert_eq!(bind(quinn.clone(), "13700000001", false).await.0, 200);
    let (status, reply) = bind(rosa.clone(), "13700000001", false).await;
    assert_eq!(
        (status.as_u16(), reply["error"].as_str()),
        (409, Some("phone_in_use"))
    );
    assert!(
        app.me(&rosa).await.1["data"]["phone"].is_null(),
        "nothing changed"
    );
    // Quinn binds again: the fresh stored number answers, WeChat's paid API is not called.
    let calls = app.calls("/wxa/business/getuserphonenumber").await;
    let (status, reply) = bind(quinn.clone(), "13700000009", false).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"]["phoneNumber"], "13700000001");
    assert_eq!(app.calls("/wxa/business/getuserphonenumber").await, calls);
    // `refresh` asks WeChat, and the new number is bound.
    let (status, reply) = bind(quinn.clone(), "13700000009", true).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(app.me(&quinn).await.1["data"]["phone"], "13700000009");
    app.shutdown().await;
}

#[tokio::test]
async fn a_user_lists_and_ends_their_own_sessions_only() {
    let app = spawn_app().await;
    let mut tokens = Vec::new();
    for device in ["iPhone", "Android"] {
        let code = app.code("sara").await;
        let r = app
            .http
            .post(app.url("/login"))
            .header("user-agent", format!("MicroMessenger {device}"))
            .json(&json!({ "code": code }))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        tokens.push(body["data"]["token"].as_str().unwrap().to_owned());
    }
    let (status, list) = call(&app, "GET", "/me/sessions", Some(&tokens[1]), None).await;
    assert_eq!(status, 200, "{list}");
    let sessions = list["data"]["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["user_agent"], "MicroMessenger iPhone");
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
    assert_eq!(sessions[0]["platform"], "weixin");
    assert_eq!(
        (
            sessions[0]["current"].as_bool(),
            sessions[1]["current"].as_bool()
        ),
        (Some(false), Some(true))
    );
    // Someone else's session id is not found, and stays alive.
    let tom = app.token_for("tom").await;
    let first = sessions[0]["id"].as_i64().unwrap();
    let (status, _) = call(
        &app,
        "DELETE",
        &format!("/me/sessions/{first}"),
        Some(&tom),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(app.me(&tokens[0]).await.0, 200);
    // Ending the iPhone's session from the Android.
    let (status, _) = call(
        &app,
        "DELETE",
        &format!("/me/sessions/{first}"),
        Some(&tokens[1]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(app.me(&tokens[0]).await.0, 401);
    assert_eq!(app.me(&tokens[1]).await.0, 200);
    // Log out everywhere.
    let third = app.token_for("sara").await;
    let (status, _) = call(
        &app,
        "POST",
        "/logout",
        Some(&tokens[1]),
        Some(json!({ "all": true })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(app.me(&tokens[1]).await.0, 401);
    assert_eq!(app.me(&third).await.0, 401);
    assert_eq!(
        app.me(&tom).await.0,
        200,
        "another user's sessions are untouched"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_login_over_the_cap_revokes_the_oldest_session() {
    let app = spawn_with(Options {
        env: vec![("WXLOGIN_MAX_SESSIONS_PER_USER", "3".into())],
        ..Options::default()
    })
    .await;
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(app.token_for("uma").await);
    }
    assert_eq!(app.me(&tokens[0]).await.0, 401, "the oldest went");
    for t in &tokens[1..] {
        assert_eq!(app.me(t).await.0, 200);
    }
    assert_eq!(app.count_rows("sessions").await, 3);
    app.shutdown().await;
}

#[tokio::test]
async fn deleting_the_account_revokes_everything_keeps_a_tombstone_and_a_new_login_is_a_new_user() {
    let app = spawn_with(admin_opts(vec![]));
    let app = app.await;
    let token = app.token_for("vera").await;
    let other = app.token_for("vera").await;
    let pc = app
        .sim("/_sim/phone_codes", json!({ "phone": "13600000001" }))
        .await;
    assert_eq!(
        app.post("/phone", json!({ "code": pc["code"] }), Some(&token))
            .await
            .0,
        200
    );
    let id = app.me(&token).await.1["data"]["id"].as_i64().unwrap();
    let (status, avatar) = upload(&app, &token, "image/png", png()).await;
    assert_eq!(status, 200, "{avatar}");
    let avatar_url = format!("/{}", avatar["data"]["avatar_url"].as_str().unwrap());
    // The export first: everything stored, the events included.
    let (status, export) = call(&app, "GET", "/me/export", Some(&token), None).await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["data"]["user"]["phone"], "13600000001");
    assert_eq!(export["data"]["sessions"].as_array().unwrap().len(), 2);
    let kinds: HashSet<&str> = export["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for k in ["user_created", "login", "phone_bound"] {
        assert!(kinds.contains(k), "{k} missing from {kinds:?}");
    }
    let (status, _) = call(&app, "DELETE", "/me", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(app.me(&token).await.0, 401);
    assert_eq!(app.me(&other).await.0, 401);
    let (status, tomb) = call(
        &app,
        "GET",
        &format!("/admin/users/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{tomb}");
    let mut keys: Vec<&str> = tomb["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created_at", "deleted_at", "id", "last_login_at", "status"],
        "{tomb}"
    );
    assert_eq!(tomb["data"]["status"], "deleted");
    // Their photo is personal data too: gone with them (no other user shows it).
    let gone = app.http.get(app.url(&avatar_url)).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(app.count_rows("avatars").await, 0);
    // The number is free again, and the same WeChat user is a new user.
    let (_, again) = app.login(&app.code("vera").await).await;
    assert_eq!(again["data"]["new_user"], true);
    assert_ne!(again["data"]["user"]["id"], id);
    let (_, found) = call(
        &app,
        "GET",
        "/admin/users?phone=13600000001",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(found["data"]["users"], json!([]));
    app.shutdown().await;
}

#[tokio::test]
async fn a_ban_revokes_at_once_refuses_logins_until_unbanned_and_is_in_the_event_log() {
    let app = spawn_with(admin_opts(vec![])).await;
    let token = app.token_for("wade").await;
    let id = app.me(&token).await.1["data"]["id"].as_i64().unwrap();
    let path = |what: &str| format!("/admin/users/{id}/{what}");
    let (status, _) = call(
        &app,
        "POST",
        &path("ban"),
        Some(ADMIN),
        Some(json!({ "reason": "spam" })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(app.me(&token).await.0, 401);
    let (status, refused) = app.login(&app.code("wade").await).await;
    assert_eq!(
        (
            status.as_u16(),
            refused["error"].as_str(),
            refused["status"].as_u64()
        ),
        (403, Some("banned"), Some(5))
    );
    let (_, user) = call(
        &app,
        "GET",
        &format!("/admin/users/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (
            user["data"]["status"].as_str(),
            user["data"]["ban_reason"].as_str()
        ),
        (Some("banned"), Some("spam"))
    );
    let (status, _) = call(&app, "POST", &path("unban"), Some(ADMIN), None).await;
    assert_eq!(status, 200);
    let (status, _) = app.login(&app.code("wade").await).await;
    assert_eq!(status, 200);
    // Unbanning someone not banned, banning no one: 404.
    assert_eq!(
        call(&app, "POST", &path("unban"), Some(ADMIN), None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(
            &app,
            "POST",
            "/admin/users/999999/ban",
            Some(ADMIN),
            Some(json!({}))
        )
        .await
        .0,
        404
    );
    let (status, events) = call(&app, "GET", &path("events"), Some(ADMIN), None).await;
    assert_eq!(status, 200, "{events}");
    let kinds: Vec<&str> = events["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for k in [
        "user_banned",
        "session_revoked",
        "login_failed",
        "user_unbanned",
        "login",
        "user_created",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let failed = events["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "login_failed")
        .unwrap();
    assert_eq!(failed["detail"]["error"], "banned");
    assert_eq!(failed["ip"], "127.0.0.1");
    app.shutdown().await;
}

#[tokio::test]
async fn a_merge_moves_identities_sessions_and_phone_in_one_step() {
    let app = spawn_with(admin_opts(vec![])).await;
    let keep = app.token_for("xena").await;
    let gone = app.token_for("xavi").await;
    let pc = app
        .sim("/_sim/phone_codes", json!({ "phone": "13500000001" }))
        .await;
    assert_eq!(
        app.post("/phone", json!({ "code": pc["code"] }), Some(&gone))
            .await
            .0,
        200
    );
    let into = app.me(&keep).await.1["data"]["id"].as_i64().unwrap();
    let from = app.me(&gone).await.1["data"]["id"].as_i64().unwrap();
    let (status, merged) = call(
        &app,
        "POST",
        &format!("/admin/users/{into}/merge"),
        Some(ADMIN),
        Some(json!({ "from": from })),
    )
    .await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["data"]["identities"].as_array().unwrap().len(), 2);
    assert_eq!(merged["data"]["phone"], "13500000001");
    // The merged user's session now belongs to the one kept.
    let (_, me) = app.me(&gone).await;
    assert_eq!(me["data"]["id"], into);
    let (_, tomb) = call(
        &app,
        "GET",
        &format!("/admin/users/{from}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(tomb["data"]["status"], "deleted");
    // Logging in as either identity finds the one user.
    let (_, login) = app.login(&app.code("xavi").await).await;
    assert_eq!(login["data"]["user"]["id"], into);
    // A merge with itself or with a deleted user: 404, nothing changes.
    for other in [into, from] {
        let (status, _) = call(
            &app,
            "POST",
            &format!("/admin/users/{into}/merge"),
            Some(ADMIN),
            Some(json!({ "from": other })),
        )
        .await;
        assert_eq!(status, 404);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn every_login_has_its_event_and_the_log_pages_and_filters() {
    let app = spawn_with(admin_opts(vec![])).await;
    for user in ["yuri", "zola", "yuri"] {
        app.token_for(user).await;
    }
    assert_eq!(app.login("not-a-real-code").await.0, 401);
    // A login's event never exists without its session, nor the reverse.
    let (_, logins) = call(
        &app,
        "GET",
        "/admin/events?type=login&limit=1000",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        logins["data"]["events"].as_array().unwrap().len() as i64,
        app.count_rows("sessions").await
    );
    let (_, failed) = call(
        &app,
        "GET",
        "/admin/events?type=login_failed",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        failed["data"]["events"][0]["detail"]["error"],
        "invalid_code"
    );
    // Paging: two at a time, newest first, until no next page.
    let mut seen = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let q = match before {
            Some(b) => format!("/admin/events?limit=2&before={b}"),
            None => "/admin/events?limit=2".into(),
        };
        let (status, page) = call(&app, "GET", &q, Some(ADMIN), None).await;
        assert_eq!(status, 200, "{page}");
        for e in page["data"]["events"].as_array().unwrap() {
            seen.push(e["id"].as_i64().unwrap());
        }
        match page["data"]["next_before"].as_i64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, no repeats");
    assert_eq!(seen.len() as i64, app.count_rows("events").await);
    for bad in ["/admin/events?type=nope", "/admin/events?since=yesterday"] {
        assert_eq!(
            call(&app, "GET", bad, Some(ADMIN), None).await.0,
            400,
            "{bad}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn bans_deletions_and_merges_are_seen_by_every_instance_before_the_reply() {
    let app = spawn_with(admin_opts(vec![])).await;
    if !app.uses_redis() {
        eprintln!(
            "skipped: runs in the PostgreSQL + Redis pass (two instances need a shared store)"
        );
        app.shutdown().await;
        return;
    }
    let peer = app.spawn_peer().await;
    let on_peer = |token: String| {
        let app = &app;
        let addr = peer.addr;
        async move {
            let r = app
                .http
                .get(format!("http://{addr}/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Each token is checked on the peer first, so the peer has it cached.
    let banned = app.token_for("ban-me").await;
    let deleted = app.token_for("delete-me").await;
    let keep = app.token_for("keep-me").await;
    let merged = app.token_for("merge-me").await;
    for t in [&banned, &deleted, &keep, &merged] {
        assert_eq!(on_peer(t.clone()).await.0, 200);
    }
    let id = |t: &str| {
        let app = &app;
        let t = t.to_owned();
        async move { app.me(&t).await.1["data"]["id"].as_i64().unwrap() }
    };
    let (banned_id, keep_id, merged_id) = (id(&banned).await, id(&keep).await, id(&merged).await);
    call(
        &app,
        "POST",
        &format!("/admin/users/{banned_id}/ban"),
        Some(ADMIN),
        Some(json!({})),
    )
    .await;
    assert_eq!(on_peer(banned.clone()).await.0, 401, "ban seen by the peer");
    assert_eq!(
        call(&app, "DELETE", "/me", Some(&deleted), None).await.0,
        200
    );
    assert_eq!(
        on_peer(deleted.clone()).await.0,
        401,
        "deletion seen by the peer"
    );
    let (status, _) = call(
        &app,
        "POST",
        &format!("/admin/users/{keep_id}/merge"),
        Some(ADMIN),
        Some(json!({ "from": merged_id })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, me) = on_peer(merged.clone()).await;
    assert_eq!(
        (status, me["data"]["id"].as_i64()),
        (200, Some(keep_id)),
        "merge seen by the peer"
    );
    peer.stop(std::time::Duration::from_secs(2)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn events_past_their_retention_are_deleted_by_the_cleanup() {
    use wxlogin::services::maintenance::Maintenance;
    use wxlogin::services::sessions::SessionPolicy;
    let app = spawn_app().await;
    app.token_for("old-timer").await;
    let before = app.count_rows("events").await;
    assert!(before >= 2, "user_created and login");
    let maintenance = Maintenance::new(
        app.store().await,
        app.clock.clone(),
        SessionPolicy {
            idle_timeout: std::time::Duration::from_secs(7 * 86400),
            max_lifetime: std::time::Duration::from_secs(30 * 86400),
        },
        std::time::Duration::from_secs(180 * 86400),
    );
    app.clock
        .advance(std::time::Duration::from_secs(179 * 86400));
    app.token_for("newcomer").await;
    maintenance.cleanup().await.unwrap();
    assert_eq!(
        app.count_rows("events").await,
        before + 2,
        "nothing old enough yet"
    );
    app.clock.advance(std::time::Duration::from_secs(2 * 86400));
    maintenance.cleanup().await.unwrap();
    assert_eq!(
        app.count_rows("events").await,
        2,
        "only the newcomer's events are left"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_admin_cli_bans_unbans_merges_deletes_and_reads_events() {
    let app = spawn_with(admin_opts(vec![])).await;
    let token = app.token_for("cli-user").await;
    let other = app.token_for("cli-other").await;
    let id = app.me(&token).await.1["data"]["id"].to_string();
    let other_id = app.me(&other).await.1["data"]["id"].to_string();
    let (ok, _) = app
        .admin_cli(ADMIN, &["ban", &id, "--reason", "chargebacks"])
        .await;
    assert!(ok);
    assert_eq!(app.me(&token).await.0, 401);
    let (ok, text) = app.admin_cli(ADMIN, &["user", &id]).await;
    assert!(
        ok && text.contains("\"ban_reason\": \"chargebacks\""),
        "{text}"
    );
    let (ok, text) = app
        .admin_cli(ADMIN, &["events", "--user", &id, "--type", "user_banned"])
        .await;
    assert!(ok && text.contains("\"type\": \"user_banned\""), "{text}");
    let (ok, _) = app.admin_cli(ADMIN, &["unban", &id]).await;
    assert!(ok);
    let (ok, text) = app.admin_cli(ADMIN, &["merge", &id, &other_id]).await;
    assert!(ok && text.contains("\"identities\""), "{text}");
    assert_eq!(app.me(&other).await.1["data"]["id"].to_string(), id);
    let (ok, _) = app.admin_cli(ADMIN, &["delete-user", &id]).await;
    assert!(ok);
    assert_eq!(app.me(&other).await.0, 401);
    let (ok, text) = app
        .admin_cli(ADMIN, &["events", "--type", "user_deleted", "--limit", "5"])
        .await;
    assert!(ok && text.contains("user_deleted"), "{text}");
    let (ok, _) = app.admin_cli(ADMIN, &["unban", "999999"]).await;
    assert!(!ok, "a missing user is an error exit");
    app.shutdown().await;
}

#[tokio::test]
async fn a_replaced_avatar_nobody_shows_is_deleted() {
    let app = spawn_app().await;
    let token = app.token_for("rita").await;
    let (_, first) = upload(&app, &token, "image/png", png()).await;
    let first_url = format!("/{}", first["data"]["avatar_url"].as_str().unwrap());
    let (status, _) = upload(&app, &token, "image/jpeg", jpeg()).await;
    assert_eq!(status, 200);
    assert_eq!(
        app.count_rows("avatars").await,
        1,
        "the PNG went with the change"
    );
    let old = app.http.get(app.url(&first_url)).send().await.unwrap();
    assert_eq!(old.status(), 404);
    app.shutdown().await;
}
