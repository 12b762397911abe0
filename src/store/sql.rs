//! The SQL text both relational backends run, written once. SQLite and PostgreSQL agree on
//! every statement here; both take PostgreSQL's `$N` placeholders (SQLite numbers `$N` by first
//! appearance, so each statement names `$1`, `$2`, … in that order: a test below checks it).
//! What differs — pools, the SQLite writer thread, the cleanup lock — lives in each backend.
//! The row mapping is here too, generic over sqlx's row types, so both read rows alike.

use super::{
    AppRecord, Audit, EventRecord, IdentityRecord, OutboxRecord, OutboxStats, SessionRecord,
    SessionSummary, Stats, StoreError, StoreResult, UserRecord,
};
use crate::clock::Millis;
use crate::domain::{
    AppId, ClientInfo, EventType, OpenId, Platform, SessionKey, TokenHash, UnionId, UserId,
    UserStatus,
};
use crate::vault::{Field, Vault};
use secrecy::SecretString;
use sqlx::{ColumnIndex, Decode, Row, Type};

pub(crate) const PING: &str = "SELECT 1";

pub(crate) const IS_CODE_USED: &str = "SELECT 1 FROM used_codes WHERE code_hash = $1";

/// Affects no row when the code is already recorded: the caller learns "used" from that.
pub(crate) const INSERT_USED_CODE: &str =
    "INSERT INTO used_codes (code_hash, appid, used_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

pub(crate) const CODES_USED_SINCE: &str =
    "SELECT code_hash, used_at FROM used_codes WHERE used_at >= $1 ORDER BY used_at";

/// The identity a login's (platform, appid, openid) already has, with its user's status.
pub(crate) const FIND_IDENTITY: &str =
    "SELECT i.id, i.user_id, i.unionid, u.status FROM identities i \
     JOIN users u ON u.id = i.user_id WHERE i.platform = $1 AND i.appid = $2 AND i.openid = $3";

/// An identity becomes another of the same app (the same row, so the same user), unless that
/// one already exists, or (`$6` = 1: unionid linking on) the unionid is another user's, whom a
/// login would join: Douyin's device-anonymous identity, Alipay's user_id one.
pub(crate) const TAKE_OVER_IDENTITY: &str =
    "UPDATE identities SET openid = $1, unionid = $2 WHERE platform = $3 AND appid = $4 \
     AND openid = $5 AND NOT EXISTS (SELECT 1 FROM identities o WHERE o.platform = $3 \
     AND o.appid = $4 AND o.openid = $1) AND ($6 = 0 OR $2 IS NULL OR NOT EXISTS \
     (SELECT 1 FROM identities u WHERE u.platform = $3 AND u.unionid = $2 \
     AND u.user_id <> identities.user_id)) RETURNING id, user_id";

/// Whether an identity exists: the cheap read before a take-over's write.
pub(crate) const IDENTITY_EXISTS: &str =
    "SELECT 1 FROM identities WHERE platform = $1 AND appid = $2 AND openid = $3";

/// Ends the sessions of one identity (found through the index on user_id).
pub(crate) const DELETE_IDENTITY_SESSIONS: &str =
    "DELETE FROM sessions WHERE user_id = $1 AND identity_id = $2 \
     RETURNING id, token_hash, user_id, platform, appid";

/// The user a new identity with this unionid joins (`link_by_unionid`): the first one found.
pub(crate) const FIND_UNIONID_USER: &str =
    "SELECT i.user_id, u.status FROM identities i JOIN users u ON u.id = i.user_id \
     WHERE i.platform = $1 AND i.unionid = $2 AND u.status <> 'deleted' ORDER BY i.user_id LIMIT 1";

// No `RETURNING` in the inserts of SQLite's writer thread: SQLite runs a `RETURNING` through a
// temporary table (a b-tree opened and closed per statement); that thread reads the new row's id
// with `last_insert_rowid` instead. (PostgreSQL logs in through `wxlogin_login_v1`.)
pub(crate) const INSERT_USER: &str =
    "INSERT INTO users (status, created_at, last_login_at) VALUES ('active', $1, $1)";

pub(crate) const INSERT_IDENTITY: &str =
    "INSERT INTO identities (user_id, platform, appid, openid, unionid, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";

