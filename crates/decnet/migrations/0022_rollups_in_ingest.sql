-- The ingester counts its batches' rows into the Overview's roll-ups
-- itself (issue 24: one upsert per key per batch instead of three per row,
-- see crates/decnet/src/ingest/rollups.rs). The row triggers of 0020 stay
-- for every other writer of `logs`, but stand aside while the ingester's
-- transaction has set `active` to 1; it sets it back to 0 before its
-- commit, so no other connection ever sees 1 (SQLite has one writer at a
-- time, and a rolled-back batch rolls the flag back with it).
CREATE TABLE console_ingest_counting (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    active INTEGER NOT NULL DEFAULT 0
);
INSERT INTO console_ingest_counting (id, active) VALUES (1, 0);

DROP TRIGGER console_log_counted;
DROP TRIGGER console_command_counted;

CREATE TRIGGER console_log_counted AFTER INSERT ON logs
WHEN (SELECT active FROM console_ingest_counting WHERE id = 1) = 0
BEGIN
    INSERT INTO console_hourly (hour, events, sessions)
        VALUES (CAST(NEW.timestamp / 3600 AS INTEGER), 1, NEW.event_type = 'connect')
        ON CONFLICT (hour) DO UPDATE SET events = events + 1, sessions = sessions + (NEW.event_type = 'connect');
    INSERT INTO console_top (kind, value, hits, last_seen) VALUES ('decky', NEW.decky, 1, NEW.timestamp)
        ON CONFLICT (kind, value) DO UPDATE SET hits = hits + 1, last_seen = max(last_seen, NEW.timestamp);
    INSERT INTO console_top (kind, value, hits, last_seen) VALUES ('service', NEW.service, 1, NEW.timestamp)
        ON CONFLICT (kind, value) DO UPDATE SET hits = hits + 1, last_seen = max(last_seen, NEW.timestamp);
END;

CREATE TRIGGER console_command_counted AFTER INSERT ON logs
WHEN NEW.event_type = 'command' AND (SELECT active FROM console_ingest_counting WHERE id = 1) = 0
    AND json_valid(NEW.fields) AND json_extract(NEW.fields, '$.command') IS NOT NULL
BEGIN
    INSERT INTO console_top (kind, value, hits, last_seen)
        VALUES ('command', substr(json_extract(NEW.fields, '$.command'), 1, 512), 1, NEW.timestamp)
        ON CONFLICT (kind, value) DO UPDATE SET hits = hits + 1, last_seen = max(last_seen, NEW.timestamp);
END;
