use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Never pick up a wxlogin.toml from the working directory in unit tests.
    m.entry("WXLOGIN_CONFIG".into())
        .or_insert_with(|| "/nonexistent/wxlogin.toml".into());
    m
}

fn key_of(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { key, .. } => key,
        ConfigError::File { path, .. } => path.display().to_string(),
    }
}

fn load_without_file(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut e = env(pairs);
    e.remove("WXLOGIN_CONFIG");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxlogin.toml");
    std::fs::write(&path, "").unwrap();
    e.insert("WXLOGIN_CONFIG".into(), path.display().to_string());
    Config::load(&e).map(|(c, _)| c)
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let c = load_without_file(&[]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(c.database_url.expose(), DEFAULT_DATABASE_URL);
    assert_eq!(c.wechat_api_base.as_str(), "https://api.weixin.qq.com/");
    assert_eq!(c.session_idle_timeout, Duration::from_secs(7 * 86400));
    assert_eq!(c.session_max_lifetime, Duration::from_secs(30 * 86400));
    assert_eq!(c.session_cache_size, DEFAULT_SESSION_CACHE_SIZE);
    assert!(c.apps.is_empty());
    assert!(c.admin_tokens.is_none());
}

#[test]
fn a_missing_explicit_config_file_is_an_error_naming_the_file() {
    let e = Config::load(&env(&[])).unwrap_err();
    assert!(key_of(e).contains("/nonexistent/wxlogin.toml"));
}

#[test]
fn env_overrides_file_and_file_secrets_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cr3t-from-file\n").unwrap();
    let cfg = dir.path().join("wxlogin.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:9000\"\nwechat_timeout = \"2s\"\n[session]\nidle_timeout = \"1h\"\ncache_size = 5\n\n\
             [[apps]]\nappid = \"wxa\"\nsecret = \"a-secret\"\n\n[[apps]]\nappid = \"wxb\"\nsecret_file = \"{}\"\n",
            secret.display()
        ),
    )
    .unwrap();
    let c = Config::load(&env(&[
        ("WXLOGIN_CONFIG", cfg.to_str().unwrap()),
        ("WXLOGIN_LISTEN", "127.0.0.1:9001"),
    ]))
    .unwrap()
    .0;
    assert_eq!(c.listen.port(), 9001);
    assert_eq!(c.wechat_timeout, Duration::from_secs(2));
    assert_eq!(c.session_idle_timeout, Duration::from_secs(3600));
    assert_eq!(c.session_cache_size, 5);
    assert_eq!(c.apps.len(), 2);
    assert_eq!(c.apps[1].secret.expose_secret(), "s3cr3t-from-file");
}