macro_rules! insert_event {
    () => {
        "INSERT INTO events (type, user_id, platform, appid, ip, user_agent, detail, at, actor) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    };
}

/// A unionid that arrives after the identity was made (app bound to an Open Platform later).
pub(crate) const SET_IDENTITY_UNIONID: &str = "UPDATE identities SET unionid = $1 WHERE id = $2";

/// Also the login's last word on the user's status: the update waits for a concurrent ban,
/// deletion or merge to commit, then matches no row if the user is no longer active.
pub(crate) const TOUCH_USER_LOGIN: &str =
    "UPDATE users SET last_login_at = $1 WHERE id = $2 AND status = 'active'";

pub(crate) const INSERT_SESSION: &str = "INSERT INTO sessions (token_hash, user_id, identity_id, platform, appid, session_key, \
     ip, user_agent, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)";

/// The user's sessions beyond the newest `$2`, to be deleted to make room under the cap
/// ([`DELETE_SESSION_ROW`] each; no `DELETE … RETURNING`, which SQLite runs through temporary
/// tables, for what is usually nothing).
pub(crate) const SESSIONS_OVER_CAP: &str =
    "SELECT id, token_hash, user_id, platform, appid FROM sessions \
     WHERE user_id = $1 ORDER BY id DESC LIMIT -1 OFFSET $2";

pub(crate) const DELETE_SESSION_ROW: &str = "DELETE FROM sessions WHERE id = $1";

pub(crate) const INSERT_EVENT: &str = concat!(insert_event!(), " RETURNING id");
/// [`INSERT_EVENT`] for SQLite's writer thread (no `RETURNING`, as above).
pub(crate) const INSERT_EVENT_ROW: &str = insert_event!();

/// A first login's two events in one statement: `user_created`, then `login`.
pub(crate) const INSERT_NEW_USER_EVENTS: &str = "INSERT INTO events (type, user_id, platform, appid, ip, user_agent, \
     detail, at) VALUES ('user_created', $1, $2, $3, $4, $5, NULL, $6), ('login', $1, $2, $3, $4, $5, NULL, $6)";

/// The same, when webhooks are on: the `user_created` event's id for its outbox row.
pub(crate) const INSERT_NEW_USER_EVENTS_RETURNING: &str =
    "INSERT INTO events (type, user_id, platform, appid, ip, \
     user_agent, detail, at) VALUES ('user_created', $1, $2, $3, $4, $5, NULL, $6), \
     ('login', $1, $2, $3, $4, $5, NULL, $6) RETURNING id, type";

/// A webhook to send, in the transaction of the event it reports.
pub(crate) const INSERT_OUTBOX: &str =
    "INSERT INTO webhook_outbox (event_id, user_id, type, body, created_at, \
     retry_from, next_at) VALUES ($1, $2, $3, $4, $5, $5, $5)";

/// Due rows, each the oldest undelivered one of its user, none of whose rows is in flight,
/// leased (hidden until `$1`) and counted as an attempt in one statement; a first attempt starts
/// the retry period. On PostgreSQL a concurrent claim of the same row waits for this one,
/// re-checks `next_at <= $2` on the updated row, and skips it.
pub(crate) const CLAIM_WEBHOOKS: &str = "UPDATE webhook_outbox SET next_at = $1, leased_until = $1, \
     retry_from = CASE WHEN attempts = 0 THEN $2 ELSE retry_from END, attempts = attempts + 1 \
     WHERE id IN (SELECT o.id FROM webhook_outbox o WHERE o.dead_at IS NULL AND o.next_at <= $2 \
     AND NOT EXISTS (SELECT 1 FROM webhook_outbox p WHERE p.user_id = o.user_id AND p.id <> o.id \
     AND p.dead_at IS NULL AND (p.id < o.id OR p.leased_until > $2)) ORDER BY o.id LIMIT $3) AND next_at <= $2 \
     RETURNING id, event_id, user_id, type, body, attempts, created_at, retry_from, next_at, last_error, dead_at";

/// Only by the attempt that claimed it (`$2`: its attempt count): a worker that stalled past its
/// lease cannot delete a row another instance has claimed since.
pub(crate) const DELETE_OUTBOX: &str = "DELETE FROM webhook_outbox WHERE id = $1 AND attempts = $2";

/// As [`DELETE_OUTBOX`], fenced by the attempt count (`$5`).
pub(crate) const OUTBOX_FAILED: &str =
    "UPDATE webhook_outbox SET next_at = $1, last_error = $2, dead_at = $3, \
     leased_until = NULL WHERE id = $4 AND attempts = $5";

/// `$1`: `dead`, `pending` or NULL (both); newest first.
pub(crate) const LIST_OUTBOX: &str = "SELECT id, event_id, user_id, type, body, attempts, created_at, retry_from, \
     next_at, last_error, dead_at FROM webhook_outbox \
     WHERE ($1 IS NULL OR (CASE WHEN dead_at IS NULL THEN 'pending' ELSE 'dead' END) = $1) ORDER BY id DESC LIMIT $2";

pub(crate) const REDRIVE_OUTBOX: &str = "UPDATE webhook_outbox SET dead_at = NULL, attempts = 0, \
     leased_until = NULL, retry_from = $1, next_at = $1 WHERE id = $2 AND dead_at IS NOT NULL";

pub(crate) const OUTBOX_STATS: &str =
    "SELECT COALESCE(SUM(CASE WHEN dead_at IS NULL THEN 1 ELSE 0 END), 0) AS pending, \
     COALESCE(SUM(CASE WHEN dead_at IS NULL THEN 0 ELSE 1 END), 0) AS dead, \
     MIN(CASE WHEN dead_at IS NULL THEN created_at END) AS oldest FROM webhook_outbox";

/// Dead webhooks nobody re-drove within the event retention.
pub(crate) const DELETE_OLD_DEAD_OUTBOX: &str =
    "DELETE FROM webhook_outbox WHERE dead_at IS NOT NULL AND dead_at <= $1";

pub(crate) const TOUCH_SESSION: &str =
    "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1";

/// A live session of an active user, with its identity.
pub(crate) const FIND_SESSION: &str = "SELECT s.id, s.user_id, s.appid, s.session_key, s.created_at, s.last_seen_at, \
     s.expires_at, i.platform, i.openid, i.unionid FROM sessions s JOIN identities i ON i.id = s.identity_id \
     JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND u.status = 'active'";

/// Every revocation deletes with `RETURNING` these columns, for its event and the caches.
pub(crate) const DELETE_SESSION: &str =
    "DELETE FROM sessions WHERE token_hash = $1 RETURNING id, token_hash, user_id, platform, appid";

pub(crate) const DELETE_SESSION_BY_ID: &str =
    "DELETE FROM sessions WHERE id = $1 AND ($2 IS NULL OR user_id = $2) \
     RETURNING id, token_hash, user_id, platform, appid";

pub(crate) const DELETE_USER_SESSIONS: &str =
    "DELETE FROM sessions WHERE user_id = $1 RETURNING id, token_hash, user_id, platform, appid";

pub(crate) const LIST_SESSIONS: &str =
    "SELECT id, platform, appid, ip, user_agent, created_at, last_seen_at, expires_at \
     FROM sessions WHERE user_id = $1 ORDER BY id";

pub(crate) const FIND_USER: &str =
    "SELECT id, status, nickname, avatar, phone, phone_country_code, phone_bound_at, \
     ban_reason, created_at, last_login_at, deleted_at FROM users WHERE id = $1";

pub(crate) const USER_IDENTITIES: &str =
    "SELECT platform, appid, openid, unionid, created_at FROM identities \
     WHERE user_id = $1 ORDER BY id";

/// NULL parameters match everything: one statement for any combination of filters.
pub(crate) const FIND_USERS: &str =
    "SELECT id, status, nickname, avatar, phone, phone_country_code, phone_bound_at, \
     ban_reason, created_at, last_login_at, deleted_at FROM users WHERE ($1 IS NULL OR id = $1) \
     AND ($2 IS NULL OR id IN (SELECT user_id FROM identities WHERE openid = $2)) \
     AND ($3 IS NULL OR id IN (SELECT user_id FROM identities WHERE unionid = $3)) \
     AND ($4 IS NULL OR phone_hash = $4 OR phone_hash = $5) ORDER BY id LIMIT 100";

pub(crate) const PHONE_HELD_BY_OTHER: &str =
    "SELECT id FROM users WHERE (phone_hash = $1 OR phone_hash = $2) AND id <> $3 \
     AND status <> 'deleted' LIMIT 1";

pub(crate) const SET_PHONE: &str =
    "UPDATE users SET phone = $1, phone_hash = $2, phone_country_code = $3, phone_bound_at = $4 \
     WHERE id = $5 AND status = 'active'";

pub(crate) const UPDATE_PROFILE: &str =
    "UPDATE users SET nickname = COALESCE($1, nickname), avatar = COALESCE($2, avatar) \
     WHERE id = $3 AND status = 'active'";

pub(crate) const PUT_AVATAR: &str =
    "INSERT INTO avatars (sha256, content_type, bytes, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT DO NOTHING";

pub(crate) const GET_AVATAR: &str =
    "SELECT sha256, content_type, bytes FROM avatars WHERE sha256 = $1";

pub(crate) const BAN_USER: &str =
    "UPDATE users SET status = 'banned', ban_reason = $1 WHERE id = $2 AND status <> 'deleted'";

pub(crate) const UNBAN_USER: &str =
    "UPDATE users SET status = 'active', ban_reason = NULL WHERE id = $1 AND status = 'banned'";

/// A user that exists and is not deleted, with the phone a merge may carry over.
pub(crate) const LIVE_USER_PHONE: &str =
    "SELECT id, phone, phone_hash, phone_country_code, phone_bound_at FROM users \
     WHERE id = $1 AND status <> 'deleted'";

/// A merge carries the phone over whatever the kept user's status.
pub(crate) const MOVE_PHONE: &str =
    "UPDATE users SET phone = $1, phone_hash = $2, phone_country_code = $3, phone_bound_at = $4 \
     WHERE id = $5";

/// Sessions whose session_key is not sealed under the current key (`$1`: its prefix), by id.
pub(crate) const UNSEALED_SESSIONS: &str = "SELECT id, session_key FROM sessions \
     WHERE session_key NOT LIKE $1 AND id > $2 ORDER BY id LIMIT $3";

/// Compare-and-set: a session changed meanwhile is left alone.
pub(crate) const RESEAL_SESSION: &str =
    "UPDATE sessions SET session_key = $1 WHERE id = $2 AND session_key = $3";

/// Apps whose secret is not sealed under the current key (`$1`: its prefix), by id.
pub(crate) const UNSEALED_APP_SECRETS: &str = "SELECT id, secret FROM apps \
     WHERE secret NOT LIKE $1 AND id > $2 ORDER BY id LIMIT $3";

/// Compare-and-set, as for sessions.
pub(crate) const RESEAL_APP_SECRET: &str =
    "UPDATE apps SET secret = $1 WHERE id = $2 AND secret = $3";

/// Apps whose phone key is not sealed under the current key, by id.
pub(crate) const UNSEALED_PHONE_KEYS: &str = "SELECT id, phone_key FROM apps \
     WHERE phone_key IS NOT NULL AND phone_key NOT LIKE $1 AND id > $2 ORDER BY id LIMIT $3";

pub(crate) const RESEAL_PHONE_KEY: &str =
    "UPDATE apps SET phone_key = $1 WHERE id = $2 AND phone_key = $3";

pub(crate) const LIST_APPS: &str = "SELECT platform, appid, secret, alipay_public_key, \
     phone_key, created_at, updated_at FROM apps ORDER BY appid";

/// Adds an app unless its appid is taken (no row inserted then).
pub(crate) const INSERT_APP: &str =
    "INSERT INTO apps (platform, appid, secret, alipay_public_key, phone_key, created_at, \
     updated_at) VALUES ($1, $2, $3, $4, $6, $5, $5) ON CONFLICT (appid) DO NOTHING";

/// A new secret; Alipay's public key and the phone key too when given (`$2`, `$5` NULL: kept).
pub(crate) const ROTATE_APP: &str = "UPDATE apps SET secret = $1, \
     alipay_public_key = COALESCE($2, alipay_public_key), \
     phone_key = COALESCE($5, phone_key), updated_at = $3 WHERE appid = $4";

pub(crate) const DELETE_APP: &str = "DELETE FROM apps WHERE appid = $1";

/// A removed app's sessions.
pub(crate) const DELETE_APP_SESSIONS: &str =
    "DELETE FROM sessions WHERE appid = $1 RETURNING id, token_hash, user_id, platform, appid";

/// Users whose phone is not sealed under the current key (`$1`: its prefix), by id.
pub(crate) const UNSEALED_PHONES: &str = "SELECT id, phone FROM users \
     WHERE phone IS NOT NULL AND phone NOT LIKE $1 AND id > $2 ORDER BY id LIMIT $3";

pub(crate) const RESEAL_PHONE: &str =
    "UPDATE users SET phone = $1, phone_hash = $2 WHERE id = $3 AND phone = $4";

pub(crate) const MOVE_IDENTITIES: &str = "UPDATE identities SET user_id = $1 WHERE user_id = $2";

pub(crate) const MOVE_SESSIONS: &str =
    "UPDATE sessions SET user_id = $1 WHERE user_id = $2 RETURNING token_hash";

pub(crate) const DELETE_IDENTITIES: &str = "DELETE FROM identities WHERE user_id = $1";

/// Leaves the tombstone: the id, `deleted`, the times.
pub(crate) const ERASE_USER: &str = "UPDATE users SET status = 'deleted', nickname = NULL, avatar = NULL, phone = NULL, \
     phone_hash = NULL, phone_country_code = NULL, phone_bound_at = NULL, ban_reason = NULL, deleted_at = $1 WHERE id = $2";

pub(crate) const USER_AVATAR: &str = "SELECT avatar FROM users WHERE id = $1";

/// An avatar no user shows any more (after a deletion or a merge): a person's photo is
/// personal data, not kept for nobody.
pub(crate) const DELETE_UNUSED_AVATAR: &str = "DELETE FROM avatars WHERE sha256 = $1 \
     AND NOT EXISTS (SELECT 1 FROM users WHERE avatar = $2)";

pub(crate) const BLANK_EVENT_CLIENTS: &str =
    "UPDATE events SET ip = NULL, user_agent = NULL WHERE user_id = $1";

pub(crate) const EVENTS: &str =
    "SELECT id, type, user_id, platform, appid, ip, user_agent, detail, at, actor FROM events \
     WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR type = $2) AND ($3 IS NULL OR at >= $3) \
     AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5";

pub(crate) const DELETE_EXPIRED_SESSIONS: &str =
    "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2";

pub(crate) const DELETE_OLD_CODES: &str = "DELETE FROM used_codes WHERE used_at <= $1";

/// Events older than the cutoff. Ids grow with time, so this walks the primary key from the
/// oldest event and stops at the first newer one: no index on `at` is needed. (An event written
/// a moment out of order by a concurrent instance lives one cleanup longer.)
pub(crate) const DELETE_OLD_EVENTS: &str =
    "DELETE FROM events WHERE id < COALESCE((SELECT MIN(id) FROM events WHERE at > $1), \
     (SELECT MAX(id) + 1 FROM events))";

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
pub(crate) fn session_from_row<R>(row: &R, vault: &Vault) -> StoreResult<SessionRecord>
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
        platform: get(row, "platform")?,
        appid: appid_of(get(row, "appid")?)?,
        openid: OpenId(get(row, "openid")?),
        unionid: get::<_, Option<String>>(row, "unionid")?.map(UnionId),
        session_key: open(vault, Field::SessionKey, get(row, "session_key")?).map(SessionKey::new),
        created_at: get(row, "created_at")?,
        last_seen_at: get(row, "last_seen_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

/// A stored value opened; a key missing from the configuration is an outage, not a client's error.
/// `None` when no configured key opens it (a lost key, a damaged row): the session then has no
/// session_key (open data asks the client to log in again) or the user no phone number. Said
/// once per process; the start-up pass counts them.
fn open(vault: &Vault, field: Field, stored: String) -> Option<String> {
    match vault.open(field, &stored) {
        Ok(plain) => Some(plain),
        Err(e) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(
                || tracing::warn!(field = ?field, error = %e, "a stored value cannot be opened"),
            );
            None
        }
    }
}

/// A row of [`FIND_USER`] or [`FIND_USERS`], without its identities (read with
/// [`USER_IDENTITIES`]).
pub(crate) fn user_from_row<R>(row: &R, vault: &Vault) -> StoreResult<UserRecord>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: String = get(row, "status")?;
    Ok(UserRecord {
        id: get(row, "id")?,
        status: UserStatus::parse(&status)
            .ok_or_else(|| StoreError::unavailable(format!("unknown user status {status:?}")))?,
        nickname: get(row, "nickname")?,
        avatar: get(row, "avatar")?,
        phone: get::<_, Option<String>>(row, "phone")?.and_then(|p| open(vault, Field::Phone, p)),
        phone_country_code: get(row, "phone_country_code")?,
        phone_bound_at: get(row, "phone_bound_at")?,
        ban_reason: get(row, "ban_reason")?,
        created_at: get(row, "created_at")?,
        last_login_at: get(row, "last_login_at")?,
        deleted_at: get(row, "deleted_at")?,
        identities: Vec::new(),
    })
}

