-- Attackers work (issue 12): indexes for the list pages and the state the
-- profiler keeps to publish credential reuse once per change.

-- (/api/v1/logs needs nothing new: it pages by (timestamp, id), which the
-- (column, timestamp) indexes of 0005 already hold in order.)

-- The attackers list sorts by one of three columns with the IP as the
-- tie-break; with the IP in the index SQLite walks it backwards and stops
-- after one page instead of sorting 50,000 rows that share a count.
CREATE INDEX IF NOT EXISTS attackers_by_last_seen_ip ON attackers (last_seen, ip);
CREATE INDEX IF NOT EXISTS attackers_by_first_seen_ip ON attackers (first_seen, ip);
CREATE INDEX IF NOT EXISTS attackers_by_events_ip ON attackers (event_count, ip);
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
