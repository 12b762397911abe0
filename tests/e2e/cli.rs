//! The binary's own behaviour: refusing to start without credentials, `check-config`.

use std::path::Path;
use std::process::Command;

fn wxlogin(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn serve_without_credentials_refuses_to_start_and_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = wxlogin(dir.path(), &["serve"], &[("WXLOGIN_LISTEN", "127.0.0.1:0")]);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("WXLOGIN_APPID") && text.contains("WXLOGIN_SECRET"),
        "{text}"
    );
}

#[test]
fn a_bad_value_stops_the_start_with_the_key_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = wxlogin(
        dir.path(),
        &["serve", "--dev"],
        &[("WXLOGIN_WECHAT_TIMEOUT", "soon")],
    );
    assert_ne!(code, 0);
    assert!(text.contains("WXLOGIN_WECHAT_TIMEOUT"), "{text}");
}

#[test]
fn check_config_prints_everything_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = wxlogin(
        dir.path(),
        &["check-config"],
        &[
            ("WXLOGIN_APPID", "wx0123456789abcdef"),
            ("WXLOGIN_SECRET", "APPSECRET-VALUE-123"),
            (
                "WXLOGIN_DATABASE_URL",
                "postgres://wx:DBPASS123@db.internal/wxlogin",
            ),
            ("WXLOGIN_ADMIN_TOKEN", "ADMIN-TOKEN-0123456789"),
            ("WXLOGIN_TYPO", "x"),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("wx0123456789abcdef"), "{text}");
    assert!(text.contains("db.internal"), "{text}");
    assert!(
        text.contains("WXLOGIN_TYPO"),
        "unknown variables are warned about: {text}"
    );
    for secret in ["APPSECRET-VALUE-123", "DBPASS123", "ADMIN-TOKEN-0123456789"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let (code, text) = wxlogin(dir.path(), &["check-config"], &[]);
    assert_ne!(code, 0);
    assert!(text.contains("WXLOGIN_APPID"), "{text}");
}

#[test]
fn serve_without_a_data_key_refuses_to_start_and_names_the_variables() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/db.sqlite", dir.path().display());
    let (code, text) = wxlogin(
        dir.path(),
        &["serve"],
        &[
            ("WXLOGIN_LISTEN", "127.0.0.1:0"),
            ("WXLOGIN_APPID", "wx0123456789abcdef"),
            ("WXLOGIN_SECRET", "APPSECRET-VALUE-123"),
            ("WXLOGIN_DATABASE_URL", &db),
        ],
    );
    assert_ne!(code, 0, "{text}");
    for name in ["WXLOGIN_DATA_KEY", "WXLOGIN_DATA_KEY_FILE", "gen-key"] {
        assert!(text.contains(name), "{name}: {text}");
    }
    let (code, text) = wxlogin(
        dir.path(),
        &["serve"],
        &[("WXLOGIN_DATA_KEY", "c2hvcnQ="), ("WXLOGIN_APPID", "wxa")],
    );
    assert_ne!(code, 0);
    assert!(
        text.contains("WXLOGIN_DATA_KEY") && text.contains("32 bytes"),
        "{text}"
    );
}

#[test]
fn gen_key_prints_a_key_that_the_configuration_takes_by_its_id_only() {
    let dir = tempfile::tempdir().unwrap();
    let (code, key) = wxlogin(dir.path(), &["gen-key"], &[]);
    assert_eq!(code, 0, "{key}");
    let key = key.trim().to_owned();
    let (again, _) = (wxlogin(dir.path(), &["gen-key"], &[]).1, ());
    assert_ne!(key, again.trim(), "a new key each time");
    let (code, text) = wxlogin(
        dir.path(),
        &["check-config"],
        &[
            ("WXLOGIN_APPID", "wx0123456789abcdef"),
            ("WXLOGIN_SECRET", "APPSECRET-VALUE-123"),
            ("WXLOGIN_DATA_KEY", &key),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("key id"), "{text}");
    assert!(
        !text.contains(&key),
        "the key itself is never printed: {text}"
    );
}

#[test]
fn dev_mode_refuses_a_non_loopback_address_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = wxlogin(
        dir.path(),
        &["serve", "--dev"],
        &[("WXLOGIN_LISTEN", "0.0.0.0:0")],
    );
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("--force") && text.contains("WXLOGIN_LISTEN"),
        "{text}"
    );
}

