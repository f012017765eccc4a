-- What the collector heard, as the ingester stores it. Timestamps are unix
-- seconds (REAL). `fields` is the JSON object of the line's SD params;
-- `attacker_ip` is 'Unknown' when no address could be found. `source` is
-- 'local' for this host's collector, or the sending host's certificate CN
-- for lines shipped by a forwarder.
CREATE TABLE logs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp   REAL NOT NULL,
    decky       TEXT NOT NULL,
    service     TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    attacker_ip TEXT NOT NULL,
    fields      TEXT NOT NULL DEFAULT '{}',
    msg         TEXT NOT NULL DEFAULT '',
    raw_line    TEXT NOT NULL,
    source      TEXT NOT NULL DEFAULT 'local'
);
CREATE INDEX logs_by_ip ON logs (attacker_ip, timestamp);
CREATE INDEX logs_by_decky ON logs (decky, timestamp);
CREATE INDEX logs_by_service ON logs (service, timestamp);
CREATE INDEX logs_by_type ON logs (event_type, timestamp);
CREATE INDEX logs_by_time ON logs (timestamp);

-- Credentials tried against deckies. The secret is kept base64 (as the
-- line carried it) for the operator's eyes and hashed for matching; it
-- never appears in clear in decnet's own logs.
CREATE TABLE credentials (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    attacker_ip   TEXT NOT NULL,
    decky         TEXT NOT NULL,
    service       TEXT NOT NULL,
    username      TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    secret_b64    TEXT NOT NULL,
    first_seen    REAL NOT NULL,
    last_seen     REAL NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 1,
    UNIQUE (attacker_ip, decky, service, username, secret_sha256)
);
CREATE INDEX credentials_by_secret ON credentials (secret_sha256);

-- Where each tailing reader (ingester, profiler, forwarder…) is in its
-- input: a file (identified by device + inode so rotation is noticed) or a
-- table (position = last id processed).
CREATE TABLE cursors (
    name     TEXT PRIMARY KEY,
    file     TEXT,
    inode    INTEGER,
    position INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
