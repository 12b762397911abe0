//! What an operator relies on: metrics, the admin API and CLI, rate limits.

use crate::harness::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-0123456789abcdef";

fn with_admin() -> Options {
    Options {
        env: vec![("WXLOGIN_ADMIN_TOKEN", ADMIN.into())],
        ..Options::default()
    }
}

async fn admin(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = app.http.request(method.parse().unwrap(), app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn metrics_count_logins_wechat_calls_token_checks_and_store_latency() {
    let app = spawn_app().await;
    let token = app.token_for("alice").await;
    assert_eq!(app.me(&token).await.0, 200);
    assert_eq!(app.login("bogus").await.0, 401);
    assert_eq!(app.get("/session/check", &token).await.0, 200);
    let pc = app.sim("/_sim/phone_codes", json!({})).await;
    assert_eq!(
        app.post("/phone", json!({ "code": pc["code"] }), Some(&token))
            .await
            .0,
        200
    );
    // A path no route has is counted too, under one label whatever the path.
    let missing = app.http.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "wxlogin_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}",
        "wxlogin_logins_total{outcome=\"ok\"}",
        "wxlogin_logins_total{outcome=\"invalid_code\"}",
        "wxlogin_wechat_calls_total{api=\"jscode2session\",errcode=\"0\"}",
        "wxlogin_wechat_calls_total{api=\"jscode2session\",errcode=\"40029\"}",
        "wxlogin_wechat_call_duration_seconds_bucket",
        "wxlogin_wechat_calls_total{api=\"stable_token\",errcode=\"0\"}",
        "wxlogin_wechat_calls_total{api=\"getuserphonenumber\",errcode=\"0\"}",
        "wxlogin_wechat_calls_total{api=\"checksession\",errcode=\"0\"}",
        "wxlogin_token_checks_total{outcome=\"ok\"",
        "wxlogin_store_duration_seconds_bucket{op=\"record_login\"",
        "wxlogin_store_login_batches_total",
        "wxlogin_store_batched_logins_total",
        "wxlogin_http_requests_total{route=\"/login\",method=\"POST\",status=\"200\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    if app.database_url().starts_with("sqlite:") {
        // The token was checked three times: the first read the file, the others memory. (The
        // recorder is the process's, so tests running alongside may add to the counts.)
        let count = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        assert!(
            count("wxlogin_session_cache_total{result=\"hit\"}") >= 2.0,
            "{text}"
        );
        assert!(
            count("wxlogin_session_cache_total{result=\"miss\"}") >= 1.0,
            "{text}"
        );
    }
    assert!(!text.contains(&token), "a token in the metrics");
    app.shutdown().await;
}

#[tokio::test]
async fn without_an_admin_token_the_admin_routes_do_not_exist() {
    let app = spawn_app().await;
    let (status, body) = admin(&app, "GET", "/admin/stats", Some(ADMIN)).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    app.shutdown().await;
}

#[tokio::test]
async fn admin_finds_users_lists_and_revokes_sessions() {
    let app = spawn_with(with_admin()).await;
    let wx = app.wx_login("alice").await;
    let (_, login) = app.login(wx["code"].as_str().unwrap()).await;
    let t1 = login["data"]["token"].as_str().unwrap().to_owned();
    let t2 = app.token_for("alice").await;
    let t3 = app.token_for("alice").await;
    let uid = login["data"]["user"]["id"].as_i64().unwrap();
    let pc = app
        .sim("/_sim/phone_codes", json!({ "phone": "13700000001" }))
        .await;
    assert_eq!(
        app.post("/phone", json!({ "code": pc["code"] }), Some(&t3))
            .await
            .0,
        200
    );
    // Every session checked once, so a server that keeps sessions in memory holds them all.
    for t in [&t1, &t2, &t3] {
        assert_eq!(app.me(t).await.0, 200);
    }

    for bad in [None, Some("wrong-token-wrong-token"), Some(&t1[..])] {
        assert_eq!(
            admin(&app, "GET", "/admin/stats", bad).await.0,
            401,
            "{bad:?}"
        );
    }
    let a = &app;
    let by =
        |q: String| async move { admin(a, "GET", &format!("/admin/users?{q}"), Some(ADMIN)).await };
    for q in [
        format!("id={uid}"),
        format!("openid={}", wx["openid"].as_str().unwrap()),
        format!("unionid={}", wx["unionid"].as_str().unwrap()),
        "phone=13700000001".to_owned(),
    ] {
        let (status, found) = by(q.clone()).await;
        assert_eq!(status, 200, "{q}: {found}");
        assert_eq!(found["data"]["users"][0]["id"], uid, "{q}");
    }
    assert_eq!(
        by("openid=nobody".into()).await.1["data"]["users"],
        json!([])
    );
    assert_eq!(by(String::new()).await.0, 400);
    assert_eq!(by("id=abc".into()).await.1["error"], "bad_request");

    let (_, sessions) = admin(
        &app,
        "GET",
        &format!("/admin/users/{uid}/sessions"),
        Some(ADMIN),
    )
    .await;
    let list = sessions["data"]["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3);
    assert!(
        !sessions.to_string().contains(&t1),
        "no tokens in admin replies"
    );
    let first = list[0]["id"].as_i64().unwrap();
    assert_eq!(
        admin(
            &app,
            "DELETE",
            &format!("/admin/sessions/{first}"),
            Some(ADMIN)
        )
        .await
        .0,
        200
    );
    assert_eq!(app.me(&t1).await.0, 401);
    assert_eq!(app.me(&t2).await.0, 200);
    assert_eq!(
        admin(
            &app,
            "DELETE",
            &format!("/admin/sessions/{first}"),
            Some(ADMIN)
        )
        .await
        .0,
        404
    );
    let (_, revoked) = admin(
        &app,
        "DELETE",
        &format!("/admin/users/{uid}/sessions"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(revoked["data"]["revoked"], 2);
    assert_eq!(app.me(&t2).await.0, 401);
    assert_eq!(app.me(&t3).await.0, 401);

    let (_, stats) = admin(&app, "GET", "/admin/stats", Some(ADMIN)).await;
    assert_eq!(stats["data"]["users"], 1);
    assert_eq!(stats["data"]["sessions"], 0);
    assert_eq!(stats["data"]["users_with_phone"], 1);
    app.shutdown().await;
}

#[tokio::test]
async fn the_admin_cli_talks_to_the_admin_api() {
    let app = spawn_with(with_admin()).await;
    let token = app.token_for("bob").await;
    let (_, me) = app.me(&token).await;
    let uid = me["data"]["id"].to_string();
    let openid = me["data"]["openid"].as_str().unwrap();
    let (ok, text) = app.admin_cli(ADMIN, &["users", "--openid", openid]).await;
    assert!(ok && text.contains(&format!("\"id\": {uid}")), "{text}");
    let (ok, text) = app.admin_cli(ADMIN, &["stats"]).await;
    assert!(ok && text.contains("\"sessions\": 1"), "{text}");
    let (ok, _) = app.admin_cli(ADMIN, &["revoke-user", &uid]).await;
    assert!(ok);
    assert_eq!(app.me(&token).await.0, 401);
    let (ok, _) = app.admin_cli(ADMIN, &["revoke-session", "999999"]).await;
    assert!(!ok, "a missing session is an error exit");
    app.shutdown().await;
}

/// An app behind a trusted proxy on 127.0.0.1, with 3 failed logins a minute per client, and
/// `extra` settings.
async fn behind_proxy_limited_to_3(extra: &[(&'static str, &str)]) -> TestApp {
    let mut env = vec![
        ("WXLOGIN_RATE_LIMIT_LOGIN", "3/1m".to_owned()),
        ("WXLOGIN_TRUSTED_PROXIES", "127.0.0.1".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    spawn_with(Options {
        env,
        ..Options::default()
    })
    .await
}

/// A login from `ip` (as the trusted proxy on 127.0.0.1 reports it) with `code`.
async fn login_via_proxy(app: &TestApp, ip: &str, code: &str) -> reqwest::Response {
    app.http
        .post(app.url("/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap()
}

fn code2session_calls(app: &TestApp) -> u64 {
    app.sim
        .calls()
        .iter()
        .filter(|(path, _)| path.contains("jscode2session"))
        .map(|(_, n)| *n)
        .sum()
}

#[tokio::test]
async fn failed_logins_are_limited_per_client_address_and_good_ones_never() {
    let app = behind_proxy_limited_to_3(&[]).await;
    // A carrier NAT: many real users behind one address, all logging in fine.
    for i in 0..10 {
        let code = app.code(&format!("nat-user-{i}")).await;
        assert_eq!(
            login_via_proxy(&app, "198.51.100.9", &code).await.status(),
            200
        );
    }
    // A flood of junk codes from one address: each costs WeChat a call, until the limit.
    for i in 0..3 {
        let r = login_via_proxy(&app, "198.51.100.1", &format!("junk-code-{i}")).await;
        assert_eq!(r.status(), 401);
    }
    let calls = code2session_calls(&app);
    let code = app.code("carol").await;
    let r = login_via_proxy(&app, "198.51.100.1", &code).await;
    assert_eq!(r.status(), 429);
    assert_eq!(
        code2session_calls(&app),
        calls,
        "a limited login never reaches WeChat"
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    // Bad bodies count as failures too.
    let r = app
        .http
        .post(app.url("/login"))
        .header("x-forwarded-for", "198.51.100.3")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Another client behind the same trusted proxy has its own budget.
    assert_eq!(
        login_via_proxy(&app, "198.51.100.2", &code).await.status(),
        200
    );
    // The window passes.
    app.clock.advance(std::time::Duration::from_secs(60));
    let code = app.code("carol").await;
    assert_eq!(
        login_via_proxy(&app, "198.51.100.1", &code).await.status(),
        200
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_junk_codes_sent_at_once_reaches_wechat_at_most_the_limit() {
    let app = behind_proxy_limited_to_3(&[]).await;
    let before = code2session_calls(&app);
    let codes: Vec<String> = (0..20).map(|i| format!("junk-burst-{i}")).collect();
    let statuses: Vec<u16> = futures::future::join_all(
        codes
            .iter()
            .map(|code| login_via_proxy(&app, "198.51.100.66", code)),
    )
    .await
    .into_iter()
    .map(|r| r.status().as_u16())
    .collect();
    assert!(
        code2session_calls(&app) - before <= 3,
        "{} WeChat calls for one client's burst",
        code2session_calls(&app) - before
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        17,
        "{statuses:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn ipv6_clients_are_counted_per_slash_64() {
    let app = behind_proxy_limited_to_3(&[]).await;
    // Three addresses of one /64: one client.
    for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"] {
        assert_eq!(login_via_proxy(&app, host, "junk").await.status(), 401);
    }
    let code = app.code("v6-user").await;
    assert_eq!(
        login_via_proxy(&app, "2001:db8:1:2::99", &code)
            .await
            .status(),
        429,
        "a fresh address in the same /64 is the same client"
    );
    assert_eq!(
        login_via_proxy(&app, "2001:db8:1:3::1", &code)
            .await
            .status(),
        200,
        "the next /64 is another client"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_v4_proxy_is_trusted_on_a_dual_stack_listener() {
    // On `[::]`, IPv4 peers arrive as `::ffff:a.b.c.d`; the proxy must still be recognised.
    let app = behind_proxy_limited_to_3(&[("WXLOGIN_LISTEN", "[::]:0")]).await;
    let url = format!("http://127.0.0.1:{}/login", app.addr.port());
    let post = |ip: String| {
        app.http
            .post(&url)
            .header("x-forwarded-for", ip)
            .json(&json!({ "code": "junk" }))
            .send()
    };
    // Six clients behind the proxy, one failure each: nobody is limited.
    for i in 0..6 {
        assert_eq!(post(format!("203.0.113.{i}")).await.unwrap().status(), 401);
    }
    // One client failing again and again is.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post("203.0.113.50".into()).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 429]);
    app.shutdown().await;
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_with(Options {
        env: vec![("WXLOGIN_RATE_LIMIT_LOGIN", "2/1m".into())],
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let r = app
            .http
            .post(app.url("/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({ "code": format!("junk-{i}") }))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses,
        vec![401, 401, 429],
        "a client cannot pick a fresh address per request"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn phone_is_rate_limited_per_session() {
    let app = spawn_with(Options {
        env: vec![("WXLOGIN_RATE_LIMIT_PHONE", "2/1m".into())],
        ..Options::default()
    })
    .await;
    let token = app.token_for("erin").await;
    let other = app.token_for("frank").await;
    for expected in [200, 200, 429] {
        // One number per person: a number another user holds is phone_in_use.
        let pc = app
            .sim("/_sim/phone_codes", json!({ "phone": "13900000001" }))
            .await;
        assert_eq!(
            app.post("/phone", json!({ "code": pc["code"] }), Some(&token))
                .await
                .0,
            expected
        );
    }
    let pc = app
        .sim("/_sim/phone_codes", json!({ "phone": "13900000002" }))
        .await;
    assert_eq!(
        app.post("/phone", json!({ "code": pc["code"] }), Some(&other))
            .await
            .0,
        200
    );
    app.shutdown().await;
}

/// The properties a schema in the spec declares, following `$ref`s.
fn declared(spec: &Value, schema: &Value) -> Vec<String> {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &spec["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    let mut keys: Vec<String> = schema["properties"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_matches_real_replies() {
    let app = spawn_with(with_admin()).await;
    let spec: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for route in [
        "/login",
        "/me",
        "/logout",
        "/auth",
        "/phone",
        "/decrypt",
        "/userinfo/verify",
        "/session/check",
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/users",
        "/admin/users/{id}/sessions",
        "/admin/sessions/{id}",
        "/admin/stats",
        "/admin/apps",
        "/admin/apps/{appid}",
        "/admin/apps/{appid}/access_token",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    // Every operation documents its error replies in the shared error shape.
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"];
                    assert_eq!(
                        declared(&spec, schema),
                        vec!["error", "msg", "status"],
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    // Real replies have exactly the documented fields.
    let code = app.code("alice").await;
    let (_, login) = app.login(&code).await;
    let login_schema = &spec["paths"]["/login"]["post"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    assert_eq!(keys(&login), declared(&spec, login_schema));
    assert_eq!(
        keys(&login["data"]),
        declared(&spec, &spec["components"]["schemas"]["LoginData"])
    );
    let token = login["data"]["token"].as_str().unwrap();
    let (_, me) = app.me(token).await;
    assert_eq!(
        keys(&me["data"]),
        declared(&spec, &spec["components"]["schemas"]["MeData"])
    );
    let (_, err) = app.me("wxl_nope").await;
    assert_eq!(
        keys(&err),
        declared(&spec, &spec["components"]["schemas"]["ErrorBody"])
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_docs_page_is_served_from_the_binary_without_a_cdn() {
    let app = spawn_app().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects.get(app.url("/docs")).send().await.unwrap();
    assert!(r.status().is_redirection());
    let index = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let html = index.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let r = app
            .http
            .get(app.url(&format!("/docs/ui/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("cdn.") && !text.contains("unpkg.com"),
            "{asset} loads from a CDN"
        );
    }
    assert!(
        !html.contains("https://"),
        "the page must not load anything from outside"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_graceful_stop_lets_in_flight_requests_finish() {
    let app = spawn_app().await;
    let code = app.code("draining").await;
    // WeChat takes 700 ms, so the login is in flight when the stop comes.
    app.fault(json!({ "api": "/sns/jscode2session", "delay_ms": 700 }))
        .await;
    let (http, url) = (app.http.clone(), app.url("/login"));
    let in_flight =
        tokio::spawn(async move { http.post(url).json(&json!({ "code": code })).send().await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let addr = app.addr;
    app.shutdown().await;
    let reply = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap();
    assert!(body["data"]["token"].as_str().unwrap().starts_with("wxl_"));
    // And the stopped server takes no new connections.
    assert!(reqwest::get(format!("http://{addr}/healthz"))
        .await
        .is_err());
}

#[tokio::test]
async fn operator_routes_can_live_on_their_own_address_only() {
    let app = spawn_with(Options {
        env: vec![
            ("WXLOGIN_ADMIN_TOKEN", ADMIN.into()),
            ("WXLOGIN_ADMIN_LISTEN", "127.0.0.1:0".into()),
        ],
        ..Options::default()
    })
    .await;
    let admin = app.admin_addr.expect("an operator listener");
    let get = |url: String| {
        app.http
            .get(url)
            .header("authorization", format!("Bearer {ADMIN}"))
            .send()
    };
    // Not on the public address, in any spelling…
    for path in ["/metrics", "/metrics/", "/admin/stats", "/admin/stats/"] {
        let r = get(app.url(path)).await.unwrap();
        assert_eq!(r.status(), 404, "{path} on the public address");
    }
    let doc: Value = get(app.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"].get("/metrics").is_none());
    assert!(doc["paths"].get("/admin/stats").is_none());
    // …but on the operator's.
    let r = get(format!("http://{admin}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("wxlogin_"));
    let r = get(format!("http://{admin}/admin/stats")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(format!("http://{admin}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    // The mini-program API is not served there.
    let r = app
        .http
        .post(format!("http://{admin}/login"))
        .json(&json!({ "code": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.shutdown().await;
}