/// `wxlogin serve --dev` with nothing configured, in `dir`: the child, its port, and whether it
/// came up.
async fn dev_server(dir: &Path) -> (std::process::Child, u16, bool) {
    let port = crate::services::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .args(["serve", "--dev"])
        .current_dir(dir)
        .env_clear()
        .env("WXLOGIN_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            return (child, port, true);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (child, port, false)
}

#[tokio::test]
async fn dev_mode_serves_one_test_app_per_platform_with_wechats_the_default() {
    use serde_json::{json, Value};
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, up) = dev_server(dir.path()).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("http://127.0.0.1:{port}{path}"))
            .json(&body)
            .send()
    };
    let mut seen = Vec::new();
    if up {
        let apps: Value = http
            .get(format!("http://127.0.0.1:{port}/_sim/apps"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for app in apps.as_array().unwrap() {
            let issued: Value = post(
                "/_sim/codes",
                json!({ "appid": app["appid"], "user": "dev" }),
            )
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
            let login: Value = post(
                "/login",
                json!({ "code": issued["code"], "appid": app["appid"] }),
            )
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
            let token = login["data"]["token"].as_str().unwrap_or("").to_owned();
            let me: Value = http
                .get(format!("http://127.0.0.1:{port}/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            seen.push((
                app["platform"].as_str().unwrap_or("").to_owned(),
                me["data"]["identities"][0]["platform"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            ));
        }
        // Nothing named, on either side: WeChat's test app.
        let issued: Value = post("/_sim/codes", json!({ "user": "plain" }))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let login: Value = post("/login", json!({ "code": issued["code"] }))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.push((
            "default".into(),
            login["data"]["user"]["openid"]
                .as_str()
                .filter(|o| Some(*o) == issued["openid"].as_str())
                .map_or("?".into(), |_| {
                    issued["platform"].as_str().unwrap_or("").to_owned()
                }),
        ));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "serve --dev did not start");
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        seen,
        pairs(&[
            ("weixin", "weixin"),
            ("qq", "qq"),
            ("douyin", "douyin"),
            ("baidu", "baidu"),
            ("kuaishou", "kuaishou"),
            ("alipay", "alipay"),
            ("default", "weixin"),
        ])
    );
}

#[tokio::test]
async fn dev_mode_keeps_its_key_and_database_for_this_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, up) = dev_server(dir.path()).await;
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    let modes = [
        ("wxlogin-data", mode("wxlogin-data")),
        ("wxlogin-data/data.key", mode("wxlogin-data/data.key")),
        ("wxlogin-data/wxlogin.db", mode("wxlogin-data/wxlogin.db")),
        (
            "wxlogin-data/wxlogin.db-wal",
            mode("wxlogin-data/wxlogin.db-wal"),
        ),
    ];
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "serve --dev did not start");
    assert_eq!(
        modes,
        [
            ("wxlogin-data", 0o700),
            ("wxlogin-data/data.key", 0o600),
            ("wxlogin-data/wxlogin.db", 0o600),
            ("wxlogin-data/wxlogin.db-wal", 0o600),
        ]
    );
}

