-- Accounts: a user is a person; an identity is one login handle of that person (platform, appid, openid),
-- with its unionid. Every existing user becomes a user with one identity; sessions keep their ids, users
-- keep theirs, phones stay on their users. Adds profile and account columns, the sessions' client details,
-- the event log and the avatar store.
--
-- sessions.identity_id has no foreign key (and so no index): sessions are deleted before their identities, and
-- an index there would cost every login one more B-tree insert for a check the code already keeps.
--
-- SQLite cannot drop the old UNIQUE (appid, openid) from users in place, so users is rebuilt, and sessions
-- with it (a table that rows still reference cannot be dropped): new tables, copies, then the old ones
-- dropped children first and the new ones renamed (which repoints their foreign keys).

CREATE TABLE users_new (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    status             TEXT    NOT NULL DEFAULT 'active',
    nickname           TEXT,
    avatar             TEXT,
    phone              TEXT,
    phone_country_code TEXT,
    phone_bound_at     INTEGER,
    ban_reason         TEXT,
    created_at         INTEGER NOT NULL,
    last_login_at      INTEGER NOT NULL,
    deleted_at         INTEGER
);
INSERT INTO users_new (id, status, phone, phone_country_code, phone_bound_at, created_at, last_login_at)
    SELECT id, 'active', phone, phone_country_code, CASE WHEN phone IS NULL THEN NULL ELSE last_login_at END,
           created_at, last_login_at
    FROM users;

CREATE TABLE identities (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users_new (id),
    platform   TEXT    NOT NULL,
    appid      TEXT    NOT NULL,
    openid     TEXT    NOT NULL,
    unionid    TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (platform, appid, openid)
);
INSERT INTO identities (user_id, platform, appid, openid, unionid, created_at)
    SELECT id, 'weixin', appid, openid, unionid, created_at FROM users;

CREATE TABLE sessions_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   TEXT    NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL REFERENCES users_new (id),
    identity_id  INTEGER,
    platform     TEXT,
    appid        TEXT    NOT NULL,
    session_key  TEXT    NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
INSERT INTO sessions_new (id, token_hash, user_id, identity_id, platform, appid, session_key, created_at,
                          last_seen_at, expires_at)
    SELECT s.id, s.token_hash, s.user_id, i.id, i.platform, s.appid, s.session_key, s.created_at, s.last_seen_at,
           s.expires_at
    FROM sessions s LEFT JOIN identities i ON i.user_id = s.user_id AND i.appid = s.appid;

DROP TABLE sessions;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
ALTER TABLE sessions_new RENAME TO sessions;
CREATE INDEX users_phone ON users (phone) WHERE phone IS NOT NULL;
CREATE INDEX identities_user ON identities (user_id);
CREATE INDEX identities_unionid ON identities (platform, unionid) WHERE unionid IS NOT NULL;
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    type       TEXT    NOT NULL,
    user_id    INTEGER,
    platform   TEXT,
    appid      TEXT,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT,
    at         INTEGER NOT NULL
);
-- No index on `at`: ids grow with time, so the retention cleanup walks the primary key from the oldest
-- event (see DELETE_OLD_EVENTS), and every login saves a B-tree insert per event.
CREATE INDEX events_user ON events (user_id, id);

CREATE TABLE avatars (
    sha256       TEXT    PRIMARY KEY,
    content_type TEXT    NOT NULL,
    bytes        BLOB    NOT NULL,
    created_at   INTEGER NOT NULL
);
