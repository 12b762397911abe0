//! The SQL both relational backends share. SQLite and PostgreSQL differ in pools and connect
//! options, not in these statements (sqlx-sqlite accepts PostgreSQL's `$N` placeholders), so the
//! `Store` implementation is written once here and instantiated by each backend with its own row
//! type. Each backend struct has a `writer` and a `reader` pool (the same pool on PostgreSQL),
//! and its own `record_login_impl` and `touch_session_impl`: SQLite group-commits those on a
//! writer thread (`sqlite.rs`).

pub(crate) const SESSION_COLUMNS: &str = "s.id, s.user_id, s.appid, s.session_key, s.created_at, \
     s.last_seen_at, s.expires_at, u.openid, u.unionid";
pub(crate) const USER_COLUMNS: &str =
    "id, appid, openid, unionid, phone, phone_country_code, created_at, last_login_at";

macro_rules! impl_sql_store {
    // `$cleanup_lock`: a query answering whether this instance may clean now.
    ($store:ty, $row:ty, $cleanup_lock:expr) => {
        use $crate::clock::Millis;
        use $crate::domain::{AppId, OpenId, SessionKey, TokenHash, UnionId, UserId};
        use $crate::store::sql::{SESSION_COLUMNS, USER_COLUMNS};
        use $crate::store::{LoginRecord, NewLogin, SessionRecord, StoreError, StoreResult, UserRecord};
        use sqlx::Row;

        fn get<'r, T>(row: &'r $row, column: &str) -> StoreResult<T>
        where
            T: sqlx::Decode<'r, <$row as Row>::Database> + sqlx::Type<<$row as Row>::Database>,
        {
            row.try_get(column).map_err(StoreError::unavailable)
        }

        fn appid_of(text: String) -> StoreResult<AppId> {
            AppId::parse(&text).map_err(StoreError::unavailable)
        }

        fn session_from_row(row: &$row) -> StoreResult<SessionRecord> {
            Ok(SessionRecord {
                id: get(row, "id")?,
                user_id: get(row, "user_id")?,
                appid: appid_of(get(row, "appid")?)?,
                openid: OpenId(get(row, "openid")?),
                unionid: get::<Option<String>>(row, "unionid")?.map(UnionId),
                session_key: Some(SessionKey::new(get(row, "session_key")?)),
                created_at: get(row, "created_at")?,
                last_seen_at: get(row, "last_seen_at")?,
                expires_at: get(row, "expires_at")?,
            })
        }

        fn user_from_row(row: &$row) -> StoreResult<UserRecord> {
            Ok(UserRecord {
                id: get(row, "id")?,
                appid: appid_of(get(row, "appid")?)?,
                openid: OpenId(get(row, "openid")?),
                unionid: get::<Option<String>>(row, "unionid")?.map(UnionId),
                phone: get(row, "phone")?,
                phone_country_code: get(row, "phone_country_code")?,
                created_at: get(row, "created_at")?,
                last_login_at: get(row, "last_login_at")?,
            })
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.reader)
                    .await
                    .map_err(StoreError::unavailable)?;
                Ok(())
            }

            async fn is_code_used(&self, code_hash: &str) -> StoreResult<bool> {
                let row = sqlx::query("SELECT 1 FROM used_codes WHERE code_hash = $1")
                    .bind(code_hash)
                    .fetch_optional(&self.reader)
                    .await
                    .map_err(StoreError::unavailable)?;
                Ok(row.is_some())
            }

            async fn mark_code_used(&self, appid: &AppId, code_hash: &str, now: Millis) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO used_codes (code_hash, appid, used_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(code_hash)
                .bind(appid.as_str())
                .bind(now)
                .execute(&self.writer)
                .await
                .map_err(StoreError::unavailable)?;
                Ok(())
            }

            async fn codes_used_since(
                &self,
                since: Millis,
                each: &mut (dyn for<'c> FnMut(&'c str, Millis) + Send),
            ) -> StoreResult<()> {
                use futures::TryStreamExt;
                let mut rows = sqlx::query(
                    "SELECT code_hash, used_at FROM used_codes WHERE used_at >= $1 ORDER BY used_at",
                )
                .bind(since)
                .fetch(&self.reader);
                while let Some(row) = rows.try_next().await.map_err(StoreError::unavailable)? {
                    let code: String = get(&row, "code_hash")?;
                    each(&code, get(&row, "used_at")?);
                }
                Ok(())
            }

            async fn record_login(&self, l: NewLogin<'_>) -> StoreResult<LoginRecord> {
                self.record_login_impl(l).await
            }

            async fn find_session(&self, token: &TokenHash) -> StoreResult<Option<SessionRecord>> {
                let sql = format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1"
                );
                let row = sqlx::query(&sql)
                    .bind(&token.0)
                    .fetch_optional(&self.reader)
                    .await
                    .map_err(StoreError::unavailable)?;
                row.as_ref().map(session_from_row).transpose()
            }

            async fn touch_session(&self, id: i64, now: Millis) -> StoreResult<()> {
                self.touch_session_impl(id, now).await
            }

            async fn revoke_session(&self, token: &TokenHash) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(&token.0)
                    .execute(&self.writer)
                    .await
                    .map_err(StoreError::unavailable)?;
                Ok(done.rows_affected() > 0)
            }

            async fn find_user(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
                let row = sqlx::query(&sql)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await
                    .map_err(StoreError::unavailable)?;
                row.as_ref().map(user_from_row).transpose()
            }

            async fn find_users_by_unionid(&self, unionid: &str) -> StoreResult<Vec<UserRecord>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE unionid = $1 ORDER BY id");
                let rows = sqlx::query(&sql)
                    .bind(unionid)
                    .fetch_all(&self.reader)
                    .await
                    .map_err(StoreError::unavailable)?;
                rows.iter().map(user_from_row).collect()
            }

            async fn cleanup(&self, c: $crate::store::Cleanup) -> StoreResult<Option<(u64, u64)>> {
                let mut tx = self.writer.begin().await.map_err(StoreError::unavailable)?;
                let mine: bool = sqlx::query_scalar($cleanup_lock)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(StoreError::unavailable)?;
                if !mine {
                    return Ok(None);
                }
                let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
                    .bind(c.now)
                    .bind(c.idle_before)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::unavailable)?
                    .rows_affected();
                let codes = sqlx::query("DELETE FROM used_codes WHERE used_at <= $1")
                    .bind(c.codes_before)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::unavailable)?
                    .rows_affected();
                tx.commit().await.map_err(StoreError::unavailable)?;
                Ok(Some((sessions, codes)))
            }

            async fn find_users(&self, f: &$crate::store::UserFilter) -> StoreResult<Vec<UserRecord>> {
                // NULL parameters match everything: one statement for any combination of filters.
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR openid = $2) \
                     AND ($3 IS NULL OR unionid = $3) AND ($4 IS NULL OR phone = $4) ORDER BY id LIMIT 100"
                );
                let rows = sqlx::query(&sql)
                    .bind(f.id)
                    .bind(f.openid.as_deref())
                    .bind(f.unionid.as_deref())
                    .bind(f.phone.as_deref())
                    .fetch_all(&self.reader)
                    .await
                    .map_err(StoreError::unavailable)?;
                rows.iter().map(user_from_row).collect()
            }

            async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<$crate::store::SessionSummary>> {
                let rows = sqlx::query(
                    "SELECT id, appid, created_at, last_seen_at, expires_at FROM sessions WHERE user_id = $1 ORDER BY id",
                )
                .bind(user)
                .fetch_all(&self.reader)
                .await
                .map_err(StoreError::unavailable)?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::SessionSummary {
                            id: get(r, "id")?,
                            appid: get(r, "appid")?,
                            created_at: get(r, "created_at")?,
                            last_seen_at: get(r, "last_seen_at")?,
                            expires_at: get(r, "expires_at")?,
                        })
                    })
                    .collect()
            }

            async fn revoke_session_by_id(&self, id: i64) -> StoreResult<Option<TokenHash>> {
                let hash: Option<String> = sqlx::query_scalar("DELETE FROM sessions WHERE id = $1 RETURNING token_hash")
                    .bind(id)
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(StoreError::unavailable)?;
                Ok(hash.map(TokenHash))
            }

            async fn revoke_user_sessions(&self, user: UserId) -> StoreResult<Vec<TokenHash>> {
                let hashes: Vec<String> =
                    sqlx::query_scalar("DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash")
                        .bind(user)
                        .fetch_all(&self.writer)
                        .await
                        .map_err(StoreError::unavailable)?;
                Ok(hashes.into_iter().map(TokenHash).collect())
            }

            async fn stats(&self, now: Millis) -> StoreResult<$crate::store::Stats> {
                let row = sqlx::query(
                    "SELECT (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM sessions) AS sessions, \
                     (SELECT COUNT(*) FROM sessions WHERE expires_at > $1) AS live_sessions, \
                     (SELECT COUNT(*) FROM users WHERE phone IS NOT NULL) AS users_with_phone, \
                     (SELECT COUNT(*) FROM used_codes) AS used_codes",
                )
                .bind(now)
                .fetch_one(&self.reader)
                .await
                .map_err(StoreError::unavailable)?;
                Ok($crate::store::Stats {
                    users: get(&row, "users")?,
                    sessions: get(&row, "sessions")?,
                    live_sessions: get(&row, "live_sessions")?,
                    users_with_phone: get(&row, "users_with_phone")?,
                    used_codes: get(&row, "used_codes")?,
                })
            }

            async fn set_phone(&self, id: UserId, phone: &str, country_code: &str) -> StoreResult<()> {
                sqlx::query("UPDATE users SET phone = $1, phone_country_code = $2 WHERE id = $3")
                    .bind(phone)
                    .bind(country_code)
                    .bind(id)
                    .execute(&self.writer)
                    .await
                    .map_err(StoreError::unavailable)?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_sql_store;