/// A row of [`USER_IDENTITIES`].
/// An app row as [`LIST_APPS`] reads it; `None` (logged) when no configured key opens its secret
/// or its platform is one this build does not know.
pub(crate) fn app_from_row<R>(row: &R, vault: &Vault) -> StoreResult<Option<AppRecord>>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    let platform: String = get(row, "platform")?;
    let appid = appid_of(get(row, "appid")?)?;
    let Some(platform) = Platform::parse(&platform) else {
        tracing::error!(%appid, %platform, "a registered app names a platform this build does not serve; skipped");
        return Ok(None);
    };
    let secret = match vault.open(Field::AppSecret, &get::<R, String>(row, "secret")?) {
        Ok(plain) => SecretString::from(plain),
        Err(e) => {
            tracing::error!(%appid, error = %e, "a registered app's secret cannot be opened; skipped");
            return Ok(None);
        }
    };
    let phone_key = match get::<R, Option<String>>(row, "phone_key")? {
        None => None,
        Some(sealed) => match vault.open(Field::PhoneKey, &sealed) {
            Ok(plain) => Some(SecretString::from(plain)),
            Err(e) => {
                tracing::error!(%appid, error = %e, "a registered app's phone key cannot be opened; skipped");
                return Ok(None);
            }
        },
    };
    Ok(Some(AppRecord {
        platform,
        appid,
        secret,
        alipay_public_key: get(row, "alipay_public_key")?,
        phone_key,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    }))
}

