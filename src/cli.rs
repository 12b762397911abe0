//! The command line: `serve [--dev]`, `simulator`, `check-config`, `decrypt`, `sign`, `admin`
//! (with `admin apps` for the app registry).
//! The top of the house: it reads the configuration and hands over to `app::Application`.

use crate::app::{Application, Running};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::domain::{AppCredentials, Platform};
use crate::simulator::{self, SimApp, SimState};
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The test app `serve --dev` simulates when no app is configured.
pub const DEV_APPID: &str = "wxdevapp";
const DEV_SECRET: &str = "dev-secret-not-for-production";

/// `serve --dev`'s test apps when none is configured: one per platform, WeChat's the default.
const DEV_APPS: [(Platform, &str, &str); 6] = [
    (Platform::Weixin, DEV_APPID, DEV_SECRET),
    (Platform::Qq, "qqdevapp", "dev-qq-secret-not-for-production"),
    (
        Platform::Douyin,
        "ttdevapp",
        "dev-douyin-secret-not-for-production",
    ),
    (
        Platform::Baidu,
        "baidudevappkey",
        "dev-baidu-secret-not-for-production",
    ),
    (
        Platform::Kuaishou,
        "ksdevapp",
        "dev-kuaishou-secret-not-for-production",
    ),
    // Alipay's "secret" is the app's RSA private key (a public test key).
    (
        Platform::Alipay,
        "2021000000000000",
        simulator::DEV_ALIPAY_APP_KEY,
    ),
];

