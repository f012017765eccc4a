-- Retention (issue 26): the pruner in `decnet api` deletes rows older than
-- each kind's limit in small batches, oldest first. Each batch finds its
-- rows by time; these are the time columns no index served yet (logs,
-- attackers and fingerprints already have theirs), so a batch reads the
-- rows it deletes and nothing else.
CREATE INDEX IF NOT EXISTS credentials_by_last_seen ON credentials (last_seen);
CREATE INDEX IF NOT EXISTS artifacts_by_first_seen ON artifacts (first_seen);
CREATE INDEX IF NOT EXISTS recordings_by_ended ON recordings (ended);
