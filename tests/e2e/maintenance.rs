//! Expired-data cleanup and the two migration folders staying in step.

use crate::harness::*;
use std::collections::BTreeSet;
use std::time::Duration;
use wxlogin::services::maintenance::Maintenance;
use wxlogin::services::sessions::SessionPolicy;

#[tokio::test]
async fn cleanup_removes_expired_sessions_and_old_used_codes_only() {
    let app = spawn_app().await;
    let alice = app.token_for("alice").await;
    app.clock.advance(Duration::from_secs(6 * 86400));
    let bob = app.token_for("bob").await;
    app.clock.advance(Duration::from_secs(2 * 86400));
    let policy = SessionPolicy {
        idle_timeout: Duration::from_secs(7 * 86400),
        max_lifetime: Duration::from_secs(30 * 86400),
    };
    let maintenance = Maintenance::new(
        app.store().await,
        app.clock.clone(),
        policy,
        Duration::from_secs(180 * 86400),
    );
    let (removed_sessions, removed_codes) = maintenance
        .cleanup()
        .await
        .unwrap()
        .expect("nobody else is cleaning");
    assert_eq!((removed_sessions, removed_codes), (1, 2));
    assert_eq!(app.me(&alice).await.0, 401);
    assert_eq!(app.me(&bob).await.0, 200);
    assert_eq!(app.count_rows("sessions").await, 1);
    assert_eq!(
        app.count_rows("users").await,
        2,
        "users are never cleaned up"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn on_postgresql_cleanup_runs_on_one_instance_at_a_time() {
    if std::env::var("WXLOGIN_TEST_POSTGRES_URL").is_err() {
        eprintln!("skipped: PostgreSQL pass only");
        return;
    }
    let app = spawn_app().await;
    let store = app.store().await;
    let policy = SessionPolicy {
        idle_timeout: Duration::from_secs(3600),
        max_lifetime: Duration::from_secs(7200),
    };
    let maintenance =
        Maintenance::new(store, app.clock.clone(), policy, Duration::from_secs(86400));
    // Another instance holds the cleanup lock.
    let url = app.database_url();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut other = pool.begin().await.unwrap();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(7238140)")
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert!(held);
    assert!(
        maintenance.cleanup().await.unwrap().is_none(),
        "skips while another instance cleans"
    );
    other.commit().await.unwrap();
    assert!(maintenance.cleanup().await.unwrap().is_some());
    app.shutdown().await;
}

fn migration_names(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect()
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_have_the_same_versions_and_schema() {
    assert_eq!(migration_names("sqlite"), migration_names("postgres"));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/m.db", dir.path().display());
    let _store = wxlogin::store::connect(
        &wxlogin::store::DatabaseUrl::parse(&url).unwrap(),
        crate::harness::vault().into(),
    )
    .await
    .unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let sqlite: BTreeSet<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert!(
        sqlite.contains(&("sessions".into(), "token_hash".into())),
        "{sqlite:?}"
    );
    let Ok(_) = std::env::var("WXLOGIN_TEST_POSTGRES_URL") else {
        eprintln!("PostgreSQL schema comparison runs in the PostgreSQL pass");
        return;
    };
    let app = spawn_app().await;
    let pg = sqlx::PgPool::connect(&app.database_url()).await.unwrap();
    let postgres: BTreeSet<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&pg)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(sqlite, postgres);
    app.shutdown().await;
}