#[derive(Parser)]
#[command(
    name = "wxlogin",
    version,
    about = "Login and sessions for WeChat Mini Programs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the login service.
    Serve {
        /// Embedded defaults for trying it out: the built-in WeChat simulator stands in for WeChat.
        #[arg(long)]
        dev: bool,
        /// With --dev: listen on a non-loopback address anyway (the simulator's code-minting
        /// routes are then open to the network).
        #[arg(long, requires = "dev")]
        force: bool,
    },
    /// Print a new random data key (base64 of 32 bytes) for WXLOGIN_DATA_KEY.
    GenKey,
    /// Seal every stored session_key and phone number under WXLOGIN_DATA_KEY, opening those sealed
    /// under WXLOGIN_DATA_KEY_OLD; safe to run while instances serve.
    RotateKey,
    /// Run the WeChat simulator alone, for your own integration tests.
    Simulator {
        #[arg(long, default_value = "127.0.0.1:8001")]
        listen: SocketAddr,
        /// A simulated app as APPID:SECRET, or PLATFORM/APPID:SECRET for another platform's (qq,
        /// douyin, baidu, kuaishou; repeatable). Their routes are under /PLATFORM (point
        /// WXLOGIN_QQ_API_BASE at http://ADDR/qq, and so on).
        #[arg(long = "app", value_name = "[PLATFORM/]APPID:SECRET")]
        apps: Vec<SimApp>,
    },
    /// Load and validate the configuration, print it with secrets redacted.
    CheckConfig,
    /// Decrypt a mini program's encryptedData offline (debugging real traffic).
    Decrypt {
        /// weixin (the default), qq and douyin: AES-128 with a watermark; kuaishou: AES-128 without
        /// one; baidu: AES-192, needs --app-key.
        #[arg(long, default_value = "weixin")]
        platform: String,
        #[arg(long)]
        session_key: String,
        #[arg(long)]
        iv: String,
        /// The encryptedData (base64).
        #[arg(long)]
        data: String,
        /// Check that watermark.appid is this app.
        #[arg(long)]
        appid: Option<String>,
        /// Baidu: the AppKey the plaintext must end with.
        #[arg(long)]
        app_key: Option<String>,
    },
    /// Open a phone-number message offline: Douyin's `get_phonenumber_info` data (RSA, the
    /// app's private key) or Alipay's `my.getPhoneNumber` response (RSA2-verified, AES).
    DecryptPhone {
        /// douyin or alipay.
        #[arg(long)]
        platform: String,
        /// Douyin: the reply's `data` (base64); Alipay: `res.response` as it is (JSON).
        #[arg(long)]
        data: String,
        /// A file holding the app's key: Douyin's RSA private key, or Alipay's AES key.
        #[arg(long)]
        key_file: std::path::PathBuf,
        /// Douyin: the appid the watermark must name.
        #[arg(long)]
        appid: Option<String>,
        /// Alipay: Alipay's public key (base64 or PEM), which the message must verify with.
        #[arg(long)]
        alipay_public_key: Option<String>,
    },
    /// Ask a running server's admin API (needs WXLOGIN_ADMIN_TOKEN, the server's admin token).
    Admin {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the checksession / login-state signature: hex HMAC-SHA256 keyed by the session_key.
    Sign {
        #[arg(long)]
        session_key: String,
        /// What to sign (checksession signs the empty string).
        #[arg(long, default_value = "")]
        body: String,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Find users by id, openid, unionid or phone.
    Users {
        #[arg(long)]
        id: Option<i64>,
        #[arg(long)]
        openid: Option<String>,
        #[arg(long)]
        unionid: Option<String>,
        #[arg(long)]
        phone: Option<String>,
    },
    /// List a user's sessions.
    Sessions { user_id: i64 },
    /// Revoke one session by its id (from `sessions`).
    RevokeSession { session_id: i64 },
    /// Revoke every session of a user.
    RevokeUser { user_id: i64 },
    /// Show one user (a deleted one as its tombstone).
    User { user_id: i64 },
    /// Ban a user: every session revoked at once, later logins refused (403 banned).
    Ban {
        user_id: i64,
        /// Why (kept for operators, never shown to the user).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a ban.
    Unban { user_id: i64 },
    /// Move FROM's identities, sessions and phone into INTO and delete FROM, in one transaction.
    Merge { into: i64, from: i64 },
    /// Delete a user as `DELETE /me` does (erase, keep the tombstone).
    DeleteUser { user_id: i64 },
    /// The event log, newest first.
    Events {
        /// Only this user's events.
        #[arg(long)]
        user: Option<i64>,
        /// Only this type (login, login_failed, user_banned, ...).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only older than this event id (the previous page's next_before).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Counts of users, sessions and used codes.
    Stats,
    /// The webhook outbox: counts and the newest deliveries.
    Webhooks {
        /// pending or dead (default: both).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Send a dead webhook delivery again (its id from `webhooks`).
    Redrive { id: i64 },
    /// The app registry: apps added, rotated and removed at run time.
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
    },
}

/// `wxlogin admin apps …`. A secret is read from `--secret-file` or standard input, never from
/// the command line (which `ps` and shell history keep).
#[derive(Subcommand)]
pub enum AppsCommand {
    /// The apps served: the config file's and the registry's (never a secret).
    List,
    /// Add an app: served by every instance within 2 s.
    Add {
        /// weixin, qq, douyin, baidu, kuaishou or alipay.
        #[arg(long)]
        platform: String,
        #[arg(long)]
        appid: String,
        /// A file holding the secret, on Alipay the app's private key (default: read one line
        /// from standard input).
        #[arg(long)]
        secret_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        keys: KeyFiles,
    },
    /// Set a registry app's new secret (after resetting it on the platform's console).
    Rotate {
        appid: String,
        /// A file holding the secret (default: read one line from standard input).
        #[arg(long)]
        secret_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        keys: KeyFiles,
    },
    /// Remove a registry app and revoke its sessions.
    Remove { appid: String },
    /// Print the app's current access_token (wxlogin refreshes it for every backend).
    Token {
        appid: String,
        /// A token the platform just refused: dropped before a fresh one is fetched.
        #[arg(long)]
        failed: Option<String>,
    },
}

/// An app's other keys, each from a file.
#[derive(clap::Args)]
pub struct KeyFiles {
    /// Alipay apps: a file holding Alipay's public key (支付宝公钥).
    #[arg(long)]
    alipay_public_key_file: Option<std::path::PathBuf>,
    /// Alipay apps: a file holding the content-encryption (AES) key, for phone numbers.
    #[arg(long)]
    alipay_aes_key_file: Option<std::path::PathBuf>,
    /// Douyin apps: a file holding the app's RSA private key, for phone numbers.
    #[arg(long)]
    douyin_private_key_file: Option<std::path::PathBuf>,
}

impl KeyFiles {
    /// Adds the keys given to a request body.
    fn add_to(&self, body: &mut serde_json::Value) -> anyhow::Result<()> {
        for (name, file) in [
            ("alipay_public_key", &self.alipay_public_key_file),
            ("alipay_aes_key", &self.alipay_aes_key_file),
            ("douyin_private_key", &self.douyin_private_key_file),
        ] {
            if let Some(path) = file {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("--{}-file {}: {e}", name.replace('_', "-"), path.display())
                })?;
                body[name] = text.trim().into();
            }
        }
        Ok(())
    }
}

/// A secret from a file or standard input, without its line break.
fn read_secret(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--secret-file {}: {e}", path.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line
        }
    };
    Ok(text.trim().to_owned())
}

