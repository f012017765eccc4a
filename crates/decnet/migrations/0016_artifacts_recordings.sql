-- What attackers brought and what they did, as the deckies reported it
-- over the trusted ingest path (docs/collector.md, `ingest_trusted`).
--
-- One row per file a decky stored in its quarantine folder for a session
-- (`artifact` lines): the bytes are `<artifacts dir>/<sha256>`, so this
-- row is all the API needs to find them. `url` is set for downloads
-- (source 'url'), NULL for uploads. The same file at the same path in the
-- same session is one row: a decky may report it again (`cat > f` twice).
CREATE TABLE artifacts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    attacker_ip TEXT NOT NULL,
    decky       TEXT NOT NULL,
    sid         TEXT NOT NULL,
    source      TEXT NOT NULL,
    url         TEXT,
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mime        TEXT NOT NULL,
    first_seen  REAL NOT NULL,
    UNIQUE (attacker_ip, decky, sid, sha256, path)
);
CREATE INDEX artifacts_by_attacker ON artifacts (attacker_ip, first_seen);
CREATE INDEX artifacts_by_sha256 ON artifacts (sha256);

-- One row per shell session whose asciicast recording a decky wrote
-- (`session_recorded` lines naming a `recording`). `path` is where the
-- decky wrote it; the API serves it only from inside its recordings folder
-- and only while its size and SHA-256 still match.
CREATE TABLE recordings (
    sid         TEXT PRIMARY KEY,
    attacker_ip TEXT NOT NULL,
    decky       TEXT NOT NULL,
    service     TEXT NOT NULL,
    username    TEXT,
    path        TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    started     REAL NOT NULL,
    ended       REAL NOT NULL,
    commands    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX recordings_by_attacker ON recordings (attacker_ip, started);