#[test]
fn an_app_names_its_platform_and_an_unknown_one_is_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wxlogin.toml");
    std::fs::write(
        &cfg,
        "[[apps]]\nappid = \"wxa\"\nsecret = \"a\"\n\n\
         [[apps]]\nplatform = \"qq\"\nappid = \"1109000001\"\nsecret = \"q\"\n",
    )
    .unwrap();
    let c = Config::load(&env(&[("WXLOGIN_CONFIG", cfg.to_str().unwrap())]))
        .unwrap()
        .0;
    assert_eq!(c.apps[0].platform, crate::domain::Platform::Weixin);
    assert_eq!(c.apps[1].platform, crate::domain::Platform::Qq);
    assert!(
        c.describe()
            .contains("apps = 1109000001 (qq, secret [redacted])"),
        "{}",
        c.describe()
    );
    std::fs::write(
        &cfg,
        "[[apps]]\nplatform = \"line\"\nappid = \"wxa\"\nsecret = \"a\"\n",
    )
    .unwrap();
    let e = Config::load(&env(&[("WXLOGIN_CONFIG", cfg.to_str().unwrap())]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apps[0].platform") && e.contains("weixin, qq"),
        "{e}"
    );
    let e = Config::load(&env(&[
        ("WXLOGIN_CONFIG", "/dev/null"),
        ("WXLOGIN_QQ_API_BASE", "http://api.q.qq.com"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(e.contains("WXLOGIN_QQ_API_BASE"), "{e}");
}

#[test]
fn the_env_app_names_its_platform() {
    let c = load_without_file(&[
        ("WXLOGIN_APPID", "1109000001"),
        ("WXLOGIN_SECRET", "s"),
        ("WXLOGIN_PLATFORM", "qq"),
    ])
    .unwrap();
    assert_eq!(c.apps[0].platform, crate::domain::Platform::Qq);
    let e = load_without_file(&[
        ("WXLOGIN_APPID", "a"),
        ("WXLOGIN_SECRET", "s"),
        ("WXLOGIN_PLATFORM", "line"),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("WXLOGIN_PLATFORM"), "{e}");
}

#[test]
fn env_app_and_secret_file_variant() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "from-file").unwrap();
    let c = load_without_file(&[
        ("WXLOGIN_APPID", "wx0123456789abcdef"),
        ("WXLOGIN_SECRET_FILE", secret.to_str().unwrap()),
    ])
    .unwrap();
    assert_eq!(c.apps.len(), 1);
    assert_eq!(c.apps[0].secret.expose_secret(), "from-file");
}

const ALIPAY_KEY: &str = include_str!("../../tests/fixtures/alipay/app_private_pkcs1.pem");
const ALIPAY_PUBLIC: &str = include_str!("../../tests/fixtures/alipay/app_public.pem");

#[test]
fn an_alipay_app_takes_its_private_key_as_its_secret_and_alipays_public_key() {
    let c = load_without_file(&[
        ("WXLOGIN_APPID", "2021000000000001"),
        ("WXLOGIN_SECRET", ALIPAY_KEY),
        ("WXLOGIN_PLATFORM", "alipay"),
        ("WXLOGIN_ALIPAY_PUBLIC_KEY", ALIPAY_PUBLIC),
        ("WXLOGIN_ALIPAY_AES_KEY", "AAECAwQFBgcICQoLDA0ODw=="),
    ])
    .unwrap();
    assert_eq!(c.apps[0].platform, crate::domain::Platform::Alipay);
    assert_eq!(c.apps[0].alipay_public_key.as_deref(), Some(ALIPAY_PUBLIC));
    assert_eq!(
        c.apps[0].phone_key.as_ref().map(|k| k.expose_secret()),
        Some("AAECAwQFBgcICQoLDA0ODw==")
    );
    assert!(
        !format!("{:?}", c.apps[0]).contains("PRIVATE"),
        "the key is never in Debug"
    );
}

#[test]
fn a_douyin_app_takes_its_private_key_for_phone_numbers() {
    let c = load_without_file(&[
        ("WXLOGIN_APPID", "tt0123456789abcdef"),
        ("WXLOGIN_SECRET", "dy-secret"),
        ("WXLOGIN_PLATFORM", "douyin"),
        ("WXLOGIN_DOUYIN_PRIVATE_KEY", ALIPAY_KEY),
    ])
    .unwrap();
    assert!(c.apps[0].phone_key.is_some());
    assert!(!format!("{:?}", c.apps[0]).contains("PRIVATE"));
}

#[test]
fn bad_values_name_the_key_to_fix() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("WXLOGIN_LISTEN", "nope")], "WXLOGIN_LISTEN"),
        (
            &[("WXLOGIN_DATABASE_URL", "mysql://x")],
            "WXLOGIN_DATABASE_URL",
        ),
        (&[("WXLOGIN_REDIS_URL", "http://x")], "WXLOGIN_REDIS_URL"),
        (
            &[("WXLOGIN_WECHAT_API_BASE", "ftp://x")],
            "WXLOGIN_WECHAT_API_BASE",
        ),
        (
            &[("WXLOGIN_WECHAT_TIMEOUT", "soon")],
            "WXLOGIN_WECHAT_TIMEOUT",
        ),
        (
            &[("WXLOGIN_SESSION_IDLE_TIMEOUT", "0s")],
            "WXLOGIN_SESSION_IDLE_TIMEOUT",
        ),
        (
            &[("WXLOGIN_SESSION_CACHE_SIZE", "lots")],
            "WXLOGIN_SESSION_CACHE_SIZE",
        ),
        (&[("WXLOGIN_APPID", "wxa")], "WXLOGIN_SECRET"),
        (&[("WXLOGIN_SECRET", "x")], "WXLOGIN_APPID"),
        (
            &[("WXLOGIN_APPID", "bad id!"), ("WXLOGIN_SECRET", "x")],
            "WXLOGIN_APPID",
        ),
        (&[("WXLOGIN_ADMIN_TOKEN", "short")], "WXLOGIN_ADMIN_TOKEN"),
        (&[("WXLOGIN_LOG_FORMAT", "xml")], "WXLOGIN_LOG_FORMAT"),
        (
            &[("WXLOGIN_DEFAULT_APPID", "not an appid")],
            "WXLOGIN_DEFAULT_APPID",
        ),
        (
            &[
                ("WXLOGIN_APPID", "2021000000000001"),
                ("WXLOGIN_SECRET", "not a key"),
                ("WXLOGIN_PLATFORM", "alipay"),
                ("WXLOGIN_ALIPAY_PUBLIC_KEY", "not a key"),
            ],
            "WXLOGIN_SECRET",
        ),
        (
            &[
                ("WXLOGIN_APPID", "2021000000000001"),
                ("WXLOGIN_SECRET", ALIPAY_KEY),
                ("WXLOGIN_PLATFORM", "alipay"),
            ],
            "WXLOGIN_ALIPAY_PUBLIC_KEY",
        ),
        (
            &[
                ("WXLOGIN_APPID", "2021000000000001"),
                ("WXLOGIN_SECRET", ALIPAY_KEY),
                ("WXLOGIN_PLATFORM", "alipay"),
                ("WXLOGIN_ALIPAY_PUBLIC_KEY", ALIPAY_KEY),
            ],
            "WXLOGIN_ALIPAY_PUBLIC_KEY",
        ),
        (
            &[
                ("WXLOGIN_APPID", "wxa"),
                ("WXLOGIN_SECRET", "x"),
                ("WXLOGIN_ALIPAY_PUBLIC_KEY", ALIPAY_PUBLIC),
            ],
            "WXLOGIN_ALIPAY_PUBLIC_KEY",
        ),
        (
            &[("WXLOGIN_SECRET", "x"), ("WXLOGIN_SECRET_FILE", "/f")],
            "WXLOGIN_SECRET",
        ),
        (
            &[
                ("WXLOGIN_APPID", "2021000000000001"),
                ("WXLOGIN_SECRET", ALIPAY_KEY),
                ("WXLOGIN_PLATFORM", "alipay"),
                ("WXLOGIN_ALIPAY_PUBLIC_KEY", ALIPAY_PUBLIC),
                ("WXLOGIN_ALIPAY_AES_KEY", "c2hvcnQ="),
            ],
            "WXLOGIN_ALIPAY_AES_KEY",
        ),
        (
            &[
                ("WXLOGIN_APPID", "wxa"),
                ("WXLOGIN_SECRET", "x"),
                ("WXLOGIN_ALIPAY_AES_KEY", "AAECAwQFBgcICQoLDA0ODw=="),
            ],
            "WXLOGIN_ALIPAY_AES_KEY",
        ),
        (
            &[
                ("WXLOGIN_APPID", "tt0123456789abcdef"),
                ("WXLOGIN_SECRET", "x"),
                ("WXLOGIN_PLATFORM", "douyin"),
                ("WXLOGIN_DOUYIN_PRIVATE_KEY", ALIPAY_PUBLIC),
            ],
            "WXLOGIN_DOUYIN_PRIVATE_KEY",
        ),
    ];
    for (vars, key) in cases {
        let e = load_without_file(vars).unwrap_err();
        assert_eq!(key_of(e), *key, "{vars:?}");
    }
}

