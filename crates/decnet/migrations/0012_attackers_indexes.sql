-- Attackers work (issue 12): indexes for the list pages and the state the
-- profiler keeps to publish credential reuse once per change.

-- /api/v1/logs pages newest-first by id (cursor = last id seen) under one
-- equality filter; these let SQLite walk the filter's rows in id order
-- instead of sorting every match (a million rows: ms instead of seconds).
CREATE INDEX IF NOT EXISTS logs_by_decky_id ON logs (decky, id);
CREATE INDEX IF NOT EXISTS logs_by_ip_id ON logs (attacker_ip, id);
CREATE INDEX IF NOT EXISTS logs_by_service_id ON logs (service, id);
CREATE INDEX IF NOT EXISTS logs_by_type_id ON logs (event_type, id);
CREATE INDEX IF NOT EXISTS credentials_by_ip ON credentials (attacker_ip);
CREATE INDEX IF NOT EXISTS fingerprints_by_ip ON fingerprints (attacker_ip);
CREATE INDEX IF NOT EXISTS fingerprints_by_last_seen ON fingerprints (last_seen);
CREATE INDEX IF NOT EXISTS attackers_by_behavior ON attackers (behavior, last_seen);

-- The target set last published as credential.reuse.detected per secret
-- (JSON array of "decky:service", sorted), so a restart or a re-read of
-- the same credentials publishes nothing new.
CREATE TABLE IF NOT EXISTS credential_reuse (
    secret_sha256 TEXT PRIMARY KEY,
    targets       TEXT NOT NULL,
    published_at  REAL NOT NULL
);
