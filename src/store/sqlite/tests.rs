//! Group commit: logins submitted together land in one batch, and the batch gives each the
//! answer it would have had alone; touches ride the same batches; the checkpoint thread copies
//! commits into the database file.

use super::*;
use crate::domain::{ClientInfo, OpenId, SessionKey, UnionId};

struct Login {
    openid: &'static str,
    unionid: Option<&'static str>,
    code: &'static str,
    token: TokenHash,
    previous: Option<TokenHash>,
}

fn login(openid: &'static str, code: &'static str) -> Login {
    Login {
        openid,
        unionid: None,
        code,
        token: crate::domain::SessionToken::generate().hash(),
        previous: None,
    }
}

async fn record(store: &SqliteStore, l: &Login, now: Millis) -> StoreResult<LoginRecord> {
    let appid = AppId::parse("wxbatchtest").unwrap();
    store
        .record_login(NewLogin {
            platform: Platform::Weixin,
            appid: &appid,
            openid: &OpenId(l.openid.into()),
            unionid: l.unionid.map(|u| UnionId(u.into())).as_ref(),
            session_key: &SessionKey::new("a2V5a2V5a2V5a2V5a2V5aw==".into()),
            token_hash: &l.token,
            code_hash: &CodeHash(l.code.into()),
            previous: l.previous.as_ref(),
            now,
            expires_at: now + 86_400_000,
            client: &ClientInfo::default(),
            link_by_unionid: true,
            // These tests count sessions; the per-user cap has tests of its own.
            max_sessions: 1000,
        })
        .await
}

#[tokio::test]
async fn one_batch_answers_each_login_as_if_it_ran_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        &format!("sqlite://{}/b.db", dir.path().display()),
        crate::vault::Vault::for_tests().into(),
    )
    .await
    .unwrap();

    // Before the batch: Zoe has a session, and code c0 is spent.
    let zoe_first = login("zoe", "c0");
    let zoe_id = record(&store, &zoe_first, 1_000).await.unwrap().user_id;

    let mut zoe_again = login("zoe", "c3");
    zoe_again.unionid = Some("union-zoe");
    zoe_again.previous = Some(zoe_first.token.clone());
    let batch = [
        login("xavier", "c1"), // new user
        login("xavier", "c2"), // the same new user again, in the same batch
        login("yann", "c1"),   // a code already taken earlier in this batch
        zoe_again,             // an existing user, replacing her token, now with a unionid
        login("yann", "c0"),   // a code spent in an earlier batch
    ];
    // Submitted together, they mostly share a batch; in one batch or several, each gets the
    // answer it would have had alone.
    let results = futures::future::join_all(batch.iter().map(|l| record(&store, l, 2_000))).await;

    let x = results[0].as_ref().unwrap();
    assert!(x.new_user);
    let x2 = results[1].as_ref().unwrap();
    assert_eq!((x2.user_id, x2.new_user), (x.user_id, false));
    assert!(matches!(results[2], Err(StoreError::CodeUsed)));
    let z = results[3].as_ref().unwrap();
    assert_eq!((z.user_id, z.new_user), (zoe_id, false));
    assert!(matches!(results[4], Err(StoreError::CodeUsed)));

    // What the store holds: sessions for the three admitted logins, none for the refused ones,
    // Zoe's old token gone, her unionid and last login updated, yann never created.
    for (l, live) in batch.iter().zip([true, true, false, true, false]) {
        assert_eq!(
            store.find_session(&l.token).await.unwrap().is_some(),
            live,
            "{} {}",
            l.openid,
            l.code
        );
    }
    assert!(store
        .find_session(&zoe_first.token)
        .await
        .unwrap()
        .is_none());
    let zoe = store.find_user(zoe_id).await.unwrap().unwrap();
    assert_eq!(zoe.identities[0].unionid.as_deref(), Some("union-zoe"));
    assert_eq!(zoe.last_login_at, 2_000);
    let stats = store.stats(2_000).await.unwrap();
    assert_eq!((stats.users, stats.sessions, stats.used_codes), (2, 3, 4));
}

#[tokio::test]
async fn touches_are_committed_with_the_logins() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        &format!("sqlite://{}/t.db", dir.path().display()),
        crate::vault::Vault::for_tests().into(),
    )
    .await
    .unwrap();
    let first = login("una", "t0");
    record(&store, &first, 1_000).await.unwrap();
    let id = store.find_session(&first.token).await.unwrap().unwrap().id;

    let second = login("vic", "t1");
    let (touched, logged_in, stale) = tokio::join!(
        store.touch_session(id, 5_000),
        record(&store, &second, 5_000),
        // Never moves last use backwards.
        store.touch_session(id, 4_000),
    );
    touched.unwrap();
    logged_in.unwrap();
    stale.unwrap();
    let session = store.find_session(&first.token).await.unwrap().unwrap();
    assert_eq!(session.last_seen_at, 5_000);
    // A session that is gone: nothing to update, and no error.
    store.touch_session(id + 100, 6_000).await.unwrap();
}

#[tokio::test]
async fn the_checkpoint_thread_copies_commits_into_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = SqliteStore::open(
        &format!("sqlite://{}", path.display()),
        crate::vault::Vault::for_tests().into(),
    )
    .await
    .unwrap();
    let logins: Vec<Login> = (0..20)
        .map(|i| {
            let mut l = login("wendy", "");
            l.code = Box::leak(format!("k{i}").into_boxed_str());
            l
        })
        .collect();
    for l in &logins {
        record(&store, l, 1_000).await.unwrap();
    }
    // `immutable=1` reads the database file alone, ignoring the WAL: the sessions show up there
    // only once a checkpoint has copied them. The WAL is far below the size at which the writer
    // would checkpoint by itself, so it can only be the checkpoint thread.
    let file_sessions = || {
        let url = format!("file:{}?immutable=1", path.display());
        let conn = rusqlite::Connection::open_with_flags(
            url,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        conn.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get::<_, i64>(0))
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while file_sessions() < 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(file_sessions(), 20);
}
