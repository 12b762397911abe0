//! State survives a restart: users, sessions, revocations and used codes are in the store.

use crate::harness::*;
use serde_json::json;

#[tokio::test]
async fn live_tokens_revocations_and_used_codes_survive_a_restart() {
    let app = spawn_app().await;
    let live = app.token_for("alice").await;
    let revoked = app.token_for("bob").await;
    assert_eq!(app.post("/logout", json!({}), Some(&revoked)).await.0, 200);
    let used_code = app.code("carol").await;
    assert_eq!(app.login(&used_code).await.0, 200);
    let (_, me_before) = app.me(&live).await;

    let app = app.restart().await;

    let (status, me_after) = app.me(&live).await;
    assert_eq!(status, 200);
    assert_eq!(me_after["data"]["id"], me_before["data"]["id"]);
    assert_eq!(app.me(&revoked).await.0, 401);
    let calls = app.calls("/sns/jscode2session").await;
    assert_eq!(app.login(&used_code).await.1["error"], "code_used");
    assert_eq!(
        app.calls("/sns/jscode2session").await,
        calls,
        "no WeChat call for a known used code"
    );
    // The same user logging in again after the restart is not a new user.
    let code = app.code("alice").await;
    assert_eq!(app.login(&code).await.1["data"]["new_user"], false);
    app.shutdown().await;
}
