-- Alert webhooks (docs/alerts.md): where to send notifications of chosen
-- topics, in which format, how fast at most. `url` is a secret (Slack and
-- Teams URLs carry their token): the API never returns it, only a
-- redacted form.
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    -- 'json', 'slack' or 'teams'
    format TEXT NOT NULL,
    -- JSON array of topic names ("attacker.observed", "worker.stale", ...)
    topics TEXT NOT NULL,
    -- notifications per minute at most; more are logged 'rate_limited'
    rate_per_min INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_by TEXT,
    created_at REAL NOT NULL
);

-- One row per notification a webhook was due: what happened to it.
-- `destination` is the redacted URL at the time, so the log still reads
-- after the webhook is deleted. `dedupe_key` (the attacker IP for
-- attacker.observed) makes "one notification per new attacker" hold
-- across restarts and across the several workers that publish it.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id INTEGER,
    webhook_name TEXT NOT NULL,
    destination TEXT NOT NULL,
    topic TEXT NOT NULL,
    dedupe_key TEXT,
    -- 'pending', 'delivered', 'failed', 'rate_limited', 'dropped'
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX webhook_deliveries_dedupe ON webhook_deliveries (webhook_id, topic, dedupe_key);
CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (id DESC);
