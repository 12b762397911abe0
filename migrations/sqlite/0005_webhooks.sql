-- Webhooks and who did what.
--
-- events.actor: who made an admin change ('admin:<label>' of the admin token used); NULL for a change made by
-- the user or by wxlogin itself.
--
-- webhook_outbox: one row per webhook to send, written in the same transaction as the event it reports, deleted
-- once the receiver answered 2xx. `next_at` is when the row is next due (a claim moves it past the attempt's
-- lease); `leased_until` is set while an attempt is in flight (no other row of the user may start then);
-- `retry_from` is its first attempt or last re-drive, which starts WXLOGIN_WEBHOOK_RETRY_FOR; a row that ran
-- out of retries has `dead_at` and waits for an operator's re-drive.
ALTER TABLE events ADD COLUMN actor TEXT;

CREATE TABLE webhook_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    retry_from INTEGER NOT NULL,
    next_at    INTEGER NOT NULL,
    leased_until INTEGER,
    last_error TEXT,
    dead_at    INTEGER
);
-- A user's oldest undelivered row goes first (the claim's NOT EXISTS); due rows are found by time.
CREATE INDEX webhook_outbox_user ON webhook_outbox (user_id, id);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at) WHERE dead_at IS NULL;
