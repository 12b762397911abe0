//! Session expiry at its exact boundaries, with the injected clock (no sleeping).

use crate::harness::*;
use std::time::Duration;

const HOUR: i64 = 3_600_000;

fn short_sessions() -> Options {
    Options {
        env: vec![
            ("WXLOGIN_SESSION_IDLE_TIMEOUT", "1h".into()),
            ("WXLOGIN_SESSION_MAX_LIFETIME", "3h".into()),
        ],
        ..Options::default()
    }
}

#[tokio::test]
async fn an_unused_session_ends_exactly_at_the_idle_timeout() {
    let app = spawn_with(short_sessions()).await;
    let t0 = wxlogin::clock::Clock::now_ms(&*app.clock);
    let token = app.token_for("alice").await;
    app.clock.set(t0 + HOUR - 1);
    assert_eq!(app.me(&token).await.0, 200, "1 ms before the idle timeout");
    // That use moved the idle deadline.
    app.clock.set(t0 + 2 * HOUR - 2);
    assert_eq!(
        app.me(&token).await.0,
        200,
        "1 ms before the moved deadline"
    );
    app.clock.set(t0 + 3 * HOUR - 2);
    assert_eq!(app.me(&token).await.0, 401, "exactly at the idle timeout");
    app.shutdown().await;
}

#[tokio::test]
async fn a_busy_session_still_ends_at_the_absolute_lifetime() {
    let app = spawn_with(short_sessions()).await;
    let t0 = wxlogin::clock::Clock::now_ms(&*app.clock);
    let token = app.token_for("bob").await;
    for step in 1..=5 {
        app.clock.set(t0 + step * 30 * 60_000);
        let expected = if step * 30 * 60_000 < 3 * HOUR {
            200
        } else {
            401
        };
        assert_eq!(app.me(&token).await.0, expected, "at {} min", step * 30);
    }
    app.clock.set(t0 + 3 * HOUR - 1);
    assert_eq!(
        app.me(&token).await.0,
        200,
        "1 ms before the absolute lifetime"
    );
    app.clock.set(t0 + 3 * HOUR);
    assert_eq!(
        app.me(&token).await.0,
        401,
        "exactly at the absolute lifetime"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn expires_in_is_the_sooner_limit() {
    let app = spawn_with(short_sessions()).await;
    let code = app.code("carol").await;
    let (_, body) = app.login(&code).await;
    assert_eq!(body["data"]["expires_in"], 3600);
    app.clock.advance(Duration::from_secs(1));
    app.shutdown().await;
}

#[tokio::test]
async fn a_code_expires_after_five_minutes() {
    let app = spawn_app().await;
    let code = app.code("dave").await;
    app.clock.advance(Duration::from_secs(5 * 60));
    let (status, body) = app.login(&code).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_code");
    app.shutdown().await;
}
