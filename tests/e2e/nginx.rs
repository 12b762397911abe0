//! nginx (Debian's package) in front of two instances and a tiny business backend, using the
//! shipped `deploy/nginx-wxlogin.conf` with only its ports changed.

use crate::harness::*;
use crate::services::free_port;
use axum::http::HeaderMap;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The business backend: echoes the identity nginx forwarded.
async fn backend() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let h = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        axum::Json(json!({
            "user_id": h("x-wxlogin-user-id"),
            "openid": h("x-wxlogin-openid"),
            "appid": h("x-wxlogin-appid"),
            "unionid": h("x-wxlogin-unionid"),
            "platform": h("x-wxlogin-platform"),
            "saw_token": !h("authorization").is_empty() || !h("token").is_empty(),
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn nginx_auth_request_lets_valid_tokens_through_with_identity_headers() {
    let Ok(nginx) = which("nginx") else {
        eprintln!("skipped: nginx is not installed (apt-get install nginx; .ci/run does)");
        return;
    };
    // As deployed: the admin API on, nginx the one trusted proxy.
    let app = spawn_with(Options {
        env: vec![
            ("WXLOGIN_ADMIN_TOKEN", "admin-token-0123456789abcdef".into()),
            ("WXLOGIN_TRUSTED_PROXIES", "127.0.0.1".into()),
        ],
        ..Options::default()
    })
    .await;
    // Two instances behind nginx when the store is shared (PostgreSQL); SQLite is one instance
    // (each keeps its sessions in memory), so there both upstreams name the same server.
    let b = if app.database_url().starts_with("sqlite:") {
        None
    } else {
        Some(app.spawn_peer().await)
    };
    let b_addr = b.as_ref().map_or(app.addr, |b| b.addr);
    let backend = backend().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let site = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/nginx-wxlogin.conf"
    ))
    .unwrap()
    .replace("127.0.0.1:8001", &app.addr.to_string())
    .replace("127.0.0.1:8002", &b_addr.to_string())
    .replace("127.0.0.1:9000", &backend.to_string())
    .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let d = dir.path().display();
    let root = if is_root() { "user root;" } else { "" };
    let conf = format!(
        "{root}\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{}}\nhttp {{\n\
         access_log off;\nclient_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n{site}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let nginx = Nginx(
        Command::new(nginx)
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if app
            .http
            .get(format!("{base}/api/auth/healthz"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        up,
        "nginx did not start: {}",
        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
    );

    // Log in through nginx, the way the mini program would.
    let wx = app.wx_login("alice").await;
    let login: Value = app
        .http
        .post(format!("{base}/api/auth/login/"))
        .json(&json!({ "code": wx["code"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["token"]
        .as_str()
        .expect("login through nginx")
        .to_owned();
    let user_id = login["data"]["user"]["id"].to_string();

    // Both instances serve it (nginx balances), and the backend sees who it is.
    for _ in 0..4 {
        let r = app
            .http
            .get(format!("{base}/api/orders"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let seen: Value = r.json().await.unwrap();
        assert_eq!(seen["user_id"], user_id.as_str());
        assert_eq!(seen["openid"], wx["openid"]);
        assert_eq!(seen["appid"], APPID);
        assert_eq!(
            seen["saw_token"], false,
            "the token does not travel to the backend"
        );
    }
    let r = app
        .http
        .get(format!("{base}/api/orders"))
        .header("token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Without a valid token: 401, and spoofed identity headers do not help.
    for req in [
        app.http.get(format!("{base}/api/orders")),
        app.http
            .get(format!("{base}/api/orders"))
            .bearer_auth("wxl_forged"),
        app.http
            .get(format!("{base}/api/orders"))
            .header("X-Wxlogin-User-Id", "1"),
    ] {
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    // Every identity header, spoofed next to a valid token, is overwritten with the real
    // identity (or dropped): the unionid too, which a business backend may key users by.
    let seen: Value = app
        .http
        .get(format!("{base}/api/orders"))
        .bearer_auth(&token)
        .header("X-Wxlogin-User-Id", "999999")
        .header("X-Wxlogin-Openid", "o-victim")
        .header("X-Wxlogin-Appid", "wx-victim")
        .header("X-Wxlogin-Unionid", "u-victim")
        .header("X-Wxlogin-Platform", "victim")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["user_id"], user_id.as_str());
    assert_eq!(seen["openid"], wx["openid"]);
    assert_eq!(seen["appid"], APPID);
    assert_eq!(seen["unionid"], wx["unionid"]);
    assert_eq!(seen["platform"], "weixin");

    // Operator routes are not reachable through the public proxy, however the path is spelled
    // (these instances serve them on their public address, so only nginx stands in the way).
    for path in [
        "/api/auth/admin/stats",
        "/api/auth/admin",
        "/api/auth/metrics",
        "/api/auth/metrics/",
        "/api/auth//metrics",
        "/api/auth/./metrics",
        "/api/auth/%6detrics",
        "/api/auth/metrics%2F",
        "/api/auth/x/../metrics",
        "/api/auth/%61dmin/stats",
        // The admin console's page and script.
        "/api/auth/admin/",
        "/api/auth/admin/console.js",
        "/api/auth/ADMIN/",
    ] {
        let r = app.http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("wxlogin_") && !text.contains("admin console"),
            "{path}"
        );
    }

    // After logout (through nginx, on whichever instance), the backend is closed to the token.
    let r = app
        .http
        .post(format!("{base}/api/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..4 {
        let r = app
            .http
            .get(format!("{base}/api/orders"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    drop(nginx);
    if let Some(b) = b {
        b.stop(Duration::from_secs(2)).await;
    }
    app.shutdown().await;
}

/// nginx's master process, stopped gracefully (SIGQUIT) when dropped — also when an assertion
/// fails midway — so no master or worker outlives the test, as a SIGKILL to the master would
/// leave its workers.
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn which(name: &str) -> Result<String, ()> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = format!("{dir}/{name}");
        if std::path::Path::new(&p).exists() {
            return Ok(p);
        }
    }
    Err(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
