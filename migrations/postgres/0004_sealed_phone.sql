-- Data at rest (SPEC §8): phone numbers are sealed with the data key, so lookups go by a keyed
-- hash (HMAC-SHA256) instead. The plain index goes; existing rows are sealed and hashed by the
-- first start of this release (store::reseal), which needs the key and so cannot run here.
ALTER TABLE users ADD COLUMN phone_hash TEXT;
DROP INDEX users_phone;
CREATE INDEX users_phone_hash ON users (phone_hash) WHERE phone_hash IS NOT NULL;
