//! The SQL text both relational backends run, written once. SQLite and PostgreSQL agree on
//! every statement here; both take PostgreSQL's `$N` placeholders (SQLite numbers `$N` by first
//! appearance, so each statement names `$1`, `$2`, … in that order: a test below checks it).
//! What differs — pools, the SQLite writer thread, the cleanup lock — lives in each backend.
//! The row mapping is here too, generic over sqlx's row types, so both read rows alike.

use super::{SessionRecord, SessionSummary, Stats, StoreError, StoreResult, UserRecord};
use crate::domain::{AppId, OpenId, SessionKey, UnionId};
use sqlx::{ColumnIndex, Decode, Row, Type};

pub(crate) const PING: &str = "SELECT 1";

pub(crate) const IS_CODE_USED: &str = "SELECT 1 FROM used_codes WHERE code_hash = $1";

/// Affects no row when the code is already recorded: the caller learns "used" from that.
pub(crate) const INSERT_USED_CODE: &str =
    "INSERT INTO used_codes (code_hash, appid, used_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

pub(crate) const CODES_USED_SINCE: &str =
    "SELECT code_hash, used_at FROM used_codes WHERE used_at >= $1 ORDER BY used_at";

/// Insert-or-nothing then update, rather than one upsert, so the login knows whether the user
/// is new; the unique (appid, openid) key makes it one row under any race.
pub(crate) const INSERT_USER: &str =
    "INSERT INTO users (appid, openid, unionid, created_at, last_login_at) \
     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (appid, openid) DO NOTHING RETURNING id";

pub(crate) const UPDATE_USER_LOGIN: &str =
    "UPDATE users SET last_login_at = $1, unionid = COALESCE($2, unionid) \
     WHERE appid = $3 AND openid = $4 RETURNING id";

pub(crate) const INSERT_SESSION: &str =
    "INSERT INTO sessions (token_hash, user_id, appid, session_key, created_at, last_seen_at, \
     expires_at) VALUES ($1, $2, $3, $4, $5, $5, $6)";

pub(crate) const TOUCH_SESSION: &str =
    "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1";

pub(crate) const FIND_SESSION: &str =
    "SELECT s.id, s.user_id, s.appid, s.session_key, s.created_at, s.last_seen_at, \
     s.expires_at, u.openid, u.unionid FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.token_hash = $1";

pub(crate) const DELETE_SESSION: &str = "DELETE FROM sessions WHERE token_hash = $1";

pub(crate) const DELETE_SESSION_BY_ID: &str =
    "DELETE FROM sessions WHERE id = $1 RETURNING token_hash";

pub(crate) const DELETE_USER_SESSIONS: &str =
    "DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash";

pub(crate) const LIST_SESSIONS: &str =
    "SELECT id, appid, created_at, last_seen_at, expires_at FROM sessions \
     WHERE user_id = $1 ORDER BY id";

pub(crate) const FIND_USER: &str =
    "SELECT id, appid, openid, unionid, phone, phone_country_code, created_at, \
     last_login_at FROM users WHERE id = $1";

/// NULL parameters match everything: one statement for any combination of filters.
pub(crate) const FIND_USERS: &str =
    "SELECT id, appid, openid, unionid, phone, phone_country_code, created_at, \
     last_login_at FROM users WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR openid = $2) \
     AND ($3 IS NULL OR unionid = $3) AND ($4 IS NULL OR phone = $4) ORDER BY id LIMIT 100";

pub(crate) const SET_PHONE: &str =
    "UPDATE users SET phone = $1, phone_country_code = $2 WHERE id = $3";

pub(crate) const DELETE_EXPIRED_SESSIONS: &str =
    "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2";

pub(crate) const DELETE_OLD_CODES: &str = "DELETE FROM used_codes WHERE used_at <= $1";

pub(crate) const STATS: &str =
    "SELECT (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM sessions) AS sessions, \
     (SELECT COUNT(*) FROM sessions WHERE expires_at > $1) AS live_sessions, \
     (SELECT COUNT(*) FROM users WHERE phone IS NOT NULL) AS users_with_phone, \
     (SELECT COUNT(*) FROM used_codes) AS used_codes";

fn get<'r, R, T>(row: &'r R, column: &str) -> StoreResult<T>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(column).map_err(StoreError::unavailable)
}

fn appid_of(text: String) -> StoreResult<AppId> {
    AppId::parse(&text).map_err(StoreError::unavailable)
}

/// A row of [`FIND_SESSION`].
pub(crate) fn session_from_row<R>(row: &R) -> StoreResult<SessionRecord>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(SessionRecord {
        id: get(row, "id")?,
        user_id: get(row, "user_id")?,
        appid: appid_of(get(row, "appid")?)?,
        openid: OpenId(get(row, "openid")?),
        unionid: get::<_, Option<String>>(row, "unionid")?.map(UnionId),
        session_key: Some(SessionKey::new(get(row, "session_key")?)),
        created_at: get(row, "created_at")?,
        last_seen_at: get(row, "last_seen_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

/// A row of [`FIND_USER`] or [`FIND_USERS`].
pub(crate) fn user_from_row<R>(row: &R) -> StoreResult<UserRecord>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(UserRecord {
        id: get(row, "id")?,
        appid: appid_of(get(row, "appid")?)?,
        openid: OpenId(get(row, "openid")?),
        unionid: get::<_, Option<String>>(row, "unionid")?.map(UnionId),
        phone: get(row, "phone")?,
        phone_country_code: get(row, "phone_country_code")?,
        created_at: get(row, "created_at")?,
        last_login_at: get(row, "last_login_at")?,
    })
}

/// A row of [`LIST_SESSIONS`].
pub(crate) fn summary_from_row<R>(row: &R) -> StoreResult<SessionSummary>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(SessionSummary {
        id: get(row, "id")?,
        appid: get(row, "appid")?,
        created_at: get(row, "created_at")?,
        last_seen_at: get(row, "last_seen_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

/// The row of [`STATS`].
pub(crate) fn stats_from_row<R>(row: &R) -> StoreResult<Stats>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Stats {
        users: get(row, "users")?,
        sessions: get(row, "sessions")?,
        live_sessions: get(row, "live_sessions")?,
        users_with_phone: get(row, "users_with_phone")?,
        used_codes: get(row, "used_codes")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite numbers a `$N` parameter by its first appearance, not by N: a statement that named
    /// `$2` before `$1` would bind the values the wrong way round on SQLite only.
    #[test]
    fn every_statement_names_its_parameters_in_order() {
        let all = [
            PING,
            IS_CODE_USED,
            INSERT_USED_CODE,
            CODES_USED_SINCE,
            INSERT_USER,
            UPDATE_USER_LOGIN,
            INSERT_SESSION,
            TOUCH_SESSION,
            FIND_SESSION,
            DELETE_SESSION,
            DELETE_SESSION_BY_ID,
            DELETE_USER_SESSIONS,
            LIST_SESSIONS,
            FIND_USER,
            FIND_USERS,
            SET_PHONE,
            DELETE_EXPIRED_SESSIONS,
            DELETE_OLD_CODES,
            STATS,
        ];
        for sql in all {
            let mut highest = 0;
            for (i, _) in sql.match_indices('$') {
                let n: usize = sql[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .unwrap();
                assert!(n <= highest + 1, "${n} before ${} in {sql}", highest + 1);
                highest = highest.max(n);
            }
        }
    }
}
