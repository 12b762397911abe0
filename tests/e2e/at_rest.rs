//! Data at rest (SPEC §8): after logins and phone binds, neither the database (the SQLite file
//! with its -wal, or a PostgreSQL dump) nor Redis holds a session_key — as base64 text or as raw
//! bytes — or a phone number; and everything still works, because the server opens what it
//! sealed. A database written in plain text by an earlier release is sealed on first start.

use crate::harness::*;
use base64::Engine;
use serde_json::json;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_session_key_or_phone_number_is_stored_in_plain() {
    let app = spawn_app().await;
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..6 {
        let user = format!("rest-{i}");
        let wx = app.wx_login(&user).await;
        let key = wx["session_key"].as_str().unwrap().to_owned();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&key)
            .unwrap();
        secrets.push((format!("session_key of {user}"), key.clone().into_bytes()));
        secrets.push((format!("raw session_key of {user}"), raw));
        let (status, body) = app.login(wx["code"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{body}");
        let token = body["data"]["token"].as_str().unwrap().to_owned();
        let phone = format!("1390000{i:04}");
        let pc = app
            .sim("/_sim/phone_codes", json!({ "phone": phone }))
            .await;
        let (status, body) = app
            .post("/phone", json!({ "code": pc["code"] }), Some(&token))
            .await;
        assert_eq!(status, 200, "{body}");
        secrets.push((format!("phone of {user}"), phone.clone().into_bytes()));
        tokens.push((token, phone));
    }
    // Everything sealed still opens: the phone reads back, open data decrypts.
    for (token, phone) in &tokens {
        let (_, me) = app.me(token).await;
        assert_eq!(me["data"]["phone"], phone.as_str());
    }
    let (status, body) = app
        .decrypt_for(&tokens[0].0, "rest-0", json!({ "ok": true }))
        .await;
    assert_eq!(
        (status.as_u16(), &body["data"]["ok"]),
        (200, &json!(true)),
        "{body}"
    );

    let db = app.data_at_rest();
    let redis = app.redis_at_rest().await;
    assert!(!db.is_empty());
    for (what, bytes) in &secrets {
        assert!(!contains(&db, bytes), "the database holds the {what}");
        assert!(!contains(&redis, bytes), "Redis holds the {what}");
    }
    // Phones are looked up by their keyed hash: the admin search still finds them.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE phone_hash IS NOT NULL")
            .await,
        6
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_plain_text_database_is_sealed_on_first_start_with_nothing_lost() {
    // Release 0.2 (the one before encryption at rest) wrote session keys and a phone number in
    // plain text; `tests/fixtures/v0.2/make.sh` made this database with its binary.
    let manifest = fixture_manifest("v0.2");
    let app = spawn_with(Options {
        apps: vec![("wxshop", "shop-secret"), ("wxclub", "club-secret")],
        fixture: Some("v0.2"),
        ..Options::default()
    })
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions WHERE session_key NOT LIKE 'enc1:%'")
            .await,
        0,
        "every session_key is sealed"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE phone IS NOT NULL AND (phone NOT LIKE 'enc1:%' OR phone_hash IS NULL)")
            .await,
        0,
        "every phone is sealed and hashed"
    );
    // Every user and live session of that release is still there and answers as it did.
    for (name, u) in manifest["users"].as_object().unwrap() {
        let (status, me) = app.me(u["token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{name}: {me}");
        for field in ["id", "appid", "openid", "unionid", "phone"] {
            assert_eq!(me["data"][field], u[field], "{name}.{field}");
        }
    }
    assert_eq!(
        app.me(manifest["revoked_token"].as_str().unwrap()).await.0,
        401
    );
    let alice = &manifest["users"]["alice"];
    let phone = alice["phone"].as_str().unwrap();
    assert!(
        !contains(&app.data_at_rest(), phone.as_bytes()),
        "the plain number is gone from the data at rest"
    );
    let (status, me) = app.me(alice["token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(me["data"]["phone"], phone);
    // A second start finds nothing left to seal, and loses nothing either.
    let app = app.restart().await;
    let (status, me) = app.me(alice["token"].as_str().unwrap()).await;
    assert_eq!(
        (status.as_u16(), &me["data"]["phone"]),
        (200, &json!(phone))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_lost_data_key_loses_the_sealed_values_and_nothing_else() {
    let app = spawn_app().await;
    let token = app.token_for("keyless").await;
    let pc = app
        .sim("/_sim/phone_codes", json!({ "phone": "13600000001" }))
        .await;
    let (status, _) = app
        .post("/phone", json!({ "code": pc["code"] }), Some(&token))
        .await;
    assert_eq!(status, 200);
    // Started again with another key (the old one lost): it starts, and serves.
    let app = app
        .restart_with(|c| {
            c.data_key = Some(secrecy::SecretString::from(
                "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".to_owned(),
            ))
        })
        .await;
    let (status, me) = app.me(&token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me["data"]["phone"],
        json!(null),
        "the number reads as unbound"
    );
    let (status, _) = app.decrypt_for(&token, "keyless", json!({ "x": 1 })).await;
    assert_eq!(status, 401, "open data asks the client to log in again");
    // Logging in again gives a session whose key opens.
    let token = app.token_for("keyless").await;
    let (status, _) = app.decrypt_for(&token, "keyless", json!({ "x": 2 })).await;
    assert_eq!(status, 200);
    app.shutdown().await;
}
