//! The binary's own behaviour: refusing to start without credentials, `check-config`.

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
