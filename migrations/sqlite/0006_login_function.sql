-- PostgreSQL only: its 0006 adds the function that runs a batch of logins in one round trip. SQLite's writer thread
-- already runs a batch of logins in-process; nothing changes here. (Kept so both stores have the same versions.)
SELECT 1;