pub(crate) fn identity_from_row<R>(row: &R) -> StoreResult<IdentityRecord>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(IdentityRecord {
        platform: get(row, "platform")?,
        appid: get(row, "appid")?,
        openid: get(row, "openid")?,
        unionid: get(row, "unionid")?,
        created_at: get(row, "created_at")?,
    })
}

/// A row of [`LIST_SESSIONS`].
pub(crate) fn summary_from_row<R>(row: &R) -> StoreResult<SessionSummary>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(SessionSummary {
        id: get(row, "id")?,
        platform: get(row, "platform")?,
        appid: get(row, "appid")?,
        ip: get(row, "ip")?,
        user_agent: get(row, "user_agent")?,
        created_at: get(row, "created_at")?,
        last_seen_at: get(row, "last_seen_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

/// A session a revocation deleted (the `RETURNING` of every revoking statement).
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    pub(crate) id: i64,
    pub(crate) token_hash: TokenHash,
    pub(crate) user_id: UserId,
    pub(crate) platform: Option<String>,
    pub(crate) appid: String,
}

pub(crate) fn ended_from_row<R>(row: &R) -> StoreResult<Ended>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Ended {
        id: get(row, "id")?,
        token_hash: TokenHash(get(row, "token_hash")?),
        user_id: get(row, "user_id")?,
        platform: get(row, "platform")?,
        appid: get(row, "appid")?,
    })
}

