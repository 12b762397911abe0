//! The cache in front of a real SQLite store: every write path leaves nothing stale behind,
//! and a fill that raced a revocation is dropped.

use super::*;
use crate::domain::{ClientInfo, OpenId, SessionKey, SessionToken};
use crate::store::sqlite::SqliteStore;
use std::sync::Arc;

struct Fixture {
    _dir: tempfile::TempDir,
    sqlite: SharedStore,
    cached: CachedStore,
    appid: AppId,
}

/// When and from where the test's changes are made.
fn audit() -> Audit<'static> {
    static CLIENT: std::sync::OnceLock<ClientInfo> = std::sync::OnceLock::new();
    Audit {
        now: 10_000,
        client: CLIENT.get_or_init(ClientInfo::default),
    }
}

async fn fixture(capacity: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: SharedStore = Arc::new(
        SqliteStore::open(
            &format!("sqlite://{}/t.db", dir.path().display()),
            crate::vault::Vault::for_tests().into(),
        )
        .await
        .unwrap(),
    );
    Fixture {
        cached: CachedStore::new(
            sqlite.clone(),
            NonZeroUsize::new(capacity).unwrap(),
            Arc::new(crate::clock::SystemClock),
        )
        .await,
        sqlite,
        _dir: dir,
        appid: AppId::parse("wxcachetest").unwrap(),
    }
}

impl Fixture {
    /// Logs `openid` in with a fresh token (revoking `previous`), through the cache.
    async fn login(
        &self,
        openid: &str,
        now: Millis,
        previous: Option<&TokenHash>,
    ) -> (TokenHash, LoginRecord) {
        let token = SessionToken::generate().hash();
        let code = CodeHash(format!("code-{}", token.0));
        let record = self
            .cached
            .record_login(NewLogin {
                platform: Platform::Weixin,
                appid: &self.appid,
                openid: &OpenId(openid.into()),
                unionid: None,
                session_key: &SessionKey::new("a2V5a2V5a2V5a2V5a2V5aw==".into()),
                token_hash: &token,
                code_hash: &code,
                previous,
                now,
                expires_at: now + 86_400_000,
                client: &ClientInfo::default(),
                link_by_unionid: true,
                max_sessions: 10,
            })
            .await
            .unwrap();
        (token, record)
    }

    /// Looks the session up through the cache and asserts it is now held in memory.
    async fn cache_session(&self, token: &TokenHash) -> SessionRecord {
        let s = self.cached.find_session(token).await.unwrap().unwrap();
        assert!(self.cached.cached_session(token).is_ok(), "now in memory");
        s
    }
}

