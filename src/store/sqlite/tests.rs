//! Group commit: logins submitted together land in one batch, and the batch gives each the
//! answer it would have had alone.

use super::*;
use crate::store::Store;

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
            appid: &appid,
            openid: &OpenId(l.openid.into()),
            unionid: l.unionid.map(|u| UnionId(u.into())).as_ref(),
            session_key: &SessionKey::new("a2V5a2V5a2V5a2V5a2V5aw==".into()),
            token_hash: &l.token,
            code_hash: l.code,
            previous: l.previous.as_ref(),
            now,
            expires_at: now + 86_400_000,
        })
        .await
}

#[tokio::test]
async fn one_batch_answers_each_login_as_if_it_ran_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&format!("sqlite://{}/b.db", dir.path().display()))
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
    // On the test's single-threaded runtime every login is queued before the writer runs,
    // so they form one batch.
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
    assert_eq!(zoe.unionid.map(|u| u.0).as_deref(), Some("union-zoe"));
    assert_eq!(zoe.last_login_at, 2_000);
    let stats = store.stats(2_000).await.unwrap();
    assert_eq!((stats.users, stats.sessions, stats.used_codes), (2, 3, 4));
}
