-- The analyst's console (issue 27): clear-text credentials and the
-- roll-ups behind the Overview page.

-- The attacker's guess in clear text (UTF-8; an invalid byte becomes
-- U+FFFD). It is not a secret of ours, but the API shows it to admins only
-- and masks it for viewers. For a challenge/response (`hash:*`) it is the
-- cracker-format text. NULL for rows older than this migration that the
-- backfill below could not decode.
ALTER TABLE credentials ADD COLUMN secret_text TEXT;

-- The Overview's numbers must stay under 100 ms over millions of log
-- rows, so they are never counted from `logs` at read time: triggers keep
-- per-hour counters and per-value hit counts as rows arrive, and the page
-- reads a few dozen rows. A trigger (not the ingester) keeps them, so every
-- writer of these tables is counted the same way.

-- Activity per hour (`hour` = unix seconds / 3600, floored).
CREATE TABLE console_hourly (
    hour          INTEGER PRIMARY KEY,
    events        INTEGER NOT NULL DEFAULT 0,
    new_attackers INTEGER NOT NULL DEFAULT 0,
    credentials   INTEGER NOT NULL DEFAULT 0,
    sessions      INTEGER NOT NULL DEFAULT 0
);

-- Hits per value: kind is decky, service, command, username or password
-- (value = the secret's sha256; the text is looked up in `credentials`).
CREATE TABLE console_top (
    kind      TEXT NOT NULL,
    value     TEXT NOT NULL,
    hits      INTEGER NOT NULL DEFAULT 0,
    last_seen REAL NOT NULL,
    PRIMARY KEY (kind, value)
);
-- "Top N of a kind" walks this backwards and stops after N rows.
CREATE INDEX console_top_by_hits ON console_top (kind, hits);

-- Tries per username/password pair, so the Credentials page's most-tried
-- pairs are an index walk, not a GROUP BY over every credentials row.
CREATE TABLE console_pairs (
    username      TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_seen     REAL NOT NULL,
    PRIMARY KEY (username, secret_sha256)
);
CREATE INDEX console_pairs_by_attempts ON console_pairs (attempts);

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

-- Commands: the decky's `command` field (the msg is `CMD <command>`).
CREATE TRIGGER console_command_counted AFTER INSERT ON logs
WHEN NEW.event_type = 'command' AND json_valid(NEW.fields) AND json_extract(NEW.fields, '$.command') IS NOT NULL
BEGIN
    INSERT INTO console_top (kind, value, hits, last_seen)
        VALUES ('command', substr(json_extract(NEW.fields, '$.command'), 1, 512), 1, NEW.timestamp)
        ON CONFLICT (kind, value) DO UPDATE SET hits = hits + 1, last_seen = max(last_seen, NEW.timestamp);
END;

CREATE TRIGGER console_attacker_counted AFTER INSERT ON attackers
BEGIN
    INSERT INTO console_hourly (hour, new_attackers) VALUES (CAST(NEW.first_seen / 3600 AS INTEGER), 1)
        ON CONFLICT (hour) DO UPDATE SET new_attackers = new_attackers + 1;
END;

-- A credential row is inserted on its first try and its `attempts` bumped
-- on each repeat: both are one try.
CREATE TRIGGER console_credential_inserted AFTER INSERT ON credentials
BEGIN
    INSERT INTO console_hourly (hour, credentials) VALUES (CAST(NEW.last_seen / 3600 AS INTEGER), NEW.attempts)
        ON CONFLICT (hour) DO UPDATE SET credentials = credentials + NEW.attempts;
    INSERT INTO console_top (kind, value, hits, last_seen) VALUES ('username', NEW.username, NEW.attempts, NEW.last_seen)
        ON CONFLICT (kind, value) DO UPDATE SET hits = hits + NEW.attempts, last_seen = max(last_seen, NEW.last_seen);
    INSERT INTO console_top (kind, value, hits, last_seen) VALUES ('password', NEW.secret_sha256, NEW.attempts, NEW.last_seen)
        ON CONFLICT (kind, value) DO UPDATE SET hits = hits + NEW.attempts, last_seen = max(last_seen, NEW.last_seen);
    INSERT INTO console_pairs (username, secret_sha256, attempts, last_seen) VALUES (NEW.username, NEW.secret_sha256, NEW.attempts, NEW.last_seen)
        ON CONFLICT (username, secret_sha256) DO UPDATE SET attempts = attempts + NEW.attempts, last_seen = max(last_seen, NEW.last_seen);
END;

CREATE TRIGGER console_credential_repeated AFTER UPDATE OF attempts ON credentials
WHEN NEW.attempts > OLD.attempts
BEGIN
    INSERT INTO console_hourly (hour, credentials) VALUES (CAST(NEW.last_seen / 3600 AS INTEGER), NEW.attempts - OLD.attempts)
        ON CONFLICT (hour) DO UPDATE SET credentials = credentials + NEW.attempts - OLD.attempts;
    INSERT INTO console_top (kind, value, hits, last_seen) VALUES ('username', NEW.username, NEW.attempts - OLD.attempts, NEW.last_seen)
        ON CONFLICT (kind, value) DO UPDATE SET hits = hits + NEW.attempts - OLD.attempts, last_seen = max(last_seen, NEW.last_seen);
    INSERT INTO console_top (kind, value, hits, last_seen) VALUES ('password', NEW.secret_sha256, NEW.attempts - OLD.attempts, NEW.last_seen)
        ON CONFLICT (kind, value) DO UPDATE SET hits = hits + NEW.attempts - OLD.attempts, last_seen = max(last_seen, NEW.last_seen);
    INSERT INTO console_pairs (username, secret_sha256, attempts, last_seen) VALUES (NEW.username, NEW.secret_sha256, NEW.attempts - OLD.attempts, NEW.last_seen)
        ON CONFLICT (username, secret_sha256) DO UPDATE SET attempts = attempts + NEW.attempts - OLD.attempts, last_seen = max(last_seen, NEW.last_seen);
END;

-- Backfill from what an existing database already holds.
INSERT INTO console_hourly (hour, events, sessions)
    SELECT CAST(timestamp / 3600 AS INTEGER), COUNT(*), SUM(event_type = 'connect') FROM logs GROUP BY 1;
INSERT INTO console_hourly (hour, new_attackers)
    SELECT CAST(first_seen / 3600 AS INTEGER), COUNT(*) FROM attackers WHERE true GROUP BY 1
    ON CONFLICT (hour) DO UPDATE SET new_attackers = excluded.new_attackers;
INSERT INTO console_hourly (hour, credentials)
    SELECT CAST(last_seen / 3600 AS INTEGER), SUM(attempts) FROM credentials WHERE true GROUP BY 1
    ON CONFLICT (hour) DO UPDATE SET credentials = excluded.credentials;
INSERT INTO console_top (kind, value, hits, last_seen)
    SELECT 'decky', decky, COUNT(*), MAX(timestamp) FROM logs GROUP BY decky;
INSERT INTO console_top (kind, value, hits, last_seen)
    SELECT 'service', service, COUNT(*), MAX(timestamp) FROM logs GROUP BY service;
INSERT INTO console_top (kind, value, hits, last_seen)
    SELECT 'command', substr(json_extract(fields, '$.command'), 1, 512), COUNT(*), MAX(timestamp) FROM logs
    WHERE event_type = 'command' AND json_valid(fields) AND json_extract(fields, '$.command') IS NOT NULL GROUP BY 2;
INSERT INTO console_top (kind, value, hits, last_seen)
    SELECT 'username', username, SUM(attempts), MAX(last_seen) FROM credentials GROUP BY username;
INSERT INTO console_top (kind, value, hits, last_seen)
    SELECT 'password', secret_sha256, SUM(attempts), MAX(last_seen) FROM credentials GROUP BY secret_sha256;
INSERT INTO console_pairs (username, secret_sha256, attempts, last_seen)
    SELECT username, secret_sha256, SUM(attempts), MAX(last_seen) FROM credentials GROUP BY username, secret_sha256;

-- The lists of the Credentials, Sessions and Overview pages.
CREATE INDEX IF NOT EXISTS credentials_by_pair ON credentials (username, secret_sha256);
CREATE INDEX IF NOT EXISTS artifacts_by_time ON artifacts (first_seen);
CREATE INDEX IF NOT EXISTS recordings_by_time ON recordings (started);
-- The Credentials page filtered by decky groups that decky's rows in pair order.
CREATE INDEX IF NOT EXISTS credentials_by_decky_pair ON credentials (decky, username, secret_sha256);
