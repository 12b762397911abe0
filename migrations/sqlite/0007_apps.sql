-- The app registry: mini programs added, rotated and removed at run time through the admin API (`/admin/apps`,
-- `wxlogin admin apps …`), served beside the config file's apps (which win an appid both name). Every instance
-- reads this table at start and again every 2 s.
--
-- `secret` holds the AppSecret sealed with the data key (`enc1:<key id>:…`, field app_secret; `wxlogin rotate-key`
-- reseals it with the other sealed columns); no route ever returns it. On Alipay the secret is the app's RSA private
-- key, and `alipay_public_key` (not a secret) is Alipay's public key, which verifies its replies; NULL elsewhere.
-- `phone_key`, sealed as the secret is (field phone_key), is the app's key for phone numbers: an Alipay app's
-- content-encryption (AES) key, which opens my.getPhoneNumber's messages, or a Douyin app's RSA private key, which
-- opens get_phonenumber_info's; NULL when not given and on other platforms.
-- Times are Unix milliseconds.
-- No index on sessions.appid for removing an app's sessions: a removal is rare, and an index would be one more
-- write on every login.
CREATE TABLE apps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    platform   TEXT   NOT NULL,
    appid      TEXT   NOT NULL UNIQUE,
    secret     TEXT   NOT NULL,
    alipay_public_key TEXT,
    phone_key TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