#[test]
fn unknown_wxlogin_variables_are_warned_about() {
    let mut e = env(&[("WXLOGIN_APPSECRET", "x")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.toml");
    std::fs::write(&path, "").unwrap();
    e.insert("WXLOGIN_CONFIG".into(), path.display().to_string());
    let (_, warnings) = Config::load(&e).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("WXLOGIN_APPSECRET"));
    assert!(!warnings[0].contains("=x"));
}

#[test]
fn invalid_toml_errors_do_not_echo_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.toml");
    std::fs::write(
        &path,
        "[[apps]]\nappid = \"wxa\"\nsecret = \"TOPSECRETVALUE\" oops\n",
    )
    .unwrap();
    let e = Config::load(&env(&[("WXLOGIN_CONFIG", path.to_str().unwrap())])).unwrap_err();
    assert!(!e.to_string().contains("TOPSECRETVALUE"), "{e}");
}

#[test]
fn debug_and_describe_redact_every_secret() {
    let c = load_without_file(&[
        ("WXLOGIN_APPID", "wxa"),
        ("WXLOGIN_SECRET", "APPSECRET123"),
        (
            "WXLOGIN_DATABASE_URL",
            "postgres://u:DBPASSWORD@localhost/db",
        ),
        ("WXLOGIN_REDIS_URL", "redis://:REDISPASS@localhost:6379"),
        ("WXLOGIN_ADMIN_TOKEN", "ADMINTOKEN-0123456789"),
    ])
    .unwrap();
    for text in [format!("{c:?}"), c.describe()] {
        for secret in [
            "APPSECRET123",
            "DBPASSWORD",
            "REDISPASS",
            "ADMINTOKEN-0123456789",
        ] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
    assert!(
        c.describe()
            .contains("postgres://u:%5Bredacted%5D@localhost/db")
            || c.describe().contains("[redacted]")
    );
}

#[test]
fn check_config_prints_every_setting_of_the_table_and_the_readme_documents_each() {
    let c = load_without_file(&[]).unwrap();
    let described = c.describe();
    let readme = include_str!("../../README.md");
    for s in SETTINGS {
        assert!(
            described.contains(&format!("{} = ", s.key)),
            "check-config omits {}",
            s.key
        );
        assert!(
            readme.contains(&format!("`{}`", s.env)),
            "README's configuration table lacks {}",
            s.env
        );
    }
    // The defaults in the table are the ones the constants name.
    assert_eq!(c.session_cache_size, DEFAULT_SESSION_CACHE_SIZE);
    assert_eq!(c.database_url.expose(), DEFAULT_DATABASE_URL);
}

#[test]
fn unknown_keys_in_the_file_are_refused_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n").unwrap();
    let e = Config::load(&env(&[("WXLOGIN_CONFIG", path.to_str().unwrap())])).unwrap_err();
    assert!(e.to_string().contains("listen_adress"), "{e}");
}

