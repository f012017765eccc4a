-- The ingester no longer sets a flag to make the roll-up triggers stand
-- aside: its connection runs with triggers turned off for the length of
-- its batch (SQLITE_DBCONFIG_ENABLE_TRIGGER, per connection; see
-- crates/decnet/src/ingest/rollups.rs), which also spares every row the
-- flag lookup. The triggers are back to 0020's, counting every row any
-- other connection inserts.
DROP TRIGGER console_log_counted;
DROP TRIGGER console_command_counted;
DROP TABLE console_ingest_counting;

CREATE TRIGGER console_log_counted AFTER INSERT ON logs
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
WHEN NEW.event_type = 'command' AND json_valid(NEW.fields) AND json_extract(NEW.fields, '$.command') IS NOT NULL
BEGIN
    INSERT INTO console_top (kind, value, hits, last_seen)
        VALUES ('command', substr(json_extract(NEW.fields, '$.command'), 1, 512), 1, NEW.timestamp)
        ON CONFLICT (kind, value) DO UPDATE SET hits = hits + 1, last_seen = max(last_seen, NEW.timestamp);
END;