/// A row of [`EVENTS`].
pub(crate) fn event_from_row<R>(row: &R) -> StoreResult<EventRecord>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(EventRecord {
        id: get(row, "id")?,
        kind: get(row, "type")?,
        user_id: get(row, "user_id")?,
        platform: get(row, "platform")?,
        appid: get(row, "appid")?,
        ip: get(row, "ip")?,
        user_agent: get(row, "user_agent")?,
        detail: get(row, "detail")?,
        at: get(row, "at")?,
        actor: get(row, "actor")?,
    })
}

/// A row of [`CLAIM_WEBHOOKS`] or [`LIST_OUTBOX`].
pub(crate) fn outbox_from_row<R>(row: &R) -> StoreResult<OutboxRecord>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    let attempts: i64 = get(row, "attempts")?;
    Ok(OutboxRecord {
        id: get(row, "id")?,
        event_id: get(row, "event_id")?,
        user_id: get(row, "user_id")?,
        kind: get(row, "type")?,
        body: get(row, "body")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created_at: get(row, "created_at")?,
        retry_from: get(row, "retry_from")?,
        next_at: get(row, "next_at")?,
        last_error: get(row, "last_error")?,
        dead_at: get(row, "dead_at")?,
    })
}

/// The row of [`OUTBOX_STATS`].
pub(crate) fn outbox_stats_from_row<R>(row: &R) -> StoreResult<OutboxStats>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(OutboxStats {
        pending: get(row, "pending")?,
        dead: get(row, "dead")?,
        oldest_pending_at: get(row, "oldest")?,
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

/// A webhook body: see [`NewEvent::webhook_body`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn webhook_body(
    id: i64,
    kind: EventType,
    user_id: Option<UserId>,
    platform: Option<&str>,
    appid: Option<&str>,
    actor: Option<&str>,
    detail: Option<&str>,
    at: Millis,
) -> String {
    let detail: Option<serde_json::Value> = detail.and_then(|d| serde_json::from_str(d).ok());
    serde_json::json!({
        "id": id,
        "type": kind.as_str(),
        "time": crate::clock::rfc3339(at),
        "user_id": user_id,
        "platform": platform,
        "appid": appid,
        "actor": actor,
        "detail": detail,
    })
    .to_string()
}

/// One event row to insert with [`INSERT_EVENT`].
#[derive(Debug, Clone)]
pub(crate) struct NewEvent<'a> {
    pub(crate) kind: EventType,
    pub(crate) user_id: Option<UserId>,
    pub(crate) platform: Option<&'a str>,
    pub(crate) appid: Option<&'a str>,
    pub(crate) client: Option<&'a ClientInfo>,
    /// Kept when `client` is dropped (a deletion keeps no address, but says which admin).
    pub(crate) actor: Option<&'a str>,
    pub(crate) detail: Option<String>,
    pub(crate) at: Millis,
}