#[test]
fn an_admin_token_with_spaces_at_either_end_is_refused() {
    for token in [
        "                ",
        " admin-token-0123456789",
        "admin-token-0123456789 ",
    ] {
        let e = load_without_file(&[("WXLOGIN_ADMIN_TOKEN", token)]).unwrap_err();
        assert_eq!(key_of(e), "WXLOGIN_ADMIN_TOKEN", "{token:?}");
    }
}

#[test]
fn plain_http_to_wechat_is_only_for_a_loopback_simulator() {
    for ok in [
        "http://127.0.0.1:8001",
        "http://localhost:9",
        "http://[::1]:80",
        "https://api.weixin.qq.com",
    ] {
        assert!(
            load_without_file(&[("WXLOGIN_WECHAT_API_BASE", ok)]).is_ok(),
            "{ok}"
        );
    }
    for bad in ["http://api.weixin.qq.com", "http://10.0.0.8:8001"] {
        let e = load_without_file(&[("WXLOGIN_WECHAT_API_BASE", bad)]).unwrap_err();
        assert_eq!(key_of(e), "WXLOGIN_WECHAT_API_BASE", "{bad}");
    }
}

#[test]
fn a_password_in_the_database_urls_query_is_redacted_too() {
    let c = load_without_file(&[(
        "WXLOGIN_DATABASE_URL",
        "postgres://db.internal/wxlogin?user=wx&password=QUERYPASS&sslmode=require",
    )])
    .unwrap();
    for text in [c.describe(), format!("{c:?}")] {
        assert!(!text.contains("QUERYPASS"), "{text}");
        assert!(text.contains("sslmode=require"), "{text}");
    }
}

