-- Accounts: a user is a person; an identity is one login handle of that person (platform, appid, openid),
-- with its unionid. Every existing user becomes a user with one identity; sessions keep their ids, users
-- keep theirs, phones stay on their users. Adds profile and account columns, the sessions' client details,
-- the event log and the avatar store.
CREATE TABLE identities (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    platform   TEXT   NOT NULL,
    appid      TEXT   NOT NULL,
    openid     TEXT   NOT NULL,
    unionid    TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (platform, appid, openid)
);
INSERT INTO identities (user_id, platform, appid, openid, unionid, created_at)
    SELECT id, 'weixin', appid, openid, unionid, created_at FROM users;
CREATE INDEX identities_user ON identities (user_id);
CREATE INDEX identities_unionid ON identities (platform, unionid) WHERE unionid IS NOT NULL;

ALTER TABLE users DROP COLUMN appid, DROP COLUMN openid, DROP COLUMN unionid;
ALTER TABLE users
    ADD COLUMN status         TEXT NOT NULL DEFAULT 'active',
    ADD COLUMN nickname       TEXT,
    ADD COLUMN avatar         TEXT,
    ADD COLUMN phone_bound_at BIGINT,
    ADD COLUMN ban_reason     TEXT,
    ADD COLUMN deleted_at     BIGINT;
UPDATE users SET phone_bound_at = last_login_at WHERE phone IS NOT NULL;

-- No foreign key on identity_id: sessions are deleted before their identities, and its index would cost every
-- login a write for a check the code already keeps.
ALTER TABLE sessions
    ADD COLUMN identity_id BIGINT,
    ADD COLUMN platform    TEXT,
    ADD COLUMN ip          TEXT,
    ADD COLUMN user_agent  TEXT;
UPDATE sessions s SET identity_id = i.id, platform = i.platform
    FROM identities i WHERE i.user_id = s.user_id AND i.appid = s.appid;

CREATE TABLE events (
    id         BIGSERIAL PRIMARY KEY,
    type       TEXT   NOT NULL,
    user_id    BIGINT,
    platform   TEXT,
    appid      TEXT,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT,
    at         BIGINT NOT NULL
);
-- No index on `at`: ids grow with time, so the retention cleanup walks the primary key from the oldest
-- event (see DELETE_OLD_EVENTS), and every login saves a B-tree insert per event.
CREATE INDEX events_user ON events (user_id, id);

CREATE TABLE avatars (
    sha256       TEXT   PRIMARY KEY,
    content_type TEXT   NOT NULL,
    bytes        BYTEA  NOT NULL,
    created_at   BIGINT NOT NULL
);