impl<'a> NewEvent<'a> {
    pub(crate) fn new(kind: EventType, user_id: Option<UserId>, audit: Audit<'a>) -> Self {
        Self {
            kind,
            user_id,
            platform: None,
            appid: None,
            client: Some(audit.client),
            actor: audit.client.actor.as_deref(),
            detail: None,
            at: audit.now,
        }
    }

    /// The event of a session that ended, with the session's platform and app.
    pub(crate) fn for_session(
        kind: EventType,
        ended: &'a Ended,
        audit: Audit<'a>,
        reason: &str,
    ) -> Self {
        Self {
            platform: ended.platform.as_deref(),
            appid: Some(&ended.appid),
            detail: Some(
                serde_json::json!({ "session_id": ended.id, "reason": reason }).to_string(),
            ),
            ..Self::new(kind, Some(ended.user_id), audit)
        }
    }

    pub(crate) fn ip(&self) -> Option<&str> {
        self.client.and_then(|c| c.ip.as_deref())
    }

    /// The webhook body of this event, stored as event `id`: `{id, type, time, user_id,
    /// platform, appid, actor, detail}`. No openid, phone or address: the receiver asks the
    /// admin API for more if it needs it.
    pub(crate) fn webhook_body(&self, id: i64) -> String {
        webhook_body(
            id,
            self.kind,
            self.user_id,
            self.platform,
            self.appid,
            self.actor,
            self.detail.as_deref(),
            self.at,
        )
    }

