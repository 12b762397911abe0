//! A trace-level log capture of a full run of the real binary holds no secret: no session_key,
//! no token, no AppSecret, no code; and `RUST_LOG` cannot lift the caps on the HTTP crates.

use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

const SECRET: &str = "logtest-app-secret-5f2b9c";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_trace_level_log_of_a_full_run_contains_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log_path = dir.path().join("wxlogin.log");
    let log = std::fs::File::create(&log_path).unwrap();
    std::fs::write(dir.path().join("empty.toml"), "").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .args(["serve", "--dev"])
        .current_dir(dir.path())
        // Asking for the HTTP crates' own trace output by name as well: the caps hold anyway.
        .env(
            "RUST_LOG",
            "trace,reqwest::connect=trace,hyper_util::client=trace,hyper=trace,sqlx=trace",
        )
        .env("WXLOGIN_CONFIG", dir.path().join("empty.toml"))
        .env("WXLOGIN_LISTEN", format!("127.0.0.1:{port}"))
        .env("WXLOGIN_APPID", "wxlogtest")
        .env("WXLOGIN_SECRET", SECRET)
        .env(
            "WXLOGIN_DATABASE_URL",
            format!("sqlite://{}/db.sqlite", dir.path().display()),
        )
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        up,
        "server did not start: {}",
        std::fs::read_to_string(&log_path).unwrap()
    );

    let mut secrets = vec![SECRET.to_owned()];
    let mut run = |v: &Value, keys: &[&str]| {
        for k in keys {
            if let Some(s) = v[k].as_str() {
                secrets.push(s.to_owned());
            }
        }
    };
    let wx: Value = http
        .post(format!("{base}/_sim/codes"))
        .json(&json!({ "user": "alice" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    run(&wx, &["code", "session_key"]);
    let login: Value = http
        .post(format!("{base}/login"))
        .header("x-request-id", "log-check-1")
        .json(&json!({ "code": wx["code"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    run(&login["data"], &["token"]);
    let Some(token) = login["data"]["token"].as_str().map(str::to_owned) else {
        panic!(
            "login failed: {login}\n{}",
            std::fs::read_to_string(&log_path).unwrap()
        );
    };
    for path in ["/me", "/auth"] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // A failing exchange and a reused code log too.
    let r = http
        .post(format!("{base}/login"))
        .json(&json!({ "code": wx["code"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/login"))
        // X-Forwarded-For from a peer that is not a trusted proxy: ignored, and said so.
        .header("x-forwarded-for", "198.51.100.77")
        .json(&json!({ "code": "bogus-code-xyz" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    secrets.push("bogus-code-xyz".into());
    let r = http
        .post(format!("{base}/logout"))
        .header("token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "trace logging was not on"
    );
    assert!(
        text.lines().count() > 20,
        "too little was logged to mean anything:\n{text}"
    );
    let capped = ["reqwest", "hyper", "hyper_util", "h2", "rustls", "sqlx"];
    for line in without_colours(&text).lines() {
        let lifted = ["DEBUG", "TRACE"].iter().any(|level| {
            capped.iter().any(|c| {
                line.contains(&format!("{level} {c}::")) || line.contains(&format!("{level} {c}:"))
            })
        });
        assert!(!lifted, "RUST_LOG lifted a cap: {line}");
    }
    // The login's own line is in its request's span, under the id the client sent.
    assert!(
        without_colours(&text)
            .lines()
            .any(|l| l.contains("request_id=log-check-1")
                && l.contains("path=/login")
                && l.contains("new_user=true")),
        "the login's line carries its request:\n{text}"
    );
    assert!(
        text.contains("X-Forwarded-For came from a peer that is not in WXLOGIN_TRUSTED_PROXIES"),
        "an ignored X-Forwarded-For is reported"
    );
    for s in &secrets {
        assert!(
            !text.contains(s.as_str()),
            "a secret leaked into the log:\n{text}"
        );
    }
}

/// The log with its ANSI colour codes taken out.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