/// Runs a command; the returned code is the process exit status.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve { dev, force } => serve(dev, force).await,
        Command::GenKey => {
            println!("{}", crate::vault::Vault::generate_key());
            Ok(())
        }
        Command::RotateKey => rotate_key().await,
        Command::Simulator { listen, apps } => run_simulator(listen, apps).await,
        Command::CheckConfig => check_config(),
        Command::Decrypt {
            platform,
            session_key,
            iv,
            data,
            appid,
            app_key,
        } => decrypt_offline(&platform, &session_key, &iv, &data, appid, app_key),
        Command::DecryptPhone {
            platform,
            data,
            key_file,
            appid,
            alipay_public_key,
        } => decrypt_phone_offline(&platform, &data, &key_file, appid, alipay_public_key),
        Command::Admin { url, command } => admin(&url, command).await,
        Command::Sign { session_key, body } => {
            println!(
                "{}",
                crate::wechat::crypto::session_signature(&session_key, &body)
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn load_config() -> anyhow::Result<Config> {
    let (config, warnings) = Config::from_env().map_err(explain)?;
    crate::telemetry::init(config.log_format);
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

fn explain(e: ConfigError) -> anyhow::Error {
    anyhow::anyhow!("configuration: {e}")
}

fn check_config() -> anyhow::Result<()> {
    let (config, warnings) = Config::from_env().map_err(explain)?;
    for w in warnings {
        println!("warning: {w}");
    }
    print!("{}", config.describe());
    if config.apps.is_empty() && config.admin_tokens.is_none() {
        anyhow::bail!(
            "WXLOGIN_APPID: no mini program configured (set WXLOGIN_APPID and WXLOGIN_SECRET, or \
             WXLOGIN_ADMIN_TOKEN to add apps through the admin API)"
        );
    }
    println!("configuration ok");
    Ok(())
}

/// Seals what the store holds under the current key (see `Command::RotateKey`).
async fn rotate_key() -> anyhow::Result<()> {
    let (config, _) = Config::from_env().map_err(explain)?;
    let vault = config.vault().ok_or_else(|| {
        anyhow::anyhow!(
            "WXLOGIN_DATA_KEY: set the new key (and WXLOGIN_DATA_KEY_OLD, the one it replaces)"
        )
    })?;
    let key_id = vault.key_id().to_owned();
    let options = crate::store::StoreOptions {
        vault: Arc::new(vault),
        webhooks: false,
    };
    let store = crate::store::connect(&config.database_url, options).await?;
    let done = crate::store::reseal(&*store, crate::store::Reseal::NotCurrent).await;
    store.close().await;
    let done = done.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "sealed under key {key_id}: {} session keys, {} phone numbers, {} app secrets",
        done.session_keys, done.phones, done.app_secrets
    );
    if done.unreadable > 0 {
        anyhow::bail!(
            "{} values were sealed under a key that is neither WXLOGIN_DATA_KEY nor WXLOGIN_DATA_KEY_OLD; \
             they were left as they are",
            done.unreadable
        );
    }
    Ok(())
}

/// `wxlogin decrypt`: open data of one platform, saying which step failed (a developer's
/// terminal only: a server must never tell clients this).
fn decrypt_offline(
    platform: &str,
    session_key: &str,
    iv: &str,
    data: &str,
    appid: Option<String>,
    app_key: Option<String>,
) -> anyhow::Result<()> {
    use crate::domain::{OpenDataScheme, Platform};
    use crate::wechat::crypto::{self, OpenDataError};
    let Some(platform) = Platform::parse(platform) else {
        anyhow::bail!("--platform {platform}: expected one of {}", Platform::NAMES);
    };
    let opened = match platform.open_data() {
        OpenDataScheme::Aes128 { watermark } => {
            // Without a watermark there is no appid to check.
            crypto::diagnose(
                session_key,
                data,
                iv,
                appid.as_deref().filter(|_| watermark),
            )
        }
        OpenDataScheme::None => anyhow::bail!(
            "--platform {}: it gives no session_key, so there is no open data to decrypt",
            platform.as_str()
        ),
        OpenDataScheme::Baidu => {
            let Some(app_key) = app_key.or(appid) else {
                anyhow::bail!("--platform baidu needs --app-key (the app's AppKey)");
            };
            crypto::baidu::decrypt(session_key, data, iv, &app_key).map_err(|e| match e {
                OpenDataError::Malformed(why) => why.to_owned(),
                OpenDataError::DecryptFailed => {
                    "wrong session_key or iv, corrupted data, or another app's AppKey".to_owned()
                }
            })
        }
    };
    let v = opened.map_err(|why| anyhow::anyhow!("decrypt failed: {why}"))?;
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    Ok(())
}

/// `wxlogin decrypt-phone`: a phone-number message opened with the app's key, offline.
fn decrypt_phone_offline(
    platform: &str,
    data: &str,
    key_file: &std::path::Path,
    appid: Option<String>,
    alipay_public_key: Option<String>,
) -> anyhow::Result<()> {
    use crate::wechat::crypto::{alipay, douyin};
    let key = std::fs::read_to_string(key_file)
        .map_err(|e| anyhow::anyhow!("--key-file {}: {e}", key_file.display()))?;
    let key = key.trim();
    let phone = match Platform::parse(platform) {
        Some(Platform::Douyin) => {
            let Some(appid) = appid else {
                anyhow::bail!("--platform douyin needs --appid (the watermark's)");
            };
            let key = douyin::private_key(key).map_err(|e| anyhow::anyhow!("--key-file: {e}"))?;
            let info = douyin::open_phone(data, &key, &appid).map_err(|e| match e {
                crate::wechat::crypto::OpenDataError::Malformed(why) => anyhow::anyhow!("{why}"),
                crate::wechat::crypto::OpenDataError::DecryptFailed => anyhow::anyhow!(
                    "decrypt failed: not this key's (is its public half the one on Douyin's \
                     console?), corrupted, or another app's watermark"
                ),
            })?;
            serde_json::to_value(info)?
        }
        Some(Platform::Alipay) => {
            let Some(public) = alipay_public_key else {
                anyhow::bail!("--platform alipay needs --alipay-public-key");
            };
            let public = crate::wechat::alipay::public_key(&public)
                .map_err(|e| anyhow::anyhow!("--alipay-public-key: {e}"))?;
            let mobile = alipay::open_phone(data, &public, key).map_err(|e| match e {
                alipay::AlipayPhoneError::Failed => anyhow::anyhow!(
                    "not signed by this Alipay key: another Alipay key, or a changed message"
                ),
                alipay::AlipayPhoneError::Unopened => anyhow::anyhow!(
                    "signed by Alipay but does not open with this AES key: another app's key?"
                ),
                other => anyhow::anyhow!("{other}"),
            })?;
            serde_json::json!({ "mobile": mobile })
        }
        _ => anyhow::bail!("--platform {platform}: douyin or alipay"),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&phone).unwrap_or_default()
    );
    Ok(())
}

/// `serve --dev` without a key: the one in `./wxlogin-data/data.key`, made on first use (0600).
fn dev_data_key() -> anyhow::Result<SecretString> {
    let dir = std::path::Path::new("wxlogin-data");
    let path = dir.join("data.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        crate::vault::Vault::parse_key(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    crate::store::private_dir(dir)?;
    let key = crate::vault::Vault::generate_key();
    crate::store::write_private(&path, &key)?;
    tracing::warn!(path = %path.display(), "dev mode: made a data key; keep it with the database");
    Ok(SecretString::from(key))
}

async fn serve(dev: bool, force: bool) -> anyhow::Result<()> {
    let mut config = load_config()?;
    if dev && !config.listen.ip().is_loopback() && !force {
        anyhow::bail!(
            "WXLOGIN_LISTEN: --dev on {} would open the simulator's code-minting routes to the network; \
             listen on 127.0.0.1, or add --force if this machine is yours alone",
            config.listen
        );
    }
    if dev && config.data_key.is_none() {
        config.data_key = Some(dev_data_key()?);
    }
    let clock: SharedClock = Arc::new(SystemClock);
    let stop = stop_on_signal();
    let mut extra = None;
    let mut simulator = None;
    if dev {
        if config.apps.is_empty() {
            config.apps = DEV_APPS
                .iter()
                .map(|(platform, appid, secret)| {
                    Ok(AppCredentials {
                        platform: *platform,
                        appid: crate::domain::AppId::parse(appid)?,
                        secret: SecretString::from(*secret),
                        alipay_public_key: (*platform == Platform::Alipay)
                            .then(simulator::alipay_public_key),
                        phone_key: match platform {
                            Platform::Alipay => {
                                Some(SecretString::from(simulator::DEV_ALIPAY_AES_KEY))
                            }
                            Platform::Douyin => {
                                Some(SecretString::from(simulator::DEV_DOUYIN_PRIVATE_KEY))
                            }
                            _ => None,
                        },
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            // Clients that send no appid (the SDK without one, curl) mean WeChat's.
            if config.default_appid.is_none() {
                config.default_appid = Some(crate::domain::AppId::parse(DEV_APPID)?);
            }
        }
        let sim_apps = config
            .apps
            .iter()
            .map(|a| SimApp {
                platform: a.platform,
                appid: a.appid.to_string(),
                secret: a.secret.expose_secret().to_owned(),
            })
            .collect();
        let sim = Arc::new(SimState::new(sim_apps, clock.clone()));
        // The platforms' side of each app's phone key, as set on their consoles: Alipay's AES
        // key, the public half of a Douyin app's private key.
        for app in &config.apps {
            if let Some(key) = &app.phone_key {
                sim.set_phone_key(app.platform, app.appid.as_str(), key.expose_secret())
                    .map_err(|why| anyhow::anyhow!("{}: {why}", app.appid))?;
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sim_addr = listener.local_addr()?;
        config.wechat_api_base = format!("http://{sim_addr}").parse()?;
        config.qq_api_base = format!("http://{sim_addr}/qq").parse()?;
        config.douyin_api_base = format!("http://{sim_addr}/douyin").parse()?;
        config.douyin_open_api_base = format!("http://{sim_addr}/douyin-open").parse()?;
        config.baidu_open_api_base = format!("http://{sim_addr}/baidu-open").parse()?;
        config.baidu_api_base = format!("http://{sim_addr}/baidu").parse()?;
        config.kuaishou_api_base = format!("http://{sim_addr}/kuaishou").parse()?;
        config.alipay_api_base = format!("http://{sim_addr}/alipay").parse()?;
        simulator = Some(Running::serve(
            listener,
            simulator::router(sim.clone()),
            stop.clone(),
        )?);
        extra = Some(simulator::control_router().with_state(sim));
        tracing::warn!("dev mode: WeChat is simulated; never use --dev in production");
    } else if config.apps.is_empty() && config.admin_tokens.is_none() {
        anyhow::bail!(
            "no mini program configured: set WXLOGIN_APPID and WXLOGIN_SECRET (or [[apps]] in wxlogin.toml), \
             or WXLOGIN_ADMIN_TOKEN to add apps through the admin API, or run `wxlogin serve --dev` to try \
             it with the built-in WeChat simulator"
        );
    }
    let app = Application::build(&config, clock, extra, stop).await?;
    let addr = app.addr()?;
    tracing::info!(addr = %addr, database = %config.database_url.redacted(), "wxlogin listening");
    if dev {
        print_dev_banner(addr, &config.apps);
    }
    app.run_until_stopped().await?;
    if let Some(simulator) = simulator {
        simulator.wait().await;
    }
    Ok(())
}

fn print_dev_banner(addr: SocketAddr, apps: &[AppCredentials]) {
    let appid = apps.first().map_or(DEV_APPID, |a| a.appid.as_str());
    let list: Vec<String> = apps
        .iter()
        .map(|a| format!("{} ({})", a.appid, a.platform.as_str()))
        .collect();
    println!(
        "\nwxlogin (dev) is listening on http://{addr}\n\
         Dev console: http://{addr}/_dev   API docs: http://{addr}/docs\n\
         Simulated apps: {}\n\
         Every platform is simulated. Get a wx.login() code for test user alice, then log in:\n\n  \
         curl -s -X POST http://{addr}/_sim/codes -H 'content-type: application/json' -d '{{\"appid\":\"{appid}\",\"user\":\"alice\"}}'\n  \
         curl -s -X POST http://{addr}/login -H 'content-type: application/json' -d '{{\"code\":\"<code>\",\"appid\":\"{appid}\"}}'\n",
        list.join(", ")
    );
}

async fn admin(base: &str, command: AdminCommand) -> anyhow::Result<()> {
    let (config, _) = Config::from_env().map_err(explain)?;
    let tokens = config.admin_tokens.ok_or_else(|| {
        anyhow::anyhow!(
            "WXLOGIN_ADMIN_TOKEN: set it (or WXLOGIN_ADMIN_TOKEN_FILE) to the server's admin token"
        )
    })?;
    let base = base.trim_end_matches('/');
    let http = reqwest::Client::new();
    let request = match command {
        AdminCommand::Users {
            id,
            openid,
            unionid,
            phone,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            query.extend(id.map(|v| ("id", v.to_string())));
            query.extend(openid.map(|v| ("openid", v)));
            query.extend(unionid.map(|v| ("unionid", v)));
            query.extend(phone.map(|v| ("phone", v)));
            http.get(format!("{base}/admin/users")).query(&query)
        }
        AdminCommand::Sessions { user_id } => {
            http.get(format!("{base}/admin/users/{user_id}/sessions"))
        }
        AdminCommand::RevokeSession { session_id } => {
            http.delete(format!("{base}/admin/sessions/{session_id}"))
        }
        AdminCommand::RevokeUser { user_id } => {
            http.delete(format!("{base}/admin/users/{user_id}/sessions"))
        }
        AdminCommand::User { user_id } => http.get(format!("{base}/admin/users/{user_id}")),
        AdminCommand::Ban { user_id, reason } => http
            .post(format!("{base}/admin/users/{user_id}/ban"))
            .json(&serde_json::json!({ "reason": reason })),
        AdminCommand::Unban { user_id } => http.post(format!("{base}/admin/users/{user_id}/unban")),
        AdminCommand::Merge { into, from } => http
            .post(format!("{base}/admin/users/{into}/merge"))
            .json(&serde_json::json!({ "from": from })),
        AdminCommand::DeleteUser { user_id } => {
            http.delete(format!("{base}/admin/users/{user_id}"))
        }
        AdminCommand::Events {
            user,
            kind,
            since,
            before,
            limit,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            query.extend(kind.map(|v| ("type", v)));
            query.extend(since.map(|v| ("since", v)));
            query.extend(before.map(|v| ("before", v.to_string())));
            query.extend(limit.map(|v| ("limit", v.to_string())));
            let path = match user {
                Some(id) => format!("{base}/admin/users/{id}/events"),
                None => format!("{base}/admin/events"),
            };
            http.get(path).query(&query)
        }
        AdminCommand::Stats => http.get(format!("{base}/admin/stats")),
        AdminCommand::Webhooks { state, limit } => {
            let mut query = Vec::new();
            query.extend(state.map(|v| ("state", v)));
            query.extend(limit.map(|v| ("limit", v.to_string())));
            http.get(format!("{base}/admin/webhooks")).query(&query)
        }
        AdminCommand::Redrive { id } => http.post(format!("{base}/admin/webhooks/{id}/redrive")),
        AdminCommand::Apps { command } => match command {
            AppsCommand::List => http.get(format!("{base}/admin/apps")),
            AppsCommand::Add {
                platform,
                appid,
                secret_file,
                keys,
            } => {
                let mut body = serde_json::json!({
                    "platform": platform,
                    "appid": appid,
                    "secret": read_secret(secret_file.as_deref())?,
                });
                keys.add_to(&mut body)?;
                http.post(format!("{base}/admin/apps")).json(&body)
            }
            AppsCommand::Rotate {
                appid,
                secret_file,
                keys,
            } => {
                let mut body =
                    serde_json::json!({ "secret": read_secret(secret_file.as_deref())? });
                keys.add_to(&mut body)?;
                http.put(format!("{base}/admin/apps/{appid}")).json(&body)
            }
            AppsCommand::Remove { appid } => http.delete(format!("{base}/admin/apps/{appid}")),
            AppsCommand::Token { appid, failed } => http
                .get(format!("{base}/admin/apps/{appid}/access_token"))
                .query(&[("failed", failed.unwrap_or_default())]),
        },
    };
    let response = request
        .bearer_auth(tokens.first().expose_secret())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {base}: {}", e.without_url()))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&body)?);
    if !status.is_success() {
        anyhow::bail!("the server answered HTTP {status}");
    }
    Ok(())
}

async fn run_simulator(listen: SocketAddr, mut apps: Vec<SimApp>) -> anyhow::Result<()> {
    crate::telemetry::init(crate::config::LogFormat::Human);
    if apps.is_empty() {
        apps.push(SimApp {
            platform: Platform::Weixin,
            appid: DEV_APPID.into(),
            secret: DEV_SECRET.into(),
        });
    }
    let names: Vec<&str> = apps.iter().map(|a| a.appid.as_str()).collect();
    println!("WeChat simulator on http://{listen} for apps {names:?}");
    if apps.iter().any(|a| a.platform == Platform::Alipay) {
        println!(
            "Alipay apps: configure them with alipay_public_key = \"{}\"",
            simulator::alipay_public_key()
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen: cannot listen on {listen}: {e}"))?;
    let state = Arc::new(SimState::new(apps, Arc::new(SystemClock)));
    crate::server::serve(
        listener,
        simulator::router(state),
        stop_on_signal(),
        crate::server::HttpLimits::default(),
    )
    .await?;
    Ok(())
}

/// A token cancelled on the first Ctrl-C or SIGTERM: the one stop signal of a run.
fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        token.cancel();
    });
    stop
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
