//! Platforms other than WeChat, through the same `POST /login`: QQ so far (its `jscode2session`
//! on api.q.qq.com, played by the simulator under `/qq`).

use crate::harness::*;
use serde_json::{json, Value};

const QQ_APPID: &str = "1109000001";

fn with_qq() -> Options {
    Options {
        apps: vec![(APPID, SECRET), ("qq/1109000001", "qq-secret")],
        ..Options::default()
    }
}

/// `qq.login()` for `user`: what the simulator hands the client.
async fn qq_login(app: &TestApp, user: &str) -> Value {
    app.sim(
        "/_sim/codes",
        json!({ "platform": "qq", "appid": QQ_APPID, "user": user }),
    )
    .await
}

async fn login_to(app: &TestApp, appid: &str, code: &Value) -> (u16, Value) {
    let (status, body) = app
        .post("/login", json!({ "code": code, "appid": appid }), None)
        .await;
    (status.as_u16(), body)
}

#[tokio::test]
async fn a_qq_code_logs_in_to_the_qq_app_as_a_qq_identity_through_qqs_api() {
    let app = spawn_with(with_qq()).await;
    let issued = qq_login(&app, "lin").await;
    assert_eq!(issued["platform"], "qq");
    let (status, body) = login_to(&app, QQ_APPID, &issued["code"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 0);
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    assert!(
        !body
            .to_string()
            .contains(issued["session_key"].as_str().unwrap()),
        "the session_key never leaves the server"
    );
    let (status, me) = app.me(&token).await;
    assert_eq!(status, 200, "{me}");
    let identities = me["data"]["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 1, "{me}");
    assert_eq!(identities[0]["platform"], "qq");
    assert_eq!(identities[0]["appid"], QQ_APPID);
    assert_eq!(identities[0]["openid"], issued["openid"]);
    assert_eq!(app.calls("/qq/sns/jscode2session").await, 1);
    assert_eq!(
        app.calls("/sns/jscode2session").await,
        0,
        "not WeChat's API"
    );
    // A code works once.
    let (status, again) = login_to(&app, QQ_APPID, &issued["code"]).await;
    assert_eq!((status, again["error"].as_str()), (401, Some("code_used")));
    app.shutdown().await;
}

#[tokio::test]
async fn a_code_from_one_platform_never_logs_in_to_the_other_platforms_app() {
    let app = spawn_with(with_qq()).await;
    let qq = qq_login(&app, "mei").await;
    let (status, body) = login_to(&app, APPID, &qq["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_code"))
    );
    let wx = app.wx_login("mei").await;
    let (status, body) = login_to(&app, QQ_APPID, &wx["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_code"))
    );
    // The same person on both: two identities of two platforms, never joined by a unionid
    // (WeChat's and QQ's Open Platform accounts are not the same).
    let (s1, on_qq) = login_to(&app, QQ_APPID, &qq_login(&app, "mei").await["code"]).await;
    let (s2, on_wx) = login_to(&app, APPID, &app.wx_login("mei").await["code"]).await;
    assert_eq!((s1, s2), (200, 200), "{on_qq} {on_wx}");
    assert_ne!(on_qq["data"]["user"]["id"], on_wx["data"]["user"]["id"]);
    app.shutdown().await;
}