    pub(crate) fn user_agent(&self) -> Option<&str> {
        self.client.and_then(|c| c.user_agent.as_deref())
    }
}

/// The outbox's sending side, the same on both backends: `$write` is the pool that writes,
/// `$read` the one that reads (the same pool on PostgreSQL).
macro_rules! impl_outbox_store {
    ($store:ty, $write:ident, $read:ident) => {
        #[async_trait::async_trait]
        impl super::OutboxStore for $store {
            async fn claim_webhooks(
                &self,
                now: crate::clock::Millis,
                lease_until: crate::clock::Millis,
                limit: i64,
            ) -> super::StoreResult<Vec<super::OutboxRecord>> {
                let rows = sqlx::query(super::sql::CLAIM_WEBHOOKS)
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.$write)
                    .await
                    .map_err(super::StoreError::unavailable)?;
                let mut claimed = rows
                    .iter()
                    .map(super::sql::outbox_from_row)
                    .collect::<super::StoreResult<Vec<_>>>()?;
                claimed.sort_by_key(|r| r.id);
                Ok(claimed)
            }

            async fn webhook_delivered(&self, id: i64, attempts: u32) -> super::StoreResult<()> {
                sqlx::query(super::sql::DELETE_OUTBOX)
                    .bind(id)
                    .bind(i64::from(attempts))
                    .execute(&self.$write)
                    .await
                    .map_err(super::StoreError::unavailable)?;
                Ok(())
            }

            async fn webhook_failed(
                &self,
                id: i64,
                attempts: u32,
                next_at: crate::clock::Millis,
                dead_at: Option<crate::clock::Millis>,
                error: &str,
            ) -> super::StoreResult<()> {
                sqlx::query(super::sql::OUTBOX_FAILED)
                    .bind(next_at)
                    .bind(error)
                    .bind(dead_at)
                    .bind(id)
                    .bind(i64::from(attempts))
                    .execute(&self.$write)
                    .await
                    .map_err(super::StoreError::unavailable)?;
                Ok(())
            }

            async fn outbox(
                &self,
                state: Option<super::OutboxState>,
                limit: i64,
            ) -> super::StoreResult<Vec<super::OutboxRecord>> {
                let rows = sqlx::query(super::sql::LIST_OUTBOX)
                    .bind(state.map(super::OutboxState::as_str))
                    .bind(limit)
                    .fetch_all(&self.$read)
                    .await
                    .map_err(super::StoreError::unavailable)?;
                rows.iter().map(super::sql::outbox_from_row).collect()
            }

            async fn redrive_webhook(
                &self,
                id: i64,
                now: crate::clock::Millis,
            ) -> super::StoreResult<bool> {
                let done = sqlx::query(super::sql::REDRIVE_OUTBOX)
                    .bind(now)
                    .bind(id)
                    .execute(&self.$write)
                    .await
                    .map_err(super::StoreError::unavailable)?;
                Ok(done.rows_affected() > 0)
            }

            async fn outbox_stats(&self) -> super::StoreResult<super::OutboxStats> {
                let row = sqlx::query(super::sql::OUTBOX_STATS)
                    .fetch_one(&self.$read)
                    .await
                    .map_err(super::StoreError::unavailable)?;
                super::sql::outbox_stats_from_row(&row)
            }
        }
    };
}
pub(crate) use impl_outbox_store;

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
            FIND_IDENTITY,
            FIND_UNIONID_USER,
            TAKE_OVER_IDENTITY,
            IDENTITY_EXISTS,
            DELETE_IDENTITY_SESSIONS,
            INSERT_USER,
            INSERT_IDENTITY,
            SET_IDENTITY_UNIONID,
            TOUCH_USER_LOGIN,
            INSERT_SESSION,
            SESSIONS_OVER_CAP,
            DELETE_SESSION_ROW,
            INSERT_EVENT,
            INSERT_EVENT_ROW,
            INSERT_NEW_USER_EVENTS,
            INSERT_NEW_USER_EVENTS_RETURNING,
            INSERT_OUTBOX,
            CLAIM_WEBHOOKS,
            DELETE_OUTBOX,
            OUTBOX_FAILED,
            LIST_OUTBOX,
            REDRIVE_OUTBOX,
            OUTBOX_STATS,
            DELETE_OLD_DEAD_OUTBOX,
            TOUCH_SESSION,
            FIND_SESSION,
            DELETE_SESSION,
            DELETE_SESSION_BY_ID,
            DELETE_USER_SESSIONS,
            LIST_SESSIONS,
            FIND_USER,
            USER_IDENTITIES,
            FIND_USERS,
            PHONE_HELD_BY_OTHER,
            SET_PHONE,
            UPDATE_PROFILE,
            PUT_AVATAR,
            GET_AVATAR,
            BAN_USER,
            UNBAN_USER,
            LIVE_USER_PHONE,
            MOVE_PHONE,
            MOVE_IDENTITIES,
            MOVE_SESSIONS,
            DELETE_IDENTITIES,
            ERASE_USER,
            USER_AVATAR,
            DELETE_UNUSED_AVATAR,
            BLANK_EVENT_CLIENTS,
            EVENTS,
            DELETE_EXPIRED_SESSIONS,
            DELETE_OLD_CODES,
            DELETE_OLD_EVENTS,
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