#[tokio::test]
async fn every_revocation_path_removes_the_cached_session() {
    let f = fixture(100).await;

    // Logout.
    let (t, _) = f.login("o-logout", 1_000, None).await;
    f.cache_session(&t).await;
    assert!(f.cached.revoke_session(&t, audit()).await.unwrap());
    assert!(f.cached.find_session(&t).await.unwrap().is_none());

    // A new login revoking the client's previous token.
    let (old, _) = f.login("o-relogin", 1_000, None).await;
    f.cache_session(&old).await;
    let (new, _) = f.login("o-relogin", 2_000, Some(&old)).await;
    assert!(f.cached.find_session(&old).await.unwrap().is_none());
    assert!(f.cached.find_session(&new).await.unwrap().is_some());

    // Admin: one session by id.
    let (t, _) = f.login("o-admin-one", 1_000, None).await;
    let id = f.cache_session(&t).await.id;
    assert_eq!(
        f.cached
            .revoke_session_by_id(id, None, audit())
            .await
            .unwrap(),
        Some(t.clone())
    );
    assert!(f.cached.find_session(&t).await.unwrap().is_none());

    // Admin: all of a user's sessions.
    let (a, login) = f.login("o-admin-all", 1_000, None).await;
    let (b, _) = f.login("o-admin-all", 1_500, None).await;
    f.cache_session(&a).await;
    f.cache_session(&b).await;
    assert_eq!(
        f.cached
            .revoke_user_sessions(login.user_id, audit())
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(f.cached.find_session(&a).await.unwrap().is_none());
    assert!(f.cached.find_session(&b).await.unwrap().is_none());
}

#[tokio::test]
async fn user_changes_are_seen_through_the_cache() {
    let f = fixture(100).await;
    let (_, first) = f.login("o-user", 1_000, None).await;
    let u = f.cached.find_user(first.user_id).await.unwrap().unwrap();
    assert_eq!((u.phone.as_deref(), u.last_login_at), (None, 1_000));
    assert!(f.cached.cached_user(first.user_id).is_ok());

    f.cached
        .bind_phone(first.user_id, "13800138000", "86", audit())
        .await
        .unwrap();
    let u = f.cached.find_user(first.user_id).await.unwrap().unwrap();
    assert_eq!(u.phone.as_deref(), Some("13800138000"));

    let (_, again) = f.login("o-user", 5_000, None).await;
    assert_eq!(again.user_id, first.user_id);
    let u = f.cached.find_user(first.user_id).await.unwrap().unwrap();
    assert_eq!(u.last_login_at, 5_000);
}

#[tokio::test]
async fn a_touch_updates_the_cached_session_and_the_store() {
    let f = fixture(100).await;
    let (t, _) = f.login("o-touch", 1_000, None).await;
    let s = f.cache_session(&t).await;
    f.cached.touch_session(s.id, 90_000).await.unwrap();
    let cached = f.cached.cached_session(&t).unwrap();
    assert_eq!(cached.last_seen_at, 90_000);
    let stored = f.sqlite.find_session(&t).await.unwrap().unwrap();
    assert_eq!(stored.last_seen_at, 90_000);
}

#[tokio::test]
async fn a_fill_that_raced_a_revocation_is_dropped() {
    let f = fixture(100).await;
    let (t, _) = f.login("o-race", 1_000, None).await;

    // The interleaving: a check misses and reads the store; the logout then runs to the end;
    // only then does the check try to cache what it read.
    let epoch = f.cached.cached_session(&t).unwrap_err();
    let read = f.sqlite.find_session(&t).await.unwrap().unwrap();
    assert!(f.cached.revoke_session(&t, audit()).await.unwrap());
    f.cached.fill_session(&t, &read, epoch);
    assert!(f.cached.cached_session(&t).is_err());
    assert!(f.cached.find_session(&t).await.unwrap().is_none());

    // Without a write in between, the same fill is kept.
    let (t, _) = f.login("o-race", 2_000, None).await;
    let epoch = f.cached.cached_session(&t).unwrap_err();
    let read = f.sqlite.find_session(&t).await.unwrap().unwrap();
    f.cached.fill_session(&t, &read, epoch);
    assert!(f.cached.cached_session(&t).is_ok());
}

#[tokio::test]
async fn eviction_keeps_the_id_index_in_step() {
    let f = fixture(2).await;
    let mut tokens = Vec::new();
    for n in 0..3 {
        let (t, _) = f.login(&format!("o-evict-{n}"), 1_000, None).await;
        let id = f.cache_session(&t).await.id;
        tokens.push((t, id));
    }
    // The first was evicted (capacity 2); its id left the index with it.
    assert!(f.cached.cached_session(&tokens[0].0).is_err());
    {
        let cache = f.cached.lock();
        assert_eq!(cache.ids.len(), 2);
        assert!(!cache.ids.contains_key(&tokens[0].1));
    }
    // Revoking the evicted one by id still works (it is in the store) and leaves the others.
    assert_eq!(
        f.cached
            .revoke_session_by_id(tokens[0].1, None, audit())
            .await
            .unwrap(),
        Some(tokens[0].0.clone())
    );
    assert!(f.cached.cached_session(&tokens[2].0).is_ok());
}