#[tokio::test]
async fn qqs_errors_map_onto_the_error_table_and_an_outage_does_not_spend_the_code() {
    let app = spawn_with(with_qq()).await;
    let issued = qq_login(&app, "ning").await;
    // Busy twice (the one retry included): 503 with Retry-After, and the code still works.
    app.fault(json!({ "api": "/qq/sns/jscode2session", "errcode": -1, "times": 2 }))
        .await;
    let r = app
        .http
        .post(app.url("/login"))
        .json(&json!({ "code": issued["code"], "appid": QQ_APPID }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "wechat_unavailable");
    let (status, body) = login_to(&app, QQ_APPID, &issued["code"]).await;
    assert_eq!(status, 200, "{body}");

    for (errcode, status, error) in [
        (45011, 429, "wechat_rate_limited"),
        (40001, 503, "wechat_misconfigured"),
        (40029, 401, "invalid_code"),
        (-1009, 503, "wechat_unavailable"),
    ] {
        let code = qq_login(&app, "ning").await["code"].clone();
        app.fault(json!({ "api": "/qq/sns/jscode2session", "errcode": errcode }))
            .await;
        let (got, body) = login_to(&app, QQ_APPID, &code).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{errcode}: {body}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_qq_session_decrypts_open_data_and_is_told_phone_and_checksession_are_unsupported() {
    let app = spawn_with(with_qq()).await;
    let issued = qq_login(&app, "ou").await;
    let (_, body) = login_to(&app, QQ_APPID, &issued["code"]).await;
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let sealed = app
        .sim(
            "/_sim/encrypt",
            json!({ "appid": QQ_APPID, "user": "ou", "data": { "step": 1 } }),
        )
        .await;
    let (status, opened) = app
        .post(
            "/decrypt",
            json!({ "encryptedData": sealed["encryptedData"], "iv": sealed["iv"] }),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["data"]["watermark"]["appid"], QQ_APPID);
    let (status, body) = app
        .post("/phone", json!({ "code": "any" }), Some(&token))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (404, Some("unsupported"))
    );
    let r = app
        .http
        .get(app.url("/session/check"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported");
    app.shutdown().await;
}

const BAIDU_APPKEY: &str = "baiduappkey0001";
const KUAISHOU_APPID: &str = "ks671234567890";

fn with_baidu_and_kuaishou() -> Options {
    Options {
        apps: vec![
            (APPID, SECRET),
            ("baidu/baiduappkey0001", "baidu-secret"),
            ("kuaishou/ks671234567890", "kuaishou-secret"),
        ],
        ..Options::default()
    }
}

async fn code_for(app: &TestApp, platform: &str, appid: &str, user: &str) -> Value {
    app.sim(
        "/_sim/codes",
        json!({ "platform": platform, "appid": appid, "user": user }),
    )
    .await
}

#[tokio::test]
async fn baidu_and_kuaishou_codes_log_in_through_their_own_apis() {
    let app = spawn_with(with_baidu_and_kuaishou()).await;
    for (platform, appid, api) in [
        ("baidu", BAIDU_APPKEY, "/baidu/oauth/jscode2sessionkey"),
        (
            "kuaishou",
            KUAISHOU_APPID,
            "/kuaishou/oauth2/mp/code2session",
        ),
    ] {
        let issued = code_for(&app, platform, appid, "tao").await;
        assert!(issued["unionid"].is_null(), "{platform} has no unionid");
        let (status, body) = login_to(&app, appid, &issued["code"]).await;
        assert_eq!(status, 200, "{platform}: {body}");
        let token = body["data"]["token"].as_str().unwrap().to_owned();
        let (_, me) = app.me(&token).await;
        assert_eq!(me["data"]["identities"][0]["platform"], platform, "{me}");
        assert_eq!(me["data"]["identities"][0]["openid"], issued["openid"]);
        assert_eq!(app.calls(api).await, 1, "{platform}");
        let (status, again) = login_to(&app, appid, &issued["code"]).await;
        assert_eq!((status, again["error"].as_str()), (401, Some("code_used")));
        // Baidu's open data in its own format (AES-192, the AppKey after the JSON); Kuaishou's
        // as WeChat's without a watermark. WeChat's access_token APIs exist for neither.
        let sealed = app
            .sim(
                "/_sim/encrypt",
                json!({ "appid": appid, "user": "tao", "data": { "nickname": "涛" } }),
            )
            .await;
        let (status, body) = app
            .post(
                "/decrypt",
                json!({ "encryptedData": sealed["encryptedData"], "iv": sealed["iv"] }),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{platform}: {body}");
        assert_eq!(body["data"], json!({ "nickname": "涛" }), "{platform}");
        // rawData signed as WeChat's on Kuaishou; Baidu signs none.
        let raw = r#"{"nickName":"涛"}"#;
        let signature = wxlogin::wechat::crypto::raw_data_signature(
            raw,
            issued["session_key"].as_str().unwrap(),
        );
        let (status, body) = app
            .post(
                "/userinfo/verify",
                json!({ "rawData": raw, "signature": signature }),
                Some(&token),
            )
            .await;
        if platform == "kuaishou" {
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["data"]["valid"], true);
        } else {
            assert_eq!(
                (status.as_u16(), body["error"].as_str()),
                (404, Some("unsupported"))
            );
        }
        let (status, body) = app
            .post("/phone", json!({ "code": "any" }), Some(&token))
            .await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str()),
            (404, Some("unsupported"))
        );
    }
    // Another platform's code is unknown to each.
    let wx = app.wx_login("tao").await;
    for appid in [BAIDU_APPKEY, KUAISHOU_APPID] {
        let (status, body) = login_to(&app, appid, &wx["code"]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_code")),
            "{appid}"
        );
    }
    assert_eq!(app.calls("/sns/jscode2session").await, 0);
    app.shutdown().await;
}

#[tokio::test]
async fn baidu_and_kuaishou_outages_are_503_without_spending_the_code_and_errors_map() {
    let app = spawn_with(with_baidu_and_kuaishou()).await;
    // Baidu: a failing gateway (an HTTP error is not retried), then a good answer.
    let issued = code_for(&app, "baidu", BAIDU_APPKEY, "wu").await;
    app.fault(json!({ "api": "/baidu/oauth/jscode2sessionkey", "status": 502 }))
        .await;
    let (status, body) = login_to(&app, BAIDU_APPKEY, &issued["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("wechat_unavailable"))
    );
    let (status, body) = login_to(&app, BAIDU_APPKEY, &issued["code"]).await;
    assert_eq!(status, 200, "{body}");
    // Kuaishou: server_error twice, then a good answer.
    let issued = code_for(&app, "kuaishou", KUAISHOU_APPID, "wu").await;
    app.fault(
        json!({ "api": "/kuaishou/oauth2/mp/code2session", "errcode": 100200500, "times": 2 }),
    )
    .await;
    let (status, body) = login_to(&app, KUAISHOU_APPID, &issued["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("wechat_unavailable"))
    );
    let (status, body) = login_to(&app, KUAISHOU_APPID, &issued["code"]).await;
    assert_eq!(status, 200, "{body}");
    for (api, appid, platform, errcode, errmsg, status, error) in [
        (
            "/kuaishou/oauth2/mp/code2session",
            KUAISHOU_APPID,
            "kuaishou",
            100200101,
            "invalid_client",
            503,
            "wechat_misconfigured",
        ),
        (
            "/kuaishou/oauth2/mp/code2session",
            KUAISHOU_APPID,
            "kuaishou",
            100200105,
            "invalid_grant",
            401,
            "invalid_code",
        ),
        (
            "/baidu/oauth/jscode2sessionkey",
            BAIDU_APPKEY,
            "baidu",
            1,
            "invalid_grant",
            401,
            "invalid_code",
        ),
        (
            "/baidu/oauth/jscode2sessionkey",
            BAIDU_APPKEY,
            "baidu",
            10010100,
            "parameter is invalid",
            503,
            "wechat_misconfigured",
        ),
    ] {
        let code = code_for(&app, platform, appid, "wu").await["code"].clone();
        app.fault(json!({ "api": api, "errcode": errcode, "errmsg": errmsg }))
            .await;
        let (got, body) = login_to(&app, appid, &code).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{api} {errcode}: {body}"
        );
    }
    app.shutdown().await;
}

const DOUYIN_APPID: &str = "tt0123456789abcdef";

#[tokio::test]
async fn a_douyin_code_logs_in_through_douyins_api_and_its_errors_map() {
    let app = spawn_with(Options {
        apps: vec![
            (APPID, SECRET),
            ("douyin/tt0123456789abcdef", "douyin-secret"),
        ],
        ..Options::default()
    })
    .await;
    let issued = code_for(&app, "douyin", DOUYIN_APPID, "yun").await;
    let (status, body) = login_to(&app, DOUYIN_APPID, &issued["code"]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let (_, me) = app.me(&token).await;
    let identity = &me["data"]["identities"][0];
    assert_eq!(identity["platform"], "douyin", "{me}");
    assert_eq!(identity["openid"], issued["openid"]);
    assert_eq!(
        identity["unionid"], issued["unionid"],
        "Douyin sends a unionid"
    );
    assert_eq!(app.calls("/douyin/api/apps/v2/jscode2session").await, 1);
    let (status, again) = login_to(&app, DOUYIN_APPID, &issued["code"]).await;
    assert_eq!((status, again["error"].as_str()), (401, Some("code_used")));
    let wx = app.wx_login("yun").await;
    let (status, body) = login_to(&app, DOUYIN_APPID, &wx["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_code"))
    );
    // Open data as WeChat's: AES-128 with the app's watermark, rawData signed with sha1.
    let sealed = app
        .sim(
            "/_sim/encrypt",
            json!({ "appid": DOUYIN_APPID, "user": "yun", "data": { "nickName": "云" } }),
        )
        .await;
    let (status, body) = app
        .post(
            "/decrypt",
            json!({ "encryptedData": sealed["encryptedData"], "iv": sealed["iv"] }),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["nickName"], "云");
    assert_eq!(body["data"]["watermark"]["appid"], DOUYIN_APPID);
    // Sealed for the WeChat app (another session_key, another watermark): refused.
    let wechat_user = app.wx_login("yun-wx").await;
    let other = app
        .sim(
            "/_sim/encrypt",
            json!({ "appid": APPID, "user": "yun-wx", "data": { "nickName": "云" } }),
        )
        .await;
    assert!(wechat_user["code"].is_string());
    let (status, body) = app
        .post(
            "/decrypt",
            json!({ "encryptedData": other["encryptedData"], "iv": other["iv"] }),
            Some(&token),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("decrypt_failed")),
        "{body}"
    );
    let raw = r#"{"nickName":"云"}"#;
    let signature =
        wxlogin::wechat::crypto::raw_data_signature(raw, issued["session_key"].as_str().unwrap());
    let (status, body) = app
        .post(
            "/userinfo/verify",
            json!({ "rawData": raw, "signature": signature }),
            Some(&token),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["data"]["valid"].as_bool()),
        (200, Some(true)),
        "{body}"
    );

    // System error twice (the one retry included): 503, and the code still works.
    let issued = code_for(&app, "douyin", DOUYIN_APPID, "yun").await;
    app.fault(json!({ "api": "/douyin/api/apps/v2/jscode2session", "errcode": -1, "times": 2 }))
        .await;
    let (status, body) = login_to(&app, DOUYIN_APPID, &issued["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("wechat_unavailable"))
    );
    let (status, body) = login_to(&app, DOUYIN_APPID, &issued["code"]).await;
    assert_eq!(status, 200, "{body}");
    for (err_no, status, error) in [
        (40017, 503, "wechat_misconfigured"),
        (40018, 401, "invalid_code"),
        (12345, 503, "wechat_unavailable"),
    ] {
        let code = code_for(&app, "douyin", DOUYIN_APPID, "yun").await["code"].clone();
        app.fault(json!({ "api": "/douyin/api/apps/v2/jscode2session", "errcode": err_no }))
            .await;
        let (got, body) = login_to(&app, DOUYIN_APPID, &code).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{err_no}: {body}"
        );
    }
    app.shutdown().await;
}

fn with_douyin() -> Options {
    Options {
        apps: vec![
            (APPID, SECRET),
            ("douyin/tt0123456789abcdef", "douyin-secret"),
        ],
        ..Options::default()
    }
}

/// `tt.login()` on `device`: signed in to Douyin as `user`, or (`user` None) not signed in.
async fn tt_login(app: &TestApp, user: Option<&str>, device: &str) -> Value {
    let body = match user {
        Some(user) => {
            json!({ "platform": "douyin", "appid": DOUYIN_APPID, "user": user, "device": device })
        }
        None => {
            json!({ "platform": "douyin", "appid": DOUYIN_APPID, "user": device, "signed_in": false })
        }
    };
    app.sim("/_sim/codes", body).await
}

async fn douyin_login(app: &TestApp, code: &Value, anonymous_code: &Value) -> (u16, Value) {
    let (status, body) = app
        .post(
            "/login",
            json!({ "appid": DOUYIN_APPID, "code": code, "anonymous_code": anonymous_code }),
            None,
        )
        .await;
    (status.as_u16(), body)
}

/// The identities `/me` lists for a token: `(platform, openid)`, sorted.
async fn identities_of(app: &TestApp, token: &str) -> (i64, Vec<(String, String)>) {
    let (status, me) = app.me(token).await;
    assert_eq!(status, 200, "{me}");
    let mut ids: Vec<(String, String)> = me["data"]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["platform"].as_str().unwrap().to_owned(),
                i["openid"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    ids.sort();
    (me["data"]["id"].as_i64().unwrap(), ids)
}

#[tokio::test]
async fn a_douyin_device_not_signed_in_logs_in_anonymously_and_keeps_its_account_on_signing_in() {
    let app = spawn_with(with_douyin()).await;
    // Not signed in to Douyin: tt.login() gives an anonymous_code only.
    let guest = tt_login(&app, None, "phone-1").await;
    assert!(guest["code"].is_null(), "{guest}");
    let (status, body) = douyin_login(&app, &Value::Null, &guest["anonymous_code"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 0);
    let guest_token = body["data"]["token"].as_str().unwrap().to_owned();
    let anon_openid = format!("anon:{}", guest["anonymous_openid"].as_str().unwrap());
    let (guest_user, ids) = identities_of(&app, &guest_token).await;
    assert_eq!(ids, vec![("douyin".to_owned(), anon_openid.clone())]);
    // A guest has no session key: open data is 404 unsupported for its session.
    tt_login(&app, Some("someone"), "phone-9").await;
    let sealed = app
        .sim(
            "/_sim/encrypt",
            json!({ "appid": DOUYIN_APPID, "user": "someone", "data": { "nickName": "云" } }),
        )
        .await;
    let (status, body) = app
        .post(
            "/decrypt",
            json!({ "encryptedData": sealed["encryptedData"], "iv": sealed["iv"] }),
            Some(&guest_token),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (404, Some("unsupported")),
        "{body}"
    );
    // An anonymous_code works once too (remembered as used, as a login code is).
    let (status, body) = douyin_login(&app, &Value::Null, &guest["anonymous_code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("code_used")),
        "{body}"
    );

    // The user signs in to Douyin on that device: both codes, and the guest account becomes
    // the signed-in user's (same user id, the anonymous identity now the real openid).
    let signed = tt_login(&app, Some("mei"), "phone-1").await;
    assert_eq!(signed["anonymous_openid"], guest["anonymous_openid"]);
    let (status, body) = douyin_login(&app, &signed["code"], &signed["anonymous_code"]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let (user, ids) = identities_of(&app, &token).await;
    assert_eq!(user, guest_user, "the guest's account is kept");
    assert_eq!(
        ids,
        vec![(
            "douyin".to_owned(),
            signed["openid"].as_str().unwrap().to_owned()
        )]
    );
    // The guest's token ended (a `session_revoked` event, reason `signed_in`): this login's
    // token replaces it on the device.
    let (status, _) = app.me(&guest_token).await;
    assert_eq!(status, 401);
    let revoked = format!(
        "SELECT COUNT(*) FROM events WHERE type = 'session_revoked' AND user_id = {user} \
         AND detail LIKE '%signed_in%'"
    );
    assert_eq!(app.count(&revoked).await, 1);

    // Signed out again on the same device: a new guest, not the signed-in user's account.
    let guest = tt_login(&app, None, "phone-1").await;
    let (status, body) = douyin_login(&app, &Value::Null, &guest["anonymous_code"]).await;
    assert_eq!(status, 200, "{body}");
    let (second_guest, _) = identities_of(&app, body["data"]["token"].as_str().unwrap()).await;
    assert_ne!(second_guest, user);
    // Signing in again as the same user: the existing account; the new guest stays apart.
    let signed = tt_login(&app, Some("mei"), "phone-1").await;
    let (status, body) = douyin_login(&app, &signed["code"], &signed["anonymous_code"]).await;
    assert_eq!(status, 200, "{body}");
    let (again, ids) = identities_of(&app, body["data"]["token"].as_str().unwrap()).await;
    assert_eq!(again, user);
    assert_eq!(ids.len(), 1, "{ids:?}");

    // A bad anonymous_code spends neither code; a missing both is a 400.
    let signed = tt_login(&app, Some("mei"), "phone-2").await;
    let (status, body) = douyin_login(&app, &signed["code"], &json!("not-a-code")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_code")),
        "{body}"
    );
    let (status, body) = douyin_login(&app, &signed["code"], &signed["anonymous_code"]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = douyin_login(&app, &Value::Null, &Value::Null).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("missing_code")),
        "{body}"
    );
    // anonymous_code is Douyin's: sent to the WeChat app it is a 400, and the code is kept.
    let wx = app.wx_login("mei").await;
    let (status, body) = app
        .post(
            "/login",
            json!({ "appid": APPID, "code": wx["code"], "anonymous_code": "x" }),
            None,
        )
        .await;
    assert_eq!(status.as_u16(), 400, "{body}");
    let (status, _) = login_to(&app, APPID, &wx["code"]).await;
    assert_eq!(status, 200);
    app.shutdown().await;
}

const ALIPAY_APPID: &str = "2021000000000001";
const ALIPAY_GATEWAY: &str = "/alipay/gateway.do";

#[tokio::test]
async fn an_alipay_code_logs_in_through_the_rsa2_signed_gateway_and_its_errors_map() {
    let app = spawn_with(Options {
        apps: vec![(APPID, SECRET), ("alipay/2021000000000001", ALIPAY_APP_KEY)],
        ..Options::default()
    })
    .await;
    let issued = code_for(&app, "alipay", ALIPAY_APPID, "zhi").await;
    let (status, body) = login_to(&app, ALIPAY_APPID, &issued["code"]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let (_, me) = app.me(&token).await;
    let identity = &me["data"]["identities"][0];
    assert_eq!(identity["platform"], "alipay", "{me}");
    assert_eq!(identity["appid"], ALIPAY_APPID);
    assert_eq!(identity["openid"], issued["openid"], "Alipay's open_id");
    assert_eq!(app.calls(ALIPAY_GATEWAY).await, 1);
    let (status, again) = login_to(&app, ALIPAY_APPID, &issued["code"]).await;
    assert_eq!((status, again["error"].as_str()), (401, Some("code_used")));
    // Another platform's code is unknown to Alipay.
    let wx = app.wx_login("zhi").await;
    let (status, body) = login_to(&app, ALIPAY_APPID, &wx["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_code"))
    );
    // No session_key: nothing to open or verify.
    for (path, body) in [
        ("/decrypt", json!({ "encryptedData": "AAAA", "iv": "AAAA" })),
        (
            "/userinfo/verify",
            json!({ "rawData": "{}", "signature": "0".repeat(40) }),
        ),
        ("/phone", json!({ "code": "any" })),
    ] {
        let (status, reply) = app.post(path, body, Some(&token)).await;
        assert_eq!(
            (status.as_u16(), reply["error"].as_str()),
            (404, Some("unsupported")),
            "{path}: {reply}"
        );
    }

    // Alipay's errors, signed as Alipay signs them, on the §2 table.
    for (fault, status, error) in [
        (
            json!({ "errcode": 40002, "errmsg": "isv.code-invalid" }),
            401,
            "invalid_code",
        ),
        (
            json!({ "errcode": 40002, "errmsg": "isv.invalid-signature" }),
            503,
            "wechat_misconfigured",
        ),
        (
            json!({ "errcode": 20000, "errmsg": "isp.unknow-error", "times": 2 }),
            503,
            "wechat_unavailable",
        ),
        (json!({ "status": 502 }), 503, "wechat_unavailable"),
    ] {
        let issued = code_for(&app, "alipay", ALIPAY_APPID, "zhi").await;
        let mut fault = fault;
        fault["api"] = json!(ALIPAY_GATEWAY);
        app.fault(fault.clone()).await;
        let (got, body) = login_to(&app, ALIPAY_APPID, &issued["code"]).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{fault}: {body}"
        );
        if status == 503 && error == "wechat_unavailable" {
            // The platform never answered for it: the code is not spent.
            let (got, body) = login_to(&app, ALIPAY_APPID, &issued["code"]).await;
            assert_eq!(got, 200, "{fault}: {body}");
        }
    }
    app.shutdown().await;
}

#[tokio::test]
async fn alipay_replies_not_signed_by_alipays_key_and_requests_not_signed_by_the_apps_are_refused()
{
    const ADMIN: &str = "alipay-admin-token-0123456789";
    let app = spawn_with(Options {
        env: vec![("WXLOGIN_ADMIN_TOKEN", ADMIN.into())],
        ..Options::default()
    })
    .await;
    let app_public = include_str!("../fixtures/alipay/app_public.pem");
    let add = |appid: &'static str, body: Value| {
        let mut body = body;
        body["platform"] = json!("alipay");
        body["appid"] = json!(appid);
        app.call("POST", "/admin/apps", Some(ADMIN), Some(body))
    };
    // Clear 400s for keys that cannot work; nothing stored.
    for body in [
        json!({ "secret": "not a key", "alipay_public_key": app_public }),
        json!({ "secret": ALIPAY_APP_KEY, "alipay_public_key": "not a key" }),
        json!({ "secret": ALIPAY_APP_KEY }),
        json!({ "secret": app_public, "alipay_public_key": app_public }),
    ] {
        let (status, reply) = add("2021000000000009", body.clone()).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some("bad_request")),
            "{body}: {reply}"
        );
        assert!(
            !reply.to_string().contains("MII"),
            "no key in the reply: {reply}"
        );
    }
    let (status, reply) = app
        .call(
            "POST",
            "/admin/apps",
            Some(ADMIN),
            Some(json!({ "platform": "qq", "appid": "q1", "secret": "s", "alipay_public_key": app_public })),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("bad_request"))
    );
    assert_eq!(app.count_rows("apps").await, 0);

    // Configured with the wrong public key (the app's own): Alipay's replies do not verify.
    app.sim(
        "/_sim/apps",
        json!({ "platform": "alipay", "appid": "2021000000000002", "secret": ALIPAY_APP_KEY }),
    )
    .await;
    let (status, reply) = add(
        "2021000000000002",
        json!({ "secret": ALIPAY_APP_KEY, "alipay_public_key": app_public }),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let issued = code_for(&app, "alipay", "2021000000000002", "mo").await;
    let (status, body) = login_to(&app, "2021000000000002", &issued["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("wechat_unavailable")),
        "{body}"
    );
    assert_eq!(
        app.count_rows("sessions").await,
        0,
        "no user from an unverified reply"
    );
    // With Alipay's key (a PEM this time, as a rotation), the next code logs in.
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        wxlogin::simulator::alipay_public_key()
    );
    let (status, reply) = app
        .call(
            "PUT",
            "/admin/apps/2021000000000002",
            Some(ADMIN),
            Some(json!({ "secret": ALIPAY_APP_KEY, "alipay_public_key": pem })),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let issued = code_for(&app, "alipay", "2021000000000002", "mo").await;
    let (status, body) = login_to(&app, "2021000000000002", &issued["code"]).await;
    assert_eq!(status, 200, "{body}");

    // Alipay knows the app by another key pair: our signature does not verify there.
    let other = include_str!("../fixtures/alipay/app_private_pkcs8.pem");
    app.sim(
        "/_sim/apps",
        json!({ "platform": "alipay", "appid": "2021000000000003", "secret": wxlogin::simulator::alipay_public_key() }),
    )
    .await;
    let (status, reply) = add(
        "2021000000000003",
        json!({ "secret": other, "alipay_public_key": wxlogin::simulator::alipay_public_key() }),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let issued = code_for(&app, "alipay", "2021000000000003", "mo").await;
    let (status, body) = login_to(&app, "2021000000000003", &issued["code"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("wechat_misconfigured")),
        "{body}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_alipay_phone_number_is_verified_with_alipays_key_and_opened_with_the_apps_aes_key() {
    const ADMIN: &str = "alipay-admin-token-0123456789";
    const APP: &str = "2021000000000005";
    const AES_KEY: &str = "AAECAwQFBgcICQoLDA0ODw==";
    let app = spawn_with(Options {
        env: vec![("WXLOGIN_ADMIN_TOKEN", ADMIN.into())],
        ..Options::default()
    })
    .await;
    let alipay_public = wxlogin::simulator::alipay_public_key();
    let register = |appid: &'static str, aes_key: Option<&'static str>| {
        let mut body = json!({ "platform": "alipay", "appid": appid, "secret": ALIPAY_APP_KEY });
        let mut sim = body.clone();
        body["alipay_public_key"] = json!(alipay_public);
        if let Some(k) = aes_key {
            body["alipay_aes_key"] = json!(k);
            sim["phone_key"] = json!(k);
        }
        (body, sim)
    };
    // An AES key that is not base64 of 16 bytes, or on another platform: 400, nothing stored.
    let (mut bad, _) = register(APP, Some(AES_KEY));
    bad["alipay_aes_key"] = json!("c2hvcnQ=");
    let (status, reply) = app
        .call("POST", "/admin/apps", Some(ADMIN), Some(bad))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("bad_request")),
        "{reply}"
    );
    let qq = json!({ "platform": "qq", "appid": "q1", "secret": "s", "alipay_aes_key": AES_KEY });
    let (status, _) = app.call("POST", "/admin/apps", Some(ADMIN), Some(qq)).await;
    assert_eq!(status, 400);
    assert_eq!(app.count_rows("apps").await, 0);

    let (body, sim) = register(APP, Some(AES_KEY));
    app.sim("/_sim/apps", sim).await;
    let (status, reply) = app
        .call("POST", "/admin/apps", Some(ADMIN), Some(body))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(!reply.to_string().contains(AES_KEY));
    // Sealed at rest, never in plain text.
    let sealed = app
        .count("SELECT COUNT(*) FROM apps WHERE phone_key LIKE 'enc1:%'")
        .await;
    assert_eq!(sealed, 1);

    let issued = code_for(&app, "alipay", APP, "hua").await;
    let (status, body) = login_to(&app, APP, &issued["code"]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let phone = |extra: Value| {
        let mut req = json!({ "appid": APP, "phone": "15900001111" });
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        app.sim("/_sim/phone_codes", req)
    };
    let message = phone(json!({})).await["response"].clone();
    assert!(message.is_string(), "{message}");
    let (status, body) = app
        .post("/phone", json!({ "response": message }), Some(&token))
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(body["data"]["phoneNumber"], "15900001111");
    assert_eq!(body["data"]["countryCode"], "86");
    let (_, me) = app.me(&token).await;
    assert_eq!(me["data"]["phone"], "15900001111", "{me}");

    // Tampered with (the signature no longer Alipay's): the one generic error, nothing bound.
    let fresh = phone(json!({ "phone": "15900002222" })).await["response"].clone();
    let mut m: Value = serde_json::from_str(fresh.as_str().unwrap()).unwrap();
    let sign = m["sign"].as_str().unwrap().to_owned();
    m["sign"] = json!(format!(
        "{}{}",
        if sign.starts_with('A') { "B" } else { "A" },
        &sign[1..]
    ));
    let (status, body) = app
        .post("/phone", json!({ "response": m.to_string() }), Some(&token))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("decrypt_failed")),
        "{body}"
    );
    // Alipay's refusal; a WeChat-style code from an Alipay session; nonsense.
    let refused =
        phone(json!({ "refuse": "isv.invalid-auth-relations" })).await["response"].clone();
    let (status, body) = app
        .post("/phone", json!({ "response": refused }), Some(&token))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_phone_code")),
        "{body}"
    );
    for bad in [json!({ "code": "abc" }), json!({ "response": "not json" })] {
        let (status, body) = app.post("/phone", bad.clone(), Some(&token)).await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {body}"
        );
    }
    let (_, me) = app.me(&token).await;
    assert_eq!(me["data"]["phone"], "15900001111");

    // Alipay's message under another key than ours (rotated on its console, not here): 503
    // misconfigured, never the client's fault.
    const NEW_KEY: &str = "EBESExQVFhcYGRobHB0eHw==";
    let (_, sim) = register(APP, Some(NEW_KEY));
    app.sim("/_sim/apps", sim).await;
    let message = phone(json!({ "phone": "15900003333" })).await["response"].clone();
    let (status, body) = app
        .post("/phone", json!({ "response": message }), Some(&token))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (503, Some("wechat_misconfigured")),
        "{body}"
    );
    // A rotated AES key is the one used from then on.
    let (_, sim) = register(APP, Some(NEW_KEY));
    app.sim("/_sim/apps", sim).await;
    let (status, reply) = app
        .call(
            "PUT",
            &format!("/admin/apps/{APP}"),
            Some(ADMIN),
            Some(json!({ "secret": ALIPAY_APP_KEY, "alipay_aes_key": NEW_KEY })),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let message = phone(json!({ "phone": "15900003333" })).await["response"].clone();
    let (status, body) = app
        .post("/phone", json!({ "response": message }), Some(&token))
        .await;
    assert_eq!(
        (status.as_u16(), body["data"]["phoneNumber"].as_str()),
        (200, Some("15900003333")),
        "{body}"
    );

    // An Alipay app without an AES key takes no phone numbers: 404 unsupported.
    const PLAIN: &str = "2021000000000006";
    let (body, sim) = register(PLAIN, None);
    app.sim("/_sim/apps", sim).await;
    let (status, _) = app
        .call("POST", "/admin/apps", Some(ADMIN), Some(body))
        .await;
    assert_eq!(status, 200);
    let issued = code_for(&app, "alipay", PLAIN, "hua").await;
    let (_, body) = login_to(&app, PLAIN, &issued["code"]).await;
    let plain_token = body["data"]["token"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post("/phone", json!({ "response": message }), Some(&plain_token))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (404, Some("unsupported")),
        "{body}"
    );
    // And a WeChat session's `response` is a 400.
    let wx_token = app.token_for("hua-wx").await;
    let (status, body) = app
        .post("/phone", json!({ "response": message }), Some(&wx_token))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_douyin_phone_number_comes_through_the_client_token_and_opens_with_the_apps_private_key()
{
    const ADMIN: &str = "douyin-admin-token-0123456789";
    const APP: &str = "tt00000000000000a1";
    let private_key = include_str!("../fixtures/alipay/app_private_pkcs8.pem");
    let app = spawn_with(Options {
        env: vec![("WXLOGIN_ADMIN_TOKEN", ADMIN.into())],
        ..Options::default()
    })
    .await;
    // Douyin holds the public half (uploaded on its console); we hold the private key.
    app.sim(
        "/_sim/apps",
        json!({ "platform": "douyin", "appid": APP, "secret": "dy-secret",
                "phone_key": include_str!("../fixtures/alipay/app_public.pem") }),
    )
    .await;
    // A key that is not an RSA private key, or on another platform's app: 400, nothing stored.
    for body in [
        json!({ "platform": "douyin", "appid": APP, "secret": "dy-secret", "douyin_private_key": "nope" }),
        json!({ "platform": "qq", "appid": "q1", "secret": "s", "douyin_private_key": private_key }),
        json!({ "platform": "douyin", "appid": APP, "secret": "dy-secret", "alipay_aes_key": "AAECAwQFBgcICQoLDA0ODw==" }),
    ] {
        let (status, reply) = app
            .call("POST", "/admin/apps", Some(ADMIN), Some(body.clone()))
            .await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some("bad_request")),
            "{body}: {reply}"
        );
        assert!(!reply.to_string().contains("MII"), "{reply}");
    }
    assert_eq!(app.count_rows("apps").await, 0);
    let (status, reply) = app
        .call(
            "POST",
            "/admin/apps",
            Some(ADMIN),
            Some(json!({ "platform": "douyin", "appid": APP, "secret": "dy-secret", "douyin_private_key": private_key })),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM apps WHERE phone_key LIKE 'enc1:%'")
            .await,
        1
    );

    let issued = code_for(&app, "douyin", APP, "ling").await;
    let (status, body) = login_to(&app, APP, &issued["code"]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let phone_code =
        |phone: &'static str| app.sim("/_sim/phone_codes", json!({ "appid": APP, "phone": phone }));
    let code = phone_code("13900001111").await["code"].clone();
    let (status, body) = app
        .post("/phone", json!({ "code": code }), Some(&token))
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(body["data"]["purePhoneNumber"], "13900001111");
    assert_eq!(body["data"]["countryCode"], "86");
    let (_, me) = app.me(&token).await;
    assert_eq!(me["data"]["phone"], "13900001111", "{me}");
    // One client_token for both exchanges (stable while it lives).
    let second = phone_code("13900002222").await["code"].clone();
    let (status, _) = app
        .post("/phone", json!({ "code": second }), Some(&token))
        .await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(app.calls("/douyin-open/oauth/stable_client_token").await, 1);
    assert_eq!(
        app.calls("/douyin-open/api/apps/v1/get_phonenumber_info")
            .await,
        2
    );

    // A used code, and Alipay's `response`: the client's mistakes.
    let (status, body) = app
        .post("/phone", json!({ "code": second }), Some(&token))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_phone_code")),
        "{body}"
    );
    let (status, body) = app
        .post("/phone", json!({ "response": "{}" }), Some(&token))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    // Douyin busy twice: 503 with Retry-After, nothing bound; a rejected token: one refresh.
    let code = phone_code("13900003333").await["code"].clone();
    app.fault(
        json!({ "api": "/douyin-open/api/apps/v1/get_phonenumber_info", "errcode": 28001003 }),
    )
    .await;
    let (status, body) = app
        .post("/phone", json!({ "code": code }), Some(&token))
        .await;
    assert_eq!(
        (status.as_u16(), body["data"]["purePhoneNumber"].as_str()),
        (200, Some("13900003333")),
        "{body}"
    );
    assert_eq!(
        app.calls("/douyin-open/oauth/stable_client_token").await,
        2,
        "refreshed once"
    );
    let code = phone_code("13900004444").await["code"].clone();
    app.fault(
        json!({ "api": "/douyin-open/api/apps/v1/get_phonenumber_info", "errcode": 28001005 }),
    )
    .await;
    let (status, body) = app
        .post("/phone", json!({ "code": code }), Some(&token))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (503, Some("wechat_unavailable")),
        "{body}"
    );
    let (_, me) = app.me(&token).await;
    assert_eq!(me["data"]["phone"], "13900003333");

    // Our key is not the one Douyin has: 503 misconfigured, never the client's fault.
    let other = include_str!("../../src/simulator/douyin_dev_app_key.pem");
    let (status, _) = app
        .call(
            "PUT",
            &format!("/admin/apps/{APP}"),
            Some(ADMIN),
            Some(json!({ "secret": "dy-secret", "douyin_private_key": other })),
        )
        .await;
    assert_eq!(status, 200);
    let code = phone_code("13900005555").await["code"].clone();
    let (status, body) = app
        .post(
            "/phone",
            json!({ "code": code, "refresh": true }),
            Some(&token),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (503, Some("wechat_misconfigured")),
        "{body}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_backend_gets_each_platforms_access_token_from_the_one_refresher() {
    const ADMIN: &str = "token-admin-token-0123456789";
    let app = spawn_with(Options {
        apps: vec![
            (APPID, SECRET),
            ("qq/1109000001", "qq-secret"),
            ("douyin/tt0123456789abcdef", "douyin-secret"),
            ("baidu/baiduappkey0001", "baidu-secret"),
            ("kuaishou/ks671234567890", "kuaishou-secret"),
            ("alipay/2021000000000001", ALIPAY_APP_KEY),
        ],
        env: vec![("WXLOGIN_ADMIN_TOKEN", ADMIN.into())],
        ..Options::default()
    })
    .await;
    let token_of = |appid: &str, failed: Option<&str>| {
        let path = match failed {
            Some(f) => format!("/admin/apps/{appid}/access_token?failed={f}"),
            None => format!("/admin/apps/{appid}/access_token"),
        };
        let app = &app;
        async move { app.call("GET", &path, Some(ADMIN), None).await }
    };
    for (appid, api) in [
        (APPID, "/cgi-bin/stable_token"),
        (QQ_APPID, "/qq/api/getToken"),
        (DOUYIN_APPID, "/douyin-open/oauth/stable_client_token"),
        (BAIDU_APPKEY, "/baidu-open/oauth/2.0/token"),
        (KUAISHOU_APPID, "/kuaishou/oauth2/access_token"),
    ] {
        let (status, body) = token_of(appid, None).await;
        assert_eq!(status, 200, "{appid}: {body}");
        let token = body["data"]["access_token"].as_str().unwrap().to_owned();
        assert!(!token.is_empty());
        assert!(body["data"]["expires_in"].as_u64().unwrap() > 300, "{body}");
        // Asked again: the same token, no second fetch.
        let (_, again) = token_of(appid, None).await;
        assert_eq!(again["data"]["access_token"], token.as_str());
        assert_eq!(app.calls(api).await, 1, "{appid}");
        // A token the platform refused is dropped and fetched once more; a stale one is not.
        let (status, _) = token_of(appid, Some(&token)).await;
        assert_eq!(status, 200);
        assert_eq!(app.calls(api).await, 2, "{appid}");
        let (status, _) = token_of(appid, Some("an-older-token")).await;
        assert_eq!(status, 200);
        assert_eq!(
            app.calls(api).await,
            2,
            "{appid}: not the current token, kept"
        );
    }
    // QQ's getToken replaces the last token with each fetch: the refused one is gone.
    let (_, qq) = token_of(QQ_APPID, None).await;
    let current = qq["data"]["access_token"].as_str().unwrap().to_owned();
    let (_, refreshed) = token_of(QQ_APPID, Some(&current)).await;
    assert_ne!(refreshed["data"]["access_token"], current.as_str());

    // Credentials the platform refuses: ours to fix, 503; a busy platform: 503 too.
    app.fault(
        json!({ "api": "/baidu-open/oauth/2.0/token", "errcode": 1, "errmsg": "invalid_client" }),
    )
    .await;
    let (_, baidu) = token_of(BAIDU_APPKEY, None).await;
    let baidu_token = baidu["data"]["access_token"].as_str().unwrap().to_owned();
    let (status, body) = token_of(BAIDU_APPKEY, Some(&baidu_token)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("wechat_misconfigured")),
        "{body}"
    );
    app.fault(json!({ "api": "/kuaishou/oauth2/access_token", "errcode": 100200500 }))
        .await;
    let (_, ks) = token_of(KUAISHOU_APPID, None).await;
    let ks_token = ks["data"]["access_token"].as_str().unwrap().to_owned();
    let (status, body) = token_of(KUAISHOU_APPID, Some(&ks_token)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("wechat_unavailable")),
        "{body}"
    );

    // Alipay has none; an appid this deployment does not serve is not found.
    let (status, body) = token_of(ALIPAY_APPID, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unsupported")),
        "{body}"
    );
    let (status, body) = token_of("wxnobody", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_alipay_app_moving_from_user_id_to_open_id_keeps_its_users() {
    let app = spawn_with(Options {
        apps: vec![(APPID, SECRET), ("alipay/2021000000000001", ALIPAY_APP_KEY)],
        ..Options::default()
    })
    .await;
    let mode = |mode: &'static str| {
        app.sim(
            "/_sim/alipay_mode",
            json!({ "appid": ALIPAY_APPID, "mode": mode }),
        )
    };
    let app_ref = &app;
    let login = |user: &'static str| async move {
        let issued = code_for(app_ref, "alipay", ALIPAY_APPID, user).await;
        let (status, body) = login_to(app_ref, ALIPAY_APPID, &issued["code"]).await;
        assert_eq!(status, 200, "{body}");
        (
            body["data"]["token"].as_str().unwrap().to_owned(),
            issued["openid"].as_str().unwrap().to_owned(),
        )
    };
    // The older mode: the identity is the member's user_id.
    mode("user_id").await;
    let (old_token, _) = login("bai").await;
    let (user, ids) = identities_of(&app, &old_token).await;
    assert!(ids[0].1.starts_with("2088"), "{ids:?}");
    // Alipay moves the app: both ids come back, and the user_id identity becomes the open_id one.
    mode("both").await;
    let (token, open_id) = login("bai").await;
    let (same, ids) = identities_of(&app, &token).await;
    assert_eq!(same, user, "the same account");
    assert_eq!(ids, vec![("alipay".to_owned(), open_id.clone())]);
    let (status, _) = app.me(&old_token).await;
    assert_eq!(status, 401, "the user_id identity's sessions ended");
    let ended = format!(
        "SELECT COUNT(*) FROM events WHERE type = 'session_revoked' AND user_id = {user} \
         AND detail LIKE '%open_id%'"
    );
    assert_eq!(app.count(&ended).await, 1);
    // From then on, open_id alone: the same account.
    mode("open_id").await;
    let (token, _) = login("bai").await;
    assert_eq!(identities_of(&app, &token).await.0, user);
    // A member first seen in open_id mode, then in a "both" login: nothing to take over.
    let (token, _) = login("lan").await;
    let (lan, _) = identities_of(&app, &token).await;
    mode("both").await;
    let (token, _) = login("lan").await;
    let (again, ids) = identities_of(&app, &token).await;
    assert_eq!((again, ids.len()), (lan, 1));
    app.shutdown().await;
}