#[tokio::test]
async fn rotate_key_reseals_everything_while_an_instance_serves() {
    use crate::harness::*;
    use serde_json::json;
    // B is the new key; the serving instance can open both (the first step of a rotation).
    let new_key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let admin = "rotate-admin-token-0123456789";
    let app = spawn_with(Options {
        env: vec![
            ("WXLOGIN_DATA_KEY_OLD", new_key.into()),
            ("WXLOGIN_ADMIN_TOKEN", admin.into()),
        ],
        ..Options::default()
    })
    .await;
    let token = app.token_for("rotating").await;
    let other = app.token_for("someone-else").await;
    // A registry app: its secret is sealed like the rest.
    app.sim(
        "/_sim/apps",
        json!({ "platform": "kuaishou", "appid": "ks-rotating", "secret": "ks-secret-1" }),
    )
    .await;
    let (status, body) = app
        .call(
            "POST",
            "/admin/apps",
            Some(admin),
            Some(
                json!({ "platform": "kuaishou", "appid": "ks-rotating", "secret": "ks-secret-1" }),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let pc = app
        .sim(
            "/_sim/phone_codes",
            json!({ "phone": "13700000042", "appid": APPID }),
        )
        .await;
    let (status, _) = app
        .post("/phone", json!({ "code": pc["code"] }), Some(&token))
        .await;
    assert_eq!(status, 200);

    let dir = tempfile::tempdir().unwrap();
    let db = app.database_url();
    let (code, text) = wxlogin(
        dir.path(),
        &["rotate-key"],
        &[
            ("WXLOGIN_DATABASE_URL", &db),
            ("WXLOGIN_DATA_KEY", new_key),
            ("WXLOGIN_DATA_KEY_OLD", DATA_KEY),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 phone numbers, 1 app secrets"), "{text}");
    let new_id =
        wxlogin::vault::Vault::new(&wxlogin::vault::Vault::parse_key(new_key).unwrap(), None)
            .key_id()
            .to_owned();
    let under_new = format!("enc1:{new_id}:%");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM sessions WHERE session_key NOT LIKE '{under_new}'"
        ))
        .await,
        0
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM users WHERE phone IS NOT NULL AND phone NOT LIKE '{under_new}'"
        ))
        .await,
        0
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM apps WHERE secret NOT LIKE '{under_new}'"
        ))
        .await,
        0
    );
    // The instance goes on serving: the registry app logs in, the phone reads back, a second binding of it is refused
    // (found by the new key's hash), open data decrypts.
    let issued = app
        .sim(
            "/_sim/codes",
            json!({ "platform": "kuaishou", "appid": "ks-rotating", "user": "rotating" }),
        )
        .await;
    let (status, body) = app
        .post(
            "/login",
            json!({ "code": issued["code"], "appid": "ks-rotating" }),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = app.me(&token).await;
    assert_eq!(me["data"]["phone"], "13700000042");
    let pc = app
        .sim(
            "/_sim/phone_codes",
            json!({ "phone": "13700000042", "appid": APPID }),
        )
        .await;
    let (status, body) = app
        .post("/phone", json!({ "code": pc["code"] }), Some(&other))
        .await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (409, &json!("phone_in_use"))
    );
    let sealed = app
        .sim(
            "/_sim/encrypt",
            json!({ "appid": APPID, "user": "rotating", "data": { "ok": 1 } }),
        )
        .await;
    let (status, _) = app
        .post(
            "/decrypt",
            json!({ "encryptedData": sealed["encryptedData"], "iv": sealed["iv"] }),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    app.shutdown().await;
}

#[test]
fn decrypt_offline_opens_baidus_documented_sample_and_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let sample = [
        "decrypt",
        "--platform",
        "baidu",
        "--session-key",
        "1df09d0a1677dd72b8325aec59576e0c",
        "--iv",
        "1df09d0a1677dd72b8325Q==",
        "--data",
        "OpCoJgs7RrVgaMNDixIvaCIyV2SFDBNLivgkVqtzq2GC10egsn+PKmQ/+5q+chT8xzldLUog2haTItyIkKyvzvmXonBQLIMeq54axAu9c3KG8IhpFD6+ymHocmx07ZKi7eED3t0KyIxJgRNSDkFk5RV1ZP2mSWa7ZgCXXcAbP0RsiUcvhcJfrSwlpsm0E1YJzKpYy429xrEEGvK+gfL+Cw==",
    ];
    let with_key = [
        &sample[..],
        &["--app-key", "y2dTfnWfkx2OXttMEMWlGHoB1KzMogm7"],
    ]
    .concat();
    let (code, text) = wxlogin(dir.path(), &with_key, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("\"nickname\": \"baidu_user\""), "{text}");
    let (code, text) = wxlogin(dir.path(), &sample, &[]);
    assert_ne!(code, 0);
    assert!(text.contains("--app-key"), "{text}");
    let wrong = [&sample[..], &["--app-key", "another"]].concat();
    let (code, text) = wxlogin(dir.path(), &wrong, &[]);
    assert_ne!(code, 0);
    assert!(text.contains("another app's AppKey"), "{text}");
    let (code, text) = wxlogin(
        dir.path(),
        &[
            "decrypt",
            "--platform",
            "line",
            "--session-key",
            "k",
            "--iv",
            "i",
            "--data",
            "d",
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        text.contains("weixin, qq, douyin, baidu, kuaishou"),
        "{text}"
    );
    // Kuaishou's: WeChat's cipher, no watermark to check; Douyin's has one.
    let key = "MDEyMzQ1Njc4OWFiY2RlZg==";
    let data =
        wxlogin::wechat::crypto::encrypt(key, br#"{"nickName":"ks_user"}"#, &[7; 16]).unwrap();
    let iv = "BwcHBwcHBwcHBwcHBwcHBw==";
    let args = |platform: &'static str| {
        [
            "decrypt",
            "--platform",
            platform,
            "--session-key",
            key,
            "--iv",
            iv,
            "--data",
            &data,
            "--appid",
            "ks-app",
        ]
        .map(str::to_owned)
    };
    let run = |platform| {
        let a = args(platform);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        wxlogin(dir.path(), &a, &[])
    };
    let (code, text) = run("kuaishou");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("\"nickName\": \"ks_user\""), "{text}");
    let (code, text) = run("douyin");
    assert_ne!(code, 0, "Douyin's data carries a watermark: {text}");
}

