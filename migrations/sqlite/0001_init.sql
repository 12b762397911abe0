-- Users, sessions and used codes. Times are Unix milliseconds.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    appid         TEXT    NOT NULL,
    openid        TEXT    NOT NULL,
    unionid       TEXT,
    phone         TEXT,
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER NOT NULL,
    UNIQUE (appid, openid)
);
CREATE INDEX users_unionid ON users (unionid) WHERE unionid IS NOT NULL;
CREATE INDEX users_phone ON users (phone) WHERE phone IS NOT NULL;

CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   TEXT    NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    appid        TEXT    NOT NULL,
    session_key  TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE used_codes (
    code_hash TEXT    PRIMARY KEY,
    appid     TEXT    NOT NULL,
    used_at   INTEGER NOT NULL
);
CREATE INDEX used_codes_used_at ON used_codes (used_at);