#[tokio::test]
async fn a_douyin_guest_is_not_taken_over_when_its_unionid_already_has_an_account() {
    const OTHER: &str = "tt00000000000000b2";
    let app = spawn_with(Options {
        apps: vec![
            (APPID, SECRET),
            ("douyin/tt0123456789abcdef", "douyin-secret"),
            ("douyin/tt00000000000000b2", "douyin-secret-2"),
        ],
        ..Options::default()
    })
    .await;
    // Mei has an account through the first app (her unionid with it).
    let issued = code_for(&app, "douyin", DOUYIN_APPID, "mei").await;
    let (_, body) = login_to(&app, DOUYIN_APPID, &issued["code"]).await;
    let (mei, _) = identities_of(&app, body["data"]["token"].as_str().unwrap()).await;
    // A guest on the second app, then Mei signs in there: a login would join her account by
    // unionid, so the guest is left as it is, and she logs in as herself.
    let guest = app
        .sim(
            "/_sim/codes",
            json!({ "platform": "douyin", "appid": OTHER, "user": "d9", "signed_in": false }),
        )
        .await;
    let (status, body) = app
        .post(
            "/login",
            json!({ "appid": OTHER, "anonymous_code": guest["anonymous_code"] }),
            None,
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let guest_token = body["data"]["token"].as_str().unwrap().to_owned();
    let (guest_user, _) = identities_of(&app, &guest_token).await;
    let signed = app
        .sim(
            "/_sim/codes",
            json!({ "platform": "douyin", "appid": OTHER, "user": "mei", "device": "d9" }),
        )
        .await;
    let (status, body) = app
        .post(
            "/login",
            json!({ "appid": OTHER, "code": signed["code"], "anonymous_code": signed["anonymous_code"] }),
            None,
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let (user, ids) = identities_of(&app, body["data"]["token"].as_str().unwrap()).await;
    assert_eq!(user, mei, "joined by unionid");
    assert_eq!(ids.len(), 2, "{ids:?}");
    let (status, _) = app.me(&guest_token).await;
    assert_eq!(status, 200, "the guest account is left as it is");
    assert_ne!(guest_user, mei);
    app.shutdown().await;
}