#[test]
fn admin_tokens_may_carry_labels_and_each_is_checked() {
    let c = load_without_file(&[(
        "WXLOGIN_ADMIN_TOKEN",
        "alice:alice-token-0123456789,ci-bot:bot-token-0123456789",
    )])
    .unwrap();
    let tokens = c.admin_tokens.unwrap();
    assert_eq!(tokens.label_of("alice-token-0123456789"), Some("alice"));
    assert_eq!(tokens.label_of("bot-token-0123456789"), Some("ci-bot"));
    assert_eq!(tokens.label_of("alice:alice-token-0123456789"), None);
    assert_eq!(tokens.label_of(""), None);
    let single = load_without_file(&[("WXLOGIN_ADMIN_TOKEN", "plain-token-0123456789")])
        .unwrap()
        .admin_tokens
        .unwrap();
    assert_eq!(single.label_of("plain-token-0123456789"), Some("admin"));
    for bad in [
        "alice:short",
        "al ice:alice-token-0123456789",
        "alice:alice-token-0123456789,alice:other-token-0123456789",
        "a:same-token-0123456789,b:same-token-0123456789",
        "alice:alice-token-0123456789,",
        ":no-label-token-0123456789",
    ] {
        let e = load_without_file(&[("WXLOGIN_ADMIN_TOKEN", bad)]).unwrap_err();
        assert_eq!(key_of(e), "WXLOGIN_ADMIN_TOKEN", "{bad:?}");
    }
    // check-config names the labels, never a token.
    let shown = load_without_file(&[("WXLOGIN_ADMIN_TOKEN", "alice:alice-token-0123456789")])
        .unwrap()
        .describe();
    assert!(
        shown.contains("labels: alice") && !shown.contains("alice-token"),
        "{shown}"
    );
}

#[test]
fn a_webhook_url_needs_a_secret_and_an_http_url() {
    let e =
        load_without_file(&[("WXLOGIN_WEBHOOK_URL", "https://backend.example/hooks")]).unwrap_err();
    assert_eq!(key_of(e), "WXLOGIN_WEBHOOK_SECRET");
    for bad in [
        "ftp://backend.example/x",
        "not a url",
        "mailto:ops@backend.example",
    ] {
        let e = load_without_file(&[
            ("WXLOGIN_WEBHOOK_URL", bad),
            ("WXLOGIN_WEBHOOK_SECRET", "secret-0123456789abcdef"),
        ])
        .unwrap_err();
        assert_eq!(key_of(e), "WXLOGIN_WEBHOOK_URL", "{bad:?}");
    }
    let c = load_without_file(&[
        (
            "WXLOGIN_WEBHOOK_URL",
            "https://user:pw@backend.example/hooks?token=TOKEN123",
        ),
        ("WXLOGIN_WEBHOOK_SECRET", "secret-0123456789abcdef"),
    ])
    .unwrap();
    assert_eq!(c.webhook_timeout, Duration::from_secs(10));
    assert_eq!(c.webhook_retry_for, Duration::from_secs(86400));
    let shown = c.describe();
    assert!(
        !shown.contains("pw@") && !shown.contains("secret-0123"),
        "{shown}"
    );
    assert!(
        shown.contains("https://backend.example/hooks") && !shown.contains("TOKEN123"),
        "{shown}"
    );
}

#[test]
fn a_redis_cluster_url_lists_its_nodes_and_hides_its_password() {
    let c = load_without_file(&[(
        "WXLOGIN_REDIS_URL",
        "redis+cluster://:CLUSTERPASS@10.0.0.1:7001,10.0.0.2:7001",
    )])
    .unwrap();
    let shown = c.describe();
    assert!(
        shown.contains("redis+cluster://[redacted]@10.0.0.1:7001,10.0.0.2:7001")
            && !shown.contains("CLUSTERPASS"),
        "{shown}"
    );
    for bad in [
        "redis+cluster://",
        "redis+cluster://10.0.0.1",
        "redis+cluster://h:1/0",
    ] {
        let e = load_without_file(&[("WXLOGIN_REDIS_URL", bad)]).unwrap_err();
        assert_eq!(key_of(e), "WXLOGIN_REDIS_URL", "{bad:?}");
    }
}