#[test]
fn decrypt_phone_opens_douyins_and_alipays_messages_with_the_apps_key() {
    use wxlogin::wechat::crypto::{alipay, douyin};
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alipay");
    let private = std::fs::read_to_string(fixtures.join("app_private_pkcs8.pem")).unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, &private).unwrap();
    let key_path = key_file.to_str().unwrap();
    // Douyin: sealed under the key's public half, the watermark checked.
    let plain = r#"{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86","watermark":{"appid":"tt01"}}"#;
    let data =
        douyin::seal_phone(&douyin::public_key_of(&private).unwrap(), plain.as_bytes()).unwrap();
    let douyin_args = |appid: &'static str| {
        wxlogin(
            dir.path(),
            &[
                "decrypt-phone",
                "--platform",
                "douyin",
                "--data",
                &data,
                "--key-file",
                key_path,
                "--appid",
                appid,
            ],
            &[],
        )
    };
    let (code, text) = douyin_args("tt01");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("\"purePhoneNumber\": \"13800138000\""),
        "{text}"
    );
    let (code, text) = douyin_args("tt02");
    assert_ne!(code, 0);
    assert!(text.contains("watermark"), "{text}");
    // Alipay: signed by Alipay (here the fixture key plays Alipay), AES under the app's key.
    let aes_file = dir.path().join("aes.txt");
    std::fs::write(&aes_file, "AAECAwQFBgcICQoLDA0ODw==\n").unwrap();
    let signer = wxlogin::wechat::alipay::private_key(&private).unwrap();
    let message = alipay::seal_phone(
        &signer,
        "AAECAwQFBgcICQoLDA0ODw==",
        r#"{"code":"10000","msg":"Success","mobile":"15900001111"}"#,
    )
    .unwrap();
    let public = wxlogin::wechat::alipay::public_key_of(&signer);
    let (code, text) = wxlogin(
        dir.path(),
        &[
            "decrypt-phone",
            "--platform",
            "alipay",
            "--data",
            &message,
            "--key-file",
            aes_file.to_str().unwrap(),
            "--alipay-public-key",
            &public,
        ],
        &[],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("15900001111"), "{text}");
    // Alipay's message checked with another public key: said plainly.
    let other = wxlogin::simulator::alipay_public_key();
    let (code, text) = wxlogin(
        dir.path(),
        &[
            "decrypt-phone",
            "--platform",
            "alipay",
            "--data",
            &message,
            "--key-file",
            aes_file.to_str().unwrap(),
            "--alipay-public-key",
            &other,
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(text.contains("another Alipay key"), "{text}");
    // The right Alipay key, another AES key: said plainly too.
    std::fs::write(&aes_file, "AQECAwQFBgcICQoLDA0ODw==").unwrap();
    let (code, text) = wxlogin(
        dir.path(),
        &[
            "decrypt-phone",
            "--platform",
            "alipay",
            "--data",
            &message,
            "--key-file",
            aes_file.to_str().unwrap(),
            "--alipay-public-key",
            &public,
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(text.contains("does not open with this AES key"), "{text}");
}
