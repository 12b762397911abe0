//! Every fixed error of the SPEC's table, bad bodies and unknown routes: the documented shape,
//! never a 500.

use crate::harness::*;
use serde_json::{json, Value};

/// method, path, content type, body, expected HTTP status, expected `error`.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, String, u16, &'a str);

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = app
        .http
        .request(method.parse().unwrap(), app.url(path))
        .body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_requests_get_the_documented_error_shape() {
    let app = spawn_app().await;
    let json_ct = Some("application/json");
    let big = format!("{{\"code\":\"{}\"}}", "x".repeat(100_000));
    let cases: Vec<Case<'_>> = vec![
        ("POST", "/login", json_ct, "{}".into(), 400, "missing_code"),
        (
            "POST",
            "/login",
            json_ct,
            r#"{"code":""}"#.into(),
            400,
            "missing_code",
        ),
        (
            "POST",
            "/login",
            json_ct,
            r#"{"code":"   "}"#.into(),
            400,
            "missing_code",
        ),
        (
            "POST",
            "/login",
            json_ct,
            r#"{"code":null}"#.into(),
            400,
            "missing_code",
        ),
        ("POST", "/login", json_ct, "".into(), 400, "missing_code"),
        (
            "POST",
            "/login",
            json_ct,
            r#"{"code":"#.into(),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/login",
            json_ct,
            "not json".into(),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/login",
            json_ct,
            r#"{"code":123}"#.into(),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/login",
            json_ct,
            r#"{"code":["a"]}"#.into(),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/login",
            json_ct,
            r#"["code"]"#.into(),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/login",
            json_ct,
            r#"{"code":"has spaces in it"}"#.into(),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/login",
            json_ct,
            r#"{"code":"abc","appid":"wxother"}"#.into(),
            400,
            "unknown_app",
        ),
        (
            "POST",
            "/login",
            Some("application/xml"),
            "<code/>".into(),
            400,
            "bad_request",
        ),
        ("POST", "/login", json_ct, big, 413, "payload_too_large"),
        (
            "POST",
            "/login",
            json_ct,
            r#"{"code":"never-issued-code"}"#.into(),
            401,
            "invalid_code",
        ),
        ("GET", "/me", None, "".into(), 401, "unauthorized"),
        ("POST", "/logout", None, "".into(), 401, "unauthorized"),
        ("GET", "/nope", None, "".into(), 404, "not_found"),
        ("GET", "/login", None, "".into(), 405, "method_not_allowed"),
        ("PUT", "/me", None, "".into(), 405, "method_not_allowed"),
    ];
    for (method, path, ct, body, http, error) in cases {
        let (status, reply) = send(&app, method, path, ct, &body).await;
        let shown = if body.len() > 60 { &body[..60] } else { &body };
        assert_eq!(status, http, "{method} {path} {shown}: {reply}");
        assert_eq!(reply["error"], error, "{method} {path} {shown}: {reply}");
        assert!(reply["status"].as_u64().unwrap() > 0, "{reply}");
        assert!(
            reply["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_fixed_status_numbers_match_the_spec_table() {
    let app = spawn_app().await;
    let (_, missing) = app.post("/login", json!({}), None).await;
    assert_eq!(missing["status"], 1);
    let (s, invalid) = app.login("bogus-code").await;
    assert_eq!((s.as_u16(), invalid["status"].as_u64()), (401, Some(2)));
    assert_eq!(invalid["error"], "invalid_code");
    let code = app.code("frank").await;
    assert_eq!(app.login(&code).await.0, 200);
    let (s, used) = app.login(&code).await;
    assert_eq!((s.as_u16(), used["status"].as_u64()), (401, Some(2)));
    assert_eq!(used["error"], "code_used");
    let (_, unauth) = app.me("wxl_garbage").await;
    assert_eq!(unauth["status"], 4);
    app.shutdown().await;
}

#[tokio::test]
async fn a_code_used_at_wechat_first_answers_code_used() {
    // The code was spent elsewhere (say, by an old backend): WeChat says 40163.
    let app = spawn_app().await;
    let code = app.code("gina").await;
    let r = app
        .http
        .get(app.sim_url("/sns/jscode2session"))
        .query(&[
            ("appid", APPID),
            ("secret", SECRET),
            ("js_code", &code),
            ("grant_type", "authorization_code"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = app.login(&code).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "code_used");
    // Remembered: the next try does not ask WeChat again.
    let before = app.calls("/sns/jscode2session").await;
    assert_eq!(app.login(&code).await.1["error"], "code_used");
    assert_eq!(app.calls("/sns/jscode2session").await, before);
    app.shutdown().await;
}

#[tokio::test]
async fn malformed_tokens_are_401_in_every_header_form() {
    let app = spawn_app().await;
    for (name, value) in [
        ("authorization", "Bearer"),
        ("authorization", "Bearer "),
        ("authorization", "Basic dXNlcjpwYXNz"),
        (
            "authorization",
            "Bearer wxl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
        ("token", ""),
        ("token", "wxl_"),
        ("token", "../../etc/passwd"),
    ] {
        let r = app
            .http
            .get(app.url("/me"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{name}: {value}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    app.shutdown().await;
}
